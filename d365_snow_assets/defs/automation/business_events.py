"""F&O Business Events → targeted read-backs, instead of waiting for the next poll.

Events arrive through ``d365-snow events serve`` into the spool. The polls stay the source of truth: events only
make an update faster, so an event that is lost (or consumed before its run finished) costs latency, never data.
"""

import hashlib

import dagster as dg

from ...events.spool import EventSpool
from ...paths import StatePaths
from ...settings import SettingsError, load_settings
from ...sync.events import INVOICE_POSTED, PAYMENT_POSTED, PO_CONFIRMED, read_posted_invoices
from ...sync.invoices import apply_status_updates, posted_status_updates
from ..d365_extract.assets import extract_key
from ..invoices.assets import PAYMENTS_KEY
from ..jobs import invoice_round_trip, sync_legal_entity
from ..resources import D365Resource, ServiceNowResource, WarehouseResource

EVENTS_PER_TICK = 500


class ReadBackConfig(dg.Config):
    legal_entity: str
    invoices: list[list[str]]  # [InvoiceAccount, InvoiceId] pairs named by VendorInvoicePosted events


@dg.op(description="Read just the posted invoices named by events from F&O and update their ServiceNow status.")
def read_back_posted_invoices(context: dg.OpExecutionContext, config: ReadBackConfig, d365: D365Resource,
                              snow: ServiceNowResource, warehouse: WarehouseResource) -> None:
    pairs = [(account, number) for account, number in config.invoices]
    jour = read_posted_invoices(d365.client(), config.legal_entity, pairs)
    wh = warehouse.open()
    client, out = snow.client(), snow.outbound(wh)
    updates = posted_status_updates(client, out, warehouse.settings.erp_source, jour, config.legal_entity)
    rows, errors = apply_status_updates(client, out, updates, {
        "run_id": context.run.run_id, "asset_key": "invoices/posted_status", "partition": config.legal_entity,
        "attempt": context.retry_number + 1})
    if rows:
        wh.write_audit(rows)
    context.log.info(f"{len(pairs)} invoice(s) named by events, {jour.height} posted in F&O, "
                     f"{len(updates) - errors} updated in ServiceNow, {errors} error(s)")
    if errors:
        raise dg.Failure(f"{errors} ServiceNow update(s) failed; the next posted-status run retries them")


@dg.job(description="Business Events fast path: posted vendor invoices → ServiceNow ERP number and posting date.")
def event_read_back() -> None:
    read_back_posted_invoices()


def _run_key(kind: str, legal_entity: str, event_ids: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()[:16]
    return f"event:{kind}:{legal_entity}:{digest}"


@dg.sensor(
    name="fno_business_events",
    jobs=[event_read_back, invoice_round_trip, sync_legal_entity],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Turns F&O Business Events from `d365-snow events serve` into targeted runs: vendor invoice posted "
                "→ read back just those invoices; vendor payment posted → payment details of that legal entity; "
                "purchase order confirmed → that legal entity's sync.",
)
def fno_business_events(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    try:
        settings = load_settings(require=None)
    except SettingsError as exc:
        return dg.SkipReason(f"configuration problem: {exc}")
    spool = EventSpool(StatePaths(settings.home).ensure().home / "events.sqlite")
    try:
        events = spool.pending(EVENTS_PER_TICK)
        if not events:
            return dg.SkipReason("no new business events")
        configured = set(settings.legal_entities)
        posted: dict[str, list[tuple[str, list[str]]]] = {}
        paid: dict[str, list[str]] = {}
        confirmed: dict[str, list[str]] = {}
        for event in events:
            le = event.legal_entity
            if le not in configured:
                continue
            if event.business_event_id == INVOICE_POSTED:
                pair = [str(event.payload.get("InvoiceAccount", "")), str(event.payload.get("InvoiceId", ""))]
                posted.setdefault(le, []).append((event.event_id, pair))
            elif event.business_event_id == PAYMENT_POSTED:
                paid.setdefault(le, []).append(event.event_id)
            elif event.business_event_id == PO_CONFIRMED:
                confirmed.setdefault(le, []).append(event.event_id)
        tags = {"d365snow/trigger": "business_event", **settings.run_tags()}
        requests = [
            dg.RunRequest(run_key=_run_key("posted", le, [i for i, _ in items]), job_name=event_read_back.name,
                          run_config={"ops": {"read_back_posted_invoices": {"config": {
                              "legal_entity": le, "invoices": [pair for _, pair in items]}}}},
                          tags=tags)
            for le, items in sorted(posted.items())]
        requests += [
            dg.RunRequest(run_key=_run_key("paid", le, ids), job_name=invoice_round_trip.name, partition_key=le,
                          asset_selection=[extract_key("VendTransBiEntities"), PAYMENTS_KEY],
                          tags=tags)
            for le, ids in sorted(paid.items())]
        requests += [
            dg.RunRequest(run_key=_run_key("confirmed", le, ids), job_name=sync_legal_entity.name, partition_key=le,
                          tags=tags)
            for le, ids in sorted(confirmed.items())]
        # Consumed once the runs are requested (events of other companies or kinds included): run keys keep a
        # re-evaluated tick from launching twice, and the polls cover anything an interrupted tick drops.
        spool.mark_consumed([e.event_id for e in events])
    finally:
        spool.close()
    if not requests:
        return dg.SkipReason(f"{len(events)} event(s) with nothing to do for the configured legal entities")
    return dg.SensorResult(run_requests=requests)
