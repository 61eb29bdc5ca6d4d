"""What the operator is configured with: parsed once, by `stagescreen operator` from its flags
and the environment the chart sets, and handed to the handlers' registry and memo.

Nothing in the kube package reads the environment itself: a test builds a `Settings` and an
operator from it, and two operators in one process can differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stagescreen.study.spec import Pool
from stagescreen_contract.variables import CORPUS_VOCAB
from stagescreen_operator.kube.jobs import DEADLINE_MARGIN_S
from stagescreen_operator.kube.pools import cluster_pools


@dataclass(frozen=True)
class Settings:
    """The operator's configuration (chart values, `stagescreen operator` flags)."""

    analysis_image: str = "stagescreen-operator:dev"  # image of the analysis Jobs
    analysis_service_account: str = "stagescreen-analysis"  # what the analysis Jobs run as
    vocab: int = CORPUS_VOCAB  # of the prepared corpus, when a spec names none
    pools: tuple[Pool, ...] = ()  # the cluster's pools (chart value `pools`)
    reconcile_s: float = 15.0  # a study is looked at this often; a failed handler retried
    metrics_port: int | None = None  # serve /metrics here
    webhook_port: int | None = None  # serve the validating admission webhook here
    webhook_cert: str | None = None
    webhook_key: str | None = None
    webhook_insecure: bool = False  # plain HTTP: tests only
    # A run Job whose pod has not started this long after the Job did (no node yet, an image
    # pull, a quota) is replaced, up to `start_attempts` Jobs, then recorded failed: waiting
    # for infrastructure is not the recipe's fault, and never counts against its deadline.
    startup_allowance_s: int = 1800
    start_attempts: int = 3
    deadline_margin_s: int = DEADLINE_MARGIN_S  # compile and warm-up, beyond the budget

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """The settings the chart's environment variables give: STAGESCREEN_ANALYSIS_IMAGE,
        _ANALYSIS_SERVICE_ACCOUNT, _VOCAB, _POOLS (JSON), _RECONCILE_S, _METRICS_PORT,
        _WEBHOOK_PORT, _WEBHOOK_CERT, _WEBHOOK_KEY, _WEBHOOK_INSECURE, _STARTUP_ALLOWANCE_S,
        _START_ATTEMPTS, _DEADLINE_MARGIN_S; unset: the defaults."""

        def port(name: str) -> int | None:
            value = environ.get(name)
            return int(value) if value else None

        return cls(
            analysis_image=environ.get("STAGESCREEN_ANALYSIS_IMAGE", cls.analysis_image),
            analysis_service_account=environ.get(
                "STAGESCREEN_ANALYSIS_SERVICE_ACCOUNT", cls.analysis_service_account
            ),
            vocab=int(environ.get("STAGESCREEN_VOCAB", cls.vocab)),
            pools=cluster_pools(environ.get("STAGESCREEN_POOLS")),
            reconcile_s=float(environ.get("STAGESCREEN_RECONCILE_S", cls.reconcile_s)),
            metrics_port=port("STAGESCREEN_METRICS_PORT"),
            webhook_port=port("STAGESCREEN_WEBHOOK_PORT"),
            webhook_cert=environ.get("STAGESCREEN_WEBHOOK_CERT"),
            webhook_key=environ.get("STAGESCREEN_WEBHOOK_KEY"),
            webhook_insecure=environ.get("STAGESCREEN_WEBHOOK_INSECURE") == "1",
            startup_allowance_s=int(
                environ.get("STAGESCREEN_STARTUP_ALLOWANCE_S", cls.startup_allowance_s)
            ),
            start_attempts=int(environ.get("STAGESCREEN_START_ATTEMPTS", cls.start_attempts)),
            deadline_margin_s=int(
                environ.get("STAGESCREEN_DEADLINE_MARGIN_S", cls.deadline_margin_s)
            ),
        )
