"""A push that cannot reach ServiceNow is audited, `replay` repairs it exactly once, `trace` shows the history."""

from __future__ import annotations

import uuid

import orjson
import polars as pl

from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.definitions import defs
from d365_snow_assets.discovery import load_schema
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.settings import load_settings
from d365_snow_assets.sync.plan import build_plan
from d365_snow_assets.sync.push import AuditContext, push_plan
from d365_snow_assets.sync.targets import TARGETS_BY_NAME, load_mappings, mapping_context
from d365_snow_assets.warehouse import Warehouse
from tests.chaos.endstate import conflicting_accounts, snow_keys
from tests.snow_view import SnowView

from .conftest import Connector

SUPPLIER = "sn_fin_supplier"


def _fail_a_push(connector: Connector) -> tuple[Warehouse, int, pl.DataFrame]:
    """Push the suppliers (one per vendor account, shared by the companies) while ServiceNow answers only 5xx:
    every row audited as not sent."""
    assert connector.cli("plan").exit_code == 0  # extracts the snapshots, pushes nothing
    settings = load_settings()
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    target = TARGETS_BY_NAME["suppliers"]
    with ServiceNowClient(settings, sleep=lambda _s: None) as client:
        schema = load_schema(client, warehouse)  # planned and bound as a sync plans it
        plan = build_plan(target, warehouse, mapping_context(settings), legal_entity=None,
                          configured_legal_entities=settings.legal_entities,
                          mapping=target.mapping(load_mappings(schema=schema)), schema=schema)
        vendors = plan.diff.inserts.height
        assert vendors > 0

        connector.server.set_faults("snow", FaultProfile(share_5xx=1.0))
        summary = push_plan(plan, client, warehouse,
                            AuditContext(f"test-{uuid.uuid4()}", f"servicenow/{SUPPLIER}", None))
    connector.server.clear_faults()
    assert summary.unsent_chunks == 1
    assert summary.outcomes == {"error": vendors}
    assert connector.snow(SUPPLIER) == []
    failed = warehouse.failed_records()
    assert failed.height == vendors
    assert failed.get_column("message").str.starts_with("not sent: ").all()
    return warehouse, vendors, failed


def test_unreachable_servicenow_is_audited_and_replay_repairs_it_once(connector: Connector) -> None:
    warehouse, vendors, failed = _fail_a_push(connector)

    replayed = connector.cli("replay", "--all-failed", "--json")
    assert replayed.exit_code == 0, replayed.stderr
    # F&O did not change since the failed attempt: every record is re-sent as audited, none re-derived.
    decisions = orjson.loads(replayed.stdout)["decisions"]
    assert sorted((d["business_key"], d["action"]) for d in decisions) == sorted(
        (k, "resend") for k in failed.get_column("business_key"))
    suppliers = [key for key, _row in snow_keys(SnowView(connector.server.world.snow), SUPPLIER)]
    assert len(suppliers) == vendors == len(set(suppliers))
    assert set(suppliers) == set(failed.get_column("business_key"))
    assert warehouse.failed_records().height == 0
    with warehouse.reader() as con:
        attempts = con.execute("SELECT attempt, outcome, count(*) FROM audit GROUP BY ALL ORDER BY 1, 2").fetchall()
    # An account number naming two parties is held back (audited rejected, never sent, so nothing to replay).
    held = len(conflicting_accounts(connector))
    assert attempts == [(1, "error", vendors), (1, "rejected", held), (2, "inserted", vendors)]

    again = connector.cli("replay", "--all-failed")
    assert again.exit_code == 0 and "Nothing to replay" in again.stderr
    assert len(connector.snow(SUPPLIER)) == vendors

    # Replay recorded pushed state with the same hashes a sync computes: the next sync re-sends none of them (every
    # supplier was in the replayed plan: there is one supplier plan for all companies).
    summary_after = connector.sync()
    assert summary_after["ok"]
    assert summary_after["pushed"][SUPPLIER] == {"inserted": 0, "updated": 0, "ignored": 0, "skipped": 0,
                                                 "rejected": held, "errors": 0}
    assert len(connector.snow(SUPPLIER)) == vendors

    key = failed.get_column("business_key")[0]
    traced = connector.cli("trace", key)
    assert traced.exit_code == 0, traced.stderr
    assert "error" in traced.stdout and "inserted" in traced.stdout and "not sent" in traced.stdout
    unknown = connector.cli("trace", "D365FO|USMF|no-such-vendor")
    assert unknown.exit_code == 1 and "No audit rows" in unknown.stderr


def test_replay_job_repairs_failed_records_from_the_ui(connector: Connector) -> None:
    warehouse, vendors, failed = _fail_a_push(connector)
    instance = open_instance(load_settings())
    job = defs().resolve_job_def("replay_failed")
    config = {"ops": {"replay_failed_records": {"config": {"all_failed": True}}}}
    assert job.execute_in_process(run_config=config, instance=instance).success
    suppliers = [key for key, _row in snow_keys(SnowView(connector.server.world.snow), SUPPLIER)]
    assert len(suppliers) == vendors
    assert sorted(suppliers) == sorted(failed.get_column("business_key"))
    assert warehouse.failed_records().height == 0
