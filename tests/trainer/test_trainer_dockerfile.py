"""The trainer image's Dockerfile: hadolint-clean, non-root, the trainer as its entry point."""

from __future__ import annotations

import re
from pathlib import Path

from binaries import Tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.trainer"


def test_hadolint_finds_nothing(hadolint: Tool) -> None:
    done = hadolint(str(DOCKERFILE), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_final_stage_runs_the_trainer_unprivileged_with_a_compiler_and_without_pip() -> None:
    final = DOCKERFILE.read_text().split("\nFROM ")[-1]
    assert final.startswith("${BASE_IMAGE}")
    assert "USER 10001" in final and "USER root" not in final
    assert 'ENTRYPOINT ["python", "-m", "stagescreen_trainer"]' in final
    assert "pip install" not in final
    # torch.compile needs a C compiler at run time (Triton's launcher, Inductor's CPU kernels)
    assert re.search(r"apt-get install -y --no-install-recommends gcc g\+\+ libc6-dev", final)
    assert "rm -rf /var/lib/apt/lists/*" in final
    assert "COPY trainer-image/stagescreen_trainer" in final
    # the run contract, beside the trainer on its PYTHONPATH
    assert "COPY contract/stagescreen_contract /opt/trainer/stagescreen_contract" in final
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11[\d.]*-slim-\w+", base[1])


def test_image_torch_is_the_release_the_project_pins() -> None:
    """The image must train with the torch the tests ran, not whatever a base image ships."""
    pinned = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    in_image = re.search(r'"torch==([\d.]+)"', DOCKERFILE.read_text())
    assert pinned and in_image and in_image[1] == pinned[1]
