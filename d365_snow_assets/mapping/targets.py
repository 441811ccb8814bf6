"""The default mappings of DESIGN §5.1: every ServiceNow field by its documented label
(reference/servicenow-s2p-schema.md §3), with its F&O source.

Deactivation when an F&O record is gone (``on_delete``), by what each staging table documents: ServiceNow records are
referenced by invoices and must not be deleted, only made unusable:
- suppliers: Status ``inactive`` (the staging table's Status field; the value is an inference, the page gives none);
- GL accounts: Inactive ``true`` (the stage's documented Inactive field);
- cost centers: Valid to = the day of the run (the stage has no active flag, only Valid from / Valid to);
- orders and order lines: PO status / Status ``Canceled``, the F&O ``PurchStatus`` member of an order that will not
  be fulfilled;
- legal entities, supplier–legal entity mappings, payment details: none documented. What disappears from F&O is
  reported as an orphan for a person to look at instead of pushing anything.
"""

from __future__ import annotations

from d365_snow_assets.discovery import documented as doc
from d365_snow_assets.mapping.spec import TODAY, Const, Derived, Field, Source, TargetMapping

# F&O fields a customer override may refer to (d365.md §3); the extract layer $selects what a mapping reads.
VENDOR_FIELDS = frozenset({
    "dataAreaId", "VendorAccountNumber", "VendorOrganizationName", "VendorSearchName", "VendorGroupId",
    "VendorPartyNumber", "VendorPartyType", "VendorKnownAsName", "PersonFirstName", "PersonLastName", "CurrencyCode",
    "DefaultPaymentTermsName", "DefaultVendorPaymentMethodName", "BankAccountId", "CreditLimit", "OnHoldStatus",
    "VendorHoldReleaseDate", "VendorInvoiceLineMatchingPolicy", "IsOneTimeVendor", "InvoiceVendorAccountNumber",
    "SalesTaxGroupCode", "TaxExemptNumber", "PrimaryEmailAddress", "PrimaryPhoneNumber", "AddressCountryRegionId",
    "AddressCountryRegionISOCode", "AddressCity", "AddressStreet", "AddressZipCode", "AddressStateId",
    "FormattedPrimaryAddress", "DefaultLedgerDimensionDisplayValue",
})
PO_HEADER_FIELDS = frozenset({
    "dataAreaId", "PurchaseOrderNumber", "OrderVendorAccountNumber", "InvoiceVendorAccountNumber",
    "PurchaseOrderName", "PurchaseOrderStatus", "DocumentApprovalStatus", "AccountingDate", "RequestedDeliveryDate",
    "ConfirmedDeliveryDate", "CurrencyCode", "PaymentTermsName", "VendorOrderReference",
    "DefaultLedgerDimensionDisplayValue", "BuyerGroupId", "VendorPaymentMethodName", "SalesTaxGroupCode", "ProjectId",
    "RequesterPersonnelNumber",
})
PO_LINE_FIELDS = frozenset({
    "dataAreaId", "PurchaseOrderNumber", "LineNumber", "ItemNumber", "LineDescription",
    "ProcurementProductCategoryName", "OrderedPurchaseQuantity", "PurchaseUnitSymbol", "PurchasePrice",
    "PurchasePriceQuantity", "LineAmount", "LineDiscountAmount", "LineDiscountPercentage", "PurchaseOrderLineStatus",
    "VendorInvoiceMatchingPolicy", "MainAccountIdDisplayValue", "DefaultLedgerDimensionDisplayValue",
    "AccountingDistributionTemplateName", "RequestedDeliveryDate", "ConfirmedDeliveryDate", "ReceivingWarehouseId",
    "ReceivingSiteId", "SalesTaxGroupCode", "SalesTaxItemGroupCode", "IsLineStopped", "ProjectId",
})
MAIN_ACCOUNT_FIELDS = frozenset({
    "ChartOfAccounts", "MainAccountId", "Name", "MainAccountType", "MainAccountCategory", "MainAccountRecId",
    "IsSuspended", "ActiveFrom", "ActiveTo", "DoNotAllowManualEntry", "DefaultCurrency", "PostingType",
    "ParentMainAccountId",
})
DIMENSION_VALUE_FIELDS = frozenset({
    "FinancialDimension", "LegalEntityId", "DimensionValue", "Description", "IsSuspended", "IsBlockedForManualEntry",
    "IsTotal", "ActiveFrom", "ActiveTo", "GroupDimension", "Owner",
})
LEGAL_ENTITY_FIELDS = frozenset({
    "LegalEntityId", "Name", "NameAlias", "PartyNumber", "AddressCountryRegionId", "AddressCountryRegionISOCode",
    "FullPrimaryAddress", "AddressStreet", "AddressCity", "AddressZipCode", "AddressState", "LanguageId", "TimeZone",
    "VATNum", "RegistrationNumber", "CompanyType",
})
# The ledger of each company: its accounting currency and chart of accounts (d365.md §3.8: the currency is not on
# LegalEntities; field names from a client generated from a real $metadata, ntrtd/d365-agent, and microsoft/CDM's
# LedgerEntity). `d365-snow fit` checks them against the environment's $metadata.
LEDGER_FIELDS = frozenset({"LegalEntityId", "Name", "AccountingCurrency", "ReportingCurrency", "ChartOfAccounts"})
VEND_TRANS_FIELDS = frozenset({
    "dataAreaId", "SourceKey", "AccountNum", "Invoice", "Voucher", "DocumentNum", "JournalNum", "TransDate",
    "DocumentDate", "DueDate", "TransType", "CurrencyCode", "AmountCur", "AmountMST", "SettleAmountCur",
    "SettleAmountMST", "Closed", "LastSettleDate", "LastSettleVoucher", "LastSettleAccountNum", "LastSettleCompany",
    "Approved", "ApprovedDate", "PaymMode", "PaymReference", "PaymId", "Txt", "SysModifiedDateTime",
})

