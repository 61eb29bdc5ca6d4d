"""Where a training run stands, and how the trainer's exit codes read.

A run is `pending` until an executor starts it and `running` until it ends. The trainer's
record (`result.json`) says how it ended: `succeeded`, `diverged` or `failed`, the three
terminal states. `interrupted` is the one ending without a record: the trainer checkpointed on
SIGTERM (exit 75) and the same run started again resumes. The trainer exits with these codes
and the executors read them back here, one table for both sides.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.DIVERGED, RunStatus.FAILED})

# The trainer's exit codes (docs/trainer.md): 0 succeeded, 2 bad configuration, 3 diverged,
# 4 failed, 75 SIGTERM with a checkpoint written (EX_TEMPFAIL: start it again to resume).
EXIT_OK, EXIT_BAD_CONFIG, EXIT_DIVERGED, EXIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 4, 75


def status_of_exit(code: int) -> RunStatus:
    """How a trainer process's exit code reads; any code it does not define is a failure
    (killed by a signal, crashed before it could write a record)."""
    if code == EXIT_OK:
        return RunStatus.SUCCEEDED
    if code == EXIT_DIVERGED:
        return RunStatus.DIVERGED
    if code == EXIT_INTERRUPTED:
        return RunStatus.INTERRUPTED
    return RunStatus.FAILED


def reads_succeeded(value: object) -> bool:
    """Whether a status value reads succeeded: the project's one definition. Case and spaces
    are forgiven (results tables also come from users' CSV files); a missing status is a run
    with no record, which does not count."""
    return isinstance(value, str) and value.strip().lower() == RunStatus.SUCCEEDED
