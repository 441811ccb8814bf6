"""The outage family (issue 16): F&O or ServiceNow down, for longer than every retry, at each stage of a sync cycle
(extract, push, invoice lookup, header create, line create, write-back, status read), then healthy again.

One seeded sandbox goes through every stage in a seeded order; each stage's outage is either every request answered
503 or every connection refused (the seed picks the first, then they alternate, so one run covers both). Every
company accepts duplicate invoice numbers (VendorParameters AcceptDuplicate), and the create that meets the outage is
committed before its 503: only the natural-key lookup keeps the invoice single. For each stage: the outage cycle's
`d365-snow sync` exits 1 and the step that met the outage is the one that failed; within two healthy cycles the exact
end state holds (``endstate.verify_end_state``: every record once, nothing doubled, everything audited).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from d365_snow_assets.commands.runs import RUN_LOGGER
from d365_snow_assets.sandbox import server as sandbox_server
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer
from tests.chaos.endstate import verify_end_state
from tests.chaos.outage import STAGES, Gateway, Mode, Outage, OutageGate, Stage, StepFailures
from tests.chaos.session import FIGURES, SEED
from tests.defs.conftest import Connector
from tests.invoice_flow import outbound

# Every stage waits out the whole retry budget of the step that meets the outage, then up to two healthy cycles.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(2400)]

HEALTHY_CYCLES = 2
NEW_INVOICES = 3  # approved before each invoice stage, so the stage has work


@pytest.fixture
def outage_connector(tmp_path: Path, rng: random.Random) -> Iterator[tuple[Connector, Outage]]:
    """A seeded sandbox whose F&O and ServiceNow sit behind a gate (503s) and a gateway (refusals); the connector is
    pointed at the gateways."""
    gateways: dict[str, Gateway] = {}
    outage = Outage(gateways)
    service_app = sandbox_server._service_app
    handler = StepFailures(outage)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sandbox_server, "_service_app",
                   lambda world, service: OutageGate(service_app(world, service), service, outage))
        data = SandboxDataSize.small(seed=rng.randrange(1, 1_000_000))
        with SandboxServer(SandboxConfig(data=data)) as server:
            for service in ("d365", "snow"):
                gateways[service] = Gateway(urlsplit(server.url(service)).port or 0).start()
            home = tmp_path / "home"
            env = {**server.env(), "D365SNOW_HOME": str(home),
                   "D365SNOW_D365_URL": f"https://127.0.0.1:{gateways['d365'].port}",
                   "D365SNOW_SNOW_URL": f"https://127.0.0.1:{gateways['snow'].port}"}
            for name, value in env.items():
                mp.setenv(name, value)
            logging.getLogger(RUN_LOGGER).addHandler(handler)
            try:
                yield Connector(server, home, env), outage
            finally:
                logging.getLogger(RUN_LOGGER).removeHandler(handler)
                for gateway in gateways.values():
                    gateway.stop()


def _sync(connector: Connector) -> tuple[int, dict]:
    result = connector.cli("sync", "--json")
    assert result.exit_code in (0, 1), f"CHAOS_SEED={SEED}: {result.stdout}\n{result.stderr}"
    FIGURES["outage_family_cycles"] += 1
    return result.exit_code, orjson.loads(result.stdout)


def _prepare(connector: Connector, stage: Stage, rng: random.Random) -> None:
    """Give the stage something to do in the next cycle."""
    world = connector.server.world
    if stage.name == "push":  # a GL account renamed: shared, so always pushed
        account = rng.choice(world.d365.read('SELECT "ChartOfAccounts", "MainAccountId" FROM "MainAccounts"'))
        world.d365.admin_update("MainAccounts", account, {"Name": f"Renamed {rng.randrange(10**6)}"})
    elif stage.service == "snow" or stage.name in ("invoice lookup", "header create", "line create"):
        world.snow.approve_invoices(NEW_INVOICES)
        outbound.wait_for_approved(connector)


def _recover(connector: Connector) -> int:
    """Healthy cycles until the exact end state holds; returns how many it took (at most two)."""
    for cycle in range(1, HEALTHY_CYCLES + 1):
        code, summary = _sync(connector)
        try:
            assert code == 0, summary
            FIGURES["records_checked"] += verify_end_state(connector)
        except AssertionError:
            if cycle == HEALTHY_CYCLES:
                raise
            continue
        return cycle
    raise AssertionError("unreachable")


def test_each_system_down_at_each_stage_of_a_cycle_then_healthy(outage_connector: tuple[Connector, Outage],
                                                               rng: random.Random) -> None:
    connector, outage = outage_connector
    connector.server.world.d365.set_duplicate_check("AcceptDuplicate")
    _recover(connector)  # the first sync: everything there once
    stages = list(STAGES)
    rng.shuffle(stages)
    modes: tuple[Mode, Mode] = ("503", "refused") if rng.random() < 0.5 else ("refused", "503")
    for i, stage in enumerate(stages):
        mode = modes[i % 2]
        _prepare(connector, stage, rng)
        outage.arm(stage, mode)
        began = time.monotonic()
        code, summary = _sync(connector)
        outage.disarm()
        where = f"CHAOS_SEED={SEED}: {stage.name} ({stage.service} {mode})"
        assert outage.started, f"{where}: the cycle never reached the stage"
        assert outage.failed_step is not None and outage.failed_step.startswith(stage.step), (
            f"{where}: {outage.failed_step} failed, not {stage.step}")
        assert code == 1, f"{where}: {summary}"
        FIGURES[f"outage_s_{stage.name.replace(' ', '_')}"] = round(time.monotonic() - began)
        FIGURES["outage_stages"] += 1
        FIGURES[f"outages_{mode}"] += 1
        FIGURES["healthy_cycles_to_recover_max"] = max(FIGURES["healthy_cycles_to_recover_max"], _recover(connector))
    FIGURES["outage_503_answers"] += outage.answered_503
