"""Section 3: the no-change cycle. Child process: ``python -m bench.nochange`` (sandbox settings in the environment),
driven line by line through :class:`bench.common.ChildSession`. It runs one full cycle to load, prints that it is
ready, then for every line on its standard input runs one more cycle with nothing changed in F&O and prints what
that cycle cost: requests per system (the sandbox's counters, zeroed after the load), writes to ServiceNow (non-GET
requests counted in the connector's transport) and the connector process's CPU time (the sandbox is another
process)."""

from __future__ import annotations

import json
import ssl
import sys
import time
from collections import Counter
from typing import Any

import httpx


def main() -> None:
    from d365_snow_assets.clients import transport
    from d365_snow_assets.commands.runs import open_instance, run_cycle
    from d365_snow_assets.settings import load_settings

    writes: Counter[str] = Counter()
    original = transport.Transport.request

    def counting(self: transport.Transport, method: str, url: str, **kwargs: Any) -> httpx.Response:
        # Token requests are POSTs that change nothing; everything else not a read is a write.
        if method.upper() not in ("GET", "HEAD") and not url.endswith("/oauth_token.do"):
            writes[self.service] += 1
        return original(self, method, url, **kwargs)

    transport.Transport.request = counting  # type: ignore[method-assign]
    settings = load_settings(use_store=False)
    instance = open_instance(settings)
    loaded = run_cycle(settings, instance, push=True)
    admin = httpx.Client(verify=ssl.create_default_context(cafile=str(settings.ca_bundle)), timeout=60)
    urls = {"d365": settings.d365_url, "snow": settings.require("snow_url")}
    print(json.dumps({"ready": True, "ok": all(o.success for o in loaded)}), flush=True)
    for _ in sys.stdin:
        for url in urls.values():
            admin.post(f"{url}/admin/faults", json={}).raise_for_status()  # zeroes the request counters
        writes.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        outcomes = run_cycle(settings, instance, push=True)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        requests = {name: admin.get(f"{url}/admin/faults").json()["counters"]["requests"]
                    for name, url in urls.items()}
        rows = sum(int(meta.get("dagster/row_count", 0)) for outcome in outcomes
                   for key, meta in outcome.materializations.items() if key.startswith("d365/"))
        print(json.dumps({"runs": len(outcomes), "ok": all(o.success for o in outcomes), "rows": rows,
                          "cpu_s": cpu, "wall_s": wall, "requests": requests,
                          "snow_writes": writes.get("ServiceNow", 0), "d365_writes": writes.get("F&O", 0)}),
              flush=True)


if __name__ == "__main__":
    main()
