from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
import pytest

from d365_snow_assets.warehouse import Warehouse
from d365_snow_assets.warehouse.audit import purge_audit

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def rec(key, outcome, at, run="r1", attempt=1, **over):
    row = {"run_id": run, "asset_key": "snow/suppliers", "partition": "usmf", "direction": "d365_to_snow",
           "entity": "VendorsV2", "business_key": key, "payload": {"supplier_code": key, "name": "O'Brien ^ \"x\""},
           "target": "sn_fin_supplier", "target_id": None, "http_status": 200, "outcome": outcome,
           "message": None, "attempt": attempt, "at": at}
    row.update(over)
    return row


def test_queries_trace_replay_counts(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    wh.write_audit([
        rec("K1", "inserted", T0),
        rec("K2", "error", T0, http_status=500, message="boom"),
        rec("K3", "error", T0),
        rec("K4", "rejected", T0),
    ])
    wh.write_audit([rec("K3", "updated", T0 + timedelta(hours=1), run="r2", attempt=2),
                    rec("K5", "error", T0 + timedelta(hours=2), run="r2")])
    assert wh.outcome_counts("r1") == {"error": 2, "inserted": 1, "rejected": 1}
    assert wh.outcome_counts("r2", "snow/suppliers") == {"error": 1, "updated": 1}
    assert wh.audit_for_run("r1").height == 4
    trace = wh.audit_for_key("K3")
    assert trace.get_column("outcome").to_list() == ["error", "updated"]
    assert orjson.loads(trace.get_column("payload")[0]) == {"name": "O'Brien ^ \"x\"", "supplier_code": "K3"}
    assert trace.get_column("payload_hash")[0]  # defaulted to md5 of the payload

    assert wh.failed_records().get_column("business_key").to_list() == ["K2", "K5"]
    assert wh.failed_records(run_id="r1").get_column("business_key").to_list() == ["K2"]
    assert wh.failed_records(business_key="K5").get_column("attempt").to_list() == [1]
    assert wh.failed_records(since=T0 + timedelta(minutes=30)).get_column("business_key").to_list() == ["K5"]


def test_the_latest_row_of_a_record_decides_whatever_the_filter(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    wh.write_audit([rec("K1", "error", T0, payload={"name": "old"}), rec("K2", "error", T0),
                    rec("K3", "error", T0), rec("K4", "error", T0)])
    wh.write_audit([
        rec("K1", "error", T0 + timedelta(hours=1), run="r2", payload={"name": "newer"}),  # failed again, newer
        rec("K2", "rejected", T0 + timedelta(hours=1), run="r2"),  # held back since: not a failure any more
        rec("K3", "updated", T0 + timedelta(hours=1), run="r2"),
    ])
    # --run r1 must not hand back r1's K1 payload: r2 planned and audited a newer state of it.
    assert wh.failed_records(run_id="r1").get_column("business_key").to_list() == ["K4"]
    latest = wh.failed_records()
    assert latest.get_column("business_key").to_list() == ["K4", "K1"]
    assert orjson.loads(latest.filter(pl.col("business_key") == "K1").get_column("payload")[0]) == {"name": "newer"}
    assert wh.failed_records(business_key="K1").get_column("run_id").to_list() == ["r2"]
    assert wh.failed_records(since=T0 + timedelta(minutes=30)).get_column("business_key").to_list() == ["K1"]


def test_secrets_are_scrubbed_and_outcomes_checked(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    payload = {"name": "ok", "client_secret": "s3cr3t", "nested": {"Authorization": "Bearer abc",
                                                                    "list": [{"password": "pw"}]}}
    wh.write_audit([rec("K1", "created", T0, payload=payload)])
    stored = orjson.loads(wh.audit_for_key("K1").get_column("payload")[0])
    assert stored == {"name": "ok", "client_secret": "***", "nested": {"Authorization": "***",
                                                                        "list": [{"password": "***"}]}}
    frame = pl.DataFrame({"run_id": ["r"], "outcome": ["posted"], "payload": ['{"access_token": "t"}']})
    wh.write_audit(frame)
    assert "t\"" not in wh.audit_for_run("r").get_column("payload")[0]
    with pytest.raises(ValueError, match="unknown audit outcomes"):
        wh.write_audit([rec("K1", "exploded", T0)])


def test_bulk_insert_from_frame(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    n = 50_000
    frame = pl.DataFrame({"run_id": "bulk", "business_key": [f"K{i}" for i in range(n)],
                          "payload": [f'{{"k": {i}}}' for i in range(n)], "outcome": "inserted"})
    assert wh.write_audit(frame) == n
    assert wh.outcome_counts("bulk") == {"inserted": n}


def test_retention_never_deletes_young_rows(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    now = datetime.now(UTC)
    wh.write_audit([rec("old", "inserted", now - timedelta(days=401)),
                    rec("young", "inserted", now - timedelta(days=399)),
                    rec("new", "inserted", now)])
    assert wh.purge_audit() == 1
    assert sorted(wh.audit_for_run("r1").get_column("business_key")) == ["new", "young"]
    with wh.writer() as con:
        assert purge_audit(con, 30, now=now) == 1
        with pytest.raises(ValueError, match="at least one day"):
            purge_audit(con, 0)


def test_cursors_commit_with_their_work(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    assert wh.get_cursor("snow.outbound", default=None) is None
    wh.set_cursor("snow.outbound", {"sys_updated_on": "2026-07-01 12:00:00", "sys_id": "abc"})
    assert wh.get_cursor("snow.outbound") == {"sys_updated_on": "2026-07-01 12:00:00", "sys_id": "abc"}
    from d365_snow_assets.warehouse import audit, state
    with pytest.raises(RuntimeError), wh.writer() as con:
        audit.write_audit(con, [rec("K9", "posted", T0)])
        state.set_cursor(con, "snow.outbound", {"sys_id": "later"})
        raise RuntimeError("crash before commit")
    assert wh.get_cursor("snow.outbound")["sys_id"] == "abc"
    assert wh.audit_for_key("K9").height == 0
