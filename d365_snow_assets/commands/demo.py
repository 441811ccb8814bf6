"""``d365-snow demo``: the sandbox, a full sync cycle through the real asset graph, and a summary."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..sandbox.config import SandboxConfig, SandboxDataSize
from ..warehouse import Warehouse
from .runs import RunOutcome, open_instance, run_cycle
from .summary import print_summary, summarize_cycle, summary_json

console = Console()

# Written into every home the demo creates: the only sign that lets a later demo wipe that directory. A path without
# it may hold anything of the user's (`--home .` once deleted a project), so it is never deleted.
MARKER = ".d365snow-demo-home"


def claim_home(home: Path) -> str | None:
    """Make ``home`` a fresh, empty demo home marked as the demo's own, or say why not (nothing deleted then).

    Only a directory that carries the demo's marker is wiped; an empty or missing one is taken; anything else
    (a file, a symlink, a directory with other contents) is refused."""
    if home.is_symlink() or (home.exists() and not home.is_dir()):
        return f"{home} is not a directory the demo created; choose another --home (nothing was deleted)."
    if home.is_dir() and any(home.iterdir()):
        if not (home / MARKER).is_file():
            return (f"{home} already holds files the demo did not create; choose an empty or new directory for "
                    f"--home, or delete it yourself if an older demo made it (nothing was deleted).")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("Created by `d365-snow demo`; the next demo with this --home deletes this directory.\n")
    return None


def demo(
    home: Annotated[Path, typer.Option(help="Connector home for the demo: a new or empty directory, or one an "
                                            "earlier demo created (then wiped first).")] = Path(".d365snow/demo"),
    ui: Annotated[bool, typer.Option("--ui", help="Then open the Dagster UI on the demo's runs.")] = False,
    ui_port: Annotated[int, typer.Option(help="Port of the Dagster UI (with --ui).")] = 3000,
    small: Annotated[bool, typer.Option("--small", help="A small data set (a few hundred PO lines) for a quick look.")]
    = False,
) -> None:
    """Start the sandbox, run a full F&O → ServiceNow cycle through Dagster, and summarise what moved."""
    from ..sandbox.server import SandboxServer
    from ..settings import load_settings

    started = time.monotonic()
    data = SandboxDataSize.small() if small else SandboxDataSize()
    refused = claim_home(home)
    if refused:
        console.print(f"[red]Not starting the demo:[/] {escape(refused)}")
        raise typer.Exit(2)
    with console.status("Generating the sandbox data and starting fake F&O, Entra ID and ServiceNow…"):
        server = SandboxServer(SandboxConfig(data=data), state_dir=home / "sandbox").start()
    try:
        console.print(f"[green]✓[/] sandbox up: F&O {server.d365_url}/data, ServiceNow {server.snow_url} "
                      f"({len(data.legal_entities)} legal entities, {data.vendors:,} vendors, "
                      f"{data.purchase_orders:,} POs, {data.po_lines:,} PO lines)")
        env = {**server.env(), "D365SNOW_HOME": str(home.resolve())}
        os.environ.update(env)
        settings = load_settings()
        with console.status("Syncing F&O → ServiceNow through the Dagster asset graph…") as status:
            def on_run(outcome: RunOutcome) -> None:
                scope = outcome.partition.upper() if outcome.partition else "GL accounts and cost centers"
                mark = "[green]✓[/]" if outcome.success else "[red]✗[/]"
                console.print(f"{mark} {scope} ({time.monotonic() - started:.0f} s)")
                status.update(f"Syncing… ({scope} done)")
            outcomes = run_cycle(settings, open_instance(settings), push=True, on_run=on_run)
        if all(o.success for o in outcomes):
            # Demo only: F&O's AP team posts the pending invoices and pays some (one partially), then one more
            # cycle brings the posted status and the payments back to ServiceNow.
            with console.status("F&O posts the pending invoices and pays some; syncing the status back…"):
                posted, paid = _post_and_pay(server)
                outcomes += run_cycle(settings, open_instance(settings), push=True, on_run=on_run)
            console.print(f"[green]✓[/] F&O posted {posted} invoices and paid {paid} "
                          f"({time.monotonic() - started:.0f} s)")
        warehouse = Warehouse(home / "warehouse.duckdb")
        _print_summary(outcomes, warehouse)
        _print_invoices(outcomes, warehouse, server)
        if not all(o.success for o in outcomes):
            errors = "; ".join(o.error for o in outcomes if o.error)
            console.print(f"[red]The demo cycle failed:[/] {escape(errors)}")
            raise typer.Exit(1)
        console.print(f"Done in {time.monotonic() - started:.0f} s. State: {home}/ (DuckDB warehouse, Dagster runs).")
        if ui:
            _serve_ui(home, env, ui_port)
    finally:
        server.stop()


def _print_summary(outcomes: list[RunOutcome], warehouse: Warehouse) -> None:
    print_summary(summarize_cycle(warehouse, "demo", outcomes), console)
    with warehouse.reader() as con:
        rows = con.execute("SELECT outcome, count(*) FROM audit GROUP BY outcome ORDER BY outcome").fetchall()
    console.print("Audit outcomes: " + ", ".join(f"{outcome} {count:,}" for outcome, count in rows))


def _post_and_pay(server: Any) -> tuple[int, int]:
    """Post every pending invoice in the sandbox's F&O and pay every other one: in full, except one partially."""
    posted = server.world.d365.post_invoices()["posted"]
    to_pay = [{"InvoiceId": p["InvoiceId"], "dataAreaId": p["dataAreaId"], "InvoiceAccount": p["InvoiceAccount"]}
              for p in posted[::2]]
    if to_pay:
        to_pay[0]["Amount"] = 10  # a partial payment: the invoice stays Pending payment in ServiceNow
    paid = server.world.d365.pay_invoices(to_pay)["paid"] if to_pay else []
    return len(posted), len(paid)