ERP_SOURCE = "ERP source"
_ERP = Derived("erp_source")
_LE = Field("dataAreaId", "upper")


def _cols(*sources: tuple[str, Source]) -> tuple[tuple[str, Source], ...]:
    return tuple(sources)


LEGAL_ENTITY = TargetMapping(
    staging_table=doc.LEGAL_ENTITY_STAGE,
    target_table=doc.LEGAL_ENTITY,
    source_entity="LegalEntities",
    coalesce=(ERP_SOURCE, "ERP company code"),
    columns=_cols(
        (ERP_SOURCE, _ERP),
        ("ERP company code", Field("LegalEntityId", "upper")),
        ("Legal name", Field("Name")),
        ("Country", Field("AddressCountryRegionISOCode")),
        ("Street", Field("AddressStreet")),
        ("City", Field("AddressCity")),
        ("Local currency", Derived("accounting_currency")),
    ),
    erp_source_column=ERP_SOURCE, legal_entity_column="ERP company code",
    source_fields=LEGAL_ENTITY_FIELDS,
    row_filter="configured_companies",
    related_entities=("Ledgers",),
)

# A ServiceNow supplier is global; F&O vendor accounts are per company. One row per account across the configured
# companies (DESIGN §5.1); the party check holds back an account number that names different parties.
SUPPLIER = TargetMapping(
    staging_table=doc.SUPPLIER_STAGE,
    target_table=doc.SUPPLIER,
    source_entity="VendorsV2",
    coalesce=(ERP_SOURCE, "ERP company code"),
    columns=_cols(
        (ERP_SOURCE, _ERP),
        ("ERP company code", Field("VendorAccountNumber")),
        ("Legal name", Derived("vendor_name")),
        ("Legal entities", Derived("vendor_companies")),
        ("Accepted purchasing currency", Field("CurrencyCode")),
        ("Payment term", Field("DefaultPaymentTermsName")),
        ("Tax id", Field("TaxExemptNumber")),
        ("Street address", Field("AddressStreet")),
        ("City", Field("AddressCity")),
        ("State / Province", Field("AddressStateId")),
        ("Zip / Postal code", Field("AddressZipCode")),
        ("Country", Field("AddressCountryRegionISOCode")),
        ("Primary phone number", Field("PrimaryPhoneNumber")),
        ("Status", Derived("supplier_status")),
    ),
    erp_source_column=ERP_SOURCE, legal_entity_column="Legal entities",
    source_fields=VENDOR_FIELDS,
    on_delete=(("Status", "inactive"),),
    row_filter="configured_companies",
    hold_back="vendor_party_conflict",
)

