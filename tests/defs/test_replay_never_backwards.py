"""Replay never moves a record backwards (DESIGN §7.1): a failed push is re-sent only while it is still F&O's state;
otherwise F&O's newer state is sent, or nothing, with the reason. `--dry-run` shows the decision; the CLI replay is a
run of the Dagster job `replay_failed`. Through the CLI against the sandbox."""

from __future__ import annotations

from typing import Any

import dagster as dg

from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.settings import load_settings
from d365_snow_assets.warehouse import Warehouse
from tests.snow_view import SnowView

from .conftest import Connector

CENTERS = "cmn_cost_center"
STAGING = "sn_fcms_intg_imp_cost_center"


def _usmf_centers(connector: Connector) -> dict[str, str]:
    """Code → Name of the connector's USMF cost centers in ServiceNow."""
    view = SnowView(connector.server.world.snow)
    return {view.get(CENTERS, r, "Code"): view.get(CENTERS, r, "Name") for r in view.ours(CENTERS, "ERP Source")
            if view.get(CENTERS, r, "Legal entity", "ERP company code") == "USMF"}


def _name(connector: Connector, code: str) -> str:
    return _usmf_centers(connector)[code]


def _imports(connector: Connector) -> int:
    return len(connector.snow("sys_import_set_row"))


def test_replay_sends_only_what_f_and_o_still_says(connector: Connector) -> None:
    connector.sync()
    world = connector.server.world
    code = sorted(_usmf_centers(connector))[0]
    original = _name(connector, code)

    world.d365.update_cost_center(code, {"Description": "Renamed once"}, legal_entity="usmf")
    connector.server.set_faults("snow", FaultProfile(share_429=1.0, retry_after_s=0, methods=["POST"],
                                                     path_contains=f"/import/{STAGING}"))
    assert connector.cli("sync", "--json").exit_code == 1  # the rename could not be sent
    connector.server.clear_faults()
    [failed] = Warehouse(connector.home / "warehouse.duckdb").failed_records().rows(named=True)
    assert failed["target"] == STAGING and "Renamed once" in failed["payload"]

    # F&O goes back to the name ServiceNow still has: the failed rename is out of date.
    world.d365.update_cost_center(code, {"Description": original}, legal_entity="usmf")
    assert connector.sync()["ok"]
    imports = _imports(connector)
    result = connector.cli("replay", "--all-failed")
    assert result.exit_code == 0, result.stderr
    assert _name(connector, code) == original
    assert _imports(connector) == imports
    assert "skip" in result.stdout and "out of date" in " ".join(result.stdout.split())

    # F&O renames it again and `plan` reads it (extract, no push): replay re-derives from that snapshot and sends
    # F&O's current name, never the failed one; a dry run only shows that.
    world.d365.update_cost_center(code, {"Description": "Renamed twice"}, legal_entity="usmf")
    assert connector.cli("plan").exit_code == 0
    dry = connector.cli("replay", "--all-failed", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "rederive" in dry.stdout and _imports(connector) == imports
    result = connector.cli("replay", "--run", failed["run_id"])
    assert result.exit_code == 0, result.stderr
    assert _name(connector, code) == "Renamed twice"
    assert _imports(connector) == imports + 1

    runs: list[Any] = open_instance(load_settings()).get_runs(dg.RunsFilter(job_name="replay_failed"))
    assert len(runs) == 3 and all(r.tags.get("d365snow/launched_by") == "cli" for r in runs)
    assert Warehouse(connector.home / "warehouse.duckdb").failed_records().height == 0
    again = connector.cli("replay", "--all-failed")
    assert again.exit_code == 0 and "Nothing to replay" in again.stderr
