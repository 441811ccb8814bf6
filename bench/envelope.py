"""Section "envelope": one legal entity's PO lines read within F&O's service envelope (DESIGN §10).

The sandbox's F&O runs its server-cost model and user-based limits (d365_snow_assets/sandbox/d365/envelope.py):
150 ms per request + 0.25 ms per row served, 52 concurrent requests, 1,200 s of execution time per 300 s. The
model runs at half speed (``TIME_SCALE``: every duration × 0.5) and its window is a tenth of F&O's (30 s of
F&O time with 120 s of execution, the same 4 execution-seconds per second), so that a 1M-row read spans several
windows and what is measured is the steady state of the envelope, not the burst a fresh 300 s window allows. The
envelope's rows/s is then 4 ÷ the server time per row of a full 10,000-row page.

Contenders, each in its own child process (``python -m bench.envelope CONTENDER WORKDIR``) against the same
sandbox process, one after another:
- ``ours``: the extract asset's body (ExtractSpec.pages → Warehouse.write_snapshot), adaptive up to the default
  D365SNOW_D365_MAX_CONCURRENCY of 4;
- ``ours_one``: the same with D365SNOW_D365_MAX_CONCURRENCY=1, one nextLink stream as before key ranges;
- ``ours_cap16``: the same with a cap of 16, above the envelope: the adaptive gate has to find the envelope itself;
- ``dlt``: dlt's ``rest_api`` as a data engineer would parallelize one big read: the ``$count``, ten ``$skip``/
  ``$top`` slices of it (ordered by the key), one resource each, ``parallelized`` with dlt's default five workers.
  Only its extract step is timed (the read through the envelope): its normalize and load steps need about 3.6 GB
  per 100,000 rows here (bench/extract.py), which 1M rows would not fit.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from bench.common import contender_main
from bench.extract import ENTITY, _settings, dlt_po_lines

LEGAL_ENTITY = "usmf"
PAGE = 10_000            # F&O's page size (reference/d365.md §2); the model's page cost assumes it
TIME_SCALE = 0.5
WINDOW_S = 30.0          # F&O seconds (a tenth of the real 300 s) ...
EXECUTION_LIMIT_S = 120.0  # ... with the real ratio: 4 execution-seconds per second
DLT_SLICES = 10


def profile() -> dict[str, Any]:
    """The envelope profile the section sets (EnvelopeProfile fields)."""
    return {"enabled": True, "time_scale": TIME_SCALE, "window_s": WINDOW_S, "execution_limit_s": EXECUTION_LIMIT_S}


def envelope_rows_per_s(request_ms: float = 150.0, row_ms: float = 0.25) -> float:
    """Rows per wall second the envelope allows at full pages: execution-seconds per second ÷ server time per row."""
    per_row_s = (request_ms / 1000 + row_ms / 1000 * PAGE) / PAGE * TIME_SCALE
    return (EXECUTION_LIMIT_S / WINDOW_S) / per_row_s


def ours(workdir: Path) -> dict[str, Any]:
    """One legal entity's PO lines through the extract asset's body, a first load into a fresh warehouse."""
    from d365_snow_assets.clients.d365 import D365Client
    from d365_snow_assets.defs.d365_extract.specs import EXTRACTS
    from d365_snow_assets.sync.targets import load_mappings
    from d365_snow_assets.warehouse import Warehouse

    settings = _settings()
    spec = next(s for s in EXTRACTS if s.entity_set == ENTITY)
    warehouse = Warehouse(workdir / "ours.duckdb")
    with D365Client(settings) as client:
        client.token()  # token acquisition is not extraction
        start = time.perf_counter()
        info = warehouse.write_snapshot(ENTITY, LEGAL_ENTITY, spec.pages(client, LEGAL_ENTITY, load_mappings()),
                                        spec.key_columns)
        seconds = time.perf_counter() - start
        gate = client.reads.stats
    return {"rows": info.rows, "seconds": seconds, "requests": client.transport.stats.requests,
            "throttled_seen": client.transport.stats.throttled, "streams_peak": gate.peak,
            "limit_changes": len(gate.changes), "limit_cuts_429": gate.throttled_decreases,
            "limit_cuts_latency": gate.latency_decreases}


def dlt_read(workdir: Path) -> dict[str, Any]:
    """dlt's extract step over ten $skip/$top slices of the $count, parallelized."""
    from d365_snow_assets.clients.d365 import D365Client

    settings = _settings()
    with D365Client(settings) as client:
        total = int(client.transport.request(
            "GET", f"{settings.d365_odata_root}/{ENTITY}/$count", auth=client.tokens,
            params={"cross-company": "true", "$filter": f"dataAreaId eq '{LEGAL_ENTITY}'"}).text)
    size = math.ceil(total / DLT_SLICES)
    slices = {str(i): {"$filter": f"dataAreaId eq '{LEGAL_ENTITY}'", "$orderby": "PurchaseOrderNumber,LineNumber",
                       "$top": str(size), "$skip": str(i * size)} for i in range(DLT_SLICES)}
    pipeline, source = dlt_po_lines(workdir, slices)
    start = time.perf_counter()
    info = pipeline.extract(source)
    seconds = time.perf_counter() - start
    rows = sum(step["table_metrics"]["po_lines"].items_count for metrics in info.metrics.values()
               for step in metrics if "po_lines" in step["table_metrics"])
    return {"rows": rows, "seconds": seconds}


CONTENDERS = {"ours": ours, "ours_one": ours, "ours_cap16": ours, "dlt": dlt_read}
SETTINGS = {"ours": {}, "ours_one": {"D365SNOW_D365_MAX_CONCURRENCY": "1"},
            "ours_cap16": {"D365SNOW_D365_MAX_CONCURRENCY": "16"}, "dlt": {}}


if __name__ == "__main__":
    contender_main(CONTENDERS)
