"""Help pages read well in an 80-column terminal and say where the settings come from."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app

PAGES = [[], ["sync"], ["plan"], ["ping"], ["trace"], ["replay"], ["demo"], ["credentials"], ["credentials", "set"],
         ["credentials", "show"], ["credentials", "unset"], ["credentials", "rotate"], ["sandbox"],
         ["sandbox", "serve"], ["events"], ["events", "serve"]]


def _help(*args: str, flag: str = "-h") -> str:
    result = CliRunner().invoke(app, [*args, flag], env={"COLUMNS": "80"}, prog_name="d365-snow")
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("page", PAGES, ids=lambda p: " ".join(p) or "d365-snow")
def test_every_help_page(page):
    text = _help(*page)
    assert text == _help(*page, flag="--help")
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "<bool>" not in text  # flags take no value
    assert "--no-" not in text or "--no-live" in text  # no negation that means nothing
    flat = " ".join(text.replace("│", " ").split())
    assert "D365SNOW_CONFIG" in flat and "./d365snow.toml" in flat and "Exit codes: 0 done" in flat


def test_arguments_are_shown_by_name():
    assert "Usage: d365-snow trace [OPTIONS] KEY" in _help("trace")
    assert "{key}" not in _help("trace")
    assert "Usage: d365-snow credentials set [OPTIONS] NAME..." in _help("credentials", "set")
    assert "Usage: d365-snow [OPTIONS] COMMAND [ARGS]..." in _help()


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"d365-snow {version('d365-snow-assets')}\n"
