"""A push that cannot reach ServiceNow is audited, `replay` repairs it exactly once, `trace` shows the history."""

from __future__ import annotations

import uuid

import polars as pl

from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.definitions import defs
from d365_snow_assets.mapping import MappingContext
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.settings import load_settings
from d365_snow_assets.sync.plan import build_plan
from d365_snow_assets.sync.push import AuditContext, push_plan
from d365_snow_assets.sync.targets import TARGETS_BY_NAME
from d365_snow_assets.warehouse import Warehouse

from .conftest import Connector


def _fail_a_push(connector: Connector) -> tuple[Warehouse, int, pl.DataFrame]:
    """Push USMF's suppliers while ServiceNow answers only 5xx: every row audited as not sent."""
    assert connector.cli("plan").exit_code == 0  # extracts the snapshots, pushes nothing
    settings = load_settings()
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    target = TARGETS_BY_NAME["suppliers"]
    plan = build_plan(target, warehouse, MappingContext(), legal_entity="usmf",
                      configured_legal_entities=settings.legal_entities)
    vendors = plan.diff.inserts.height
    assert vendors > 0

    connector.server.set_faults("snow", FaultProfile(share_5xx=1.0))
    with ServiceNowClient(settings, sleep=lambda _s: None) as client:
        summary = push_plan(plan, target.mapping(), client, warehouse,
                            AuditContext(f"test-{uuid.uuid4()}", "servicenow/sn_fin_supplier", "usmf"))
    connector.server.clear_faults()
    assert summary.unsent_chunks == 1
    assert summary.outcomes == {"error": vendors}
    assert connector.snow("sn_fin_supplier") == []
    failed = warehouse.failed_records()
    assert failed.height == vendors
    assert failed.get_column("message").str.starts_with("not sent: ").all()
    return warehouse, vendors, failed


def test_unreachable_servicenow_is_audited_and_replay_repairs_it_once(connector: Connector) -> None:
    warehouse, vendors, failed = _fail_a_push(connector)

    replayed = connector.cli("replay", "--all-failed")
    assert replayed.exit_code == 0, replayed.stderr
    suppliers = connector.snow("sn_fin_supplier", "erp_source=D365FO^legal_entity=USMF")
    assert len(suppliers) == vendors == len({s["supplier_code"] for s in suppliers})
    assert warehouse.failed_records().height == 0
    with warehouse.reader() as con:
        attempts = con.execute("SELECT attempt, outcome, count(*) FROM audit GROUP BY ALL ORDER BY 1").fetchall()
    assert attempts == [(1, "error", vendors), (2, "inserted", vendors)]

    again = connector.cli("replay", "--all-failed")
    assert again.exit_code == 0 and "Nothing to replay" in again.stderr
    assert len(connector.snow("sn_fin_supplier")) == vendors

    # Replay recorded pushed state with the same hashes a sync computes: the next sync re-sends none of them.
    summary_after = connector.sync()
    others = len(connector.fno("SELECT 1 FROM \"VendorsV2\" WHERE \"dataAreaId\" <> 'usmf'"))
    assert summary_after["pushed"]["sn_fin_supplier"].get("inserted", 0) == others
    assert summary_after["pushed"]["sn_fin_supplier"].get("updated", 0) == 0

    key = failed.get_column("business_key")[0]
    traced = connector.cli("trace", key)
    assert traced.exit_code == 0, traced.stderr
    assert "error" in traced.stdout and "inserted" in traced.stdout and "not sent" in traced.stdout
    unknown = connector.cli("trace", "D365FO|USMF|no-such-vendor")
    assert unknown.exit_code == 1 and "No audit rows" in unknown.stderr


def test_replay_job_repairs_failed_records_from_the_ui(connector: Connector) -> None:
    warehouse, vendors, _failed = _fail_a_push(connector)
    instance = open_instance(load_settings())
    job = defs().resolve_job_def("replay_failed")
    config = {"ops": {"replay_failed_records": {"config": {"all_failed": True}}}}
    assert job.execute_in_process(run_config=config, instance=instance).success
    assert len(connector.snow("sn_fin_supplier", "erp_source=D365FO^legal_entity=USMF")) == vendors
    assert warehouse.failed_records().height == 0
