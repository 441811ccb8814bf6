"""Named rules for staging columns that are more than one formatted F&O field (DESIGN §5.1).

A rule is a polars expression over the source frame. Rules that need another entity (``po_amount`` needs the
order lines) also declare a ``prepare`` step that joins helper columns onto the frame first, so the final select
stays one vectorized pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl

from d365_snow_assets.mapping import values
from d365_snow_assets.mapping.dimensions import segment_expr
from d365_snow_assets.mapping.spec import MappingContext, MappingError

Schema = Mapping[str, pl.DataType]
Prepare = Callable[[pl.LazyFrame, MappingContext, Mapping[str, pl.LazyFrame]], pl.LazyFrame]

# SN payment_method choices: bank_transfer/cash_payment/cheque/credit_card/debit_card/wire_transfer.
DEFAULT_PAYMENT_METHODS: dict[str, str] = {
    "CHECK": "cheque", "CHEQUE": "cheque", "CHQ": "cheque",
    "CASH": "cash_payment",
    "WIRE": "wire_transfer", "SWIFT": "wire_transfer",
    "CARD": "credit_card", "CREDITCARD": "credit_card", "DEBITCARD": "debit_card",
    "ACH": "bank_transfer", "EFT": "bank_transfer", "SEPA": "bank_transfer", "ELECTRONIC": "bank_transfer",
}


@dataclass(frozen=True)
class Rule:
    expr: Callable[[MappingContext, Schema], pl.Expr]
    reads: tuple[str, ...]
    prepare: Prepare | None = None


def _t(schema: Schema, column: str) -> pl.Expr:
    return values.text(pl.col(column), schema[column])


def _vendor_name(ctx: MappingContext, schema: Schema) -> pl.Expr:
    person = pl.concat_str([_t(schema, "PersonFirstName"), _t(schema, "PersonLastName")], separator=" ")
    person = person.str.strip_chars()
    organization = _t(schema, "VendorOrganizationName")
    is_person = _t(schema, "VendorPartyType") == "Person"
    # A person vendor with no first/last name still has a name in F&O's party record; fall back to it.
    return pl.when(is_person & (person != "")).then(person).otherwise(organization)


def _supplier_active(ctx: MappingContext, schema: Schema) -> pl.Expr:
    return values.boolean(_t(schema, "OnHoldStatus") != "All")


def _not_suspended(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # NoYes is non-nullable in F&O; a missing value is read as "not suspended" rather than hiding the record.
    return values.boolean(_t(schema, "IsSuspended").replace("", "No") == "No")


def _cost_center(ctx: MappingContext, schema: Schema) -> pl.Expr:
    if ctx.cost_center_dimension not in ctx.dimension_format:
        raise MappingError(f"cost-center dimension {ctx.cost_center_dimension!r} is not in the dimension format "
                           f"{list(ctx.dimension_format)}")
    return segment_expr("DefaultLedgerDimensionDisplayValue", ctx.cost_center_dimension, ctx.dimension_format,
                        ctx.dimension_delimiter)


_PO_AMOUNT = "__po_amount"


def _prepare_po_amount(frame: pl.LazyFrame, ctx: MappingContext, related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    lines = related.get("PurchaseOrderLinesV2")
    if lines is None:
        raise MappingError("po_amount needs the PurchaseOrderLinesV2 frame (pass related={'PurchaseOrderLinesV2': …})")
    line_schema = lines.collect_schema()
    amount = pl.col("LineAmount")
    if line_schema["LineAmount"] == pl.String:
        amount = amount.str.strip_chars().cast(pl.Decimal(38, 6), strict=False)
    elif line_schema["LineAmount"].is_float():
        # Sum in decimal so a thousand lines of 0.10 make exactly 100.00.
        amount = amount.round(6).cast(pl.Decimal(38, 6))
    else:
        amount = amount.cast(pl.Decimal(38, 6))
    totals = lines.group_by(
        pl.col("dataAreaId").cast(pl.String).str.to_lowercase().alias("__le"),
        pl.col("PurchaseOrderNumber").cast(pl.String).alias("__po"),
    ).agg(amount.sum().alias(_PO_AMOUNT))
    keyed = frame.with_columns(
        pl.col("dataAreaId").cast(pl.String).str.to_lowercase().alias("__le"),
        pl.col("PurchaseOrderNumber").cast(pl.String).alias("__po"),
    )
    return keyed.join(totals, on=["__le", "__po"], how="left", maintain_order="left").drop("__le", "__po")


def _po_amount(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # An order without lines is worth 0.00, not "".
    return values.amount(pl.col(_PO_AMOUNT).fill_null(0), pl.Decimal(38, 6))


def _payment_amount(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # Invoices are credits (negative AmountCur) in VendTrans; ServiceNow wants the settled amount positive.
    dtype = schema["SettleAmountCur"]
    raw = pl.col("SettleAmountCur")
    if dtype == pl.String:
        raw = raw.str.strip_chars().cast(pl.Decimal(38, 6), strict=False)
        dtype = pl.Decimal(38, 6)
    return values.amount(raw.abs(), dtype)


def _payment_method(ctx: MappingContext, schema: Schema) -> pl.Expr:
    table = {**DEFAULT_PAYMENT_METHODS, **{k.upper(): v for k, v in ctx.payment_methods.items()}}
    return _t(schema, "PaymMode").str.to_uppercase().replace_strict(
        table, default=ctx.default_payment_method, return_dtype=pl.String
    )


RULES: dict[str, Rule] = {
    "erp_source": Rule(lambda ctx, schema: pl.lit(ctx.erp_source, dtype=pl.String), ()),
    "vendor_name": Rule(_vendor_name, ("VendorPartyType", "VendorOrganizationName", "PersonFirstName",
                                       "PersonLastName")),
    "supplier_active": Rule(_supplier_active, ("OnHoldStatus",)),
    "not_suspended": Rule(_not_suspended, ("IsSuspended",)),
    "cost_center_segment": Rule(_cost_center, ("DefaultLedgerDimensionDisplayValue",)),
    "po_amount": Rule(_po_amount, ("dataAreaId", "PurchaseOrderNumber"), _prepare_po_amount),
    "payment_amount": Rule(_payment_amount, ("SettleAmountCur",)),
    "payment_method": Rule(_payment_method, ("PaymMode",)),
}


def _cost_center_rows(ctx: MappingContext, schema: Schema) -> pl.Expr:
    return _t(schema, "FinancialDimension") == ctx.cost_center_dimension


def _settled_invoices(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # VendTrans invoice rows carry Invoice; one is settled once a settlement voucher has been recorded on it.
    settled_on = values.date(pl.col("LastSettleDate"), schema["LastSettleDate"])
    return (_t(schema, "Invoice") != "") & (_t(schema, "LastSettleVoucher") != "") & (settled_on != "")


ROW_FILTERS: dict[str, Rule] = {
    "cost_center_dimension": Rule(_cost_center_rows, ("FinancialDimension",)),
    "settled_invoices": Rule(_settled_invoices, ("Invoice", "LastSettleVoucher", "LastSettleDate")),
}
