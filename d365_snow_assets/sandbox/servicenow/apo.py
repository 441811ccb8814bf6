"""Accounts Payable Operations on the fake instance: approved invoices, their outbound records, and the business
rules that move an invoice Approved → Pending payment → Paid (reference/servicenow-s2p-schema.md §5.8, §6, §7).

An approved invoice references real records (supplier, legal entity, PO, PO lines, GL accounts, cost centers,
payment terms), and those exist only once the connector has pushed F&O's master data. So invoices are PLANNED when
the sandbox is seeded (from the fake F&O, deterministic by seed, a configured share deliberately invalid) and
MATERIALIZED — ``sn_shop_invoice`` + lines, outbound invoice + lines with Integration status "New" and ERP source
D365FO (documented: approval creates the outbound row in New) — as soon as every record they reference exists,
checked after each import set is transformed and on an admin approval. Their sys_created_on/sys_updated_on are
handed out three per second from that moment on, so keyset readers meet ties but never a record stamped before one
they could already have read.

Every column is written through its LABEL (resolved on the instance's dictionary), so the rules work the same on
the documented and the variant instance. The link from an outbound invoice to its ``sn_shop_invoice`` is kept
inside the sandbox: no documented field links them (§6.1).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from .schema import (
    BASE_INVOICE,
    COST_CENTER,
    ERP_SOURCE,
    GL_ACCOUNT,
    LEGAL_ENTITY,
    OUTBOUND_INVOICE,
    OUTBOUND_INVOICE_LINE,
    PAYMENT_DETAIL,
    PAYMENT_TERM,
    PURCHASE_ORDER,
    PURCHASE_ORDER_LINE,
    SHOP_INVOICE,
    SHOP_INVOICE_LINE,
    SUPPLIER,
    UOM,
)
from .store import utc_stamp

if TYPE_CHECKING:
    from .state import SnowState

INVALID_KINDS = ("unknown_gl_account", "suspended_cost_center", "vendor_on_hold", "amount_mismatch")
BLOCKING_HOLDS = frozenset({"All", "Invoice"})  # DESIGN §5.2: Payment does not block posting
CENT = Decimal("0.01")
# Ledger accounts an AP admin keyed by hand for another ERP (seeded by state.py); F&O has none of these codes.
MANUAL_GL_ACCOUNTS = ("990100", "990200", "990300")
MANUAL_GL_SOURCE = "SAP"


def money(value: Any) -> Decimal:
    return Decimal(str(value if value not in (None, "") else 0)).quantize(CENT, rounding=ROUND_HALF_UP)


def _yes(value: Any) -> bool:
    return str(value).lower() in ("yes", "true", "1")


@dataclass
class PlannedLine:
    po_line: str
    description: str
    quantity: str
    unit_price: str
    amount: str
    tax_amount: str
    unit: str
    gl_account: str  # F&O main account, "" for an item line whose posting profile decides
    cost_center: str  # "" when the PO line has none
    manual_gl: bool = False  # the line points at a hand-made ledger account (invalid kind)


@dataclass
class PlannedInvoice:
    """An invoice a clerk will approve once its references exist in ServiceNow."""

    n: int
    legal_entity: str  # upper case, as pushed
    vendor: str  # the order's invoice account
    po: str
    currency: str
    payment_terms: str
    supplier_invoice_number: str
    invoice_date: str
    due_date: str
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    lines: list[PlannedLine]
    kinds: list[str]
    slot: int | None = None  # the second it materializes at, once its references exist
    outbound_id: str = ""


@dataclass
class ApoState:
    rng: random.Random
    plans: list[PlannedInvoice] = field(default_factory=list)
    invoice_of_outbound: dict[str, str] = field(default_factory=dict)
    last_slot: tuple[int, int] = (0, 0)  # (second, invoices stamped in it)
    catalog: Catalog | None = None


# -- planning from F&O --------------------------------------------------------------------------------------------
@dataclass
class Catalog:
    """The slice of F&O data invoices are planned from."""

    vendors: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (le, account) -> row
    conflicting: set[str] = field(default_factory=set)  # accounts naming different parties in two companies
    pos: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    active_accounts: set[str] = field(default_factory=set)
    cost_centers: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # le ("" = shared) -> (code, ok)
    # Filled on first use: the catalog does not change once loaded, and planning asks again for every invoice.
    _pushable_lines: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def pushable_lines(self, po: dict[str, Any]) -> list[dict[str, Any]]:
        key = (str(po["dataAreaId"]).lower(), str(po["PurchaseOrderNumber"]))
        if key not in self._pushable_lines:
            self._pushable_lines[key] = [x for x in self.lines.get(key, []) if self.pushable(key[0], x)]
        return self._pushable_lines[key]

    def centers(self, le: str, active: bool) -> list[str]:
        return [c for c, ok in self.cost_centers.get(le, []) + self.cost_centers.get("", []) if ok == active]

    def pushable(self, le: str, line: dict[str, Any]) -> bool:
        """Whether the connector pushes this line: its GL account and cost center are blank or exist and are
        active (DESIGN §5.1 holds the others back, and an invoice on a line never pushed would never appear)."""
        gl = str(line.get("MainAccountIdDisplayValue") or "")
        cc = parse_cost_center(str(line.get("DefaultLedgerDimensionDisplayValue") or ""))
        return (not gl or gl in self.active_accounts) and (not cc or cc in self.centers(le, active=True))


def parse_cost_center(display_value: str) -> str:
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
    cat = Catalog()
    if d365 is None or not hasattr(d365, "read"):
        return cat
    parties: dict[str, set[str]] = {}
    for v in d365.read("SELECT dataAreaId, VendorAccountNumber, VendorPartyNumber, OnHoldStatus, CurrencyCode, "
                       "DefaultPaymentTermsName FROM VendorsV2 WHERE lower(dataAreaId) IN (SELECT unnest(?))",
                       [les]):
        cat.vendors[(str(v["dataAreaId"]).lower(), str(v["VendorAccountNumber"]))] = v
        parties.setdefault(str(v["VendorAccountNumber"]), set()).add(str(v["VendorPartyNumber"]))
    cat.conflicting = {account for account, p in parties.items() if len(p) > 1}
    po_limit = max(200, wanted * 12) // max(1, len(les))
    # A clerk cannot approve an invoice against a canceled order, and the connector rejects one: only open orders,
    # the first ones of every company.
    head_sql = ("SELECT dataAreaId, PurchaseOrderNumber FROM PurchaseOrderHeadersV2 "
                "WHERE lower(dataAreaId) IN (SELECT unnest(?)) AND PurchaseOrderStatus <> 'Canceled' "
                "QUALIFY row_number() OVER (PARTITION BY dataAreaId ORDER BY PurchaseOrderNumber) <= ?")
    cat.pos = d365.read(
        "SELECT h.dataAreaId, h.PurchaseOrderNumber, h.OrderVendorAccountNumber, h.InvoiceVendorAccountNumber, "
        "h.CurrencyCode, h.PaymentTermsName FROM PurchaseOrderHeadersV2 h "
        f"JOIN ({head_sql}) k ON h.dataAreaId = k.dataAreaId AND h.PurchaseOrderNumber = k.PurchaseOrderNumber "
        "ORDER BY h.dataAreaId, h.PurchaseOrderNumber", [les, po_limit])
    for line in d365.read(
            "SELECT l.dataAreaId, l.PurchaseOrderNumber, l.LineNumber, l.LineDescription, l.PurchaseUnitSymbol, "
            "l.OrderedPurchaseQuantity, l.PurchasePrice, l.LineAmount, l.MainAccountIdDisplayValue, "
            "l.DefaultLedgerDimensionDisplayValue FROM PurchaseOrderLinesV2 l "
            f"JOIN ({head_sql}) k ON l.dataAreaId = k.dataAreaId AND l.PurchaseOrderNumber = k.PurchaseOrderNumber "
            "ORDER BY l.dataAreaId, l.PurchaseOrderNumber, l.LineNumber", [les, po_limit]):
        cat.lines.setdefault((str(line["dataAreaId"]).lower(), str(line["PurchaseOrderNumber"])), []).append(line)
    for acc in d365.read("SELECT DISTINCT MainAccountId, IsSuspended FROM MainAccounts ORDER BY MainAccountId"):
        if not _yes(acc["IsSuspended"]):
            cat.active_accounts.add(str(acc["MainAccountId"]))
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


def _vendor_of(po: dict[str, Any]) -> str:
    return str(po.get("InvoiceVendorAccountNumber") or po.get("OrderVendorAccountNumber") or "")


def _plan(state: SnowState, cat: Catalog, rng: random.Random, n: int, kind: str | None) -> PlannedInvoice:
    """One invoice of the wanted ``kind`` (None = valid); a kind the data has no candidate for falls back to
    another invalid kind."""
    def vendor_ok(po: dict[str, Any], on_hold: bool) -> bool:
        le, account = str(po["dataAreaId"]).lower(), _vendor_of(po)
        vendor = cat.vendors.get((le, account))
        if vendor is None or account in cat.conflicting:
            return False  # the connector holds back an account naming two parties: no supplier would exist
        return (str(vendor.get("OnHoldStatus") or "No") in BLOCKING_HOLDS) == on_hold

    candidates = [po for po in cat.pos if cat.pushable_lines(po)]
    held = [po for po in candidates if vendor_ok(po, on_hold=True)]
    if kind == "vendor_on_hold" and not held:
        kind = "amount_mismatch"
    pool = held if kind == "vendor_on_hold" else [po for po in candidates if vendor_ok(po, on_hold=False)]
    if not pool:
        raise RuntimeError("the fake F&O has no purchase orders with pushable lines for the configured companies")
    po = pool[rng.randrange(len(pool))]
    le = str(po["dataAreaId"]).lower()
    if kind == "suspended_cost_center" and not cat.centers(le, active=False):
        kind = "unknown_gl_account"
    vendor = _vendor_of(po)
    po_lines = cat.pushable_lines(po)
    picked = po_lines[: rng.randint(1, min(3, len(po_lines)))]
    tax_rate = Decimal(rng.choice(("0", "0.05", "0.1", "0.2")))
    lines: list[PlannedLine] = []
    for pl in picked:
        qty = Decimal(str(pl.get("OrderedPurchaseQuantity") or 1))
        price = money(pl.get("PurchasePrice") or 0)
        amount = money(pl["LineAmount"]) if pl.get("LineAmount") not in (None, "") else money(qty * price)
        lines.append(PlannedLine(
            po_line=str(pl["LineNumber"]), description=str(pl.get("LineDescription") or ""),
            quantity=format(qty.normalize(), "f"), unit_price=str(price), amount=str(amount),
            tax_amount=str(money(amount * tax_rate)), unit=str(pl.get("PurchaseUnitSymbol") or ""),
            gl_account=str(pl.get("MainAccountIdDisplayValue") or ""),
            cost_center=parse_cost_center(str(pl.get("DefaultLedgerDimensionDisplayValue") or ""))))
    if kind == "unknown_gl_account":
        lines[0].gl_account = MANUAL_GL_ACCOUNTS[n % len(MANUAL_GL_ACCOUNTS)]
        lines[0].manual_gl = True
    elif kind == "suspended_cost_center":
        suspended = cat.centers(le, active=False)
        lines[-1].cost_center = suspended[rng.randrange(len(suspended))]
    subtotal = sum((Decimal(x.amount) for x in lines), Decimal(0))
    tax = sum((Decimal(x.tax_amount) for x in lines), Decimal(0))
    total = subtotal + tax
    if kind == "amount_mismatch":
        total += money(rng.randint(1, 500))
    day = int(state.clock() // 86400) - rng.randint(1, 20)
    v = cat.vendors.get((le, vendor), {})
    return PlannedInvoice(
        n=n, legal_entity=le.upper(), vendor=vendor, po=str(po["PurchaseOrderNumber"]),
        currency=str(po.get("CurrencyCode") or v.get("CurrencyCode") or "USD"),
        payment_terms=str(po.get("PaymentTermsName") or v.get("DefaultPaymentTermsName") or ""),
        supplier_invoice_number=_invoice_number(rng, n, vendor),
        invoice_date=time.strftime("%Y-%m-%d", time.gmtime(day * 86400)),
        due_date=time.strftime("%Y-%m-%d", time.gmtime((day + 30) * 86400)),
        subtotal=subtotal, tax=tax, total=total, lines=lines, kinds=[kind] if kind else [])


def plan_invoices(state: SnowState, count: int, *, invalid_share: float) -> list[PlannedInvoice]:
    """Plan ``count`` more invoices (deterministic from the seed and how many were planned before)."""
    apo = state.apo
    if count <= 0:
        return []
    if apo.catalog is None:
        apo.catalog = load_catalog(state.d365, state.config.data.legal_entities, state.config.data.approved_invoices)
    if not apo.catalog.pos:
        return []
    n_invalid = round(count * invalid_share)
    invalid_at = sorted(apo.rng.sample(range(count), n_invalid)) if n_invalid else []
    kinds = {pos: INVALID_KINDS[i % len(INVALID_KINDS)] for i, pos in enumerate(invalid_at)}
    planned = [_plan(state, apo.catalog, apo.rng, len(apo.plans) + i + 1, kinds.get(i)) for i in range(count)]
    apo.plans += planned
    return planned


# -- materialization ----------------------------------------------------------------------------------------------
@dataclass
class References:
    supplier: str
    legal_entity: str
    po: str
    payment_terms: str
    lines: list[tuple[str, str, str, str]]  # (PO line, GL account, cost center, unit) sys_ids


def _first(state: SnowState, table: str, by_label: dict[str, str]) -> str:
    found = state.find_by_labels(table, by_label)
    return found[0]["sys_id"] if found else ""


def resolve(state: SnowState, plan: PlannedInvoice) -> References | None:
    """The sys_ids an invoice references, or None while one of them does not exist yet."""
    source = state.settings.erp_source
    try:
        erp_source = _first(state, ERP_SOURCE, {"ERP Source": source})
        le = _first(state, LEGAL_ENTITY, {"ERP company code": plan.legal_entity, "ERP Source": erp_source})
        supplier = _first(state, SUPPLIER, {"ERP company code": plan.vendor, "ERP source": source})
        po = _first(state, PURCHASE_ORDER, {"ERP number": plan.po, "Legal entity": le, "ERP source": source}) \
            if le else ""
        terms = _first(state, PAYMENT_TERM, {"Name": plan.payment_terms}) if plan.payment_terms else ""
        if not (erp_source and le and supplier and po) or (plan.payment_terms and not terms):
            return None
        lines = []
        for line in plan.lines:
            po_line = _first(state, PURCHASE_ORDER_LINE, {"Purchase order": po, "ERP line number": line.po_line})
            gl = _first(state, GL_ACCOUNT, {"Ledger account": line.gl_account,
                                            "ERP source": MANUAL_GL_SOURCE if line.manual_gl else source}) \
                if line.gl_account else ""
            cc = (_first(state, COST_CENTER, {"Code": line.cost_center, "ERP Source": source, "Legal entity": le})
                  or _first(state, COST_CENTER, {"Code": line.cost_center, "ERP Source": source, "Legal entity": ""})
                  ) if line.cost_center else ""
            if not po_line or (line.gl_account and not gl) or (line.cost_center and not cc):
                return None
            unit = _first(state, UOM, {"Symbol": line.unit}) if line.unit else ""  # optional: blank if unknown
            lines.append((po_line, gl, cc, unit))
    except KeyError:  # a column these lookups need was removed from the instance
        return None
    return References(supplier, le, po, terms, lines)


def check_planned(state: SnowState) -> list[str]:
    """Schedule every waiting invoice whose references now exist (three per second from now on), then materialize
    the ones due; returns the outbound sys_ids created now."""
    now = int(state.clock())
    apo = state.apo
    per_second = max(1, int(state.settings.invoices_per_second))
    for plan in apo.plans:
        if plan.outbound_id or plan.slot is not None or resolve(state, plan) is None:
            continue
        second, used = apo.last_slot
        if second < now:
            second, used = now, 0
        if used >= per_second:
            second, used = second + 1, 0
        plan.slot = second
        apo.last_slot = (second, used + 1)
    return catch_up(state)


def catch_up(state: SnowState) -> list[str]:
    """Materialize every scheduled invoice whose second has come (called on every request, so none is stamped
    after a record a reader has already seen)."""
    now = int(state.clock())
    created: list[str] = []
    for plan in state.apo.plans:
        if plan.outbound_id or plan.slot is None or plan.slot > now:
            continue
        refs = resolve(state, plan)
        if refs is None:  # a reference vanished since it was scheduled: wait again
            plan.slot = None
            continue
        created.append(_materialize(state, plan, refs, utc_stamp(plan.slot)))
    return created


def _materialize(state: SnowState, plan: PlannedInvoice, refs: References, stamp: str) -> str:
    source = state.settings.erp_source
    new = state.choice_value(OUTBOUND_INVOICE, "Integration status", "New")
    new_line = state.choice_value(OUTBOUND_INVOICE_LINE, "Integration status", "New")
    common = {"Supplier invoice number": plan.supplier_invoice_number, "Supplier": refs.supplier,
              "Legal entity": refs.legal_entity, "Payment terms": refs.payment_terms, "Subtotal": str(plan.subtotal),
              "Tax amount": str(plan.tax), "Invoice date": plan.invoice_date}
    invoice = state.insert_labels(SHOP_INVOICE, {
        **common, "Type": "po_invoice", "Status": "approved",
        "Channel": "integration", "Purchase order": refs.po, "Amount invoiced (Transaction currency)": str(plan.total),
        "Due date": plan.due_date, "ERP source": source}, stamp=stamp)
    outbound = state.insert_labels(OUTBOUND_INVOICE, {
        **common, "Original invoice": plan.supplier_invoice_number,
        "Purchase order": refs.po, "Currency": plan.currency, "Amount invoiced": str(plan.total),
        "Invoice type": "PO invoice", "Invoice status": "Approved", "Integration status": new,
        "ERP source": source}, stamp=stamp)
    for line, (po_line, gl, cc, unit) in zip(plan.lines, refs.lines, strict=True):
        values = {"Purchase order line": po_line, "Line description": line.description,
                  "Line quantity": line.quantity, "Line unit price": line.unit_price,
                  "Line amount invoiced": line.amount, "Tax amount": line.tax_amount, "GL account": gl,
                  "Cost center": cc, "Unit": unit}
        state.insert_labels(SHOP_INVOICE_LINE, {**values, "Invoice": invoice["sys_id"], "Subtotal": line.amount},
                            stamp=stamp)
        state.insert_labels(OUTBOUND_INVOICE_LINE, {
            **values, "Invoice": outbound["sys_id"], "Subtotal": line.amount,
            "Integration status": new_line, "ERP source": source, "Invoice line status": "Approved"}, stamp=stamp)
    plan.outbound_id = outbound["sys_id"]
    state.apo.invoice_of_outbound[outbound["sys_id"]] = invoice["sys_id"]
    if plan.kinds:
        state.invalid_invoices[outbound["sys_id"]] = list(plan.kinds)
    return outbound["sys_id"]


# -- business rules -----------------------------------------------------------------------------------------------
def after_write(state: SnowState, table: str, row: dict[str, str], changed: set[str], user: str) -> None:
    """Run the APO business rules for a write to ``table`` (called with the state lock held)."""
    if table == OUTBOUND_INVOICE:
        _outbound_changed(state, row, changed, user)
    elif table == PAYMENT_DETAIL:
        _payment_changed(state, row, user)
    elif (table in (SHOP_INVOICE, BASE_INVOICE) and row.get("sys_class_name") == SHOP_INVOICE
          and state.el(BASE_INVOICE, "ERP number") in changed):
        _rematch_payments(state, row, user)


def _outbound_changed(state: SnowState, row: dict[str, str], changed: set[str], user: str) -> None:
    """Processed (with the ERP number) moves the invoice to Pending payment and carries the ERP number and posting
    date over (§7: "The ERP number is updated in the invoice table with payment status set to Pending Payment")."""
    invoice = state.tables[SHOP_INVOICE].rows.get(state.apo.invoice_of_outbound.get(row["sys_id"], ""))
    status = state.el(OUTBOUND_INVOICE, "Integration status")
    if invoice is None or row.get(status) != state.choice_value(OUTBOUND_INVOICE, "Integration status", "Processed"):
        return
    values: dict[str, str] = {}
    for label in ("ERP number", "ERP posting date"):
        value = row.get(state.el(OUTBOUND_INVOICE, label), "")
        if value and value != invoice.get(state.el(BASE_INVOICE, label)):
            values[state.el(BASE_INVOICE, label)] = value
    state_col = state.el(BASE_INVOICE, "Status")
    if status in changed and invoice.get(state_col) == "approved":
        values[state_col] = "pending_payment"
    if values:
        state.update(SHOP_INVOICE, invoice["sys_id"], values, user=user)
    _recompute_payment_state(state, invoice["sys_id"], user)


def _match_invoice(state: SnowState, payment: dict[str, str]) -> str:
    """The invoice a payment detail pays: ERP invoice number = the invoice's ERP number, ERP supplier code = its
    supplier's ERP company code, same ERP source (inference, §7: the match is undocumented; the Integer "ERP supplier
    code" column of a supplier cannot hold F&O's alphanumeric accounts, and both are described as the supplier's
    code in the ERP)."""
    number = payment.get(state.el(PAYMENT_DETAIL, "ERP invoice number"), "")
    code = payment.get(state.el(PAYMENT_DETAIL, "ERP supplier code"), "")
    source = payment.get(state.el(PAYMENT_DETAIL, "ERP Source"), "")
    if not (number and code):
        return ""
    supplier_code = state.el(SUPPLIER, "ERP company code")
    for invoice in state.find_by_labels(SHOP_INVOICE, {"ERP number": number, "ERP source": source}):
        supplier = state.tables[SUPPLIER].rows.get(invoice.get(state.el(BASE_INVOICE, "Supplier"), ""))
        if supplier is not None and supplier.get(supplier_code, "").casefold() == code.casefold():
            return invoice["sys_id"]
    return ""


def _payment_changed(state: SnowState, row: dict[str, str], user: str) -> None:
    link = state.el(PAYMENT_DETAIL, "Invoice")
    new_id, old_id = _match_invoice(state, row), row.get(link, "")
    if old_id != new_id:
        state.tables[PAYMENT_DETAIL].set_fields(row["sys_id"], {link: new_id})
        if old_id:
            _recompute_payment_state(state, old_id, user)
    if new_id:
        _recompute_payment_state(state, new_id, user)


def _rematch_payments(state: SnowState, invoice: dict[str, str], user: str) -> None:
    """The invoice's ERP number changed: payment details that now name it, or named its old number, move."""
    link = state.el(PAYMENT_DETAIL, "Invoice")
    number = invoice.get(state.el(BASE_INVOICE, "ERP number"), "")
    payments = {p["sys_id"]: p for p in state.tables[PAYMENT_DETAIL].find((link,), (invoice["sys_id"],))}
    if number:
        payments.update({p["sys_id"]: p for p in state.find_by_labels(PAYMENT_DETAIL, {"ERP invoice number": number})})
    for payment in payments.values():
        _payment_changed(state, payment, user)


