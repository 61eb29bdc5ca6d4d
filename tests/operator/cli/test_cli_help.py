"""`--help` teaches: every command lists its arguments and options by readable metavars."""

from __future__ import annotations

import inspect
import re

import pytest
from typer.testing import CliRunner

from stagescreen_operator.cli import COMMANDS, app

runner = CliRunner()
PYTHON_TYPE = re.compile(r"<(str|int|float|path|bool|list\[[^>]*\])[^>]*>")


@pytest.mark.parametrize("command", [c.__name__ for c in COMMANDS])
def test_help_shows_metavars_not_python_types(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert PYTHON_TYPE.search(result.stdout) is None, result.stdout


@pytest.mark.parametrize("command", [[], *([c.__name__] for c in COMMANDS)])
def test_h_is_help_everywhere(command: list[str]) -> None:
    short = runner.invoke(app, [*command, "-h"], terminal_width=100)
    assert short.exit_code == 0, short.output
    assert short.stdout == runner.invoke(app, [*command, "--help"], terminal_width=100).stdout


def test_the_command_list_shows_every_summary_whole_on_one_line() -> None:
    """Each command's summary is the first paragraph of its docstring, short enough for one
    line of an 80-column terminal, and never cut off with '...'."""
    result = runner.invoke(app, ["--help"], terminal_width=80)
    listed = result.stdout.split("Commands:\n")[1].splitlines()
    assert len(listed) == len(COMMANDS)
    for line, command in zip(listed, COMMANDS, strict=True):
        summary = inspect.cleandoc(command.__doc__ or "").partition("\n\n")[0]
        assert "\n" not in summary and summary.endswith(".")
        assert line.split(maxsplit=1) == [command.__name__, summary]
