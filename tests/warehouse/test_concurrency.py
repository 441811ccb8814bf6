import multiprocessing as mp

import duckdb
import polars as pl

from d365_snow_assets.warehouse import Warehouse

ROUNDS = 15


def _writer(path: str, worker: int, barrier) -> None:
    wh = Warehouse(path)
    barrier.wait()
    for i in range(ROUNDS):
        wh.write_audit(pl.DataFrame({"run_id": [f"run-{worker}"], "business_key": [f"{worker}-{i}"],
                                     "outcome": ["inserted"]}))
        wh.set_cursor(f"cursor-{worker}", i)
        wh.write_snapshot("VendorsV2", f"le{worker}", [[{"dataAreaId": f"le{worker}", "VendorAccountNumber": "V1",
                                                          "N": i}]], ["dataAreaId", "VendorAccountNumber"])


def test_two_writer_processes_both_succeed(tmp_path):
    path = str(tmp_path / "wh.duckdb")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    wh = Warehouse(path)
    for w in (1, 2):
        assert wh.outcome_counts(f"run-{w}") == {"inserted": ROUNDS}
        assert wh.get_cursor(f"cursor-{w}") == ROUNDS - 1
        assert wh.read_snapshot("VendorsV2", [f"le{w}"]).get_column("N").to_list() == [ROUNDS - 1]


def _outsider(path: str, ready, release) -> None:
    con = duckdb.connect(path)  # a process that ignores the file lock, like a DuckDB CLI session
    ready.set()
    release.wait(30)
    con.close()


def test_connect_retries_while_duckdb_lock_is_held(tmp_path):
    path = str(tmp_path / "wh.duckdb")
    Warehouse(path).set_cursor("x", 1)
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_outsider, args=(path, ready, release))
    proc.start()
    assert ready.wait(30)
    import threading
    threading.Timer(1.0, release.set).start()
    assert Warehouse(path).get_cursor("x") == 1  # waited for the outsider instead of failing
    proc.join(30)
