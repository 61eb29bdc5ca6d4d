"""`--help` teaches: every command lists its arguments and options by readable metavars."""

from __future__ import annotations

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
