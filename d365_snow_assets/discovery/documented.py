"""What ServiceNow documents about the tables the connector uses (reference/servicenow-s2p-schema.md), as the
connector reads it: field LABELS per table, with the element (column) name a stock instance would most likely give
each one, the documented type and reference target.

Labels are facts; most element names are not. Where the docs name an element it is marked ``documented``;
every other element is inferred from its label (reference §1.4: scoped tables take the label in snake case,
``sn_spend_intg_imp_*`` tables a ``u_`` prefix) and used only when the instance's own dictionary cannot be read
(discovery degrades to these defaults). Reference targets the docs leave open are inferred likewise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# -- tables -------------------------------------------------------------------------------------------------------
LEGAL_ENTITY_STAGE = "sn_fcms_intg_legal_entity_stage"
SUPPLIER_STAGE = "sn_fcms_intg_imp_supplier"
SUPPLIER_LE_STAGE = "sn_fcms_intg_supplier_legal_entity_inbound"
ORDER_STAGE = "sn_fcms_intg_imp_order"
ORDER_LINE_STAGE = "sn_fcms_intg_imp_order_line"
GL_ACCOUNT_STAGE = "sn_fcms_intg_gl_account_stage"
COST_CENTER_STAGE = "sn_fcms_intg_imp_cost_center"
PAYMENT_DETAIL_STAGE = "sn_spend_intg_imp_invoice_payment_detail"

OUTBOUND_INVOICE = "sn_spend_intg_outbound_invoice"
OUTBOUND_INVOICE_LINE = "sn_spend_intg_outbound_invoice_line"
LEGAL_ENTITY = "sn_fin_legal_entity"
SUPPLIER = "sn_fin_supplier"
PURCHASE_ORDER = "sn_shop_purchase_order"
PURCHASE_ORDER_LINE = "sn_shop_purchase_order_line"
GL_ACCOUNT = "sn_fin_gl_account"
COST_CENTER = "cmn_cost_center"
PAYMENT_TERM = "sn_shop_payment_term"
SHOP_INVOICE = "sn_shop_invoice"
IMPORT_SET_ROW = "sys_import_set_row"


@dataclass(frozen=True)
class DocField:
    """One documented field: its label (a fact), a default element, and whether that element is documented."""

    label: str
    element: str
    documented: bool = False
    type: str = "string"
    reference: str | None = None
    mandatory: bool = False


def infer_element(label: str, *, prefix: str = "", or_for_slash: bool = False) -> str:
    """The element a stock instance derives from ``label`` (reference §1.1, §1.4): lower case, every run of other
    characters one underscore; on the APO import tables ``x/y`` becomes ``x_or_y`` like their documented siblings."""
    text = label.lower()
    if or_for_slash:
        text = re.sub(r"\s*/\s*", " or ", text)
    return prefix + re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def _fields(*labels: str, prefix: str = "", or_for_slash: bool = False, mandatory: tuple[str, ...] = (),
            known: dict[str, str] | None = None, types: dict[str, str] | None = None,
            refs: dict[str, str] | None = None) -> tuple[DocField, ...]:
    known, types, refs = known or {}, types or {}, refs or {}
    out = []
    for label in labels:
        element = known.get(label) or infer_element(label, prefix=prefix, or_for_slash=or_for_slash)
        out.append(DocField(label, element, documented=label in known, type=types.get(label, "reference"
                                                                                   if label in refs else "string"),
                            reference=refs.get(label), mandatory=label in mandatory))
    return tuple(out)


# Staging tables (reference §3). Only fields marked "This is a mandatory field" count as mandatory here; a page
# whose intro merely says it "lists the mandatory fields" (Y* in the reference) proves nothing per field.
STAGING: dict[str, tuple[DocField, ...]] = {
    LEGAL_ENTITY_STAGE: _fields("City", "Country", "ERP company code", "ERP source", "Global company", "Industry",
                                "Legal name", "Local currency", "Street",
                                mandatory=("ERP company code", "ERP source")),
    SUPPLIER_STAGE: _fields(
        "Accepted purchasing currency", "City", "Company overall rating", "Company type", "Country",
        "Country of registration", "County / District", "Customer number", "Domain", "Duns", "Employee number",
        "ERP company code", "ERP source", "Fax number", "Founded year", "General ledger account",
        "Goods shipped from", "Incoterm", "Industry", "Legal entities", "Legal name", "Locations count", "Logo URL",
        "Long description", "Off-boarded date", "Onboarded", "On-boarded by", "On-boarded date", "Parent company",
        "Payment term", "PO box number", "Posting Block", "Primary phone number", "Purchasing entities",
        "Short description", "State / Province", "Status", "Street address", "Sustainability rating", "Tax id",
        "Tax jurisdiction", "Twitter", "URL", "Wikipedia", "YouTube", "Zip / Postal code"),
    # The page lists Legal entity and Supplier; ERP source is inferred (every other staging table carries it, and
    # DESIGN §5.1 keys the mapping on it). `fit` shows whether the instance has it.
    SUPPLIER_LE_STAGE: _fields("ERP source", "Legal entity", "Supplier"),
    ORDER_STAGE: _fields(
        "Blanket order end date", "Blanket order start date", "Business owner", "Cost center", "ERP PO number",
        "ERP source", "Legal entity", "Order type", "Payment term", "PO amount", "PO amount currency", "PO status",
        "Purchasing organization", "Supplier company name", mandatory=("ERP PO number", "ERP source")),
    # Three documented fields; the rest are the target line's labels (reference §5.4), an inference.
    ORDER_LINE_STAGE: _fields(
        "ERP source", "ERP PO number", "ERP PO line number", "Legal entity", "Product name", "Purchase quantity",
        "Unit", "Unit price", "Total line amount", "Expected delivery date", "General Ledger Account",
        "Cost center", "Status"),
    GL_ACCOUNT_STAGE: _fields(
        "Account currency", "Account name", "Alternate currency", "Category", "Entity", "ERP source", "GL Account",
        "Inactive", "Ledger type", "Local currency", "Number", "Short description", "Sub-ledger account", "Type"),
    COST_CENTER_STAGE: _fields(
        "Account number", "Available for user", "Code", "Cost center type", "Controlling area", "ERP source",
        "Legal entity", "Manager", "Name", "Profit center", "Valid from", "Valid to"),
    PAYMENT_DETAIL_STAGE: _fields(
        "Currency", "ERP invoice number", "ERP Source", "ERP supplier code", "Payment amount", "Payment date",
        "Payment method", "Payment reference ID", "Remit to city", "Remit to country", "Remit to state/province",
        "Remit to street", "Remit to ZIP/postal code", "Scheduled payment date", "Third party import ID",
        prefix="u_", or_for_slash=True,
        mandatory=("Currency", "ERP invoice number", "ERP Source", "ERP supplier code", "Payment amount",
                   "Payment date", "Payment method", "Payment reference ID", "Remit to city", "Remit to country",
                   "Remit to state/province", "Remit to street", "Remit to ZIP/postal code",
                   "Scheduled payment date"),
        types={"Payment amount": "decimal", "Payment method": "choice"}),
}

# Tables the connector reads (reference §5, §6): only the fields it reads. Reference targets of the outbound
# fields are inferred from their descriptions (the pages say only "Reference").
READ: dict[str, tuple[DocField, ...]] = {
    OUTBOUND_INVOICE: _fields(
        "Number", "Supplier invoice number", "Supplier", "Legal entity", "Purchase order", "Payment terms",
        "Currency", "Invoice date", "Amount invoiced", "Subtotal", "Tax amount", "Invoice type", "ERP source",
        "Integration status", "ERP number", "ERP posting date", "Processing message",
        refs={"Supplier": SUPPLIER, "Legal entity": LEGAL_ENTITY, "Purchase order": PURCHASE_ORDER,
              "Payment terms": PAYMENT_TERM}),
    OUTBOUND_INVOICE_LINE: _fields(
        "Number", "ERP line number", "Invoice", "Purchase order line", "Line description", "Line quantity",
        "Line unit price", "Line amount invoiced", "Tax amount", "GL account", "Cost center",
        refs={"Invoice": OUTBOUND_INVOICE, "Purchase order line": PURCHASE_ORDER_LINE, "GL account": GL_ACCOUNT,
              "Cost center": COST_CENTER}),
    LEGAL_ENTITY: _fields("ERP company code", "Legal name", known={"ERP company code": "erp_company_code"}),
    SUPPLIER: _fields("ERP company code", "Legal Name", "Number",
                      known={"ERP company code": "erp_company_code", "Number": "number"}),
    PURCHASE_ORDER: _fields("ERP number", "Legal entity", refs={"Legal entity": LEGAL_ENTITY}),
    PURCHASE_ORDER_LINE: _fields("ERP line number", "Purchase order", refs={"Purchase order": PURCHASE_ORDER}),
    GL_ACCOUNT: _fields("Ledger account", "Account Name", known={"Ledger account": "gl_account"}),
    COST_CENTER: _fields("Code", "Account Number", "Name"),
    PAYMENT_TERM: _fields("Name"),
    SHOP_INVOICE: _fields(
        "Number", "Supplier", "Legal entity", "Supplier invoice number", "ERP number", "ERP posting date", "Status",
        known={"Supplier": "supplier", "Legal entity": "legal_entity", "Supplier invoice number":
               "supplier_invoice_number", "Status": "state"},
        refs={"Supplier": SUPPLIER, "Legal entity": LEGAL_ENTITY}),
}

# Documented for the outbound purchase order (reference §7); for invoices the same numbers are an inference that
# sys_choice settles. Labels as the APO invoice pages word them.
INTEGRATION_STATUS_CHOICES: tuple[tuple[str, str], ...] = (
    ("5", "Draft"), ("10", "New"), ("20", "In progress"), ("30", "Processed"), ("40", "Error"))

ALL_TABLES: dict[str, tuple[DocField, ...]] = {**STAGING, **READ}


def documented_labels(table: str) -> tuple[str, ...]:
    """The labels the docs give ``table`` (empty for a table the connector has no documentation of)."""
    return tuple(f.label for f in ALL_TABLES.get(table, ()))
