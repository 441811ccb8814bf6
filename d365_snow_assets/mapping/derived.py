"""Named rules for staging columns that are more than one formatted F&O field (DESIGN §5.1).

A rule is a polars expression over the source frame. Rules that need another entity (``po_amount`` needs the
order lines) also declare a ``prepare`` step that joins helper columns onto the frame first, so the final select
stays one vectorized pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

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
    # Fields the preparation reads from another entity (entity -> fields), for that entity's $select.
    related_reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _t(schema: Schema, column: str) -> pl.Expr:
    return values.text(pl.col(column), schema[column])


def _vendor_name(ctx: MappingContext, schema: Schema) -> pl.Expr:
    person = pl.concat_str([_t(schema, "PersonFirstName"), _t(schema, "PersonLastName")], separator=" ")
    person = person.str.strip_chars()
    organization = _t(schema, "VendorOrganizationName")
    is_person = _t(schema, "VendorPartyType") == "Person"
    # A person vendor with no first/last name still has a name in F&O's party record; fall back to it.
    return pl.when(is_person & (person != "")).then(person).otherwise(organization)


def _supplier_status(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # After the per-account collapse (vendor_companies): active when the account may be used in any configured
    # company. The values are an inference: the staging page documents a Status field without its values.
    active = pl.col(_ANY_ACTIVE) if _ANY_ACTIVE in schema else _t(schema, "OnHoldStatus") != "All"
    return pl.when(active).then(pl.lit("active")).otherwise(pl.lit("inactive"))


def _suspended(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # NoYes is non-nullable in F&O; a missing value is read as "not suspended" rather than hiding the record.
    return values.boolean(_t(schema, "IsSuspended") == "Yes")


def _valid_to(ctx: MappingContext, schema: Schema) -> pl.Expr:
    """F&O's ActiveTo; for a suspended value without one, the day of the run (the stage has no active flag)."""
    active_to = values.date(pl.col("ActiveTo"), schema["ActiveTo"])
    suspended = _t(schema, "IsSuspended") == "Yes"
    return (pl.when(active_to != "").then(active_to)
            .when(suspended).then(pl.lit(ctx.today.isoformat())).otherwise(pl.lit("")))


def _product_name(ctx: MappingContext, schema: Schema) -> pl.Expr:
    item = _t(schema, "ItemNumber")
    return pl.when(item != "").then(item).otherwise(_t(schema, "LineDescription"))


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


# -- rules that read another entity or several rows ---------------------------------------------------------------
_COMPANIES, _ANY_ACTIVE, _PARTY_REASON = "__companies", "__any_active", "__party_reason"
_ACCOUNT = "VendorAccountNumber"
_VENDOR_NAME_READS = ("VendorPartyType", "VendorOrganizationName", "PersonFirstName", "PersonLastName")


def _upper_company(column: str = "dataAreaId") -> pl.Expr:
    return pl.col(column).cast(pl.String).fill_null("").str.to_uppercase()


def _company_rank(ctx: MappingContext, column: str) -> pl.Expr:
    """A company's position in the configured list (the first configured company speaks for shared records)."""
    order = {le: i for i, le in enumerate(ctx.legal_entities)}
    company = pl.col(column).cast(pl.String).fill_null("").str.to_lowercase()
    return company.replace_strict(order, default=len(order), return_dtype=pl.Int64)