SUPPLIER_LEGAL_ENTITY = TargetMapping(
    staging_table=doc.SUPPLIER_LE_STAGE,
    target_table="sn_fin_supplier_detail",
    source_entity="VendorsV2",
    coalesce=(ERP_SOURCE, "Supplier", "Legal entity"),
    columns=_cols(
        (ERP_SOURCE, _ERP),
        ("Supplier", Field("VendorAccountNumber")),
        ("Legal entity", _LE),
    ),
    erp_source_column=ERP_SOURCE, legal_entity_column="Legal entity",
    source_fields=VENDOR_FIELDS,
    row_filter="configured_companies",
    hold_back="vendor_party_conflict",
)

ORDER = TargetMapping(
    staging_table=doc.ORDER_STAGE,
    target_table=doc.PURCHASE_ORDER,
    source_entity="PurchaseOrderHeadersV2",
    coalesce=(ERP_SOURCE, "Legal entity", "ERP PO number"),
    columns=_cols(
        (ERP_SOURCE, _ERP),
        ("Legal entity", _LE),
        ("ERP PO number", Field("PurchaseOrderNumber")),
        ("Supplier company name", Derived("order_vendor_name")),
        ("PO amount", Derived("po_amount")),
        ("PO amount currency", Field("CurrencyCode")),
        ("PO status", Field("PurchaseOrderStatus", "enum")),
        ("Order type", Const("Standard")),
        ("Payment term", Field("PaymentTermsName")),
        ("Cost center", Derived("cost_center_segment")),
    ),
    erp_source_column=ERP_SOURCE, legal_entity_column="Legal entity",
    source_fields=PO_HEADER_FIELDS,
    on_delete=(("PO status", "Canceled"),),
    related_entities=("PurchaseOrderLinesV2", "VendorsV2"),
)

# The staging page documents three fields; the others are the target line's labels (an inference `fit` checks).
ORDER_LINE = TargetMapping(
    staging_table=doc.ORDER_LINE_STAGE,
    target_table=doc.PURCHASE_ORDER_LINE,
    source_entity="PurchaseOrderLinesV2",
    coalesce=(ERP_SOURCE, "Legal entity", "ERP PO number", "ERP PO line number"),
    columns=_cols(
        (ERP_SOURCE, _ERP),
        ("Legal entity", _LE),
        ("ERP PO number", Field("PurchaseOrderNumber")),
        ("ERP PO line number", Field("LineNumber", "integer")),
        ("Product name", Derived("product_name")),
        ("Purchase quantity", Field("OrderedPurchaseQuantity", "decimal")),
        ("Unit", Field("PurchaseUnitSymbol")),
        ("Unit price", Field("PurchasePrice", "decimal")),
        ("Total line amount", Field("LineAmount", "amount")),
        ("Expected delivery date", Field("RequestedDeliveryDate", "date")),
        ("General Ledger Account", Field("MainAccountIdDisplayValue")),
        ("Cost center", Derived("cost_center_segment")),
        ("Status", Field("PurchaseOrderLineStatus", "enum")),
    ),
    erp_source_column=ERP_SOURCE, legal_entity_column="Legal entity",
    source_fields=PO_LINE_FIELDS,
    on_delete=(("Status", "Canceled"),),
)

GL_ACCOUNT = TargetMapping(
    staging_table=doc.GL_ACCOUNT_STAGE,
    target_table=doc.GL_ACCOUNT,
    source_entity="MainAccounts",
    coalesce=(ERP_SOURCE, "Number"),
    columns=_cols(
        (ERP_SOURCE, _ERP),
        ("Number", Field("MainAccountId")),
        ("Account name", Field("Name")),
        # The AU/ZU/YO docs describe "GL Account" as the account's name; on a release where it is the number (XA),
        # discovery finds no "Number" field and the connector maps it to MainAccountId (discovery.binding).
        ("GL Account", Field("Name")),
        ("Type", Field("MainAccountType", "enum")),
        ("Inactive", Derived("suspended")),
        ("Account currency", Derived("chart_currency")),
        ("Local currency", Derived("chart_currency")),
        ("Alternate currency", Derived("chart_reporting_currency")),
        ("Category", Field("MainAccountCategory")),
        ("Short description", Field("Name")),
    ),
    erp_source_column=ERP_SOURCE, legal_entity_column=None,
    source_fields=MAIN_ACCOUNT_FIELDS,
    on_delete=(("Inactive", "true"),),
    related_entities=("Ledgers",),
)

