"""Invoice validation against the F&O snapshots (DESIGN §5.2 step 1).

Every rule is one polars join of the batch's headers or lines against one reference frame and yields
``(invoice, order, sentence)`` rows; the sentences of an invoice are then gathered in rule order. All problems
are collected, none stops the others, so the clerk can fix an invoice in one pass.

The GL account and cost center rules have the same semantics as
:func:`d365_snow_assets.validation.reference_data.check_account_references` (which guards PO lines on their way
to ServiceNow) and run on the same :class:`ReferenceData` frames. They are re-expressed here rather than called
because invoice lines need per-problem sentences and rules that depend on the line kind (an item line needs no GL
account); ``tests/invoices/test_validation.py`` checks that both agree on every line that carries both values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import polars as pl

from d365_snow_assets.invoices.messages import processing_message
from d365_snow_assets.invoices.model import InvoiceSettings, OutboundInvoice, ParsedInvoice
from d365_snow_assets.validation.reference_data import ReferenceData

if TYPE_CHECKING:
    from d365_snow_assets.warehouse import Warehouse

# Active ISO 4217 codes (2025) plus recently replaced ones an F&O tenant may still hold (HRK, SLL, ZWL, ANG);
# funds, metals and test codes (X-codes other than currency unions) are left out. A fixed list rather than
# F&O's Currencies entity because that entity is not snapshotted; the PO's currency is checked as well when
# the invoice names one. The vendor's CurrencyCode is only a default in F&O, so a different invoice currency is
# not an error there and is not one here. [choice]
_ISO_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF
CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK
HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
"""
ISO_4217: frozenset[str] = frozenset(_ISO_CODES.split())

# OnHoldStatus members that block invoices (DESIGN §5.2); `Payment` only blocks payments.
BLOCKING_HOLDS: frozenset[str] = frozenset({"All", "Invoice"})
CANCELED = "Canceled"


@dataclass(frozen=True)
class InvoiceVerdict:
    """The validation result of one invoice."""

    invoice: OutboundInvoice
    problems: tuple[str, ...]
    # F&O VendorAccount (the order vendor): the PO's OrderVendorAccountNumber when the invoice names a PO,
    # else the supplier itself.
    order_account: str
    message_limit: int = 4000

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def processing_message(self) -> str:
        """The text for ServiceNow's ``processing_message`` (bounded; ``""`` for a valid invoice)."""
        return processing_message(self.problems, self.message_limit) if self.problems else ""


def _strings(frame: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    """``frame`` reduced to ``columns`` (source → alias) as strings; a snapshot that was never extracted (no
    columns at all) or lacks an optional column reads as empty / blank instead of failing the batch."""
    exprs = [(pl.col(src).cast(pl.String).fill_null("") if src in frame.columns else pl.lit("")).alias(alias)
             for src, alias in columns.items()]
    if frame.width == 0:
        return pl.DataFrame(schema=dict.fromkeys(columns.values(), pl.String))
    return frame.select(exprs)


@dataclass(frozen=True)
class InvoiceReferences:
    """The reference data the rules join against, normalised once per batch (legal entities lower-case)."""

    vendors: pl.DataFrame  # _le, vendor, hold
    orders: pl.DataFrame  # _le, po, po_status, po_currency, po_order_vendor, po_invoice_vendor
    order_lines: pl.DataFrame  # _le, po, po_line (Int64), po_line_status
    accounts: ReferenceData
    legal_entities: frozenset[str] | None = None  # lower-case; None = whatever the snapshots hold

    @classmethod
    def from_snapshots(cls, *, vendors: pl.DataFrame, purchase_orders: pl.DataFrame,
                       purchase_order_lines: pl.DataFrame, main_accounts: pl.DataFrame,
                       dimension_values: pl.DataFrame, cost_center_dimension: str = "CostCenter",
                       legal_entities: Iterable[str] | None = None) -> InvoiceReferences:
        """From snapshot frames with F&O column names (VendorsV2, PurchaseOrderHeadersV2, PurchaseOrderLinesV2,
        MainAccounts, FinancialDimensionValues)."""
        v = _strings(vendors, {"dataAreaId": "_le", "VendorAccountNumber": "vendor", "OnHoldStatus": "hold"})
        po = _strings(purchase_orders, {"dataAreaId": "_le", "PurchaseOrderNumber": "po",
                                        "PurchaseOrderStatus": "po_status", "CurrencyCode": "po_currency",
                                        "OrderVendorAccountNumber": "po_order_vendor",
                                        "InvoiceVendorAccountNumber": "po_invoice_vendor"})
        lines = _strings(purchase_order_lines, {"dataAreaId": "_le", "PurchaseOrderNumber": "po",
                                                "LineNumber": "po_line", "PurchaseOrderLineStatus": "po_line_status"})
        # LineNumber arrives as Int64, Float64 ("3.0") or Decimal depending on how the snapshot was typed.
        lines = lines.with_columns(pl.col("po_line").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False))
        lower = pl.col("_le").str.to_lowercase()
        return cls(
            vendors=v.with_columns(lower).unique(["_le", "vendor"], keep="last"),
            orders=po.with_columns(lower).unique(["_le", "po"], keep="last"),
            order_lines=lines.with_columns(lower).unique(["_le", "po", "po_line"], keep="last"),
            accounts=ReferenceData.from_snapshots(main_accounts, dimension_values, cost_center_dimension),
            legal_entities=frozenset(le.lower() for le in legal_entities) if legal_entities is not None else None,
        )

    @classmethod
    def from_warehouse(cls, warehouse: Warehouse, legal_entities: Sequence[str],
                       cost_center_dimension: str = "CostCenter") -> InvoiceReferences:
        """From the current snapshots in the warehouse (MainAccounts and shared dimension values are read for
        all legal entities: they are not per company)."""
        return cls.from_snapshots(
            vendors=warehouse.read_snapshot("VendorsV2", legal_entities),
            purchase_orders=warehouse.read_snapshot("PurchaseOrderHeadersV2", legal_entities),
            purchase_order_lines=warehouse.read_snapshot("PurchaseOrderLinesV2", legal_entities),
            main_accounts=warehouse.read_snapshot("MainAccounts"),
            dimension_values=warehouse.read_snapshot("FinancialDimensionValues"),
            cost_center_dimension=cost_center_dimension, legal_entities=legal_entities)


