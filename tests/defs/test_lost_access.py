"""No mass change from a partial view (DESIGN §7.1) through `d365-snow sync` on the sandbox: F&O answering an entity
with no rows or far fewer (lost read access), a narrowed D365SNOW_LEGAL_ENTITIES, and a plan that would deactivate a
mass of records. Nothing is deactivated without acceptance, the sync exits 1, the next normal cycle is clean, and an
accepted mass change is recorded with who and when in the run's tags and the audit."""

from __future__ import annotations

import getpass
from typing import Any

import orjson
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.settings import load_settings
from d365_snow_assets.warehouse import Warehouse
from tests.snow_view import SnowView

from .conftest import Connector

GL = "sn_fin_gl_account"
LINES = "sn_shop_purchase_order_line"
SUPPLIER_LE = "sn_fin_supplier_detail"
COST_CENTER = "cmn_cost_center"


def _sync(connector: Connector, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["sync", "--json", *args], env=env or connector.env, catch_exceptions=False)
    assert result.stdout, result.stderr
    return result.exit_code, orjson.loads(result.stdout)


def _view(connector: Connector) -> SnowView:
    return SnowView(connector.server.world.snow)


def _imports(connector: Connector) -> int:
    return len(connector.snow("sys_import_set_row"))


def _accounts(connector: Connector) -> dict[str, int]:
    view = _view(connector)
    rows = view.ours(GL, "ERP source")
    return {"active": sum(view.get(GL, r, "Inactive") != "true" for r in rows), "all": len(rows)}


def _of_company(connector: Connector, table: str, company: str, *company_path: str) -> dict[str, dict[str, str]]:
    """The connector's rows of ``table`` that belong to ``company`` (at ``company_path``), whole, by sys_id."""
    view = _view(connector)
    return {r["sys_id"]: r for r in view.ours(table, "ERP source" if table != COST_CENTER else "ERP Source")
            if view.get(table, r, *company_path) == company}


def _run_tags(run_id: str) -> dict[str, str]:
    run = open_instance(load_settings()).get_run_by_id(run_id)
    assert run is not None
    return dict(run.tags)