def _recompute_payment_state(state: SnowState, invoice_id: str, user: str) -> None:
    """Paid once the matched payment details add up to the invoice amount; partial payments keep it Pending
    payment, and a payment reversed or corrected downwards moves it back (inference)."""
    invoice = state.tables[SHOP_INVOICE].rows.get(invoice_id)
    if invoice is None:
        return
    payments = _payments(state, invoice_id)
    paid = payments_of(state, invoice_id)
    due = money(invoice.get(state.el(BASE_INVOICE, "Amount invoiced (Transaction currency)")))
    state_col = state.el(BASE_INVOICE, "Status")
    values: dict[str, str] = {}
    if invoice.get(state_col) == "pending_payment" and payments and paid >= due:
        values[state_col] = "paid"
        values[state.el(BASE_INVOICE, "Payment date")] = max(
            p.get(state.el(PAYMENT_DETAIL, "Payment date"), "") for p in payments)
    elif invoice.get(state_col) == "paid" and paid < due:
        values[state_col] = "pending_payment"
    if values:
        state.update(SHOP_INVOICE, invoice_id, values, user=user)


def _payments(state: SnowState, invoice_id: str) -> list[dict[str, str]]:
    return state.tables[PAYMENT_DETAIL].find((state.el(PAYMENT_DETAIL, "Invoice"),), (invoice_id,))


def payments_of(state: SnowState, invoice_id: str) -> Decimal:
    """What the payment details matched to an invoice add up to."""
    return sum((money(p.get(state.el(PAYMENT_DETAIL, "Payment amount"))) for p in _payments(state, invoice_id)),
               Decimal(0))
