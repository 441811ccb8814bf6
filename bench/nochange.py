"""Section 3: a no-change cycle on the demo data. Child process: ``python -m bench.nochange [REPEATS]`` (sandbox
settings in the environment). Runs one full cycle to load, then REPEATS cycles with nothing changed in F&O, and
reports what they cost: requests per system in the first unchanged cycle (the sandbox's fault counters), writes to
ServiceNow in all of them (non-GET requests counted in the connector's transport) and the least CPU time of the
connector process over the unchanged cycles (the sandbox is another process). The least, because scheduler and
cache noise only ever adds time, and the marginal figure is a difference of two such times."""

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
    first = run_cycle(settings, instance, push=True)
    admin = httpx.Client(verify=ssl.create_default_context(cafile=str(settings.ca_bundle)), timeout=60)
    urls = {"d365": settings.d365_url, "snow": settings.require("snow_url")}
    for url in urls.values():
        admin.post(f"{url}/admin/faults", json={}).raise_for_status()  # zeroes the request counters
    writes.clear()
    cpu_times: list[float] = []
    walls: list[float] = []
    requests: dict[str, int] = {}
    outcomes = list(first)
    for _ in range(max(int(sys.argv[1]) if len(sys.argv) > 1 else 1, 1)):
        cpu, wall = time.process_time(), time.perf_counter()
        second = run_cycle(settings, instance, push=True)
        cpu_times.append(time.process_time() - cpu)
        outcomes += second
        walls.append(time.perf_counter() - wall)
        requests = requests or {name: admin.get(f"{url}/admin/faults").json()["counters"]["requests"]
                                for name, url in urls.items()}
    rows = sum(int(meta.get("dagster/row_count", 0)) for outcome in second
               for key, meta in outcome.materializations.items() if key.startswith("d365/"))
    pushed = {key: meta.get("pushed", meta.get("sent")) for outcome in second
              for key, meta in outcome.materializations.items() if key.startswith("servicenow/")}
    print(json.dumps({"runs": len(second), "ok": all(o.success for o in outcomes), "rows": rows,
                      "cpu_s": min(cpu_times), "cpu_s_each": cpu_times, "wall_s": min(walls), "requests": requests,
                      "snow_writes": writes.get("ServiceNow", 0), "d365_writes": writes.get("F&O", 0),
                      "pushed": pushed}))


if __name__ == "__main__":
    main()
