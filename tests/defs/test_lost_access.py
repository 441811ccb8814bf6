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

from .conftest import Connector

GL = "sn_fin_gl_account"
LINES = "sn_shop_purchase_order_line"


def _sync(connector: Connector, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["sync", "--json", *args], env=env or connector.env, catch_exceptions=False)
    assert result.stdout, result.stderr
    return result.exit_code, orjson.loads(result.stdout)


def _imports(connector: Connector) -> int:
    return len(connector.snow("sys_import_set_row"))


def _active(connector: Connector, table: str, query: str = "") -> dict[str, int]:
    rows = connector.snow(table, "erp_source=D365FO" + (f"^{query}" if query else ""))
    return {"active": sum(r.get("active") == "true" for r in rows), "all": len(rows)}


def _run_tags(run_id: str) -> dict[str, str]:
    run = open_instance(load_settings()).get_run_by_id(run_id)
    assert run is not None
    return dict(run.tags)


def _audit(connector: Connector, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with Warehouse(connector.home / "warehouse.duckdb").reader() as con:
        return con.execute(sql, params).fetchall()


def test_main_accounts_answered_empty_deactivate_nothing_until_the_operator_accepts(connector: Connector) -> None:
    baseline = connector.sync()
    accounts = _active(connector, GL)
    assert accounts["active"] > 10
    held_back = baseline["pushed"][LINES]["rejected"]
    imports = _imports(connector)
    world = connector.server.world

    world.d365.withhold_reads("MainAccounts", 0)  # the integration user lost its role on main accounts
    code, summary = _sync(connector)

    assert code == 1
    assert "d365/MainAccounts:extract_looks_complete" in summary["failed_checks"]
    assert _active(connector, GL) == accounts and _imports(connector) == imports
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
    assert _active(connector, GL) == {"active": 0, "all": accounts["all"]}
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
    suppliers = _active(connector, "sn_fin_supplier", "legal_entity=USMF")
    imports = _imports(connector)
    world = connector.server.world

    world.d365.withhold_reads("VendorsV2", 50, "usmf")
    code, summary = _sync(connector)

    assert code == 1
    assert "d365/VendorsV2:extract_looks_complete" in summary["failed_checks"]
    assert _active(connector, "sn_fin_supplier", "legal_entity=USMF") == suppliers
    assert _imports(connector) == imports
    usmf = [r for r in summary["runs"] if r["partition"] == "usmf" and r["job"] == "sync_legal_entity"]
    assert [r["success"] for r in usmf] == [False]
    assert all(r["success"] for r in summary["runs"] if r["partition"] in ("demf", "gbsi"))

    world.d365.withhold_reads("VendorsV2", 100, "usmf")
    code, summary = _sync(connector)
    assert code == 0 and _imports(connector) == imports


def test_narrowing_the_legal_entities_deactivates_nothing_of_the_others(connector: Connector) -> None:
    connector.sync()
    centers = {le: _active(connector, "cmn_cost_center", f"legal_entity={le}") for le in ("DEMF", "GBSI")}
    suppliers = _active(connector, "sn_fin_supplier", "legal_entity=DEMF")
    assert all(c["active"] > 0 for c in centers.values())
    imports = _imports(connector)

    code, summary = _sync(connector, env={**connector.env, "D365SNOW_LEGAL_ENTITIES": "usmf"})

    assert code == 0, summary
    assert {le: _active(connector, "cmn_cost_center", f"legal_entity={le}") for le in centers} == centers
    assert _active(connector, "sn_fin_supplier", "legal_entity=DEMF") == suppliers
    assert _imports(connector) == imports


def test_a_plan_that_would_deactivate_a_mass_of_lines_is_held_until_accepted(connector: Connector) -> None:
    connector.sync()
    pushed = sorted(connector.snow(LINES, "erp_source=D365FO^legal_entity=USMF"),
                    key=lambda r: (r["erp_po_number"], int(r["erp_po_line_number"])))
    moved = pushed[:20]
    assert len(pushed) * 0.05 < len(moved)
    # F&O renumbers 20 lines: the extract has as many rows as before, but 20 keys are gone and 20 are new.
    with connector.server.world.d365.transaction() as con:
        for line in moved:
            con.execute('UPDATE "PurchaseOrderLinesV2" SET "LineNumber" = "LineNumber" + 1000 WHERE "dataAreaId" = '
                        "'usmf' AND \"PurchaseOrderNumber\" = ? AND \"LineNumber\" = ?",
                        [line["erp_po_number"], int(line["erp_po_line_number"])])
    imports = _imports(connector)

    code, summary = _sync(connector)

    assert code == 1
    assert "plan/sn_shop_purchase_order_line_changes:no_mass_deactivation" in summary["failed_checks"]
    assert summary["pushed"].get(LINES, {}).get("inserted", 0) == 0
    lines = connector.snow(LINES, "erp_source=D365FO^legal_entity=USMF")
    assert {r["line_status"] for r in lines} == {r["line_status"] for r in pushed} and len(lines) == len(pushed)
    assert _imports(connector) == imports  # nothing else changed, and the blocked plan sent nothing

    code, summary = _sync(connector, "--accept-deactivations", "purchase_order_lines")
    assert code == 0, summary
    canceled = {(r["erp_po_number"], r["erp_po_line_number"]) for r in
                connector.snow(LINES, "erp_source=D365FO^legal_entity=USMF^line_status=Canceled")}
    assert canceled == {(r["erp_po_number"], r["erp_po_line_number"]) for r in moved}
    usmf_run = next(r["run_id"] for r in summary["runs"] if r["job"] == "sync_legal_entity"
                    and r["partition"] == "usmf")
    assert _run_tags(usmf_run)["d365snow/accept_deactivations"] == "purchase_order_lines"
    notes = _audit(connector, "SELECT message FROM audit WHERE run_id = ? AND entity = ? AND message LIKE ?",
                   [usmf_run, LINES, "mass deactivation accepted by%"])
    assert len(notes) == len(moved)
