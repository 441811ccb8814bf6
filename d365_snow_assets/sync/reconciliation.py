"""Month-end reconciliation of one legal entity and one month (DESIGN §5.2), without Dagster: every outbound invoice
ServiceNow marked processed with an invoice date in the month, against what F&O holds for it (pending, posted,
settled) and the ServiceNow invoice it became.

Bounded by the month: ServiceNow is asked for that month's processed invoices only, F&O and the BI snapshots for
those invoices' natural keys only, so a partition's work does not grow with the history of the legal entity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import polars as pl

from ..clients import odata
from ..clients.d365 import D365Client
from ..clients.servicenow import ServiceNowClient
from ..discovery.documented import SHOP_INVOICE
from ..discovery.outbound import OutboundFields
from ..invoices.adapters import rows_by_values, scope_query
from ..warehouse import Warehouse
from .invoices import JOUR, VEND_TRANS, _norm, posted_lookup

# Natural keys per F&O read: an `or` chain of this many (account, number) pairs keeps the URL short. [choice]
_KEYS_PER_QUERY = 20

Key = tuple[str, str]  # (vendor account, invoice number), compared the way F&O does (case-insensitively)


@dataclass
class Reconciliation:
    legal_entity: str
    month: date
    totals: dict[str, Any]  # counts and amounts on both sides
    mismatches: list[dict[str, str]]


def month_after(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def _money(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01")) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _key(row: dict[str, Any]) -> Key:
    """An outbound invoice's natural key in F&O's terms."""
    return _norm(row.get("supplier")), _norm(row.get("supplier_invoice_number"))


def _outbound(snow: ServiceNowClient, out: OutboundFields, erp_source: str, legal_entity: str,
              month: date) -> list[dict[str, Any]]:
    # Dates in encoded queries are plain literals (DESIGN §6); YYYY-MM-DD compares in date order.
    query = (scope_query(out, legal_entity, erp_source, "processed")
             .ge(out.header["invoice_date"], month.isoformat()).lt(out.header["invoice_date"],
                                                                   month_after(month).isoformat()))
    return [out.to_header(r) for rows in snow.iter_static(out.header_table, query, fields=out.header_fields())
            for r in rows]


def _shop_states(snow: ServiceNowClient, out: OutboundFields, outbound: list[dict[str, Any]]) -> dict[str, str]:
    """The state of the APO invoice behind each outbound one, by ERP number: APO copies the ERP number onto it
    (reference §7) and no documented field links the two records (§6.1)."""
    numbers = sorted({str(r.get("erp_number") or "") for r in outbound} - {""})
    if not (out.shop_erp_number and out.shop_state and numbers):
        return {}
    rows = rows_by_values(snow, SHOP_INVOICE, None, out.shop_erp_number, numbers,
                   ["sys_id", out.shop_erp_number, out.shop_state])
    return {str(r.get(out.shop_erp_number) or ""): str(r.get(out.shop_state) or "") for r in rows}


def _pending(d365: D365Client, legal_entity: str, pairs: Iterable[tuple[str, str]]) -> dict[Key, dict[str, Any]]:
    """F&O's pending invoices with these natural keys ('*' is a wildcard in F&O's eq: the superset is read and
    matched here)."""
    found: dict[Key, dict[str, Any]] = {}
    ordered = sorted(set(pairs))
    for chunk in (ordered[i:i + _KEYS_PER_QUERY] for i in range(0, len(ordered), _KEYS_PER_QUERY)):
        flt = odata.any_of(*(odata.all_of(odata.eq("InvoiceAccount", account, wildcard_ok=True),
                                          odata.eq("InvoiceNumber", number, wildcard_ok=True))
                             for account, number in chunk))
        for row in d365.read_all("VendorInvoiceHeaders", legal_entity=legal_entity, odata_filter=flt,
                                 select=["dataAreaId", "HeaderReference", "InvoiceAccount", "InvoiceNumber",
                                         "ImportedAmount"]):
            found[(_norm(row.get("InvoiceAccount")), _norm(row.get("InvoiceNumber")))] = row
    return found


def _of_keys(frame: pl.DataFrame, account: str, number: str, keys: set[Key]) -> pl.DataFrame:
    """The rows of a BI snapshot that belong to ``keys``: filtered in polars before anything becomes a dict."""
    if frame.height == 0 or account not in frame.columns or number not in frame.columns or not keys:
        return frame.head(0)
    wanted = pl.DataFrame({"_a": [k[0] for k in keys], "_n": [k[1] for k in keys]})
    normalised = frame.with_columns(pl.col(account).cast(pl.String).fill_null("").str.to_lowercase().alias("_a"),
                                    pl.col(number).cast(pl.String).fill_null("").str.to_lowercase().alias("_n"))
    return normalised.join(wanted, on=["_a", "_n"], how="semi").drop("_a", "_n")


def reconcile(snow: ServiceNowClient, out: OutboundFields, erp_source: str, d365: D365Client, warehouse: Warehouse,
              legal_entity: str, month: date) -> Reconciliation:
    """ServiceNow's processed invoices of ``legal_entity`` dated in ``month`` (its first day) against F&O: pending
    or posted, ERP number, amount, paid amount and the resulting ServiceNow invoice state; every difference."""
    outbound = _outbound(snow, out, erp_source, legal_entity, month)
    keys = {_key(r) for r in outbound}
    states = _shop_states(snow, out, outbound)
    posted = posted_lookup(_of_keys(warehouse.read_snapshot(JOUR, [legal_entity]), "InvoiceAccount", "InvoiceId",
                                    keys))
    pending = _pending(d365, legal_entity, [(str(r.get("supplier", "")), str(r.get("supplier_invoice_number", "")))
                                            for r in outbound if _key(r) not in posted])
    trans = _of_keys(warehouse.read_snapshot(VEND_TRANS, [legal_entity]), "AccountNum", "Invoice", keys)
    settled: dict[Key, Decimal] = {}
    for r in trans.filter(pl.col("Invoice").cast(pl.String).fill_null("") != "").to_dicts() if trans.height else []:
        settled[(_norm(r.get("AccountNum")), _norm(r.get("Invoice")))] = abs(_money(r.get("SettleAmountCur"))
                                                                             or Decimal(0))
    totals: dict[str, Any] = {"sn_processed": 0, "sn_amount": Decimal(0), "fno_pending": 0, "fno_posted": 0,
                              "fno_amount": Decimal(0), "sn_paid": 0, "fno_paid": 0, "paid_amount": Decimal(0)}
    mismatches: list[dict[str, str]] = []

    def problem(row: dict[str, Any], what: str, sn: Any, fno: Any) -> None:
        mismatches.append({"number": str(row.get("number", "")), "supplier": str(row.get("supplier", "")),
                           "invoice": str(row.get("supplier_invoice_number", "")), "problem": what,
                           "servicenow": str(sn), "d365": str(fno)})

    for row in outbound:
        key = _key(row)
        amount = _money(row.get("amount_invoiced")) or Decimal(0)
        totals["sn_processed"] += 1
        totals["sn_amount"] += amount
        state = states.get(str(row.get("erp_number") or ""), "")
        totals["sn_paid"] += state == "paid"
        is_posted = key in posted
        found = posted.get(key) or pending.get(key)
        if found is None:
            problem(row, "processed in ServiceNow but not found in Dynamics 365", row.get("erp_number"), "")
            continue
        totals["fno_posted" if is_posted else "fno_pending"] += 1
        fno_amount = _money(found.get("InvoiceAmount" if is_posted else "ImportedAmount")) or Decimal(0)
        totals["fno_amount"] += fno_amount
        erp_number = found.get("LedgerVoucher" if is_posted else "HeaderReference")
        if row.get("erp_number") != erp_number:
            problem(row, f"ERP number is not the {'posted voucher' if is_posted else 'pending invoice'}",
                    row.get("erp_number"), erp_number)
        if fno_amount != amount:
            problem(row, "amount differs", amount, fno_amount)
        expected = "pending_payment"
        if is_posted:
            if not row.get("erp_posting_date"):
                problem(row, "posted in Dynamics 365 but no ERP posting date in ServiceNow", "",
                        found.get("InvoiceDate"))
            paid = settled.get(key, Decimal(0))
            totals["paid_amount"] += paid
            totals["fno_paid"] += paid >= fno_amount > 0
            expected = "paid" if paid >= fno_amount > 0 else "pending_payment"
        if state != expected:
            problem(row, "invoice state differs", state, expected)
    totals["mismatches"] = len(mismatches)
    return Reconciliation(legal_entity.lower(), month,
                          {k: (str(v) if isinstance(v, Decimal) else v) for k, v in totals.items()}, mismatches)


__all__ = ["Reconciliation", "month_after", "reconcile"]
