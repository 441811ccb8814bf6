"""ServiceNow client: OAuth client credentials (or basic auth), Table API keyset reads, Import Set API.

Facts it relies on are in reference/servicenow.md (§ numbers below refer to it).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from ..redaction import get_logger, register_secrets
from ..settings import ConnectorSettings
from .encoded_query import EncodedQuery, UnsafeQueryError, check_field, escape, has_new_query, split_terms
from .errors import (
    ApiError,
    AuthError,
    ConnectorError,
    CredentialsRefusedError,
    ForbiddenError,
    NotFoundError,
    TransientError,
    ValidationError,
)
from .transport import RetryPolicy, Transport, cut_off_read, json_object

log = get_logger(__name__)

SYSTEM = "ServiceNow"
CANCELLED = b"maximum execution time exceeded"
KEYSET_FIELDS = ("sys_updated_on", "sys_id")
# Import set row element names come from practitioner code and its state values (pending, inserted, …) are inferred:
# neither is documented (reference/servicenow-s2p-schema.md, Import Set Row).
IMPORT_ROW_FIELDS = ("sys_id", "sys_import_set", "sys_import_row", "sys_import_state", "sys_import_state_comment",
                     "sys_target_sys_id", "sys_target_table")
TOKEN_SKEW_S = 60.0  # refresh a little before the stated expiry: clocks and in-flight requests


def is_cancelled_transaction(response: httpx.Response) -> bool:
    """The quota killer's answer: HTTP 200 with the page cut off and an error object glued on (§1.7, §4)."""
    content = response.content
    if CANCELLED not in content:
        return False
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return True
    # A well-formed body can legitimately contain the phrase (e.g. a processing_message); only an error is one.
    return isinstance(data, dict) and "error" in data and "result" not in data


def broken_success(response: httpx.Response) -> str | None:
    """Why a 2xx answer is really a failure to retry: a cancelled transaction or a read cut off on the way."""
    if is_cancelled_transaction(response):
        return "the transaction was cancelled (maximum execution time exceeded; smaller pages would help)"
    return cut_off_read(response)


def _error_texts(response: httpx.Response) -> tuple[str, str]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200].strip(), ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("message") or ""), str(err.get("detail") or "")
    if isinstance(body, dict) and "error" in body:
        return str(body.get("error") or ""), str(body.get("error_description") or "")
    return "", ""


