"""Every reporting command speaks JSON with a stable shape (zeros included, errors too), and the human summary of a
sync explains itself in an 80-column terminal: counts per target and legal entity, reasons with keys to trace,
checks with their legal entity and reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.commands.summary import OUTCOME_ORDER
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer
from d365_snow_assets.warehouse.audit import OUTCOMES

LEGAL_ENTITIES = {"usmf", "demf", "gbsi"}


class Cli:
    def __init__(self, server: SandboxServer, home: Path) -> None:
        self.server = server
        self.env = {**server.env(), "D365SNOW_HOME": str(home), "COLUMNS": "80"}

    def __call__(self, *args: str, **env: str) -> Any:
        return CliRunner().invoke(app, list(args), env={**self.env, **env}, catch_exceptions=False)

    def json(self, *args: str, code: int = 0) -> dict[str, Any]:
        result = self(*args, "--json")
        assert result.exit_code == code, result.output
        return orjson.loads(result.stdout)


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """A sandbox after one sync: its JSON summary, and the CLI pointed at both."""
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small())) as server:
        cli = Cli(server, tmp_path_factory.mktemp("json") / "home")
        yield cli, cli.json("sync")


def test_sync_json_counts_every_outcome_per_target_and_legal_entity(synced):
    cli, summary = synced
    assert summary["ok"] is True and summary["error"] is None
    assert set(OUTCOME_ORDER) == OUTCOMES
    rows = summary["outcomes"]
    assert rows and all(set(OUTCOME_ORDER) <= set(row) for row in rows)  # zeros included
    per_company = {row["legal_entity"] for row in rows if row["target"] == "sn_shop_purchase_order_line"}
    assert per_company == LEGAL_ENTITIES
    lines = cli.server.world.d365.read('SELECT count(*) AS n FROM "PurchaseOrderLinesV2"')[0]["n"]
    assert sum(r["inserted"] + r["rejected"] for r in rows if r["target"] == "sn_shop_purchase_order_line") == lines
    assert set(summary["pushed"]["sn_fin_supplier"]) == {"inserted", "updated", "ignored", "skipped", "rejected",
                                                         "errors"}
    assert set(summary["invoices"]) == {"created", "reused", "posted", "skipped", "rejected", "error",
                                        "retry_next_run"}
    assert summary["log_file"].endswith(".log") and Path(summary["log_file"]).is_file()


def test_held_back_records_are_grouped_by_reason_with_two_keys_to_trace(synced):
    cli, summary = synced
    held = [g for g in summary["reasons"] if g["outcome"] == "rejected"]
    lines = [g for g in held if g["target"] == "sn_shop_purchase_order_line"]
    assert lines and all(1 <= len(g["samples"]) <= 2 and g["count"] >= len(g["samples"]) for g in lines)
    assert sum(g["count"] for g in lines) == sum(r["rejected"] for r in summary["outcomes"]
                                                 if r["target"] == "sn_shop_purchase_order_line")
    sample, reason = lines[0]["samples"][0], lines[0]["reason"]
    trace = cli.json("trace", sample, "--no-live")
    assert trace["ok"] and trace["key"] == sample
    assert [(h["outcome"], h["message"]) for h in trace["history"]] == [("rejected", reason)]


def test_checks_are_named_with_their_legal_entity_and_reason(synced):
    _, summary = synced
    accounts = [c for c in summary["checks"] if c["check"] == "lines_reference_active_accounts"]
    assert {c["legal_entity"] for c in accounts} == LEGAL_ENTITIES
    held = Counter({g["legal_entity"]: 0 for g in summary["reasons"]})
    for g in summary["reasons"]:
        if g["target"] == "sn_shop_purchase_order_line":
            held[g["legal_entity"]] += g["count"]
    assert any(held.values()), "the sandbox seeds lines naming suspended accounts or cost centers"
    for check in accounts:
        if held[check["legal_entity"]]:
            assert check["passed"] is False and check["severity"] == "WARN"
            assert check["description"] == f"{held[check['legal_entity']]} line(s) held back; the others are pushed."
        else:
            assert check["passed"] is True


def test_the_human_summary_fits_80_columns_and_shows_keys_to_trace(synced):
    cli, summary = synced
    result = cli("sync")  # a second cycle: nothing changes, every target still shows with zeros
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "…" not in out
    for target in summary["pushed"]:
        assert target in out  # never cut so that two rows look alike
    assert "held" in out and "back" in out and "USMF: lines_reference_active_accounts (warning)" in out
    # PO lines are held back again by every cycle (invoices were rejected once, in the first one).
    samples = {g["samples"][0] for g in summary["reasons"] if g["target"] == "sn_shop_purchase_order_line"}
    assert any(f"e.g. {sample}" in out for sample in samples), out


def test_plan_json_has_every_count_per_target_and_legal_entity(synced):
    cli, _ = synced
    plan = cli.json("plan")
    assert plan["ok"] is True
    rows = plan["plan"]
    assert all(set(row) == {"target", "legal_entity", "insert", "change", "delete", "held_back", "unchanged"}
               for row in rows)
    lines = {row["legal_entity"]: row for row in rows if row["target"] == "sn_shop_purchase_order_line"}
    assert set(lines) == LEGAL_ENTITIES and all(r["insert"] == r["change"] == 0 for r in lines.values())


def test_trace_of_an_unknown_key_is_a_json_error(synced):
    cli, _ = synced
    result = cli("trace", "D365FO|USMF|no-such-key", "--json")
    assert result.exit_code == 1
    document = orjson.loads(result.stdout)
    assert document["ok"] is False and document["error"]["kind"] == "not_found"
    assert "No audit rows for 'D365FO|USMF|no-such-key'." in document["error"]["message"]


def test_replay_selectors_are_checked_and_results_are_json(synced):
    cli, summary = synced
    both = cli("replay", "--all-failed", "--key", "x")
    assert both.exit_code == 2
    assert "Wrong arguments: Give exactly one of --run, --key, --since or --all-failed to say which failures to " \
           "replay (got --key and --all-failed)." in " ".join(both.stderr.split())
    none = cli("replay", "--json")
    assert none.exit_code == 2 and orjson.loads(none.stdout)["error"]["kind"] == "usage"
    unknown = cli("replay", "--run", "nope")
    assert unknown.exit_code == 2 and "Unknown run 'nope'" in unknown.stderr
    clean = cli.json("replay", "--run", summary["runs"][0]["run_id"])
    assert clean == {"ok": True, "error": None, "replay_run": None, "dry_run": False, "replayed": 0,
                     "outcomes": dict.fromkeys(OUTCOME_ORDER, 0), "decisions": [], "not_replayed": []}


def test_credentials_show_and_ping_json(synced):
    cli, _ = synced
    shown = cli.json("credentials", "show")
    assert shown["ok"] and {c["variable"]: c["source"] for c in shown["credentials"]}["D365SNOW_SNOW_PASSWORD"] == \
        "environment"
    assert "secret" not in orjson.dumps(shown).decode().lower().replace("client_secret", "")
    assert cli.env["D365SNOW_SNOW_PASSWORD"] not in orjson.dumps(shown).decode()
    ping = cli.json("ping")
    assert ping["ok"] and ping["counts"]["fail"] == 0 and ping["counts"]["pass"] == len(ping["checks"])
    assert ping["config"]["path"] is None  # no d365snow.toml where the tests run
