"""The approved-invoice sensor: requests runs only for legal entities with waiting invoices, never twice for the
same work, moves only with committed work, and leaves everything alone when ServiceNow cannot be read."""

from __future__ import annotations

import uuid

import dagster as dg

from d365_snow_assets.defs.automation.snow_invoices import snow_approved_invoices
from tests.invoice_flow import outbound

from .conftest import Connector


def _evaluate() -> dg.SensorResult | dg.SkipReason:
    with dg.instance_for_test() as instance:
        return snow_approved_invoices(dg.build_sensor_context(instance=instance))


def _waiting_les(connector: Connector) -> set[str]:
    return {r["legal_entity"].lower() for r in outbound.of(connector, status="new")}


def test_requests_follow_committed_work(connector: Connector, monkeypatch) -> None:
    outbound.sync_without_invoices(connector)  # ServiceNow holds approved invoices once their references exist
    first = _evaluate()
    assert isinstance(first, dg.SensorResult)
    assert {r.partition_key for r in first.run_requests} == _waiting_les(connector) != set()
    again = _evaluate()
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]

    connector.sync()  # runs the invoice round trip of every legal entity and commits its cursor
    assert _waiting_les(connector) == set()
    assert isinstance(_evaluate(), dg.SkipReason)

    connector.server.world.snow.approve_invoices(2)
    later = _evaluate()
    assert isinstance(later, dg.SensorResult)
    assert {r.partition_key for r in later.run_requests} == _waiting_les(connector)
    assert not {r.run_key for r in later.run_requests} & {r.run_key for r in first.run_requests}

    monkeypatch.setenv("D365SNOW_SNOW_AUTH", "basic")
    monkeypatch.setenv("D365SNOW_SNOW_PASSWORD", "wrong-password")
    refused = _evaluate()
    assert isinstance(refused, dg.SkipReason)
    assert "ServiceNow could not be read" in (refused.skip_message or "")


def test_a_legal_entity_whose_round_trip_is_still_going_gets_no_second_run(connector: Connector) -> None:
    """Its run moves the waiting key (invoices in progress, a new cursor): a run requested meanwhile would queue
    behind it and take up its retry-list invoices again minutes later."""
    outbound.sync_without_invoices(connector)
    waiting = _waiting_les(connector)
    assert len(waiting) >= 2
    going = sorted(waiting)[0]
    with dg.instance_for_test() as instance:
        instance.add_run(dg.DagsterRun(job_name="invoice_round_trip", run_id=str(uuid.uuid4()),
                                       status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": going}))
        result = snow_approved_invoices(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    assert {r.partition_key for r in result.run_requests} == waiting - {going}
