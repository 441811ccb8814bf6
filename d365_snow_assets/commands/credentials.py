"""``d365-snow credentials set|show|unset|rotate``: the encrypted credential store (DESIGN.md §8).

Secrets are read from a hidden prompt or from stdin, never from the command line (argv is visible to every user
of the machine through ``ps`` and lands in shell history). ``show`` prints names and sources, never values.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..credentials import CredentialStore, CredentialStoreError
from ..settings import ENV_PREFIX, SECRET_FIELDS, STORABLE_FIELDS, TOML_FILE, SettingsError, env_name, load_settings

app = typer.Typer(no_args_is_help=True, help="Manage the encrypted credential store under D365SNOW_HOME.")
console = Console()
err = Console(stderr=True)


def _store() -> CredentialStore:
    try:
        settings = load_settings(require=None, use_store=False)
    except SettingsError as exc:
        err.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    return CredentialStore.for_settings(settings)


def _field(name: str) -> str:
    key = name.strip().lower().removeprefix(ENV_PREFIX.lower())
    if key not in STORABLE_FIELDS:
        err.print(f"[red]Unknown credential {name!r}.[/] Storable: {', '.join(STORABLE_FIELDS)}.")
        raise typer.Exit(2)
    return key


def _fail(exc: Exception) -> None:
    err.print(f"[red]{escape(str(exc))}[/]")
    raise typer.Exit(1)


@app.command("set")
def set_(names: Annotated[list[str], typer.Argument(help="e.g. d365_client_secret snow_password")],
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


@app.command("unset")
def unset(names: list[str]) -> None:
    """Remove values from the store."""
    store = _store()
    try:
        for name in (_field(n) for n in names):
            console.print(f"{name}: {'removed' if store.unset(name) else 'was not stored'}")
    except CredentialStoreError as exc:
        _fail(exc)


@app.command("show")
def show() -> None:
    """Which credentials are set and where each comes from (environment, TOML file, store). Never the values."""
    store = _store()
    try:
        stored = store.load()
    except CredentialStoreError as exc:
        _fail(exc)
        return
    try:
        settings = load_settings(require=None, use_store=False)
    except SettingsError as exc:
        err.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    table = Table(title=f"Credentials ({store.path}{'' if store.exists() else ', no store yet'})")
    table.add_column("variable")
    table.add_column("set")
    table.add_column("from")
    for name in STORABLE_FIELDS:
        variable = env_name(name)
        if os.environ.get(variable):
            source = "environment"
        elif settings.secret(name):
            source = TOML_FILE
        elif stored.get(name):
            source = "credential store"
        else:
            source = "—"
        table.add_row(variable, "yes" if source != "—" else "[red]no[/]", source)
    console.print(table)
    console.print(f"Store key: {store.key_source}")


@app.command("rotate")
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
