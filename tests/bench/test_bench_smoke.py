"""The bench runner end to end at a tiny scale: every section produces its figures. No timing is asserted
(DESIGN §10: timings belong to ``python -m bench``, never to the test suite)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("dlt", reason="the bench extra (dlt) is not installed")

# bench/ is a top-level directory of the repository, not part of the installed package. (This directory has no
# __init__.py on purpose: a regular package named tests/bench would shadow it.)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.__main__ import main


@pytest.mark.slow
def test_bench_runs_every_section_at_tiny_scale(tmp_path):
    out = tmp_path / "bench.json"
    report = main(["--scale", "0.005", "--repeats", "1", "--out", str(out)])
    names = {(f["section"], f["name"].split(" (")[0]) for f in report["figures"]}
    for expected in [("extract", "ours / dlt rows/s"), ("extract", "ceiling / ours time"),
                     ("extract", "sandbox ceiling rows/s"), ("push", "ours / record-at-a-time"),
                     ("push", "ours share of rule ceiling"), ("no-change", "ServiceNow writes"),
                     ("no-change", "CPU per 10k unchanged rows, marginal"), ("no-change", "fixed CPU per Dagster run"),
                     ("diff", "diff of 5,000 rows, one core"),
                     ("envelope", "envelope rows/s"), ("envelope", "ours share of the envelope's rows/s"),
                     ("envelope", "ours requests throttled"), ("envelope", "ours / ours as one stream rows/s"),
                     ("envelope", "dlt parallelized, read only"), ("envelope", "ours one stream rows/s")]:
        assert expected in names, expected
    for figure in report["figures"]:
        # The marginal CPU is a difference of two CPU times; at this scale the rows it spans cost less than the
        # run-to-run noise, so its sign means nothing here (at full scale the bench reports it with a target).
        if figure["name"].startswith("CPU per 10k unchanged rows, marginal"):
            assert math.isfinite(figure["value"])
        else:
            assert figure["value"] >= 0, figure
        assert figure["verdict"] in ("PASS", "MISS", "")
    assert json.loads(out.read_text())["figures"] == report["figures"]
    # The no-change cycle must not write to ServiceNow at any scale: a correctness property, not a timing.
    writes = next(f for f in report["figures"] if f["name"] == "ServiceNow writes (both cycles)")
    assert writes["value"] == 0
    # Both no-change cycles ran the same Dagster runs over different row counts (else the marginal is meaningless).
    small, large = report["raw"]["nochange"]["small"], report["raw"]["nochange"]["large"]
    assert small["runs"] == large["runs"] and large["rows"] > small["rows"]
    assert small["ok"] and large["ok"]
    assert len(small["cpu_s_each"]) == 1 and small["cpu_s"] == min(small["cpu_s_each"])
    # Every envelope contender read the whole legal entity, each from an empty window of the server-cost model.
    envelope = report["raw"]["envelope"]
    for contender in ("ours", "ours_one", "ours_cap16", "dlt"):
        assert envelope[contender]["rows"] == envelope["rows"], contender
        assert envelope[contender]["server"]["rows_served"] >= envelope["rows"], contender
    assert envelope["ours_one"]["server"]["peak_concurrency"] == 1
    assert envelope["ours"]["server"]["peak_concurrency"] > 1  # key ranges, read at once
