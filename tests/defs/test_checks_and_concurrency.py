"""Asset checks as Dagster reports them, `plan`, and two sync processes started at once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import dagster as dg
import orjson
import polars as pl
import pytest

from d365_snow_assets.commands.runs import open_instance, run_cycle
from d365_snow_assets.settings import load_settings
from d365_snow_assets.sync import plan as plan_module
from tests.chaos.endstate import conflicting_accounts, expected_keys, invalid_line_keys, snow_keys
from tests.snow_view import SnowView

from .conftest import Connector

# An account MainAccounts does not have: a line naming it is held back (DESIGN §5.1).
UNKNOWN_ACCOUNT = "999999"


def _hold_back_a_line_in_every_company(connector: Connector) -> None:
    """Give every configured company a PO line the plan must hold back, whatever the seeded data happens to have
    (on the small data set some companies have none), on an order no planned invoice uses (an invoice on a line
    that is never pushed would never appear)."""
    world = connector.server.world
    assert not world.d365.read('SELECT 1 FROM "MainAccounts" WHERE "MainAccountId" = ?', [UNKNOWN_ACCOUNT])
    invoiced = {(p.legal_entity.lower(), p.po) for p in world.snow.apo.plans}
    for le in load_settings().legal_entities:
        line = next(r for r in world.d365.read(
            'SELECT "PurchaseOrderNumber", "LineNumber" FROM "PurchaseOrderLinesV2" WHERE "dataAreaId" = ? '
            'ORDER BY 1, 2', [le]) if (le, r["PurchaseOrderNumber"]) not in invoiced)
        world.d365.admin_update("PurchaseOrderLinesV2", {"dataAreaId": le, **line},
                                {"MainAccountIdDisplayValue": UNKNOWN_ACCOUNT})


def test_po_line_check_warns_about_held_back_lines_and_lets_the_rest_through(connector: Connector) -> None:
    _hold_back_a_line_in_every_company(connector)
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
    # (The stub answers as split_valid does: the held-back frame carries its `_reason` column, empty here.)
    monkeypatch.setattr(plan_module, "split_valid", lambda rows, refs, **_columns: (
        rows, rows.head(0).with_columns(pl.lit("", dtype=pl.String).alias("_reason"))))
    _hold_back_a_line_in_every_company(connector)
    settings = load_settings()
    outcomes = run_cycle(settings, open_instance(settings), push=True, invoices=False)
    instance = dg.DagsterInstance.get()
    invalid = Counter(le.lower() for le, _, _ in invalid_line_keys(connector))
    assert all(invalid[le] for le in settings.legal_entities)
    for outcome in (o for o in outcomes if o.job == "sync_legal_entity"):
        check = _evaluations(instance, outcome.run_id)["lines_reference_active_accounts"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["violations_in_push"].value == invalid[outcome.partition]
        assert not outcome.success
        assert "servicenow/sn_shop_purchase_order_line" not in outcome.materializations  # blocked
        # The rest of the company's run went on (suppliers are reference data, pushed by another run)
        assert outcome.materializations["servicenow/sn_shop_purchase_order"]["rows_sent_this_run"] > 0
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
    plan = orjson.loads(connector.cli("plan", "--json").stdout)["plan"]
    # Every supplier is an insert in the plan: one per vendor account across the configured companies (a
    # ServiceNow supplier is global, so the plan is not per legal entity), an account naming two parties held back.
    suppliers = [r for r in plan if r["target"] == "sn_fin_supplier"]
    assert [(r["legal_entity"], r["insert"], r["held_back"]) for r in suppliers] == [
        (None, len(expected_keys(connector)["sn_fin_supplier"]), len(conflicting_accounts(connector)))]
    # Per-company targets: every order of each company is an insert in that company's plan.
    orders = connector.fno('SELECT lower("dataAreaId") AS le, count(*) AS n FROM "PurchaseOrderHeadersV2" '
                           'GROUP BY 1')
    assert {r["legal_entity"]: r["insert"] for r in plan if r["target"] == "sn_shop_purchase_order"} == {
        o["le"]: o["n"] for o in orders}
    assert connector.snow("sys_import_set_row") == []


def test_two_syncs_started_at_once_both_complete_without_duplicates(connector: Connector) -> None:
    env = {**os.environ, **connector.env}
    procs = [subprocess.Popen([sys.executable, "-m", "d365_snow_assets.cli", "sync", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    # One supplier per vendor account (key: ERP source + ERP company code), none twice, none missing.
    counts = Counter(key for key, _row in snow_keys(SnowView(connector.server.world.snow), "sn_fin_supplier"))
    assert counts and max(counts.values()) == 1
    assert counts == expected_keys(connector)["sn_fin_supplier"]
