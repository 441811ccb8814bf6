from datetime import date

import polars as pl
import pytest

from d365_snow_assets.mapping.targets import COST_CENTER, ORDER, ORDER_LINE, PAYMENT_DETAIL
from d365_snow_assets.warehouse import Warehouse, business_key, payload_columns

SUPPLIER = ORDER  # the tests below once used suppliers; orders have the same per-company key shape


def suppliers(codes, le="USMF", name="Acme", erp="D365FO"):
    return pl.DataFrame({c: [""] * len(codes) for c in ORDER.column_names}).with_columns(
        pl.lit(erp).alias("ERP source"), pl.lit(le).alias("Legal entity"),
        pl.Series("ERP PO number", codes, dtype=pl.String), pl.lit(name).alias("Supplier company name"),
        pl.lit("Backorder").alias("PO status"))


def push_all(wh, result, outcome="inserted"):
    frames = [f for f in (result.inserts, result.changes, result.deletions) if f.height]
    if frames:
        wh.record_push_results(ORDER.target_table, pl.concat(frames, how="diagonal").with_columns(
            outcome=pl.lit(outcome), target_id=pl.format("sys-{}", pl.col("_business_key"))))


def test_insert_change_unchanged_delete_cycle(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    first = wh.diff(SUPPLIER, suppliers(["V1", "V|2", "V\\3", "V4"]), erp_source="D365FO", legal_entities=["usmf"])
    assert first.counts == {"insert": 4, "change": 0, "delete": 0, "orphan": 0, "unchanged": 0, "duplicate_key": 0}
    assert payload_columns(first.inserts).columns == list(SUPPLIER.column_names)
    push_all(wh, first)

    again = wh.diff(SUPPLIER, suppliers(["V1", "V|2", "V\\3", "V4"]), erp_source="D365FO", legal_entities=["usmf"])
    assert again.counts["unchanged"] == 4 and again.to_push.height == 0 and again.deletions.height == 0

    current = pl.concat([suppliers(["V1"], name="Acme 2"), suppliers(["V\\3", "V4", "V5"])])
    result = wh.diff(SUPPLIER, current, erp_source="D365FO", legal_entities=["USMF"])
    assert result.inserts.get_column("ERP PO number").to_list() == ["V5"]
    assert result.changes.get_column("ERP PO number").to_list() == ["V1"]
    assert result.unchanged == 2
    assert result.deletions.select("ERP source", "Legal entity", "ERP PO number", "PO status").rows() == [
        ("D365FO", "USMF", "V|2", "Canceled")]
    assert result.deletions.get_column("_business_key").to_list() == [business_key(["D365FO", "USMF", "V|2"])]

    # A failed row is not recorded, so it comes back; the recorded ones do not.
    results = pl.concat([result.inserts, result.changes, result.deletions], how="diagonal").with_columns(
        outcome=pl.when(pl.col("ERP PO number") == "V5").then(pl.lit("error")).otherwise(pl.lit("updated")))
    wh.record_push_results(ORDER.target_table, results)
    after = wh.diff(SUPPLIER, current, erp_source="D365FO", legal_entities=["usmf"])
    assert after.counts == {"insert": 1, "change": 0, "delete": 0, "orphan": 0, "unchanged": 3, "duplicate_key": 0}
    push_all(wh, after)
    assert wh.diff(SUPPLIER, current, erp_source="D365FO", legal_entities=["usmf"]).to_push.height == 0

    # The deleted vendor comes back in F&O: pushed again (reactivated).
    back = wh.diff(SUPPLIER, pl.concat([current, suppliers(["V|2"])]), erp_source="D365FO", legal_entities=["usmf"])
    assert back.changes.get_column("ERP PO number").to_list() == ["V|2"]
    with wh.reader() as con:
        from d365_snow_assets.warehouse.state import target_ids
        assert target_ids(con, ORDER.target_table, [business_key(["D365FO", "USMF", "V1"])]) == {
            business_key(["D365FO", "USMF", "V1"]): "sys-" + business_key(["D365FO", "USMF", "V1"])}


def test_deletion_scope(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    staged = pl.concat([suppliers(["A"], le="USMF"), suppliers(["B"], le="DEMF"), suppliers(["C"], erp="OTHER")])
    push_all(wh, wh.diff(SUPPLIER, staged, erp_source="D365FO", legal_entities=None))
    empty = suppliers([])
    only_usmf = wh.diff(SUPPLIER, empty, erp_source="D365FO", legal_entities=["usmf"])
    assert only_usmf.deletions.get_column("ERP PO number").to_list() == ["A"]
    every_le = wh.diff(SUPPLIER, empty, erp_source="D365FO", legal_entities=None)
    assert sorted(every_le.deletions.get_column("ERP PO number")) == ["A", "B"]  # never another ERP's rows


def test_payment_orphans_and_duplicates(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    rows = pl.DataFrame({c: ["x", "x"] for c in PAYMENT_DETAIL.column_names}).with_columns(
        pl.lit("D365FO").alias("ERP Source"), pl.lit("USMF").alias("Legal entity"))
    result = wh.diff(PAYMENT_DETAIL, rows, erp_source="D365FO", legal_entities=["usmf"])
    assert (result.inserts.height, result.duplicate_keys) == (1, 1)
    wh.record_push_results(PAYMENT_DETAIL.target_table, result.inserts.with_columns(outcome=pl.lit("inserted")))
    gone = wh.diff(PAYMENT_DETAIL, rows.clear(), erp_source="D365FO", legal_entities=["usmf"])
    assert (gone.deletions.height, gone.orphans.height) == (0, 1)


def test_100k_rows_correctness(tmp_path):
    n = 100_000
    wh = Warehouse(tmp_path / "wh.duckdb")
    i = pl.int_range(0, n, eager=True)
    base = pl.DataFrame({c: [""] * n for c in ORDER_LINE.column_names}).with_columns(
        pl.lit("D365FO").alias("ERP source"), pl.lit("USMF").alias("Legal entity"),
        pl.format("PO-{}", i // 10).alias("ERP PO number"), (i % 10).cast(pl.String).alias("ERP PO line number"),
        (i % 97).cast(pl.String).alias("Unit price"))
    first = wh.diff(ORDER_LINE, base, erp_source="D365FO", legal_entities=["usmf"])
    assert first.inserts.height == n
    wh.record_push_results(ORDER_LINE.target_table, first.inserts.with_columns(outcome=pl.lit("inserted")))
    changed = base.with_columns(pl.when(i % 50 == 0).then(pl.lit("0.01")).otherwise("Unit price").alias("Unit price"))
    changed = changed.filter(i % 1000 != 999)  # 100 lines gone
    result = wh.diff(ORDER_LINE, changed, erp_source="D365FO", legal_entities=["usmf"])
    assert result.counts == {"insert": 0, "change": 2000, "delete": 100, "orphan": 0, "unchanged": 97_900,
                             "duplicate_key": 0}
    assert set(result.deletions.get_column("Status")) == {"Canceled"}
    assert sorted(result.deletions.get_column("ERP PO number")) == sorted(f"PO-{k // 10}" for k in range(999, n, 1000))
    wh.record_push_results(ORDER_LINE.target_table, pl.concat([result.changes, result.deletions], how="diagonal")
                           .with_columns(outcome=pl.lit("updated")))
    final = wh.diff(ORDER_LINE, changed, erp_source="D365FO", legal_entities=["usmf"])
    assert final.counts["unchanged"] == changed.height and final.to_push.height == 0 and final.deletions.height == 0


def test_bad_results_and_staging(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    with pytest.raises(ValueError, match="lacks columns"):
        wh.diff(SUPPLIER, pl.DataFrame({"ERP source": ["x"]}), erp_source="D365FO", legal_entities=None)
    with pytest.raises(ValueError, match="push results lack"):
        wh.record_push_results(ORDER.target_table, pl.DataFrame({"outcome": ["inserted"]}))


def test_business_keys_match_the_scalar_key_whether_or_not_a_batch_needs_escapes(tmp_path):
    # The diff escapes only the columns that hold a `|` or `\` in this batch; the keys must still be the ones the
    # scalar business_key gives, or a record would be seen as new when a later batch does (or does not) escape.
    wh = Warehouse(tmp_path / "wh.duckdb")
    for codes, le in ((["V1", "V2"], "USMF"), (["V1", "V|2", "V\\3"], "USMF"), (["V1"], "US|MF"), (["V\\"], "U\\S")):
        result = wh.diff(SUPPLIER, suppliers(codes, le=le), erp_source="D365FO", legal_entities=None)
        assert result.inserts.get_column("_business_key").to_list() == [
            business_key(["D365FO", le.upper(), code]) for code in codes]


def test_a_deactivation_resends_the_last_accepted_payload_with_the_deactivating_values(tmp_path):
    """A transform map may coalesce on another field than the key (cost centers on Account number): the
    deactivation row carries the record as last sent, so it still finds its record."""
    wh = Warehouse(tmp_path / "wh.duckdb")
    row = pl.DataFrame([{"ERP source": "D365FO", "Legal entity": "", "Code": "CC-1", "Account number": "CC-1",
                         "Name": "Ops", "Manager": "", "Valid from": "2020-01-01", "Valid to": "", "Suspended": "false",
                         "Active to": ""}])
    first = wh.diff(COST_CENTER, row, erp_source="D365FO", legal_entities=None)
    sent = first.inserts.with_columns(outcome=pl.lit("inserted"), target_id=pl.lit("sys-1"))
    with wh.writer() as con:
        from d365_snow_assets.warehouse import audit, state
        state.record_push_results(con, COST_CENTER.target_table, sent)
        audit.write_audit(con, [{"run_id": "r", "entity": COST_CENTER.target_table, "outcome": "inserted",
                                 "business_key": sent["_business_key"][0], "attempt": 1,
                                 "payload": payload_columns(sent).to_dicts()[0]}])
    gone = wh.diff(COST_CENTER, row.clear(), erp_source="D365FO", legal_entities=None, today=date(2026, 12, 5))
    assert gone.deletions.select("Code", "Account number", "Name", "Valid to").rows() == [
        ("CC-1", "CC-1", "Ops", "2026-12-05")]


def test_pushed_state_of_the_guessed_schema_is_set_aside_once(tmp_path):
    """A warehouse from before the documented labels keeps its old pushed state in pushed_state_v1 instead of
    reading it as records gone from F&O (which would deactivate everything)."""
    import duckdb

    from d365_snow_assets.warehouse import db, state

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    for ddl in db.SCHEMA:
        con.execute(ddl)
    con.execute("INSERT INTO pushed_state VALUES ('sn_shop_purchase_order', 'D365FO|USMF|V1', 'D365FO', 'USMF', "
                "'h', 's1', 'inserted', false, now())")
    con.close()
    wh = Warehouse(path)
    gone = wh.diff(ORDER, suppliers([]), erp_source="D365FO", legal_entities=None)
    assert gone.deletions.height == 0
    with wh.reader() as con:
        assert con.execute("SELECT business_key FROM pushed_state_v1").fetchall() == [("D365FO|USMF|V1",)]
        assert state.get_cursor(con, "warehouse:pushed_state_format") == state.PUSHED_STATE_FORMAT
