"""``d365-snow ping``: check both connections with the configured credentials (DESIGN.md §4).

Per system: a token, a one-row read of every entity / table the connector uses, and a write-permission check that
leaves nothing behind:
- F&O: a ``$batch`` changeset that POSTs a pending vendor invoice header and then PATCHes a header that does not
  exist. The second operation fails, so F&O rolls the whole changeset back (changesets are atomic, reference
  §2) — the header is never committed, yet the answer shows whether the POST itself was allowed. (A number
  sequence value may be consumed; F&O number sequences for invoices are non-continuous, so that leaves a gap, not
  a record.) A PATCH with no changes was rejected as the check: F&O may skip authorisation for a no-op update.
- ServiceNow: a PATCH of one outbound invoice setting ``processing_message`` to its own current value (the instance
  skips an update that changes nothing); the quick part of ``fit`` (the instance's schema read, every staging
  table able to take the connector's key); and for each Import Set staging table a single-row import that lacks
  its coalesce values and is therefore ``skipped``: the import path and its ACLs are exercised, no target record
  is touched, and the staging row is removed by the instance's import-set cleanup. On an instance whose transform
  map would not skip such a row (discovery says so), that import is skipped with the reason instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..clients.d365 import BatchOp, D365Client
from ..clients.errors import AuthError, ConnectorError, NotFoundError, TransientError
from ..clients.servicenow import ServiceNowClient
from ..clients.transport import RetryPolicy
from ..discovery import InstanceSchema, load_schema
from ..discovery.binding import BoundTarget, bind
from ..discovery.outbound import resolve_outbound
from ..mapping.spec import TargetMapping
from ..paths import StatePaths
from ..redaction import install_redaction, redact
from ..settings import ConnectorSettings, SettingsError
from ..sync.fit import import_probe
from ..sync.targets import load_mappings
from ..warehouse import Warehouse
from .output import EXIT_FAILED, config_json, config_line, emit_json, settings_for

D365_ENTITIES = ("LegalEntities", "VendorsV2", "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2", "MainAccounts",
                 "FinancialDimensionValues", "VendorInvoiceHeaders", "VendorInvoiceLines",
                 "VendInvoiceJourBiEntities", "VendTransBiEntities", "VendorParameters")
SNOW_TABLES = ("sn_spend_intg_outbound_invoice", "sn_spend_intg_outbound_invoice_line", "sys_import_set_row",
               "sn_fin_legal_entity", "sn_fin_supplier", "sn_shop_purchase_order", "sn_shop_purchase_order_line",
               "sn_fin_gl_account", "cmn_cost_center", "sn_shop_invoice")
OUTBOUND = "sn_spend_intg_outbound_invoice"

# A ping should answer in seconds: few retries, short connect timeout.
PING_POLICY = RetryPolicy(max_attempts=2, max_throttled_attempts=5, backoff_initial_s=0.2, backoff_max_s=2.0,
                          retry_after_cap_s=10.0, throttle_budget_s=30.0, connect_timeout_s=5.0,
                          read_timeout_s=60.0)

console = Console()


@dataclass
class Check:
    system: str
    name: str
    status: str  # "pass" | "fail" | "skip"
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def _message(exc: BaseException) -> str:
    if isinstance(exc, ConnectorError):
        return redact(exc.message)
    if isinstance(exc, SettingsError):
        return redact(str(exc))
    return redact(f"{exc.__class__.__name__}: {exc}")


class _Checks:
    def __init__(self, system: str) -> None:
        self.system = system
        self.items: list[Check] = []
        self.broken: str | None = None  # set once the system is unusable: later checks are skipped

    def run(self, name: str, fn: Callable[[], str]) -> Any:
        """Run one check; ``fn`` returns the detail (``"skipped: why"`` for a check it chose not to make)."""
        if self.broken:
            self.items.append(Check(self.system, name, "skip", self.broken))
            return None
        started = time.monotonic()
        try:
            detail = fn()
        except (AuthError, TransientError) as exc:
            self.items.append(Check(self.system, name, "fail", _message(exc)))
            self.broken = f"not tried: {self.system} is not usable (see above)"
            return None
        except Exception as exc:
            self.items.append(Check(self.system, name, "fail", _message(exc)))
            return None
        if detail.startswith("skipped: "):
            self.items.append(Check(self.system, name, "skip", detail.removeprefix("skipped: ")))
            return None
        self.items.append(Check(self.system, name, "pass",
                                f"{detail} ({(time.monotonic() - started) * 1000:.0f} ms)".strip()))
        return True


def check_d365(settings: ConnectorSettings, client: D365Client | None = None) -> list[Check]:
    checks = _Checks("F&O")
    try:
        settings.check(["d365"])
        d365 = client or D365Client(settings, policy=PING_POLICY)
    except (SettingsError, ConnectorError) as exc:
        return [Check("F&O", "configuration", "fail", _message(exc))]
    vendor: dict[str, Any] = {}
    try:
        checks.run("token", lambda: f"Entra ID token for {settings.d365_scope}" if d365.token() else "")
        for entity in D365_ENTITIES:
            def read(entity: str = entity) -> str:
                page = next(d365.iter_pages(entity, top=1), [])
                if entity == "VendorsV2" and page:
                    vendor.update(page[0])
                return f"{len(page)} row(s) read"
            checks.run(f"read {entity}", read)

        def write() -> str:
            if not vendor:
                return "skipped: no vendor to address a test invoice to"
            le = str(vendor.get("dataAreaId") or (settings.legal_entities or ["usmf"])[0])
            header = {"dataAreaId": le, "InvoiceNumber": f"D365SNOW-PING-{uuid.uuid4().hex[:10]}",
                      "InvoiceAccount": vendor.get("VendorAccountNumber"),
                      "Currency": vendor.get("CurrencyCode") or "USD"}
            poison = BatchOp("PATCH", "VendorInvoiceHeaders",
                             key={"dataAreaId": le, "HeaderReference": f"D365SNOW-PING-{uuid.uuid4().hex[:8]}"},
                             body={"InvoiceDescription": "d365-snow ping"})
            [result] = d365.batch([[BatchOp("POST", "VendorInvoiceHeaders", body=header), poison]])
            if result.ok:  # cannot happen with an atomic changeset; clean up rather than leave a stray invoice
                created = result.parts[0].body or {}
                if created.get("HeaderReference"):
                    d365.delete("VendorInvoiceHeaders", {"dataAreaId": le,
                                                         "HeaderReference": created["HeaderReference"]})
                raise ConnectorError("F&O committed a changeset whose second operation should have failed.")
            if result.failed_content_id and result.failed_content_id.endswith(".2") and isinstance(
                    result.error, NotFoundError):
                return "POST VendorInvoiceHeaders allowed (changeset rolled back, nothing written)"
            raise result.error or ConnectorError("F&O refused the test changeset.")
        checks.run("write VendorInvoiceHeaders", write)
    finally:
        if client is None:
            d365.close()
    return checks.items


def check_snow(settings: ConnectorSettings, client: ServiceNowClient | None = None) -> list[Check]:
    checks = _Checks("ServiceNow")
    try:
        settings.check(["snow"])
        snow = client or ServiceNowClient(settings, policy=PING_POLICY)
    except (SettingsError, ConnectorError) as exc:
        return [Check("ServiceNow", "configuration", "fail", _message(exc))]
    try:
        def auth() -> str:
            left = snow.ensure_fresh(60)
            if snow.auth.oauth_refused:
                # Basic auth works, but the configured OAuth client does not: the operator must know.
                raise ConnectorError("ServiceNow refused the OAuth client-credentials grant (access_denied), so the "
                                     "connector fell back to basic auth: check D365SNOW_SNOW_CLIENT_ID / "
                                     "D365SNOW_SNOW_CLIENT_SECRET and that the grant is enabled "
                                     "(glide.oauth.inbound.client.credential.grant_type.enabled), or set "
                                     "D365SNOW_SNOW_AUTH=basic.")
            if snow.auth.effective == "basic":
                return f"basic auth as {settings.snow_username}"
            return f"OAuth client-credentials token, valid {left:.0f} s"
        checks.run("token", auth)
        found: dict[str, Any] = {}

        def discover() -> str:
            # Fresh, never the cache: the write check below is safe only on the coalesce the instance has now.
            schema = load_schema(snow, Warehouse(StatePaths(settings.home).ensure().warehouse), refresh=True)
            found["schema"], found["mappings"] = schema, load_mappings(schema=schema)
            return (f"schema of {len(schema.tables)} tables read" if schema.access.get("sys_dictionary") == "ok"
                    else "dictionary not readable: documented defaults assumed (see `d365-snow fit`)")
        checks.run("discover schema", discover)
        message = (resolve_outbound(found["schema"], found["mappings"]).header.get("processing_message")
                   if found else None)
        # After a refused grant in auto mode the reads below run with basic auth and still test read access.
        sample: dict[str, Any] = {}
        for table in SNOW_TABLES:
            def read(table: str = table) -> str:
                fields = ["sys_id", message] if table == OUTBOUND and message else ["sys_id"]
                rows, _ = snow.get_page(table, "", fields=fields, limit=1)
                if table == OUTBOUND and rows:
                    sample.update(rows[0])
                return f"{len(rows)} row(s) read"
            checks.run(f"read {table}", read)

        def patch() -> str:
            if not sample or not message:
                return "skipped: no outbound invoice to test with"
            snow.patch(OUTBOUND, sample["sys_id"], {message: sample.get(message, "")}, fields=["sys_id"])
            return "PATCH allowed (value unchanged)"
        checks.run(f"write {OUTBOUND}", patch)
        if found:
            _fit_checks(checks, settings, snow, found["schema"], found["mappings"])
    finally:
        if client is None:
            snow.close()
    return checks.items


def _fit_checks(checks: _Checks, settings: ConnectorSettings, snow: ServiceNowClient, schema: InstanceSchema,
                mappings: dict[str, TargetMapping]) -> None:
    """The quick part of ``d365-snow fit``: whether each staging table can take the connector's key, and a
    single-row import per table where that provably writes nothing."""
    for staging, mapping in mappings.items():
        bound = bind(mapping, schema, dict(mapping.element_overrides))

        def fits(bound: BoundTarget = bound) -> str:
            blocking = [f for f in bound.findings if f.severity == "blocking"]
            if blocking:
                raise ConnectorError(blocking[0].message)
            keys = "labels" if bound.mode == "label" else "column names"
            return f"insertMultiple keys: {keys} ({schema.key_mode_origin})"
        if not checks.run(f"fit {staging}", fits):
            continue

        def imp(bound: BoundTarget = bound) -> str:
            row, why = import_probe(bound, schema, settings.erp_source)
            if row is None:
                return f"skipped: {why}"
            result = snow.import_one(bound.staging_table, row)
            if result.status in ("skipped", "ignored"):
                return f"import allowed ({result.status}: nothing written)"
            raise ConnectorError(f"the test import into {bound.staging_table} was {result.status}"
                                 + (f": {result.message}" if result.message else "") + ".")
        checks.run(f"import {staging}", imp)


def render(checks: list[Check], console: Console) -> None:
    """One table per system; check names fold rather than being cut, so two tables never look alike."""
    marks = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]SKIP[/]"}
    for system in dict.fromkeys(c.system for c in checks):
        table = Table(title=f"d365-snow ping: {system}", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("check", overflow="fold", ratio=2)
        table.add_column("result", no_wrap=True)
        table.add_column("detail", overflow="fold", ratio=3)
        for c in checks:
            if c.system == system:
                table.add_row(Text(c.name), marks[c.status], Text(c.detail))  # API text, not markup
        console.print(table)


def ping(json_output: Annotated[bool, typer.Option("--json", help="Print the checks as one JSON document.")]
         = False) -> None:
    """Check both connections: token, a one-row read per entity/table, write permission (nothing is kept)."""
    install_redaction()
    settings = settings_for(json_output=json_output)
    checks = check_d365(settings) + check_snow(settings)
    failed = [c for c in checks if c.failed]
    first = f"{failed[0].system} {failed[0].name}: {failed[0].detail}" if failed else ""
    if json_output:
        emit_json({"ok": not failed,
                   "error": {"kind": "failed", "message": f"{len(failed)} check(s) failed; first: {first}"}
                   if failed else None,
                   "config": config_json(settings),
                   "counts": {status: sum(c.status == status for c in checks) for status in ("pass", "fail", "skip")},
                   "checks": [{"system": c.system, "check": c.name, "status": c.status, "detail": c.detail}
                              for c in checks]})
    else:
        console.print(config_line(settings), highlight=False)
        render(checks, console)
        if failed:
            console.print(f"[red]{len(failed)} check(s) failed.[/] First: {escape(first)}")
        else:
            console.print("[green]All checks passed.[/]")
    if failed:
        raise typer.Exit(EXIT_FAILED)
