"""The production profile end to end on a real PostgreSQL-backed Dagster instance (issue 9).

deploy/dagster.yaml and deploy/workspace.yaml are used verbatim. The test proves that nothing in the project assumes
SQLite: the CLI cycle, dynamic partitions, schedules, the run queue (QueuedRunCoordinator + a real dagster-daemon +
a gRPC code server launching run workers) and the housekeeping SQL all run against Postgres.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.definitions import defs
from d365_snow_assets.defs.housekeeping.pruning import EventRetention, delete_old_runs, prune_event_logs
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer

from .conftest import Postgres

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _wait(predicate, what: str, timeout: float, procs: dict[str, subprocess.Popen] | None = None,
          logs: Path | None = None):
    """Poll until ``predicate()`` is truthy; fail with the service logs when a service died or time ran out."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        value = predicate()
        if value:
            return value
        dead = {name: p.returncode for name, p in (procs or {}).items() if p.poll() is not None}
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
                              for f in sorted(logs.glob("*.log"))) if logs else ""
            pytest.fail(f"{what}: {'services exited ' + str(dead) if dead else f'not within {timeout:.0f} s'}\n"
                        f"{tails}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


@pytest.fixture
def production_home(postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A sandbox plus a connector home whose Dagster instance is deploy/dagster.yaml on the test's Postgres."""
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small())) as server:
        home = tmp_path / "home"
        (home / "dagster").mkdir(parents=True)
        # StatePaths.ensure() keeps an existing dagster.yaml, so the CLI runs on the production config.
        shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster" / "dagster.yaml")
        env = {**server.env(), **postgres.dagster_env(), "D365SNOW_HOME": str(home),
               "DAGSTER_HOME": str(home / "dagster"), "D365SNOW_CODE_SERVER_HOST": "127.0.0.1",
               "D365SNOW_CODE_SERVER_PORT": str(_free_port())}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield env
        postgres.recreate_database()  # the next test starts from an empty instance