_PROBLEM_SCHEMA = {"_idx": pl.Int64, "_order": pl.Int64, "problem": pl.String}


def _problems(frame: pl.DataFrame, condition: pl.Expr, sentence: pl.Expr, order: pl.Expr | int) -> pl.DataFrame:
    """The ``(_idx, _order, problem)`` rows of ``frame`` where ``condition`` holds (``_idx`` = the invoice's
    position in the batch: sys_ids may be blank or repeated in bad input)."""
    order_expr = order if isinstance(order, pl.Expr) else pl.lit(order)
    return frame.filter(condition).select(
        "_idx", order_expr.cast(pl.Int64).alias("_order"), sentence.cast(pl.String).alias("problem"))


def _short(column: str) -> pl.Expr:
    """A user value inside a sentence, cut like :func:`messages.shorten` so a 10 KB value cannot crowd out the
    other problems."""
    c = pl.col(column)
    return pl.when(c.str.len_chars() > 60).then(c.str.slice(0, 59) + pl.lit("…")).otherwise(c)


# Header rules sort before line rules; line rules sort by line position then rule.
_HEADER, _LINE = 0, 1_000


def _header_frame(invoices: Sequence[OutboundInvoice]) -> pl.DataFrame:
    return pl.DataFrame({
        "_idx": list(range(len(invoices))),
        "_le": [i.data_area_id for i in invoices],
        "LE": [i.legal_entity for i in invoices],
        "supplier": [i.supplier for i in invoices],
        "currency": [i.currency for i in invoices],
        "po": [i.purchase_order for i in invoices],
    }, schema={"_idx": pl.Int64, "_le": pl.String, "LE": pl.String, "supplier": pl.String,
               "currency": pl.String, "po": pl.String})


def _line_frame(invoices: Sequence[OutboundInvoice]) -> pl.DataFrame:
    rows = [
        {"_idx": idx, "_le": i.data_area_id, "LE": i.legal_entity, "label": line.label,
         "position": line.position, "po": line.purchase_order or i.purchase_order,
         "po_line": line.purchase_order_line, "item": line.item_number, "gl_account": line.gl_account,
         "cost_center": line.cost_center}
        for idx, i in enumerate(invoices) for line in i.lines
    ]
    return pl.DataFrame(rows, schema={"_idx": pl.Int64, "_le": pl.String, "LE": pl.String, "label": pl.String,
                                      "position": pl.Int64, "po": pl.String, "po_line": pl.Int64,
                                      "item": pl.String, "gl_account": pl.String, "cost_center": pl.String})