def _print_invoices(outcomes: list[RunOutcome], warehouse: Warehouse, server: Any) -> None:
    """The invoice round trip in numbers: what the posting asset did, and where the invoices stand in ServiceNow."""
    totals = summary_json(summarize_cycle(warehouse, "demo", outcomes), config={}, log_file=None)["invoices"]
    snow = server.world.snow
    snow.drain_imports()
    status = {k.lower(): v for k, v in snow.label_counts("sn_spend_intg_outbound_invoice",
                                                           "Integration status").items()}
    states = snow.label_counts("sn_shop_invoice", "Status")
    invoice_runs = [o for o in outcomes if o.job == "invoice_round_trip"]
    last_cycle = invoice_runs[-len({o.partition for o in invoice_runs}):] if invoice_runs else []
    mismatches = sum(int(o.materializations.get("invoices/reconciliation", {}).get("mismatches", 0) or 0)
                     for o in last_cycle)
    console.print(
        f"Invoices ServiceNow → F&O: {totals.get('created', 0) + totals.get('reused', 0)} posted to F&O as pending "
        f"invoices, {totals.get('rejected', 0)} rejected with a message for the AP clerk, {totals.get('error', 0)} "
        f"errors; in ServiceNow {status.get('processed', 0)} processed, {status.get('error', 0)} in error, "
        f"{status.get('new', 0) + status.get('in progress', 0)} waiting.")
    console.print("ServiceNow invoice states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                  + f"; reconciliation mismatches in the last cycle: {mismatches}")


def _serve_ui(home: Path, env: dict[str, str], port: int) -> None:
    """Run the Dagster webserver on the demo's instance until Ctrl+C (the sandbox keeps serving meanwhile)."""
    dagster_home = (home / "dagster").resolve()
    # The same location name as the repo's workspace.yaml, so the UI and `dagster dev` agree on it.
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: d365_snow_assets.definitions\n"
                         "      location_name: d365_snow_assets\n")
    command = [sys.executable, "-m", "dagster_webserver", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    console.print(f"Dagster UI: http://127.0.0.1:{port}/asset-groups  (Ctrl+C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        # Our own interpreter and module, no shell and no user-supplied words: nothing untrusted to execute.
        subprocess.run(command, env={**os.environ, **env, "DAGSTER_HOME": str(dagster_home)}, check=False)  # noqa: S603
