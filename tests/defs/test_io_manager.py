"""Step outputs are replaced atomically: a run reading the poll or a plan while another run of the same partition
writes it gets the previous output whole, never a torn one."""

from __future__ import annotations

import pickle
from pathlib import Path

import dagster as dg
from upath import UPath

from d365_snow_assets.definitions import defs
from d365_snow_assets.defs.io_manager import AtomicFilesystemIOManager, AtomicPickleIOManager


def test_a_reader_of_the_previous_output_keeps_it_whole_while_a_new_one_is_written(tmp_path: Path) -> None:
    manager = AtomicPickleIOManager(base_path=UPath(tmp_path))
    path = UPath(tmp_path) / "servicenow_in" / "usmf"
    manager.dump_to_path(dg.build_output_context(), {"headers": ["a"] * 1000}, path)
    with path.open("rb") as reading:  # another run has just opened the previous output
        manager.dump_to_path(dg.build_output_context(), {"headers": ["b"]}, path)
        assert pickle.load(reading) == {"headers": ["a"] * 1000}
    assert manager.load_from_path(dg.build_input_context(), path) == {"headers": ["b"]}
    assert [p.name for p in (tmp_path / "servicenow_in").iterdir()] == ["usmf"]  # no temporary file left


def test_the_code_location_uses_it() -> None:
    assert isinstance(defs().resources["io_manager"], AtomicFilesystemIOManager)
