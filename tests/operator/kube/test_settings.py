"""The operator's settings: parsed once from the chart's environment (and flags), never read
by the kube package itself."""

from __future__ import annotations

import pytest

from stagescreen.study.spec import Pool
from stagescreen_operator.kube.settings import Settings


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Settings()),
        (
            {
                "STAGESCREEN_ANALYSIS_IMAGE": "op:2",
                "STAGESCREEN_ANALYSIS_SERVICE_ACCOUNT": "sa",
                "STAGESCREEN_VOCAB": "4096",
                "STAGESCREEN_POOLS": '[{"name": "a100", "gpus": 8}]',
                "STAGESCREEN_RECONCILE_S": "2",
                "STAGESCREEN_METRICS_PORT": "8000",
            },
            Settings(
                analysis_image="op:2",
                analysis_service_account="sa",
                vocab=4096,
                pools=(Pool(name="a100", gpus=8),),
                reconcile_s=2.0,
                metrics_port=8000,
            ),
        ),
        (
            {
                "STAGESCREEN_WEBHOOK_PORT": "9443",
                "STAGESCREEN_WEBHOOK_CERT": "/c",
                "STAGESCREEN_WEBHOOK_KEY": "/k",
                "STAGESCREEN_WEBHOOK_INSECURE": "1",
            },
            Settings(webhook_port=9443, webhook_cert="/c", webhook_key="/k", webhook_insecure=True),
        ),
        ({"STAGESCREEN_METRICS_PORT": "", "STAGESCREEN_WEBHOOK_PORT": ""}, Settings()),
    ],
)
def test_settings_from_the_charts_environment(environ: dict[str, str], expected: Settings) -> None:
    assert Settings.from_env(environ) == expected


def test_importing_the_handlers_reads_no_environment_and_registers_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    import kopf

    from stagescreen_operator.kube import handlers

    monkeypatch.setenv("STAGESCREEN_RECONCILE_S", "not a number")  # would fail if read
    monkeypatch.setattr(kopf, "on", None)  # any decorator used at import would fail
    importlib.reload(handlers)
