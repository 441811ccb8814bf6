"""Big F&O reads split into key ranges (clients/paging.py), against the sandbox over real sockets: the rows are
exactly F&O's, also while F&O changes underneath; an unchanged F&O gives the same bodies; 429s narrow the gate."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import orjson
import pytest

from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.d365.envelope import EnvelopeProfile
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.sandbox.server import SandboxServer

from .conftest import FakeSleep, settings_for

ENTITY = "PurchaseOrderLinesV2"
KEYS = ("dataAreaId", "PurchaseOrderNumber", "LineNumber")
SELECT = ["dataAreaId", "PurchaseOrderNumber", "LineNumber", "LineAmount"]
PAGE = 1000


@pytest.fixture(scope="module")
def big() -> Iterator[SandboxServer]:
    """One legal entity with 60,000 PO lines served 1,000 to a page: six key ranges of ten pages each."""
    size = SandboxDataSize(legal_entities=["usmf"], vendors=100, purchase_orders=6000, po_lines=60_000,
                           main_accounts=40, cost_centers=12, approved_invoices=0)
    server = SandboxServer(SandboxConfig(data=size)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh(big: SandboxServer) -> Iterator[None]:
    big.world.d365.reset()
    big.world.d365.set_page_size(PAGE)
    big.clear_faults()
    yield
    big.clear_faults()


def client(server: SandboxServer, sleep: FakeSleep | None = None, **settings: Any) -> D365Client:
    return D365Client(settings_for(server, **settings), **({"sleep": sleep} if sleep else {}))


def read(c: D365Client) -> list[bytes]:
    return list(c.iter_bodies(ENTITY, legal_entity="usmf", select=SELECT, keys=KEYS))


def keys_of(bodies: list[bytes]) -> list[tuple[str, int]]:
    return [(r["PurchaseOrderNumber"], r["LineNumber"]) for b in bodies for r in orjson.loads(b)["value"]]


def table(server: SandboxServer) -> list[tuple[str, int]]:
    return [(r["PurchaseOrderNumber"], r["LineNumber"]) for r in
            server.world.d365.read(f"SELECT PurchaseOrderNumber, LineNumber FROM {ENTITY} WHERE dataAreaId = 'usmf'")]


def test_a_big_read_is_read_in_key_ranges_and_equals_the_table(big):
    with client(big) as c:
        got = keys_of(read(c))
        assert c.reads.stats.peak > 1  # several streams at once
    assert len(got) == len(set(got)) == 60_000
    assert set(got) == set(table(big))
    served = big.world.faults["d365"].counters.requests
    # 1 count, 5 boundary probes, 6 ranges of 10 pages (counted as they are served); nothing read twice.
    assert served == 1 + 5 + 6 * 10


def test_one_stream_and_small_reads_stay_one_nextlink_chain(big):
    with client(big, d365_max_concurrency=1) as c:
        assert len(keys_of(read(c))) == 60_000
        assert c.reads.stats.peak == 1
    assert big.world.faults["d365"].counters.requests == 60  # the pages, no count, no probe
    big.clear_faults()
    with client(big) as c:  # 100 vendors: under PARALLEL_MIN_ROWS, so one count and then one chain
        bodies = list(c.iter_bodies("VendorsV2", legal_entity="usmf", keys=("dataAreaId", "VendorAccountNumber")))
    assert sum(len(orjson.loads(b)["value"]) for b in bodies) == 100
    assert big.world.faults["d365"].counters.requests == 1 + 1


def test_an_unchanged_fo_gives_the_same_bodies_in_the_same_order(big, tmp_path):
    from d365_snow_assets.defs.d365_extract.specs import EXTRACTS
    from d365_snow_assets.warehouse import Warehouse

    with client(big) as c:
        first = [hashlib.sha256(b).hexdigest() for b in read(c)]
    with client(big, d365_max_concurrency=3) as c:  # other streams, other timing, same ranges' bodies
        second = [hashlib.sha256(b).hexdigest() for b in read(c)]
    assert first == second
    # So the snapshot keeps itself when nothing changed, as it does for one nextLink stream.
    spec = next(s for s in EXTRACTS if s.entity_set == ENTITY)
    warehouse = Warehouse(tmp_path / "w.duckdb")
    with client(big) as c:
        loaded = warehouse.write_snapshot(ENTITY, "usmf", spec.pages(c, "usmf"), spec.key_columns)
        kept = warehouse.write_snapshot(ENTITY, "usmf", spec.pages(c, "usmf"), spec.key_columns)
    assert loaded.rows == 60_000 and not loaded.unchanged_bodies
    assert kept.unchanged_bodies and kept.rows == 60_000


def test_ranges_are_complete_under_concurrent_inserts_and_deletes(big, monkeypatch):
    """While a range's nextLink chain is under way, rows before its cursor are deleted in some ranges and inserted
    in others: skip-based pages then miss or repeat rows. Each range must notice (its counts disagree with what
    it received) and be read again, so the result is exactly F&O's rows afterwards, each once."""
    state = big.world.d365
    original = state.page_json
    mutated: set[str] = set()

    def page_json(es, qp, offset, limit):
        rows = original(es, qp, offset, limit)
        signature = qp.where + repr(qp.params)
        # A range's second page (a nextLink page of a query on the order number), once per range.
        if es.name == ENTITY and '"PurchaseOrderNumber"' in qp.where and offset == PAGE and limit == PAGE + 1 \
                and signature not in mutated:
            mutated.add(signature)
            head = [orjson.loads(r) for r in original(es, qp, 0, 3)]
            if len(mutated) % 2:   # delete three rows the chain has already passed: later rows move forward
                for row in head:
                    state.admin_delete(ENTITY, {"dataAreaId": "usmf", "PurchaseOrderNumber": row["PurchaseOrderNumber"],
                                                "LineNumber": row["LineNumber"]})
            else:                  # insert two before the cursor: later rows move back and would come twice
                for line in (9001, 9002):
                    state.admin_insert(ENTITY, {"dataAreaId": "usmf", "LineNumber": line, "ItemNumber": "NEW",
                                                "PurchaseOrderNumber": head[0]["PurchaseOrderNumber"]})
        return rows

    monkeypatch.setattr(state, "page_json", page_json)
    before = set(table(big))
    with client(big) as c:
        got = keys_of(read(c))
    after = table(big)
    assert len(mutated) == 6                       # every range was changed under its reader
    assert before != set(after)                    # rows did come and go
    assert len(got) == len(set(got))               # none twice
    assert sorted(got) == sorted(after)            # none missing, none deleted kept, every insert read


