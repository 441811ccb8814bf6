"""`d365-snow demo --small --ui`, as a newcomer starts it: after the cycles the Dagster UI comes up with its daemon, so
the Automation page can run the sensors (no "the sensor daemon is not running"), and Ctrl+C stops everything it
started."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import ARTIFACTS, _free_port

pytestmark = pytest.mark.slow

SENSOR_DAEMON_MISSING = "The sensor daemon is not running"
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"


def _session_processes(session: int) -> list[str]:
    """Command lines of the live processes in ``session`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:  # state, ppid, pgrp, session
            found.append(cmdline.strip())
    return found


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_demo_ui_runs_the_daemon_and_ctrl_c_stops_all_of_it(tmp_path: Path, browser_page) -> None:
    port = _free_port()
    binary = shutil.which("d365-snow", path=str(Path(sys.executable).parent)) or "d365-snow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("D365SNOW_", "DAGSTER_"))}
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen([binary, "demo", "--small", "--ui", "--ui-port", str(port), "--home",
                             str(tmp_path / "home")], env={**env, "COLUMNS": "100"}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # the demo's cycles, then the UI starting
        while not _answers(f"{base}/server_info"):
            assert demo.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-3000:]
            time.sleep(1)
        healthy: dict[str, bool] = {}
        deadline = time.monotonic() + 120  # a daemon's first heartbeat comes within seconds of its start
        while time.monotonic() < deadline and not (healthy.get("SENSOR") and healthy.get("BACKFILL")):
            body = httpx.post(f"{base}/graphql", json={"query": DAEMONS}, timeout=30).json()
            healthy = {s["daemonType"]: s["healthy"]
                       for s in body["data"]["instance"]["daemonHealth"]["allDaemonStatuses"]}
            time.sleep(1)
        assert healthy.get("SENSOR") and healthy.get("BACKFILL"), healthy

        page = browser_page
        page.goto(f"{base}/automation", wait_until="load")
        page.get_by_text("fno_poll", exact=True).first.click()  # the sensor's own page says whether it can run
        page.get_by_text("Latest tick").first.wait_for(state="visible")
        page.wait_for_timeout(2000)  # the daemon status loads after the page
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-ui-sensor.png"), full_page=True)
        assert page.get_by_text(SENSOR_DAEMON_MISSING).count() == 0  # tests/ui/test_dagster_ui.py: the control
    finally:
        # What Ctrl+C does when the demo runs in the background: SIGINT to the demo alone, which passes it on.
        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(timeout=120)
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
            log.close()
    output = (tmp_path / "demo.log").read_text()
    assert code == 0, output[-3000:]
    assert f"Dagster UI: http://127.0.0.1:{port}/runs" in output
    assert "superseded" not in output  # `dagster dev`'s advice to use `dg dev` is not the newcomer's business
    deadline = time.monotonic() + 30
    while _session_processes(demo.pid) and time.monotonic() < deadline:
        time.sleep(0.5)  # the webserver, daemon and code server exit after their parent
    assert _session_processes(demo.pid) == []
