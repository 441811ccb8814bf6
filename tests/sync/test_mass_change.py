"""No mass change from a partial view (DESIGN §7.1), without Dagster: the rule of sync/mass_change.py against a real
DuckDB warehouse, plans built by sync/plan.py, and snapshots that keep the current one on a suspicious extract."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from d365_snow_assets.mapping import MappingContext
from d365_snow_assets.sync.mass_change import (
    Acceptance,
    AcceptanceError,
    extract_suspicion,
    is_mass_change,
    review_deactivations,
    targets_reading,
)
from d365_snow_assets.sync.plan import SyncPlan, build_plan
from d365_snow_assets.sync.targets import SHARED, TARGETS_BY_NAME, SyncTarget
from d365_snow_assets.warehouse import Warehouse, state
from tests.mapping.test_targets import vendor

CENTERS = TARGETS_BY_NAME["cost_centers"]
SUPPLIERS = TARGETS_BY_NAME["suppliers"]
SUPPLIER_LES = TARGETS_BY_NAME["supplier_legal_entities"]
ACCOUNTS = TARGETS_BY_NAME["gl_accounts"]
CENTER_KEYS = ("FinancialDimension", "LegalEntityId", "DimensionValue")
ACCOUNT_KEYS = ("ChartOfAccounts", "MainAccountId")


def _centers(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({"FinancialDimension": ["CostCenter"] * len(pairs), "LegalEntityId": [le for le, _ in pairs],
                         "DimensionValue": [v for _, v in pairs], "Description": [f"Center {v}" for _, v in pairs],
                         "IsSuspended": ["No"] * len(pairs), "ActiveFrom": ["2020-01-01"] * len(pairs),
                         "ActiveTo": ["1900-01-01T00:00:00Z"] * len(pairs), "Owner": [""] * len(pairs)})


def _accounts(count: int) -> pl.DataFrame:
    ids = [f"{600000 + i}" for i in range(count)]
    return pl.DataFrame({"ChartOfAccounts": ["Shared"] * count, "MainAccountId": ids, "Name": ids,
                         "MainAccountType": ["Expense"] * count, "IsSuspended": ["No"] * count,
                         "MainAccountCategory": [""] * count})


def _with_ledgers(wh: Warehouse) -> Warehouse:
    """The ledger the GL-account mapping reads the chart's currencies from."""
    wh.write_snapshot("Ledgers", SHARED, [pl.DataFrame({"LegalEntityId": ["usmf"], "ChartOfAccounts": ["Shared"],
                                                        "AccountingCurrency": ["USD"],
                                                        "ReportingCurrency": ["USD"]})], ("LegalEntityId",))
    return wh


def _pushed(wh: Warehouse, plan: SyncPlan) -> None:
    """What a successful push records: every planned row is now in ServiceNow."""
    frames = [f for f in (plan.diff.to_push, plan.diff.deletions) if f.height]
    with wh.writer() as con:
        state.record_push_results(con, plan.target.mapping().target_table,
                                  pl.concat(frames, how="diagonal_relaxed").with_columns(outcome=pl.lit("inserted")))


def _plan(wh: Warehouse, target: SyncTarget, configured: list[str]) -> SyncPlan:
    return build_plan(target, wh, MappingContext(), legal_entity=None, configured_legal_entities=configured)


def test_the_rule_is_more_than_ten_and_more_than_five_percent() -> None:
    assert not is_mass_change(10, 100)  # not more than 10
    assert is_mass_change(11, 100)
    assert not is_mass_change(11, 220)  # exactly 5 %
    assert is_mass_change(12, 220)
    assert not is_mass_change(500, 10_001)
    assert is_mass_change(11, 0)


