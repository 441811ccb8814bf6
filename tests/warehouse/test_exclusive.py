"""The named cross-process lock beside the warehouse: a second process waits and hears who holds it, gives up with
a clear error after its timeout, and takes over at once when the holder is SIGKILLed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from d365_snow_assets.warehouse import ExclusiveBusy, Warehouse
from d365_snow_assets.warehouse.exclusive import lock_path

_HOLD = """
import sys
from d365_snow_assets.warehouse import Warehouse
with Warehouse(sys.argv[1]).exclusive("invoice-posting-usmf", "run 1234", timeout=5):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "warehouse.duckdb")], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def test_a_second_process_hears_who_holds_the_lock_and_gives_up_with_a_clear_error(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    waits: list[tuple[str, float]] = []
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    held_by = r"run 1234 \(since \d\d:\d\d:\d\d UTC\)"
    with pytest.raises(ExclusiveBusy, match=held_by + " still held .*invoice-posting-usmf"), \
            wh.exclusive("invoice-posting-usmf", "run 5678", timeout=0.5, on_wait=lambda o, s: waits.append((o, s))):
        pytest.fail("the lock was taken while another process held it")
    assert waits and re.fullmatch(held_by, waits[0][0])
    # Other names are other locks.
    with wh.exclusive("invoice-posting-demf", "run 5678", timeout=0.5):
        pass


def test_a_killed_holder_releases_the_lock_at_once(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    waits: list[tuple[str, float]] = []
    with Warehouse(tmp_path / "warehouse.duckdb").exclusive("invoice-posting-usmf", "run 5678", timeout=30,
                                                            on_wait=lambda o, s: waits.append((o, s))):
        pass
    assert waits == []  # taken by the first, non-blocking attempt: the kernel freed it with the process


def test_lock_names_cannot_leave_the_warehouse_directory(tmp_path: Path) -> None:
    for bad in ("../x", "USMF", "a b", ""):
        with pytest.raises(ValueError, match="lock name"):
            lock_path(tmp_path / "warehouse.duckdb", bad)
