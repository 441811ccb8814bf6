"""The transform maps the fake instance ships with, seeded as ``sys_transform_map`` / ``sys_transform_entry`` RECORDS.

Map names and staging → target pairs are documented (reference/servicenow-s2p-schema.md §4). Their field maps and
coalesce fields are NOT documented anywhere (§4: "no coalesce fields are documented"), so the defaults here are an
inference: each map coalesces on the keys the connector documents for its target (DESIGN §5.1 "Keys"), and the
variant instance coalesces one map differently but equivalently for the connector's data. Entries name columns by
label here and are written with the profile's elements; the transform (:mod:`.transform`) reads the records, so an
admin (or a test, through the admin API) who edits an entry changes what the next import does.

Reference targets resolve by the entry's ``reference_value_field`` on the referenced table (§2.4), case-insensitively
like the platform's default collation (inference). Where a reference needs more than one column (a PO number repeats
across legal entities), the entry uses a source script, as an admin would have to; the sandbox runs the Python
equivalent registered under the marker in the script's first line (:data:`SOURCE_SCRIPTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import (
    COST_CENTER,
    COST_CENTER_STAGE,
    GL_ACCOUNT,
    GL_STAGE,
    LEGAL_ENTITY,
    LEGAL_ENTITY_STAGE,
    ORDER_LINE_STAGE,
    ORDER_STAGE,
    PAYMENT_DETAIL,
    PAYMENT_STAGE,
    PAYMENT_TERM,
    PAYMENT_TERM_STAGE,
    PURCHASE_ORDER,
    PURCHASE_ORDER_LINE,
    SUPPLIER,
    SUPPLIER_DETAIL,
    SUPPLIER_LE_STAGE,
    SUPPLIER_STAGE,
)

SCRIPT_MARKER = "// sandbox:"


@dataclass(frozen=True)
class EntrySpec:
    """One field map, by column labels. ``ref_value`` is the referenced table's column label to match on."""

    source: str
    target: str
    coalesce: bool = False
    coalesce_empty: bool = False
    ref_value: str | None = None
    # Reference targets: "reject" when the record must exist (a PO line without its PO fails, §3.5), "ignore" for an
    # optional one (inference). Other fields keep the platform default, "create".
    choice_action: str = "create"
    script: str | None = None  # a SOURCE_SCRIPTS name


@dataclass(frozen=True)
class MapSpec:
    name: str
    staging: str
    target: str
    entries: tuple[EntrySpec, ...]


def _e(source: str, target: str | None = None, **kw: object) -> EntrySpec:
    return EntrySpec(source, target or source, **kw)  # type: ignore[arg-type]


_KEY = {"coalesce": True}
_MUST = {"choice_action": "reject"}
_MAY = {"choice_action": "ignore"}


