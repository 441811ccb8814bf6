"""What a round-trip step reads of a BI snapshot (sync/invoices.py ``changed_since``): the rows changed since its
mark, minus the overlap, and, for payments, the other side of each settlement; never the rest of the history."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from d365_snow_assets.sync.invoices import JOUR, VEND_TRANS, changed_since
from d365_snow_assets.warehouse import Warehouse

KEYS = ("dataAreaId", "SourceKey")


def _trans(key: int, kind: str, voucher: str, settled_by: str, stamp: str, le: str = "usmf") -> dict[str, object]:
    return {"dataAreaId": le, "SourceKey": key, "TransType": kind, "Voucher": voucher,
            "LastSettleVoucher": settled_by, "SysModifiedDateTime": stamp}


def test_rows_changed_since_the_mark_minus_the_overlap(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh.duckdb")
    stamps = ["2026-01-01T00:00:00Z", "2026-05-01T11:49:59Z", "2026-05-01T11:50:00Z", "2026-05-01T12:00:00Z"]
    wh.write_snapshot(JOUR, "usmf", [pl.DataFrame({"dataAreaId": "usmf", "SourceKey": [1, 2, 3, 4],
                                                   "SysModifiedDateTime": stamps})], KEYS)
    wh.write_snapshot(JOUR, "demf", [pl.DataFrame({"dataAreaId": "demf", "SourceKey": [9],
                                                   "SysModifiedDateTime": ["2026-06-01T00:00:00Z"]})], KEYS)

    changed = changed_since(wh, JOUR, "usmf", "2026-05-01T12:00:00+00:00")
    assert sorted(changed.rows.get_column("SourceKey")) == [3, 4]  # 10 minutes of overlap, this company only
    assert changed.newest == "2026-05-01T12:00:00+00:00"
    everything = changed_since(wh, JOUR, "usmf", None)
    assert everything.rows.height == 4 and everything.newest == "2026-05-01T12:00:00+00:00"
    assert "row_hash" not in everything.rows.columns
    assert changed_since(wh, VEND_TRANS, "usmf", None).rows.height == 0  # no snapshot yet


def test_a_settlement_is_read_with_both_sides(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh.duckdb")
    old, new = "2025-01-01T00:00:00Z", "2026-05-01T12:00:00Z"
    rows = [
        _trans(1, "Purch", "INV1", "PAY2", new),  # an old invoice, now paid a second time
        _trans(2, "Payment", "PAY1", "INV1", old),  # its first payment, long ago
        _trans(3, "Payment", "PAY2", "INV1", new),  # the new payment
        _trans(4, "Purch", "INV2", "", old),  # unpaid history: its blank LastSettleVoucher pairs nothing
        _trans(5, "Purch", "INV3", "", new),  # a new unpaid invoice
        _trans(6, "Purch", "INV4", "PAY3", old), _trans(7, "Payment", "PAY3", "INV4", old),  # settled history
    ]
    wh.write_snapshot(VEND_TRANS, "usmf", [pl.DataFrame(rows)], KEYS)

    changed = changed_since(wh, VEND_TRANS, "usmf", "2026-04-01T00:00:00+00:00", settling=True)
    assert sorted(changed.rows.get_column("SourceKey")) == [1, 2, 3, 5]
