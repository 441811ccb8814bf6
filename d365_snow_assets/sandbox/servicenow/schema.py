"""The dictionary of the fake instance: every table it serves, with column types and references.

Column names of the APO/S2P tables follow DESIGN.md §5; the real names are inferred from labels (reference §5.4,
§9), so they are the contract of this project rather than verified facts.
"""

from __future__ import annotations

from .store import Field, Table
from .transform_maps import TARGET_TYPES, TRANSFORM_MAPS

OUTBOUND_INVOICE = "sn_spend_intg_outbound_invoice"
OUTBOUND_INVOICE_LINE = "sn_spend_intg_outbound_invoice_line"
SHOP_INVOICE = "sn_shop_invoice"
SHOP_INVOICE_LINE = "sn_shop_invoice_line"
PAYMENT_DETAIL = "sn_shop_invoice_payment_detail"
IMPORT_SET = "sys_import_set"
IMPORT_SET_ROW = "sys_import_set_row"
IMPORT_SET_RUN = "sys_import_set_run"
MULTI_IMPORT_SET = "sys_multi_import_set"

IMPORT_ROW_COLUMNS = ("sys_import_set", "sys_import_row", "sys_import_state", "sys_import_state_comment",
                      "sys_target_table", "sys_target_sys_id", "sys_row_error", "sys_transform_map", "sys_class_name")


def _f(*names: str, types: dict[str, str] | None = None, refs: dict[str, str] | None = None) -> list[Field]:
    types, refs = types or {}, refs or {}
    return [Field(n, "reference", refs[n]) if n in refs else Field(n, types.get(n, "string")) for n in names]


def _import_row_fields() -> list[Field]:
    return _f(*IMPORT_ROW_COLUMNS, types={"sys_import_row": "integer"},
              refs={"sys_import_set": IMPORT_SET, "sys_row_error": "sys_import_set_row_error",
                    "sys_transform_map": "sys_transform_map"})


_INVOICE_HEADER = ("number", "supplier_invoice_number", "supplier", "legal_entity", "currency", "invoice_date",
                   "due_date", "subtotal", "amount_invoiced", "tax_amount", "purchase_order", "invoice_type",
                   "payment_terms", "erp_number", "erp_posting_date", "erp_source")
_INVOICE_TYPES = {"invoice_date": "glide_date", "due_date": "glide_date", "erp_posting_date": "glide_date",
                  "subtotal": "decimal", "amount_invoiced": "decimal", "tax_amount": "decimal",
                  "amount_paid": "decimal", "payment_date": "glide_date", "line_number": "integer",
                  "quantity": "decimal", "unit_price": "decimal", "amount": "decimal"}
_INVOICE_LINE = ("line_number", "purchase_order", "purchase_order_line", "item_number", "description", "quantity",
                 "unit_price", "amount", "gl_account", "cost_center", "tax_amount", "erp_line_number")


def build_tables() -> dict[str, Table]:
    """Fresh, empty tables."""
    tables: list[Table] = [
        Table(OUTBOUND_INVOICE, _f(*_INVOICE_HEADER, "integration_status", "invoice_status", "processing_message",
                                   "invoice", types=_INVOICE_TYPES, refs={"invoice": SHOP_INVOICE}),
              display_field="number", label="Outbound invoice"),
        Table(OUTBOUND_INVOICE_LINE, _f("outbound_invoice", *_INVOICE_LINE, types=_INVOICE_TYPES,
                                        refs={"outbound_invoice": OUTBOUND_INVOICE}),
              display_field="line_number", label="Outbound invoice line"),
        Table(SHOP_INVOICE, _f(*_INVOICE_HEADER, "state", "amount_paid", "payment_date", types=_INVOICE_TYPES),
              display_field="number", label="Invoice"),
        Table(SHOP_INVOICE_LINE, _f("invoice", *_INVOICE_LINE, types=_INVOICE_TYPES, refs={"invoice": SHOP_INVOICE}),
              display_field="line_number", label="Invoice line"),
        Table(IMPORT_SET, _f("number", "table_name", "state", "mode", "short_description", "multi_import_set",
                             refs={"multi_import_set": MULTI_IMPORT_SET}),
              display_field="number", label="Import Set"),
        Table(MULTI_IMPORT_SET, _f("number", "state"), display_field="number", label="Multi Import Set"),
        Table(IMPORT_SET_RUN, _f("set", "transform_map", "state", "total", "inserts", "updates", "ignored",
                                 "skipped", "errors", "completed",
                                 types={k: "integer" for k in ("total", "inserts", "updates", "ignored", "skipped",
                                                               "errors")},
                                 refs={"set": IMPORT_SET}), display_field="transform_map", label="Transform History"),
        Table(IMPORT_SET_ROW, _import_row_fields(), display_field="sys_import_row", label="Import Set Row",
              open_schema=True),
        Table("sys_user", _f("user_name", "name", "email", "active", "time_zone"), display_field="name",
              label="User"),
    ]
    for tmap in TRANSFORM_MAPS:
        types = TARGET_TYPES.get(tmap.target, {})
        target_fields = _f(*tmap.fields.values(), types=types)
        if tmap.target == PAYMENT_DETAIL:
            # The matched invoice, filled by the payment business rule (inference: real column name unknown).
            target_fields.append(Field("invoice", "reference", SHOP_INVOICE))
        tables.append(Table(tmap.target, target_fields, display_field=tmap.display_field))
        tables.append(Table(tmap.staging, [*_import_row_fields(), *_f(*tmap.staging_columns)],
                            display_field="sys_import_row"))
    return {t.name: t for t in tables}
