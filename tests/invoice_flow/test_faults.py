"""Fault tests of the invoice posting: a process killed between header and lines, a duplicate-number refusal on
POST, and an invoice F&O posted before the connector wrote back. Exact end state in both systems."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.discovery import load_schema
from d365_snow_assets.discovery.outbound import resolve_outbound
from d365_snow_assets.invoices import InvoiceReferences, parse_invoices, post_invoices, validate_invoices
from d365_snow_assets.invoices.adapters import D365Ledger, ServiceNowOutbound, ServiceNowStatusWriter
from d365_snow_assets.settings import load_settings
from d365_snow_assets.sync.targets import load_mappings
from d365_snow_assets.warehouse import Warehouse

from . import outbound
from .conftest import Connector


def _killed_sync(connector: Connector) -> None:
    """`d365-snow sync` in a child process that SIGKILLs itself right after F&O confirmed the first invoice
    header POST, before any of its lines (the fault crash_launcher.py installs around the ledger)."""
    launcher = Path(__file__).with_name("crash_launcher.py")
    proc = subprocess.run([sys.executable, str(launcher), "sync", "--json"], env=connector.env,
                          capture_output=True, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def _headers(connector: Connector) -> list[dict[str, Any]]:
    return connector.fno('SELECT * FROM "VendorInvoiceHeaders"')


def _lines_of(connector: Connector, le: str, reference: str) -> list[int]:
    return sorted(int(r["InvoiceLineNumber"]) for r in connector.fno(
        'SELECT "InvoiceLineNumber" FROM "VendorInvoiceLines" WHERE "dataAreaId" = ? AND "HeaderReference" = ?',
        [le, reference]))


def _sn_lines(connector: Connector, sys_id: str) -> list[int]:
    """The F&O line numbers of an outbound invoice's lines: their positions in the order of their Number."""
    return list(range(1, len(outbound.invoices(connector)[sys_id]["lines"]) + 1))


def _by_number(connector: Connector, number: str) -> dict[str, Any]:
    return next(r for r in outbound.invoices(connector).values() if r["number"] == number)


def test_killed_between_header_and_lines_then_rerun_gives_one_complete_invoice(connector: Connector) -> None:
    _killed_sync(connector)
    headers = _headers(connector)
    assert len(headers) == 1  # the kill came after the first header, before its lines
    crashed = headers[0]
    assert _lines_of(connector, crashed["dataAreaId"], crashed["HeaderReference"]) == []
    stuck = outbound.of(connector, status="in_progress")
    assert [s["number"] for s in stuck] == [crashed["DocumentNumber"]]

    connector.sync()
    headers = _headers(connector)
    keys = Counter((h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"].casefold()) for h in headers)
    assert max(keys.values()) == 1
    again = next(h for h in headers if h["DocumentNumber"] == crashed["DocumentNumber"])
    assert again["HeaderReference"] == crashed["HeaderReference"]
    sn = _by_number(connector, crashed["DocumentNumber"])
    assert sn["status"] == "processed"
    assert sn["erp_number"] == crashed["HeaderReference"]
    assert _lines_of(connector, crashed["dataAreaId"], crashed["HeaderReference"]) == _sn_lines(connector, sn["sys_id"])
    processed = outbound.of(connector, status="processed")
    assert len(headers) == len(processed)
    assert not outbound.of(connector, status="in_progress")


def test_invoice_posted_before_write_back_is_not_touched_and_servicenow_is_updated(connector: Connector) -> None:
    _killed_sync(connector)
    crashed = _headers(connector)[0]
    # F&O posts the (header-only) pending invoice before the connector comes back.
    posted = connector.server.world.d365.post_invoices([crashed["HeaderReference"]])
    assert len(posted["posted"]) == 1
    voucher = posted["posted"][0]["LedgerVoucher"]
    jour_before = connector.fno('SELECT * FROM "VendInvoiceJourBiEntities" ORDER BY "SourceKey"')

    connector.sync()
    sn = _by_number(connector, crashed["DocumentNumber"])
    assert sn["status"] == "processed"
    assert sn["erp_number"] == voucher
    assert sn["erp_posting_date"]
    # Not touched: no line added to it, no new pending invoice with its key, the journal row unchanged.
    assert _lines_of(connector, crashed["dataAreaId"], crashed["HeaderReference"]) == []
    assert not [h for h in _headers(connector) if h["DocumentNumber"] == crashed["DocumentNumber"]]
    jour_after = {r["SourceKey"]: r for r in connector.fno('SELECT * FROM "VendInvoiceJourBiEntities"')}
    for row in jour_before:
        assert jour_after[row["SourceKey"]] == row
    audit = Warehouse(connector.home / "warehouse.duckdb")
    with audit.reader() as con:
        outcomes = {r[0] for r in con.execute(
            "SELECT outcome FROM audit WHERE target_id = ? AND asset_key = 'invoices/posting'", [voucher]).fetchall()}
    assert outcomes == {"posted"}


class _BlindFirstLookup(D365Ledger):
    """The first pending lookup misses (a stale read or a concurrent writer), so the header POST meets F&O's
    duplicate check; every later lookup is real."""

    def __init__(self, client: D365Client) -> None:
        super().__init__(client)
        self.blind = True

    def find_pending(self, legal_entity: str, invoice_account: str, invoice_number: str) -> Any:
        if self.blind:
            self.blind = False
            return None
        return super().find_pending(legal_entity, invoice_account, invoice_number)


def test_duplicate_number_on_post_is_resolved_by_lookup(connector: Connector) -> None:
    connector.sync()  # snapshots + every valid invoice posted once
    settings = load_settings()
    wh = Warehouse(connector.home / "warehouse.duckdb")
    target = outbound.of(connector, "usmf", "processed")[0]
    header = next(h for h in _headers(connector) if h["DocumentNumber"] == target["number"])
    # Remove one line in F&O and hand the invoice back to the connector as new.
    le, ref = header["dataAreaId"], header["HeaderReference"]
    outbound.set_status(connector, target["sys_id"], "New")
    with D365Client(settings) as d365, ServiceNowClient(settings) as snow:
        first_line = _lines_of(connector, le, ref)[0]
        d365.delete("VendorInvoiceLines", {"dataAreaId": le, "HeaderReference": ref, "InvoiceLineNumber": first_line})
        schema = load_schema(snow, wh)
        out = resolve_outbound(schema, load_mappings(schema=schema))
        source = ServiceNowOutbound(snow, out, settings.erp_source)
        headers, lines = source.by_ids(le, [target["sys_id"]]), source.lines([target["sys_id"]])
        verdicts = validate_invoices(parse_invoices(headers, lines), InvoiceReferences.from_warehouse(wh, [le]))
        [result] = post_invoices(verdicts, _BlindFirstLookup(d365), ServiceNowStatusWriter(snow, out))
    assert result.outcome == "reused", result
    assert result.erp_number == ref
    assert [h for h in _headers(connector) if h["DocumentNumber"] == target["number"]] == [header]
    assert _lines_of(connector, le, ref) == _sn_lines(connector, target["sys_id"])
    assert outbound.invoices(connector)[target["sys_id"]]["status"] == "processed"
