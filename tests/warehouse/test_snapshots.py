import os
import time
from datetime import UTC, datetime

import orjson
import polars as pl
import pyarrow as pa
import pytest

from d365_snow_assets.clients.d365 import page_frame
from d365_snow_assets.warehouse import Warehouse
from d365_snow_assets.warehouse.snapshots import RawPages


def pages(n_pages, per_page, price=1.5, fail_at=None):
    for p in range(n_pages):
        if p == fail_at:
            raise ConnectionError("F&O went away")
        base = p * per_page
        yield [{"@odata.etag": "W/x", "dataAreaId": "usmf", "VendorAccountNumber": f"V{base + i:05d}",
                "VendorOrganizationName": f"Vendor {base + i}", "CreditLimit": price} for i in range(per_page)]


def test_streaming_snapshot_and_swap(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    first = wh.write_snapshot("VendorsV2", "USMF", pages(5, 100), ["dataAreaId", "VendorAccountNumber"])
    assert (first.rows, first.duplicates, first.previous_snapshot_id) == (500, 0, None)
    rows = wh.read_snapshot("VendorsV2", ["usmf"])
    assert rows.height == 500 and "@odata.etag" not in rows.columns
    assert rows.get_column("row_hash").n_unique() == 500

    # Same data again: same row hashes (stable across runs, independent of snapshot id and extraction time).
    second = wh.write_snapshot("VendorsV2", "usmf", pages(5, 100), ["dataAreaId", "VendorAccountNumber"])
    assert second.previous_snapshot_id == first.snapshot_id
    again = wh.read_snapshot("VendorsV2")
    assert again.height == 500 and set(again.get_column("snapshot_id")) == {second.snapshot_id}
    assert sorted(again.get_column("row_hash")) == sorted(rows.get_column("row_hash"))

    # A failing extraction leaves the previous snapshot current and untouched.
    with pytest.raises(ConnectionError):
        wh.write_snapshot("VendorsV2", "usmf", pages(5, 100, price=9.0, fail_at=3), ["VendorAccountNumber"])
    assert wh.current_snapshot("VendorsV2", "usmf").snapshot_id == second.snapshot_id
    assert wh.read_snapshot("VendorsV2").get_column("CreditLimit").unique().to_list() == [1.5]
    assert not any(wh.staging_dir.iterdir())


def test_mixed_page_types_widening_and_duplicates(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    key = ["dataAreaId", "PurchaseOrderNumber", "LineNumber"]
    p1 = pl.DataFrame({"dataAreaId": ["usmf"] * 2, "PurchaseOrderNumber": ["PO-1"] * 2, "LineNumber": [1, 2],
                       "LineAmount": [100, 200], "ItemNumber": [None, None]})
    p2 = pa.table({"dataAreaId": ["usmf"], "PurchaseOrderNumber": ["PO-1"], "LineNumber": [2],
                   "LineAmount": [250.5], "ItemNumber": ["I-1"]})
    p3 = [{"dataAreaId": "usmf", "PurchaseOrderNumber": "PO-2", "LineNumber": 1, "LineAmount": 0.1,
           "ItemNumber": "I-2"}]
    info = wh.write_snapshot("PurchaseOrderLinesV2", "usmf", [p1, p2, [], p3], key)
    assert (info.rows, info.duplicates) == (3, 1)
    rows = wh.read_snapshot("PurchaseOrderLinesV2").sort("PurchaseOrderNumber", "LineNumber")
    assert rows.select("LineNumber", "LineAmount", "ItemNumber").rows() == [(1, 100.0, None), (2, 250.5, "I-1"),
                                                                           (1, 0.1, "I-2")]
    # Legal entities are independent snapshots of the same table.
    wh.write_snapshot("PurchaseOrderLinesV2", "DEMF", [p3], key)
    assert wh.read_snapshot("PurchaseOrderLinesV2").height == 4
    assert wh.read_snapshot("PurchaseOrderLinesV2", ["USMF"]).height == 3


def test_empty_snapshot_and_allow_list(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    info = wh.write_snapshot("MainAccounts", "", [], ["ChartOfAccounts", "MainAccountId"])
    assert info.rows == 0
    with pytest.raises(ValueError, match="no snapshot table"):
        wh.write_snapshot("Robert'); DROP TABLE audit;--", "usmf", [], ["x"])
    with pytest.raises(ValueError, match="not a plain column"):
        wh.write_snapshot("VendorsV2", "usmf", [[{'a"b': 1}]], ["a\"b"])



def test_swap_rewrites_only_the_rows_that_changed(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    key = ["dataAreaId", "VendorAccountNumber"]
    first_info = wh.write_snapshot("VendorsV2", "usmf", pages(3, 100), key)
    assert (first_info.written, first_info.removed) == (300, 0)
    # A neighbouring legal entity in the same table must not be touched.
    wh.write_snapshot("VendorsV2", "demf", [[{"dataAreaId": "demf", "VendorAccountNumber": "V00000",
                                              "VendorOrganizationName": "DE", "CreditLimit": 1.5}]], key)
    # One vendor renamed, one gone, one new.
    rows = [row for page in pages(3, 100) for row in page]
    rows[7]["VendorOrganizationName"] = "Renamed"
    del rows[42]
    rows.append({"dataAreaId": "usmf", "VendorAccountNumber": "V99999", "VendorOrganizationName": "New",
                 "CreditLimit": 2.0})
    second = wh.write_snapshot("VendorsV2", "usmf", [rows[:150], rows[150:]], key)
    assert (second.rows, second.duplicates, second.previous_snapshot_id) == (300, 0, first_info.snapshot_id)
    # Written: the renamed and the new vendor. Removed: the renamed vendor's old row and the vendor gone.
    assert (second.written, second.removed) == (2, 2)

    usmf = wh.read_snapshot("VendorsV2", ["usmf"])
    assert usmf.height == 300 and usmf.get_column("VendorAccountNumber").n_unique() == 300
    assert set(usmf.get_column("snapshot_id")) == {second.snapshot_id}
    assert set(usmf.get_column("extracted_at")) == {second.extracted_at}
    assert "V00042" not in set(usmf.get_column("VendorAccountNumber"))
    names = dict(usmf.select("VendorAccountNumber", "VendorOrganizationName").rows())
    assert (names["V00007"], names["V99999"], names["V00008"]) == ("Renamed", "New", "Vendor 8")
    demf = wh.read_snapshot("VendorsV2", ["demf"])
    assert demf.select("VendorAccountNumber", "VendorOrganizationName").rows() == [("V00000", "DE")]
    # The delta leaves exactly what a full rewrite of the same rows would.
    rebuilt = Warehouse(tmp_path / "rebuilt.duckdb")
    rebuilt.write_snapshot("VendorsV2", "usmf", [rows], key)
    columns = ["VendorAccountNumber", "VendorOrganizationName", "CreditLimit", "row_hash"]
    assert rebuilt.read_snapshot("VendorsV2").select(columns).sort("VendorAccountNumber").rows() == \
        usmf.select(columns).sort("VendorAccountNumber").rows()

    unchanged = wh.write_snapshot("VendorsV2", "usmf", [rows], key)
    assert (unchanged.rows, unchanged.written, unchanged.removed) == (300, 0, 0)
    assert set(wh.read_snapshot("VendorsV2", ["usmf"]).get_column("snapshot_id")) == {unchanged.snapshot_id}


def test_new_column_rewrites_every_row_and_keyless_copies_survive(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    key = ["dataAreaId", "VendorAccountNumber"]
    wh.write_snapshot("VendorsV2", "usmf", pages(1, 10), key)
    widened = wh.write_snapshot("VendorsV2", "usmf", [[{**row, "VendorGroupId": None} for row in next(pages(1, 10))]],
                                key)
    assert (widened.written, widened.removed) == (10, 10)
    assert wh.read_snapshot("VendorsV2").get_column("VendorGroupId").to_list() == [None] * 10

    # No key columns: identical rows are distinct facts (two equal lines) and both stay, run after run.
    line = {"dataAreaId": "usmf", "VendorAccountNumber": "V1", "VendorOrganizationName": "Twice", "CreditLimit": 1.0}
    for removed in (0, 3):
        info = wh.write_snapshot("VendorsV2", "gbsi", [[line, line, {**line, "CreditLimit": 2.0}]], [])
        assert (info.rows, info.duplicates, info.written, info.removed) == (3, 0, 3, removed)
        assert wh.read_snapshot("VendorsV2", ["gbsi"]).get_column("CreditLimit").sort().to_list() == [1.0, 1.0, 2.0]


def _bodies(names: list[str]) -> list[bytes]:
    """F&O page bodies of VendorsV2 rows named by ``names``, two rows per page."""
    rows = [{"@odata.etag": f"W/{i}", "dataAreaId": "usmf", "VendorAccountNumber": f"V{i:03d}",
             "VendorOrganizationName": name} for i, name in enumerate(names)]
    return [orjson.dumps({"value": rows[at:at + 2]}) for at in range(0, len(rows), 2)]


class _Parser:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: bytes) -> pl.DataFrame:
        self.calls += 1
        return page_frame(body, "VendorsV2")


def test_raw_pages_the_same_as_last_time_keep_the_snapshot_without_parsing(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    key = ["dataAreaId", "VendorAccountNumber"]
    parse = _Parser()
    first = wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A", "B", "C"]), parse), key)
    assert (first.rows, first.unchanged_bodies, parse.calls) == (3, False, 2)

    later = datetime(2030, 1, 2, tzinfo=UTC)
    again = wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A", "B", "C"]), parse), key, later)
    assert (again.snapshot_id, again.rows, again.unchanged_bodies, parse.calls) == (first.snapshot_id, 3, True, 2)
    assert wh.current_snapshot("VendorsV2", "usmf").extracted_at == later

    # One changed value: parsed and swapped in like any extraction.
    changed = wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A", "B2", "C"]), parse), key)
    assert (changed.unchanged_bodies, changed.written, changed.removed, parse.calls) == (False, 1, 1, 4)
    names = wh.read_snapshot("VendorsV2", ["usmf"]).sort("VendorAccountNumber").get_column("VendorOrganizationName")
    assert names.to_list() == ["A", "B2", "C"]

    # Other key columns are not "the same answer": dedupe by key could differ.
    assert not wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A", "B2", "C"]), parse),
                                 ["VendorAccountNumber"]).unchanged_bodies

    # Rows written another way (no digest) are never vouched for by an old digest.
    wh.write_snapshot("VendorsV2", "usmf", [[{"dataAreaId": "usmf", "VendorAccountNumber": "V000",
                                              "VendorOrganizationName": "Z"}]], key)
    back = wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A", "B2", "C"]), parse), key)
    assert (back.unchanged_bodies, back.rows) == (False, 3)


def test_a_snapshot_committed_by_another_run_meanwhile_is_not_kept_by_an_old_digest(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    key = ["dataAreaId", "VendorAccountNumber"]
    wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A", "B"]), _Parser()), key)

    def bodies_while_another_run_commits():
        yield from _bodies(["A", "B"])
        # Another run's extraction commits after this one read the digest, before it takes the write lock.
        wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A", "X"]), _Parser()), key)

    info = wh.write_snapshot("VendorsV2", "usmf", RawPages(bodies_while_another_run_commits(), _Parser()), key)
    assert (info.unchanged_bodies, info.written) == (False, 1)
    names = wh.read_snapshot("VendorsV2", ["usmf"]).sort("VendorAccountNumber").get_column("VendorOrganizationName")
    assert names.to_list() == ["A", "B"]


def test_spool_directories_of_dead_extractions_are_swept(tmp_path):
    wh = Warehouse(tmp_path / "wh.duckdb")
    old, recent = wh.staging_dir / "20200101T000000-dead", wh.staging_dir / "20991231T000000-running"
    for directory in (old, recent):
        (directory / "raw").mkdir(parents=True)
        (directory / "raw" / "body-000000000.json").write_bytes(b'{"value": []}')
    os.utime(old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    wh.write_snapshot("VendorsV2", "usmf", RawPages(_bodies(["A"]), _Parser()), ["dataAreaId", "VendorAccountNumber"])
    assert not old.exists() and recent.exists()
    assert sorted(p.name for p in wh.staging_dir.iterdir()) == [recent.name]  # and its own spool is gone too