def _prepare_vendor_companies(frame: pl.LazyFrame, ctx: MappingContext,
                              related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    """One row per vendor account (a ServiceNow supplier is global): the first configured company's row, with every
    company the account is known in, and whether any of them may use it. Known: the configured companies and those
    configured before, whose last snapshot still speaks for them (the row filter then keeps accounts of a
    configured company: its row ranks first)."""
    on_hold_all = pl.col("OnHoldStatus").cast(pl.String).fill_null("") == "All"
    summary = frame.group_by(_ACCOUNT).agg(
        _upper_company().unique().sort().str.join(",").alias(_COMPANIES),
        (~on_hold_all).any().alias(_ANY_ACTIVE))
    first = (frame.sort(_company_rank(ctx, "dataAreaId"), "dataAreaId", _ACCOUNT)
             .unique(_ACCOUNT, keep="first", maintain_order=True))
    return first.join(summary, on=_ACCOUNT, how="left")


def _vendor_companies(ctx: MappingContext, schema: Schema) -> pl.Expr:
    return pl.col(_COMPANIES)


def _prepare_party_conflicts(frame: pl.LazyFrame, ctx: MappingContext,
                             related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    party = pl.col("VendorPartyNumber").cast(pl.String).fill_null("")
    per_account = frame.group_by(_ACCOUNT).agg(
        party.n_unique().alias("__parties"),
        pl.concat_str([party, pl.lit(" in "), _upper_company()]).unique().sort().str.join(", ").alias("__seen"))
    reason = (pl.when(pl.col("__parties") > 1)
              .then(pl.format("vendor account {} names different parties in the companies the connector serves "
                              "({}): one ServiceNow supplier cannot stand for both; give one of them another "
                              "account in Dynamics 365", pl.col(_ACCOUNT), pl.col("__seen")))
              .otherwise(pl.lit("")).alias(_PARTY_REASON))
    return frame.join(per_account.select(_ACCOUNT, reason), on=_ACCOUNT, how="left")


def _party_conflict(ctx: MappingContext, schema: Schema) -> pl.Expr:
    return pl.col(_PARTY_REASON).fill_null("")


def _join_vendor(frame: pl.LazyFrame, related: Mapping[str, pl.LazyFrame], account: str,
                 columns: Mapping[str, Callable[[Schema], pl.Expr]]) -> pl.LazyFrame:
    """``frame`` with ``columns`` computed on the vendor its ``account`` column names in the same company."""
    vendors = related.get("VendorsV2")
    if vendors is None:
        raise MappingError("this rule needs the VendorsV2 frame (pass related={'VendorsV2': …})")
    schema = vendors.collect_schema()
    lookup = vendors.select(pl.col("dataAreaId").cast(pl.String).str.to_lowercase().alias("__vle"),
                            pl.col(_ACCOUNT).cast(pl.String).alias("__vacct"),
                            *[build(schema).alias(name) for name, build in columns.items()]
                            ).unique(["__vle", "__vacct"], keep="first")
    keyed = frame.with_columns(pl.col("dataAreaId").cast(pl.String).str.to_lowercase().alias("__vle"),
                               pl.col(account).cast(pl.String).alias("__vacct"))
    return keyed.join(lookup, on=["__vle", "__vacct"], how="left", maintain_order="left").drop("__vle", "__vacct")


_ORDER_VENDOR_NAME = "__order_vendor_name"


def _prepare_order_vendor(frame: pl.LazyFrame, ctx: MappingContext,
                          related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    """The order vendor's legal name as the supplier row carries it (how the instance's Order stage map resolves
    the supplier reference from it is the instance's business; `fit` shows the map)."""
    return _join_vendor(frame, related, "OrderVendorAccountNumber",
                        {_ORDER_VENDOR_NAME: partial(_vendor_name, ctx)})


_REMIT = {"street": "AddressStreet", "city": "AddressCity", "state": "AddressStateId", "zip": "AddressZipCode",
          "country": "AddressCountryRegionISOCode"}


def _prepare_remit(frame: pl.LazyFrame, ctx: MappingContext, related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    if "__remit_street" in frame.collect_schema():
        return frame
    return _join_vendor(frame, related, "AccountNum",
                        {f"__remit_{k}": partial(_t, column=c) for k, c in _REMIT.items()})


def _remit(part: str) -> Rule:
    return Rule(lambda ctx, schema: pl.col(f"__remit_{part}").fill_null(""), ("dataAreaId", "AccountNum"),
                _prepare_remit, {"VendorsV2": ("dataAreaId", _ACCOUNT, *_REMIT.values())})


def _ledgers(related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    ledgers = related.get("Ledgers")
    if ledgers is None:
        raise MappingError("this rule needs the Ledgers frame (pass related={'Ledgers': …})")
    return ledgers


def _prepare_company_currency(frame: pl.LazyFrame, ctx: MappingContext,
                              related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    ledgers = _ledgers(related).select(
        pl.col("LegalEntityId").cast(pl.String).str.to_lowercase().alias("__cle"),
        pl.col("AccountingCurrency").cast(pl.String).alias("__currency")).unique("__cle", keep="first")
    keyed = frame.with_columns(pl.col("LegalEntityId").cast(pl.String).str.to_lowercase().alias("__cle"))
    return keyed.join(ledgers, on="__cle", how="left", maintain_order="left").drop("__cle")


def _prepare_chart_currency(frame: pl.LazyFrame, ctx: MappingContext,
                            related: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    """The accounting currency of the configured companies' ledger on this chart of accounts (the first configured
    company's when they differ: one GL account record cannot carry two; `fit` warns)."""
    ledgers = _ledgers(related)
    if ctx.legal_entities:
        ledgers = ledgers.filter(pl.col("LegalEntityId").cast(pl.String).str.to_lowercase()
                                 .is_in(list(ctx.legal_entities)))
    if "__currency" in frame.collect_schema():
        return frame
    per_chart = (ledgers.sort(_company_rank(ctx, "LegalEntityId"), "LegalEntityId")
                 .select(pl.col("ChartOfAccounts").cast(pl.String).alias("__chart"),
                         pl.col("AccountingCurrency").cast(pl.String).alias("__currency"),
                         pl.col("ReportingCurrency").cast(pl.String).alias("__reporting_currency"))
                 .unique("__chart", keep="first"))
    keyed = frame.with_columns(pl.col("ChartOfAccounts").cast(pl.String).alias("__chart"))
    return keyed.join(per_chart, on="__chart", how="left", maintain_order="left").drop("__chart")


def _currency(ctx: MappingContext, schema: Schema) -> pl.Expr:
    return pl.col("__currency").fill_null("")


def _reporting_currency(ctx: MappingContext, schema: Schema) -> pl.Expr:
    return pl.col("__reporting_currency").fill_null("")


_LEDGER_CHART_READS = {"Ledgers": ("LegalEntityId", "ChartOfAccounts", "AccountingCurrency", "ReportingCurrency")}

RULES: dict[str, Rule] = {
    "erp_source": Rule(lambda ctx, schema: pl.lit(ctx.erp_source, dtype=pl.String), ()),
    "vendor_name": Rule(_vendor_name, _VENDOR_NAME_READS),
    "vendor_companies": Rule(_vendor_companies, ("dataAreaId", _ACCOUNT, "OnHoldStatus"), _prepare_vendor_companies),
    "supplier_status": Rule(_supplier_status, ("OnHoldStatus",)),
    "vendor_party_conflict": Rule(_party_conflict, ("dataAreaId", _ACCOUNT, "VendorPartyNumber"),
                                  _prepare_party_conflicts),
    "order_vendor_name": Rule(lambda ctx, schema: pl.col(_ORDER_VENDOR_NAME).fill_null(""),
                              ("dataAreaId", "OrderVendorAccountNumber"), _prepare_order_vendor,
                              {"VendorsV2": ("dataAreaId", _ACCOUNT, *_VENDOR_NAME_READS)}),
    "suspended": Rule(_suspended, ("IsSuspended",)),
    "valid_to": Rule(_valid_to, ("ActiveTo", "IsSuspended")),
    "product_name": Rule(_product_name, ("ItemNumber", "LineDescription")),
    "cost_center_segment": Rule(_cost_center, ("DefaultLedgerDimensionDisplayValue",)),
    "po_amount": Rule(_po_amount, ("dataAreaId", "PurchaseOrderNumber"), _prepare_po_amount,
                      {"PurchaseOrderLinesV2": ("dataAreaId", "PurchaseOrderNumber", "LineAmount")}),
    "payment_amount": Rule(_payment_amount, ("SettleAmountCur",)),
    "payment_method": Rule(_payment_method, ("PaymMode",)),
    "remit_street": _remit("street"),
    "remit_city": _remit("city"),
    "remit_state": _remit("state"),
    "remit_zip": _remit("zip"),
    "remit_country": _remit("country"),
    "accounting_currency": Rule(_currency, ("LegalEntityId",), _prepare_company_currency,
                                {"Ledgers": ("LegalEntityId", "AccountingCurrency")}),
    "chart_currency": Rule(_currency, ("ChartOfAccounts",), _prepare_chart_currency, _LEDGER_CHART_READS),
    "chart_reporting_currency": Rule(_reporting_currency, ("ChartOfAccounts",), _prepare_chart_currency,
                                     _LEDGER_CHART_READS),
}


def _in_scope(ctx: MappingContext, column: str, *, shared_ok: bool = False) -> pl.Expr:
    company = pl.col(column).cast(pl.String).fill_null("").str.to_lowercase()
    allowed = company.is_in(list(ctx.legal_entities)) if ctx.legal_entities else pl.lit(True)
    return (allowed | (company == "")) if shared_ok else allowed


def _cost_center_rows(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # Shared values (blank legal entity) and those of the configured companies; another company's are out of scope.
    return (_t(schema, "FinancialDimension") == ctx.cost_center_dimension) & _in_scope(ctx, "LegalEntityId",
                                                                                        shared_ok=True)


def _configured_companies(ctx: MappingContext, schema: Schema) -> pl.Expr:
    return _in_scope(ctx, "dataAreaId" if "dataAreaId" in schema else "LegalEntityId")


def _settled_invoices(ctx: MappingContext, schema: Schema) -> pl.Expr:
    # VendTrans invoice rows carry Invoice; one is settled once a settlement voucher has been recorded on it.
    settled_on = values.date(pl.col("LastSettleDate"), schema["LastSettleDate"])
    return (_t(schema, "Invoice") != "") & (_t(schema, "LastSettleVoucher") != "") & (settled_on != "")


ROW_FILTERS: dict[str, Rule] = {
    "cost_center_dimension": Rule(_cost_center_rows, ("FinancialDimension", "LegalEntityId")),
    "configured_companies": Rule(_configured_companies, ()),
    "settled_invoices": Rule(_settled_invoices, ("Invoice", "LastSettleVoucher", "LastSettleDate")),
}
