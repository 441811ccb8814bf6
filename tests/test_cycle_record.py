"""A cycle's backfill entry (the Runs page's grouping, written through Dagster internals) is bookkeeping: when it
cannot be written the cycle's own outcome stands, with a warning in the run log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from d365_snow_assets.commands import runs
from d365_snow_assets.settings import load_settings
from tests.test_settings import BASE


def test_a_backfill_entry_that_cannot_be_written_leaves_the_cycle_as_it_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("D365SNOW_HOME", str(tmp_path / "home"))
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()

    def unwritable(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a Dagster internal changed")

    monkeypatch.setattr(runs, "record_cycle", unwritable)
    with caplog.at_level(logging.WARNING, logger=runs.RUN_LOGGER):
        outcomes = runs.run_cycle(settings, runs.open_instance(settings), push=True, fno_to_snow=False,
                                  invoices=False, cycle_id="cycle-1")
    assert outcomes == []
    assert "the cycle's entry on the Runs page was not written: RuntimeError" in caplog.text