class _Services:
    """A gRPC code server and a dagster-daemon, as deploy/systemd runs them, stopped at the end of the test."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
                                            start_new_session=True)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_full_cycle_schedules_and_run_queue_on_postgres(postgres: Postgres, production_home: dict[str, str],
                                                        tmp_path: Path) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    legal_entities = production_home["D365SNOW_LEGAL_ENTITIES"].split(",")

    # 1. The CLI's full cycle, in-process, into the Postgres instance.
    result = CliRunner().invoke(app, ["sync", "--json"], env=production_home, catch_exceptions=False)
    assert result.exit_code == 0, f"sync failed: {result.stdout}\n{result.stderr}"
    summary = orjson.loads(result.stdout)
    assert summary["ok"] and summary["pushed"], summary

    instance = dg.DagsterInstance.get()
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    cli_runs = instance.get_runs(dg.RunsFilter(tags={"d365snow/launched_by": "cli"}))
    # The cycle's shape belongs to commands/runs.py; here it only matters that every run of it landed in Postgres.
    assert {r.tags.get("dagster/partition") for r in cli_runs if r.job_name == "sync_legal_entity"} \
        == set(legal_entities)
    assert any(r.job_name == "sync_reference_data" for r in cli_runs)
    assert {r.status for r in cli_runs} == {dg.DagsterRunStatus.SUCCESS}
    assert sorted(instance.get_dynamic_partitions("legal_entity")) == sorted(legal_entities)
    # Per-company assets materialized once per legal entity; suppliers (one per vendor account, shared by the
    # companies) once for all.
    orders = dg.AssetKey(["servicenow", "sn_shop_purchase_order"])
    assert instance.get_materialized_partitions(orders) == set(legal_entities)
    supplier = dg.AssetKey(["servicenow", "sn_fin_supplier"])
    assert instance.get_latest_materialization_event(supplier) is not None
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == len(cli_runs)
        cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cur.fetchone()[0] > 0
    # Nothing fell back to a SQLite file next to the instance.
    assert not [p for p in (tmp_path / "home" / "dagster").rglob("*") if p.suffix in {".db", ".sqlite"}]

    # 2. Automation loads against this instance: the housekeeping schedule is off by default and its tick asks for
    #    one housekeeping run with the documented defaults.
    definitions = defs()
    schedule = definitions.resolve_schedule_def("housekeeping_daily")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    tick_time = datetime(2026, 1, 1, 3, 30, tzinfo=UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick_time) as context:
        tick = schedule.evaluate_tick(context)
    assert tick.run_requests and len(tick.run_requests) == 1
    assert schedule.job_name == "housekeeping"
    for sensor in definitions.sensors or []:
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED, sensor.name

    # 3. The run queue: runs submitted through the QueuedRunCoordinator wait until a real dagster-daemon
    #    dequeues them and launches them on the gRPC code server from deploy/workspace.yaml.
    services = _Services(tmp_path)
    try:
        port = os.environ["D365SNOW_CODE_SERVER_PORT"]
        services.start("code-server", [str(BIN / "dagster"), "code-server", "start", "-m",
                                       "d365_snow_assets.definitions", "--location-name", "d365_snow_assets",
                                       "-h", "127.0.0.1", "-p", port])
        _wait(lambda: _code_server_up(int(port)), "code server answering", 120, services.procs, tmp_path)

        submitted = {"housekeeping": _launch(["-j", "housekeeping"])}
        for le in legal_entities[:2]:
            submitted[le] = _launch(["-j", "sync_legal_entity", "--tags", orjson.dumps({"dagster/partition": le})
                                     .decode()])
        runs = {name: instance.get_run_by_id(run_id) for name, run_id in submitted.items()}
        assert {r.status for r in runs.values()} == {dg.DagsterRunStatus.QUEUED}, runs  # no daemon yet

        services.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(DEPLOY / "workspace.yaml")])

        def all_finished() -> bool:
            statuses = [instance.get_run_by_id(run_id).status for run_id in submitted.values()]
            return all(s in {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                             dg.DagsterRunStatus.CANCELED} for s in statuses)

        _wait(all_finished, "queued runs finishing", 600, services.procs, tmp_path)
        for name, run_id in submitted.items():
            run = instance.get_run_by_id(run_id)
            events = {e.dagster_event_type for e in instance.all_logs(run_id) if e.dagster_event_type}
            assert run.status == dg.DagsterRunStatus.SUCCESS, (name, _failure(instance, run_id))
            assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING} <= events, name
    finally:
        services.stop()

    housekeeping = _step_metadata(instance, submitted["housekeeping"])
    assert housekeeping["prune_dagster_database"]["storage"] == "postgresql"
    assert housekeeping["purge_audit_store"]["audit_rows_deleted"] == 0  # everything is younger than 400 days
    assert housekeeping["purge_audit_store"]["audit_rows_remaining"] > 0

    # 4. The database-tuning SQL on Postgres: as seen 61 days from now, bookkeeping events and log lines go,
    #    materializations and run outcomes stay.
    later = datetime.now(UTC) + timedelta(days=61)
    materializations = _count(postgres, "dagster_event_type = 'ASSET_MATERIALIZATION'")
    would = prune_event_logs(instance, EventRetention(), dry_run=True, now=later)
    assert would["unimportant_events"] > 0 and would["info_logs"] > 0, would
    deleted = prune_event_logs(instance, EventRetention(), batch_size=100, now=later)
    assert deleted == would
    assert prune_event_logs(instance, EventRetention(), dry_run=True, now=later) == dict.fromkeys(would, 0)
    assert _count(postgres, "dagster_event_type = 'ASSET_MATERIALIZATION'") == materializations
    assert _count(postgres, "dagster_event_type = 'ENGINE_EVENT'") == 0
    assert _count(postgres, "dagster_event_type = 'PIPELINE_SUCCESS'") == len(cli_runs) + len(submitted)

    # ... and 401 days from now, whole runs go through the public API, nothing in progress is touched.
    total = len(cli_runs) + len(submitted)
    assert delete_old_runs(instance, 400, dry_run=True) == 0
    assert delete_old_runs(instance, 400, now=datetime.now(UTC) + timedelta(days=401), max_runs=2) == 2
    assert instance.get_runs_count() == total - 2


def _code_server_up(port: int) -> bool:
    from dagster._grpc.client import DagsterGrpcClient

    try:
        DagsterGrpcClient(port=port, host="127.0.0.1").ping("")
    except Exception:
        return False
    return True


def _launch(args: list[str]) -> str:
    """`dagster job launch` as an operator would: it submits through the instance's run coordinator."""
    run_id = str(uuid.uuid4())
    cmd = [str(BIN / "dagster"), "job", "launch", "-w", str(DEPLOY / "workspace.yaml"), "-l", "d365_snow_assets",
           "--run-id", run_id, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return run_id


def _failure(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.message for e in instance.all_logs(run_id)
            if (e.dagster_event and e.dagster_event.is_failure) or e.level >= 40][-5:]


def _step_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
        data = entry.dagster_event.step_output_data
        found[entry.step_key] = {k: v.value for k, v in data.metadata.items()}
    return found


def _count(postgres: Postgres, where: str) -> int:
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM event_logs WHERE {where}")
        return int(cur.fetchone()[0])
