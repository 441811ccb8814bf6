"""Fixtures for the asset-graph tests: a small sandbox, a connector home, and the CLI pointed at both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer


@dataclass
class Connector:
    """A sandbox plus a connector home, with the CLI environment pointing at both."""

    server: SandboxServer
    home: Path
    env: dict[str, str]

    def cli(self, *args: str) -> Any:
        result = CliRunner().invoke(app, list(args), env=self.env, catch_exceptions=False)
        return result

    def sync(self) -> dict[str, Any]:
        result = self.cli("sync", "--json")
        assert result.exit_code == 0, f"sync failed: {result.stdout}\n{result.stderr}"
        return orjson.loads(result.stdout)

    def fno(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        return self.server.world.d365.read(sql, params)

    def snow(self, table: str, query: str = "") -> list[dict[str, str]]:
        self.server.world.snow.drain_imports()
        return self.server.world.snow.select(table, query)


def _connector(tmp_path: Path, instance: str) -> Iterator[Connector]:
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small(), snow_instance=instance)) as server:
        home = tmp_path / "home"
        env = {**server.env(), "D365SNOW_HOME": str(home)}
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            yield Connector(server, home, env)


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    """The sandbox as ServiceNow documents it."""
    yield from _connector(tmp_path, "documented")


@pytest.fixture
def variant_connector(tmp_path: Path) -> Iterator[Connector]:
    """The variant instance: other column names, status values, insertMultiple mode and one map's coalesce."""
    yield from _connector(tmp_path, "variant")
