"""What every command shares: exit codes, one-sentence errors (or the same as JSON), JSON output and the log file.

Exit codes (README "Commands"): 0 done, 1 the work failed (a check, a run, a refused credential), 2 the command
cannot start: a configuration problem or arguments that do not fit together. Under ``--json`` every outcome,
errors included, is one JSON object on stdout with ``ok`` and, when something went wrong, ``error``:
``{"ok": false, "error": {"kind": "configuration", "message": "…"}}``.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from ..mapping import MappingError
from ..redaction import RedactingFilter
from ..settings import ConnectorSettings, SettingsError, load_settings

EXIT_FAILED, EXIT_USAGE = 1, 2  # 0: done

err = Console(stderr=True)

_LABELS = {"configuration": "Configuration problem", "usage": "Wrong arguments", "not_found": "Not found",
           "failed": "Failed"}
_EXIT = {"configuration": EXIT_USAGE, "usage": EXIT_USAGE}


class CommandError(Exception):
    """Ends a command with one sentence: ``kind`` says which (and picks the exit code unless ``code`` is given)."""

    def __init__(self, kind: str, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message
        self.code = code if code is not None else _EXIT.get(kind, EXIT_FAILED)


def emit_json(data: Mapping[str, Any]) -> None:
    """One JSON document on stdout (indented, keys in the order given: the documented shapes)."""
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def fail(error: CommandError, *, json_output: bool) -> NoReturn:
    """Report ``error`` (as a sentence on stderr, or as JSON on stdout) and exit with its code."""
    if json_output:
        emit_json({"ok": False, "error": {"kind": error.kind, "message": error.message}})
    else:
        err.print(f"[red]{_LABELS.get(error.kind, 'Error')}:[/] {escape(error.message)}", soft_wrap=False)
    raise typer.Exit(error.code)


@contextmanager
def reported(*, json_output: bool) -> Iterator[None]:
    """Turn configuration problems and :class:`CommandError` raised inside into their sentence and exit code."""
    try:
        yield
    except (SettingsError, MappingError) as exc:
        fail(CommandError("configuration", str(exc)), json_output=json_output)
    except CommandError as exc:
        fail(exc, json_output=json_output)


def settings_for(*, json_output: bool, require: tuple[str, ...] | None = ("d365", "snow"),
                 use_store: bool = True) -> ConnectorSettings:
    """The settings, or the command ends with exit 2 and a sentence naming everything that is missing or wrong."""
    try:
        return load_settings(require=require, use_store=use_store)
    except SettingsError as exc:
        fail(CommandError("configuration", str(exc)), json_output=json_output)


def config_json(settings: ConnectorSettings) -> dict[str, Any]:
    """Which configuration file a command read (``path`` None when there is none) and its mapping hash."""
    file = settings.config_file
    return {"path": str(file.path) if file.exists else None, "mapping": file.mapping_hash}


def config_line(settings: ConnectorSettings) -> str:
    file = settings.config_file
    if file.exists:
        return f"Configuration: {file.path}"
    return f"Configuration: environment only ({file.path} does not exist)"


# -- the log file of Dagster runs ----------------------------------------------------------------------------------
LOG_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
KEEP_LOGS = 30  # per command: enough to look back over a day of manual runs; older ones are removed


def new_cycle_id() -> str:
    """A sortable id for one command's runs: UTC time and a random suffix (two syncs in a second differ)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@contextmanager
def run_log(home: Path, command: str, cycle_id: str, *, verbose: bool) -> Iterator[Path]:
    """Send every log record of this process (Dagster's event log lines and tracebacks, the clients' retries,
    Python warnings) to ``<home>/logs/<command>-<cycle id>.log``, and to the terminal only when ``verbose``.

    The terminal keeps the command's own progress and summary. Records pass the secret redaction filter on the
    way to either destination.
    """
    directory = home / "logs"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{command}-{cycle_id}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    file_handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handlers: list[logging.Handler] = [file_handler]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RedactingFilter())
        handler.setLevel(logging.INFO)
    root = logging.getLogger()
    # INFO from the connector's own loggers (Dagster's run log included, see runs.py); other libraries keep their
    # WARNING threshold: httpx would log every URL at INFO, query strings (business data) included.
    package = logging.getLogger("d365_snow_assets")
    previous_level = package.level
    package.setLevel(logging.INFO)
    for handler in handlers:
        root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for handler in handlers:
            root.removeHandler(handler)
        file_handler.close()
        package.setLevel(previous_level)
        _prune(directory, command)


def _prune(directory: Path, command: str) -> None:
    # Only files this command wrote (its own name pattern), oldest first by their sortable names.
    logs = sorted(directory.glob(f"{command}-*Z-*.log"))
    for old in logs[:-KEEP_LOGS]:
        old.unlink(missing_ok=True)
