"""Asset checks as Dagster reports them, `plan`, and two sync processes started at once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import dagster as dg
import orjson
import pytest

from d365_snow_assets.commands.runs import open_instance, run_cycle
from d365_snow_assets.settings import load_settings
from d365_snow_assets.sync import plan as plan_module

from .conftest import Connector
from .test_sync_cycle import _invalid_line_keys


def test_po_line_check_warns_about_held_back_lines_and_lets_the_rest_through(connector: Connector) -> None:
    settings = load_settings()
    outcomes = run_cycle(settings, open_instance(settings), push=True)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    instance = dg.DagsterInstance.get()
    for outcome in outcomes:
        if outcome.job != "sync_legal_entity":  # reference data and invoice runs have no PO-line checks
            continue
        check = _evaluations(instance, outcome.run_id)["lines_reference_active_accounts"]
        held_count = check.metadata["held_back"].value
        plan_meta = outcome.materializations["plan/sn_shop_purchase_order_line_changes"]
        assert held_count == plan_meta["rows_held_back"] > 0
        assert check.metadata["violations_in_push"].value == 0
        # Held-back lines make the check a warning (the rest is pushed), never an error that blocks the push.
        assert not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert outcome.materializations["servicenow/sn_shop_purchase_order_line"]["rows_sent_this_run"] > 0


def test_po_line_check_blocks_the_push_when_a_line_about_to_be_pushed_breaks_the_rule(
        connector: Connector, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plan's own filter is broken (every line passes): the blocking check, which re-reads the reference data
    # and judges the push set itself, must fail with ERROR and keep the lines out of ServiceNow.
    monkeypatch.setattr(plan_module, "split_valid", lambda rows, refs: (rows, rows.head(0)))
    settings = load_settings()
    outcomes = run_cycle(settings, open_instance(settings), push=True, invoices=False)
    instance = dg.DagsterInstance.get()
    invalid = Counter(le.lower() for le, _, _ in _invalid_line_keys(connector))
    assert all(invalid[le] for le in settings.legal_entities)
    for outcome in (o for o in outcomes if o.job == "sync_legal_entity"):
        check = _evaluations(instance, outcome.run_id)["lines_reference_active_accounts"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["violations_in_push"].value == invalid[outcome.partition]
        assert not outcome.success
        assert "servicenow/sn_shop_purchase_order_line" not in outcome.materializations  # blocked
        assert outcome.materializations["servicenow/sn_fin_supplier"]["rows_sent_this_run"] > 0  # the rest went on
    assert connector.snow("sn_shop_purchase_order_line") == []


def _evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, object]:
    found = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event and event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            found[data.check_name] = data
    return found


def test_plan_shows_the_diff_and_pushes_nothing(connector: Connector) -> None:
    result = connector.cli("plan")
    assert result.exit_code == 0, result.stderr
    assert "sn_fin_supplier" in result.stdout
    assert connector.snow("sys_import_set_row") == []
    vendors = connector.fno('SELECT lower("dataAreaId") AS le, count(*) AS n FROM "VendorsV2" GROUP BY 1')
    plan = orjson.loads(connector.cli("plan", "--json").stdout)["plan"]
    # Every vendor is an insert in the plan, per legal entity.
    assert {r["legal_entity"]: r["insert"] for r in plan if r["target"] == "sn_fin_supplier"} == {
        v["le"]: v["n"] for v in vendors}


def test_two_syncs_started_at_once_both_complete_without_duplicates(connector: Connector) -> None:
    env = {**os.environ, **connector.env}
    procs = [subprocess.Popen([sys.executable, "-m", "d365_snow_assets.cli", "sync", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    suppliers = connector.snow("sn_fin_supplier", "erp_source=D365FO")
    counts = Counter((s["legal_entity"], s["supplier_code"]) for s in suppliers)
    assert counts and max(counts.values()) == 1
    assert len(suppliers) == len(connector.fno('SELECT 1 FROM "VendorsV2"'))
