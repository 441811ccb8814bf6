"""What a push materialization shows in the UI (defs/snow_sync/metadata.py): pure functions, no Dagster run."""

from __future__ import annotations

import shlex
import subprocess
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import polars as pl

from d365_snow_assets.clients.encoded_query import split_terms
from d365_snow_assets.defs.snow_sync.metadata import audit_commands, reasons_table, servicenow_list_url
from d365_snow_assets.warehouse.state import BUSINESS_KEY


def test_held_back_records_are_grouped_by_reason_most_first_with_two_sample_keys() -> None:
    keys = [f"D365FO|USMF|PO-{n:03}|1" for n in range(7)]
    held = pl.DataFrame({BUSINESS_KEY: keys, "_reason": ["cost center 130 is suspended"] * 5
                         + ["GL account 999999 does not exist in F&O"] * 2})

    table = reasons_table(held, "_reason").value

    assert [dict(r.data) for r in table.records] == [
        {"reason": "cost center 130 is suspended", "records": 5,
         "sample records": "D365FO|USMF|PO-000|1, D365FO|USMF|PO-001|1"},
        {"reason": "GL account 999999 does not exist in F&O", "records": 2,
         "sample records": "D365FO|USMF|PO-005|1, D365FO|USMF|PO-006|1"}]
    assert [c.name for c in table.schema.columns] == ["reason", "records", "sample records"]
    assert reasons_table(held.head(0), "_reason").value.records == []


def test_audit_commands_quote_every_key_for_the_shell_and_keep_it_inside_the_code_block() -> None:
    hostile = "D365FO|V-1'; rm -rf ~; echo '```"
    md = audit_commands("run-1", [("sent", "D365FO|USMF|PO-1|1"), ("failed", hostile), ("held back", "D365FO|X")])
    text = md.value

    fence = text.split("\n")[2].removesuffix("sh")
    assert fence == "````"  # longer than the key's own backtick run: the key cannot close the block
    body = text.split(f"{fence}sh\n", 1)[1].rsplit(f"\n{fence}", 1)[0]
    commands = [line.split("    #")[0] for line in body.splitlines()]
    assert [shlex.split(c) for c in commands] == [
        ["d365-snow", "trace", "D365FO|USMF|PO-1|1"],
        ["d365-snow", "trace", hostile],
        ["d365-snow", "replay", "--key", hostile],  # a failed record can be sent again; the others cannot
        ["d365-snow", "trace", "D365FO|X"],
        ["d365-snow", "replay", "--run", "run-1"],
    ]
    # A real shell, not only shlex: the hostile key arrives as one argument and nothing else runs.
    echoed = subprocess.run(["bash", "-c", commands[1].replace("d365-snow trace", "printf '%s\\n'", 1)],
                            capture_output=True, text=True, check=True)
    assert echoed.stdout == hostile + "\n"


def test_the_servicenow_list_url_filters_the_target_table_on_the_step_window_as_one_encoded_query() -> None:
    since = datetime(2026, 12, 5, 21, 30, 7, 900_000, tzinfo=UTC)
    until = datetime(2026, 12, 5, 21, 31, 2, 100_000, tzinfo=UTC)

    url = servicenow_list_url("https://acme.service-now.com/", "sn_fin_supplier", since, until).value

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "acme.service-now.com", "/sn_fin_supplier_list.do")
    [query] = parse_qs(parts.query, strict_parsing=True)["sysparm_query"]
    # The whole window in whole seconds (sys_updated_on has no fractions): the last second is included.
    assert split_terms(query) == ["sys_updated_on>=2026-12-05 21:30:07", "sys_updated_on<=2026-12-05 21:31:03",
                                  "ORDERBYDESCsys_updated_on"]
    assert "^" not in parts.query and " " not in parts.query  # percent-encoded for the URL as a whole
