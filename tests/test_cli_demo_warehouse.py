"""The demo keeps its warehouse open for its cycles (warehouse.db.held_open): its transactions then share one DuckDB
database instead of building one each, commit and roll back as before, and the file is free again afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from d365_snow_assets.warehouse import Warehouse, db
from d365_snow_assets.warehouse.db import held_open

READ_ELSEWHERE = ("import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True)"
                  ".execute('SELECT count(*) FROM t').fetchone()[0])")


def _other_process_reads(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", READ_ELSEWHERE, str(path)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_transactions_in_a_held_warehouse_share_one_database_and_commit_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.writer() as con:
        con.execute("CREATE TABLE t (n INTEGER)")
    opened: list[str] = []
    real_connect = duckdb.connect
    monkeypatch.setattr(db.duckdb, "connect", lambda *a, **k: opened.append(str(a[0])) or real_connect(*a, **k))

    with held_open(warehouse.path):
        for n in range(3):
            with warehouse.writer() as con:
                con.execute("INSERT INTO t VALUES (?)", [n])
        with pytest.raises(RuntimeError), warehouse.writer() as con:
            con.execute("INSERT INTO t VALUES (99)")
            raise RuntimeError("a failed step")  # rolled back, as without the hold
        with warehouse.reader() as con:
            assert con.execute("SELECT list(n ORDER BY n) FROM t").fetchone()[0] == [0, 1, 2]
        # Nobody else may use the file meanwhile: that is why only the demo, on its own home, holds it.
        assert _other_process_reads(warehouse.path).returncode != 0

    assert opened == [str(warehouse.path.resolve())]  # the hold's own connection, and none per transaction
    done = _other_process_reads(warehouse.path)
    assert (done.returncode, done.stdout.strip()) == (0, "3")  # released, everything committed