def default_maps(profile: str) -> tuple[MapSpec, ...]:
    """The seeded maps of ``profile``; only the cost-center coalesce differs on the variant instance."""
    cost_center_key = "Account number" if profile == "variant" else "Code"
    return (
        MapSpec("Transform legal entities", LEGAL_ENTITY_STAGE, LEGAL_ENTITY, (
            _e("ERP source", "ERP Source", ref_value="ERP Source", **_KEY, **_MUST),
            _e("ERP company code", **_KEY), _e("Legal name"),
            _e("Local currency", ref_value="Code", **_MAY))),
        MapSpec("Master data supplier", SUPPLIER_STAGE, SUPPLIER, (
            _e("ERP source", **_KEY), _e("ERP company code", **_KEY), _e("Legal name", "Legal Name"),
            _e("Legal entities"), _e("Street address", "Street"), _e("City"), _e("State / Province"),
            _e("Zip / Postal code"), _e("Country"), _e("Primary phone number", "Phone"), _e("Fax number", "Fax"),
            _e("Status"))),
        MapSpec("Load legal entity-mapping data", SUPPLIER_LE_STAGE, SUPPLIER_DETAIL, (
            _e("ERP source", **_KEY),
            _e("Supplier", ref_value="ERP company code", **_KEY, **_MUST),
            _e("Legal entity", ref_value="ERP company code", **_KEY, **_MUST))),
        MapSpec("Order stage", ORDER_STAGE, PURCHASE_ORDER, (
            _e("ERP source", **_KEY), _e("Legal entity", ref_value="ERP company code", **_KEY, **_MUST),
            _e("ERP PO number", "ERP number", **_KEY),
            _e("Supplier company name", "Supplier", ref_value="Legal Name", **_MAY),
            _e("PO amount", "Total amount"), _e("PO amount currency", "Currency"), _e("PO status", "Status"),
            _e("Order type"), _e("Payment term", ref_value="Name", **_MAY),
            _e("Cost center", script="cost_center", **_MAY))),
        MapSpec("Order line stage", ORDER_LINE_STAGE, PURCHASE_ORDER_LINE, (
            _e("ERP source", **_KEY), _e("Legal entity", ref_value="ERP company code", **_KEY, **_MUST),
            _e("ERP PO number", "Purchase order", script="purchase_order", **_KEY, **_MUST),
            _e("ERP PO line number", "ERP line number", **_KEY),
            _e("Product name"), _e("Purchase quantity"), _e("Unit"), _e("Unit price"), _e("Total line amount"),
            _e("Expected delivery date"), _e("General Ledger Account", script="gl_account", **_MAY),
            _e("Cost center", script="cost_center", **_MAY), _e("Status"))),
        MapSpec("GL account load data", GL_STAGE, GL_ACCOUNT, (
            _e("ERP source", **_KEY), _e("Number", "Ledger account", **_KEY), _e("Account name", "Account Name"),
            _e("Type"), _e("Category"), _e("Inactive"), _e("Account currency", "Currency", ref_value="Code", **_MAY))),
        MapSpec("Master data cost center", COST_CENTER_STAGE, COST_CENTER, (
            _e("ERP source", "ERP Source", **_KEY),
            # A blank legal entity is a cost center shared by all companies (DESIGN §5.1): "coalesce empty fields".
            _e("Legal entity", ref_value="ERP company code", coalesce=True, coalesce_empty=True, **_MUST),
            _e("Code", coalesce=cost_center_key == "Code"),
            _e("Account number", "Account Number", coalesce=cost_center_key == "Account number"),
            _e("Name"), _e("Valid from"), _e("Valid to"))),
        MapSpec("Load payment terms", PAYMENT_TERM_STAGE, PAYMENT_TERM, (
            _e("Name", **_KEY), _e("Type"), _e("Short description"), _e("Net days to pay"),
            _e("Discount percentage"), _e("Discount days"))),
        MapSpec("Invoice payment detail import", PAYMENT_STAGE, PAYMENT_DETAIL, (
            _e("ERP Source", **_KEY), _e("ERP supplier code", **_KEY), _e("ERP invoice number", **_KEY),
            _e("Payment reference ID", **_KEY), _e("Currency"), _e("Payment amount"), _e("Payment date"),
            _e("Payment method"), _e("Remit to city"), _e("Remit to country"), _e("Remit to state/province"),
            _e("Remit to street"), _e("Remit to ZIP/postal code"), _e("Scheduled payment date"),
            _e("Third party import ID"))),
    )


# What each sandbox source script does, as the JavaScript an admin would write (shown in the entry record).
SOURCE_SCRIPTS: dict[str, str] = {
    "purchase_order": "the order with this ERP number, legal entity (ERP company code) and ERP source",
    "cost_center": "the cost center with this code and ERP source in the row's legal entity, else a shared one",
    "gl_account": "the ledger account with this code and ERP source",
}


def script_text(name: str, source_element: str) -> str:
    """The ``source_script`` of an entry: plausible JavaScript with the sandbox's marker on its first line."""
    return (f"{SCRIPT_MARKER}{name}\n"
            f"// Answer the sys_id of {SOURCE_SCRIPTS[name]}.\n"
            "answer = (function transformEntry(source) {\n"
            f"    return new sn_fcms_intg.ReferenceResolver().{name}(source, source.{source_element});\n"
            "})(source);")


def script_name(text: str) -> str | None:
    first = (text or "").split("\n", 1)[0]
    return first[len(SCRIPT_MARKER):].strip() if first.startswith(SCRIPT_MARKER) else None

