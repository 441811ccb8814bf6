"""The pinned F&O entity schema the fake serves: entity sets, keys, EDM types, enums, read-only flags.

Field names and types come from reference/d365.md §3 (extracted from a real F&O ``$metadata``, OBS R1). Real
entities carry 100–290 fields; the sandbox pins the subset the reference names, plus keys, plus
``SysModifiedDateTime`` on the BI entities. One list feeds the DuckDB tables, ``$metadata``, ``$filter``
validation and the JSON encoder, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACE = "Microsoft.Dynamics.DataEntities"

# Enum members in declaration order; the EDMX Value is the index. [OBS R1 for member names; the integer values
# beyond NoYes are an inference: they only matter to clients that read EDMX values, which F&O never sends.]
ENUMS: dict[str, list[str]] = {
    "NoYes": ["No", "Yes"],
    "CustVendorBlocked": ["No", "Invoice", "All", "Payment", "Requisition", "Never", "PurchOrder"],
    # Inference: VendorPartyType's enum type name; the members Organization/Person are observed.
    "DirPartyBaseType": ["None", "Party", "Person", "Organization"],
    "PurchStatus": ["None", "Backorder", "Received", "Invoiced", "Canceled"],
    "VersioningDocumentState": ["Draft", "InReview", "Rejected", "Approved", "InExternalReview", "Finalized",
                                "Confirmed"],
    "PurchMatchingPolicyOption": ["NoMatch", "TwoWayMatch", "ThreeWayMatch"],
    "VendInvoiceRequestStatus": ["Draft", "InReview", "Approved", "Rejected", "Cancelled"],
    "PurchInvoiceType": ["Standard", "VendorAdvance", "InvoicePool"],
    "PurchInvoiceLineType": ["Standard", "Advance", "AdvanceApplication", "ReverseAdvanceApplication"],
    "DimensionLedgerAccountType": ["ProfitAndLoss", "Revenue", "Expense", "BalanceSheet", "Asset", "Liability",
                                   "Equity", "Total", "Reporting", "Blank", "Common_CN"],
    "ReuseVoucher": ["NoDuplicate", "NoDuplicateInYear", "AcceptDuplicate", "WarnDuplicate"],
    "LedgerTransType": ["None", "Purch", "Payment", "Vend", "Settlement", "GeneralJournal"],
    "Timezone": ["GMTMINUS0500EASTERNTIME", "GMTPLUS0100AMSTERDAM_BERLIN_BERN_ROME",
                 "GMT_DUBLIN_EDINBURGH_LISBON_LONDON"],
}

# Kind codes: s String, d Decimal, i Int32, l Int64, D AX Date, T AX UtcDateTime, e:<Enum>.
EDM = {"s": "Edm.String", "d": "Edm.Decimal", "i": "Edm.Int32", "l": "Edm.Int64", "D": "Edm.DateTimeOffset",
       "T": "Edm.DateTimeOffset"}
AXTYPE = {"s": "String", "d": "Real", "i": "Int32", "l": "Int64", "D": "Date", "T": "UtcDateTime", "e": "Enum"}
SQL = {"s": "VARCHAR", "d": "DECIMAL(32,6)", "i": "INTEGER", "l": "BIGINT", "D": "DATE", "T": "TIMESTAMP",
       "e": "VARCHAR"}


@dataclass(frozen=True)
class Prop:
    name: str
    kind: str  # s d i l D T e
    enum: str | None = None

    @property
    def edm_type(self) -> str:
        return f"{NAMESPACE}.{self.enum}" if self.enum else EDM[self.kind]

    @property
    def sql_type(self) -> str:
        return SQL[self.kind]


@dataclass(frozen=True)
class EntitySet:
    name: str  # public collection name, the URL segment and the DuckDB table
    entity_type: str  # public entity name, the EDMX EntityType
    aot_name: str  # the AOT entity, quoted in write errors
    keys: tuple[str, ...]
    props: tuple[Prop, ...]
    read_only: bool = False
    company_scoped: bool = True  # has dataAreaId and obeys cross-company
    by_name: dict[str, Prop] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({p.name: p for p in self.props})

    def prop(self, name: str) -> Prop | None:
        return self.by_name.get(name)


def _props(spec: str) -> tuple[Prop, ...]:
    out = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        kind = kind or "s"
        if kind.startswith("e:"):
            out.append(Prop(name, "e", kind[2:]))
        else:
            out.append(Prop(name, kind))
    return tuple(out)


_SETS = [
    EntitySet("VendorsV2", "VendorV2", "VendVendorV2Entity", ("dataAreaId", "VendorAccountNumber"), _props(
        "dataAreaId VendorAccountNumber VendorOrganizationName VendorSearchName VendorGroupId VendorPartyNumber "
        "VendorPartyType:e:DirPartyBaseType VendorKnownAsName PersonFirstName PersonLastName CurrencyCode "
        "DefaultPaymentTermsName DefaultVendorPaymentMethodName BankAccountId CreditLimit:d "
        "OnHoldStatus:e:CustVendorBlocked VendorHoldReleaseDate:T "
        "VendorInvoiceLineMatchingPolicy:e:PurchMatchingPolicyOption IsOneTimeVendor:e:NoYes "
        "InvoiceVendorAccountNumber SalesTaxGroupCode TaxExemptNumber PrimaryEmailAddress PrimaryPhoneNumber "
        "AddressCountryRegionId AddressCountryRegionISOCode AddressCity AddressStreet AddressZipCode "
        "AddressStateId AddressCountyId FormattedPrimaryAddress DefaultLedgerDimensionDisplayValue")),
    EntitySet("PurchaseOrderHeadersV2", "PurchaseOrderHeaderV2", "PurchPurchaseOrderHeaderV2Entity",
              ("dataAreaId", "PurchaseOrderNumber"), _props(
        "dataAreaId PurchaseOrderNumber OrderVendorAccountNumber InvoiceVendorAccountNumber PurchaseOrderName "
        "PurchaseOrderStatus:e:PurchStatus DocumentApprovalStatus:e:VersioningDocumentState AccountingDate:D "
        "RequestedDeliveryDate:D ConfirmedDeliveryDate:D CurrencyCode PaymentTermsName VendorOrderReference "
        "DefaultLedgerDimensionDisplayValue BuyerGroupId VendorPaymentMethodName SalesTaxGroupCode ProjectId "
        "RequesterPersonnelNumber LanguageId")),
    EntitySet("PurchaseOrderLinesV2", "PurchaseOrderLineV2", "PurchPurchaseOrderLineV2Entity",
              ("dataAreaId", "PurchaseOrderNumber", "LineNumber"), _props(
        "dataAreaId PurchaseOrderNumber LineNumber:l ItemNumber LineDescription ProcurementProductCategoryName "
        "OrderedPurchaseQuantity:d PurchaseUnitSymbol PurchasePrice:d PurchasePriceQuantity:d LineAmount:d "
        "LineDiscountAmount:d LineDiscountPercentage:d PurchaseOrderLineStatus:e:PurchStatus "
        "VendorInvoiceMatchingPolicy:e:PurchMatchingPolicyOption MainAccountIdDisplayValue "
        "DefaultLedgerDimensionDisplayValue AccountingDistributionTemplateName RequestedDeliveryDate:D "
        "ConfirmedDeliveryDate:D ReceivingWarehouseId ReceivingSiteId SalesTaxGroupCode SalesTaxItemGroupCode "
        "IsLineStopped:e:NoYes ProjectId")),
    EntitySet("MainAccounts", "MainAccount", "MainAccountEntity", ("ChartOfAccounts", "MainAccountId"), _props(
        "ChartOfAccounts MainAccountId Name MainAccountType:e:DimensionLedgerAccountType MainAccountCategory "
        "MainAccountRecId:l IsSuspended:e:NoYes ActiveFrom:D ActiveTo:D DoNotAllowManualEntry:e:NoYes "
        "DefaultCurrency ParentMainAccountId"), company_scoped=False),
    EntitySet("FinancialDimensionValues", "FinancialDimensionValue", "DimensionFinancialDimensionValueEntity",
              ("FinancialDimension", "LegalEntityId", "DimensionValue"), _props(
        "FinancialDimension LegalEntityId DimensionValue Description IsSuspended:e:NoYes "
        "IsBlockedForManualEntry:e:NoYes IsTotal:e:NoYes ActiveFrom:D ActiveTo:D GroupDimension Owner"),
              company_scoped=False),
    EntitySet("LegalEntities", "LegalEntity", "OMLegalEntity", ("LegalEntityId",), _props(
        "LegalEntityId Name NameAlias PartyNumber AddressCountryRegionId AddressCountryRegionISOCode "
        "AddressStreet AddressCity AddressZipCode AddressState AddressCounty "
        "FullPrimaryAddress LanguageId TimeZone:e:Timezone VATNum RegistrationNumber CompanyType"),
              company_scoped=False),
    # The ledger of each company: its chart of accounts and accounting currency (the connector's "Local currency"
    # and GL "Account currency"). inference: entity, key and field names are not in reference/d365.md.
    EntitySet("Ledgers", "Ledger", "LedgerEntity", ("LegalEntityId",), _props(
        "LegalEntityId Name ChartOfAccounts AccountingCurrency ReportingCurrency"), company_scoped=False),
    EntitySet("VendorParameters", "VendorParameter", "VendParametersEntity", ("dataAreaId",), _props(
        "dataAreaId IsCheckInvoiceNumberUsed:e:ReuseVoucher CheckTheTaxInvoiceNumberUsed:e:NoYes "
        "VendInvoiceInUseRecoverEnable:e:NoYes EnableInvoiceMatchingValidation:e:NoYes "
        "PostInvoiceMatchDiscrepancies")),
    EntitySet("VendorInvoiceHeaders", "VendorInvoiceHeader", "VendorInvoiceHeaderEntity",
              ("dataAreaId", "HeaderReference"), _props(
        "dataAreaId HeaderReference InvoiceNumber InvoiceAccount VendorAccount VendorName DocumentNumber "
        "InvoiceDescription PurchaseOrderNumber InvoiceDate:D Date:D DueDate:D InvoiceReceivedDate:D "
        "CashDiscountDate:D InvoicePaymentReleaseDate:D Currency ImportedAmount:d ImportedSalesTax:d "
        "TotalDiscount:d CashDiscount:d DiscountPercentage:d ExchangeRate:d InvoiceRoundOff:d SalesTaxRounding:d "
        "IsApproved:e:NoYes ApprovedBy IsOnHold:e:NoYes VendorInvoiceReviewStatus:e:VendInvoiceRequestStatus "
        "VendorInvoiceType:e:PurchInvoiceType HeaderOnlyImport:e:NoYes DimensionDisplayValue PostingProfile "
        "SalesTaxGroup IsPricesIncludeSalesTax:e:NoYes TermsOfPayment MethodOfPayment PaymentId InvoiceGroup "
        "NumberSequenceGroup Comment Log")),
    EntitySet("VendorInvoiceLines", "VendorInvoiceLine", "VendorInvoiceLineEntity",
              ("dataAreaId", "HeaderReference", "InvoiceLineNumber"), _props(
        "dataAreaId HeaderReference InvoiceLineNumber:d InvoiceAccount VendorAccount Currency LineNumber:d "
        "LineType:e:PurchInvoiceLineType ItemNumber ItemName ProcurementCategoryName "
        "ProcurementCategoryHierarchyName MainAccountDisplayValue DimensionDisplayValue InventNow:d ReceiveNow:d "
        "Unit UnitPrice:d PriceUnit:d Amount:d NetAmount:d Discount:d DiscountPercent:d MultilineDiscount:d "
        "PurchaseOrder PurchLineNumber:l SalesTaxGroup ItemSalesTax "
        "VendorInvoiceLineReviewStatus:e:VendInvoiceRequestStatus LineDescription OverrideSalesTax:e:NoYes "
        "InventorySiteId InventoryWarehouseId")),
    EntitySet("VendInvoiceJourBiEntities", "VendInvoiceJourBiEntity", "VendInvoiceJourBiEntity",
              ("dataAreaId", "SourceKey"), _props(
        "dataAreaId SourceKey:l InvoiceId InvoiceAccount OrderAccount PurchId InternalInvoiceId LedgerVoucher "
        "Description InvoiceDate:D DocumentDate:D DueDate:D ReceivedDate:D CashDiscDate:D CurrencyCode "
        "InvoiceAmount:d InvoiceAmountMST:d SumTax:d SalesBalance:d SumLineDisc:d EndDisc:d SumMarkup:d "
        "CashDisc:d Qty:d ExchRate:d InvoiceType:e:PurchInvoiceType Payment PaymId PostingProfile VendGroup ParmId "
        "SourceDocumentHeader:l Prepayment:e:NoYes CreatedOn:T SysModifiedDateTime:T SysCreatedBy"),
              read_only=True),
    EntitySet("VendTransBiEntities", "VendTransBiEntity", "VendTransBiEntity", ("dataAreaId", "SourceKey"), _props(
        "dataAreaId SourceKey:l AccountNum Invoice Voucher DocumentNum JournalNum TransDate:D DocumentDate:D "
        "DueDate:D TransType:e:LedgerTransType CurrencyCode AmountCur:d AmountMST:d SettleAmountCur:d "
        "SettleAmountMST:d Closed:D LastSettleDate:D LastSettleVoucher LastSettleAccountNum LastSettleCompany "
        "Approved:e:NoYes ApprovedDate:D PaymMode PaymReference PaymId Txt PostingProfile CreatedOn:T "
        "SysModifiedDateTime:T"), read_only=True),
]

ENTITY_SETS: dict[str, EntitySet] = {s.name: s for s in _SETS}

# The AX null values (reference §2): what an empty Date / UtcDateTime serialises as, and what we store.
NULL_DATE = "1900-01-01"
NULL_DATETIME = "1900-01-01 00:00:00"