def _header_rules(h: pl.DataFrame, refs: InvoiceReferences, settings: InvoiceSettings) -> list[pl.DataFrame]:
    out: list[pl.DataFrame] = []
    known_le = h["_le"] != ""
    if refs.legal_entities is not None:
        out.append(_problems(h, known_le & ~pl.col("_le").is_in(sorted(refs.legal_entities)),
                             pl.format("Legal entity {} is not one of the legal entities this connector posts to.",
                                       _short("LE")), _HEADER + 1))
    shaped = pl.col("currency").str.contains(r"^[A-Z]{3}$")
    out.append(_problems(h, shaped & ~pl.col("currency").is_in(sorted(ISO_4217)),
                         pl.format("The currency {} is not a known ISO currency code.", pl.col("currency")),
                         _HEADER + 2))

    vend = h.filter(pl.col("supplier") != "").join(refs.vendors, left_on=["_le", "supplier"],
                                                    right_on=["_le", "vendor"], how="left")
    out.append(_problems(vend, pl.col("hold").is_null(),
                         pl.format("Supplier {} does not exist in Dynamics 365 for legal entity {}.",
                                   _short("supplier"), _short("LE")), _HEADER + 3))
    out.append(_problems(vend, pl.col("hold").is_in(sorted(BLOCKING_HOLDS)),
                         pl.format("Supplier {} is on hold for invoices in {}.", _short("supplier"), _short("LE")),
                         _HEADER + 4))

    # Every purchase order the invoice names (header or lines), checked once per invoice.
    po = h.filter(pl.col("po") != "").join(refs.orders, on=["_le", "po"], how="left")
    out.append(_problems(po, pl.col("po_status").is_null(),
                         pl.format("Purchase order {} does not exist in Dynamics 365 for legal entity {}.",
                                   _short("po"), _short("LE")), _HEADER + 5))
    found = pl.col("po_status").is_not_null()
    if settings.reject_canceled_orders:
        out.append(_problems(po, found & (pl.col("po_status") == CANCELED),
                             pl.format("Purchase order {} is canceled in Dynamics 365.", _short("po")), _HEADER + 6))
    vendor_differs = (pl.col("supplier") != "") & (pl.col("supplier") != pl.col("po_order_vendor")) & (
        pl.col("supplier") != pl.col("po_invoice_vendor"))
    out.append(_problems(po, found & vendor_differs,
                         pl.format("Purchase order {} belongs to supplier {}, not {}.", _short("po"),
                                   pl.col("po_order_vendor"), _short("supplier")), _HEADER + 7))
    # Only for a known currency: an unknown one has its own sentence already.
    currency_differs = ((pl.col("po_currency") != "") & (pl.col("currency") != pl.col("po_currency"))
                        & pl.col("currency").is_in(sorted(ISO_4217)))
    out.append(_problems(po, found & currency_differs,
                         pl.format("The currency {} differs from the currency {} of purchase order {}.",
                                   pl.col("currency"), pl.col("po_currency"), _short("po")), _HEADER + 8))
    return out


def _line_rules(lines: pl.DataFrame, header_pos: pl.DataFrame, refs: InvoiceReferences,
                settings: InvoiceSettings) -> list[pl.DataFrame]:
    out: list[pl.DataFrame] = []
    order = pl.lit(_LINE) + pl.col("position") * 10
    label = pl.col("label")

    nothing = (pl.col("item") == "") & (pl.col("gl_account") == "") & pl.col("po_line").is_null()
    out.append(_problems(lines, nothing,
                         pl.format("{}: there is no item number, GL account or purchase order line.", label), order))
    out.append(_problems(lines, pl.col("po_line").is_not_null() & (pl.col("po") == ""),
                         pl.format("{}: it names purchase order line {} but no purchase order.", label,
                                   pl.col("po_line")), order + 1))

    # A line's own PO, when it differs from the header's, is checked for existence here (the header rule covers
    # the header's PO).
    own_po = (lines.join(header_pos.select("_idx", pl.col("po").alias("_header_po")), on="_idx", how="left")
              .filter((pl.col("po") != "") & (pl.col("po") != pl.col("_header_po").fill_null("")))
              .join(refs.orders.select("_le", "po", "po_status"), on=["_le", "po"], how="left"))
    out.append(_problems(own_po, pl.col("po_status").is_null(),
                         pl.format("{}: purchase order {} does not exist in Dynamics 365 for legal entity {}.", label,
                                   _short("po"), _short("LE")), order + 2))

    matched = (lines.filter(pl.col("po_line").is_not_null() & (pl.col("po") != ""))
               .join(refs.orders.select("_le", "po", pl.lit(True).alias("_po_known")), on=["_le", "po"], how="left")
               .join(refs.order_lines, on=["_le", "po", "po_line"], how="left"))
    # Only when the PO itself exists: otherwise its own rule already said so.
    out.append(_problems(matched, pl.col("_po_known").fill_null(False) & pl.col("po_line_status").is_null(),
                         pl.format("{}: purchase order line {} of {} does not exist in Dynamics 365.", label,
                                   pl.col("po_line"), _short("po")), order + 3))
    if settings.reject_canceled_orders:
        out.append(_problems(matched, pl.col("po_line_status") == CANCELED,
                             pl.format("{}: purchase order line {} of {} is canceled in Dynamics 365.", label,
                                       pl.col("po_line"), _short("po")), order + 4))

    gl = lines.filter(pl.col("gl_account") != "").join(
        refs.accounts.gl_accounts.rename({"gl_account": "_gl"}), left_on="gl_account", right_on="_gl", how="left")
    out.append(_problems(gl, pl.col("gl_active").is_null(),
                         pl.format("{}: GL account {} does not exist in Dynamics 365.", label, _short("gl_account")),
                         order + 5))
    out.append(_problems(gl, pl.col("gl_active") == False,  # noqa: E712 - polars expression, not a Python bool
                         pl.format("{}: GL account {} is suspended in Dynamics 365.", label, _short("gl_account")),
                         order + 6))

    # Company-specific value first, shared (blank legal entity) value as fallback: same as reference_data.
    centers = refs.accounts.cost_centers
    specific = centers.filter(pl.col("legal_entity") != "").select(
        pl.col("legal_entity").str.to_lowercase().alias("_le"), "cost_center", pl.col("cc_active").alias("_specific"))
    shared = centers.filter(pl.col("legal_entity") == "").select("cost_center", pl.col("cc_active").alias("_shared"))
    cc = (lines.filter(pl.col("cost_center") != "")
          .join(specific, on=["_le", "cost_center"], how="left")
          .join(shared, on="cost_center", how="left")
          .with_columns(pl.coalesce("_specific", "_shared").alias("_active")))
    out.append(_problems(cc, pl.col("_active").is_null(),
                         pl.format("{}: cost center {} does not exist in Dynamics 365 for legal entity {}.", label,
                                   _short("cost_center"), _short("LE")), order + 7))
    out.append(_problems(cc, pl.col("_active") == False,  # noqa: E712
                         pl.format("{}: cost center {} is suspended in Dynamics 365.", label, _short("cost_center")),
                         order + 8))
    if settings.require_cost_center:
        account_line = (pl.col("item") == "") & (pl.col("gl_account") != "") & pl.col("po_line").is_null()
        out.append(_problems(lines, account_line & (pl.col("cost_center") == ""),
                             pl.format("{}: the cost center is missing.", label), order + 9))
    return out


