"""Section 2: push supplier rows to ServiceNow. Our insertMultiple path vs record-at-a-time.

Record-at-a-time is plain httpx, one POST per row to the single-row Import Set API (``/api/now/import/<staging>``,
the same transform map and coalesce as insertMultiple), one keep-alive connection and an OAuth bearer token: what
a script would do. pysnow 0.7.17 was tried first: it installs on Python 3.11 only by pinning ``pytz<2020``, which
would downgrade the pytz that Dagster and dlt use, so it is not a bench dependency.

``python -m bench.push CONTENDER ROWS OFFSET WINDOW_S [BUDGET_S]`` runs one contender in a child process and
prints JSON.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
from typing import Any

STAGING = "sn_fcms_intg_imp_supplier"


def supplier_rows(n: int, offset: int = 0) -> list[dict[str, str]]:
    """``n`` distinct supplier staging rows by documented label (a new key each, so every row is an insert)."""
    return [{"ERP source": "D365FO", "ERP company code": f"BENCH-{i:08d}", "Legal name": f"Bench Supplier {i}",
             "Legal entities": "USMF", "Accepted purchasing currency": "USD", "Payment term": "Net30",
             "Tax id": f"TX{i:09d}", "Primary phone number": "+1 555 0100", "Street address": f"{i} Main Street",
             "City": "Seattle", "State / Province": "WA", "Zip / Postal code": "98052", "Country": "US",
             "Status": "active"} for i in range(offset, offset + n)]


def _by_column(row: dict[str, str]) -> dict[str, str]:
    """A label-keyed row keyed by the documented default column names, as the single-row Import Set API takes it
    (the sandbox's documented instance uses them)."""
    from d365_snow_assets.discovery.documented import infer_element

    return {infer_element(label): value for label, value in row.items()}


def _align(window_s: float) -> None:
    """Start at a rate-limit window boundary (same clock as the sandbox), so a run is not credited with a window
    another run had half used."""
    if window_s:
        time.sleep(window_s - time.time() % window_s + 0.01)


def ours(n: int, offset: int, window_s: float) -> dict[str, Any]:
    """ServiceNowClient.insert_multiple as sync.push calls it: CHUNK_ROWS rows per call, PARALLEL_BATCHES batches
    in flight, keys by label (the instance's documented insertMultiple default)."""
    from d365_snow_assets.clients.servicenow import ServiceNowClient
    from d365_snow_assets.settings import load_settings
    from d365_snow_assets.sync.push import CHUNK_ROWS, PARALLEL_BATCHES

    rows = supplier_rows(n, offset)
    with ServiceNowClient(load_settings(require=["snow"], use_store=False)) as client:
        client.ensure_fresh()
        _align(window_s)
        start = time.perf_counter()
        results = []
        for at in range(0, n, CHUNK_ROWS):
            results += client.insert_multiple(STAGING, rows[at:at + CHUNK_ROWS], parallel=PARALLEL_BATCHES)
        seconds = time.perf_counter() - start
        stats = client.transport.stats
    inserted = sum(1 for r in results if r.status == "inserted")
    return {"rows": n, "inserted": inserted, "seconds": seconds, "requests": stats.requests - 1,
            "throttled": stats.throttled}


def record_at_a_time(n: int, offset: int, window_s: float, budget_s: float) -> dict[str, Any]:
    """One POST per row; stops after ``budget_s`` (its rate is what is compared, and 50,000 single POSTs would
    take minutes)."""
    import httpx

    from d365_snow_assets.settings import load_settings

    settings = load_settings(require=["snow"], use_store=False)
    base = settings.require("snow_url")
    verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
    with httpx.Client(verify=verify, timeout=60) as http:
        token = http.post(f"{base}/oauth_token.do", data={
            "grant_type": "client_credentials", "client_id": settings.snow_client_id,
            "client_secret": settings.secret("snow_client_secret")}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        sent = inserted = throttled = 0
        _align(window_s)
        start = time.perf_counter()
        for row in supplier_rows(n, offset):
            while True:
                response = http.post(f"{base}/api/now/import/{STAGING}", json=_by_column(row), headers=headers)
                if response.status_code != 429:
                    break
                # What a careful script does: honour Retry-After.
                throttled += 1
                time.sleep(float(response.headers.get("retry-after", "1")))
            response.raise_for_status()
            sent += 1
            inserted += response.json()["result"][0]["status"] == "inserted"
            if time.perf_counter() - start > budget_s:
                break
        seconds = time.perf_counter() - start
    return {"rows": sent, "inserted": inserted, "seconds": seconds, "requests": sent + throttled,
            "throttled": throttled}


def main() -> None:
    contender, n, offset, window_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    out = ours(n, offset, window_s) if contender == "ours" else record_at_a_time(n, offset, window_s,
                                                                                 float(sys.argv[5]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
