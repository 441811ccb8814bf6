"""DuckDB warehouse (DESIGN §7): F&O snapshots, pushed state, diff, cursors and the audit store. No HTTP."""

from d365_snow_assets.warehouse import audit, snapshots, state
from d365_snow_assets.warehouse.db import Warehouse, WarehouseBusy
from d365_snow_assets.warehouse.diff import DiffResult, business_key, payload_columns
from d365_snow_assets.warehouse.exclusive import ExclusiveBusy
from d365_snow_assets.warehouse.snapshots import SnapshotInfo

__all__ = [
    "DiffResult", "ExclusiveBusy", "SnapshotInfo", "Warehouse", "WarehouseBusy", "audit", "business_key",
    "payload_columns", "snapshots", "state",
]
