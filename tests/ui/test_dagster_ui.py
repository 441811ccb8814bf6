"""The Dagster UI served from the project, checked over GraphQL and in a real headless browser (issue 6).

Screenshots go to ``test-artifacts/ui/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import pytest

from .conftest import ARTIFACTS
from .test_demo_ui import SENSOR_DAEMON_MISSING

pytestmark = pytest.mark.slow

# The core of the F&O → ServiceNow graph (DESIGN.md §5.1): key → (group, a kind it must carry).
EXPECTED = {
    ("d365", "VendorsV2"): ("d365_extract", "odata"),
    ("d365", "PurchaseOrderHeadersV2"): ("d365_extract", "odata"),
    ("d365", "PurchaseOrderLinesV2"): ("d365_extract", "odata"),
    ("d365", "MainAccounts"): ("d365_extract", "odata"),
    ("plan", "sn_fin_supplier_changes"): ("plan", "duckdb"),
    ("plan", "sn_shop_purchase_order_line_changes"): ("plan", "duckdb"),
    ("servicenow", "sn_fin_supplier"): ("servicenow", "servicenow"),
    ("servicenow", "sn_shop_purchase_order"): ("servicenow", "servicenow"),
    ("servicenow", "sn_shop_purchase_order_line"): ("servicenow", "servicenow"),
}

PUSH_GROUP = quote('group:"servicenow"')  # the lineage page's own selection syntax, in its URL

ASSET_NODES = """{
  workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } }
  assetNodes { assetKey { path } groupName kinds description }
}"""

CHECKS = """query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { isPartitioned assetChecksOrError { ... on AssetChecks { checks { name blocking } } } }
  }
}"""


@contextlib.contextmanager
def _screenshot_on_failure(page, name: str):
    # A timeout alone says nothing about what the page showed instead; the picture does.
    try:
        yield
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}-FAILED.png"), full_page=True)
        raise


def test_graphql_shows_our_assets_groups_kinds_and_checks(webserver):
    data = webserver.graphql(ASSET_NODES)
    [location] = data["workspaceOrError"]["locationEntries"]
    assert location["loadStatus"] == "LOADED"
    nodes = {tuple(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    for key, (group, kind) in EXPECTED.items():
        assert key in nodes, f"{'/'.join(key)} missing from the UI; have {sorted(nodes)}"
        assert nodes[key]["groupName"] == group, key
        assert kind in nodes[key]["kinds"], (key, nodes[key]["kinds"])
        assert nodes[key]["description"], f"{'/'.join(key)} has no description"

    checks = webserver.graphql(CHECKS, {"path": ["plan", "sn_shop_purchase_order_line_changes"]})["assetNodeOrError"]
    found = {c["name"]: c["blocking"] for c in checks["assetChecksOrError"]["checks"]}
    assert found.get("lines_reference_active_accounts") is True  # blocking: bad lines never reach ServiceNow
    assert checks["isPartitioned"] is True  # per legal entity


def test_lineage_page_renders_the_asset_graph(webserver, browser_page):
    page = browser_page
    page.goto(f"{webserver.base}/asset-groups", wait_until="load")
    with _screenshot_on_failure(page, "asset-graph"):
        # With this many assets the global lineage opens with every group collapsed; ⌥E is the graph's own
        # "Expand all groups" (its settings menu), so the picture shows the assets and their lineage.
        page.get_by_text("d365_extract").first.wait_for(state="visible")
        page.keyboard.press("Alt+e")
        # Node labels are the last key component, middle-truncated when long; these short ones render whole. The
        # whole graph is taller than the viewport at the smallest zoom: the extract layer is what shows first.
        for name in ("VendorsV2", "MainAccounts", "Ledgers"):
            page.get_by_text(name, exact=True).first.wait_for(state="visible")
    # The first-visit community modal (NUX) must not cover the graph (dagster.yaml nux: enabled: false).
    assert page.get_by_text("Join the Dagster community").count() == 0
    page.wait_for_timeout(1500)  # let the layout animation settle before the picture
    _picture(page, "asset-graph.png")

    # The push layer, as the lineage of its own group (labels are the ServiceNow target tables).
    page.goto(f"{webserver.base}/asset-groups~{PUSH_GROUP}/", wait_until="load")
    with _screenshot_on_failure(page, "asset-graph-servicenow"):
        for name in ("sn_fin_supplier", "cmn_cost_center", "sn_fin_gl_account"):
            page.get_by_text(name, exact=True).first.wait_for(state="visible")
    page.wait_for_timeout(1500)
    _picture(page, "asset-graph-servicenow.png")


def _picture(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    assert (ARTIFACTS / name).stat().st_size > 10_000


def test_asset_page_renders(webserver, browser_page):
    page = browser_page
    page.goto(f"{webserver.base}/assets/servicenow/sn_fin_supplier", wait_until="load")
    page.get_by_text("sn_fin_supplier").first.wait_for(state="visible")
    page.get_by_text("Overview").first.wait_for(state="visible")
    page.wait_for_timeout(2000)  # materialization metadata and check results load after the shell
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "asset-sn_fin_supplier.png"), full_page=True)

    page.goto(f"{webserver.base}/assets/plan/sn_shop_purchase_order_line_changes?view=checks", wait_until="load")
    page.get_by_text("lines_reference_active_accounts").first.wait_for(state="visible")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "asset-plan-po-line-checks.png"), full_page=True)


# What every push materialization carries, zeros included (defs/snow_sync/assets.py push_metadata).
PUSH_NUMBERS = {"rows_sent_this_run", "deactivations_sent", "inserted", "updated", "ignored", "skipped", "errors",
                "held_back"}

MATERIALIZATIONS = """query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 10) {
      runId metadataEntries { __typename label ... on IntMetadataEntry { intValue } ... on UrlMetadataEntry { url }
                              ... on MarkdownMetadataEntry { mdStr } } } }
  }
}"""


def test_every_push_materialization_has_the_same_numbers_and_links_its_audit(webserver, synced_home):
    data = webserver.graphql(MATERIALIZATIONS, {"path": ["servicenow", "sn_fin_supplier"]})
    events = data["assetOrError"]["assetMaterializations"]
    runs = [next(r["run_id"] for r in cycle["runs"] if r["job"] == "sync_reference_data")
            for cycle in synced_home.cycles]
    assert [e["runId"] for e in events] == runs[::-1]  # one per sync, newest first
    for event in events:
        numbers = {m["label"]: m["intValue"] for m in event["metadataEntries"] if m["__typename"] == "IntMetadataEntry"}
        assert set(numbers) == PUSH_NUMBERS, event["runId"]
        assert "dagster/row_count" not in {m["label"] for m in event["metadataEntries"]}  # not "Row count 0"
        # The audit of the run: its replay command, and the ServiceNow list of the target table.
        entries = {m["label"]: m for m in event["metadataEntries"]}
        assert f"d365-snow replay --run {event['runId']}" in entries["audit"]["mdStr"]
        assert "/sn_fin_supplier_list.do?sysparm_query=sys_updated_on%3E%3D" in entries["servicenow_list"]["url"]
    newest, first = ({m["label"]: m.get("intValue") for m in e["metadataEntries"]} for e in events)
    pushed = synced_home.cycles[0]["pushed"]["sn_fin_supplier"]
    assert first["inserted"] == first["rows_sent_this_run"] == pushed["inserted"] > 0
    assert first["held_back"] == pushed["rejected"] > 0
    assert newest["rows_sent_this_run"] == newest["inserted"] == 0  # nothing changed in F&O: nothing sent
    assert newest["held_back"] == first["held_back"]  # still held back, for the same reason


def test_the_plots_tab_of_a_push_asset_charts_each_number(webserver, browser_page):
    page = browser_page
    page.goto(f"{webserver.base}/assets/servicenow/sn_fin_supplier", wait_until="load")
    with _screenshot_on_failure(page, "asset-sn_fin_supplier-plots"):
        page.get_by_text("rows_sent_this_run", exact=True).first.wait_for(state="visible")  # the metadata table
        page.wait_for_timeout(1000)
        _picture(page, "asset-sn_fin_supplier.png")
        assert page.get_by_text("Row count", exact=True).count() == 0
        page.get_by_role("button", name="Plots").first.click()
        for name in sorted(PUSH_NUMBERS):
            page.get_by_text(name, exact=True).first.wait_for(state="visible")  # each plot's heading
        page.locator("canvas").nth(len(PUSH_NUMBERS) - 1).wait_for(state="visible")  # a chart per number
    page.wait_for_timeout(1500)  # the charts animate in
    _picture(page, "asset-sn_fin_supplier-plots.png")


RUNS_FEED = """{
  runsFeedOrError(limit: 20, view: ROOTS) {
    ... on RunsFeedConnection { results { __typename id runStatus ... on PartitionBackfill { title } } }
  }
}"""

BACKFILL = """query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status isAssetBackfill runs(limit: 50) { runId }
      assetBackfillData { assetBackfillStatuses {
        ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted numPartitionsMaterialized }
        ... on UnpartitionedAssetStatus { assetKey { path } materialized } } } }
  }
}"""


def test_each_sync_is_one_entry_on_the_runs_page_with_its_runs_and_assets(webserver, browser_page, synced_home):
    cycles = {c["cycle"]: c for c in synced_home.cycles}
    feed = webserver.graphql(RUNS_FEED)["runsFeedOrError"]["results"]
    # Two syncs of 7 runs each are two rows, not fourteen "Manually launched" ones.
    assert sorted((e["__typename"], e["id"], e["runStatus"], e.get("title")) for e in feed) == sorted(
        ("PartitionBackfill", cycle, "SUCCESS", "d365-snow sync") for cycle in cycles)
    for cycle, summary in cycles.items():
        backfill = webserver.graphql(BACKFILL, {"id": cycle})["partitionBackfillOrError"]
        assert backfill["status"] == "COMPLETED_SUCCESS" and backfill["isAssetBackfill"]
        assert sorted(r["runId"] for r in backfill["runs"]) == sorted(r["run_id"] for r in summary["runs"])
        statuses = {"/".join(s["assetKey"]["path"]): s for s in backfill["assetBackfillData"]["assetBackfillStatuses"]}
        assert statuses["servicenow/sn_fin_supplier"]["materialized"] is True
        lines = statuses["servicenow/sn_shop_purchase_order_line"]
        assert lines["numPartitionsTargeted"] == lines["numPartitionsMaterialized"] == 3  # every legal entity

    page = browser_page
    page.goto(f"{webserver.base}/runs", wait_until="load")
    with _screenshot_on_failure(page, "runs"):
        for cycle in cycles:
            page.get_by_text(cycle.split("-")[0], exact=True).first.wait_for(state="visible")  # the row's title
        assert page.get_by_text("Backfill", exact=True).count() == 2
        assert page.get_by_text("Manually launched").count() == 0
    _picture(page, "runs.png")
    newest = synced_home.cycles[-1]["cycle"]
    page.goto(f"{webserver.base}/runs/b/{newest}", wait_until="load")
    with _screenshot_on_failure(page, "runs-cycle"):
        page.get_by_text("sn_shop_purchase_order_line").first.wait_for(state="visible")
    page.wait_for_timeout(1000)
    _picture(page, "runs-cycle.png")


def test_without_a_daemon_a_sensor_page_says_it_cannot_run(webserver, browser_page):
    # The control of tests/ui/test_demo_ui.py: a bare webserver (as `demo --ui` started before) warns on every
    # sensor page; `demo --ui` runs `dagster dev`, webserver and daemon, and the warning is gone.
    page = browser_page
    page.goto(f"{webserver.base}/automation", wait_until="load")
    page.get_by_text("fno_poll", exact=True).first.click()
    page.get_by_text(SENSOR_DAEMON_MISSING).first.wait_for(state="visible")