def test_an_empty_or_far_smaller_extract_is_suspicious_and_a_small_change_is_not() -> None:
    assert extract_suspicion(5, 0) is not None  # the extreme case, even below 10 records
    assert "no rows" in (extract_suspicion(40, 0) or "")
    assert "80 rows where the current snapshot has 100" in (extract_suspicion(100, 80) or "")
    assert extract_suspicion(100, 95) is None
    assert extract_suspicion(100, 89) is not None
    assert extract_suspicion(100, 140) is None
    assert extract_suspicion(0, 0) is None


def test_narrowing_the_legal_entities_deactivates_none_of_the_others_shared_cost_centers(tmp_path) -> None:
    wh = Warehouse(tmp_path / "wh.duckdb")
    centers = [("", "CC-SHARED")] + [(le, f"CC-{le}-{i}") for le in ("usmf", "demf", "gbsi") for i in range(20)]
    wh.write_snapshot("FinancialDimensionValues", SHARED, [_centers(centers)], CENTER_KEYS)
    first = _plan(wh, CENTERS, ["usmf", "demf", "gbsi"])
    assert first.diff.inserts.height == 61
    _pushed(wh, first)

    narrowed = _plan(wh, CENTERS, ["usmf"])

    assert narrowed.scope == ("", "USMF")
    assert narrowed.diff.deletions.height == 0 and narrowed.diff.to_push.height == 0
    # Gone within the scope still means gone: a USMF cost center F&O dropped is deactivated.
    wh.write_snapshot("FinancialDimensionValues", SHARED, [_centers([c for c in centers if c[1] != "CC-usmf-0"])],
                      CENTER_KEYS)
    [gone] = _plan(wh, CENTERS, ["usmf"]).diff.deletions.get_column("_business_key").to_list()
    assert gone.endswith("CC-usmf-0") and "USMF" in gone


def test_narrowing_the_legal_entities_changes_no_shared_supplier(tmp_path) -> None:
    """A supplier is one record for every company: its status, companies and party check keep counting a company
    that is no longer configured (its last snapshot), so narrowing changes, adds and deactivates none."""
    wh = Warehouse(tmp_path / "wh.duckdb")
    usmf = [vendor(VendorAccountNumber="V-1", OnHoldStatus="All"),  # usable in DEMF only
            vendor(VendorAccountNumber="V-2", VendorPartyNumber="P-US"),  # another party in DEMF: held back
            vendor(VendorAccountNumber="V-3")]
    demf = [vendor(dataAreaId="demf", VendorAccountNumber="V-1"),
            vendor(dataAreaId="demf", VendorAccountNumber="V-2", VendorPartyNumber="P-DE"),
            vendor(dataAreaId="demf", VendorAccountNumber="V-4")]
    for le, rows in (("usmf", usmf), ("demf", demf)):
        wh.write_snapshot("VendorsV2", le, [pl.DataFrame(rows)], ("dataAreaId", "VendorAccountNumber"))

    def plan(target: SyncTarget, configured: list[str]) -> SyncPlan:
        ctx = MappingContext(legal_entities=tuple(configured))
        return build_plan(target, wh, ctx, legal_entity=None, configured_legal_entities=configured)

    both = plan(SUPPLIERS, ["usmf", "demf"])
    assert both.diff.inserts.height == 3 and both.held_back.height == 1
    assert dict(both.diff.inserts.select("ERP company code", "Status").iter_rows()) == {
        "V-1": "active", "V-3": "active", "V-4": "active"}
    _pushed(wh, both)
    _pushed(wh, plan(SUPPLIER_LES, ["usmf", "demf"]))

    for target in (SUPPLIERS, SUPPLIER_LES):
        narrowed = plan(target, ["usmf"])
        assert narrowed.diff.inserts.height == narrowed.diff.changes.height == narrowed.diff.deletions.height == 0
        held = narrowed.held_back.get_column("_business_key")
        assert held.len() == 1 and "V-2" in held[0]


