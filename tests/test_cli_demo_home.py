"""`d365-snow demo --home PATH` deletes only a directory an earlier demo created (DESIGN §7.1: nothing of the user's
is deleted)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.commands.demo import MARKER, claim_home


def test_demo_refuses_a_home_that_holds_the_users_files(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "d365snow.toml").write_text('legal_entities = "usmf"\n')
    (project / "src").mkdir()
    (project / "src" / "mine.py").write_text("print('mine')\n")

    result = CliRunner().invoke(app, ["demo", "--home", str(project), "--small"], catch_exceptions=False)

    assert result.exit_code == 2
    assert "nothing was deleted" in " ".join(result.output.split())
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*")) == ["d365snow.toml", "src",
                                                                                    "src/mine.py"]


def test_a_home_the_demo_created_is_wiped_and_reused_and_a_file_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    assert claim_home(home) is None
    (home / "warehouse.duckdb").write_text("old run")
    assert claim_home(home) is None  # the demo's own: wiped
    assert sorted(p.name for p in home.iterdir()) == [MARKER]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_home(empty) is None and (empty / MARKER).is_file()

    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    assert claim_home(a_file) is not None and a_file.read_text() == "keep"
    link = tmp_path / "link"
    link.symlink_to(home)
    assert claim_home(link) is not None and (home / MARKER).is_file()
