"""How the outbound invoice tables are read and written on one instance (DESIGN §5.2): every documented label
resolved to the instance's element, references dot-walked to the ERP code on the referenced record, and the
Integration status values found by their choice labels.

The ERP code a reference leads to is the field the instance's own transform map fills from the connector's key
(the supplier map's target for "ERP company code", the order map's for "ERP PO number", …); where the maps could
not be read, the referenced table's documented label is resolved instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..mapping.spec import TargetMapping
from . import documented as doc
from .binding import Finding
from .model import Choice, InstanceSchema, TableSchema
from .resolve import normalize, resolve

LOGICAL_STATUSES = ("new", "in_progress", "processed", "error")
# Choice labels per logical status: the APO invoice pages say New / In progress / Processed / Error, the outbound
# purchase order's documented list New / In process / Processed / Failed (reference §7).
STATUS_LABELS: dict[str, frozenset[str]] = {
    "new": frozenset({"new"}), "in_progress": frozenset({"inprogress", "inprocess"}),
    "processed": frozenset({"processed"}), "error": frozenset({"error", "failed"}),
}
DOCUMENTED_STATUS = {"new": "10", "in_progress": "20", "processed": "30", "error": "40"}


@dataclass(frozen=True)
class Hop:
    """One step of a path: a label on the current table, and for a reference the table it is expected to lead to
    (the dictionary's own reference target wins)."""

    label: str
    table: str | None = None


@dataclass(frozen=True)
class Ref:
    """A reference dot-walked to an ERP code: the staging table and label whose transform-map target holds it,
    and the documented label of that field on the referenced table (when the maps cannot be read)."""

    via: tuple[Hop, ...]
    staging: str
    staging_label: str
    target_label: str


Spec = tuple[Hop, ...] | Ref

# logical name -> how to reach it from the outbound invoice header / line; the bool says whether posting needs it.
HEADER: dict[str, tuple[Spec, bool]] = {
    "number": ((Hop("Number"),), True),
    "supplier_invoice_number": ((Hop("Supplier invoice number"),), True),
    "supplier": (Ref((Hop("Supplier", doc.SUPPLIER),), doc.SUPPLIER_STAGE, "ERP company code", "ERP company code"),
                 True),
    "legal_entity": (Ref((Hop("Legal entity", doc.LEGAL_ENTITY),), doc.LEGAL_ENTITY_STAGE, "ERP company code",
                         "ERP company code"), True),
    "purchase_order": (Ref((Hop("Purchase order", doc.PURCHASE_ORDER),), doc.ORDER_STAGE, "ERP PO number",
                           "ERP number"), False),
    "payment_terms": ((Hop("Payment terms", doc.PAYMENT_TERM), Hop("Name")), False),
    "currency": ((Hop("Currency"),), True),
    "invoice_date": ((Hop("Invoice date"),), True),
    "amount_invoiced": ((Hop("Amount invoiced"),), True),
    "subtotal": ((Hop("Subtotal"),), False),
    "tax_amount": ((Hop("Tax amount"),), False),
    "invoice_type": ((Hop("Invoice type"),), False),
    "erp_source": ((Hop("ERP source"),), True),
    "integration_status": ((Hop("Integration status"),), True),
    "erp_number": ((Hop("ERP number"),), True),
    "erp_posting_date": ((Hop("ERP posting date"),), False),
    "processing_message": ((Hop("Processing message"),), True),
}
LINE: dict[str, tuple[Spec, bool]] = {
    "outbound_invoice": ((Hop("Invoice", doc.OUTBOUND_INVOICE),), True),
    "number": ((Hop("Number"),), False),
    "erp_line_number": ((Hop("ERP line number"),), False),
    "purchase_order_line": (Ref((Hop("Purchase order line", doc.PURCHASE_ORDER_LINE),), doc.ORDER_LINE_STAGE,
                                "ERP PO line number", "ERP line number"), False),
    "purchase_order": (Ref((Hop("Purchase order line", doc.PURCHASE_ORDER_LINE),
                            Hop("Purchase order", doc.PURCHASE_ORDER)), doc.ORDER_STAGE, "ERP PO number",
                           "ERP number"), False),
    "description": ((Hop("Line description"),), False),
    "quantity": ((Hop("Line quantity"),), False),
    "unit_price": ((Hop("Line unit price"),), False),
    "amount": ((Hop("Line amount invoiced"),), True),
    "tax_amount": ((Hop("Tax amount"),), False),
    "gl_account": (Ref((Hop("GL account", doc.GL_ACCOUNT),), doc.GL_ACCOUNT_STAGE, "Number", "Ledger account"),
                   False),
    "cost_center": (Ref((Hop("Cost center", doc.COST_CENTER),), doc.COST_CENTER_STAGE, "Code", "Code"), False),
}


@dataclass
class OutboundFields:
    """The resolved reading and writing of the outbound invoice tables."""

    header: dict[str, str]  # logical -> field path for sysparm_fields / sysparm_query
    line: dict[str, str]
    status_values: dict[str, str]  # logical status -> stored value
    findings: list[Finding] = field(default_factory=list)
    header_table: str = doc.OUTBOUND_INVOICE
    line_table: str = doc.OUTBOUND_INVOICE_LINE
    # sn_shop_invoice, for reconciliation: its ERP number (copied from the outbound invoice by APO, reference §7)
    # and its state (documented values pending_payment, paid); None where the instance has no such field.
    shop_erp_number: str | None = None
    shop_state: str | None = None

    @property
    def blocked(self) -> bool:
        return any(f.severity == "blocking" for f in self.findings)

    def header_fields(self) -> list[str]:
        return ["sys_id", "sys_updated_on", "sys_mod_count", *dict.fromkeys(self.header.values())]

    def line_fields(self) -> list[str]:
        return ["sys_id", *dict.fromkeys(self.line.values())]

    def element(self, logical: str) -> str:
        """A header field that is written (no dot-walk): its element."""
        return self.header[logical]

    def status(self, logical: str) -> str:
        return self.status_values[logical]

    def logical_status(self, value: str) -> str:
        for name, stored in self.status_values.items():
            if stored == value:
                return name
        return value

    def to_header(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A Table API header row as the logical dict :func:`d365_snow_assets.invoices.model.parse_invoice` reads."""
        out: dict[str, Any] = {k: row.get(k, "") for k in ("sys_id", "sys_updated_on", "sys_mod_count")}
        for name, path in self.header.items():
            out[name] = _text(row.get(path))
        out["integration_status"] = self.logical_status(out.get("integration_status", ""))
        return out

    def to_lines(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Line rows as logical dicts; ``line_number`` is the line's position on its invoice in the order of the
        lines' Number (then sys_id), the stable InvoiceLineNumber an outbound line has no field for (the docs list
        only Number and the ERP line number, reference §6.2)."""
        lines = []
        for row in rows:
            line: dict[str, Any] = {"sys_id": _text(row.get("sys_id"))}
            for name, path in self.line.items():
                line[name] = _text(row.get(path))
            lines.append(line)
        by_invoice: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            by_invoice.setdefault(line["outbound_invoice"], []).append(line)
        for group in by_invoice.values():
            group.sort(key=lambda li: (li.get("number", ""), li["sys_id"]))
            for position, line in enumerate(group, start=1):
                line["line_number"] = str(position)
        return lines


def resolve_outbound(schema: InstanceSchema, mappings: Mapping[str, TargetMapping]) -> OutboundFields:
    """The outbound invoice tables of ``schema``, for the connector's ``mappings`` (their bindings name the staging
    fields whose transform-map targets the references lead to)."""
    findings: list[Finding] = []
    header = {name: _path(schema, mappings, doc.OUTBOUND_INVOICE, name, spec, needed, findings)
              for name, (spec, needed) in HEADER.items()}
    line = {name: _path(schema, mappings, doc.OUTBOUND_INVOICE_LINE, name, spec, needed, findings)
            for name, (spec, needed) in LINE.items()}
    shop = schema.tables.get(doc.SHOP_INVOICE)
    shop_erp = resolve(shop, "ERP number").column if shop else None
    shop_state = resolve(shop, "Status").column if shop else None
    return OutboundFields({k: v for k, v in header.items() if v}, {k: v for k, v in line.items() if v},
                          _status_values(schema, header.get("integration_status"), findings), findings,
                          shop_erp_number=shop_erp.element if shop_erp else None,
                          shop_state=shop_state.element if shop_state else None)


def _path(schema: InstanceSchema, mappings: Mapping[str, TargetMapping], table: str, name: str, spec: Spec,
          needed: bool, findings: list[Finding]) -> str | None:
    hops = spec.via if isinstance(spec, Ref) else spec
    parts: list[str] = []
    at = table
    for i, hop in enumerate(hops):
        found = schema.tables.get(at)
        column = resolve(found, hop.label).column if found else None
        if column is None:
            findings.append(Finding(table, "blocking" if needed else "warning", "outbound_missing",
                                    f"{at} has no field labelled {hop.label!r} (for the invoice's {name}); "
                                    + ("invoices cannot be read without it." if needed else "it is left empty.")))
            return None
        parts.append(column.element)
        if i < len(hops) - 1 or isinstance(spec, Ref):
            at = column.reference or hop.table or ""
    if isinstance(spec, Ref):
        element = _erp_code_field(schema, mappings, spec, at)
        if element is None:
            findings.append(Finding(table, "blocking" if needed else "warning", "outbound_reference",
                                    f"The connector cannot tell which field of {at} holds the ERP code its "
                                    f"{spec.staging_label!r} was sent as (for the invoice's {name})."))
            return None
        parts.append(element)
    return ".".join(parts)


def _erp_code_field(schema: InstanceSchema, mappings: Mapping[str, TargetMapping], ref: Ref, target: str) -> str | None:
    """The field of the referenced table that the instance's transform map fills from ``ref.staging_label``."""
    staging = schema.tables.get(ref.staging)
    mapping = mappings.get(ref.staging)
    overrides = dict(mapping.element_overrides) if mapping else {}
    source = resolve(staging, ref.staging_label, overrides.get(ref.staging_label)).column if staging else None
    for tmap in schema.maps_of(ref.staging) or []:
        if tmap.target_table != target or source is None:
            continue
        entry = next((e for e in tmap.entries if e.source_field == source.element), None)
        if entry is not None:
            return entry.target_field
    found: TableSchema | None = schema.tables.get(target)
    column = resolve(found, ref.target_label).column if found else None
    return column.element if column else None


def _status_values(schema: InstanceSchema, path: str | None, findings: list[Finding]) -> dict[str, str]:
    if path is None:
        return dict(DOCUMENTED_STATUS)
    choices: list[Choice] = schema.choices_of(doc.OUTBOUND_INVOICE, path)
    if not choices:
        if schema.choices_origin == "instance":
            findings.append(Finding(doc.OUTBOUND_INVOICE, "warning", "status_choices",
                                    f"ServiceNow lists no choices for the outbound invoice's Integration status "
                                    f"({path}); the documented values 10/20/30/40 are assumed."))
        return dict(DOCUMENTED_STATUS)
    values: dict[str, str] = {}
    for logical, labels in STATUS_LABELS.items():
        match = next((c.value for c in choices if normalize(c.label) in labels), None)
        if match is None:
            findings.append(Finding(doc.OUTBOUND_INVOICE, "blocking", "status_choices",
                                    f"The outbound invoice's Integration status ({path}) has no choice the connector "
                                    f"recognises as {logical.replace('_', ' ')!r} (choices: "
                                    f"{', '.join(f'{c.value}={c.label}' for c in choices)})."))
            match = DOCUMENTED_STATUS[logical]
        values[logical] = match
    return values


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return _text(value.get("value"))
    return "" if value is None else str(value).strip()
