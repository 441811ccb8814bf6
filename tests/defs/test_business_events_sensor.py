"""A posted-invoice business event updates ServiceNow through a targeted read-back, without a full sync."""

from __future__ import annotations

import dagster as dg

from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.definitions import defs
from d365_snow_assets.defs.automation.business_events import fno_business_events
from d365_snow_assets.events.spool import EventSpool, parse_envelope
from d365_snow_assets.settings import load_settings
from tests.invoice_flow import outbound

from .conftest import Connector


def test_posted_invoice_events_update_just_those_invoices(connector: Connector) -> None:
    connector.sync()  # approved invoices become pending F&O invoices; ServiceNow shows processed + HeaderReference
    processed = outbound.of(connector, status="processed")
    assert processed
    header_refs = {r["sys_id"]: r["erp_number"] for r in processed}

    events = connector.server.world.d365.post_invoices()["events"]
    assert len(events) >= 3
    chosen = events[:2]
    spool = EventSpool(connector.home / "events.sqlite")
    for payload in chosen:
        assert spool.add(parse_envelope(payload))
    spool.close()

    settings = load_settings()
    instance = open_instance(settings)
    result = fno_business_events(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests
    assert request.job_name == "event_read_back"

    job = defs().resolve_job_def("event_read_back")
    assert job.execute_in_process(run_config=request.run_config, instance=instance).success

    vouchers = {(r["InvoiceAccount"], r["InvoiceId"]): r for r in connector.fno(
        'SELECT "InvoiceAccount", "InvoiceId", "LedgerVoucher" FROM "VendInvoiceJourBiEntities"')}
    named = {(p["InvoiceAccount"], p["InvoiceId"]) for p in chosen}
    updated, untouched = 0, 0
    for row in outbound.of(connector, status="processed"):
        key = (row["supplier"], row["supplier_invoice_number"])
        if key in named:
            assert row["erp_number"] == vouchers[key]["LedgerVoucher"] and row["erp_posting_date"]
            updated += 1
        else:  # posted in F&O too, but no event named it: only the next poll updates it
            assert row["erp_number"] == header_refs[row["sys_id"]]
            untouched += 1
    assert updated == len(chosen) and untouched > 0

    again = fno_business_events(dg.build_sensor_context(instance=instance))
    assert isinstance(again, dg.SkipReason)  # consumed: a re-evaluation requests nothing twice
