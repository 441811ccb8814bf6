"""Which F&O entities are extracted, with which keys and fields (derived from the mappings that read them)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ...clients.d365 import D365Client, page_frame
from ...mapping import DEFAULT_MAPPINGS, related_columns, source_columns
from ...mapping.spec import TargetMapping
from ...warehouse.snapshots import RawPages


@dataclass(frozen=True)
class ExtractSpec:
    """One F&O entity set read into a DuckDB snapshot."""

    entity_set: str
    key_columns: tuple[str, ...]
    per_company: bool
    description: str
    # OData $filter on top of the legal-entity filter (already escaped: a constant, never user input).
    odata_filter: str | None = None
    extra_fields: tuple[str, ...] = ()
    # A company-scoped entity read by one unpartitioned asset for every configured company (one snapshot each):
    # vendors, because a ServiceNow supplier is global and is planned over every company's vendors at once.
    all_companies: bool = False

    def select(self, mappings: dict[str, TargetMapping] | None = None) -> list[str]:
        """The ``$select`` list: keys, what every mapping sourced from this entity needs, what mappings that join
        it as a related entity read (an order names its vendor's legal name), and the extra fields."""
        fields: list[str] = [*self.key_columns]
        for mapping in (mappings or DEFAULT_MAPPINGS).values():
            if mapping.source_entity == self.entity_set:
                fields.extend(source_columns(mapping))
            fields.extend(related_columns(mapping).get(self.entity_set, ()))
        fields.extend(self.extra_fields)
        if self.per_company:
            fields.append("dataAreaId")
        return list(dict.fromkeys(fields))

    def pages(self, client: D365Client, legal_entity: str | None,
              mappings: dict[str, TargetMapping] | None = None) -> RawPages:
        """The entity's pages as F&O sends them, for :meth:`Warehouse.write_snapshot`: raw bodies, parsed (straight
        to columns in polars, bench/: about 3x less client CPU than dicts) only if F&O did not answer byte for byte
        as for the current snapshot."""
        bodies = client.iter_bodies(self.entity_set, legal_entity=legal_entity, select=self.select(mappings),
                                    odata_filter=self.odata_filter, keys=self.key_columns)
        return RawPages(bodies, partial(page_frame, entity_set=self.entity_set))


EXTRACTS: tuple[ExtractSpec, ...] = (
    ExtractSpec("LegalEntities", ("LegalEntityId",), per_company=False,
                description="The companies (F&O `LegalEntities`), the source of ServiceNow legal entities."),
    ExtractSpec("Ledgers", ("LegalEntityId",), per_company=False,
                description="Each company's ledger (F&O `Ledgers`): its accounting currency and chart of accounts."),
    ExtractSpec("VendorsV2", ("dataAreaId", "VendorAccountNumber"), per_company=True, all_companies=True,
                extra_fields=("VendorPartyNumber",),
                description="Vendors of every configured legal entity (F&O `VendorsV2`, one snapshot per company), "
                            "the source of ServiceNow suppliers and their legal-entity mappings."),
    # Invoice validation reads the invoice vendor of an order (a PO may be invoiced by another vendor account).
    ExtractSpec("PurchaseOrderHeadersV2", ("dataAreaId", "PurchaseOrderNumber"), per_company=True,
                extra_fields=("InvoiceVendorAccountNumber",),
                description="Purchase order headers of one legal entity (F&O `PurchaseOrderHeadersV2`)."),
    ExtractSpec("PurchaseOrderLinesV2", ("dataAreaId", "PurchaseOrderNumber", "LineNumber"), per_company=True,
                description="Purchase order lines of one legal entity (F&O `PurchaseOrderLinesV2`)."),
    ExtractSpec("MainAccounts", ("ChartOfAccounts", "MainAccountId"), per_company=False,
                extra_fields=("IsSuspended",),
                description="GL (main) accounts of the shared chart of accounts (F&O `MainAccounts`)."),
    ExtractSpec("FinancialDimensionValues", ("FinancialDimension", "LegalEntityId", "DimensionValue"),
                per_company=False, odata_filter="FinancialDimension eq 'CostCenter'",
                extra_fields=("IsSuspended",),
                description="Cost-center values, shared and per legal entity (F&O `FinancialDimensionValues` "
                            "of the CostCenter dimension)."),
)
