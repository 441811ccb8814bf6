"""``d365-snow fit`` as a use case (DESIGN §4): does the connector's mapping fit this ServiceNow instance and this
F&O environment? Nothing is written, except the refreshed discovery cache.

ServiceNow, per staging table: each mapped label → the instance's element (or missing / ambiguous / type mismatch),
mandatory fields left unfilled, the insertMultiple key mode, the transform map's coalesce fields against the
connector's key (with the records that would collide in the current F&O data when the map is narrower); the outbound
invoice tables' fields, references and status choices; read access to the tables the connector needs.
F&O: every entity and field the mapping reads present in ``$metadata``; each company's duplicate-invoice policy;
one chart of accounts for all configured companies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..clients.d365 import D365Client
from ..clients.errors import ConnectorError
from ..clients.servicenow import ServiceNowClient
from ..discovery import load_schema
from ..discovery.binding import BoundTarget, Finding, bind, coalesce_findings
from ..discovery.model import InstanceSchema
from ..discovery.outbound import resolve_outbound
from ..discovery.reader import denied_warning
from ..invoices.payloads import HEADER_ENTITY, HEADER_PROPERTIES, LINE_ENTITY, LINE_PROPERTIES
from ..mapping import MappingContext, related_columns, source_columns
from ..mapping.derived import DEFAULT_PAYMENT_METHODS
from ..mapping.spec import Const, Derived, Source, TargetMapping
from ..settings import ConnectorSettings
from ..warehouse import Warehouse
from ..warehouse.diff import business_key_expr
from .plan import MissingSnapshotError, mapped_rows
from .targets import TARGETS, load_mappings, mapping_context

# F&O fields read outside the mappings: the ledgers' currency and chart, the posted-invoice and settlement reads,
# and the duplicate-invoice policy.
OTHER_D365_FIELDS: dict[str, tuple[str, ...]] = {
    HEADER_ENTITY: HEADER_PROPERTIES,
    LINE_ENTITY: LINE_PROPERTIES,
    "VendInvoiceJourBiEntities": ("dataAreaId", "InvoiceAccount", "InvoiceId", "LedgerVoucher", "InvoiceDate",
                                  "SysModifiedDateTime"),
    "VendTransBiEntities": ("dataAreaId", "SourceKey", "AccountNum", "Invoice", "Voucher", "TransType", "AmountCur",
                            "LastSettleVoucher", "LastSettleDate", "SysModifiedDateTime"),
    "VendorParameters": ("dataAreaId", "IsCheckInvoiceNumberUsed"),
}
_SYSTEM_TABLES = ("sys_dictionary", "sys_db_object", "sys_rest_insert_multiple", "sys_transform_map",
                  "sys_transform_entry", "sys_choice")


@dataclass
class TableFit:
    table: str
    target_table: str
    key_mode: str
    fields: list[dict[str, str]]
    findings: list[Finding]


@dataclass
class FitReport:
    instance: str
    discovered_at: str
    tables: list[TableFit] = field(default_factory=list)
    outbound: list[Finding] = field(default_factory=list)
    access: dict[str, str] = field(default_factory=dict)
    discovery: list[Finding] = field(default_factory=list)
    d365: list[Finding] = field(default_factory=list)

    def findings(self) -> list[Finding]:
        return [*self.discovery, *(f for t in self.tables for f in t.findings), *self.outbound, *self.d365]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings() if f.severity == "blocking"]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": not self.blocking,
            "servicenow": {"instance": self.instance, "discovered_at": self.discovered_at, "access": self.access,
                           "tables": [{"table": t.table, "target_table": t.target_table, "key_mode": t.key_mode,
                                       "fields": t.fields, "findings": [f.as_dict() for f in t.findings]}
                                      for t in self.tables],
                           "outbound": [f.as_dict() for f in self.outbound],
                           "discovery": [f.as_dict() for f in self.discovery]},
            "d365": [f.as_dict() for f in self.d365],
            "blocking": len(self.blocking),
            "warnings": sum(1 for f in self.findings() if f.severity == "warning"),
        }


def _field_rows(bound: BoundTarget) -> list[dict[str, str]]:
    rows = []
    for binding in bound.fields.values():
        rows.append({"label": binding.label, "element": binding.element or "",
                     "status": binding.resolved.status, "sent_as": binding.wire_key or "(not sent)",
                     "detail": binding.resolved.describe()})
    return rows


def fit_servicenow(schema: InstanceSchema, mappings: Mapping[str, TargetMapping], warehouse: Warehouse | None,
                   ctx: MappingContext, configured: Sequence[str]) -> FitReport:
    """The ServiceNow half of the report. With a ``warehouse`` holding F&O snapshots, a transform map that
    coalesces on less than the connector's key is checked against the current data for records that would
    collide."""
    report = FitReport(schema.url, schema.fetched_at.isoformat(timespec="seconds"), access=dict(schema.access))
    report.discovery = [Finding("discovery", "warning", "discovery", w) for w in schema.warnings]
    targets = {t.staging_table: t for t in TARGETS}
    for staging, mapping in mappings.items():
        bound = bind(mapping, schema, dict(mapping.element_overrides))
        rows = keys = None
        if warehouse is not None and staging in targets and any(
                f.code == "coalesce_narrower" for f in coalesce_findings(bound, schema)):
            try:
                rows, _ = mapped_rows(bound.mapping, warehouse, ctx, legal_entity=None,
                                      configured_legal_entities=configured)
                keys = rows.select(business_key_expr(bound.mapping.coalesce)).to_series()
            except MissingSnapshotError:
                rows = None
        report.tables.append(TableFit(staging, mapping.target_table, bound.mode, _field_rows(bound),
                                      [*bound.findings, *coalesce_findings(bound, schema, rows, keys),
                                       *_choice_findings(bound, schema, ctx)]))
    report.outbound = resolve_outbound(schema, mappings).findings
    for table, state in schema.access.items():
        if state.startswith("denied") and table not in _SYSTEM_TABLES:
            report.outbound.append(Finding(table, "blocking", "no_read_access",
                                           denied_warning(table, "the connector cannot work with it")))
    return report


def _possible_values(source: Source, ctx: MappingContext) -> set[str] | None:
    """Every value a source can produce, where that is a closed set (a constant, the payment-method rule)."""
    if isinstance(source, Const):
        return {source.value}
    if isinstance(source, Derived) and source.rule == "payment_method":
        return {*DEFAULT_PAYMENT_METHODS.values(), *ctx.payment_methods.values(), ctx.default_payment_method}
    return None


def _choice_findings(bound: BoundTarget, schema: InstanceSchema, ctx: MappingContext) -> list[Finding]:
    """Values the connector sends into a choice field that the instance does not list."""
    out = []
    sources = dict(bound.mapping.columns)
    for binding in bound.fields.values():
        element = binding.element
        choices = schema.choices_of(bound.staging_table, element) if element else []
        values = _possible_values(sources[binding.label], ctx) if choices else None
        unknown = sorted(values - {c.value for c in choices}) if values else []
        if unknown:
            out.append(Finding(bound.staging_table, "warning", "unknown_choice",
                               f"{binding.label!r} ({element}) lists no choice {', '.join(map(repr, unknown))}, which "
                               "the connector may send; ask an admin to add it to the field's choices.", binding.label))
    return out


def fit_before_sync(snow: ServiceNowClient, warehouse: Warehouse, settings: ConnectorSettings) -> FitReport:
    """The ServiceNow half of ``fit`` on the cached schema (discovered when older than a day): what ``sync`` checks
    before it runs anything, so it never pushes into a table that does not fit."""
    schema = load_schema(snow, warehouse)
    return fit_servicenow(schema, load_mappings(schema=schema), warehouse, mapping_context(settings),
                          settings.legal_entities)


def import_probe(bound: BoundTarget, schema: InstanceSchema, erp_source: str) -> tuple[dict[str, str] | None, str]:
    """A single-row import for ``ping`` that the instance skips (a coalesce value is missing), so it exercises the
    import path and its ACLs without touching a record: (the row by column name, "") or (None, why it is not safe).

    It is safe only when the transform map coalesces on a field the row leaves empty and that the map does not
    match empty values on; the row then carries the ERP source alone."""
    erp = bound.element_of(bound.mapping.erp_source_column)
    maps = schema.maps_of(bound.staging_table)
    if erp is None:
        return None, "the ERP source field does not resolve on this instance (see `d365-snow fit`)"
    if not maps:
        return None, "the transform maps could not be read, so a test row might update a record"
    for tmap in maps:
        if not any(e.coalesce and not e.coalesce_empty and e.source_field != erp for e in tmap.entries):
            return None, (f"transform map {tmap.name!r} does not coalesce on a field the test row leaves empty, so "
                          "the row could update a record")
    return {erp: erp_source}, ""


def fit_d365(client: D365Client, mappings: Mapping[str, TargetMapping], legal_entities: Sequence[str]
             ) -> list[Finding]:
    """The F&O half: fields the connector reads, duplicate-invoice policy, one chart of accounts."""
    wanted: dict[str, set[str]] = {entity: set(fields) for entity, fields in OTHER_D365_FIELDS.items()}
    for mapping in mappings.values():
        wanted.setdefault(mapping.source_entity, set()).update(source_columns(mapping))
        for entity, fields in related_columns(mapping).items():
            wanted.setdefault(entity, set()).update(fields)
    findings: list[Finding] = []
    declared = client.entity_properties(wanted)
    for entity, fields in sorted(wanted.items()):
        if entity not in declared:
            findings.append(Finding(entity, "blocking", "d365_entity_missing",
                                    f"Dynamics 365's $metadata has no entity set {entity}, which the connector reads."))
            continue
        missing = sorted(fields - declared[entity])
        if missing:
            findings.append(Finding(entity, "blocking", "d365_field_missing",
                                    f"{entity} in Dynamics 365's $metadata lacks {', '.join(missing)}, which the "
                                    "connector reads (a customer mapping's extra_source_fields included)."))
    companies = {le.lower() for le in legal_entities}
    try:
        for row in client.read_all("VendorParameters", select=["dataAreaId", "IsCheckInvoiceNumberUsed"]):
            le = str(row.get("dataAreaId") or "").lower()
            if le in companies and str(row.get("IsCheckInvoiceNumberUsed")) == "AcceptDuplicate":
                findings.append(Finding("VendorParameters", "warning", "accept_duplicate",
                                        f"{le.upper()} accepts duplicate vendor invoice numbers "
                                        "(IsCheckInvoiceNumberUsed = AcceptDuplicate): F&O will not refuse an "
                                        "invoice twice, so only the connector's natural-key lookup prevents it."))
        charts = {str(r.get("ChartOfAccounts") or "") for r in client.read_all(
            "Ledgers", select=["LegalEntityId", "ChartOfAccounts"]) if str(r.get("LegalEntityId") or "").lower()
                  in companies}
        if len(charts) > 1:
            findings.append(Finding("Ledgers", "warning", "several_charts",
                                    f"The configured companies use {len(charts)} charts of accounts "
                                    f"({', '.join(sorted(charts))}); ServiceNow's GL account stage has no chart "
                                    "field, so accounts with the same number would be one record."))
    except ConnectorError as exc:
        findings.append(Finding("VendorParameters", "warning", "d365_read", f"Could not read the company settings: "
                                f"{exc.message}"))
    return findings
