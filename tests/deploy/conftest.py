"""A throwaway PostgreSQL server for the production-profile tests: Debian's binaries, loopback only, temp data dir."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DB_NAME = "dagster"


def unavailable(reason: str) -> None:
    """Skip locally; in CI a missing prerequisite is a failure, never a silent skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the production-profile tests must run in CI)")
    pytest.skip(reason)


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    # Debian keeps the server binaries off PATH, one directory per major version.
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    password: str
    host: str = "127.0.0.1"

    def dagster_env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_DB": DB_NAME,
                "DAGSTER_PG_USERNAME": self.user, "DAGSTER_PG_PASSWORD": self.password}

    def recreate_database(self) -> None:
        conn = self.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {DB_NAME}")
        conn.close()

    def connect(self, db: str = DB_NAME) -> Any:
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=db)


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        server_log = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}\n{server_log}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    bindir = _bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        unavailable("dagster-postgres is not installed (pip install -e '.[dev]')")
    assert bindir is not None
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        # postgres refuses to run as root: run initdb/pg_ctl as the `postgres` OS user the Debian package creates.
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' OS user to run the server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            unavailable("running as root and runuser(1) is missing")
        as_user = [str(runuser), "-u", "postgres", "--"]
    # Not under pytest's tmp_path: its parents are 0700 root, which the postgres user cannot enter.
    workdir = Path(tempfile.mkdtemp(prefix="d365snow-pg-"))
    data, log, pwfile = workdir / "data", workdir / "server.log", workdir / "pwfile"
    password = secrets.token_urlsafe(16)
    pwfile.write_text(password)
    pwfile.chmod(0o600)
    if owner is not None:
        for path in (workdir, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    started = False
    try:
        _run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
              "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"], "initdb")
        for _attempt in range(3):  # the free port can be taken between probing and binding
            port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={workdir} "
                       "-c timezone=UTC -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            try:
                _run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                      "-w", "-t", "60", "start"], "pg_ctl start", log)
                started = True
                break
            except RuntimeError:
                if _attempt == 2:
                    raise
        server = Postgres(port=port, user="postgres", password=password)
        server.recreate_database()
        yield server
    finally:
        if started:
            _run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "pg_ctl stop")
        shutil.rmtree(workdir, ignore_errors=True)