def error_for(status: int, message: str, detail: str, what: str) -> ApiError:
    text = message + (f" ({detail})" if detail and detail != message else "")
    sentence = f"ServiceNow refused {what}: {text or f'HTTP {status}'}"
    kwargs: dict[str, Any] = {"status": status, "system": SYSTEM, "detail": detail or message}
    if status == 404:
        return NotFoundError(sentence, **kwargs)
    if status == 403:
        return ForbiddenError(sentence, **kwargs)
    return ValidationError(sentence, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Authentication


class SnowAuth:
    """OAuth client credentials with expiry tracking, or basic auth; ``auto`` falls back from one to the other.

    ServiceNow answers every refused token request with the same 401 ``access_denied`` body (bad secret, grant
    disabled, no application user: §3.2), so the fallback cannot say which; it logs that once.

    Once the instance has refused the credentials themselves (the token request, or basic credentials answered
    401), :attr:`refused` holds the error and every later call raises it without a request: asking again with the
    same credentials cannot succeed, and hundreds of refused calls only fill logs and may lock the user out.
    """

    def __init__(self, settings: ConnectorSettings, transport: Transport,
                 clock: Callable[[], float] = time.time) -> None:
        self.mode = settings.snow_auth
        self.token_url = f"{settings.require('snow_url')}/oauth_token.do"
        self.client_id = settings.snow_client_id
        self._client_secret = settings.secret("snow_client_secret")
        self.username = settings.snow_username
        self._password = settings.secret("snow_password")
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.oauth_refused = False
        self.refused: CredentialsRefusedError | None = None
        has_oauth = bool(self.client_id and self._client_secret)
        self.effective = "basic" if self.mode == "basic" or (self.mode == "auto" and not has_oauth) else "oauth"
        register_secrets([self._client_secret, self._password])

    @property
    def token_expires_at(self) -> float:
        return self._expires_at

    def _refuse(self, message: str, *, status: int | None = None, code: str | None = None
                ) -> CredentialsRefusedError:
        """Remember that the instance refused the credentials; every later call gets this error."""
        self.refused = CredentialsRefusedError(message, status=status, system=SYSTEM, code=code)
        return self.refused

    def _basic_refused(self) -> CredentialsRefusedError:
        if self.oauth_refused:  # auto mode fell back to basic auth, and that was refused too
            return self._refuse(
                f"ServiceNow refused both the OAuth client (D365SNOW_SNOW_CLIENT_ID / D365SNOW_SNOW_CLIENT_SECRET) "
                f"and the basic-auth user {self.username!r} (D365SNOW_SNOW_USERNAME / D365SNOW_SNOW_PASSWORD); fix "
                f"either pair.", status=401)
        return self._refuse(f"ServiceNow refused the basic-auth credentials of user {self.username!r}; check "
                            f"D365SNOW_SNOW_USERNAME and D365SNOW_SNOW_PASSWORD (and that the user is active and "
                            f"not locked out).", status=401)

    def _basic_header(self) -> str:
        if not (self.username and self._password):
            raise AuthError("ServiceNow basic auth needs D365SNOW_SNOW_USERNAME and D365SNOW_SNOW_PASSWORD.",
                            system=SYSTEM)
        raw = f"{self.username}:{self._password}".encode()
        header = "Basic " + base64.b64encode(raw).decode()
        register_secrets([header[6:]])
        return header

    def _acquire(self) -> None:
        """Ask for a client-credentials token; called with the lock held."""
        form = {"grant_type": "client_credentials", "client_id": self.client_id or "",
                "client_secret": self._client_secret or ""}
        response = self._transport.request(
            "POST", self.token_url, content=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            retry_unsafe=True)  # a token request changes nothing, so a lost answer may be asked again
        if response.status_code == 200:
            try:
                data = orjson.loads(response.content)
                token = str(data["access_token"])
                lifetime = float(data.get("expires_in") or 1800)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise AuthError("ServiceNow's token endpoint answered 200 without an access token.",
                                system=SYSTEM) from None
            register_secrets([token])
            self._token, self._expires_at = token, self._clock() + lifetime
            return
        message, detail = _error_texts(response)
        refused = response.status_code in (400, 401)
        if refused and self.mode == "auto" and self.username and self._password:
            if not self.oauth_refused:
                log.warning("ServiceNow refused the OAuth client-credentials grant (%s); falling back to basic auth "
                            "as %s. Enable the grant or set D365SNOW_SNOW_AUTH=basic to silence this.",
                            detail or message or response.status_code, self.username)
            self.oauth_refused = True
            self.effective = "basic"
            return
        if refused:
            self.oauth_refused = True
            raise self._refuse("ServiceNow refused the OAuth client-credentials grant (access_denied): the client id "
                               "or secret (D365SNOW_SNOW_CLIENT_ID / D365SNOW_SNOW_CLIENT_SECRET) is wrong, or the "
                               "grant is disabled on the instance "
                               "(glide.oauth.inbound.client.credential.grant_type.enabled) or its OAuth entity has "
                               "no application user.", status=response.status_code, code="access_denied")
        raise AuthError(f"ServiceNow's token endpoint answered HTTP {response.status_code}.",
                        status=response.status_code, system=SYSTEM)

    def ensure_fresh(self, min_valid_s: float = TOKEN_SKEW_S) -> float:
        """Make sure the credential stays valid for ``min_valid_s`` (call before a job); returns seconds left.

        ServiceNow hands back the *current* token while it is valid (§3.2), so asking early may return the same
        token; the 401 path still covers that case mid-job.
        """
        with self._lock:
            if self.refused is not None:
                raise self.refused
            if self.effective == "basic":
                return float("inf")
            if self._token is None or self._expires_at - self._clock() < min_valid_s:
                self._acquire()
            if self.effective == "basic":
                return float("inf")
            return self._expires_at - self._clock()

    def auth_headers(self) -> dict[str, str]:
        with self._lock:
            if self.refused is not None:
                raise self.refused
            if self.effective == "oauth" and (self._token is None or
                                              self._expires_at - self._clock() < TOKEN_SKEW_S):
                self._acquire()
            if self.effective == "basic":
                return {"Authorization": self._basic_header()}
            return {"Authorization": f"Bearer {self._token}"}

    def on_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        header = rejected.get("Authorization", "")
        if not header.startswith("Bearer "):
            with self._lock:  # basic credentials do not change by asking again: refused for good
                self._basic_refused()
            return False
        with self._lock:
            if self._token == header[7:]:
                self._token, self._expires_at = None, 0.0
        return True


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class KeysetCursor:
    """Position after the last record read: (``sys_updated_on``, ``sys_id``). Persist it only after the records
    up to it are committed (DESIGN.md §6)."""

    updated_on: str
    sys_id: str

    def key(self) -> tuple[str, str]:
        return (self.updated_on, self.sys_id)


@dataclass
class KeysetPage:
    rows: list[dict[str, Any]]
    cursor: KeysetCursor


@dataclass(frozen=True)
class ImportRowResult:
    """The transform outcome of one staging row (§2.4): inserted / updated / ignored / skipped / error."""

    status: str
    target_sys_id: str | None
    message: str | None
    http_status: int | None = None
    staging_sys_id: str | None = None
    import_set: str | None = None
    target_table: str | None = None


# ---------------------------------------------------------------------------------------------------------------
# The client


class ServiceNowClient:
    """Table API and Import Set API of one instance. Thread-safe."""

    def __init__(self, settings: ConnectorSettings, *, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 poll_sleep: Callable[[float], None] = time.sleep, transport: Transport | None = None) -> None:
        settings.check(["snow"])
        self.settings = settings
        self.base = settings.require("snow_url")
        self.transport = transport or Transport(SYSTEM, ca_bundle=settings.ca_bundle, policy=policy, sleep=sleep,
                                                clock=clock, transient_success=broken_success,
                                                headers={"Accept": "application/json"})
        self.auth = SnowAuth(settings, self.transport, clock=clock)
        self._poll_sleep = poll_sleep
        self._clock = clock

    def close(self) -> None:
        self.transport.close()

    @property
    def refused_credentials(self) -> CredentialsRefusedError | None:
        """Set once the instance refused the credentials: this client then sends nothing more."""
        return self.auth.refused

    def __enter__(self) -> ServiceNowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_fresh(self, min_valid_s: float = 600.0) -> float:
        """Before a job expected to take up to ``min_valid_s``: refresh a token that would expire during it."""
        return self.auth.ensure_fresh(min_valid_s)

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _send(self, method: str, path: str, what: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
              retry_unsafe: bool = False, ok: Sequence[int] = (200, 201, 204)) -> httpx.Response:
        try:
            response = self.transport.request(method, f"{self.base}{path}", params=params, json=json, auth=self.auth,
                                              retry_unsafe=retry_unsafe)
        except AuthError:
            if self.auth.refused is not None:  # the transport's generic 401 sentence → the one naming variables
                raise self.auth.refused from None
            raise
        if response.status_code in ok:
            return response
        message, detail = _error_texts(response)
        raise error_for(response.status_code, message, detail, what)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        return json_object(response.content, SYSTEM)

    @staticmethod
    def _table_path(table: str, sys_id: str | None = None) -> str:
        check_field(table)
        return f"/api/now/table/{table}" + (f"/{quote(sys_id, safe='')}" if sys_id is not None else "")

    # -- Table API -----------------------------------------------------------------------------------------------
    def get_page(self, table: str, query: str | EncodedQuery = "", *, fields: Sequence[str] | None = None,
                 limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], bool]:
        """One page: (rows, whether the ``Link`` header announces a next page)."""
        params: dict[str, str] = {"sysparm_query": str(query), "sysparm_limit": str(limit),
                                  "sysparm_offset": str(offset), "sysparm_no_count": "true",
                                  "sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = ",".join(check_field(f) for f in fields)
        response = self._send("GET", self._table_path(table), f"the read of {table}", params=params, ok=(200,))
        result = self._json(response).get("result")
        if not isinstance(result, list):
            raise TransientError(f"ServiceNow answered a read of {table} without a result list.", system=SYSTEM)
        return result, 'rel="next"' in response.headers.get("link", "")

    def iter_keyset(self, table: str, query: str | EncodedQuery = "", *, fields: Sequence[str] | None = None,
                    page_size: int = 500, cursor: KeysetCursor | None = None, until: str | None = None
                    ) -> Iterator[KeysetPage]:
        """Read ``query`` in (``sys_updated_on``, ``sys_id``) order after ``cursor``, page by page.

        Choice (reference §1.8): two plain AND queries instead of the one-query ``^NQ`` form, because whether a
        trailing ORDERBY applies across ``^NQ`` groups is undocumented, and the ``>=``-and-drop variant loops when
        one second holds more rows than a page. So: drain the cursor's second
        (``sys_updated_on={ts}^sys_id>{id}^ORDERBYsys_id``), then move on (``sys_updated_on>{ts}^ORDERBY…``).
        A short page never ends the read (ACLs filter after the limit, §1.2): only an empty page without a
        ``rel="next"`` link does; an empty page *with* one means a page hidden by ACLs, and the next offset is read.
        ``until`` (a UTC ``YYYY-MM-DD HH:MM:SS``) freezes the upper end, so rows changed during the read wait for
        the next pass instead of being read twice.
        """
        base = str(query)
        terms = split_terms(base) if base else []
        if has_new_query(base) or any(t.startswith("ORDERBY") for t in terms):
            raise UnsafeQueryError("iter_keyset needs a query without ^NQ and ORDERBY (it adds its own ordering)")
        wanted = list(dict.fromkeys([*(fields or []), *KEYSET_FIELDS])) if fields else None
        upper = f"^sys_updated_on<={escape(until)}" if until else ""
        prefix = f"{base}^" if base else ""
        phase = "drain" if cursor else "after"
        while True:
            if cursor is None:
                q = f"{prefix}sys_updated_onISNOTEMPTY{upper}^ORDERBYsys_updated_on^ORDERBYsys_id"
            elif phase == "drain":
                q = (f"{prefix}sys_updated_on={escape(cursor.updated_on)}^sys_id>{escape(cursor.sys_id)}"
                     f"^ORDERBYsys_id")
            else:
                q = f"{prefix}sys_updated_on>{escape(cursor.updated_on)}{upper}^ORDERBYsys_updated_on^ORDERBYsys_id"
            offset = 0
            while True:
                rows, has_next = self.get_page(table, q, fields=wanted, limit=page_size, offset=offset)
                if rows or not has_next:
                    break
                offset += page_size  # the whole page was hidden by ACLs; rows further on may be visible
            if not rows:
                if phase == "drain":
                    phase = "after"
                    continue
                return
            last = cursor.key() if cursor else ("", "")
            for row in rows:
                key = (str(row.get("sys_updated_on", "")), str(row.get("sys_id", "")))
                if key <= last:
                    # Fail closed: an instance ignoring the ORDERBY would otherwise make the cursor skip records.
                    raise ConnectorError(f"ServiceNow returned {table} rows out of (sys_updated_on, sys_id) order; "
                                         f"the keyset read stopped to avoid skipping records.", system=SYSTEM)
                last = key
            cursor = KeysetCursor(*last)
            yield KeysetPage(rows, cursor)
            phase = "drain"

    def iter_static(self, table: str, query: str | EncodedQuery, *, fields: Sequence[str] | None = None,
                    page_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Offset paging, only for record sets that do not change while read (a processed import set)."""
        offset = 0
        while True:
            rows, has_next = self.get_page(table, query, fields=fields, limit=page_size, offset=offset)
            if not rows and not has_next:
                return  # a short page is not the end (ACLs filter after the limit); an empty one is
            if rows:
                yield rows
            offset += page_size

    def get_record(self, table: str, sys_id: str, *, fields: Sequence[str] | None = None) -> dict[str, Any]:
        params = {"sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = ",".join(check_field(f) for f in fields)
        data = self._json(self._send("GET", self._table_path(table, sys_id), f"the read of {table} {sys_id}",
                                     params=params, ok=(200,)))
        return data.get("result") or {}

    def patch(self, table: str, sys_id: str, values: Mapping[str, str], *,
              fields: Sequence[str] | None = None) -> dict[str, Any]:
        """PATCH a record (absolute values, so resending is harmless); returns the record as stored."""
        params: dict[str, str] = {"sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = ",".join(check_field(f) for f in fields)
        data = self._json(self._send("PATCH", self._table_path(table, sys_id), f"the update of {table} {sys_id}",
                                     params=params, json=dict(values), ok=(200,)))
        return data.get("result") or {}

    def create(self, table: str, values: Mapping[str, str], *, retry_unsafe: bool = False) -> dict[str, Any]:
        """POST one record (201). A lost answer raises MaybeWrittenError unless ``retry_unsafe``."""
        data = self._json(self._send("POST", self._table_path(table), f"the creation of a {table} record",
                                     params={"sysparm_exclude_reference_link": "true"}, json=dict(values),
                                     retry_unsafe=retry_unsafe, ok=(200, 201)))
        return data.get("result") or {}

    # -- Import Set API --------------------------------------------------------------------------------------------
    @staticmethod
    def _row_result(entry: Mapping[str, Any], http_status: int, import_set: str | None) -> ImportRowResult:
        status = str(entry.get("status") or "error")
        message = entry.get("error_message") or entry.get("status_message") or None
        return ImportRowResult(status=status, target_sys_id=str(entry.get("sys_id") or "") or None,
                               message=str(message) if message else None, http_status=http_status,
                               import_set=import_set, target_table=str(entry.get("table") or "") or None)

    def import_one(self, staging: str, row: Mapping[str, str]) -> ImportRowResult:
        """Synchronous single-row import (§2.1): the precise outcome of one row.

        Re-sending is safe because the transform coalesces on the business key (§2.5).
        """
        response = self._send("POST", f"/api/now/import/{check_field(staging)}", f"the import into {staging}",
                              json=dict(row), retry_unsafe=True, ok=(200, 201))
        data = self._json(response)
        results = data.get("result")
        if not isinstance(results, list) or not results:
            raise TransientError(f"ServiceNow answered an import into {staging} without a result.", system=SYSTEM)
        # One entry per transform map; an error in any of them is the row's outcome.
        entry = next((r for r in results if r.get("status") == "error"), results[0])
        return self._row_result(entry, response.status_code, data.get("import_set"))

    def insert_multiple(self, staging: str, rows: Sequence[Mapping[str, str]], *, batch_size: int = 200,
                        progress: Callable[[int, int], None] | None = None, max_in_flight: int = 10,
                        parallel: int = 1, poll_timeout_s: float = 600.0) -> list[ImportRowResult]:
        """``insertMultiple`` in batches; per-row results in input order.

        An asynchronous transform (the default, §2.3) answers only ``import_set_id``: import sets are polled until
        processed and their rows read from ``sys_import_set_row`` in ``sys_import_row`` order. Up to
        ``max_in_flight`` batches are sent before they are collected together, so the instance transforms while
        the next batch travels, and the results of all of them cost one state poll and one row read (``…IN``
        queries) instead of three requests per batch: under a rate-limit rule nearly every request the rule
        allows carries 200 rows (bench/: push). Batches are re-sent safely after a lost answer: the transform
        coalesces (§2.5).

        ``parallel`` batches travel at once, so one batch's round trip overlaps the instance's work on another.
        Only for rows with distinct coalesce keys: concurrent batches may reach the instance in any order, so two
        versions of one record must not be in flight together (the caller knows; the diff guarantees it).
        """
        check_field(staging)
        total = len(rows)
        results: list[ImportRowResult] = []
        pending: list[tuple[int, str | None, list[ImportRowResult] | None]] = []

        def collect() -> None:
            sets = [set_id for _, set_id, ready in pending if ready is None and set_id]
            expected = {set_id: size for size, set_id, ready in pending if ready is None and set_id}
            read = self._read_import_sets(staging, sets, expected, poll_timeout_s) if sets else {}
            for size, set_id, ready in pending:
                got = ready if ready is not None else read.get(set_id or "", [])
                if len(got) != size:
                    raise TransientError(f"ServiceNow reported {len(got)} results for {size} rows sent to "
                                         f"{staging}.", system=SYSTEM)
                results.extend(got)
                if progress:
                    progress(len(results), total)
            pending.clear()

        def send(batch: list[dict[str, str]]) -> tuple[int, str | None, list[ImportRowResult] | None]:
            response = self._send("POST", f"/api/now/import/{staging}/insertMultiple",
                                  f"insertMultiple into {staging}", json={"records": batch}, retry_unsafe=True,
                                  ok=(200, 201))
            data = self._json(response)
            immediate = data.get("result")
            if isinstance(immediate, list) and len(immediate) == len(batch):
                return len(batch), None, [self._row_result(e, response.status_code, data.get("import_set"))
                                          for e in immediate]
            set_id = data.get("import_set_id")
            if not set_id:
                raise TransientError(f"ServiceNow answered insertMultiple into {staging} with neither results "
                                     f"nor an import_set_id.", system=SYSTEM)
            return len(batch), str(set_id), None

        batches = [[dict(r) for r in rows[at:at + batch_size]] for at in range(0, total, batch_size)]
        window = max(max_in_flight, 1)
        # Both maps keep input order, so results line up with rows. The pool starts no thread when parallel is 1.
        pool = ThreadPoolExecutor(max_workers=max(parallel, 1), thread_name_prefix="insertMultiple")
        send_all = pool.map if parallel > 1 else map
        try:
            for at in range(0, len(batches), window):
                pending.extend(send_all(send, batches[at:at + window]))
                collect()
        except BaseException:
            # The first failed batch (or a cancelled run) ends the call at once: batches not started are dropped,
            # one already sending finishes in the background (it may be waiting out a 429). The caller treats the
            # whole call as unsent; coalesce makes re-sending safe.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return results

    def _read_import_set(self, staging: str, set_id: str, expected: int, timeout_s: float
                         ) -> list[ImportRowResult]:
        """The per-row results of one import set (see :meth:`_read_import_sets`)."""
        return self._read_import_sets(staging, [set_id], {set_id: expected}, timeout_s)[set_id]

    def _read_import_sets(self, staging: str, set_ids: Sequence[str], expected: Mapping[str, int],
                          timeout_s: float) -> dict[str, list[ImportRowResult]]:
        """Per import set in ``set_ids``, its per-row results in ``sys_import_row`` order, once transformed.

        The staging rows are read first and are themselves the progress signal: a set whose expected rows are all
        there and none ``pending`` is done, so a finished batch costs this one read and no state poll. While sets
        are still transforming, a count of their finished rows (a one-row read's ``X-Total-Count``, reference
        §1.4) tells how far the instance is, and their rows are read again only once the count says they are all
        finished (or the instance sends no count): re-reading thousands of pending rows on every poll loaded the
        instance the connector was waiting for. From the second wait on, the sets' ``sys_import_set`` state is
        polled too, because a cancelled set leaves rows pending forever (those become errors).
        """
        deadline = self._clock() + timeout_s
        interval = 0.05
        states: dict[str, str] = {}
        final: dict[str, list[dict[str, Any]]] = {}
        waiting = list(set_ids)
        waits = 0
        while True:
            staged = self._import_rows(waiting, sum(expected[s] for s in waiting))
            still = []
            for set_id in waiting:
                set_rows = staged[set_id]
                transformed = (len(set_rows) >= expected[set_id]
                               and all(r.get("sys_import_state") != "pending" for r in set_rows))
                if transformed or states.get(set_id) in ("processed", "cancelled"):
                    final[set_id] = set_rows
                else:
                    still.append(set_id)
            waiting = still
            if not waiting:
                break
            while True:
                if self._clock() > deadline:
                    set_id = waiting[0]
                    raise TransientError(f"ServiceNow did not transform import set {set_id} ({staging}) within "
                                         f"{timeout_s:.0f} s (state {states.get(set_id, 'loading')!r}); the rows "
                                         f"stay in the staging table and the next sync re-sends them.", system=SYSTEM)
                self._poll_sleep(interval)
                interval = min(interval * 2, 2.0)
                waits += 1
                if waits >= 2:
                    states.update(self._import_set_states(waiting))
                if all(states.get(s) in ("processed", "cancelled") for s in waiting):
                    break
                finished = self._finished_rows(waiting)
                if finished is None or finished >= sum(expected[s] for s in waiting):
                    break
        out: dict[str, list[ImportRowResult]] = {}
        for set_id in set_ids:
            set_rows = final[set_id]
            # sys_import_row is a number stored as a string: order numerically, not by the string ORDERBY.
            set_rows.sort(key=lambda r: int(r.get("sys_import_row") or 0))
            cancelled = states.get(set_id) == "cancelled"
            results = []
            for row in set_rows:
                status = str(row.get("sys_import_state") or "error")
                if cancelled and status == "pending":
                    status = "error"
                # The row's Comment carries the transform's message; sys_row_error only references an error record.
                message = row.get("sys_import_state_comment") or None
                target = row.get("sys_target_sys_id") or None
                results.append(ImportRowResult(status=status, target_sys_id=target, message=message, http_status=200,
                                               staging_sys_id=row.get("sys_id"), import_set=set_id,
                                               target_table=row.get("sys_target_table") or None))
            out[set_id] = results
        return out

    def _import_set_states(self, set_ids: Sequence[str]) -> dict[str, str]:
        if len(set_ids) == 1:
            return {set_ids[0]: str(self.get_record("sys_import_set", set_ids[0], fields=["state"]).get("state", ""))}
        query = EncodedQuery().in_("sys_id", set_ids)
        return {str(r.get("sys_id")): str(r.get("state") or "")
                for page in self.iter_static("sys_import_set", query, fields=["sys_id", "state"],
                                             page_size=len(set_ids))
                for r in page}

    @staticmethod
    def _rows_of(set_ids: Sequence[str]) -> EncodedQuery:
        return (EncodedQuery().eq("sys_import_set", set_ids[0]) if len(set_ids) == 1
                else EncodedQuery().in_("sys_import_set", set_ids))

    def _finished_rows(self, set_ids: Sequence[str]) -> int | None:
        """How many rows of ``set_ids`` are no longer ``pending``; None when the answer carries no count."""
        params = {"sysparm_query": str(self._rows_of(set_ids).ne("sys_import_state", "pending")),
                  "sysparm_limit": "1", "sysparm_fields": "sys_id"}
        response = self._send("GET", self._table_path("sys_import_set_row"), "the count of transformed import rows",
                              params=params, ok=(200,))
        count = response.headers.get("x-total-count", "").strip()
        return int(count) if count.isdigit() else None

    def _import_rows(self, set_ids: Sequence[str], want: int) -> dict[str, list[dict[str, Any]]]:
        """The ``sys_import_set_row`` rows of ``set_ids`` (one request when they fit one page)."""
        query = self._rows_of(set_ids).order_by("sys_import_row")
        staged: dict[str, list[dict[str, Any]]] = {s: [] for s in set_ids}
        seen = offset = 0
        page_size = min(max(want, 1), 10_000)  # the Table API's page cap (§1.2)
        while True:
            rows, has_next = self.get_page("sys_import_set_row", query, fields=IMPORT_ROW_FIELDS, limit=page_size,
                                           offset=offset)
            for row in rows:
                bucket = staged.get(str(row.get("sys_import_set") or ""))
                if bucket is not None:
                    bucket.append(row)
                    seen += 1
            # Every expected row read: done without asking for the empty page that would confirm it. Otherwise a
            # short page is not the end (ACLs filter after the limit, §1.2): only an empty page without a next link.
            if seen >= want or (not rows and not has_next):
                return staged
            offset += page_size
