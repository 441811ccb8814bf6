"""Declarative transform maps of the fake instance: staging table → target table (DESIGN.md §5.1).

Columns map 1:1 by name, except the payment-detail staging table whose columns carry the ``u_`` prefix of
``sn_spend_intg_imp_*`` tables (reference/servicenow.md §5.4) and land unprefixed in the target. Coalesce keys are
target columns, exactly as DESIGN §5.1 lists them. Map names are the documented transform map labels (§5.4).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransformMap:
    name: str
    staging: str
    target: str
    fields: dict[str, str]  # staging column -> target column
    coalesce: tuple[str, ...]  # target columns
    numeric: frozenset[str] = frozenset()  # decimal target columns: a non-number there makes the row an error
    display_field: str = "sys_id"
    # Coalesce columns whose field map has "Coalesce empty fields" checked: an empty value is then a value to
    # match on rather than a reason to skip the row (inference from the field-map option; default unchecked).
    coalesce_empty: frozenset[str] = frozenset()

    @property
    def staging_columns(self) -> tuple[str, ...]:
        return tuple(self.fields)


def _same(*cols: str) -> dict[str, str]:
    return {c: c for c in cols}


SUPPLIER_COLUMNS = ("erp_source", "legal_entity", "supplier_code", "name", "supplier_group", "currency",
                    "payment_terms", "payment_method", "tax_id", "email", "phone", "street", "city", "zip",
                    "country", "on_hold", "active")
ORDER_COLUMNS = ("erp_source", "legal_entity", "erp_po_number", "supplier_code", "invoice_supplier_code", "po_name",
                 "po_status", "approval_status", "currency", "payment_term", "order_date", "requested_delivery_date",
                 "cost_center", "po_amount", "order_type")
ORDER_LINE_COLUMNS = ("erp_source", "legal_entity", "erp_po_number", "erp_po_line_number", "item_number",
                      "description", "category", "quantity", "unit", "unit_price", "line_amount", "line_status",
                      "gl_account", "cost_center", "requested_delivery_date", "matching_policy")
GL_ACCOUNT_COLUMNS = ("erp_source", "legal_entity", "chart_of_accounts", "gl_account", "account_name",
                      "account_type", "active")
COST_CENTER_COLUMNS = ("erp_source", "legal_entity", "code", "name", "active", "valid_from", "valid_to")
PAYMENT_DETAIL_COLUMNS = ("erp_source", "legal_entity", "erp_invoice_number", "erp_supplier_code", "currency",
                          "payment_amount", "payment_date", "payment_method", "payment_reference_id",
                          "scheduled_payment_date", "third_party_import_id")

TRANSFORM_MAPS: tuple[TransformMap, ...] = (
    TransformMap("Master data supplier", "sn_fcms_intg_imp_supplier", "sn_fin_supplier", _same(*SUPPLIER_COLUMNS),
                 ("erp_source", "legal_entity", "supplier_code"), display_field="name"),
    TransformMap("Order stage", "sn_fcms_intg_imp_order", "sn_shop_purchase_order", _same(*ORDER_COLUMNS),
                 ("erp_source", "legal_entity", "erp_po_number"), numeric=frozenset({"po_amount"}),
                 display_field="erp_po_number"),
    TransformMap("Order line stage", "sn_fcms_intg_imp_order_line", "sn_shop_purchase_order_line",
                 _same(*ORDER_LINE_COLUMNS), ("erp_source", "legal_entity", "erp_po_number", "erp_po_line_number"),
                 numeric=frozenset({"quantity", "unit_price", "line_amount"}), display_field="erp_po_line_number"),
    TransformMap("GL account load data", "sn_fcms_intg_gl_account_stage", "sn_fin_gl_account",
                 _same(*GL_ACCOUNT_COLUMNS), ("erp_source", "chart_of_accounts", "gl_account"),
                 display_field="gl_account"),
    TransformMap("Master data cost center", "sn_fcms_intg_imp_cost_center", "cmn_cost_center",
                 _same(*COST_CENTER_COLUMNS), ("erp_source", "legal_entity", "code"), display_field="name",
                 # A blank legal entity means a cost center shared by all companies (DESIGN §5.1).
                 coalesce_empty=frozenset({"legal_entity"})),
    TransformMap("Invoice payment detail import", "sn_spend_intg_imp_invoice_payment_detail",
                 "sn_shop_invoice_payment_detail", {f"u_{c}": c for c in PAYMENT_DETAIL_COLUMNS},
                 ("erp_source", "legal_entity", "payment_reference_id"), numeric=frozenset({"payment_amount"}),
                 display_field="payment_reference_id"),
)

MAPS_BY_STAGING: dict[str, TransformMap] = {m.staging: m for m in TRANSFORM_MAPS}

# Target column types (everything else is a string). Booleans are "true"/"false" strings on the wire anyway.
TARGET_TYPES: dict[str, dict[str, str]] = {
    "sn_shop_purchase_order": {"po_amount": "decimal", "order_date": "glide_date",
                               "requested_delivery_date": "glide_date"},
    "sn_shop_purchase_order_line": {"quantity": "decimal", "unit_price": "decimal", "line_amount": "decimal",
                                    "erp_po_line_number": "integer", "requested_delivery_date": "glide_date"},
    "sn_fin_gl_account": {"active": "boolean"},
    "cmn_cost_center": {"active": "boolean", "valid_from": "glide_date", "valid_to": "glide_date"},
    "sn_fin_supplier": {"active": "boolean"},
    "sn_shop_invoice_payment_detail": {"payment_amount": "decimal", "payment_date": "glide_date",
                                       "scheduled_payment_date": "glide_date"},
}
