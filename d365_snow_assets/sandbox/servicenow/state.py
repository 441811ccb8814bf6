"""The live state of the fake ServiceNow instance, and the Python API tests and admin routes drive it with."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import apo, import_api
from .dictionary import Dictionary
from .encoded_query import Getter, candidate_rows, compile_query, parse, sort_rows
from .ratelimit import RateLimiter
from .schema import (
    CHOICE,
    COUNTRY,
    CURRENCY,
    ERP_SOURCE,
    GL_ACCOUNT,
    OUTBOUND_INVOICE,
    PAYMENT_TERM,
    PROPERTIES,
    SPECS,
    UOM,
    USER,
    build_tables,
)
from .store import Clock, IdFactory, Table, utc_stamp
from .transform import compile_map

if TYPE_CHECKING:
    from ..config import SandboxConfig

AP_ADMIN = "ap.admin"


@dataclass
class SnowSettings:
    """Run-time switches (initialised from :class:`SandboxConfig`, changed through ``/admin/snow/settings``)."""

    client_credentials_enabled: bool = True
    # The transformation of an insertMultiple whose table has no sys_rest_insert_multiple record: asynchronous is
    # the documented default; a table's record overrides this.
    insert_multiple_async: bool = True
    acl_hidden_share: float = 0.0
    erp_source: str = "D365FO"
    # Seconds an async insertMultiple waits before transforming (the real scheduler picks it up "shortly after").
    async_delay_s: float = 0.05
    # Approved invoices whose references all exist appear at this rate, so readers meet sys_updated_on ties.
    invoices_per_second: int = 3

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# What an admin of the customer's instance has set up before the connector runs (inference: the sandbox's choice
# of base data; the ERP source "SAP" is the one the base system ships, S2PIF/define-erp-source-sap.md).
_CURRENCIES = (("USD", "US Dollar", "$"), ("EUR", "Euro", "€"), ("GBP", "Pound Sterling", "£"))
_COUNTRIES = (("United States", "US"), ("Germany", "DE"), ("United Kingdom", "GB"))
_UNITS = (("Each", "ea"), ("Pieces", "pcs"), ("Kilogram", "kg"), ("Metre", "m"), ("Box", "box"), ("Hour", "h"))
_TERMS = (("Net10", 10), ("Net30", 30), ("Net45", 45), ("Net60", 60))


class SnowState:
    """Tables, settings, rate limits and faults of one fake instance. Thread-safe through one re-entrant lock."""

    def __init__(self, config: SandboxConfig, d365: Any, *, clock: Clock = time.time) -> None:
        """``d365`` needs ``read(sql, params) -> list[dict]`` over the fake F&O tables (planning invoices); None
        plans nothing."""
        self.config = config
        self.d365 = d365
        self.clock = clock
        self.lock = threading.RLock()
        self.settings = SnowSettings()
        self.rate_limiter = RateLimiter(clock=clock)
        self.reset()

    @property
    def profile(self) -> str:
        return self.config.snow_instance

    # -- lifecycle --------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the seeded state of ``config`` (tables, switches, rate limit, faults, planned invoices)."""
        cfg = self.config
        with self.lock:
            self.tables: dict[str, Table] = build_tables(self.profile)
            self.ids = IdFactory(cfg.data.seed)
            self.settings = SnowSettings(client_credentials_enabled=cfg.snow_client_credentials_enabled,
                                         insert_multiple_async=cfg.snow_insert_multiple_async,
                                         acl_hidden_share=cfg.snow_acl_hidden_share,
                                         invoices_per_second=cfg.snow_invoices_per_second)
            self.rate_limiter.set_rule(cfg.snow_rate_limit_per_hour, 3600)
            self.broken_gets: list[str] = []  # "cancelled" / "cut_off", one per coming Table API GET
            self.denied_reads: set[str] = set()
            self.invalid_invoices: dict[str, list[str]] = {}  # outbound invoice sys_id -> kinds
            self.open_import_sets: dict[str, str] = {}  # staging table -> sys_id of today's sync import set
            self.pending_imports: list[str] = []
            self.import_set_rows: dict[str, list[dict[str, str]]] = {}
            self.apo = apo.ApoState(rng=random.Random(f"snow-apo:{cfg.data.seed}"))
            self.dictionary = Dictionary(self)
            self.dictionary.seed()
            self._seed_base_data()
            apo.plan_invoices(self, cfg.data.approved_invoices, invalid_share=cfg.data.invalid_invoice_share)

    def _seed_base_data(self) -> None:
        cfg = self.config
        self.insert_labels(USER, {"User ID": cfg.credentials.snow_username, "Name": "D365 Integration",
                                  "Active": "true", "Time zone": "GMT", "Email": "d365.integration@example.com"})
        self.insert_labels(USER, {"User ID": AP_ADMIN, "Name": "AP Administrator", "Active": "true",
                                  "Time zone": "GMT", "Email": "ap.admin@example.com"})
        for name, description in (("SAP", "Base system ERP source"),
                                  (self.settings.erp_source, "Dynamics 365 Finance & Operations")):
            self.insert_labels(ERP_SOURCE, {"ERP Source": name, "Short Description": description, "Active": "true",
                                            "Amount Precisions": "2"})
        for code, name, symbol in _CURRENCIES:
            self.insert_labels(CURRENCY, {"Code": code, "Name": name, "Symbol": symbol})
        for name, iso in _COUNTRIES:
            self.insert_labels(COUNTRY, {"Name": name, "ISO 3166-2": iso})
        for name, symbol in _UNITS:
            self.insert_labels(UOM, {"Name": name, "Symbol": symbol})
        for name, days in _TERMS:
            self.insert_labels(PAYMENT_TERM, {"Name": name, "Type": "net", "Net days to pay": str(days),
                                              "Short description": f"Net {days:03d}", "Discount percentage": "0",
                                              "Discount days": "0"})
        for i, code in enumerate(apo.MANUAL_GL_ACCOUNTS):
            self.insert_labels(GL_ACCOUNT, {"Ledger account": code, "Account Name": f"Manual accrual {i + 1}",
                                            "ERP source": apo.MANUAL_GL_SOURCE, "Inactive": "false"}, user=AP_ADMIN)
        self.insert_system(PROPERTIES, {"name": "sn_fcms_intg.status_for_invoice_creation", "value": "approved",
                                        "description": "Invoice status that creates outbound invoice records"})

    # -- basics -----------------------------------------------------------------------------------------------
    def stamp(self, offset_s: float = 0) -> str:
        return utc_stamp(self.clock() + offset_s)

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def el(self, table: str, label: str) -> str:
        """The element of ``table``'s column labelled ``label`` (the first one when a label is ambiguous)."""
        found = self.tables[table].by_label(label)
        if not found:
            raise KeyError(f"{table} has no column labelled {label!r}")
        return found[0]

    def find_by_labels(self, table: str, by_label: dict[str, str]) -> list[dict[str, str]]:
        """Rows whose columns (named by label) equal the values, without regard to case (the platform's
        collation; inference)."""
        columns = tuple(self.el(table, label) for label in by_label)
        return self.tables[table].find(columns, tuple(by_label.values()), (True,) * len(columns))

    def choice_value(self, table: str, label: str, choice_label: str) -> str:
        """The stored value of the choice labelled ``choice_label`` on ``table``'s column ``label``."""
        element = self.el(table, label)
        for choice in self.tables[CHOICE].find(("name", "element"), (table, element)):
            if choice["label"] == choice_label:
                return choice["value"]
        raise KeyError(f"{table}.{element} has no choice labelled {choice_label!r}")

    def label_counts(self, table: str, label: str) -> dict[str, int]:
        """How many rows of ``table`` hold each choice of the column ``label``, by choice label (for summaries)."""
        element = self.el(table, label)
        with self.lock:
            labels = {c["value"]: c["label"] for c in self.tables[CHOICE].find(("name", "element"), (table, element))}
            counts: dict[str, int] = {}
            for row in self.tables[table].rows.values():
                name = labels.get(row.get(element, ""), row.get(element, ""))
                counts[name] = counts.get(name, 0) + 1
            return counts

    def is_acl_hidden(self, table: str, sys_id: str) -> bool:
        """Whether the integration user's (simulated) row ACLs hide this outbound invoice: a stable hash of its
        sys_id, so the same rows stay hidden for the whole run."""
        share = self.settings.acl_hidden_share
        if table != OUTBOUND_INVOICE or share <= 0:
            return False
        digest = hashlib.sha256(f"acl:{sys_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < share

    def walk(self, table: Table, path: str) -> list[Table] | None:
        """The tables a dot-walked ``path`` passes through (the last one holds the field), or None if invalid."""
        parts = path.split(".")
        current, hops = table, [table]
        for i, part in enumerate(parts):
            if not current.has_field(part):
                return None
            if i < len(parts) - 1:
                ref = current.reference_of(part)
                if ref is None or ref not in self.tables:
                    return None
                current = self.tables[ref]
                hops.append(current)
        return hops

    def resolver(self, table: Table) -> Any:
        """field path (dot-walks through references) -> (getter, type), for the query compiler."""
        def resolve(path: str) -> tuple[Getter, str] | None:
            hops = self.walk(table, path)
            if hops is None:
                return None
            parts = path.split(".")
            ftype = hops[-1].field_type(parts[-1])
            if len(parts) == 1:
                name = parts[0]
                return (lambda r: r.get(name, "")), ftype
            keys = [(hops[i].field(parts[i]).reference_key, hops[i + 1])  # type: ignore[union-attr]
                    for i in range(len(parts) - 1)]

            def walk(row: dict[str, str]) -> str:
                value: dict[str, str] | None = row
                for part, (key, hop) in zip(parts[:-1], keys, strict=True):
                    ref = value.get(part, "") if value else ""
                    value = hop.rows.get(ref) if key == "sys_id" else (hop.lookup((key,), (ref,)) if ref else None)
                return value.get(parts[-1], "") if value else ""
            return walk, ftype
        return resolve

    def select(self, table_name: str, query: str = "") -> list[dict[str, str]]:
        """Matching rows in query order (insertion order when the query has no ORDERBY: inference, a database
        returns an unspecified order)."""
        with self.lock:
            apo.catch_up(self)
            table = self.tables[table_name]
            parsed = parse(query)
            compiled = compile_query(parsed, self.resolver(table), self.clock)
            rows = [r for r in candidate_rows(table, parsed, self.clock) if compiled.predicate(r)]
            return sort_rows(rows, compiled.order_by)

    # -- writes (business rules run here, whatever the entry point) -------------------------------------------
    def _autonumber(self, table: Table, values: dict[str, str]) -> None:
        """Tables with a "Number" column number new records (prefixes are an inference)."""
        for t in [table, *table.ancestors]:
            prefix = SPECS[t.name].number_prefix if t.name in SPECS else ""
            if prefix:
                element = table.by_label("Number")
                if element and not values.get(element[0]):
                    values[element[0]] = self.ids.number(prefix)
                return

    def insert(self, table_name: str, values: dict[str, Any], *, user: str = "system", sys_id: str | None = None,
               run_rules: bool = True, stamp: str | None = None) -> dict[str, str]:
        with self.lock:
            table = self.tables[table_name]
            clean = table.clean(values)
            new_id = sys_id or clean.pop("sys_id", "") or self.ids.sys_id()
            clean.pop("sys_id", None)
            self._autonumber(table, clean)
            row = table.insert(clean, sys_id=new_id, stamp=stamp or self.stamp(), user=user)
            if run_rules:
                apo.after_write(self, table_name, row, set(clean), user)
            return row

    def update(self, table_name: str, sys_id: str, values: dict[str, Any], *, user: str = "system",
               run_rules: bool = True) -> dict[str, str] | None:
        with self.lock:
            table = self.tables[table_name]
            if sys_id not in table.rows:
                return None
            clean = table.clean(values)
            before = dict(table.rows[sys_id])
            row, changed = table.update(sys_id, clean, stamp=self.stamp(), user=user)
            if changed and run_rules:
                apo.after_write(self, table_name, row, {k for k in clean if before.get(k) != row.get(k)}, user)
            return row

    def delete(self, table_name: str, sys_id: str) -> bool:
        with self.lock:
            return self.tables[table_name].delete(sys_id)

    def insert_labels(self, table_name: str, by_label: dict[str, str], *, user: str = "system",
                      stamp: str | None = None) -> dict[str, str]:
        """Insert by column labels (columns the instance does not have are left out), without business rules."""
        table = self.tables[table_name]
        values = {found[0]: value for label, value in by_label.items() if (found := table.by_label(label))}
        return self.insert(table_name, values, user=user, run_rules=False, stamp=stamp)

    def insert_system(self, table_name: str, values: dict[str, str]) -> dict[str, str]:
        """A platform record (import sets, dictionary, ...): no business rules."""
        return self.insert(table_name, values, run_rules=False)

    def update_system(self, table_name: str, sys_id: str, values: dict[str, str]) -> None:
        self.update(table_name, sys_id, values, run_rules=False)

    # -- admin API ----------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.lock:
            apo.catch_up(self)
            return {name: len(t.rows) for name, t in self.tables.items()}

    def dump(self, table_name: str, query: str = "") -> list[dict[str, str]]:
        """Copies of the rows (raw values), for assertions."""
        return [dict(r) for r in self.select(table_name, query)]

    def approve_invoices(self, count: int) -> list[str]:
        """A clerk approves ``count`` more (valid) invoices; returns the outbound sys_ids created now (the others
        appear once the records they reference exist, see :mod:`.apo`)."""
        with self.lock:
            apo.plan_invoices(self, count, invalid_share=0.0)
            return apo.check_planned(self)

    def invoices_waiting(self) -> int:
        """Planned invoices not yet materialized (their references do not all exist, or their second has not
        come)."""
        with self.lock:
            apo.catch_up(self)
            return sum(1 for p in self.apo.plans if not p.outbound_id)

    def invoices_scheduled(self) -> int:
        """Invoices whose references all exist and that appear within the next seconds."""
        with self.lock:
            apo.catch_up(self)
            return sum(1 for p in self.apo.plans if not p.outbound_id and p.slot is not None)

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
        with self.lock:
            pending = list(self.pending_imports)
            for set_id in pending:
                import_api.process_import_set(self, set_id, self.config.credentials.snow_username)
            return len(pending)

    def import_records(self, staging: str, records: list[dict[str, Any]], *, by: str = "label") -> list[str]:
        """Load ``records`` (keyed ``by`` "label" or "column_name") into ``staging`` and transform them at once,
        as a synchronous insertMultiple does; returns each row's status."""
        with self.lock:
            table = import_api.staging_table(self, staging)
            if table is None:
                raise KeyError(f"{staging} is not an import set staging table")
            user = self.config.credentials.snow_username
            import_set = import_api.new_import_set(self, staging, "asynchronous")
            rows = import_api.load_rows(self, table, import_set, records, user, by=by)
            cmap = compile_map(self, staging)
            import_api.transform_rows(self, staging, rows, user, cmap)
            import_api.finish_import_set(self, cmap, import_set, rows)
            return [r["sys_import_state"] for r in rows]

    def import_sets_idle(self) -> bool:
        """True when no asynchronous import set is waiting to be transformed."""
        with self.lock:
            return not self.pending_imports

    # -- schema knobs (for `fit` tests; each changes the tables and their dictionary records together) ---------
    def add_column(self, table: str, element: str, label: str, *, type: str = "string",
                   mandatory: bool = False, reference: str | None = None) -> dict[str, Any]:
        with self.lock:
            f = self.dictionary.add_column(table, element, label, type=type, mandatory=mandatory,
                                           reference=reference)
            return {"table": table, "element": f.name, "label": f.label, "type": f.type}

    def remove_column(self, table: str, element: str) -> None:
        with self.lock:
            self.dictionary.remove_column(table, element)

    def set_mandatory(self, table: str, element: str, mandatory: bool = True) -> None:
        with self.lock:
            self.dictionary.set_mandatory(table, element, mandatory)

    def set_coalesce(self, staging: str, target_fields: list[str]) -> list[str]:
        """Make ``target_fields`` (target elements) the coalesce fields of ``staging``'s transform map."""
        with self.lock:
            return self.dictionary.set_coalesce(staging, target_fields)

    def set_insert_multiple(self, staging: str, column_mapping: str = "label",
                            transformation: str | None = None) -> dict[str, str]:
        """Set ``staging``'s insertMultiple column mapping ("label" / "column_name") and, if given, its
        transformation ("asynchronous" / "synchronous") through its ``sys_rest_insert_multiple`` record."""
        with self.lock:
            return self.dictionary.set_insert_multiple(staging, column_mapping, transformation)

    def deny_reads(self, tables: list[str]) -> set[str]:
        """The integration user loses read access to ``tables`` (Table API reads answer as ServiceNow does without
        a table read ACL, see :mod:`.table_api`); an empty list gives every read back."""
        with self.lock:
            unknown = [t for t in tables if t not in self.tables]
            if unknown:
                raise KeyError(f"no such tables: {unknown}")
            self.denied_reads = set(tables)
            return set(self.denied_reads)