# No active flag on the stage: Valid to carries the end. A suspended value's Valid to is the day the connector first
# pushes it as suspended, so it is volatile (a later run would compute another day) while the internal Suspended
# and F&O ActiveTo decide whether the record changed.
COST_CENTER = TargetMapping(
    staging_table=doc.COST_CENTER_STAGE,
    target_table=doc.COST_CENTER,
    source_entity="FinancialDimensionValues",
    coalesce=(ERP_SOURCE, "Legal entity", "Code"),
    columns=_cols(
        (ERP_SOURCE, _ERP),
        ("Legal entity", Field("LegalEntityId", "upper")),  # blank = shared by all companies
        ("Code", Field("DimensionValue")),
        # APO matches an invoice's cost center on account number + ERP source (reference §3.11).
        ("Account number", Field("DimensionValue")),
        ("Name", Field("Description")),
        # The dimension value's owner in F&O (a worker): the person responsible, as the stage's Manager. [inference]
        ("Manager", Field("Owner")),
        ("Valid from", Field("ActiveFrom", "date")),
        ("Valid to", Derived("valid_to")),
        ("Suspended", Derived("suspended")),
        ("Active to", Field("ActiveTo", "date")),
    ),
    erp_source_column=ERP_SOURCE, legal_entity_column="Legal entity",
    source_fields=DIMENSION_VALUE_FIELDS,
    on_delete=(("Valid to", TODAY),),
    row_filter="cost_center_dimension",
    internal=frozenset({"Suspended", "Active to"}),
    volatile=frozenset({"Valid to"}),
)

# One row per settlement of an invoice (sync/invoices.settlement_rows). The staging table has no legal-entity field
# (reference §3.12), so the legal entity is kept in the connector's key only.
PAYMENT_DETAIL = TargetMapping(
    staging_table=doc.PAYMENT_DETAIL_STAGE,
    target_table="sn_shop_invoice_payment_detail",
    source_entity="VendTransBiEntities",
    coalesce=("Legal entity", "ERP Source", "ERP supplier code", "ERP invoice number", "Payment reference ID"),
    columns=_cols(
        ("ERP Source", _ERP),
        ("Legal entity", _LE),
        # The voucher of the posted invoice: the ERP number the connector wrote on the ServiceNow invoice. How APO
        # matches a payment to its invoice is undocumented (reference §7); this is the inference.
        ("ERP invoice number", Field("Voucher")),
        ("ERP supplier code", Field("AccountNum")),
        ("Currency", Field("CurrencyCode")),
        ("Payment amount", Derived("payment_amount")),
        ("Payment date", Field("LastSettleDate", "date")),
        ("Scheduled payment date", Field("DueDate", "date")),
        ("Payment method", Derived("payment_method")),
        ("Payment reference ID", Field("LastSettleVoucher")),
        ("Remit to street", Derived("remit_street")),
        ("Remit to city", Derived("remit_city")),
        ("Remit to state/province", Derived("remit_state")),
        ("Remit to ZIP/postal code", Derived("remit_zip")),
        ("Remit to country", Derived("remit_country")),
    ),
    erp_source_column="ERP Source", legal_entity_column="Legal entity",
    source_fields=VEND_TRANS_FIELDS,
    on_delete=None,
    row_filter="settled_invoices",
    related_entities=("VendorsV2",),
    internal=frozenset({"Legal entity"}),
)

DEFAULT_MAPPINGS: dict[str, TargetMapping] = {
    m.staging_table: m for m in (LEGAL_ENTITY, SUPPLIER, SUPPLIER_LEGAL_ENTITY, ORDER, ORDER_LINE, GL_ACCOUNT,
                                 COST_CENTER, PAYMENT_DETAIL)
}
