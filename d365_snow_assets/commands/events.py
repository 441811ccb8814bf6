"""``d365-snow events serve``: receive F&O business events over HTTP(S) into the spool under ``D365SNOW_HOME``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..paths import StatePaths
from ..settings import SettingsError, load_settings
from .helpstyle import Command, Group, epilog

app = typer.Typer(no_args_is_help=True, cls=Group, help="F&O Business Events: the HTTPS receiver and its spool.",
                  epilog=epilog("The receiver needs D365SNOW_EVENTS_SECRET (the secret path segment of its URL)."))
console = Console(stderr=True)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@app.callback()
def events() -> None:
    """F&O Business Events: the HTTPS receiver and its spool."""
    # A callback keeps `events` a command group even while `serve` is its only command.


@app.command(cls=Command, epilog=epilog("Needs D365SNOW_EVENTS_SECRET; events are spooled under D365SNOW_HOME for "
                                        "the fno_business_events sensor."))
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; keep loopback behind a TLS reverse proxy.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8446,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain: serve HTTPS directly.",
                                                  exists=True, dir_okay=False)] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.", exists=True,
                                                 dir_okay=False)] = None,
    max_body: Annotated[int, typer.Option(help="Largest accepted body in bytes (events are small stubs).",
                                          min=1024)] = 256 * 1024,
) -> None:
    """Receive business events at POST /events/<D365SNOW_EVENTS_SECRET> and spool them for the sensor."""
    from ..events import EventSpool, SecretError, build_app, check_secret, events_spool_path, make_server

    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key, or neither", param_hint="--tls-cert")
    try:
        settings = load_settings(require=None)
        secret = check_secret(settings.secret("events_secret"))
    except (SettingsError, SecretError) as exc:
        console.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    paths = StatePaths(settings.home).ensure()
    spool = EventSpool(events_spool_path(paths.home))
    server = make_server(build_app(spool, secret, max_body=max_body), host=host, port=port,
                         tls_cert=str(tls_cert) if tls_cert else None, tls_key=str(tls_key) if tls_key else None)
    _log_requests_to_stderr()
    scheme = "https" if tls_cert else "http"
    shown_host = f"[{host}]" if ":" in host else host
    counts = spool.counts()
    console.print(f"Receiving F&O business events on {scheme}://{shown_host}:{port}/events/<D365SNOW_EVENTS_SECRET>",
                  soft_wrap=True)
    console.print(f"Spool: {escape(str(spool.path))} ({counts['new']} new, {counts['consumed']} consumed)",
                  soft_wrap=True)
    if not tls_cert and host not in _LOOPBACK:
        console.print("[yellow]Plain HTTP on a non-loopback address:[/] F&O only calls https URLs; terminate TLS "
                      "in a reverse proxy in front of this address, or pass --tls-cert and --tls-key.", soft_wrap=True)
    server.run()


def _log_requests_to_stderr() -> None:
    # One line per request (the receiver's own access log, secret masked) in uvicorn's style, since uvicorn's
    # access log is off: it would print the secret path.
    logger = logging.getLogger("d365_snow_assets.events")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
