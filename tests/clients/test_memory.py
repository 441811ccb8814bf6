"""A 200,000-row paged read is streamed: peak memory is bounded by a few pages, not by the row count."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer

from .conftest import settings_for

ROWS = 200_000
PAGE = 2_000
FIELDS = ["dataAreaId", "PurchaseOrderNumber", "LineNumber", "ItemNumber", "LineDescription", "LineAmount"]


@pytest.fixture(scope="module")
def big_server():
    size = SandboxDataSize(vendors=200, purchase_orders=20_000, po_lines=ROWS, approved_invoices=5)
    srv = SandboxServer(SandboxConfig(data=size, d365_max_page_size=PAGE)).start()
    try:
        yield srv
    finally:
        srv.stop()


def _peak(fn) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_paged_read_memory_is_flat(big_server):
    with D365Client(settings_for(big_server)) as client:
        client.token()
        one_page, _ = _peak(lambda: len(next(client.iter_pages("PurchaseOrderLinesV2", select=FIELDS))))

        def stream() -> int:
            return sum(len(page) for page in client.iter_pages("PurchaseOrderLinesV2", select=FIELDS))

        peak, rows = _peak(stream)
    assert rows == ROWS
    # 100 pages went through; holding them would cost ~100× one page. Allow a few pages (the sandbox server runs
    # in this process and is traced too).
    assert peak < 4 * one_page, (peak, one_page)
