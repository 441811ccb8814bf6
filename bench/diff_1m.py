"""Diff of 1,000,000 order lines against pushed state on one core (DESIGN §10: ≤ 2 s). Prints; asserts nothing.

Workload: pushed state holds 1M keys; the new staging frame has 1% changed rows, 1% new rows and 1% of the old
keys gone, so the diff returns ~10k inserts, ~10k changes, ~10k deactivations and counts ~980k unchanged.
"""

from __future__ import annotations

import os

# One core for both engines: polars reads this at import time, DuckDB gets threads=1 below.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from d365_snow_assets.mapping.targets import ORDER_LINE
from d365_snow_assets.warehouse import Warehouse, state
from d365_snow_assets.warehouse import diff as diff_module


def staging(n: int, offset: int = 0, changed_every: int = 0) -> pl.DataFrame:
    i = pl.int_range(offset, offset + n, eager=True)
    price = (i % 997).cast(pl.String) + ".25"
    if changed_every:
        price = pl.when(i % changed_every == 0).then(pl.lit("1.00")).otherwise(price)
        price = pl.select(price).to_series()
    le = pl.when(i % 3 == 0).then(pl.lit("USMF")).otherwise(pl.lit("DEMF"))
    return pl.DataFrame({"i": i}).select(
        pl.lit("D365FO").alias("ERP source"), le.alias("Legal entity"),
        pl.format("PO-{}", pl.col("i") // 10).alias("ERP PO number"),
        (pl.col("i") % 10).cast(pl.String).alias("ERP PO line number"),
        pl.format("ITEM-{}", pl.col("i") % 5000).alias("Product name"),
        (pl.col("i") % 50).cast(pl.String).alias("Purchase quantity"), pl.lit("ea").alias("Unit"),
        price.alias("Unit price"), pl.lit("100.00").alias("Total line amount"),
        pl.lit("2026-07-01").alias("Expected delivery date"), pl.lit("600100").alias("General Ledger Account"),
        pl.lit("007").alias("Cost center"), pl.lit("Backorder").alias("Status"),
    )


def run(n: int, repeats: int = 3) -> dict:
    """Seconds for the fastest of ``repeats`` diffs of ``n`` staging rows against ``n`` pushed keys, on one
    thread, plus the counts. The fastest, as elsewhere in bench/: a shared machine's noise only ever adds time."""
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(Path(tmp) / "bench.duckdb", threads=1)
        old = staging(n)
        with wh.writer() as con:
            first = diff_module.diff(con, ORDER_LINE, old, erp_source="D365FO", legal_entities=["usmf", "demf"])
            state.record_push_results(con, ORDER_LINE.target_table,
                                      first.inserts.with_columns(outcome=pl.lit("inserted")))
        gone = max(n // 100, 1)
        new = pl.concat([staging(n - gone, offset=gone, changed_every=100), staging(gone, offset=n)])
        with wh.reader() as con:
            con.execute("SET threads = 1")
            each = []
            for _ in range(repeats):
                start = time.perf_counter()
                result = diff_module.diff(con, ORDER_LINE, new, erp_source="D365FO",
                                          legal_entities=["usmf", "demf"])
                each.append(time.perf_counter() - start)
    return {"rows": new.height, "pushed_keys": n, "seconds": min(each), "seconds_each": each,
            "counts": result.counts}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = run(n)
    if "--json" in sys.argv:
        print(json.dumps(out, default=str))
        return
    print(f"diff of {out['rows']:,} staging rows vs {n:,} pushed keys on 1 thread: {out['seconds']:.2f} s  "
          f"{out['counts']}")


if __name__ == "__main__":
    main()
