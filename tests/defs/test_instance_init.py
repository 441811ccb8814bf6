"""Several CLI processes opening the same brand-new Dagster instance at once all succeed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.settings import load_settings
instance = open_instance(load_settings(require=None))
print(instance.get_runs_count())
"""


def test_concurrent_first_opens_of_an_instance_do_not_race(tmp_path: Path) -> None:
    env = {**os.environ, "D365SNOW_HOME": str(tmp_path / "home")}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p, *p.communicate(timeout=120)) for p in procs]
    failures = [err[-2000:] for p, _out, err in results if p.returncode != 0]
    assert not failures, failures[0]
    assert [out.strip() for _p, out, _err in results] == ["0"] * 6
