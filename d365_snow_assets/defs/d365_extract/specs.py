"""Which F&O entities are extracted, with which keys and fields (derived from the mappings that read them)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from ...clients.d365 import D365Client, page_frame
from ...mapping import DEFAULT_MAPPINGS, source_columns
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

    def select(self, mappings: dict[str, TargetMapping] | None = None) -> list[str]:
        """The ``$select`` list: keys, what every mapping sourced from this entity needs, and the extra fields.

        Mappings that only use this entity as a related one (orders summing their lines) read columns the
        entity's own mapping already selects.
        """
        fields: list[str] = [*self.key_columns]
        for mapping in (mappings or DEFAULT_MAPPINGS).values():
            if mapping.source_entity == self.entity_set:
                fields.extend(source_columns(mapping))
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
    ExtractSpec("VendorsV2", ("dataAreaId", "VendorAccountNumber"), per_company=True,
                description="Vendors of one legal entity (F&O `VendorsV2`), the source of ServiceNow suppliers."),
    ExtractSpec("PurchaseOrderHeadersV2", ("dataAreaId", "PurchaseOrderNumber"), per_company=True,
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
