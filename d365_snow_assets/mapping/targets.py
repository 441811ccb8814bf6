"""The six default mappings of DESIGN §5.1 (also what the sandbox's transform maps expect).

Deactivation on delete (``on_delete``), chosen per target because ServiceNow records are referenced by invoices and
must not be deleted, only made unusable, with a value the column already uses:
- suppliers, GL accounts, cost centers: ``active=false``, the flag APO itself checks before a record can be picked;
- orders and order lines: status ``Canceled``, the F&O ``PurchStatus`` member for an order that will not be
  fulfilled (these columns carry F&O member names, so no new vocabulary is introduced);
- payment details: none. A payment that disappears from F&O (a reversed settlement) cannot be "deactivated" in
  ServiceNow; the diff reports such keys as orphans for a person to look at instead of pushing anything.
"""

from __future__ import annotations

from d365_snow_assets.mapping.spec import Const, Derived, Field, Source, TargetMapping

# F&O fields a customer override may refer to (d365.md §3); the extract layer $selects what a mapping reads.
VENDOR_FIELDS = frozenset({
    "dataAreaId", "VendorAccountNumber", "VendorOrganizationName", "VendorSearchName", "VendorGroupId",
    "VendorPartyNumber", "VendorPartyType", "VendorKnownAsName", "PersonFirstName", "PersonLastName", "CurrencyCode",
    "DefaultPaymentTermsName", "DefaultVendorPaymentMethodName", "BankAccountId", "CreditLimit", "OnHoldStatus",
    "VendorHoldReleaseDate", "VendorInvoiceLineMatchingPolicy", "IsOneTimeVendor", "InvoiceVendorAccountNumber",
    "SalesTaxGroupCode", "TaxExemptNumber", "PrimaryEmailAddress", "PrimaryPhoneNumber", "AddressCountryRegionId",
    "AddressCountryRegionISOCode", "AddressCity", "AddressStreet", "AddressZipCode", "FormattedPrimaryAddress",
    "DefaultLedgerDimensionDisplayValue",
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
VEND_TRANS_FIELDS = frozenset({
    "dataAreaId", "SourceKey", "AccountNum", "Invoice", "Voucher", "DocumentNum", "JournalNum", "TransDate",
    "DocumentDate", "DueDate", "TransType", "CurrencyCode", "AmountCur", "AmountMST", "SettleAmountCur",
    "SettleAmountMST", "Closed", "LastSettleDate", "LastSettleVoucher", "LastSettleAccountNum", "LastSettleCompany",
    "Approved", "ApprovedDate", "PaymMode", "PaymReference", "PaymId", "Txt", "SysModifiedDateTime",
})

_ERP = Derived("erp_source")
_LE = Field("dataAreaId", "upper")


def _cols(**sources: Source) -> tuple[tuple[str, Source], ...]:
    return tuple(sources.items())


SUPPLIER = TargetMapping(
    staging_table="sn_fcms_intg_imp_supplier",
    target_table="sn_fin_supplier",
    source_entity="VendorsV2",
    coalesce=("erp_source", "legal_entity", "supplier_code"),
    columns=_cols(
        erp_source=_ERP, legal_entity=_LE,
        supplier_code=Field("VendorAccountNumber"),
        name=Derived("vendor_name"),
        supplier_group=Field("VendorGroupId"),
        currency=Field("CurrencyCode"),
        payment_terms=Field("DefaultPaymentTermsName"),
        payment_method=Field("DefaultVendorPaymentMethodName"),
        tax_id=Field("TaxExemptNumber"),
        email=Field("PrimaryEmailAddress"),
        phone=Field("PrimaryPhoneNumber"),
        street=Field("AddressStreet"),
        city=Field("AddressCity"),
        zip=Field("AddressZipCode"),
        country=Field("AddressCountryRegionISOCode"),
        on_hold=Field("OnHoldStatus", "enum"),
        active=Derived("supplier_active"),
    ),
    erp_source_column="erp_source", legal_entity_column="legal_entity",
    source_fields=VENDOR_FIELDS,
    on_delete=(("active", "false"),),
)

ORDER = TargetMapping(
    staging_table="sn_fcms_intg_imp_order",
    target_table="sn_shop_purchase_order",
    source_entity="PurchaseOrderHeadersV2",
    coalesce=("erp_source", "legal_entity", "erp_po_number"),
    columns=_cols(
        erp_source=_ERP, legal_entity=_LE,
        erp_po_number=Field("PurchaseOrderNumber"),
        supplier_code=Field("OrderVendorAccountNumber"),
        invoice_supplier_code=Field("InvoiceVendorAccountNumber"),
        po_name=Field("PurchaseOrderName"),
        po_status=Field("PurchaseOrderStatus", "enum"),
        approval_status=Field("DocumentApprovalStatus", "enum"),
        currency=Field("CurrencyCode"),
        payment_term=Field("PaymentTermsName"),
        order_date=Field("AccountingDate", "date"),
        requested_delivery_date=Field("RequestedDeliveryDate", "date"),
        cost_center=Derived("cost_center_segment"),
        po_amount=Derived("po_amount"),
        order_type=Const("standard"),
    ),
    erp_source_column="erp_source", legal_entity_column="legal_entity",
    source_fields=PO_HEADER_FIELDS,
    on_delete=(("po_status", "Canceled"),),
    related_entities=("PurchaseOrderLinesV2",),
)

ORDER_LINE = TargetMapping(
    staging_table="sn_fcms_intg_imp_order_line",
    target_table="sn_shop_purchase_order_line",
    source_entity="PurchaseOrderLinesV2",
    coalesce=("erp_source", "legal_entity", "erp_po_number", "erp_po_line_number"),
    columns=_cols(
        erp_source=_ERP, legal_entity=_LE,
        erp_po_number=Field("PurchaseOrderNumber"),
        erp_po_line_number=Field("LineNumber", "integer"),
        item_number=Field("ItemNumber"),
        description=Field("LineDescription"),
        category=Field("ProcurementProductCategoryName"),
        quantity=Field("OrderedPurchaseQuantity", "decimal"),
        unit=Field("PurchaseUnitSymbol"),
        unit_price=Field("PurchasePrice", "decimal"),
        line_amount=Field("LineAmount", "amount"),
        line_status=Field("PurchaseOrderLineStatus", "enum"),
        gl_account=Field("MainAccountIdDisplayValue"),
        cost_center=Derived("cost_center_segment"),
        requested_delivery_date=Field("RequestedDeliveryDate", "date"),
        matching_policy=Field("VendorInvoiceMatchingPolicy", "enum"),
    ),
    erp_source_column="erp_source", legal_entity_column="legal_entity",
    source_fields=PO_LINE_FIELDS,
    on_delete=(("line_status", "Canceled"),),
)

GL_ACCOUNT = TargetMapping(
    staging_table="sn_fcms_intg_gl_account_stage",
    target_table="sn_fin_gl_account",
    source_entity="MainAccounts",
    coalesce=("erp_source", "chart_of_accounts", "gl_account"),
    columns=_cols(
        erp_source=_ERP,
        # The chart of accounts is shared across companies (MainAccounts has no dataAreaId).
        legal_entity=Const(""),
        chart_of_accounts=Field("ChartOfAccounts"),
        gl_account=Field("MainAccountId"),
        account_name=Field("Name"),
        account_type=Field("MainAccountType", "enum"),
        active=Derived("not_suspended"),
    ),
    erp_source_column="erp_source", legal_entity_column="legal_entity",
    source_fields=MAIN_ACCOUNT_FIELDS,
    on_delete=(("active", "false"),),
)

COST_CENTER = TargetMapping(
    staging_table="sn_fcms_intg_imp_cost_center",
    target_table="cmn_cost_center",
    source_entity="FinancialDimensionValues",
    coalesce=("erp_source", "legal_entity", "code"),
    columns=_cols(
        erp_source=_ERP,
        legal_entity=Field("LegalEntityId", "upper"),  # blank = shared by all companies
        code=Field("DimensionValue"),
        name=Field("Description"),
        active=Derived("not_suspended"),
        valid_from=Field("ActiveFrom", "date"),
        valid_to=Field("ActiveTo", "date"),
    ),
    erp_source_column="erp_source", legal_entity_column="legal_entity",
    source_fields=DIMENSION_VALUE_FIELDS,
    on_delete=(("active", "false"),),
    row_filter="cost_center_dimension",
)

PAYMENT_DETAIL = TargetMapping(
    staging_table="sn_spend_intg_imp_invoice_payment_detail",
    target_table="sn_shop_invoice_payment_detail",
    source_entity="VendTransBiEntities",
    coalesce=("u_erp_source", "u_legal_entity", "u_payment_reference_id"),
    columns=_cols(
        u_erp_source=_ERP,
        u_legal_entity=_LE,
        u_erp_invoice_number=Field("Invoice"),
        u_erp_supplier_code=Field("AccountNum"),
        u_currency=Field("CurrencyCode"),
        u_payment_amount=Derived("payment_amount"),
        u_payment_date=Field("LastSettleDate", "date"),
        u_payment_method=Derived("payment_method"),
        u_payment_reference_id=Field("LastSettleVoucher"),
        u_scheduled_payment_date=Field("DueDate", "date"),
    ),
    erp_source_column="u_erp_source", legal_entity_column="u_legal_entity",
    source_fields=VEND_TRANS_FIELDS,
    on_delete=None,
    row_filter="settled_invoices",
)

DEFAULT_MAPPINGS: dict[str, TargetMapping] = {
    m.staging_table: m for m in (SUPPLIER, ORDER, ORDER_LINE, GL_ACCOUNT, COST_CENTER, PAYMENT_DETAIL)
}