def _amount_problems(invoice: OutboundInvoice, tolerance: Decimal) -> list[str]:
    """Lines + tax = amount_invoiced (DESIGN §5.2), only when every amount could be read (else the parse
    problems already explain)."""
    if invoice.amount_invoiced is None or not invoice.lines or any(li.amount is None for li in invoice.lines):
        return []
    lines_total = sum((li.amount or Decimal(0) for li in invoice.lines), Decimal(0))
    expected = lines_total + invoice.total_tax
    if abs(expected - invoice.amount_invoiced) <= tolerance:
        return []
    return [f"The lines ({lines_total}) plus tax ({invoice.total_tax}) come to {expected}, but the invoiced amount "
            f"is {invoice.amount_invoiced}."]


def validate_invoices(parsed: Sequence[ParsedInvoice], refs: InvoiceReferences,
                      settings: InvoiceSettings | None = None) -> list[InvoiceVerdict]:
    """One verdict per parsed invoice, in input order: parse problems, then header rules, then line rules by
    line, then the amount check."""
    settings = settings or InvoiceSettings()
    invoices = [p.invoice for p in parsed]
    headers, lines = _header_frame(invoices), _line_frame(invoices)
    frames = [*_header_rules(headers, refs, settings), *_line_rules(lines, headers, refs, settings)]
    found = pl.concat([f for f in frames if f.height], how="vertical") if any(f.height for f in frames) else \
        pl.DataFrame(schema=_PROBLEM_SCHEMA)
    by_invoice: dict[int, list[str]] = {}
    # maintain_order keeps the rule order stable for equal (_idx, _order) pairs.
    for idx, problem in found.sort(["_idx", "_order"], maintain_order=True).select("_idx", "problem").rows():
        by_invoice.setdefault(idx, []).append(problem)

    order_vendor = dict(
        headers.filter(pl.col("po") != "").join(refs.orders, on=["_le", "po"], how="inner")
        .filter(pl.col("po_order_vendor") != "").select("_idx", "po_order_vendor").rows())
    verdicts = []
    for idx, p in enumerate(parsed):
        inv = p.invoice
        problems = [*p.problems, *by_invoice.get(idx, []), *_amount_problems(inv, settings.amount_tolerance)]
        verdicts.append(InvoiceVerdict(inv, tuple(dict.fromkeys(problems)), order_vendor.get(idx, inv.supplier),
                                       settings.message_limit))
    return verdicts


__all__ = ["BLOCKING_HOLDS", "ISO_4217", "InvoiceReferences", "InvoiceVerdict", "validate_invoices"]
