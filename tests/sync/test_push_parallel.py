"""Which chunks sync.push lets travel as parallel insertMultiple batches (pure logic: a recording client)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from d365_snow_assets.clients.servicenow import ImportRowResult
from d365_snow_assets.discovery.binding import bind
from d365_snow_assets.discovery.documented import STAGING
from d365_snow_assets.discovery.model import Column, InstanceSchema, TableSchema
from d365_snow_assets.mapping.targets import ORDER
from d365_snow_assets.sync import push
from d365_snow_assets.warehouse.state import BUSINESS_KEY

_STAGING = TableSchema(ORDER.staging_table, tuple(Column(f.element, f.label, table=ORDER.staging_table)
                                                  for f in STAGING[ORDER.staging_table]))
BOUND = bind(ORDER, InstanceSchema("https://x", datetime.now(UTC), {ORDER.staging_table: _STAGING}))


class RecordingClient:
    def __init__(self) -> None:
        self.parallel: list[int] = []

    def insert_multiple(self, staging_table, rows, *, progress=None, parallel=1):
        self.parallel.append(parallel)
        return [ImportRowResult(status="inserted", target_sys_id=f"sys{i}", message=None, http_status=200)
                for i in range(len(rows))]


def _chunk(codes: list[str]) -> pl.DataFrame:
    return pl.DataFrame({c: ["x"] * len(codes) for c in ORDER.column_names}).with_columns(
        pl.Series("ERP PO number", codes), pl.Series(BUSINESS_KEY, [f"D365FO|USMF|{c}" for c in codes]))


def test_keys_that_differ_only_in_case_are_never_in_flight_together():
    client = RecordingClient()
    push._send(_chunk(["V1", "V2", "V3"]), BOUND, client, None)
    push._send(_chunk(["V1", "v1", "V3"]), BOUND, client, None)
    assert client.parallel == [push.PARALLEL_BATCHES, 1] and push.PARALLEL_BATCHES > 1