def _audit(connector: Connector, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with Warehouse(connector.home / "warehouse.duckdb").reader() as con:
        return con.execute(sql, params).fetchall()


def test_main_accounts_answered_empty_deactivate_nothing_until_the_operator_accepts(connector: Connector) -> None:
    baseline = connector.sync()
    accounts = _accounts(connector)
    assert accounts["active"] > 10
    held_back = baseline["pushed"][LINES]["rejected"]
    imports = _imports(connector)
    world = connector.server.world

    world.d365.withhold_reads("MainAccounts", 0)  # the integration user lost its role on main accounts
    code, summary = _sync(connector)

    assert code == 1
    assert "d365/MainAccounts:extract_looks_complete" in summary["failed_checks"]
    assert _accounts(connector) == accounts and _imports(connector) == imports
    # Validation kept the last complete snapshot: no PO line was held back because its account "vanished".
    assert summary["pushed"][LINES]["rejected"] == held_back
    assert Warehouse(connector.home / "warehouse.duckdb").read_snapshot("MainAccounts").height == accounts["all"]

    world.d365.withhold_reads("MainAccounts", 100)
    code, summary = _sync(connector)
    assert code == 0 and not [c for c in summary["failed_checks"] if "lines_reference" not in c]
    assert _imports(connector) == imports

    # F&O really dropped them (here: the same empty answer), and the operator says so.
    world.d365.withhold_reads("MainAccounts", 0)
    code, summary = _sync(connector, "--accept-deactivations", "gl_accounts")
    assert code == 0, summary
    assert _accounts(connector) == {"active": 0, "all": accounts["all"]}
    reference_run = next(r["run_id"] for r in summary["runs"] if r["job"] == "sync_reference_data")
    tags = _run_tags(reference_run)
    assert tags["d365snow/accept_deactivations"] == "gl_accounts"
    assert tags["d365snow/accepted_by"] == getpass.getuser() and tags["d365snow/accepted_at"]
    notes = _audit(connector, "SELECT outcome, message FROM audit WHERE run_id = ? AND entity = ?",
                   [reference_run, GL])
    assert len(notes) == accounts["all"]
    assert {outcome for outcome, _ in notes} <= {"updated", "ignored"}  # ignored: suspended, inactive already
    assert all(f"mass deactivation accepted by {getpass.getuser()} at {tags['d365snow/accepted_at']}" in message
               for _, message in notes)


def test_vendors_of_one_entity_answered_far_fewer_deactivate_nothing(connector: Connector) -> None:
    connector.sync()
    usmf = _of_company(connector, SUPPLIER_LE, "USMF", "Legal entity", "ERP company code")
    suppliers = {r["sys_id"]: r for r in _view(connector).ours("sn_fin_supplier", "ERP source")}
    assert usmf
    imports = _imports(connector)
    world = connector.server.world

    world.d365.withhold_reads("VendorsV2", 50, "usmf")
    code, summary = _sync(connector)

    assert code == 1
    assert "d365/VendorsV2:extract_looks_complete" in summary["failed_checks"]
    assert _of_company(connector, SUPPLIER_LE, "USMF", "Legal entity", "ERP company code") == usmf
    assert {r["sys_id"]: r for r in _view(connector).ours("sn_fin_supplier", "ERP source")} == suppliers
    assert _imports(connector) == imports

    world.d365.withhold_reads("VendorsV2", 100, "usmf")
    code, summary = _sync(connector)
    assert code == 0 and _imports(connector) == imports


COMPANY_PATH = {COST_CENTER: ("Legal entity", "ERP company code"), SUPPLIER_LE: ("Legal entity", "ERP company code"),
                LINES: ("Purchase order", "Legal entity", "ERP company code")}


def test_narrowing_the_legal_entities_deactivates_nothing_of_the_others(connector: Connector) -> None:
    connector.sync()

    def others() -> dict[tuple[str, str], dict[str, dict[str, str]]]:
        return {(table, le): _of_company(connector, table, le, *path) for le in ("DEMF", "GBSI")
                for table, path in COMPANY_PATH.items()}

    def suppliers() -> dict[str, dict[str, str]]:
        # Shared by every company: an account active in DEMF stays active, and one held back because DEMF names
        # another party stays held back, whatever USMF alone would say.
        return {r["sys_id"]: r for r in _view(connector).ours("sn_fin_supplier", "ERP source")}

    before, shared = others(), suppliers()
    assert all(before.values())

    code, summary = _sync(connector, env={**connector.env, "D365SNOW_LEGAL_ENTITIES": "usmf"})

    assert code == 0, summary
    assert others() == before
    assert suppliers() == shared


def test_a_plan_that_would_deactivate_a_mass_of_lines_is_held_until_accepted(connector: Connector) -> None:
    connector.sync()
    view = _view(connector)

    def usmf_lines() -> dict[tuple[str, str], str]:
        """(PO number, line number) → Status of the USMF lines in ServiceNow."""
        return {(view.get(LINES, r, "Purchase order", "ERP number"), view.get(LINES, r, "ERP line number")):
                view.get(LINES, r, "Status") for r in view.ours(LINES, "ERP source")
                if view.get(LINES, r, "Purchase order", "Legal entity", "ERP company code") == "USMF"}

    pushed = usmf_lines()
    moved = sorted(pushed, key=lambda k: (k[0], int(k[1])))[:20]
    assert len(pushed) * 0.05 < len(moved)
    # F&O renumbers 20 lines: the extract has as many rows as before, but 20 keys are gone and 20 are new.
    with connector.server.world.d365.transaction() as con:
        for po, line in moved:
            con.execute('UPDATE "PurchaseOrderLinesV2" SET "LineNumber" = "LineNumber" + 1000 WHERE "dataAreaId" = '
                        "'usmf' AND \"PurchaseOrderNumber\" = ? AND \"LineNumber\" = ?", [po, int(line)])
    imports = _imports(connector)

    code, summary = _sync(connector)

    assert code == 1
    assert "plan/sn_shop_purchase_order_line_changes:no_mass_deactivation" in summary["failed_checks"]
    assert summary["pushed"].get(LINES, {}).get("inserted", 0) == 0
    assert usmf_lines() == pushed
    assert _imports(connector) == imports  # nothing else changed, and the blocked plan sent nothing

    code, summary = _sync(connector, "--accept-deactivations", "purchase_order_lines")
    assert code == 0, summary
    after = usmf_lines()
    canceled_before = {key for key, status in pushed.items() if status == "Canceled"}
    assert {key for key, status in after.items() if status == "Canceled"} - canceled_before == set(moved)
    assert {(po, str(int(line) + 1000)) for po, line in moved} <= set(after)
    usmf_run = next(r["run_id"] for r in summary["runs"] if r["job"] == "sync_legal_entity"
                    and r["legal_entity"] == "usmf")
    assert _run_tags(usmf_run)["d365snow/accept_deactivations"] == "purchase_order_lines"
    notes = _audit(connector, "SELECT message FROM audit WHERE run_id = ? AND entity = ? AND message LIKE ?",
                   [usmf_run, LINES, "mass deactivation accepted by%"])
    assert len(notes) == len(moved)
