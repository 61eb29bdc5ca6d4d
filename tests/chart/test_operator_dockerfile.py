"""The operator image's Dockerfile: hadolint-clean, non-root, no compiler, `stagescreen` as
its entry point (the operator by default; analysis Jobs pass `analyse ...`)."""

from __future__ import annotations

from pathlib import Path

from binaries import Tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.operator"


def test_hadolint_finds_nothing(hadolint: Tool) -> None:
    done = hadolint(str(DOCKERFILE), check=False)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_final_stage_is_unprivileged_without_a_compiler_or_the_trainer_stack() -> None:
    text = DOCKERFILE.read_text()
    final = text.split("\nFROM ")[-1]
    assert "USER 10001" in final and "USER root" not in final
    assert 'ENTRYPOINT ["stagescreen"]' in final and 'CMD ["operator"]' in final
    assert "pip install" not in final and "apt-get" not in text
    assert '".[operator]"' in text and "torch" not in text.replace("No torch", "")
    assert "COPY contract contract" in text  # the run contract, a package of the wheel


def test_the_chart_runs_the_image_as_the_operator_and_its_analyses() -> None:
    deployment = (ROOT / "charts" / "stagescreen" / "templates" / "deployment.yaml").read_text()
    assert "- operator" in deployment and "STAGESCREEN_ANALYSIS_IMAGE" in deployment
