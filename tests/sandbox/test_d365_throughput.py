"""Serving speed of the fake F&O: printed, never asserted (DESIGN §10: timings belong to bench/)."""

from __future__ import annotations

import ssl
import time

import httpx

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer


def test_serving_throughput():
    size = SandboxDataSize(vendors=2_000, purchase_orders=20_000, po_lines=200_000)
    with SandboxServer(SandboxConfig(data=size)) as server:
        creds = server.world.config.credentials
        verify = ssl.create_default_context(cafile=str(server.tls.ca_pem))
        token = httpx.post(f"{server.entra_url}/{creds.tenant_id}/oauth2/v2.0/token", verify=verify, data={
            "grant_type": "client_credentials", "client_id": creds.d365_client_id,
            "client_secret": creds.d365_client_secret, "scope": f"{server.d365_url}/.default"}).json()["access_token"]
        with httpx.Client(verify=verify, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            url: str | None = f"{server.d365_url}/data/PurchaseOrderLinesV2?cross-company=true"
            rows = 0
            start = time.perf_counter()
            while url:
                body = client.get(url).json()
                rows += len(body["value"])
                url = body.get("@odata.nextLink")
            elapsed = time.perf_counter() - start
    print(f"\nserved {rows:,} PO lines in {elapsed:.2f}s = {rows / elapsed:,.0f} rows/s (client parsing included)")
    assert rows == 200_000
