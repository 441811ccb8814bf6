"""Fixtures for client tests: one sandbox per module, settings pointing at it, a recording fake sleep."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.sandbox.server import SandboxServer
from d365_snow_assets.settings import ConnectorSettings, load_settings


class FakeSleep:
    """Records requested waits instead of sleeping, so tests measure the policy, not the wall clock."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def settings_for(server: SandboxServer, **overrides: object) -> ConnectorSettings:
    values: dict[str, object] = {k.removeprefix("D365SNOW_").lower(): v for k, v in server.env().items()}
    values.update(overrides)
    return load_settings(use_store=False, **values)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = SandboxServer(SandboxConfig(data=SandboxDataSize.small())).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _clean_faults(server: SandboxServer) -> Iterator[None]:
    server.clear_faults()
    yield
    server.clear_faults()
    for service in ("d365", "snow", "entra"):
        server.set_faults(service, FaultProfile())


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()
