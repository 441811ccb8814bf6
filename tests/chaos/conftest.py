"""Chaos fixtures: one seed per session (``CHAOS_SEED``, else random, always printed so a failure can be replayed),
a sandbox whose data and faults follow it, and the figures the suites report at the end."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer
from tests.chaos.session import FIGURES, SEED
from tests.defs.conftest import Connector


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The scenarios take about three minutes per seed, so a plain `pytest` leaves them out; `.ci/run` runs them
    three times with `--chaos`, each with a fresh random seed it prints. (An environment switch would not do: the
    root conftest clears every D365SNOW_* variable before this file is read.)"""
    if collection_path.name.startswith("test_") and not config.getoption("chaos"):
        return True
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and any("tests/chaos" in str(item.path) for item in session.items):
        reporter.write_line(f"chaos: CHAOS_SEED={SEED} (replay: CHAOS_SEED={SEED} pytest --chaos tests/chaos)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.write_line(f"chaos: CHAOS_SEED={SEED} " + " ".join(
            f"{name}={FIGURES[name]}" for name in sorted(FIGURES)))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A generator per test, derived from the session seed and the test's name (tests stay independent)."""
    return random.Random(f"{SEED}:{request.node.name}")


@pytest.fixture
def chaos_connector(tmp_path: Path, rng: random.Random) -> Iterator[Connector]:
    data = SandboxDataSize.small(seed=rng.randrange(1, 1_000_000))
    with SandboxServer(SandboxConfig(data=data)) as server:
        home = tmp_path / "home"
        env = {**server.env(), "D365SNOW_HOME": str(home)}
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            yield Connector(server, home, env)
