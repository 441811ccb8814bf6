"""``d365-snow demo``: the sandbox, a full sync cycle through the real asset graph, and a summary."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..sandbox.config import SandboxConfig, SandboxDataSize
from ..settings import ConnectorSettings
from ..warehouse import Warehouse
from ..warehouse.db import held_open
from .output import new_cycle_id
from .runs import RunOutcome, open_instance, run_cycle
from .summary import CycleSummary, print_summary, summarize_cycle

console = Console()

# Written into every home the demo creates: the only sign that lets a later demo wipe that directory. A path without
# it may hold anything of the user's (`--home .` once deleted a project), so it is never deleted.
MARKER = ".d365snow-demo-home"
DEV_SUPERSEDED = "Function `dev_command` is superseded"  # the start of dagster's warning (dagster 1.13)
UI_STOP_SECONDS = 30  # `dagster dev` stops its webserver, daemon and code server within seconds


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
    ui: Annotated[bool, typer.Option("--ui", help="Then open the Dagster UI (webserver and daemon) on the demo's "
                                                  "runs.")] = False,
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
        console.print(f"[green]✓[/] Sandbox up: F&O {server.d365_url}/data, ServiceNow {server.snow_url} "
                      f"({len(data.legal_entities)} legal entities, {data.vendors:,} vendors, "
                      f"{data.purchase_orders:,} POs, {data.po_lines:,} PO lines; {_seconds(started)})")
        env = {**server.env(), "D365SNOW_HOME": str(home.resolve())}
        os.environ.update(env)
        warehouse = Warehouse(home / "warehouse.duckdb")
        # The demo's home is its own (claim_home) and nothing else runs on it until the UI starts: the warehouse
        # stays open for the cycles instead of being opened for every transaction.
        with held_open(warehouse.path):
            summaries = _cycles(load_settings(), warehouse, server, started)
        _print_invoices(server)
        if not all(s.ok for s in summaries):
            errors = "; ".join(run.error for s in summaries for run in s.runs if run.error)
            console.print(f"[red]The demo cycle failed:[/] {escape(errors)}")
            raise typer.Exit(1)
        console.print(f"Done in {_seconds(started)}. State: {home}/ (DuckDB warehouse, Dagster runs: each cycle is "
                      f"one backfill on the UI's Runs page).")
        if ui:
            _serve_ui(home, env, ui_port)
    finally:
        server.stop()


def _cycles(settings: ConnectorSettings, warehouse: Warehouse, server: Any, started: float) -> list[CycleSummary]:
    """The first cycle, then (if it went through) F&O's AP team posts and pays, and the invoice round trip brings
    the posted status and the payments back; each cycle summarised on its own."""
    instance = open_instance(settings)

    def cycle(title: str, *, legend: bool, **parts: bool) -> CycleSummary:
        cycle_id = new_cycle_id()
        console.print(f"[bold]{title}[/] [dim](cycle {cycle_id})[/]")
        with console.status(f"{title}…") as status:
            def on_run(outcome: RunOutcome) -> None:
                mark = "[green]✓[/]" if outcome.success else "[red]✗[/]"
                console.print(f"{mark} {escape(outcome.phase)} ({_seconds(started)})")
                status.update(f"{title}… ({outcome.phase.split(':')[0]} done)")
            runs = run_cycle(settings, instance, push=True, on_run=on_run, cycle_id=cycle_id,
                             title=f"d365-snow demo: {title}", **parts)
        summary = summarize_cycle(warehouse, cycle_id, runs)
        print_summary(summary, console, legend=legend)
        return summary

    first = cycle("Cycle 1: F&O → ServiceNow, then the approved invoices ServiceNow → F&O", legend=True)
    if not first.ok:
        return [first]
    # Demo only: F&O's AP team posts the pending invoices and pays some (one partially); the invoice round trip
    # alone then brings the posted status and the payments back (nothing else changed in F&O).
    posted, paid = _post_and_pay(server)
    console.print(f"[green]✓[/] F&O's AP team posted {posted} invoices and paid {paid} of them, one partially "
                  f"({_seconds(started)})")
    return [first, cycle("Cycle 2: posted status and payments F&O → ServiceNow", legend=False, fno_to_snow=False)]


def _seconds(started: float) -> str:
    return f"{time.monotonic() - started:.0f} s"


def _post_and_pay(server: Any) -> tuple[int, int]:
    """Post every pending invoice in the sandbox's F&O and pay every other one: in full, except one partially."""
    posted = server.world.d365.post_invoices()["posted"]
    to_pay = [{"InvoiceId": p["InvoiceId"], "dataAreaId": p["dataAreaId"], "InvoiceAccount": p["InvoiceAccount"]}
              for p in posted[::2]]
    if to_pay:
        to_pay[0]["Amount"] = 10  # a partial payment: the invoice stays Pending payment in ServiceNow
    paid = server.world.d365.pay_invoices(to_pay)["paid"] if to_pay else []
    return len(posted), len(paid)


def _print_invoices(server: Any) -> None:
    """Where the invoices stand in ServiceNow now, as an AP clerk would see them."""
    snow = server.world.snow
    snow.drain_imports()
    status = snow.label_counts("sn_spend_intg_outbound_invoice", "Integration status")
    states = snow.label_counts("sn_shop_invoice", "Status")
    console.print("In ServiceNow now: approved invoices by integration status: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(status.items()))
                  + "; invoices by status: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())) + ".")


def _serve_ui(home: Path, env: dict[str, str], port: int) -> None:
    """Run ``dagster dev`` (the webserver and the daemon, so sensors and schedules can run) on the demo's instance
    until Ctrl+C; the sandbox keeps serving meanwhile."""
    dagster_home = (home / "dagster").resolve()
    # The same location name as the repo's workspace.yaml, so the UI and `dagster dev` agree on it.
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_module:\n      module_name: d365_snow_assets.definitions\n"
                         "      location_name: d365_snow_assets\n")
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    console.print(f"Dagster UI: http://127.0.0.1:{port}/runs  (webserver and daemon; Ctrl+C to stop)")
    # Our own interpreter and module, no shell and no user-supplied words: nothing untrusted to execute. The cwd is
    # the instance's directory: `dagster dev` would warn about a dagster.yaml in any other working directory.
    # `dagster dev` warns that `dg dev` supersedes it; a newcomer's first screen is not the place for that.
    quiet = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), f"ignore:{DEV_SUPERSEDED}:FutureWarning"]))
    process = subprocess.Popen(command, cwd=dagster_home,  # noqa: S603
                               env={**os.environ, **env, "DAGSTER_HOME": str(dagster_home), "PYTHONWARNINGS": quiet})
    try:
        process.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl+C reaches `dagster dev` too; anything else that interrupts us does not. Either way it
        # gets SIGINT, stops its webserver, daemon and code server, and is only killed if it hangs.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=UI_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
