"""`d365-snow sandbox serve` as a user runs it: a real subprocess, its printed settings, real HTTPS calls."""

from __future__ import annotations

import os
import shlex
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msal
import requests

CLI = [sys.executable, "-m", "d365_snow_assets.cli"]


def _read_settings(proc: subprocess.Popen[str], timeout_s: float = 120) -> dict[str, str]:
    settings: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline and len(settings) < 13:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            settings[name] = shlex.split(value)[0]
    return settings


def test_sandbox_serve_prints_working_settings(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "sandbox", "serve", "--entra-port", "0", "--d365-port", "0", "--snow-port", "0",
         "--state-dir", str(tmp_path / "sb"), "--vendors", "30", "--purchase-orders", "60", "--po-lines", "200",
         "--approved-invoices", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        env = _read_settings(proc)
        assert set(env) >= {"D365SNOW_D365_URL", "D365SNOW_D365_AUTHORITY", "D365SNOW_SNOW_URL", "D365SNOW_CA_BUNDLE",
                            "D365SNOW_D365_CLIENT_SECRET", "D365SNOW_SNOW_PASSWORD", "D365SNOW_LEGAL_ENTITIES"}
        ca = env["D365SNOW_CA_BUNDLE"]
        assert Path(ca).read_text().startswith("-----BEGIN CERTIFICATE-----")

        # F&O through a token from the sandbox's Entra ID, obtained by msal exactly as the connector will.
        session = requests.Session()
        session.trust_env = False
        session.verify = ca
        app = msal.ConfidentialClientApplication(
            env["D365SNOW_D365_CLIENT_ID"], client_credential=env["D365SNOW_D365_CLIENT_SECRET"],
            authority=f"{env['D365SNOW_D365_AUTHORITY']}/{env['D365SNOW_D365_TENANT_ID']}",
            instance_discovery=False, http_client=session)
        token = app.acquire_token_for_client([f"{env['D365SNOW_D365_URL']}/.default"])
        assert "access_token" in token, token
        with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=30) as client:
            vendors = client.get(f"{env['D365SNOW_D365_URL']}/data/VendorsV2",
                                 params={"cross-company": "true", "$count": "true", "$top": "1"},
                                 headers={"Authorization": f"Bearer {token['access_token']}"})
            assert vendors.status_code == 200
            assert vendors.json()["@odata.count"] == 30

            invoices = client.get(f"{env['D365SNOW_SNOW_URL']}/api/now/table/sn_spend_intg_outbound_invoice",
                                  auth=(env["D365SNOW_SNOW_USERNAME"], env["D365SNOW_SNOW_PASSWORD"]))
            assert invoices.status_code == 200
            # Approved invoices appear once the master data they reference has been pushed.
            assert invoices.json()["result"] == []
            assert client.get(f"{env['D365SNOW_SNOW_URL']}/admin/snow/invoices").json()["waiting"] == 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_sandbox_serve_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    result = subprocess.run([*CLI, "sandbox", "serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "loopback" in result.stderr
