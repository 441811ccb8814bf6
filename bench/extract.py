"""Section 1: extract F&O PO lines → DuckDB. Ours vs a dlt ``rest_api`` pipeline vs the sandbox ceiling.

Each contender runs in its own child process (``python -m bench.extract CONTENDER WORKDIR``) against the same
sandbox process, so its peak RSS is its own and it competes with the sandbox for the same two cores, as a
connector would with a co-located F&O.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import contender_main

ENTITY = "PurchaseOrderLinesV2"
PARALLEL = os.environ.get("BENCH_DLT_PARALLEL", "1") == "1"


def _settings() -> Any:
    from d365_snow_assets.settings import load_settings

    return load_settings(require=["d365"], use_store=False)


def _select() -> list[str]:
    from d365_snow_assets.defs.d365_extract.specs import EXTRACTS
    from d365_snow_assets.sync.targets import load_mappings

    spec = next(s for s in EXTRACTS if s.entity_set == ENTITY)
    return spec.select(load_mappings())


def ours(workdir: Path) -> dict[str, Any]:
    """The extract asset's body (ExtractSpec.pages → Warehouse.write_snapshot), one thread per legal entity. Each
    run has its own warehouse, so it is a first load: every page is parsed (and digested) as it arrives."""
    from d365_snow_assets.clients.d365 import D365Client
    from d365_snow_assets.defs.d365_extract.specs import EXTRACTS
    from d365_snow_assets.sync.targets import load_mappings
    from d365_snow_assets.warehouse import Warehouse

    settings = _settings()
    spec = next(s for s in EXTRACTS if s.entity_set == ENTITY)
    mappings = load_mappings()
    warehouse = Warehouse(workdir / "ours.duckdb")
    with D365Client(settings) as client:
        client.token()  # token acquisition is not extraction
        start = time.perf_counter()

        def one(le: str) -> int:
            return warehouse.write_snapshot(ENTITY, le, spec.pages(client, le, mappings), spec.key_columns).rows

        with ThreadPoolExecutor(len(settings.legal_entities)) as pool:
            rows = sum(pool.map(one, settings.legal_entities))
        seconds = time.perf_counter() - start
        gate = client.reads.stats
    return {"rows": rows, "seconds": seconds, "requests": client.transport.stats.requests,
            "gate_peak": gate.peak, "gate_cuts": gate.throttled_decreases + gate.latency_decreases}


def ceiling(workdir: Path) -> dict[str, Any]:
    """Raw GETs of the same pages, one stream per legal entity, following nextLink found by a byte search: the
    time the sandbox needs to serve the pages with no client work."""
    import httpx

    from d365_snow_assets.clients.d365 import EntraTokenProvider

    settings = _settings()
    token = EntraTokenProvider(settings).token()
    select = ",".join(_select())
    verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
    link = re.compile(rb'"@odata\.nextLink":"([^"]+)"')
    count_re = re.compile(rb'\{"')
    base = settings.d365_odata_root
    with httpx.Client(verify=verify, timeout=120, headers={"Authorization": f"Bearer {token}"},
                      limits=httpx.Limits(max_connections=16)) as http:
        start = time.perf_counter()

        def one(le: str) -> int:
            url: str | None = f"{base}/{ENTITY}"
            params: dict[str, str] | None = {"cross-company": "true", "$filter": f"dataAreaId eq '{le}'",
                                             "$select": select}
            rows = 0
            while url:
                body = http.get(url, params=params).content
                rows += len(count_re.findall(body)) - 1  # objects in the page, minus the envelope
                match = link.search(body)
                url, params = (match.group(1).decode().replace("\\/", "/"), None) if match else (None, None)
            return rows

        with ThreadPoolExecutor(len(settings.legal_entities)) as pool:
            rows = sum(pool.map(one, settings.legal_entities))
        seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds}


def dlt_po_lines(workdir: Path, slices: dict[str, dict[str, str]]) -> tuple[Any, Any]:
    """What a data engineer would write: dlt's ``rest_api`` source following ``@odata.nextLink`` (json_link),
    cross-company, a bearer token, into DuckDB; one resource per slice (name → extra query options), parallelized
    (dlt's documented performance knob). Returns the pipeline and the source."""
    os.environ["DLT_DATA_DIR"] = str(workdir / "dlt_data")
    os.environ["DLT_PROJECT_DIR"] = str(workdir)
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    settings = _settings()
    os.environ["REQUESTS_CA_BUNDLE"] = str(settings.ca_bundle)
    import dlt
    from dlt.sources.rest_api import rest_api_source

    from d365_snow_assets.clients.d365 import EntraTokenProvider

    token = EntraTokenProvider(settings).token()
    select = ",".join(_select())
    resources = [{
        "name": f"po_lines_{name}",
        "table_name": "po_lines",
        "endpoint": {"path": ENTITY, "data_selector": "value",
                     "params": {"cross-company": "true", "$select": select, **options},
                     "paginator": {"type": "json_link", "next_url_path": "['@odata.nextLink']"}},
    } for name, options in slices.items()]
    # The source-level flag: dlt 1.31 ignores "parallelized" in resource_defaults (checked: every resource was
    # then read one after another).
    source = rest_api_source({
        "client": {"base_url": settings.d365_odata_root + "/", "auth": {"type": "bearer", "token": token}},
        "resource_defaults": {"write_disposition": "append"},
        "resources": resources,
    }, parallelized=PARALLEL)
    pipeline = dlt.pipeline(pipeline_name="bench_dlt", destination=dlt.destinations.duckdb(
        str(workdir / "dlt.duckdb")), dataset_name="fno", pipelines_dir=str(workdir / "dlt_pipelines"))
    return pipeline, source


def dlt_pipeline(workdir: Path) -> dict[str, Any]:
    """dlt into DuckDB, one resource per legal entity (cross-company plus a dataAreaId filter)."""
    pipeline, source = dlt_po_lines(workdir, {le: {"$filter": f"dataAreaId eq '{le}'"}
                                              for le in _settings().legal_entities})
    start = time.perf_counter()
    info = pipeline.run(source)
    seconds = time.perf_counter() - start
    info.raise_on_failed_jobs()
    import duckdb

    with duckdb.connect(str(workdir / "dlt.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM fno.po_lines").fetchone()[0]  # type: ignore[index]
    return {"rows": rows, "seconds": seconds}


CONTENDERS = {"ours": ours, "dlt": dlt_pipeline, "ceiling": ceiling}


if __name__ == "__main__":
    contender_main(CONTENDERS)
