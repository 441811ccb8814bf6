"""Accounts Payable Operations on the fake instance: approved invoices, their outbound staging records, and the
business rules that move an invoice Approved → Pending payment → Paid (reference/servicenow.md §5.3–§5.4).

Choice values (``approved``, ``pending_payment``, ``paid``; ``new``/``in_progress``/``processed``/``error``) are the
snake_case forms of the documented labels (inference, reference §5.3). Seeding reads the fake F&O so every invoice
references real vendors, POs, lines, GL accounts and cost centers; a configured share is deliberately invalid.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from .schema import OUTBOUND_INVOICE, OUTBOUND_INVOICE_LINE, PAYMENT_DETAIL, SHOP_INVOICE, SHOP_INVOICE_LINE
from .store import utc_stamp

if TYPE_CHECKING:
    from .state import SnowState

INVALID_KINDS = ("unknown_gl_account", "suspended_cost_center", "vendor_on_hold", "amount_mismatch")
BLOCKING_HOLDS = frozenset({"All", "Invoice"})  # DESIGN §5.2: Payment does not block posting
CENT = Decimal("0.01")
PAYMENT_MATCH = ("erp_source", "legal_entity", "supplier", "supplier_invoice_number")


def money(value: Any) -> Decimal:
    return Decimal(str(value if value not in (None, "") else 0)).quantize(CENT, rounding=ROUND_HALF_UP)


def _yes(value: Any) -> bool:
    return str(value).lower() in ("yes", "true", "1")


@dataclass
class Catalog:
    """The slice of F&O master data invoices are built from."""

    legal_entities: list[str]
    vendors: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (le, account) -> row
    pos: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    active_accounts: list[str] = field(default_factory=list)
    all_accounts: set[str] = field(default_factory=set)
    cost_centers: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # le ("" = shared) -> (code, ok)

    def centers(self, le: str, active: bool) -> list[str]:
        return [c for c, ok in self.cost_centers.get(le, []) + self.cost_centers.get("", []) if ok == active]


def _parse_cost_center(display_value: str) -> str:
    """The CostCenter segment of a display value in the default format (DESIGN §5.3: format ``CostCenter``,
    delimiter ``-``, backslash escapes)."""
    out: list[str] = []
    escaped = False
    for ch in display_value or "":
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "-":
            break
        else:
            out.append(ch)
    return "".join(out)


def load_catalog(d365: Any, legal_entities: list[str], wanted: int) -> Catalog:
    """Read the F&O slice with bounded queries, so seeding stays fast on million-row sandboxes."""
    les = [le.lower() for le in legal_entities]
    cat = Catalog(legal_entities=les)
    if d365 is None or not hasattr(d365, "read"):
        return cat
    for v in d365.read("SELECT dataAreaId, VendorAccountNumber, OnHoldStatus, CurrencyCode, DefaultPaymentTermsName "
                       "FROM VendorsV2"):
        cat.vendors[(str(v["dataAreaId"]).lower(), str(v["VendorAccountNumber"]))] = v
    po_limit = max(200, wanted * 12)
    # A clerk cannot approve an invoice against a canceled order, and the connector rejects one: only open orders.
    head_sql = ("SELECT dataAreaId, PurchaseOrderNumber FROM PurchaseOrderHeadersV2 "
                "WHERE lower(dataAreaId) IN (SELECT unnest(?)) AND PurchaseOrderStatus <> 'Canceled' "
                "ORDER BY dataAreaId, PurchaseOrderNumber LIMIT ?")
    cat.pos = d365.read(
        "SELECT h.dataAreaId, h.PurchaseOrderNumber, h.OrderVendorAccountNumber, h.InvoiceVendorAccountNumber, "
        "h.CurrencyCode, h.PaymentTermsName FROM PurchaseOrderHeadersV2 h "
        f"JOIN ({head_sql}) k ON h.dataAreaId = k.dataAreaId AND h.PurchaseOrderNumber = k.PurchaseOrderNumber "
        "ORDER BY h.dataAreaId, h.PurchaseOrderNumber", [les, po_limit])
    for line in d365.read(
            "SELECT l.dataAreaId, l.PurchaseOrderNumber, l.LineNumber, l.ItemNumber, l.LineDescription, "
            "l.OrderedPurchaseQuantity, l.PurchasePrice, l.LineAmount, l.MainAccountIdDisplayValue, "
            "l.DefaultLedgerDimensionDisplayValue FROM PurchaseOrderLinesV2 l "
            f"JOIN ({head_sql}) k ON l.dataAreaId = k.dataAreaId AND l.PurchaseOrderNumber = k.PurchaseOrderNumber "
            "ORDER BY l.dataAreaId, l.PurchaseOrderNumber, l.LineNumber", [les, po_limit]):
        cat.lines.setdefault((str(line["dataAreaId"]).lower(), str(line["PurchaseOrderNumber"])), []).append(line)
    for acc in d365.read("SELECT DISTINCT MainAccountId, IsSuspended FROM MainAccounts ORDER BY MainAccountId"):
        cat.all_accounts.add(str(acc["MainAccountId"]))
        if not _yes(acc["IsSuspended"]):
            cat.active_accounts.append(str(acc["MainAccountId"]))
    for cc in d365.read("SELECT LegalEntityId, DimensionValue, IsSuspended FROM FinancialDimensionValues "
                        "WHERE FinancialDimension = 'CostCenter' ORDER BY LegalEntityId, DimensionValue"):
        cat.cost_centers.setdefault(str(cc["LegalEntityId"] or "").lower(), []).append(
            (str(cc["DimensionValue"]), not _yes(cc["IsSuspended"])))
    return cat


def _invoice_number(rng: random.Random, n: int, vendor: str) -> str:
    """Supplier invoice numbers, some with the characters that break naive escaping (', ^, non-ASCII)."""
    kind = n % 9
    if kind == 2:
        return f"O'BRIEN-{n:05d}"
    if kind == 4:
        return f"INV^{n:05d}^A"
    if kind == 6:
        return f"RÉF-Ü{n:05d}-€"
    if kind == 7:
        # F&O's InvoiceNumber holds 20 characters; a long vendor account must not make a "valid" invoice invalid.
        return f"{vendor[-8:]}/INV'^{n:05d}"
    return f"INV-{rng.randint(10, 99)}-{n:05d}"


def _is_valid_vendor(cat: Catalog, le: str, account: str) -> bool:
    v = cat.vendors.get((le, account))
    return v is not None and str(v.get("OnHoldStatus") or "No") not in BLOCKING_HOLDS


def _build(state: SnowState, cat: Catalog, rng: random.Random, n: int, kind: str | None) -> tuple[dict, list[dict],
                                                                                                 str | None]:
    """One invoice (header values, line values) of the wanted ``kind`` (None = valid); returns the kind applied,
    which falls back to another invalid kind (or valid) when the data has no candidate for it."""
    def vendor_of(po: dict) -> str:
        return str(po.get("InvoiceVendorAccountNumber") or po.get("OrderVendorAccountNumber") or "")

    candidates = [po for po in cat.pos
                  if cat.lines.get((str(po["dataAreaId"]).lower(), str(po["PurchaseOrderNumber"])))]
    on_hold = [po for po in candidates if not _is_valid_vendor(cat, str(po["dataAreaId"]).lower(), vendor_of(po))
               and (str(po["dataAreaId"]).lower(), vendor_of(po)) in cat.vendors]
    valid = [po for po in candidates if _is_valid_vendor(cat, str(po["dataAreaId"]).lower(), vendor_of(po))]
    if kind == "vendor_on_hold" and not on_hold:
        kind = "amount_mismatch"
    pool = on_hold if kind == "vendor_on_hold" else valid
    if not pool:
        raise RuntimeError("the fake F&O has no purchase orders with lines for the configured legal entities")
    po = pool[rng.randrange(len(pool))]
    le = str(po["dataAreaId"]).lower()
    if kind == "suspended_cost_center" and not cat.centers(le, active=False):
        kind = "unknown_gl_account"
    vendor = vendor_of(po)
    po_lines = cat.lines[(le, str(po["PurchaseOrderNumber"]))]
    picked = po_lines[: rng.randint(1, min(3, len(po_lines)))]
    tax_rate = Decimal(rng.choice(("0", "0.05", "0.1", "0.2")))
    lines: list[dict] = []
    for i, pl in enumerate(picked, start=1):
        qty = Decimal(str(pl.get("OrderedPurchaseQuantity") or 1))
        price = money(pl.get("PurchasePrice") or 0)
        amount = money(pl["LineAmount"]) if pl.get("LineAmount") not in (None, "") else money(qty * price)
        gl = str(pl.get("MainAccountIdDisplayValue") or "")
        if gl not in cat.active_accounts:
            gl = cat.active_accounts[rng.randrange(len(cat.active_accounts))] if cat.active_accounts else gl
        cc = _parse_cost_center(str(pl.get("DefaultLedgerDimensionDisplayValue") or ""))
        active_ccs = cat.centers(le, active=True)
        if cc not in active_ccs:
            cc = active_ccs[rng.randrange(len(active_ccs))] if active_ccs else ""
        lines.append({"line_number": str(i), "purchase_order": str(po["PurchaseOrderNumber"]),
                      "purchase_order_line": str(pl["LineNumber"]), "item_number": str(pl.get("ItemNumber") or ""),
                      "description": str(pl.get("LineDescription") or ""), "quantity": format(qty.normalize(), "f"),
                      "unit_price": str(price), "amount": str(amount), "gl_account": gl, "cost_center": cc,
                      "tax_amount": str(money(amount * tax_rate))})
    if kind == "unknown_gl_account":
        bogus = 990000 + n
        while str(bogus) in cat.all_accounts:
            bogus += 1
        lines[0]["gl_account"] = str(bogus)
    elif kind == "suspended_cost_center":
        suspended = cat.centers(le, active=False)
        lines[-1]["cost_center"] = suspended[rng.randrange(len(suspended))]
    subtotal = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    tax = sum((Decimal(line["tax_amount"]) for line in lines), Decimal(0))
    total = subtotal + tax
    if kind == "amount_mismatch":
        total += money(rng.randint(1, 500))
    day = int(state.clock() // 86400) - rng.randint(1, 20)
    v = cat.vendors.get((le, vendor), {})
    header = {"supplier_invoice_number": _invoice_number(rng, n, vendor), "supplier": vendor,
              "legal_entity": le.upper(), "currency": str(po.get("CurrencyCode") or v.get("CurrencyCode") or "USD"),
              "invoice_date": time.strftime("%Y-%m-%d", time.gmtime(day * 86400)),
              "due_date": time.strftime("%Y-%m-%d", time.gmtime((day + 30) * 86400)),
              "subtotal": str(subtotal), "amount_invoiced": str(total), "tax_amount": str(tax),
              "purchase_order": str(po["PurchaseOrderNumber"]), "invoice_type": "po_invoice",
              "payment_terms": str(po.get("PaymentTermsName") or v.get("DefaultPaymentTermsName") or ""),
              "erp_source": state.settings.erp_source}
    return header, lines, kind


def create_invoices(state: SnowState, d365: Any, count: int, *, invalid_share: float,
                    stamps: list[str] | None = None) -> list[str]:
    """Create ``count`` approved invoices with outbound invoices in ``new``; returns the outbound sys_ids.
    ``stamps`` (one per invoice) sets sys_created_on/sys_updated_on, so seeding can make ties on purpose."""
    if count <= 0:
        return []
    if getattr(state, "_catalog", None) is None:
        state._catalog = load_catalog(d365, state.config.data.legal_entities, state.config.data.approved_invoices)
    cat: Catalog = state._catalog
    if not cat.pos:
        return []
    rng: random.Random = state._apo_rng
    n_invalid = round(count * invalid_share)
    invalid_at = sorted(rng.sample(range(count), n_invalid)) if n_invalid else []
    kinds = {pos: INVALID_KINDS[i % len(INVALID_KINDS)] for i, pos in enumerate(invalid_at)}
    user = state.config.credentials.snow_username
    created: list[str] = []
    out_t, out_lines_t = state.tables[OUTBOUND_INVOICE], state.tables[OUTBOUND_INVOICE_LINE]
    inv_t, inv_lines_t = state.tables[SHOP_INVOICE], state.tables[SHOP_INVOICE_LINE]
    for i in range(count):
        state._invoice_counter += 1
        header, lines, kind = _build(state, cat, rng, state._invoice_counter, kinds.get(i))
        stamp = stamps[i] if stamps else state.stamp()
        inv = inv_t.insert({**header, "number": state.ids.number("INV"), "state": "approved", "amount_paid": "0.00"},
                           sys_id=state.ids.sys_id(), stamp=stamp, user=user)
        out = out_t.insert({**header, "number": state.ids.number("OBINV"), "integration_status": "new",
                            "invoice_status": "approved", "invoice": inv["sys_id"]},
                           sys_id=state.ids.sys_id(), stamp=stamp, user=user)
        for line in lines:
            inv_lines_t.insert({**line, "invoice": inv["sys_id"]}, sys_id=state.ids.sys_id(), stamp=stamp, user=user)
            out_lines_t.insert({**line, "outbound_invoice": out["sys_id"]}, sys_id=state.ids.sys_id(), stamp=stamp,
                               user=user)
        if kind:
            state.invalid_invoices[out["sys_id"]] = [kind]
        created.append(out["sys_id"])
    return created


def seed(state: SnowState, d365: Any, count: int) -> list[str]:
    """The seeded invoices: deterministic from ``config.data.seed``; stamped an hour ago in groups of three per
    second, so keyset clients meet ``sys_updated_on`` ties from the first poll."""
    state._catalog = None
    state._apo_rng = random.Random(f"snow-apo:{state.config.data.seed}")
    state._invoice_counter = 0
    base = int(state.clock()) - 3600
    stamps = [utc_stamp(base + i // 3) for i in range(count)]
    return create_invoices(state, d365, count, invalid_share=state.config.data.invalid_invoice_share, stamps=stamps)


# -- business rules -------------------------------------------------------------------------------------------
def after_write(state: SnowState, table: str, row: dict[str, str], changed: set[str], user: str) -> None:
    """Run the APO business rules for a write to ``table`` (called with the state lock held)."""
    if table == OUTBOUND_INVOICE:
        _outbound_changed(state, row, changed, user)
    elif table == PAYMENT_DETAIL:
        _payment_changed(state, row, user)


def _outbound_changed(state: SnowState, row: dict[str, str], changed: set[str], user: str) -> None:
    inv_t = state.tables[SHOP_INVOICE]
    invoice = inv_t.rows.get(row.get("invoice", ""))
    if invoice is None or row.get("integration_status") != "processed":
        return
    values: dict[str, str] = {}
    # Posting details flow to the invoice (reference §5.2: "ERP number ... populated after the invoice is posted").
    for col in ("erp_number", "erp_posting_date"):
        if row.get(col) and row[col] != invoice.get(col):
            values[col] = row[col]
    if "integration_status" in changed and invoice.get("state") == "approved":
        values["state"] = "pending_payment"
    if values:
        inv_t.update(invoice["sys_id"], values, stamp=state.stamp(), user=user)
    _recompute_payment_state(state, invoice["sys_id"], user)


def _payment_changed(state: SnowState, row: dict[str, str], user: str) -> None:
    """Match the payment to its invoice by erp_source + legal entity + supplier + invoice number (inference: the
    documented staging columns carry exactly these keys) and recompute the invoice's payment state."""
    inv_t, pay_t = state.tables[SHOP_INVOICE], state.tables[PAYMENT_DETAIL]
    key = (row.get("erp_source", ""), row.get("legal_entity", "").upper(), row.get("erp_supplier_code", ""),
           row.get("erp_invoice_number", ""))
    invoice = inv_t.lookup(PAYMENT_MATCH, key)
    new_id = invoice["sys_id"] if invoice else ""
    old_id = row.get("invoice", "")
    if old_id != new_id:
        pay_t.set_fields(row["sys_id"], {"invoice": new_id})
        if old_id:
            state.payments_by_invoice.get(old_id, set()).discard(row["sys_id"])
            _recompute_payment_state(state, old_id, user)
    if new_id:
        state.payments_by_invoice.setdefault(new_id, set()).add(row["sys_id"])
        _recompute_payment_state(state, new_id, user)


def _recompute_payment_state(state: SnowState, invoice_id: str, user: str) -> None:
    inv_t, pay_t = state.tables[SHOP_INVOICE], state.tables[PAYMENT_DETAIL]
    invoice = inv_t.rows.get(invoice_id)
    if invoice is None:
        return
    payments = [pay_t.rows[p] for p in state.payments_by_invoice.get(invoice_id, ()) if p in pay_t.rows]
    paid = sum((money(p.get("payment_amount")) for p in payments), Decimal(0))
    values = {"amount_paid": str(money(paid))}
    due = money(invoice.get("amount_invoiced"))
    current = invoice.get("state")
    # Only a posted invoice (pending payment) can become paid; partial payments keep it pending (inference).
    if current == "pending_payment" and payments and paid >= due:
        values["state"] = "paid"
        values["payment_date"] = max(p.get("payment_date", "") for p in payments)
    elif current == "paid" and paid < due:
        values["state"] = "pending_payment"  # a payment was reversed or corrected downwards (inference)
    inv_t.update(invoice_id, values, stamp=state.stamp(), user=user)
