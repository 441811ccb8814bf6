"""Fixtures for the Dagster UI test: a synced connector home, the project's webserver on it, and a browser.

The browser is Debian's chromium driven by Playwright's Python client; Playwright's own browser download never
runs (it needs the network). Locally, a machine without chromium skips; in CI (``CI=true``) that is a failure,
because ``.ci/run`` installs chromium and a skip there would hide a broken UI test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer

CHROMIUM = Path(os.environ.get("UI_TEST_CHROMIUM", "/usr/bin/chromium"))
# The flags that work on this machine kind (python.md): no sandbox as root, and no background connections, which
# the closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must install it; the UI test may not skip in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the Python package playwright is not installed (pip install playwright)")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} not found (Debian: apt-get install -y chromium)")
    return CHROMIUM


@dataclass
class Webserver:
    base: str
    home: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = httpx.post(f"{self.base}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        resp.raise_for_status()
        body = resp.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SyncedHome:
    home: Path
    env: dict[str, str]
    cycles: list[dict[str, Any]]  # the `sync --json` documents, oldest first


@pytest.fixture(scope="module")
def synced_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncedHome]:
    """A connector home after two small full syncs (the tests/defs ``connector`` pattern), so the UI has runs,
    materializations and check results to show, and every plot has two points."""
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small())) as server:
        home = tmp_path_factory.mktemp("ui") / "home"
        env = {**server.env(), "D365SNOW_HOME": str(home)}
        cycles = []
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            for _ in range(2):
                result = CliRunner().invoke(app, ["sync", "--json"], env=env, catch_exceptions=False)
                assert result.exit_code == 0, f"sync failed: {result.stdout}\n{result.stderr}"
                cycles.append(orjson.loads(result.stdout))
        yield SyncedHome(home, env, cycles)


@pytest.fixture(scope="module")
def webserver(synced_home: SyncedHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    """``dagster-webserver -m d365_snow_assets.definitions`` on the home's instance, on a free loopback port."""
    home, connector_env = synced_home.home, synced_home.env
    dagster_home = home / "dagster"
    assert "enabled: false" in (dagster_home / "dagster.yaml").read_text()  # nux and telemetry off (§1.4)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("D365SNOW_", "DAGSTER_"))}
    env.update(connector_env)
    env["DAGSTER_HOME"] = str(dagster_home)
    binary = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent)) or "dagster-webserver"
    log = (tmp_path_factory.mktemp("webserver") / "webserver.log").open("wb")
    # cwd outside the repo: with DAGSTER_HOME set, a dagster.yaml in the cwd would only produce a warning.
    proc = subprocess.Popen([binary, "-h", "127.0.0.1", "-p", str(port), "-m", "d365_snow_assets.definitions"],
                            env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"dagster-webserver did not start:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.25)
        yield Webserver(base, home)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser_page(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        # A persistent context with a fresh, empty profile directory, as the machine doc's working recipe does.
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(chromium_path), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1920, "height": 1200})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
