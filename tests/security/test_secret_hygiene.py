"""Secrets after a full run (DESIGN §8): the store is encrypted and private, and no secret or bearer token shows up
in logs, exceptions, the Dagster event log and metadata, audit rows, CLI output or any file of the home."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.sandbox.tokens import IssuedToken, TokenRegistry
from d365_snow_assets.warehouse import Warehouse
from tests.defs.conftest import Connector

SECRET_NAMES = ("D365SNOW_D365_CLIENT_SECRET", "D365SNOW_SNOW_CLIENT_SECRET", "D365SNOW_SNOW_PASSWORD")


@pytest.fixture
def issued_tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every bearer token the sandbox hands out (the registry forgets expired ones; this list does not)."""
    seen: list[str] = []
    original = TokenRegistry.issue

    def issue(self: TokenRegistry, **kwargs: object) -> IssuedToken:
        token = original(self, **kwargs)  # type: ignore[arg-type]
        seen.append(token.token)
        return token

    monkeypatch.setattr(TokenRegistry, "issue", issue)
    return seen


def _cli(connector: Connector, *args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=connector.env, input=stdin, catch_exceptions=False)


def _needles(secrets: list[str]) -> list[bytes]:
    found = []
    for s in secrets:
        found.append(s.encode())
        # A JWT's signature alone identifies the token, so logs of a truncated header must not carry it either.
        if s.count(".") == 2:
            found.append(s.rsplit(".", 1)[1].encode())
    return found


def _leaks(haystack: bytes, needles: list[bytes]) -> list[str]:
    return [n.decode()[:12] + "…" for n in needles if n in haystack]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_never_leak_after_a_full_run(connector: Connector, issued_tokens: list[str],
                                             caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    env = connector.env
    secrets = [env[n] for n in SECRET_NAMES]
    # The secrets live in the encrypted store, not the environment, for this run.
    master = Fernet.generate_key().decode()
    store_env = {k: v for k, v in env.items() if k not in SECRET_NAMES} | {"D365SNOW_MASTER_KEY": master}
    for name in SECRET_NAMES:
        monkeypatch.delenv(name)
    connector.env = store_env
    monkeypatch.setenv("D365SNOW_MASTER_KEY", master)
    result = _cli(connector, "credentials", "set", *[n.removeprefix("D365SNOW_").lower() for n in SECRET_NAMES],
                  "--stdin", stdin="\n".join(secrets) + "\n")
    assert result.exit_code == 0, result.output
    store_files = [p for p in connector.home.rglob("*") if p.is_file() and "cred" in p.name]
    assert store_files, list(connector.home.rglob("*"))
    for path in store_files:
        assert _mode(path) == 0o600, path
        assert not _leaks(path.read_bytes(), _needles(secrets)), path

    caplog.set_level(logging.DEBUG)
    outputs = [result.output]
    sync = connector.cli("sync", "--json")
    assert sync.exit_code == 0, sync.output
    outputs += [sync.stdout, sync.stderr]
    for args in (("plan",), ("ping",), ("credentials", "show"), ("trace", "D365FO|USMF|nothing")):
        r = connector.cli(*args)
        outputs += [r.stdout, r.stderr]
    # A failing run: ServiceNow refuses the integration user → the error names the problem, not the secret.
    connector.server.world.tokens.expire_all()
    bad = connector.cli("ping")
    outputs += [bad.stdout, bad.stderr]
    assert issued_tokens, "the run must have used bearer tokens"
    needles = _needles([*secrets, *issued_tokens, master])

    assert not _leaks("\n".join(outputs).encode(), needles), "CLI output"
    assert not _leaks("\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records).encode(), needles)

    # Dagster: every event of every run (messages, metadata, errors) of the connector's instance.
    os.environ["DAGSTER_HOME"] = str(connector.home / "dagster")
    instance = dg.DagsterInstance.get()
    run_ids = [r.run_id for r in instance.get_runs()]
    assert run_ids
    events = "\n".join(repr(record) for run_id in run_ids for record in instance.all_logs(run_id))
    assert "ASSET_MATERIALIZATION" in events
    assert not _leaks(events.encode(), needles), "Dagster event log"

    with Warehouse(connector.home / "warehouse.duckdb").reader() as con:
        rows = con.execute("SELECT * FROM audit").fetchall()
    assert rows
    assert not _leaks(repr(rows).encode(), needles), "audit rows"

    # Finally every byte the connector wrote under its home (warehouse, Dagster storage, compute logs, store).
    for path in connector.home.rglob("*"):
        if path.is_file():
            assert not _leaks(path.read_bytes(), needles), path


def test_wrong_master_key_is_a_clear_error_without_secrets(connector: Connector, monkeypatch) -> None:
    env = connector.env
    monkeypatch.setenv("D365SNOW_MASTER_KEY", "the right passphrase")
    connector.env = {**env, "D365SNOW_MASTER_KEY": "the right passphrase"}
    assert _cli(connector, "credentials", "set", "snow_password", "--stdin",
                stdin="pw-in-the-store-123\n").exit_code == 0
    monkeypatch.delenv("D365SNOW_SNOW_PASSWORD")
    monkeypatch.setenv("D365SNOW_MASTER_KEY", "a wrong passphrase")
    wrong = {k: v for k, v in env.items() if k != "D365SNOW_SNOW_PASSWORD"} | {
        "D365SNOW_MASTER_KEY": "a wrong passphrase"}
    connector.env = wrong
    for args in (("sync",), ("credentials", "show"), ("ping",)):
        r = connector.cli(*args)
        text = r.stdout + r.stderr
        assert r.exit_code != 0, (args, text)
        assert "D365SNOW_MASTER_KEY" in text and "decrypt" in text, (args, text)
        assert "Traceback" not in text
        for secret in ("pw-in-the-store-123", "a wrong passphrase", "the right passphrase"):
            assert secret not in text
    assert connector.snow("sys_import_set_row") == []
