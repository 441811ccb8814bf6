"""`d365-snow demo --small` as a newcomer reads it: each cycle's counts add up to the data set, every progress line
says which part of the cycle it was, every outcome word is explained, and no figure from elsewhere (the month-end
reconciliation, audit totals of both cycles) is mixed in."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.sandbox.config import SandboxDataSize

pytestmark = pytest.mark.slow

SIZE = SandboxDataSize.small()
LEGAL_ENTITIES = [le.upper() for le in SIZE.legal_entities]
PUSH_HEADERS = ["inserted", "updated", "ignored", "skipped", "held back", "errors"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    home = tmp_path_factory.mktemp("demo") / "home"
    with mock.patch.dict(os.environ):  # the demo sets D365SNOW_* for its own runs; later tests must not see them
        result = CliRunner().invoke(app, ["demo", "--small", "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output, home


@pytest.fixture(scope="module")
def demo_output(demo: tuple[str, Path]) -> str:
    return demo[0]


def _cycles(output: str) -> tuple[str, str]:
    first = output.index("Cycle 1:")
    second = output.index("Cycle 2:")
    return output[first:second], output[second:]


def _push_table(section: str) -> dict[str, dict[str | None, dict[str, int]]]:
    """The F&O → ServiceNow table: target → legal entity (None: all) → column → count."""
    table = section.split("F&O → ServiceNow: records by the outcome of their last attempt", 1)[1]
    table = table.split("\n \n", 1)[0] if "\n \n" in table else table
    rows: dict[str, dict[str | None, dict[str, int]]] = defaultdict(dict)
    target = None
    for line in table.splitlines():
        numbers = re.findall(r"\s(\d[\d,]*)(?=\s|$)", line)
        whole = re.match(r"^ (\w+) \(all\)", line)
        per_entity = re.match(r"^\s+([A-Z]{4})\s", line)
        if whole and len(numbers) == len(PUSH_HEADERS):
            rows[whole.group(1)][None] = dict(zip(PUSH_HEADERS, (int(n.replace(",", "")) for n in numbers),
                                                  strict=True))
        elif per_entity and target and len(numbers) == len(PUSH_HEADERS):
            rows[target][per_entity.group(1)] = dict(zip(PUSH_HEADERS, (int(n.replace(",", "")) for n in numbers),
                                                         strict=True))
        elif re.match(r"^ (sn_|cmn_)\w+\s*$", line):
            target = line.strip()
        if line.startswith("ServiceNow → F&O"):
            break
    return rows


def test_the_first_cycle_accounts_for_every_record_of_the_data_set_once(demo_output: str) -> None:
    first, _ = _cycles(demo_output)
    table = _push_table(first)
    lines = table["sn_shop_purchase_order_line"]
    orders = table["sn_shop_purchase_order"]
    assert sorted(lines) == sorted(orders) == sorted(LEGAL_ENTITIES)
    # Every PO line and PO of the data set is either in ServiceNow or held back with a reason, exactly once.
    assert sum(c["inserted"] + c["held back"] for c in lines.values()) == SIZE.po_lines
    assert sum(c["inserted"] + c["held back"] for c in orders.values()) == SIZE.purchase_orders
    # A first sync creates records; nothing it reports was "updated" (that came from adding up two cycles).
    assert all(c["updated"] == c["ignored"] == c["errors"] == 0 for t in table.values() for c in t.values())
    assert table["sn_fin_gl_account"][None]["inserted"] == SIZE.main_accounts


def test_the_second_cycle_only_brings_back_what_f_and_o_posted_and_paid(demo_output: str) -> None:
    _, second = _cycles(demo_output)
    posted, paid = map(int, re.search(r"posted (\d+) invoices and paid (\d+) of them", demo_output).groups())
    table = _push_table(second)
    assert set(table) == {"sn_shop_invoice_payment_detail", "sn_spend_intg_outbound_invoice"}
    assert sum(c["updated"] for c in table["sn_spend_intg_outbound_invoice"].values()) == posted
    assert sum(c["inserted"] for c in table["sn_shop_invoice_payment_detail"].values()) == paid


def test_every_progress_line_names_its_phase_and_every_outcome_word_is_explained(demo_output: str) -> None:
    progress = [line for line in demo_output.splitlines() if line.startswith("✓ ")]
    phases = [line.split(" (")[0].removeprefix("✓ ") for line in progress[1:] if not line.startswith("✓ F&O's")]
    assert phases == [
        "All companies: GL accounts, cost centers, suppliers F&O → ServiceNow",
        *(f"{le}: purchase orders and their lines F&O → ServiceNow" for le in LEGAL_ENTITIES),
        *(f"{le}: approved invoices ServiceNow → F&O, status and payments back" for le in LEGAL_ENTITIES),
        *(f"{le}: approved invoices ServiceNow → F&O, status and payments back" for le in LEGAL_ENTITIES),
    ]
    assert all(len(line) <= 80 for line in progress[1:])  # not wrapped in an 80-column terminal
    for word in [*PUSH_HEADERS, "created", "reused", "posted", "rejected", "retry next run"]:
        # A legend line: the word, then its meaning beside it.
        assert re.search(rf"^  {re.escape(word)} {{2,}}\S", demo_output, re.MULTILINE), word
    flat = " ".join(demo_output.split())
    assert "inserted ServiceNow created the record" in flat
    assert "held back not sent: the record breaks a rule" in flat
    assert "reconciliation" not in flat.lower()  # its own job now; its figures mean nothing in a demo
    assert "Audit outcomes" not in flat


def test_each_cycle_of_the_demo_is_one_backfill_with_its_runs(demo: tuple[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    output, home = demo
    cycles = re.findall(r"\(cycle (\d{8}T\d{6}Z-[0-9a-f]{6})\)", " ".join(output.split()))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    instance = dg.DagsterInstance.get()
    backfills = {b.backfill_id: b for b in instance.get_backfills()}
    assert sorted(backfills) == sorted(cycles) and len(cycles) == 2
    runs = {cycle: instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": cycle})) for cycle in cycles}
    assert [len(runs[c]) for c in cycles] == [1 + 2 * len(LEGAL_ENTITIES), len(LEGAL_ENTITIES)]
    assert all(r.tags["d365snow/cycle"] == c for c in cycles for r in runs[c])
    assert [backfills[c].title for c in cycles] == [
        "d365-snow demo: Cycle 1: F&O → ServiceNow, then the approved invoices ServiceNow → F&O",
        "d365-snow demo: Cycle 2: posted status and payments F&O → ServiceNow"]
