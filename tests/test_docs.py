"""The docs run as written (issue 11).

A fenced block whose info string is `sh runnable` is a promise that its lines run, in order,
on a clean clone after `make install`, in seconds, with no GPU, cluster, credentials or
network:

    ```sh runnable
    stagescreen validate examples/paper.yaml
    ```

GitHub renders it as any `sh` block (only the first word of the info string names the
language). Each such block in README.md and docs/*.md runs under `bash -euo pipefail` in a
fresh directory holding copies of what the commands read from a clone (SHIPPED) and a link
to `.venv`, with `.venv/bin` first on PATH, and must exit 0. Blocks that train models for
minutes (`make demo`, `stagescreen run`, the trainer), or need a cluster or S3, stay plain
`sh`.

Every `stagescreen <command>` the docs mention, in a code block or a code span, must also
name a real command, and the flags written after it must be among that command's options.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagescreen_operator.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# What runnable blocks may read from a clone; a block that needs more adds it here.
SHIPPED = ["examples", "tests/data"]
BLOCK_TIMEOUT_S = 120

FENCE = re.compile(r"^ *(?P<fence>`{3,})(?P<info>[^`\n]*)$")
# `stagescreen` opening a line (after `$ ` or a path ending in bin/) or a code span, then its
# command and the rest of that command up to the end of the line or span or a `#` comment.
MENTION = re.compile(
    r"(?:^[ \t]*(?:\$[ \t]+)?|`)(?:\S*bin/)?stagescreen\s+"
    r"(?P<command>[a-z][a-z-]*)(?P<rest>[^`\n#]*)",
    re.MULTILINE,
)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


@dataclass(frozen=True)
class Block:
    """One fenced block: the file, the line of its opening fence, its info string and body."""

    path: Path
    line: int
    info: str
    body: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.info.split()[1:2] == ["runnable"]


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, its body dedented (blocks inside list items)."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    opening: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if opening is None:
            if match:
                opening = (number, match["fence"], match["info"].strip())
                body = []
        elif match and match["fence"] == opening[1] and not match["info"].strip():
            blocks.append(Block(path, opening[0], opening[2], textwrap.dedent("\n".join(body))))
            opening = None
        else:
            body.append(line)
    assert opening is None, f"{path.name}:{opening[0]}: fenced block never closed"
    return blocks


RUNNABLE = [block for path in DOCS for block in fenced_blocks(path) if block.runnable]


def test_the_readme_and_the_docs_have_runnable_blocks() -> None:
    runnable_files = {block.path.name for block in RUNNABLE}
    assert {"README.md", "analysis.md", "running.md"} <= runnable_files


@pytest.fixture
def clean_clone(tmp_path: Path) -> Path:
    """A fresh directory holding what a clone ships to the docs' commands, and the venv."""
    for shipped in SHIPPED:
        shutil.copytree(ROOT / shipped, tmp_path / shipped)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_runnable_block_runs_as_written_on_a_clean_clone(block: Block, clean_clone: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    completed = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{block.body}"],
        cwd=clean_clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert completed.returncode == 0, (
        f"{block.name} exited {completed.returncode}\n{completed.stdout[-3000:]}"
        f"\n{completed.stderr[-3000:]}"
    )


def mentions(text: str) -> list[tuple[str, list[str]]]:
    """(command, flags) for every `stagescreen <command> ...` in a Markdown text."""
    joined = text.replace("\\\n", " ")  # a shell line continued with a backslash is one line
    return [(m["command"], FLAG.findall(m["rest"])) for m in MENTION.finditer(joined)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stagescreen plan examples/paper.yaml --overhead 90s", [("plan", ["--overhead"])]),
        ("`stagescreen\n  analyse` runs", [("analyse", [])]),
        ("$ .venv/bin/stagescreen effects r.csv --by budget_s", [("effects", ["--by"])]),
        (
            "stagescreen effects r.csv \\\n    --block seed  # or --lenth",
            [("effects", ["--block"])],
        ),
        ("`stagescreen effects --combined-fdr` pools", [("effects", ["--combined-fdr"])]),
        ("helm install stagescreen charts/stagescreen -n stagescreen", []),
        ("`kubectl -n stagescreen get pods`", []),
        ("`stagescreen_trainer` (in `trainer-image/`)", []),
    ],
)
def test_mentions_are_read_from_code_not_from_helm_or_kubectl(
    text: str, expected: list[tuple[str, list[str]]]
) -> None:
    assert mentions(text) == expected


MENTIONED = sorted(
    {
        (path.relative_to(ROOT).as_posix(), command, tuple(flags))
        for path in DOCS
        for command, flags in mentions(path.read_text())
    }
)


@pytest.mark.parametrize(
    ("doc", "command", "flags"),
    MENTIONED,
    ids=[
        f"{doc}:{command}{''.join(' ' + flag for flag in flags)}"
        for doc, command, flags in MENTIONED
    ],
)
def test_every_command_the_docs_mention_exists_with_its_flags(
    doc: str, command: str, flags: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, f"{doc}: `stagescreen {command}` is not a command"
    unknown = [flag for flag in flags if flag not in FLAG.findall(result.output)]
    assert not unknown, f"{doc}: `stagescreen {command}` has no option {', '.join(unknown)}"


def tiny_trainer_command(path: Path) -> str:
    """The one block of a page that runs the trainer itself (not only `prepare`)."""
    trains = re.compile(r"-m stagescreen_trainer$", re.MULTILINE)
    (body,) = [block.body for block in fenced_blocks(path) if trains.search(block.body)]
    return body


def test_the_readme_and_the_trainer_page_give_the_same_tiny_trainer_command() -> None:
    assert tiny_trainer_command(ROOT / "README.md") == tiny_trainer_command(
        ROOT / "docs" / "trainer.md"
    )
