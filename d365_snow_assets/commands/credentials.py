"""``d365-snow credentials set|show|unset|rotate``: the encrypted credential store (DESIGN.md §8).

Secrets are read from a hidden prompt or from stdin, never from the command line (argv is visible to every user
of the machine through ``ps`` and lands in shell history). ``show`` prints names and sources, never values.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..credentials import CredentialStore, CredentialStoreError
from ..settings import ENV_PREFIX, SECRET_FIELDS, STORABLE_FIELDS, env_name
from .helpstyle import Command, Group, epilog
from .output import CommandError, emit_json, fail, settings_for

app = typer.Typer(no_args_is_help=True, cls=Group, help="Manage the encrypted credential store under D365SNOW_HOME.",
                  epilog=epilog("The store's key: D365SNOW_MASTER_KEY, else a key file (mode 0600) in the home."))
console = Console()
err = Console(stderr=True)
_EPILOG = epilog("Environment variables win over the configuration file, the file over the store.")


def _store(*, json_output: bool = False) -> CredentialStore:
    return CredentialStore.for_settings(settings_for(json_output=json_output, require=None, use_store=False))


def _field(name: str) -> str:
    key = name.strip().lower().removeprefix(ENV_PREFIX.lower())
    if key not in STORABLE_FIELDS:
        fail(CommandError("usage", f"{name!r} is not a storable credential; storable: {', '.join(STORABLE_FIELDS)}."),
             json_output=False)
    return key


def _fail(exc: Exception) -> NoReturn:
    fail(CommandError("failed", str(exc)), json_output=False)


@app.command("set", cls=Command, epilog=_EPILOG)
def set_(names: Annotated[list[str], typer.Argument(metavar="NAME", help="e.g. d365_client_secret snow_password")],
         stdin: Annotated[bool, typer.Option("--stdin", help="Read one value per name, one per line, from stdin.")]
         = False) -> None:
    """Store values; each is asked for with a hidden prompt (or read from stdin)."""
    fields = [_field(n) for n in names]
    store = _store()
    values: dict[str, str] = {}
    for name in fields:
        if stdin:
            line = sys.stdin.readline()
            if not line:
                err.print(f"[red]stdin ended before a value for {name} was read.[/]")
                raise typer.Exit(2)
            value = line.rstrip("\r\n")
        else:
            secret = name in SECRET_FIELDS
            value = typer.prompt(env_name(name), hide_input=secret, confirmation_prompt=secret)
        if not value:
            err.print(f"[red]An empty value for {name} was not stored.[/]")
            raise typer.Exit(2)
        values[name] = value
    try:
        current = store.load()
        current.update(values)
        store.save(current)
    except CredentialStoreError as exc:
        _fail(exc)
    console.print(f"Stored {', '.join(fields)} in {store.path} (key: {store.key_source}).")


@app.command("unset", cls=Command, epilog=_EPILOG)
def unset(names: Annotated[list[str], typer.Argument(metavar="NAME", help="e.g. snow_password")]) -> None:
    """Remove values from the store."""
    store = _store()
    try:
        for name in (_field(n) for n in names):
            console.print(f"{name}: {'removed' if store.unset(name) else 'was not stored'}")
    except CredentialStoreError as exc:
        _fail(exc)


@app.command("show", cls=Command, epilog=_EPILOG)
def show(json_output: Annotated[bool, typer.Option("--json", help="Print the table as one JSON document.")]
         = False) -> None:
    """Which credentials are set and where each comes from (environment, file, store), never the values."""
    store = _store(json_output=json_output)
    try:
        stored = store.load()
    except CredentialStoreError as exc:
        fail(CommandError("failed", str(exc)), json_output=json_output)
    settings = settings_for(json_output=json_output, require=None, use_store=False)
    file = settings.config_file
    sources: dict[str, str | None] = {}
    for name in STORABLE_FIELDS:
        if os.environ.get(env_name(name)):
            sources[name] = "environment"
        elif settings.secret(name):
            sources[name] = str(file.path)
        elif stored.get(name):
            sources[name] = "credential store"
        else:
            sources[name] = None
    if json_output:
        emit_json({"ok": True, "error": None,
                   "store": {"path": str(store.path), "exists": store.exists(), "key": store.key_source},
                   "credentials": [{"variable": env_name(n), "set": src is not None, "source": src}
                                   for n, src in sources.items()]})
        return
    table = Table(title=f"Credentials ({store.path}{'' if store.exists() else ', no store yet'})",
                  title_justify="left")
    table.add_column("variable", overflow="fold")
    table.add_column("set")
    table.add_column("from", overflow="fold")
    for name, source in sources.items():
        table.add_row(env_name(name), "yes" if source else "[red]no[/]", escape(source or "—"))
    console.print(table)
    console.print(f"Store key: {store.key_source}")


@app.command("rotate", cls=Command, epilog=_EPILOG)
def rotate(new_key: Annotated[bool, typer.Option(
        "--new-key", help="Prompt for a new D365SNOW_MASTER_KEY (key or passphrase) instead of generating a new "
                          "key file.")] = False,
           stdin: Annotated[bool, typer.Option("--stdin", help="With --new-key: read the new key from stdin.")]
           = False) -> None:
    """Re-encrypt the store under a new key."""
    store = _store()
    if not store.exists():
        err.print(f"[red]There is no credential store at {store.path} to rotate.[/]")
        raise typer.Exit(1)
    key: str | None = None
    if new_key:
        key = sys.stdin.readline().rstrip("\r\n") if stdin else typer.prompt(
            "New master key", hide_input=True, confirmation_prompt=True)
    try:
        where = store.rotate(key)
    except CredentialStoreError as exc:
        _fail(exc)
        return
    console.print(f"Re-encrypted {store.path}; the key is now in {where}.")
