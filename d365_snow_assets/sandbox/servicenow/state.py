"""The live state of the fake ServiceNow instance, and the Python API tests and admin routes drive it with."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import apo
from .encoded_query import CompiledQuery, Getter, compile_query, parse, sort_rows
from .ratelimit import RateLimiter
from .schema import OUTBOUND_INVOICE, build_tables
from .store import Clock, IdFactory, Table, utc_stamp

if TYPE_CHECKING:
    from ..config import SandboxConfig


@dataclass
class SnowSettings:
    """Run-time switches (initialised from :class:`SandboxConfig`, changed through ``/admin/snow/settings``)."""

    client_credentials_enabled: bool = True
    insert_multiple_async: bool = True
    acl_hidden_share: float = 0.0
    erp_source: str = "D365FO"
    # Seconds an async insertMultiple waits before transforming (the real scheduler picks it up "shortly after").
    async_delay_s: float = 0.05

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SnowState:
    """Tables, settings, rate limits and faults of one fake instance. Thread-safe through one re-entrant lock."""

    def __init__(self, config: SandboxConfig, d365: Any, *, clock: Clock = time.time) -> None:
        """``d365`` needs ``read(sql, params) -> list[dict]`` over the fake F&O tables (seeding); None seeds nothing."""
        self.config = config
        self.d365 = d365
        self.clock = clock
        self.lock = threading.RLock()
        self.settings = SnowSettings()
        self.rate_limiter = RateLimiter(clock=clock)
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the seeded state of ``config`` (tables, switches, rate limit, faults)."""
        cfg = self.config
        with self.lock:
            self.tables: dict[str, Table] = build_tables()
            self.ids = IdFactory(cfg.data.seed)
            self.settings = SnowSettings(client_credentials_enabled=cfg.snow_client_credentials_enabled,
                                         insert_multiple_async=cfg.snow_insert_multiple_async,
                                         acl_hidden_share=cfg.snow_acl_hidden_share)
            self.rate_limiter.set_rule(cfg.snow_rate_limit_per_hour, 3600)
            self.broken_gets: list[str] = []  # "cancelled" / "cut_off", one per coming Table API GET
            self.invalid_invoices: dict[str, list[str]] = {}  # outbound invoice sys_id -> reasons (kinds)
            self.payments_by_invoice: dict[str, set[str]] = {}
            self.open_import_sets: dict[str, str] = {}  # staging table -> sys_id of today's sync import set
            self.pending_imports: list[str] = []
            self.import_set_rows: dict[str, list[dict[str, str]]] = {}
            self.tables["sys_user"].insert(
                {"user_name": cfg.credentials.snow_username, "name": "D365 Integration", "active": "true",
                 "time_zone": "GMT", "email": "d365.integration@example.com"},
                sys_id=self.ids.sys_id(), stamp=self.stamp(), user="system")
            apo.seed(self, self.d365, cfg.data.approved_invoices)

    # -- basics -----------------------------------------------------------------------------------------------
    def stamp(self, offset_s: float = 0) -> str:
        return utc_stamp(self.clock() + offset_s)

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def is_acl_hidden(self, table: str, sys_id: str) -> bool:
        """Whether the integration user's (simulated) ACLs hide this outbound invoice: a stable hash of its
        sys_id, so the same rows stay hidden for the whole run."""
        share = self.settings.acl_hidden_share
        if table != OUTBOUND_INVOICE or share <= 0:
            return False
        digest = hashlib.sha256(f"acl:{sys_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < share

    def resolver(self, table: Table) -> Any:
        """field path (dot-walks through references) -> (getter, type), for the query compiler."""
        tables = self.tables

        def resolve(path: str) -> tuple[Getter, str] | None:
            parts = path.split(".")
            current = table
            hops: list[Table] = []
            for i, part in enumerate(parts):
                if not current.has_field(part):
                    return None
                if i < len(parts) - 1:
                    ref = current.reference_of(part)
                    if ref is None or ref not in tables:
                        return None
                    hops.append(tables[ref])
                    current = tables[ref]
            ftype = current.field_type(parts[-1])
            if not hops:
                name = parts[0]
                return (lambda r: r.get(name, "")), ftype

            def walk(row: dict[str, str]) -> str:
                value: dict[str, str] | None = row
                for part, hop in zip(parts[:-1], hops, strict=True):
                    value = hop.rows.get(value.get(part, "")) if value else None
                return value.get(parts[-1], "") if value else ""
            return walk, ftype
        return resolve

    def compile(self, table: Table, query: str) -> CompiledQuery:
        return compile_query(parse(query), self.resolver(table), self.clock)

    def select(self, table_name: str, query: str = "") -> list[dict[str, str]]:
        """Matching rows in query order (insertion order when the query has no ORDERBY: inference, a database
        returns an unspecified order)."""
        with self.lock:
            table = self.tables[table_name]
            compiled = self.compile(table, query)
            rows = [r for r in table.rows.values() if compiled.predicate(r)]
            return sort_rows(rows, compiled.order_by)

    # -- writes (business rules run here, whatever the entry point) -------------------------------------------
    def insert(self, table_name: str, values: dict[str, Any], *, user: str = "system",
               sys_id: str | None = None) -> dict[str, str]:
        with self.lock:
            table = self.tables[table_name]
            clean = table.clean(values)
            new_id = sys_id or clean.pop("sys_id", "") or self.ids.sys_id()
            clean.pop("sys_id", None)
            row = table.insert(clean, sys_id=new_id, stamp=self.stamp(), user=user)
            apo.after_write(self, table_name, row, set(clean), user)
            return row

    def update(self, table_name: str, sys_id: str, values: dict[str, Any], *,
               user: str = "system") -> dict[str, str] | None:
        with self.lock:
            table = self.tables[table_name]
            if sys_id not in table.rows:
                return None
            clean = table.clean(values)
            before = dict(table.rows[sys_id])
            row, changed = table.update(sys_id, clean, stamp=self.stamp(), user=user)
            if changed:
                apo.after_write(self, table_name, row, {k for k in clean if before.get(k) != row.get(k)}, user)
            return row

    def delete(self, table_name: str, sys_id: str) -> bool:
        with self.lock:
            return self.tables[table_name].delete(sys_id)

    # -- admin API ----------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.lock:
            return {name: len(t.rows) for name, t in self.tables.items()}

    def dump(self, table_name: str, query: str = "") -> list[dict[str, str]]:
        """Copies of the rows (raw values), for assertions."""
        return [dict(r) for r in self.select(table_name, query)]

    def approve_invoices(self, count: int) -> list[str]:
        """Approve ``count`` more invoices: new ``sn_shop_invoice`` rows and their outbound invoices in ``new``."""
        with self.lock:
            return apo.create_invoices(self, self.d365, count, invalid_share=0.0)

    def set_switches(self, **switches: Any) -> SnowSettings:
        with self.lock:
            for key, value in switches.items():
                if value is None:
                    continue
                if not hasattr(self.settings, key):
                    raise KeyError(key)
                current = getattr(self.settings, key)
                if isinstance(current, bool) and isinstance(value, str):
                    value = value.strip().lower() in ("true", "1", "yes")
                setattr(self.settings, key, type(current)(value))
            return self.settings

    def set_rate_limit(self, limit: int | None, window_s: int = 3600) -> None:
        self.rate_limiter.set_rule(limit, window_s)

    def cancel_next_gets(self, count: int) -> None:
        """Make ``count`` more Table API GETs answer 200 with a truncated "Transaction cancelled" body."""
        with self.lock:
            self.broken_gets += ["cancelled"] * count

    def cut_off_next_gets(self, count: int) -> None:
        """Make ``count`` more Table API GETs answer 200 with the page cut off and nothing after it (a proxy that
        lost the rest of the stream), which is not ServiceNow's own cancellation shape."""
        with self.lock:
            self.broken_gets += ["cut_off"] * count

    def take_broken_get(self) -> str | None:
        with self.lock:
            return self.broken_gets.pop(0) if self.broken_gets else None

    def drain_imports(self) -> int:
        """Transform every waiting asynchronous import set now (tests that want no timing); returns how many."""
        from .import_api import process_import_set

        with self.lock:
            pending = list(self.pending_imports)
            for set_id in pending:
                process_import_set(self, set_id, self.config.credentials.snow_username)
            return len(pending)

    def import_sets_idle(self) -> bool:
        """True when no asynchronous import set is waiting to be transformed."""
        with self.lock:
            return not self.pending_imports
