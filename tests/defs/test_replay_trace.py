"""A push that cannot reach ServiceNow is audited, `replay` repairs it exactly once, `trace` shows the history."""

from __future__ import annotations

import uuid

from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.mapping import MappingContext
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.settings import load_settings
from d365_snow_assets.sync.plan import build_plan
from d365_snow_assets.sync.push import AuditContext, push_plan
from d365_snow_assets.sync.targets import TARGETS_BY_NAME
from d365_snow_assets.warehouse import Warehouse

from .conftest import Connector


def test_unreachable_servicenow_is_audited_and_replay_repairs_it_once(connector: Connector) -> None:
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