def test_gate_backs_off_on_injected_429s_and_the_read_stays_exact(big, monkeypatch):
    """A 429 storm (30% of F&O's answers, Retry-After 1 s, waited out by the shared transport on a recorded clock)
    during the first 20 pages: each 429 seen halves the gate's limit; once the storm is over it grows back one
    stream per round trip of pages."""
    big.set_faults("d365", FaultProfile(share_429=0.3, retry_after_s=1, seed=7))
    state, injector = big.world.d365, big.world.faults["d365"]
    # Pages take 50 ms of server time, so what the gate sees as latency is F&O's, not this machine's load.
    state.envelope.set(EnvelopeProfile(enabled=True, request_ms=50, row_ms=0, concurrent_limit=None,
                                       request_limit=None, execution_limit_s=None))
    original, served = state.page_json, [0]

    def page_json(es, qp, offset, limit):
        served[0] += 1
        if served[0] == 20:
            injector.profile = FaultProfile()  # the storm is over (its counters stay)
        return original(es, qp, offset, limit)

    monkeypatch.setattr(state, "page_json", page_json)
    sleep = FakeSleep()
    with client(big, sleep) as c:
        got = keys_of(read(c))
        stats = c.reads.stats
        throttled = c.transport.stats.throttled
    assert len(got) == len(set(got)) == 60_000 and set(got) == set(table(big))
    assert throttled == injector.counters.throttled > 0
    steps = list(pairwise([("start", 4), *stats.changes]))  # it starts four wide
    cuts = [(a, b) for (_, a), (why, b) in steps if why == "429"]
    grows = [(a, b) for (_, a), (why, b) in steps if why == "grow"]
    assert cuts and all(b == max(1, a // 2) for a, b in cuts)  # multiplicative: halved
    assert grows and all(b == a + 1 for a, b in grows)          # additive: one at a time
    assert stats.peak <= 4
    assert sleep.waits.count(1.0) == throttled                  # every 429's Retry-After was honoured


def test_a_read_is_split_only_when_the_gate_has_streams_to_spare(big):
    """The gate's width is shared by the client's reads: with D365SNOW_D365_MAX_CONCURRENCY=2 and another read in
    progress, a big read gets no stream of its own and stays one nextLink chain; alone it is split."""
    faults = big.world.faults["d365"]
    with client(big, d365_max_concurrency=2) as c:
        other = c.iter_bodies("VendorsV2", legal_entity="usmf", keys=("dataAreaId", "VendorAccountNumber"))
        next(other)                                   # in progress, holding its share of the gate
        big.clear_faults()
        assert len(set(keys_of(read(c)))) == 60_000
        assert faults.counters.requests == 60          # its pages only: no count, no probe, no range
        other.close()
        never_read = c.iter_bodies("VendorsV2", legal_entity="usmf")  # counts from the call on ...
        del never_read                                                 # ... until it is dropped, even unread
        gc.collect()
        big.clear_faults()
        assert len(set(keys_of(read(c)))) == 60_000
        assert faults.counters.requests > 60           # alone: counted, boundaries probed, read in ranges


def test_a_next_link_without_the_count_is_followed_by_a_count_of_the_range(big, monkeypatch):
    """F&O's nextLink is opaque: if one does not carry $count=true along, the range is counted at its end."""
    from d365_snow_assets.sandbox.d365.app import D365Service

    original = D365Service._next_link

    def next_link(self, es, query, base, skip, top):
        return original(self, es, [(k, v) for k, v in query if k != "$count"], base, skip, top)

    monkeypatch.setattr(D365Service, "_next_link", next_link)
    with client(big) as c:
        got = keys_of(read(c))
    assert len(got) == len(set(got)) == 60_000 and set(got) == set(table(big))
    # 1 count, 5 boundary probes, 6 ranges of 10 pages, and each range's count at its end.
    assert big.world.faults["d365"].counters.requests == 1 + 5 + 60 + 6
