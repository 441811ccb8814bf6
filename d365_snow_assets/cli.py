"""The ``d365-snow`` command line (DESIGN.md §4).

Each command group lives in ``commands/``; this module only assembles them so ``d365-snow --help`` lists
everything in one place.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from .commands import credentials, demo, events, fit, ping, replay, sandbox, sync, trace
from .commands.helpstyle import Command, Group, epilog

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich", cls=Group,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  # Locals of a crashing frame may hold tokens; the redaction filter does not see a traceback.
                  pretty_exceptions_show_locals=False,
                  help="Keep Dynamics 365 F&O and ServiceNow Source-to-Pay / AP Operations in sync.",
                  epilog=epilog("Start with `d365-snow demo` (no settings needed), then `d365-snow ping` against "
                                "your own systems."))

JSON_EPILOG = "--json prints one JSON document on stdout, errors included (shapes in README \"Scripting\")."


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"d365-snow {version('d365-snow-assets')}")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
            typer.echo("d365-snow (not installed)")
        raise typer.Exit()


@app.callback()
def main(_version_flag: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                     help="Print the version and exit.")] = False) -> None:
    """Keep Dynamics 365 F&O and ServiceNow Source-to-Pay / AP Operations in sync."""


app.command("demo", cls=Command, epilog=epilog("Needs no settings: the sandbox provides both systems."))(demo.demo)
app.command("sync", cls=Command, epilog=epilog(
    "Dagster's own log lines go to a log file under D365SNOW_HOME/logs (its path is printed); --verbose also "
    "prints them here.", JSON_EPILOG))(sync.sync)
app.command("plan", cls=Command, epilog=epilog(JSON_EPILOG))(sync.plan)
app.command("replay", cls=Command, epilog=epilog(
    "Choose exactly one of --run, --key, --since and --all-failed.", JSON_EPILOG))(replay.replay)
app.command("trace", cls=Command, epilog=epilog(
    "The keys to trace are printed by `d365-snow sync` next to every reason records were held back or failed.",
    JSON_EPILOG))(trace.trace)
app.command("ping", cls=Command, epilog=epilog(
    "Exit 1 when a check fails, 2 when a setting is missing or invalid.", JSON_EPILOG))(ping.ping)
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(credentials.app, name="credentials")
app.add_typer(events.app, name="events")
app.command("fit", cls=Command, epilog=epilog(
    "Reads both systems' own schemas and writes nothing but the refreshed discovery cache. Exit 1 on a blocking "
    "problem, 2 when a setting is missing or invalid.", JSON_EPILOG))(fit.fit)


if __name__ == "__main__":
    app()
