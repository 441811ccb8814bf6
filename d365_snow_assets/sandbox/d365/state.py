"""The F&O side of the sandbox: the DuckDB database, OData reads and writes, and the admin scenario actions."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb

from ..config import SandboxConfig
from . import data
from .envelope import EnvelopeProfile, ServiceEnvelope
from .events import BusinessEvents, dotnet_date
from .filters import ODataError
from .query import QueryPlan, company_clause, etag_expr, not_found, row_json_sql
from .schema import ENTITY_SETS, ENUMS, NAMESPACE, EntitySet, Prop

DEEP_ROWS = 16  # a request for this few rows past the start of a query reads them from its cached order
WRITE_ERROR_TYPE = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
_TABLE_LABELS = {  # "Cannot create a record in <label> (<table>)" in the real duplicate-key text
    "VendorsV2": ("Vendors", "VendTable"), "PurchaseOrderHeadersV2": ("Purchase orders", "PurchTable"),
    "PurchaseOrderLinesV2": ("Purchase order lines", "PurchLine"),
    "VendorInvoiceHeaders": ("Pending vendor invoices", "VendInvoiceInfoTable"),
    "VendorInvoiceLines": ("Pending vendor invoice lines", "VendInvoiceInfoLine"),
    "MainAccounts": ("Main accounts", "MainAccount"),
    "FinancialDimensionValues": ("Financial dimension values", "DimensionFinancialTag"),
    "LegalEntities": ("Legal entities", "CompanyInfo"), "VendorParameters": ("Accounts payable parameters",
                                                                             "VendParameters"),
}


def write_error(es: EntitySet, infolog: str, status: int = 400) -> ODataError:
    """The real F&O write-failure body (reference §2); the infolog texts of the sandbox are synthetic."""
    return ODataError(status, "An error has occurred.", {
        "message": f"Write failed for table row of type '{es.aot_name}'. Infolog: {infolog}",
        "type": WRITE_ERROR_TYPE,
        "stacktrace": "   at Microsoft.Dynamics.Platform.Integration.Services.OData.Update.UpdateProcessor."
                      "CreateEntity_Save(ChangeOperationContext context, ChangeInfo changeInfo)"})


def read_only_error(es: EntitySet) -> ODataError:
    # reference §4 suggestion: read-only entities reject writes; status and wording are an inference.
    return ODataError(400, "An error has occurred.", {
        "message": f"Entity '{es.name}' is read-only.", "type": "System.InvalidOperationException",
        "stacktrace": ""})


def to_storage(es: EntitySet, prop: Prop, value: Any) -> Any:
    """A JSON property value → the DuckDB value, with ODataLib-style errors for a wrong type."""
    def bad() -> ODataError:
        return ODataError(400, f"Cannot convert the literal '{value}' to the expected type '{prop.edm_type}'.")

    if prop.kind == "s":
        if value is None:
            return ""
        if not isinstance(value, str):
            raise bad()
        return value
    if prop.kind == "e":
        if not isinstance(value, str) or value not in ENUMS[prop.enum or ""]:
            raise ODataError(400, f"The value '{value}' is not valid for enum type '{prop.edm_type}'.")
        return value
    if prop.kind in ("d", "i", "l"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad()
        try:
            number = Decimal(str(value))
        except InvalidOperation as exc:
            raise bad() from exc
        if prop.kind != "d":
            if number != number.to_integral_value():
                raise bad()
            return int(number)
        return number
    if not isinstance(value, str):
        raise bad()
    try:
        if len(value) == 10:
            parsed = dt.datetime.fromisoformat(value)
        else:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC).replace(tzinfo=None)
    except ValueError as exc:
        raise bad() from exc
    return parsed.date() if prop.kind == "D" else parsed



def _max_suffix(table: str, column: str, legal_entity: str, prefix: str = "") -> tuple[str, list[str]]:
    """SQL (+ parameters) for the highest number at the end of ``column`` in one company, so a sequence continues
    after it. Counting rows instead would reuse numbers whenever existing ones have gaps (seeded data, deletions),
    and a reused voucher makes two payments look like one to ServiceNow's coalesce. The legal entity comes from a
    request body, so it is bound; table and column names are constants of this module.
    """
    return (f"SELECT max(try_cast(regexp_extract({column}, '(\\d+)$', 1) AS BIGINT)) FROM {table} "
            f"WHERE dataAreaId = ? AND starts_with({column}, ?)", [legal_entity, prefix])

class D365State:
    """F&O data in an in-memory DuckDB. Reads use a cursor per thread; writes serialise on one lock."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._conn = duckdb.connect(":memory:")
        self._conn.execute("SET enable_progress_bar = false")
        self._lock = threading.RLock()
        self._local = threading.local()
        self.page_size = config.d365_max_page_size
        self.events = BusinessEvents(seed=config.data.seed)
        self.envelope = ServiceEnvelope()  # server cost and user-based limits (reference §5), off unless set
        self._writes = 0  # committed write transactions: how fresh a cached query order is
        self._order: tuple[tuple[str, ...], int, Any] | None = None  # (query, writes, rowids in order)
        self._order_lock = threading.Lock()
        self.reset()

    # -- plumbing ----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Regenerate all data from the seed and restore the default settings."""
        with self._lock:
            self.companies = data.generate(self._conn, self.config.data)
            self._writes += 1
            self.page_size = self.config.d365_max_page_size
            self.cut_off_reads_remaining = 0
            self.withheld: dict[tuple[str, str | None], int] = {}  # (entity set, company or None) -> % visible
            self.envelope.set(EnvelopeProfile())
            self._seq: dict[str, int] = {}
            self._recid = int(self._conn.execute(
                "SELECT greatest((SELECT coalesce(max(SourceKey), 0) FROM VendInvoiceJourBiEntities), "
                "(SELECT coalesce(max(SourceKey), 0) FROM VendTransBiEntities))").fetchone()[0]) + 1000  # type: ignore[index]
            self.events.clear()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._conn.cursor()
            self._local.cursor = cur
        return cur

    def read(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        """Run a read-only query (parameters bound) and return rows as dicts. Safe from any thread."""
        result = self._cursor().execute(sql, params or [])
        cols = [d[0] for d in result.description]
        return [dict(zip(cols, row, strict=True)) for row in result.fetchall()]

    def _fetch(self, sql: str, params: list | None = None) -> list[tuple]:
        return self._cursor().execute(sql, params or []).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing writes (one request, or a whole ``$batch`` changeset)."""
        with self._lock:
            self._conn.execute("BEGIN TRANSACTION")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._writes += 1

    def next_number(self, sequence: str, start: tuple[str, list[str]] | None = None) -> int:
        """A number sequence; continuous within the sandbox run (F&O's can have gaps, clients must not care).

        ``start`` is a query (+ parameters) for the last number already used, read when the sequence first runs.
        """
        with self._lock:
            if sequence not in self._seq:
                self._seq[sequence] = int(self._conn.execute(*start).fetchone()[0] or 0) if start else 0  # type: ignore[index]
            self._seq[sequence] += 1
            return self._seq[sequence]

    def next_recid(self) -> int:
        with self._lock:
            self._recid += 1
            return self._recid

    def company_ids(self) -> list[str]:
        return [c.id for c in self.companies]

    # -- OData reads -------------------------------------------------------------------------------------------
    def count(self, es: EntitySet, qp: QueryPlan) -> int:
        return int(self._fetch(f'SELECT count(*) FROM "{es.name}" WHERE {qp.where}', qp.params)[0][0])

    def page_json(self, es: EntitySet, qp: QueryPlan, offset: int, limit: int) -> list[str]:
        """Rows ``offset .. offset+limit`` as JSON object texts, encoded inside DuckDB."""
        if offset > 0 and limit <= DEEP_ROWS:
            return self._deep_rows(es, qp, offset, limit)
        # Pick the page's rowids first: DuckDB otherwise encodes every row before the top-N sort (10x slower).
        sql = (f'SELECT {row_json_sql(es, qp.props)} FROM "{es.name}" WHERE rowid IN (SELECT rowid FROM '
               f'"{es.name}" WHERE {qp.where} ORDER BY {qp.order} LIMIT ? OFFSET ?) ORDER BY {qp.order}')
        return [r[0] for r in self._fetch(sql, [*qp.params, limit, offset])]

    def _deep_rows(self, es: EntitySet, qp: QueryPlan, offset: int, limit: int) -> list[str]:
        """A few rows deep in an ordered query, as a client sampling keys asks them (``$top=1&$skip=k``).

        F&O walks its clustered index to the offset; DuckDB would sort the whole entity for every such request, and
        a benchmark would measure the sandbox instead of the client. So the query's order (its rowids) is kept for
        the next request of the same query until the next write commits."""
        signature = (es.name, qp.where, repr(qp.params), qp.order)
        with self._order_lock:
            cached = self._order
            if cached is None or cached[0] != signature or cached[1] != self._writes:
                writes = self._writes  # read first: a commit while sorting makes this order stale at once
                rowids = self._cursor().sql(f'SELECT rowid FROM "{es.name}" WHERE {qp.where} ORDER BY {qp.order}',
                                            params=qp.params).to_arrow_table().column("rowid")
                cached = self._order = (signature, writes, rowids)
        picked = cached[2].slice(offset, limit).to_pylist()
        if not picked:
            return []
        sql = (f'SELECT {row_json_sql(es, qp.props)} FROM "{es.name}" WHERE rowid IN ({", ".join("?" * len(picked))}) '
               f"ORDER BY {qp.order}")
        return [r[0] for r in self._fetch(sql, picked)]

    def _key_where(self, es: EntitySet, key: dict[str, Any], cross_company: bool) -> tuple[str, list[Any]]:
        parts, params = [], []
        for name, value in key.items():
            if name == "dataAreaId":
                parts.append('lower("dataAreaId") = ?')
                params.append(str(value).lower())
            else:
                parts.append(f'"{name}" = ?')
                params.append(value)
        scope, sparams = company_clause(es, cross_company, self.config.d365_default_company)
        return " AND ".join([*parts, scope]), params + sparams

    def get_json(self, es: EntitySet, key: dict[str, Any], cross_company: bool, props: list[Prop] | None = None,
                 segment: str = "") -> str:
        where, params = self._key_where(es, key, cross_company)
        rows = self._fetch(f'SELECT {row_json_sql(es, props or list(es.props))} FROM "{es.name}" WHERE {where}',
                           params)
        if not rows:
            raise not_found(segment or es.name)
        return rows[0][0]

    def _etag(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, where: str, params: list) -> str | None:
        row = conn.execute(f'SELECT {etag_expr(es)} FROM "{es.name}" WHERE {where}', params).fetchone()
        return row[0] if row else None

    # -- OData writes ------------------------------------------------------------------------------------------
    def _check_props(self, es: EntitySet, body: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in body.items():
            if name.startswith("@odata.") or "@odata." in name:
                continue
            prop = es.prop(name)
            if prop is None:
                raise ODataError(400, f"The property '{name}' does not exist on type '{NAMESPACE}.{es.entity_type}'."
                                      " Make sure to only use property names that are defined by the type or mark "
                                      "the type as open type.")
            out[name] = to_storage(es, prop, value)
        return out

    def insert(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, body: dict[str, Any], *,
               in_batch: bool = False) -> dict[str, Any]:
        """POST: validate, default, assign numbers, insert. Returns the stored key."""
        if es.read_only:
            raise read_only_error(es)
        status = 500 if in_batch else 400  # [INF] write failures are 500 inside a batch part (reference §2)
        row = self._check_props(es, body)
        if es.company_scoped:
            row["dataAreaId"] = str(row.get("dataAreaId") or self.config.d365_default_company).lower()
            if row["dataAreaId"] not in self.company_ids():
                raise write_error(es, f"Error: Company '{row['dataAreaId']}' does not exist.", status)
        self._defaults_on_create(conn, es, row, status)
        if es.name == "FinancialDimensionValues":
            row.setdefault("LegalEntityId", "")  # blank = shared across companies
        for k in es.keys:
            if k not in row or (row[k] in ("", None) and k != "LegalEntityId"):
                raise write_error(es, f"Error: Field '{k}' must be filled in.", status)
        key = {k: row[k] for k in es.keys}
        where, params = self._key_where(es, key, True)
        if conn.execute(f'SELECT 1 FROM "{es.name}" WHERE {where}', params).fetchone():
            label, table = _TABLE_LABELS.get(es.name, (es.name, es.name))
            values = ", ".join(str(v) for v in key.values())
            raise write_error(es, f"Info: Cannot create a record in {label} ({table}). {values}.\n"
                                  "The record already exists..", 500 if in_batch else 400)
        cols = list(row)
        conn.execute(f'INSERT INTO "{es.name}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) VALUES '
                     f'({", ".join("?" for _ in cols)})', [row[c] for c in cols])
        return key

    def _defaults_on_create(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, row: dict[str, Any],
                            status: int) -> None:
        le = row.get("dataAreaId", "")
        if es.name == "VendorsV2" and not row.get("VendorAccountNumber"):
            n = self.next_number(f"vend:{le}", _max_suffix("VendorsV2", "VendorAccountNumber", le))
            row["VendorAccountNumber"] = f"{le.upper()}-{n:010d}"  # [OBS R2] "DAT-0000000043"
            row.setdefault("CurrencyCode", self._currency(le))
            if "VendorPartyType" not in row:
                row["VendorPartyType"] = "Organization"
        elif es.name == "PurchaseOrderHeadersV2" and not row.get("PurchaseOrderNumber"):
            n = self.next_number(f"po:{le}", _max_suffix("PurchaseOrderHeadersV2", "PurchaseOrderNumber", le))
            row["PurchaseOrderNumber"] = f"{le.upper()}-{n:06d}"  # [OBS R2] "DAT-000050"
        elif es.name == "PurchaseOrderLinesV2" and "LineAmount" not in row:
            row["LineAmount"] = round(Decimal(row.get("OrderedPurchaseQuantity", 0))
                                      * Decimal(row.get("PurchasePrice", 0)), 2)
        elif es.name == "VendorInvoiceHeaders":
            self._invoice_header_defaults(conn, es, row, status)
        elif es.name == "VendorInvoiceLines":
            head = conn.execute('SELECT InvoiceAccount, VendorAccount, Currency FROM VendorInvoiceHeaders '
                                'WHERE dataAreaId = ? AND HeaderReference = ?',
                                [le, row.get("HeaderReference", "")]).fetchone()
            if head is None:
                # Synthetic infolog text; a line needs an existing pending header (reference §3.3).
                raise write_error(es, f"Error: The pending vendor invoice '{row.get('HeaderReference', '')}' "
                                      "does not exist.", status)
            row.setdefault("InvoiceAccount", head[0])
            row.setdefault("VendorAccount", head[1])
            row.setdefault("Currency", head[2])
            if not row.get("Currency"):
                raise write_error(es, "Error: Field 'Currency' must be filled in.", status)
            row.setdefault("LineNumber", row.get("InvoiceLineNumber", 0))
            if "Amount" not in row and "InventNow" in row and "UnitPrice" in row:
                row["Amount"] = round(Decimal(row["InventNow"]) * Decimal(row["UnitPrice"]), 2)
            row.setdefault("NetAmount", row.get("Amount", 0))

    def _currency(self, le: str) -> str:
        return next((c.currency for c in self.companies if c.id == le), "USD")

    def _invoice_header_defaults(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, row: dict[str, Any],
                                 status: int) -> None:
        le = row["dataAreaId"]
        if not row.get("InvoiceNumber"):
            raise write_error(es, "Error: Field 'Invoice' must be filled in.", status)
        account = row.get("InvoiceAccount") or row.get("VendorAccount")
        if not account:
            raise write_error(es, "Error: Field 'Invoice account' must be filled in.", status)
        vend = conn.execute("SELECT VendorOrganizationName, VendorKnownAsName, CurrencyCode FROM VendorsV2 "
                            "WHERE dataAreaId = ? AND VendorAccountNumber = ?", [le, account]).fetchone()
        if vend is None:
            raise write_error(es, f"Warning: The value '{account}' in field 'Invoice account' is not found in the "
                                  "related table 'Vendors'.; Warning: validateField failed on field "
                                  "'VendorInvoiceHeaderEntity.InvoiceAccount'.", status)
        row["InvoiceAccount"] = account
        row.setdefault("VendorAccount", account)
        row.setdefault("VendorName", vend[0] or vend[1])
        row.setdefault("Currency", vend[2])
        self._check_duplicate_invoice(conn, es, row, status)
        if not row.get("HeaderReference"):
            # [INF] F&O assigns HeaderReference from a number sequence when omitted; the format is a guess.
            n = self.next_number(f"vihr:{le}")
            row["HeaderReference"] = f"{le.upper()}-VI{n:08d}"

    def _check_duplicate_invoice(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, row: dict[str, Any],
                                 status: int) -> None:
        """VendorParameters.IsCheckInvoiceNumberUsed over pending AND posted invoices (reference §4)."""
        le = row["dataAreaId"]
        params = conn.execute("SELECT IsCheckInvoiceNumberUsed, VendInvoiceInUseRecoverEnable FROM VendorParameters "
                              "WHERE dataAreaId = ?", [le]).fetchone()
        mode, recover = params if params else ("NoDuplicate", "No")
        if mode in ("AcceptDuplicate", "WarnDuplicate") or recover == "Yes":
            return  # WarnDuplicate only warns in the client; OData surfaces nothing [INF]
        number, account = row["InvoiceNumber"], row["InvoiceAccount"]
        year_filter_p = year_filter_j = ""
        args: list[Any] = [le, account, number.lower()]
        if mode == "NoDuplicateInYear":
            # [INF] fiscal year = calendar year of the invoice date.
            year = (row.get("InvoiceDate") or dt.date.today()).year
            year_filter_p = f" AND year(InvoiceDate) = {int(year)}"
            year_filter_j = year_filter_p
        hit = conn.execute(
            "SELECT 1 FROM VendorInvoiceHeaders WHERE dataAreaId = ? AND InvoiceAccount = ? AND "
            f"lower(InvoiceNumber) = ?{year_filter_p} UNION ALL SELECT 1 FROM VendInvoiceJourBiEntities WHERE "
            "dataAreaId = ? AND "
            f"InvoiceAccount = ? AND lower(InvoiceId) = ?{year_filter_j} LIMIT 1", args + args).fetchone()
        if hit:
            # Synthetic text (reference §4: the real duplicate message over OData was not found).
            raise write_error(es, f"Error: Invoice {number} has already been used for vendor {account}.", status)

    def _locate(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, key: dict[str, Any], cross_company: bool,
                segment: str) -> tuple[str, list[Any]]:
        where, params = self._key_where(es, key, cross_company)
        if not conn.execute(f'SELECT 1 FROM "{es.name}" WHERE {where}', params).fetchone():
            raise not_found(segment or es.name)
        return where, params

    def _check_if_match(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, where: str, params: list,
                        if_match: str | None) -> None:
        if if_match and if_match.strip() != "*" and self._etag(conn, es, where, params) != if_match.strip():
            # [INF] reference §4: a stale If-Match is probably 412 per OData.
            raise ODataError(412, "The ETag value in the request header does not match with the current ETag "
                                  "value of the object.")

    def update(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, key: dict[str, Any], body: dict[str, Any], *,
               cross_company: bool, if_match: str | None = None, segment: str = "", in_batch: bool = False,
               admin: bool = False) -> None:
        if es.read_only and not admin:
            raise read_only_error(es)
        where, params = self._locate(conn, es, key, cross_company, segment)
        self._check_if_match(conn, es, where, params, if_match)
        changes = self._check_props(es, body)
        for k in es.keys:
            if k in changes and str(changes[k]).lower() != str(key[k]).lower():
                raise write_error(es, f"Error: The key field '{k}' cannot be changed.", 500 if in_batch else 400)
            changes.pop(k, None)
        if es.name == "PurchaseOrderLinesV2" and "LineAmount" not in changes and (
                "OrderedPurchaseQuantity" in changes or "PurchasePrice" in changes):
            qty, price = conn.execute(f"SELECT OrderedPurchaseQuantity, PurchasePrice FROM PurchaseOrderLinesV2 "
                                      f"WHERE {where}", params).fetchone()  # type: ignore[misc]
            changes["LineAmount"] = round(Decimal(changes.get("OrderedPurchaseQuantity", qty))
                                          * Decimal(changes.get("PurchasePrice", price)), 2)
        if es.read_only and "SysModifiedDateTime" not in changes and es.prop("SysModifiedDateTime"):
            changes["SysModifiedDateTime"] = _now()
        if not changes:
            return
        sets = ", ".join(f'"{c}" = ?' for c in changes)
        conn.execute(f'UPDATE "{es.name}" SET {sets} WHERE {where}', [*changes.values(), *params])

    def delete(self, conn: duckdb.DuckDBPyConnection, es: EntitySet, key: dict[str, Any], *, cross_company: bool,
               if_match: str | None = None, segment: str = "", admin: bool = False) -> None:
        if es.read_only and not admin:
            raise read_only_error(es)
        where, params = self._locate(conn, es, key, cross_company, segment)
        self._check_if_match(conn, es, where, params, if_match)
        if es.name == "VendorInvoiceHeaders":
            # Deleting a pending header removes its lines, as the form does [INF].
            conn.execute("DELETE FROM VendorInvoiceLines WHERE dataAreaId = ? AND HeaderReference = ?",
                         [str(key["dataAreaId"]).lower(), key["HeaderReference"]])
        conn.execute(f'DELETE FROM "{es.name}" WHERE {where}', params)

    # -- admin: generic row mutations (bypass read-only, all companies) ------------------------------------------
    def admin_insert(self, entity: str, row: dict[str, Any]) -> dict[str, Any]:
        es = ENTITY_SETS[entity]
        with self.transaction() as conn:
            if es.read_only:
                clean = self._check_props(es, row)
                cols = list(clean)
                conn.execute(f'INSERT INTO "{es.name}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) VALUES '
                             f'({", ".join("?" for _ in cols)})', [clean[c] for c in cols])
                return {k: clean.get(k) for k in es.keys}
            return self.insert(conn, es, row)

    def admin_update(self, entity: str, key: dict[str, Any], changes: dict[str, Any]) -> None:
        es = ENTITY_SETS[entity]
        with self.transaction() as conn:
            self.update(conn, es, _typed_key(es, key), changes, cross_company=True, admin=True)

    def admin_delete(self, entity: str, key: dict[str, Any]) -> None:
        es = ENTITY_SETS[entity]
        with self.transaction() as conn:
            self.delete(conn, es, _typed_key(es, key), cross_company=True, admin=True)

    # Named scenario helpers (each is one of the generic mutations above).
    def add_vendor(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.admin_insert("VendorsV2", row)

    def set_vendor_field(self, data_area_id: str, vendor: str, changes: dict[str, Any]) -> None:
        self.admin_update("VendorsV2", {"dataAreaId": data_area_id, "VendorAccountNumber": vendor}, changes)

    def put_vendor_on_hold(self, data_area_id: str, vendor: str, status: str = "All") -> None:
        self.set_vendor_field(data_area_id, vendor, {"OnHoldStatus": status})

    def set_po_line_price(self, data_area_id: str, po: str, line: int, price: float) -> None:
        self.admin_update("PurchaseOrderLinesV2", {"dataAreaId": data_area_id, "PurchaseOrderNumber": po,
                                                   "LineNumber": line}, {"PurchasePrice": price})

    def remove_po_line(self, data_area_id: str, po: str, line: int) -> None:
        self.admin_delete("PurchaseOrderLinesV2", {"dataAreaId": data_area_id, "PurchaseOrderNumber": po,
                                                   "LineNumber": line})

    def update_cost_center(self, value: str, changes: dict[str, Any], legal_entity: str | None = None) -> int:
        """Rename (Description) or suspend (IsSuspended) a cost center, in every company or one. Returns rows."""
        rows = self.read("SELECT LegalEntityId FROM FinancialDimensionValues WHERE FinancialDimension = "
                         "'CostCenter' AND DimensionValue = ?", [value])
        for r in rows:
            if legal_entity is None or r["LegalEntityId"] == legal_entity.lower():
                self.admin_update("FinancialDimensionValues", {"FinancialDimension": "CostCenter",
                                                               "LegalEntityId": r["LegalEntityId"],
                                                               "DimensionValue": value}, changes)
        return len(rows)

    def suspend_main_account(self, account: str, suspended: bool = True) -> None:
        self.admin_update("MainAccounts", {"ChartOfAccounts": data.CHART_OF_ACCOUNTS, "MainAccountId": account},
                          {"IsSuspended": "Yes" if suspended else "No"})

    def set_duplicate_check(self, mode: str, data_area_id: str | None = None) -> None:
        if mode not in ENUMS["ReuseVoucher"]:
            raise ValueError(f"unknown IsCheckInvoiceNumberUsed mode {mode!r}")
        for le in [data_area_id.lower()] if data_area_id else self.company_ids():
            self.admin_update("VendorParameters", {"dataAreaId": le}, {"IsCheckInvoiceNumberUsed": mode})

    def cut_off_next_reads(self, count: int) -> None:
        """Make the next ``count`` collection reads answer 200 with the body cut in half (a gateway or proxy that
        lost the rest of the stream but still sent a complete response)."""
        with self._lock:
            self.cut_off_reads_remaining = max(0, count)

    def take_cut_off(self) -> bool:
        with self._lock:
            if self.cut_off_reads_remaining > 0:
                self.cut_off_reads_remaining -= 1
                return True
            return False

    def withhold_reads(self, entity: str, visible_percent: int = 0, data_area_id: str | None = None) -> None:
        """Let reads of ``entity`` (of one company, or all) return only ``visible_percent`` % of its rows: what a
        caller sees after losing its security role (F&O filters rows, it does not refuse the read) [INF].
        100 gives everything back."""
        if entity not in ENTITY_SETS or not 0 <= visible_percent <= 100:
            raise ValueError(f"withhold_reads needs a known entity set and a percentage, not {entity!r}, "
                             f"{visible_percent!r}")
        with self._lock:
            key = (entity, data_area_id.lower() if data_area_id else None)
            if visible_percent == 100:
                self.withheld.pop(key, None)
            else:
                self.withheld[key] = visible_percent

    def visible(self, es: EntitySet, qp: QueryPlan) -> QueryPlan:
        """``qp`` narrowed to the rows :meth:`withhold_reads` leaves visible (the same rows on every read)."""
        where, params = qp.where, list(qp.params)
        for (entity, company), percent in self.withheld.items():
            if entity != es.name:
                continue
            kept = "hash(rowid) % 100 < ?"  # spread over the table, not its first rows
            where, params = ((f"({where}) AND ({kept})", [*params, percent]) if company is None else
                             (f'({where}) AND (lower("dataAreaId") <> ? OR {kept})', [*params, company, percent]))
        return dataclasses.replace(qp, where=where, params=params)

    def set_page_size(self, size: int) -> None:
        if size < 1:
            raise ValueError("page size must be positive")
        self.page_size = size

    def dump(self, entity: str) -> list[dict[str, Any]]:
        es = ENTITY_SETS[entity]
        return self.read(f'SELECT * FROM "{es.name}" ORDER BY {", ".join(chr(34) + k + chr(34) for k in es.keys)}')

    # -- admin: business processes -----------------------------------------------------------------------------
    def post_invoices(self, header_refs: list[str] | None = None) -> dict[str, Any]:
        """Post pending invoices: journal + vendor transaction rows appear, pending rows go, events fire."""
        posted, failed, events = [], [], []
        with self.transaction() as conn:
            heads = conn.execute("SELECT * FROM VendorInvoiceHeaders ORDER BY dataAreaId, HeaderReference").fetchall()
            cols = [d[0] for d in conn.description]  # type: ignore[union-attr]
            for values in heads:
                h = dict(zip(cols, values, strict=True))
                if header_refs is not None and h["HeaderReference"] not in header_refs:
                    continue
                le = h["dataAreaId"]
                hold = conn.execute("SELECT OnHoldStatus FROM VendorsV2 WHERE dataAreaId = ? AND "
                                    "VendorAccountNumber = ?", [le, h["InvoiceAccount"]]).fetchone()
                if hold and hold[0] in ("All", "Invoice"):
                    failed.append({"dataAreaId": le, "HeaderReference": h["HeaderReference"],
                                   "error": f"Vendor {h['InvoiceAccount']} is on hold for invoicing."})
                    continue
                amt, qty, nlines = conn.execute(
                    "SELECT coalesce(sum(Amount), 0), coalesce(sum(InventNow), 0), count(*) FROM VendorInvoiceLines "
                    "WHERE dataAreaId = ? AND HeaderReference = ?", [le, h["HeaderReference"]]).fetchone()  # type: ignore[misc]
                tax = h["ImportedSalesTax"]
                if nlines == 0:
                    amt = h["ImportedAmount"] - tax
                total = amt + tax
                n = self.next_number(f"apinv:{le}", _max_suffix("VendInvoiceJourBiEntities", "LedgerVoucher", le))
                voucher = f"APINV{n:06d}"  # [INF] voucher format
                now = _now()
                post_date = h["Date"] if h["Date"].year > 1900 else now.date()
                inv_date = h["InvoiceDate"] if h["InvoiceDate"].year > 1900 else post_date
                due = h["DueDate"] if h["DueDate"].year > 1900 else inv_date + dt.timedelta(days=30)
                jour = {"dataAreaId": le, "SourceKey": self.next_recid(), "InvoiceId": h["InvoiceNumber"],
                        "InvoiceAccount": h["InvoiceAccount"], "OrderAccount": h["VendorAccount"],
                        "PurchId": h["PurchaseOrderNumber"], "InternalInvoiceId": f"{le.upper()}-VI{n:06d}",
                        "LedgerVoucher": voucher, "Description": h["InvoiceDescription"], "InvoiceDate": inv_date,
                        "DocumentDate": inv_date, "DueDate": due, "ReceivedDate": h["InvoiceReceivedDate"],
                        "CurrencyCode": h["Currency"], "InvoiceAmount": total, "InvoiceAmountMST": total,
                        "SumTax": tax, "SalesBalance": amt, "Qty": qty, "ExchRate": 100,
                        "InvoiceType": h["VendorInvoiceType"], "Payment": h["TermsOfPayment"],
                        "PostingProfile": h["PostingProfile"] or "GEN", "ParmId": h["HeaderReference"],
                        "CreatedOn": now, "SysModifiedDateTime": now, "SysCreatedBy": "Admin"}
                trans = {"dataAreaId": le, "SourceKey": self.next_recid(), "AccountNum": h["InvoiceAccount"],
                         "Invoice": h["InvoiceNumber"], "Voucher": voucher, "DocumentNum": h["DocumentNumber"],
                         "TransDate": post_date, "DocumentDate": inv_date, "DueDate": due, "TransType": "Purch",
                         "CurrencyCode": h["Currency"], "AmountCur": -total, "AmountMST": -total,
                         "Approved": "Yes", "ApprovedDate": post_date, "PaymMode": h["MethodOfPayment"],
                         "PostingProfile": h["PostingProfile"] or "GEN", "Txt": h["InvoiceDescription"],
                         "CreatedOn": now, "SysModifiedDateTime": now}
                for table, row in (("VendInvoiceJourBiEntities", jour), ("VendTransBiEntities", trans)):
                    conn.execute(f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in row)}) VALUES '
                                 f'({", ".join("?" for _ in row)})', list(row.values()))
                conn.execute("DELETE FROM VendorInvoiceLines WHERE dataAreaId = ? AND HeaderReference = ?",
                             [le, h["HeaderReference"]])
                conn.execute("DELETE FROM VendorInvoiceHeaders WHERE dataAreaId = ? AND HeaderReference = ?",
                             [le, h["HeaderReference"]])
                if h["PurchaseOrderNumber"]:
                    conn.execute("UPDATE PurchaseOrderHeadersV2 SET PurchaseOrderStatus = 'Invoiced' WHERE "
                                 "dataAreaId = ? AND PurchaseOrderNumber = ?", [le, h["PurchaseOrderNumber"]])
                posted.append({"dataAreaId": le, "HeaderReference": h["HeaderReference"],
                               "InvoiceId": h["InvoiceNumber"], "InvoiceAccount": h["InvoiceAccount"],
                               "LedgerVoucher": voucher, "SourceKey": jour["SourceKey"]})
                # Field names mirror SalesInvoicePostedBusinessEvent's contract [INF, reference §6].
                events.append((le, {"InvoiceAccount": h["InvoiceAccount"], "InvoiceId": h["InvoiceNumber"],
                                    "PurchaseOrderId": h["PurchaseOrderNumber"], "InvoiceDate": dotnet_date(inv_date),
                                    "InvoiceDueDate": dotnet_date(due),
                                    "InvoiceAmountInAccountingCurrency": float(total),
                                    "InvoiceTaxAmount": float(tax), "LegalEntity": le}))
        payloads = [self.events.fire("VendorInvoicePostedBusinessEvent", le, f) for le, f in events]
        return {"posted": posted, "failed": failed, "events": payloads}

    def pay_invoices(self, invoices: list[dict[str, Any]]) -> dict[str, Any]:
        """Settle invoices: ``[{"InvoiceId", "dataAreaId"?, "InvoiceAccount"?, "Amount"?}]`` (default: in full)."""
        paid, failed, events = [], [], []
        with self.transaction() as conn:
            for item in invoices:
                sql = ("SELECT dataAreaId, SourceKey, AccountNum, Invoice, Voucher, AmountCur, SettleAmountCur, "
                       "CurrencyCode FROM VendTransBiEntities WHERE TransType = 'Purch' AND Invoice = ?")
                args: list[Any] = [item["InvoiceId"]]
                if item.get("dataAreaId"):
                    sql += " AND dataAreaId = ?"
                    args.append(str(item["dataAreaId"]).lower())
                if item.get("InvoiceAccount"):
                    sql += " AND AccountNum = ?"
                    args.append(item["InvoiceAccount"])
                rows = conn.execute(sql + " ORDER BY SourceKey", args).fetchall()
                if not rows:
                    failed.append({**item, "error": "no posted invoice with that id"})
                    continue
                le, source_key, account, invoice, voucher, amount_cur, settled, currency = rows[0]
                open_amount = -(amount_cur - settled)  # invoices are credits: AmountCur < 0
                pay = Decimal(str(item["Amount"])) if item.get("Amount") is not None else open_amount
                pay = min(pay, open_amount)
                if pay <= 0:
                    failed.append({**item, "error": "invoice already settled"})
                    continue
                n = self.next_number(f"appay:{le}", _max_suffix("VendTransBiEntities", "Voucher", le, "APPAY"))
                pay_voucher = f"APPAY{n:06d}"  # [INF] voucher format
                now = _now()
                new_settled = settled - pay
                closed = now.date() if new_settled == amount_cur else dt.date(1900, 1, 1)
                conn.execute("UPDATE VendTransBiEntities SET SettleAmountCur = ?, SettleAmountMST = ?, "
                             "LastSettleDate = ?, LastSettleVoucher = ?, LastSettleAccountNum = ?, "
                             "LastSettleCompany = ?, Closed = ?, SysModifiedDateTime = ? WHERE dataAreaId = ? AND "
                             "SourceKey = ?", [new_settled, new_settled, now.date(), pay_voucher, account, le,
                                               closed, now, le, source_key])
                payment = {"dataAreaId": le, "SourceKey": self.next_recid(), "AccountNum": account,
                           "Voucher": pay_voucher, "TransDate": now.date(), "DocumentDate": now.date(),
                           "DueDate": now.date(), "TransType": "Payment", "CurrencyCode": currency,
                           "AmountCur": pay, "AmountMST": pay, "SettleAmountCur": pay, "SettleAmountMST": pay,
                           "Closed": now.date(), "LastSettleDate": now.date(), "LastSettleVoucher": voucher,
                           "LastSettleAccountNum": account, "LastSettleCompany": le, "Approved": "Yes",
                           "PaymMode": "ELECTRONIC", "Txt": f"Payment of {invoice}", "CreatedOn": now,
                           "SysModifiedDateTime": now}
                conn.execute(f'INSERT INTO VendTransBiEntities ({", ".join(chr(34) + c + chr(34) for c in payment)}) '
                             f'VALUES ({", ".join("?" for _ in payment)})', list(payment.values()))
                paid.append({"dataAreaId": le, "InvoiceId": invoice, "InvoiceAccount": account,
                             "Amount": float(pay), "PaymentVoucher": pay_voucher,
                             "Closed": closed.year > 1900})
                # Field names are an inference (reference §6: not found in public sources).
                events.append((le, {"VendorAccount": account, "PaymentVoucher": pay_voucher, "InvoiceId": invoice,
                                    "Amount": float(pay), "CurrencyCode": currency, "LegalEntity": le,
                                    "PaymentDate": dotnet_date(now.date())}))
        payloads = [self.events.fire("VendorPaymentPostedBusinessEvent", le, f) for le, f in events]
        return {"paid": paid, "failed": failed, "events": payloads}

    def confirm_po(self, data_area_id: str, po: str) -> dict[str, Any]:
        le = data_area_id.lower()
        with self.transaction() as conn:
            head = conn.execute("SELECT OrderVendorAccountNumber, CurrencyCode, AccountingDate FROM "
                                "PurchaseOrderHeadersV2 WHERE dataAreaId = ? AND PurchaseOrderNumber = ?",
                                [le, po]).fetchone()
            if head is None:
                raise KeyError(f"purchase order {le}/{po} not found")
            conn.execute("UPDATE PurchaseOrderHeadersV2 SET DocumentApprovalStatus = 'Confirmed' WHERE dataAreaId = ?"
                         " AND PurchaseOrderNumber = ?", [le, po])
            total = conn.execute("SELECT coalesce(sum(LineAmount), 0) FROM PurchaseOrderLinesV2 WHERE dataAreaId = ?"
                                 " AND PurchaseOrderNumber = ?", [le, po]).fetchone()[0]  # type: ignore[index]
        n = self.next_number(f"pojour:{le}:{po}")
        # Fields as in the observed payload (reference §6, OBS R14).
        return self.events.fire("PurchaseOrderConfirmedBusinessEvent", le, {
            "LegalEntity": le, "PurchaseJournal": f"{po}-{n}", "PurchaseOrderDate": dotnet_date(head[2]),
            "PurchaseOrderNumber": po, "PurchaseType": "Purch", "TransactionCurrencyAmount": float(total),
            "TransactionCurrencyCode": head[1], "VendorAccount": head[0]})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _typed_key(es: EntitySet, key: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in es.keys if k not in key]
    if missing:
        raise ValueError(f"{es.name} key needs {missing}")
    out = {}
    for k in es.keys:
        prop = es.by_name[k]
        out[k] = to_storage(es, prop, key[k]) if prop.kind in ("D", "T") else key[k]
    return out

