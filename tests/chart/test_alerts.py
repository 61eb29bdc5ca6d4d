"""The alerts the chart ships: valid rules, and each one fires when it must and only then
(`promtool test rules` over tests/alerts/alerts_test.yaml)."""

from __future__ import annotations

from pathlib import Path

from binaries import Tool

ROOT = Path(__file__).resolve().parents[2]
ALERT_TESTS = ROOT / "tests" / "alerts" / "alerts_test.yaml"
RULES = ROOT / "charts" / "stagescreen" / "files" / "alerts.yaml"


def test_the_rules_are_valid(promtool: Tool) -> None:
    done = promtool("check", "rules", str(RULES), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_every_alert_fires_when_it_must_and_only_then(promtool: Tool) -> None:
    done = promtool(
        "test", "rules", str(ROOT / "tests" / "alerts" / "alerts_test.yaml"), check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested_and_has_a_runbook() -> None:
    import yaml

    alerts = [
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]
    tests = (ROOT / "tests" / "alerts" / "alerts_test.yaml").read_text()
    runbook = (ROOT / "docs" / "operations.md").read_text().lower()
    for alert in alerts:
        assert f"alertname: {alert}" in tests, alert
        anchor = alert.removeprefix("StageScreen").lower()
        assert f'<a id="{anchor}"></a>' in runbook, alert
