"""``d365-snow sandbox serve``: the fake F&O, Entra ID and ServiceNow as a standalone server."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from ..sandbox.config import SandboxConfig, SandboxDataSize
from .helpstyle import Command, Group, epilog

app = typer.Typer(no_args_is_help=True, cls=Group, help="Run the local sandbox (fake F&O, Entra ID and ServiceNow).",
                  epilog=epilog("The sandbox itself needs no settings."))
console = Console(stderr=True)


@app.command(cls=Command, epilog=epilog("It prints `export D365SNOW_…=…` lines (URLs, demo credentials and "
                                        "D365SNOW_CA_BUNDLE) that point the connector at it."))
def serve(
    host: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    entra_port: Annotated[int, typer.Option(help="Port of the fake Entra ID (0 = any free port).")] = 8443,
    d365_port: Annotated[int, typer.Option(help="Port of the fake F&O (0 = any free port).")] = 8444,
    snow_port: Annotated[int, typer.Option(help="Port of the fake ServiceNow (0 = any free port).")] = 8445,
    state_dir: Annotated[Path, typer.Option(help="Where the CA and server certificate are written.")] = Path(
        ".d365snow/sandbox"),
    seed: Annotated[int, typer.Option(help="Seed of the deterministic data generator.")] = 42,
    vendors: Annotated[int, typer.Option(help="Vendors across all legal entities.")] = 2_000,
    purchase_orders: Annotated[int, typer.Option(help="Purchase orders across all legal entities.")] = 10_000,
    po_lines: Annotated[int, typer.Option(help="Purchase order lines across all legal entities.")] = 50_000,
    approved_invoices: Annotated[int, typer.Option(help="Approved ServiceNow invoices waiting for F&O.")] = 60,
    snow_instance: Annotated[Literal["documented", "variant"], typer.Option(
        help="ServiceNow schema: as documented, or a customised variant (other elements, status values, "
             "insertMultiple modes and one coalesce).")] = "documented",
) -> None:
    """Serve the sandbox on loopback HTTPS and print the settings that point the connector at it."""
    from ..sandbox.server import SandboxServer

    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise typer.BadParameter("the sandbox only listens on loopback (127.0.0.1, localhost or ::1)",
                                 param_hint="--host")
    data = SandboxDataSize(seed=seed, vendors=vendors, purchase_orders=purchase_orders, po_lines=po_lines,
                           approved_invoices=approved_invoices)
    with console.status("Generating sandbox data and starting the servers…"):
        server = SandboxServer(SandboxConfig(data=data, snow_instance=snow_instance), state_dir=state_dir.resolve(),
                               host=host,
                               ports={"entra": entra_port, "d365": d365_port, "snow": snow_port}).start()
    console.print(f"[green]Sandbox running[/]: Entra {server.entra_url}  F&O {server.d365_url}/data  "
                  f"ServiceNow {server.snow_url}")
    console.print("Point the connector at it (sandbox demo credentials) — paste into your shell:")
    for name, value in server.env().items():
        typer.echo(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()  # a supervisor or test reading the pipe needs the settings now, not at exit
    console.print("Press Ctrl+C to stop.")
    server.serve_forever()
