"""End to end: the sandbox F&O posts an invoice and delivers its business event to the receiver; and the CLI."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.commands.events import app
from d365_snow_assets.events import EventSpool
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer

from .conftest import SECRET, envelope


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small())) as server:
        yield server


def test_posted_invoice_event_lands_in_spool(sandbox, receiver):
    ca = ssl.create_default_context(cafile=str(sandbox.tls.ca_pem))
    with httpx.Client(base_url=sandbox.d365_url, verify=ca, timeout=30) as admin:
        resp = admin.post("/admin/d365/events/endpoints", json={"url": receiver.url})
        assert resp.status_code == 200, resp.text
    state = sandbox.world.d365
    vendor = state.read("SELECT VendorAccountNumber FROM VendorsV2 WHERE dataAreaId = 'usmf' AND "
                        "OnHoldStatus NOT IN ('All', 'Invoice') ORDER BY 1 LIMIT 1")[0]["VendorAccountNumber"]
    key = state.admin_insert("VendorInvoiceHeaders", {
        "dataAreaId": "usmf", "InvoiceNumber": "EVT-1", "InvoiceAccount": vendor, "Currency": "USD",
        "InvoiceDate": "2025-05-01T12:00:00Z", "Date": "2025-05-01T12:00:00Z", "DueDate": "2025-05-31T12:00:00Z",
        "ImportedAmount": 1250.0, "ImportedSalesTax": 0})
    result = state.post_invoices([key["HeaderReference"]])
    [fired] = result["events"]
    assert state.events.wait_idle(30) and state.events.errors == []

    [event] = receiver.spool.pending(10)
    assert event.business_event_id == "VendorInvoicePostedBusinessEvent"
    assert (event.event_id, event.control_number, event.legal_entity) == (fired["EventId"], fired["ControlNumber"],
                                                                          "usmf")
    assert event.payload["InvoiceId"] == "EVT-1" and event.payload["InvoiceAccount"] == vendor


def test_serve_refuses_to_start_without_a_usable_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("D365SNOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("D365SNOW_EVENTS_SECRET", raising=False)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "D365SNOW_EVENTS_SECRET is not set" in result.stderr
    monkeypatch.setenv("D365SNOW_EVENTS_SECRET", "short")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "shorter than" in result.stderr and "short" not in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_spools_under_home_and_never_prints_the_secret(tmp_path):
    home, port = tmp_path / "home", _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("D365SNOW_")}
    env.update({"D365SNOW_HOME": str(home), "D365SNOW_EVENTS_SECRET": SECRET, "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-c", "from d365_snow_assets.commands.events import app; app()", "serve", "--port",
         str(port)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "events serve did not start"
            time.sleep(0.1)
        event = envelope()
        assert httpx.post(f"{base}/events/{SECRET}", content=orjson.dumps(event), timeout=10).status_code == 200
        assert httpx.post(f"{base}/events/{SECRET[:-3]}", content=orjson.dumps(event), timeout=10).status_code == 404
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert "/events/<D365SNOW_EVENTS_SECRET>" in output and "/events/*** 200" in output
    assert SECRET[:-3] not in output
    [spooled] = EventSpool(Path(home) / "events.sqlite").pending(10)
    assert spooled.event_id == event["EventId"]
