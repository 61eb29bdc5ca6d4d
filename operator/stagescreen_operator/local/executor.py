"""The local executor: a study on one machine, trainer subprocesses and the store.

It loops observe -> decide -> act. What it observes is storage (run records, published stage
outcomes, checkpoints) and its own child processes; what to do comes from the one controller
(`stagescreen_operator.controller.decide`, through `snapshot`); acting is starting a trainer
process, publishing a stage's analysis, and, at the end, the report. It keeps nothing that
storage does not hold, so a killed `stagescreen run` started again finds finished runs
finished, resumes interrupted ones from their checkpoints and plans exactly the same runs.

On CPU each trainer process gets THREADS = its share of the cores and is pinned to those
cores, so two runs on two cores do not fight over them; on CUDA each gets one GPU of its own
(CUDA_VISIBLE_DEVICES), one run per GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stagescreen.outcomes.model import StageOutcome
from stagescreen.outcomes.status import StudyStatus, stage_summary
from stagescreen.planning.environment import run_environment, run_folder
from stagescreen.planning.plans import PlannedRun
from stagescreen.planning.results import failure_record
from stagescreen.reports.report import write_report
from stagescreen.storage.keys import RESULT, StudyKeys
from stagescreen.storage.publish import publish_record, publish_spec, publish_stage
from stagescreen.storage.store import Store
from stagescreen.study.spec import Study
from stagescreen_contract.record import RunRecord
from stagescreen_contract.status import RunStatus, status_of_exit
from stagescreen_operator.controller import AnalyseStage, Decision, StartRun
from stagescreen_operator.snapshot import Snapshot, snapshot

POLL_S = 0.5
PROGRESS_EVERY_S = 2.0  # trainer progress lines, read by the live display


@dataclass
class Child:
    """A trainer process and what it was started for."""

    run: PlannedRun
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float
    gpu: str | None = None  # the CUDA device it runs on


@dataclass
class Events:
    """Where the executor reports what it does (progress display or plain lines)."""

    say: Callable[[str], None] = print
    tick: Callable[[Decision, StudyStatus, Mapping[str, Child]], None] = lambda *_: None
    close: Callable[[], None] = lambda: None


@dataclass
class LocalExecutor:
    study: Study
    store: Store
    corpus: Mapping[str, str]
    workers: int = 1
    device: str = "cpu"
    gpus: Sequence[str] = ()  # CUDA device ids, one run on each at a time
    events: Events = field(default_factory=Events)
    extra_env: Mapping[str, str] = field(default_factory=dict)  # e.g. the S3 endpoint

    def __post_init__(self) -> None:
        # each trainer's console, for a run that ends without a record to say why
        self.logs = Path.home() / ".cache" / "stagescreen" / "logs" / self.study.metadata.name
        self.keys = StudyKeys(self.study.metadata.name)
        self.children: dict[str, Child] = {}
        self.records: dict[str, RunRecord] = {}
        self.outcomes: dict[str, StageOutcome] = {}
        self.stopping = False

    # --- observe ------------------------------------------------------------------------
    def look(self) -> Snapshot:
        """The study as the store holds it, with this executor's live processes running."""
        return snapshot(
            self.store,
            self.study,
            running=frozenset(self.children),
            records=self.records,
            outcomes=self.outcomes,
        )

    # --- act ----------------------------------------------------------------------------
    def start(self, action: StartRun) -> None:
        run = action.run
        env = run_environment(
            self.study.spec,
            self.study.metadata.name,
            run,
            self.store.uri(run_folder(self.study.metadata.name, run)),
            self.corpus,
        )
        cores = self._cores(len(self.children))
        gpu = self._free_gpu()
        env.update(self.extra_env)
        env.update(DEVICE=self.device, THREADS=str(len(cores)))
        env.setdefault("PROGRESS_EVERY", str(PROGRESS_EVERY_S))
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{run.run_id}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "stagescreen_trainer"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the executor, which stops runs cleanly
            preexec_fn=lambda: _child_setup(cores),
        )
        self.children[run.run_id] = Child(run, process, log, time.monotonic(), gpu)
        how = "resume" if action.resume else "start"
        where = f"GPU {gpu}" if gpu is not None else f"threads {len(cores) or 'default'}"
        self.events.say(f"{how} {run.run_id} ({where})")

    def _free_gpu(self) -> str | None:
        """A CUDA device no running child holds (the controller starts at most one per GPU)."""
        taken = {child.gpu for child in self.children.values()}
        return next((gpu for gpu in self.gpus if gpu not in taken), None)

    def _cores(self, slot: int) -> list[int]:
        """The cores of worker slot `slot`: an equal share of this process's cores."""
        if self.device != "cpu" or not hasattr(os, "sched_getaffinity"):
            return []
        available = sorted(os.sched_getaffinity(0))
        share = max(1, len(available) // self.workers)
        taken = {c for child in self.children.values() for c in self._cores_of(child)}
        free = [c for c in available if c not in taken] or available
        return free[:share]

    def _cores_of(self, child: Child) -> set[int]:
        try:
            return set(os.sched_getaffinity(child.process.pid))
        except OSError:
            return set()

    def reap(self) -> None:
        """Collect ended processes; an ending without a record gets one, so it is not rerun."""
        for run_id, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                continue
            child.log.close()
            del self.children[run_id]
            status = status_of_exit(code)
            if status == RunStatus.INTERRUPTED or self.stopping:  # its checkpoint is stored
                self.events.say(f"interrupted {run_id}: checkpointed, resumes next time")
                continue
            key = self.keys.run(run_id, RESULT)
            if not self.store.exists(key):
                self._record_crash(child, code)
            record = RunRecord.model_validate(self.store.get_json(key))
            self.records[run_id] = record
            self.events.say(_ended_line(run_id, record, time.monotonic() - child.started))

    def _record_crash(self, child: Child, code: int) -> None:
        """The trainer died without writing its record (killed, crashed in start-up)."""
        reason = f"trainer exited with code {code} and wrote no record; see {child.log.name}"
        record = failure_record(
            self.study.metadata.name, child.run, reason, time.monotonic() - child.started
        )
        publish_record(self.store, record)

    def analyse(self, action: AnalyseStage, decision: Decision) -> None:
        record = publish_stage(self.store, self.study, action.stage, decision.results)
        self.outcomes[action.stage] = record
        self.events.say(f"analysed stage {action.stage}: {stage_summary(record)}")

    # --- the loop -----------------------------------------------------------------------
    def run(self) -> Decision:
        """Until the study ends or Ctrl-C: observe, decide, act. Returns the last decision."""
        publish_spec(self.store, self.study)
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            while True:
                self.reap()
                seen = self.look()
                decision = seen.decision
                self.events.tick(decision, seen.status, self.children)
                if self.stopping:
                    self._stop_children()
                    return decision
                for action in decision.actions:
                    if isinstance(action, AnalyseStage):
                        self.analyse(action, decision)
                    elif action.run.run_id not in self.children:
                        self.start(action)
                if decision.ended and not self.children:
                    if decision.phase == "Succeeded":
                        self._report()
                    return decision
                if not decision.actions:
                    time.sleep(POLL_S)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _stop_children(self) -> None:
        """SIGTERM every trainer (each checkpoints and exits 75), then wait for them."""
        for child in self.children.values():
            child.process.send_signal(signal.SIGTERM)
        for child in self.children.values():
            child.process.wait()
        self.reap()

    def _report(self) -> None:
        written = write_report(self.store, self.study.metadata.name)
        self.events.say(f"report: {written[0]}")


def _ended_line(run_id: str, record: RunRecord, wall: float) -> str:
    status, value = record.status, record.val_bpb
    shown = f"val_bpb {value:.4f}" if value is not None else str(record.reason)
    return f"{status} {run_id}: {shown} ({wall:.0f} s)"


def _child_setup(cores: list[int]) -> None:
    """In the child before exec: pin it to its cores, and have the kernel send it SIGTERM
    (checkpoint, exit 75) should the executor die, even by SIGKILL, so no run is orphaned."""
    if cores:
        os.sched_setaffinity(0, cores)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1