def test_a_plan_deactivating_a_mass_of_records_is_blocked_unless_accepted(tmp_path) -> None:
    wh = _with_ledgers(Warehouse(tmp_path / "wh.duckdb"))
    wh.write_snapshot("MainAccounts", SHARED, [_accounts(100)], ACCOUNT_KEYS)
    _pushed(wh, _plan(wh, ACCOUNTS, ["usmf"]))

    wh.write_snapshot("MainAccounts", SHARED, [_accounts(90)], ACCOUNT_KEYS)
    small = review_deactivations(_plan(wh, ACCOUNTS, ["usmf"]), wh, "D365FO")
    assert (small.deactivations, small.active, small.mass, small.blocked) == (10, 100, False, False)

    wh.write_snapshot("MainAccounts", SHARED, [_accounts(88)], ACCOUNT_KEYS)
    plan = _plan(wh, ACCOUNTS, ["usmf"])
    review = review_deactivations(plan, wh, "D365FO")
    assert (review.deactivations, review.active, review.blocked, review.accepted) == (12, 100, True, False)
    assert review.share == pytest.approx(0.12)
    assert review.sample == tuple(plan.diff.deletions.get_column("_business_key").to_list())
    assert "--accept-deactivations gl_accounts" in review.sentence()

    at = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    other = Acceptance.of(["cost_centers"], "ops.jane", at)
    assert review_deactivations(plan, wh, "D365FO", other).blocked  # accepting another target changes nothing
    accepted = review_deactivations(plan, wh, "D365FO", Acceptance.of(["GL_Accounts "], "ops.jane", at))
    assert accepted.accepted and not accepted.blocked
    assert accepted.acceptance is not None
    assert accepted.acceptance.note == "mass deactivation accepted by ops.jane at 2026-12-06T09:30:00+00:00"
    assert accepted.acceptance.tags() == {"d365snow/accept_deactivations": "gl_accounts",
                                          "d365snow/accepted_by": "ops.jane",
                                          "d365snow/accepted_at": "2026-12-06T09:30:00+00:00"}


def test_an_acceptance_names_known_targets_and_who_accepts() -> None:
    assert Acceptance.of([], "ops.jane") is None
    with pytest.raises(AcceptanceError, match="names no target gl_acount"):
        Acceptance.of(["gl_acount"], "ops.jane")
    with pytest.raises(AcceptanceError, match="who accepts"):
        Acceptance.of(["gl_accounts"], " ")
    assert targets_reading("MainAccounts") == ("gl_accounts",)
    assert set(targets_reading("PurchaseOrderLinesV2")) == {"purchase_orders", "purchase_order_lines"}


def test_a_suspicious_extract_does_not_replace_the_current_snapshot(tmp_path) -> None:
    wh = Warehouse(tmp_path / "wh.duckdb")
    kept = wh.write_snapshot("MainAccounts", SHARED, [_accounts(40)], ACCOUNT_KEYS, sane=extract_suspicion)
    assert kept.held_back is None  # a first load has nothing to compare with

    empty = wh.write_snapshot("MainAccounts", SHARED, [], ACCOUNT_KEYS, sane=extract_suspicion)
    assert empty.held_back and "no rows" in empty.held_back and empty.offered_rows == 0
    assert empty.snapshot_id == kept.snapshot_id
    assert wh.read_snapshot("MainAccounts").height == 40

    fewer = wh.write_snapshot("MainAccounts", SHARED, [_accounts(20)], ACCOUNT_KEYS, sane=extract_suspicion)
    assert fewer.held_back and fewer.offered_rows == 20 and wh.read_snapshot("MainAccounts").height == 40

    sane = wh.write_snapshot("MainAccounts", SHARED, [_accounts(39)], ACCOUNT_KEYS, sane=extract_suspicion)
    assert sane.held_back is None and wh.read_snapshot("MainAccounts").height == 39
    # Accepted (no objection passed): the empty answer becomes current.
    assert wh.write_snapshot("MainAccounts", SHARED, [], ACCOUNT_KEYS).held_back is None
    assert wh.read_snapshot("MainAccounts").height == 0
