"""The ``d365-snow`` command line (DESIGN.md §4).

Each command group lives in ``commands/``; this module only assembles them so ``d365-snow --help`` lists
everything in one place.
"""

from __future__ import annotations

import typer

from .commands import credentials, demo, events, fit, ping, replay, sandbox, sync, trace

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="Keep Dynamics 365 F&O and ServiceNow Source-to-Pay / AP Operations in sync.")
app.command("demo")(demo.demo)
app.command("sync")(sync.sync)
app.command("plan")(sync.plan)
app.command("replay")(replay.replay)
app.command("trace")(trace.trace)
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(credentials.app, name="credentials")
app.add_typer(events.app, name="events")
app.command("ping")(ping.ping)
app.command("fit")(fit.fit)


if __name__ == "__main__":
    app()
