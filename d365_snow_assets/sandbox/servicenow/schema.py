"""The dictionary of the fake instance: every table it serves, by ServiceNow's DOCUMENTED S2P schema.

Source: reference/servicenow-s2p-schema.md (ServiceNowDocs, australia). The docs give column LABELS; element names
are documented only where a column below passes ``element=`` with a ✓ (documented) or ³ (third-party) comment.
Every other element is inferred from its label by the rule of §1.4 (:func:`derive_element`) and is a placeholder a
connector must discover through ``sys_dictionary``, exactly as it must on a real instance. Where the docs are
silent about a column the sandbox needs (a target column a staging field has to land in, a link a business rule
needs), the column is added with an ``# inference:`` comment.

Two instance profiles share these tables:
- ``documented``: the elements as documented or derived;
- ``variant``: a customised instance (:data:`VARIANT`) whose staging columns are ``u_``-prefixed global-scope
  customisations and whose few target/outbound elements and status values differ, so that only a connector that
  discovers the schema (not one that assumes the defaults) reaches the same end state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .store import Field, Table

PROFILES = ("documented", "variant")

# -- table names the sandbox's own logic uses ---------------------------------------------------------------------
LEGAL_ENTITY_STAGE = "sn_fcms_intg_legal_entity_stage"
SUPPLIER_STAGE = "sn_fcms_intg_imp_supplier"
SUPPLIER_LE_STAGE = "sn_fcms_intg_supplier_legal_entity_inbound"
ORDER_STAGE = "sn_fcms_intg_imp_order"
ORDER_LINE_STAGE = "sn_fcms_intg_imp_order_line"
GL_STAGE = "sn_fcms_intg_gl_account_stage"
COST_CENTER_STAGE = "sn_fcms_intg_imp_cost_center"
PAYMENT_TERM_STAGE = "sn_fcms_intg_payment_term_stage"
PAYMENT_STAGE = "sn_spend_intg_imp_invoice_payment_detail"

LEGAL_ENTITY = "sn_fin_legal_entity"
ERP_SOURCE = "sn_fin_erp_source"
SUPPLIER = "sn_fin_supplier"
SUPPLIER_DETAIL = "sn_fin_supplier_detail"
PURCHASE_ORDER = "sn_shop_purchase_order"
PURCHASE_ORDER_LINE = "sn_shop_purchase_order_line"
GL_ACCOUNT = "sn_fin_gl_account"
COST_CENTER = "cmn_cost_center"
PAYMENT_TERM = "sn_shop_payment_term"
BASE_INVOICE = "sn_fin_base_invoice"
SHOP_INVOICE = "sn_shop_invoice"
SHOP_INVOICE_LINE = "sn_shop_invoice_line"
PAYMENT_DETAIL = "sn_shop_invoice_payment_detail"
OUTBOUND_INVOICE = "sn_spend_intg_outbound_invoice"
OUTBOUND_INVOICE_LINE = "sn_spend_intg_outbound_invoice_line"
UOM = "sn_fin_uom"
CURRENCY = "fx_currency"
COUNTRY = "core_country"
TAX_CODE = "sn_fin_tax_code"

IMPORT_SET = "sys_import_set"
IMPORT_SET_ROW = "sys_import_set_row"
IMPORT_SET_ROW_ERROR = "sys_import_set_row_error"
IMPORT_SET_RUN = "sys_import_set_run"
MULTI_IMPORT_SET = "sys_multi_import_set"
DB_OBJECT = "sys_db_object"
DICTIONARY = "sys_dictionary"
DOCUMENTATION = "sys_documentation"
CHOICE = "sys_choice"
GLIDE_OBJECT = "sys_glide_object"
SCOPE = "sys_scope"
REST_INSERT_MULTIPLE = "sys_rest_insert_multiple"
TRANSFORM_MAP = "sys_transform_map"
TRANSFORM_ENTRY = "sys_transform_entry"
TRANSFORM_SCRIPT = "sys_transform_script"
PROPERTIES = "sys_properties"
USER = "sys_user"

STAGING_TABLES = (LEGAL_ENTITY_STAGE, SUPPLIER_STAGE, SUPPLIER_LE_STAGE, ORDER_STAGE, ORDER_LINE_STAGE, GL_STAGE,
                  COST_CENTER_STAGE, PAYMENT_TERM_STAGE, PAYMENT_STAGE)


def derive_element(label: str, *, import_table: bool = False) -> str:
    """The element ServiceNow generates from a column label (reference §1.4, from the dictionary rules of §1.1):
    lower case, every run of non-alphanumerics one ``_``. On the APO import tables (``sn_spend_intg_imp_*``) the
    documented siblings carry ``u_`` and write "x/y" as ``x_or_y`` (§1.2), so those do too."""
    text = label.lower()
    if import_table:
        text = re.sub(r"(\w)\s*/\s*(\w)", r"\1 or \2", text)
    element = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if import_table or element[:1].isdigit():
        element = "u_" + element
    return element


@dataclass(frozen=True)
class Col:
    """A documented column: label, documented type, mandatory flag, reference target, and its element when a
    document (✓) or third-party material (³) names it; otherwise the element is derived from the label."""

    label: str
    type: str = "string"
    mandatory: bool = False
    ref: str | None = None
    element: str | None = None
    ref_key: str = "sys_id"
    max_length: int = 255


@dataclass(frozen=True)
class TableSpec:
    name: str
    label: str
    cols: tuple[Col, ...]
    display: str  # label of the display column
    parent: str | None = None
    scope: str = "global"
    number_prefix: str = ""  # auto-numbered "Number" column (prefixes are an inference)

    @property
    def import_table(self) -> bool:
        return self.name.startswith("sn_spend_intg_imp_")


def _cols(spec: str, **common: object) -> tuple[Col, ...]:
    """``Label|Label|…`` → String columns (most S2P staging columns are documented as String)."""
    return tuple(Col(label.strip(), **common) for label in spec.split("|") if label.strip())  # type: ignore[arg-type]


_ERP_STD = "ERP source"  # staging label with the standard description ¹

# -- inbound staging tables (§3); all extend sys_import_set_row, scope sn_fcms_intg -------------------------------
_STAGING: list[TableSpec] = [
    TableSpec(LEGAL_ENTITY_STAGE, "Legal Entity stage inbound", (  # §3.4
        Col("City"), Col("Country"), Col("ERP company code", mandatory=True), Col(_ERP_STD, mandatory=True),
        Col("Global company"), Col("Industry"), Col("Legal name"), Col("Local currency"), Col("Street")),
        display="ERP company code", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(SUPPLIER_STAGE, "Supplier inbound", _cols(  # §3.1 ("ERP company code" is listed twice: one column)
        "Accepted purchasing currency|City|Company overall rating|Company type|Country|Country of registration|"
        "County / District|Customer number|Domain|Duns|Employee number|ERP company code|ERP source|Fax number|"
        "Founded year|General ledger account|Goods shipped from|Incoterm|Industry|Legal entities|Legal name|"
        "Locations count|Logo URL|Long description|Off-boarded date|Onboarded|On-boarded by|On-boarded date|"
        "Parent company|Payment term|PO box number|Posting Block|Primary phone number|Purchasing entities|"
        "Short description|State / Province|Status|Street address|Sustainability rating|Tax id|Tax jurisdiction|"
        "Twitter|URL|Wikipedia|YouTube|Zip / Postal code"),
        display="Legal name", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(SUPPLIER_LE_STAGE, "Supplier legal entity mapping inbound", (  # §3.2: both "Y*"
        Col("Legal entity", mandatory=True), Col("Supplier", mandatory=True),
        # inference: every other staging table carries an ERP source and the target is per ERP source, so an
        # admin would have added one; undocumented.
        Col(_ERP_STD)),
        display="Supplier", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(ORDER_STAGE, "Purchase Order inbound", (  # §3.5
        *_cols("Blanket order end date|Blanket order start date|Business owner|Cost center"),
        Col("ERP PO number", mandatory=True), Col(_ERP_STD, mandatory=True),
        *_cols("Legal entity|Order type|Payment term|PO amount|PO amount currency|PO status|Purchasing organization|"
               "Supplier company name")),
        display="ERP PO number", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(ORDER_LINE_STAGE, "Purchase Order Line inbound", (  # §3.6: three documented "Y*" fields …
        Col(_ERP_STD, mandatory=True), Col("ERP PO number", mandatory=True), Col("ERP PO line number", mandatory=True),
        # … inference: the line's other values must reach the target line's columns (§5.4), so the staging table
        # carries the target's labels (the brief's list; the docs name none of them here).
        *_cols("Legal entity|Product name|Purchase quantity|Unit|Unit price|Total line amount|Expected delivery date|"
               "General Ledger Account|Cost center|Status")),
        display="ERP PO line number", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(GL_STAGE, "GL Account Stage inbound", _cols(  # §3.9 (AU/ZU: "GL Account" is the NAME, "Number" the no.)
        "Account currency|Account name|Alternate currency|Category|Entity|ERP source|GL Account|Inactive|Ledger type|"
        "Local currency|Number|Short description|Sub-ledger account|Type", mandatory=True),
        display="Number", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(COST_CENTER_STAGE, "Cost Center Stage inbound", _cols(  # §3.10, all "Y*"
        "Account number|Available for user|Code|Cost center type|Controlling area|ERP source|Legal entity|Manager|"
        "Name|Profit center|Valid from|Valid to", mandatory=True),
        display="Code", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(PAYMENT_TERM_STAGE, "Payment Terms Stage inbound", (  # §3.8, all "Y*"
        Col("Discount days", "integer", True), Col("Discount percentage", "decimal", True),
        Col(_ERP_STD, mandatory=True), Col("Name", mandatory=True), Col("Net days to pay", "integer", True),
        *_cols("Payment term|Short description|Type", mandatory=True)),
        display="Name", parent=IMPORT_SET_ROW, scope="sn_fcms_intg"),
    TableSpec(PAYMENT_STAGE, "Invoice payment detail import", (  # §3.12: all "Y" except the last; no legal entity
        *_cols("Currency|ERP invoice number|ERP Source|ERP supplier code", mandatory=True),
        Col("Payment amount", "decimal", True), Col("Payment date", mandatory=True),
        Col("Payment method", "choice", True), Col("Payment reference ID", mandatory=True),
        *_cols("Remit to city|Remit to country|Remit to state/province|Remit to street|Remit to ZIP/postal code|"
               "Scheduled payment date", mandatory=True),
        Col("Third party import ID")),
        display="Payment reference ID", parent=IMPORT_SET_ROW, scope="sn_spend_intg"),
]

# -- target / primary tables (§5) ----------------------------------------------------------------------------------
_TARGETS: list[TableSpec] = [
    TableSpec(ERP_SOURCE, "ERP Source", (  # §5.3 form fields (S2PIF/define-erp-source-sap.md)
        # The APO spec dot-walks "Legal Entity.ERP Source.Source"; the form labels the name "ERP Source" (used).
        Col("ERP Source", mandatory=True), Col("Short Description"), Col("Active", "boolean"),
        Col("Amount Precisions", "integer")),
        display="ERP Source", scope="sn_fin"),
    TableSpec(LEGAL_ENTITY, "Legal entity", (  # §5.3 (APO/legal-entity.md)
        Col("Legal name"), Col("ERP company code", element="erp_company_code"),  # ³
        Col("Region", "choice"), Col("Local currency", "reference", ref=CURRENCY),
        Col("Reporting currency", "reference", ref=CURRENCY),
        Col("ERP Source", "reference", ref=ERP_SOURCE, element="erp_source")),  # ✓ (IDX supplyon-prerequisites)
        display="Legal name", scope="sn_fin"),
    TableSpec(SUPPLIER, "Supplier", (  # §5.1 (SLO/slo-supplier-table.md)
        Col("Number", element="number"),  # ✓
        Col("Legal Name"), Col("ERP supplier code", "integer"),
        Col("ERP company code", element="erp_company_code"),  # ✓ (implied by the IDX sentence on Number)
        Col("ERP source"), Col("DUNS number", "integer"), Col("Parent entity", "reference", ref=SUPPLIER),
        Col("Onboarded", "boolean"), Col("Preferred", "boolean"), Col("Customer number"), Col("PO box number"),
        Col("Region", "choice"), Col("Industry"), Col("Website", "url"), Col("Description"),
        # "address fields" and "phone/fax" (labels inferred)
        Col("Street"), Col("City"), Col("State / Province"), Col("Zip / Postal code"), Col("Country"),
        Col("Phone"), Col("Fax"),
        Col("Legal entities", element="legal_entities"),  # ³ (create-supplier.md labels it)
        # inference: staging has a Status the map must land somewhere; the docs list no status on the target.
        Col("Status")),
        display="Legal Name", scope="sn_fin", number_prefix="SUP"),
    TableSpec(SUPPLIER_DETAIL, "Supplier Legal Entity Mapping", (  # §5.2 + its outbound mirror's columns
        Col("Supplier", "reference", ref=SUPPLIER), Col("Legal entity", "reference", ref=LEGAL_ENTITY),
        Col("Payment term", "reference", ref=PAYMENT_TERM), Col("General ledger account", "reference", ref=GL_ACCOUNT),
        Col("ERP company code"), Col("ERP source"), Col("Hold payment", "boolean"), Col("Hold posting", "boolean"),
        Col("Payment method"), Col("Active", "boolean")),
        display="ERP company code", scope="sn_fin"),
    TableSpec(PURCHASE_ORDER, "Purchase order", (  # §5.4 (APO/purchase-order-table.md)
        Col("Number", element="number"),
        Col("ERP number", element="erp_number"),  # ³
        Col("Business owner", "reference", ref=USER), Col("Supplier", "reference", ref=SUPPLIER),
        Col("Order type"), Col("Order placed", "glide_date_time"),
        Col("Total amount", "currency", element="total_amount"),  # ✓
        Col("Cost center", "reference", ref=COST_CENTER), Col("Legal entity", "reference", ref=LEGAL_ENTITY),
        Col("Payment term", "reference", ref=PAYMENT_TERM),
        Col("In process invoiced amount", "currency", element="in_process_invoiced_amount"),  # ✓ (fix script)
        Col("Invoiced amount", "currency", element="invoiced_amount"),  # ✓ (fix script)
        Col("ERP source", element="erp_source"), Col("Status", element="status"),  # ³
        Col("Currency")),  # inference: where staging "PO amount currency" lands
        display="ERP number", scope="sn_shop", number_prefix="PO"),
    TableSpec(PURCHASE_ORDER_LINE, "Purchase order line", (  # §5.4 (APO/purchase-order-lines.md)
        Col("Number", element="number"),
        Col("Purchase order", "reference", ref=PURCHASE_ORDER), Col("Supplier", "reference", ref=SUPPLIER),
        Col("Product name"), Col("Product type", "choice"), Col("Goods receipt required", "boolean"),
        Col("Acknowledgement type"), Col("Expected delivery date", "glide_date"), Col("ERP line number"),
        Col("Start date", "glide_date"), Col("End date", "glide_date"), Col("Purchase quantity", "decimal"),
        Col("Unit", "choice"), Col("Unit price", "currency"), Col("Total line amount", "currency"),
        Col("Recipient", "reference", ref=USER),
        Col("General Ledger Account", "reference", ref=GL_ACCOUNT),
        # inference (the brief's target-line labels the docs do not list): where the staging line's legal entity,
        # cost center, status and ERP source land.
        Col("Legal entity", "reference", ref=LEGAL_ENTITY), Col("Cost center", "reference", ref=COST_CENTER),
        Col("Status"), Col("ERP source")),
        display="ERP line number", scope="sn_shop", number_prefix="POL"),
    TableSpec(GL_ACCOUNT, "Ledger account", (  # §5.6 (APO/ledger-account.md) + 3P list fields
        Col("Account Name"), Col("Currency", "reference", ref=CURRENCY),
        Col("Ledger account", element="gl_account"),  # ³ ("Ledger account code fetched from ERP. Example: 160020")
        Col("Number", element="number"), Col("Type", element="type"), Col("Category", element="category"),  # ³
        Col("Legal entity", "reference", ref=LEGAL_ENTITY, element="legal_entity"),  # ³
        Col("ERP source", element="erp_source"), Col("Inactive", "boolean", element="inactive")),  # ³
        display="Ledger account", scope="sn_fin", number_prefix="GLA"),
    TableSpec(COST_CENTER, "Cost Center", (  # §5.5 (APO/cost-center.md), a platform table
        Col("Name", mandatory=True), Col("Account Number"), Col("Code"), Col("Location", "reference", ref=COUNTRY),
        Col("Valid from", "glide_date_time"), Col("Valid to", "glide_date_time"), Col("Manager", "reference", ref=USER),
        Col("Parent", "reference", ref=COST_CENTER), Col("ERP Source"),  # S2PIF/erp-source.md
        # inference: a cost center per legal entity needs a legal entity (the connector's key); undocumented.
        Col("Legal entity", "reference", ref=LEGAL_ENTITY)),
        display="Name"),
    TableSpec(PAYMENT_TERM, "Payment terms", (  # §5.7 (APO/payment-terms.md)
        Col("Name"), Col("Type", "choice"), Col("Short description"), Col("Net days to pay", "integer"),
        Col("Discount percentage", "decimal"), Col("Discount days", "integer")),
        display="Name", scope="sn_shop"),
    # sn_shop_invoice extends sn_fin_base_invoice "with Xanadu release" (§5.8). Which columns sit on the base is
    # undocumented (inference: all but the PO reference, which only a shop invoice has).
    TableSpec(BASE_INVOICE, "Base invoice", (
        Col("Number", element="number"),
        Col("Supplier invoice number", element="supplier_invoice_number"),  # ✓ (acc-pay-properties)
        Col("Type", "choice", element="type"), Col("Status", "choice", element="state"),  # ³ / ✓ (fix script)
        Col("Channel", "choice", element="channel"),  # ³
        Col("ERP number", element="erp_number"),  # ³
        Col("Supplier", "reference", ref=SUPPLIER, element="supplier"),  # ✓ (work-with-invoice-exceptions)
        Col("Legal entity", "reference", ref=LEGAL_ENTITY, element="legal_entity"),  # ✓
        Col("Payment terms", "reference", ref=PAYMENT_TERM),
        Col("Subtotal", "currency", element="subtotal"),  # ✓
        Col("Tax amount", "currency"),
        Col("Amount invoiced (Transaction currency)", "currency", element="invoice_amount"),  # ✓ name, ³ pairing
        Col("Invoice date", "glide_date", element="invoice_date"),  # ✓
        Col("Due date", "glide_date", element="due_date"), Col("ERP posting date", "glide_date",
                                                               element="erp_posting_date"),  # ³
        Col("Payment date", "glide_date", element="payment_date"), Col("ERP source", element="erp_source"),  # ³
        Col("ERP integration status", element="erp_integration_status"),  # ³
        Col("Class", "sys_class_name", element="sys_class_name")),
        display="Number", scope="sn_fin", number_prefix="INV"),
    TableSpec(SHOP_INVOICE, "Invoice", (
        Col("Purchase order", "reference", ref=PURCHASE_ORDER, element="purchase_order"),),  # ✓ (fix script)
        display="Number", parent=BASE_INVOICE, scope="sn_shop"),
    TableSpec(SHOP_INVOICE_LINE, "Invoice line", (  # labels mirror the outbound line (§6.2); ✓ names from §5.8
        Col("Invoice", "reference", ref=SHOP_INVOICE), Col("Number"),
        Col("Line description", element="line_description"), Col("Subtotal", "currency", element="sub_total"),
        Col("Purchase order line", "reference", ref=PURCHASE_ORDER_LINE), Col("Line quantity", "decimal"),
        Col("Line unit price", "currency"), Col("Line amount invoiced", "currency"), Col("Tax amount", "currency"),
        Col("GL account", "reference", ref=GL_ACCOUNT), Col("Cost center", "reference", ref=COST_CENTER),
        Col("Unit", "reference", ref=UOM)),
        display="Number", scope="sn_shop", number_prefix="INVL"),
    # §5.9: no field page exists. Columns mirror its staging table's labels without the u_ prefix, plus the
    # matched invoice (inference: 3P queries this table by `invoice`).
    TableSpec(PAYMENT_DETAIL, "Invoice payment detail", (
        *_cols("Currency|ERP invoice number|ERP Source|ERP supplier code"), Col("Payment amount", "decimal"),
        Col("Payment date", "glide_date"), Col("Payment method", "choice"), Col("Payment reference ID"),
        *_cols("Remit to city|Remit to country|Remit to state/province|Remit to street|Remit to ZIP/postal code"),
        Col("Scheduled payment date", "glide_date"), Col("Third party import ID"),
        Col("Invoice", "reference", ref=SHOP_INVOICE, element="invoice")),
        display="Payment reference ID", scope="sn_shop"),
    # -- outbound tables (§6); the docs mark none mandatory -------------------------------------------------------
    TableSpec(OUTBOUND_INVOICE, "Outbound invoice", (  # §6.1 (S2PIF/outbound-invoice-tables-for-apo.md)
        *_cols("Amount invoiced|Business owner|Currency"), Col("Default tax code", "reference", ref=TAX_CODE),
        *_cols("Default tax code - deprecated|Default tax jurisdiction code|Discounts|ERP number|ERP posting date|"
               # "Target ERP where the invoice will be posted": a String, not a reference (documented).
               "ERP source|Final tax|Integration status|Invoice date|Invoice status|Invoice type"),
        Col("Legal entity", "reference", ref=LEGAL_ENTITY), *_cols("Number|Original invoice|Other charges"),
        Col("Payment terms", "reference", ref=PAYMENT_TERM), Col("Processing message"),
        Col("Purchase order", "reference", ref=PURCHASE_ORDER), Col("Remit to city"),
        Col("Remit to country", "reference", ref=COUNTRY),
        *_cols("Remit to state/province|Remit to street|Remit to zip/postal code|Ship from city"),
        Col("Ship from country", "reference", ref=COUNTRY),
        *_cols("Ship from state/province|Ship from street|Ship from zip/postal code|Ship to city|Ship to country|"
               "Ship to state/province|Ship to street|Ship to zip/postal code|Shipping amount|Subtotal"),
        Col("Supplier", "reference", ref=SUPPLIER), Col("Supplier invoice number"), Col("Tax amount")),
        display="Number", scope="sn_spend_intg", number_prefix="OBINV"),
    TableSpec(OUTBOUND_INVOICE_LINE, "Outbound invoice line", (  # §6.2
        Col("Cost center", "reference", ref=COST_CENTER), *_cols("ERP line number|ERP source|Final tax"),
        Col("GL account", "reference", ref=GL_ACCOUNT), Col("Integration status"),
        # inference: the docs do not say whether "Invoice" points at the outbound header or sn_shop_invoice; the
        # sandbox points it at the outbound header (APO's "Invoice.Legal entity. ERP source" works either way).
        Col("Invoice", "reference", ref=OUTBOUND_INVOICE),
        *_cols("Invoice line status|Line amount invoiced|Line description|Line quantity|Line unit price|Number|"
               "Processing message"),
        Col("Purchase order line", "reference", ref=PURCHASE_ORDER_LINE), Col("Ship to city"),
        Col("Ship to country", "reference", ref=COUNTRY),
        *_cols("Ship to state/province|Ship to street|Ship to zip/postal code|Subtotal|Supplier part number|"
               "Tax amount"),
        Col("Tax code", "reference", ref=TAX_CODE), *_cols("Tax code - deprecated|Tax jurisdiction code"),
        Col("Unit", "reference", ref=UOM)),
        display="Number", scope="sn_spend_intg", number_prefix="OBINVL"),
    # -- referenced tables the documented references need (targets inferred: the pages say only "Reference") -----
    TableSpec(CURRENCY, "Currency", (Col("Code", element="code"), Col("Name", element="name"),
                                     Col("Symbol", element="symbol")), display="Code"),
    TableSpec(COUNTRY, "Country", (Col("Name", element="name"), Col("ISO 3166-2", element="iso3166_2")),
              display="Name"),
    TableSpec(UOM, "Unit of measure", (Col("Name"), Col("Symbol")), display="Symbol", scope="sn_fin"),
    TableSpec(TAX_CODE, "Tax code", (Col("Name"), Col("Code")), display="Code", scope="sn_fin"),
]

# -- platform tables: import sets, dictionary, transform maps (column names ³ or inferred, reference §11) ---------
_BOOL = "boolean"
_PLATFORM: list[TableSpec] = [
    TableSpec(SCOPE, "Application", (Col("Name", element="name"), Col("Scope", element="scope")), display="Name"),
    TableSpec(DB_OBJECT, "Table", (
        Col("Name", element="name"), Col("Label", element="label"),
        Col("Extends table", "reference", ref=DB_OBJECT, element="super_class"),
        Col("Application", "reference", ref=SCOPE, element="sys_scope")), display="Label"),
    TableSpec(GLIDE_OBJECT, "Field class", (Col("Name", element="name"), Col("Label", element="label")),
              display="Label"),
    TableSpec(DICTIONARY, "Dictionary Entry", (
        Col("Table", "table_name", element="name"), Col("Column name", element="element"),
        Col("Column label", element="column_label"),
        Col("Type", "reference", ref=GLIDE_OBJECT, element="internal_type", ref_key="name"),
        Col("Reference", "reference", ref=DB_OBJECT, element="reference", ref_key="name"),
        Col("Mandatory", _BOOL, element="mandatory"), Col("Max length", "integer", element="max_length"),
        Col("Active", _BOOL, element="active"), Col("Display", _BOOL, element="display"),
        Col("Application", "reference", ref=SCOPE, element="sys_scope")), display="Column name"),
    TableSpec(DOCUMENTATION, "Field Label", (
        Col("Table", "table_name", element="name"), Col("Element", element="element"),
        Col("Label", element="label"), Col("Language", element="language")), display="Label"),
    TableSpec(CHOICE, "Choice", (
        Col("Table", "table_name", element="name"), Col("Element", element="element"),
        Col("Value", element="value"), Col("Label", element="label"), Col("Sequence", "integer", element="sequence"),
        Col("Inactive", _BOOL, element="inactive"), Col("Language", element="language")), display="Label"),
    # The labels are documented (c_ImportSetAPI.md); the column names are not (inference, derived).
    TableSpec(REST_INSERT_MULTIPLE, "Rest Insert Multiple", (
        Col("Source table", "table_name"), Col("Column mapping", "choice"), Col("Transformation", "choice"),
        Col("Use data source format", _BOOL)), display="Source table"),
    TableSpec(TRANSFORM_MAP, "Table Transform Map", (  # names inferred from the Fluent SDK properties
        Col("Name", element="name"), Col("Source table", "table_name", element="source_table"),
        Col("Target table", "table_name", element="target_table"), Col("Active", _BOOL, element="active"),
        Col("Order", "integer", element="order"), Col("Run business rules", _BOOL, element="run_business_rules"),
        Col("Enforce mandatory fields", _BOOL, element="enforce_mandatory_fields"),
        Col("Copy empty fields", _BOOL, element="copy_empty_fields"),
        Col("Application", "reference", ref=SCOPE, element="sys_scope")), display="Name"),
    TableSpec(TRANSFORM_ENTRY, "Field Map", (  # ³ (a ServiceNow-SDK record export)
        Col("Map", "reference", ref=TRANSFORM_MAP, element="map"),
        Col("Source table", "table_name", element="source_table"), Col("Source field", element="source_field"),
        Col("Target table", "table_name", element="target_table"), Col("Target field", element="target_field"),
        Col("Coalesce", _BOOL, element="coalesce"),
        Col("Coalesce empty fields", _BOOL, element="coalesce_empty_fields"),
        Col("Coalesce case sensitive", _BOOL, element="coalesce_case_sensitive"),
        Col("Referenced value field name", element="reference_value_field"),
        Col("Choice action", "choice", element="choice_action"),
        Col("Use source script", _BOOL, element="use_source_script"),
        Col("Source script", "script", element="source_script", max_length=8000),
        Col("Application", "reference", ref=SCOPE, element="sys_scope")), display="Target field"),
    TableSpec(TRANSFORM_SCRIPT, "Transform Script", (  # `when`/`order` inferred (reference §11)
        Col("Map", "reference", ref=TRANSFORM_MAP, element="map"), Col("When", element="when"),
        Col("Order", "integer", element="order"), Col("Active", _BOOL, element="active"),
        Col("Script", "script", element="script", max_length=8000)), display="When"),
    TableSpec(PROPERTIES, "System Property", (Col("Name", element="name"), Col("Value", element="value"),
                                              Col("Description", element="description")), display="Name"),
    TableSpec(USER, "User", (Col("User ID", element="user_name"), Col("Name", element="name"),
                             Col("Email", "email", element="email"), Col("Active", _BOOL, element="active"),
                             Col("Time zone", element="time_zone")), display="Name"),
    TableSpec(IMPORT_SET, "Import Set", (
        Col("Set", element="number"), Col("Table name", "table_name", element="table_name"),
        Col("State", element="state"), Col("Mode", element="mode"),
        Col("Short description", element="short_description"),
        Col("Multi import set", "reference", ref=MULTI_IMPORT_SET, element="multi_import_set")), display="Set"),
    TableSpec(MULTI_IMPORT_SET, "Multi Import Set", (Col("Number", element="number"), Col("State", element="state")),
              display="Number"),
    TableSpec(IMPORT_SET_RUN, "Transform History", (
        Col("Set", "reference", ref=IMPORT_SET, element="set"),
        Col("Transform map", "reference", ref=TRANSFORM_MAP, element="transform_map"),
        Col("State", element="state"), *(Col(lbl, "integer", element=el) for lbl, el in (
            ("Total", "total"), ("Inserts", "inserts"), ("Updates", "updates"), ("Ignored", "ignored"),
            ("Skipped", "skipped"), ("Errors", "errors"))),
        Col("Completed", "glide_date_time", element="completed")), display="Set"),
    TableSpec(IMPORT_SET_ROW_ERROR, "Import Set Row Error", (  # error codes: r_ImportRunHistory.md (ZU)
        Col("Row", "reference", ref=IMPORT_SET_ROW, element="row"), Col("Error code", element="error_code"),
        Col("Error message", element="error_message", max_length=4000)), display="Error message"),
    # Import set row columns are ³ (practitioner code, reference §2.3); every staging table inherits them.
    TableSpec(IMPORT_SET_ROW, "Import Set Row", (
        Col("Set", "reference", ref=IMPORT_SET, element="sys_import_set"),
        Col("Row", "integer", element="sys_import_row"), Col("State", "choice", element="sys_import_state"),
        Col("Comment", element="sys_import_state_comment", max_length=4000),
        Col("Target table", "table_name", element="sys_target_table"),
        Col("Target record", "document_id", element="sys_target_sys_id"),
        Col("Row error", "reference", ref=IMPORT_SET_ROW_ERROR, element="sys_row_error"),
        Col("Transform map", "reference", ref=TRANSFORM_MAP, element="sys_transform_map"),
        Col("Class", "sys_class_name", element="sys_class_name")), display="Row"),
]

SPECS: dict[str, TableSpec] = {s.name: s for s in (*_PLATFORM, *_STAGING, *_TARGETS)}


# -- choices (value, label) per (table, column label) --------------------------------------------------------------
_INVOICE_STATES = ["No invoice", "Draft", "Received", "Suspected duplicate", "Accepted", "PO matching error",
                   "PO matching completed", "Exceptions found", "No exceptions found", "Pending approval",
                   "Rejected", "Approved", "Pending payment", "Confirmed duplicate", "Canceled", "Paid"]


def _snake(labels: list[str]) -> list[tuple[str, str]]:
    # Invoice states: the fix script documents po_matching_completed, exceptions_found, no_exceptions_found,
    # pending_approval, approved, pending_payment, paid; the others are the same snake_case form (inference).
    return [(derive_element(label), label) for label in labels]


# The S2P framework's outbound integration-status life cycle (numeric, documented for the outbound PO; that the
# invoice tables use the same set is an inference, reference §7), labelled as the APO invoice pages word them.
INTEGRATION_STATUS_DOCUMENTED = [("5", "Draft"), ("10", "New"), ("20", "In progress"), ("30", "Processed"),
                                 ("40", "Error")]
# The variant instance: the outbound-PO wording (IDX supplyon-integration-status-values.md) on other values.
INTEGRATION_STATUS_VARIANT = [("1", "New"), ("2", "In process"), ("3", "Processed"), ("4", "Failed")]
PAYMENT_METHODS = [("bank_transfer", "Bank transfer"), ("cash_payment", "Cash payment"), ("cheque", "Cheque"),
                   ("credit_card", "Credit card"), ("debit_card", "Debit card"), ("wire_transfer", "Wire transfer")]

CHOICES: dict[tuple[str, str], list[tuple[str, str]]] = {
    (BASE_INVOICE, "Status"): _snake(_INVOICE_STATES),
    (BASE_INVOICE, "Type"): [("po_invoice", "PO invoice"), ("non_po_invoice", "Non-PO invoice")],
    (BASE_INVOICE, "Channel"): [("web", "Web"), ("email", "Email"), ("integration", "Integration"),
                                ("virtual_agent", "Virtual agent")],
    (OUTBOUND_INVOICE, "Integration status"): INTEGRATION_STATUS_DOCUMENTED,
    (OUTBOUND_INVOICE_LINE, "Integration status"): INTEGRATION_STATUS_DOCUMENTED,
    (PAYMENT_STAGE, "Payment method"): PAYMENT_METHODS,
    (PAYMENT_DETAIL, "Payment method"): PAYMENT_METHODS,
    (LEGAL_ENTITY, "Region"): [("ams", "AMS"), ("apac", "APAC"), ("latam", "LATAM"), ("emea", "EMEA")],
    (SUPPLIER, "Region"): [("ams", "AMS"), ("apac", "APAC"), ("latam", "LATAM"), ("emea", "EMEA")],
    (PAYMENT_TERM, "Type"): [("due_upon_receipt", "Due upon receipt"), ("fixed", "Fixed"), ("net", "Net")],
    # 20/30 are documented (IDX SupplyOn); 10 for goods is an inference.
    (PURCHASE_ORDER_LINE, "Product type"): [("10", "Good"), ("20", "Service"), ("30", "Handling fee")],
    (PURCHASE_ORDER_LINE, "Unit"): [("fixed_fee", "Fixed fee"), ("individual_unit", "Individual unit")],
    (IMPORT_SET_ROW, "State"): [(s, s.capitalize()) for s in ("pending", "inserted", "updated", "ignored",
                                                              "skipped", "error")],  # inference (§2.3)
    (REST_INSERT_MULTIPLE, "Column mapping"): [("label", "Label"), ("column_name", "Column name")],
    (REST_INSERT_MULTIPLE, "Transformation"): [("asynchronous", "Asynchronous"), ("synchronous", "Synchronous")],
    (TRANSFORM_ENTRY, "Choice action"): [("create", "create"), ("ignore", "ignore"), ("reject", "reject")],
}


@dataclass(frozen=True)
class Variant:
    """How the variant instance differs from the documented one (applied by :func:`resolve_profile`)."""

    elements: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, label) -> element
    choices: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    u_prefixed: tuple[str, ...] = ()  # tables whose own columns are global-scope u_ customisations


VARIANT = Variant(
    elements={
        (OUTBOUND_INVOICE, "Integration status"): "status",  # as on the documented outbound PO header
        (OUTBOUND_INVOICE_LINE, "Integration status"): "status",
        (OUTBOUND_INVOICE, "Amount invoiced"): "invoice_amount",
        (OUTBOUND_INVOICE_LINE, "Invoice"): "invoice_header",
        (OUTBOUND_INVOICE_LINE, "Line quantity"): "quantity",
        (OUTBOUND_INVOICE_LINE, "Line amount invoiced"): "line_amount",
        (LEGAL_ENTITY, "ERP company code"): "company_code",  # as the 3P transform scripts' `source.company_code`
        (PURCHASE_ORDER, "ERP number"): "erp_po_number",
        (GL_ACCOUNT, "Ledger account"): "ledger_account",
        (COST_CENTER, "Legal entity"): "u_legal_entity",  # a customer's column on a platform table
    },
    choices={(OUTBOUND_INVOICE, "Integration status"): INTEGRATION_STATUS_VARIANT,
             (OUTBOUND_INVOICE_LINE, "Integration status"): INTEGRATION_STATUS_VARIANT},
    u_prefixed=tuple(t for t in STAGING_TABLES if t != PAYMENT_STAGE),
)


def element_for(spec: TableSpec, col: Col, profile: str) -> str:
    if profile == "variant":
        if (spec.name, col.label) in VARIANT.elements:
            return VARIANT.elements[(spec.name, col.label)]
        if spec.name in VARIANT.u_prefixed:
            return "u_" + (col.element or derive_element(col.label))
    return col.element or derive_element(col.label, import_table=spec.import_table)


def column_scope(spec: TableSpec, col: Col, profile: str) -> str:
    """The application a column belongs to: a ``u_`` column a customer added in place of the shipped one is in
    global scope (reference §1.1)."""
    element = element_for(spec, col, profile)
    if element.startswith("u_") and element != element_for(spec, col, "documented"):
        return "global"
    return spec.scope


def choices_for(table: str, label: str, profile: str) -> list[tuple[str, str]]:
    if profile == "variant" and (table, label) in VARIANT.choices:
        return VARIANT.choices[(table, label)]
    return CHOICES.get((table, label), [])


def build_tables(profile: str) -> dict[str, Table]:
    """Fresh, empty tables of ``profile`` (parents built before their children)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown ServiceNow instance profile {profile!r} (one of {', '.join(PROFILES)})")
    tables: dict[str, Table] = {}

    def build(spec: TableSpec) -> Table:
        if spec.name in tables:
            return tables[spec.name]
        parent = build(SPECS[spec.parent]) if spec.parent else None
        fields = [Field(element_for(spec, c, profile), c.type, c.ref, c.label, c.mandatory, c.max_length, c.ref_key)
                  for c in spec.cols]
        owner = spec
        while not any(c.label == spec.display for c in owner.cols) and owner.parent:
            owner = SPECS[owner.parent]  # the display column may be inherited
        display = element_for(owner, next(c for c in owner.cols if c.label == spec.display), profile)
        tables[spec.name] = Table(spec.name, fields, display_field=display, label=spec.label, parent=parent,
                                  scope=spec.scope)
        return tables[spec.name]

    for spec in SPECS.values():
        build(spec)
    return tables
