"""Dynamics 365 F&O OData client: Entra ID client credentials through msal, streamed paging, writes, ``$batch``.

Facts it relies on are in reference/d365.md (§ numbers below refer to it).
"""

from __future__ import annotations

import io
import re
import ssl
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
import orjson
import polars as pl
import requests
from defusedxml import ElementTree
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from ..paths import write_private
from ..redaction import get_logger, register_secrets
from ..settings import ConnectorSettings
from . import key_ranges, odata, paging
from .concurrency import AdaptiveConcurrency, LatencySample
from .errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    ConflictError,
    ConnectorError,
    CredentialsRefusedError,
    DuplicateError,
    ForbiddenError,
    MaybeWrittenError,
    NotFoundError,
    ReadOnlyError,
    TransientError,
    ValidationError,
)
from .transport import (
    RetryPolicy,
    Transport,
    cut_off_read,
    is_tls_verification_failure,
    json_object,
    tls_failure_message,
)

log = get_logger(__name__)

SYSTEM = "F&O"
ODATA_HEADERS = {"OData-Version": "4.0", "OData-MaxVersion": "4.0",
                 "Accept": "application/json;odata.metadata=minimal", "Accept-Charset": "UTF-8"}
_AADSTS = re.compile(r"AADSTS\d+")
# Token-endpoint errors that say "not now" rather than "not you" (throttling, outage). Inference: RFC 6749 defines
# these two for the authorization endpoint, and Entra answers its throttling (AADSTS50196) with them; every other
# error (invalid_client, unauthorized_client, invalid_request, invalid_scope…) refuses the credentials themselves.
_ENTRA_BUSY = frozenset({"temporarily_unavailable", "server_error", "too_many_requests"})

# ---------------------------------------------------------------------------------------------------------------
# TLS for msal: requests with its own trust settings (§1.2 "verify= gotcha")


def _system_ca_file() -> str | None:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    try:
        import certifi  # requests' own dependency, so present wherever requests is
    except ImportError:  # pragma: no cover
        return None
    return certifi.where()


CA_FILE = "entra-ca-bundle.pem"


def combined_ca_bundle(ca_bundle: Path | None, home: Path) -> str | bool:
    """A PEM file with the system CAs plus ``ca_bundle``, for requests (which takes one file, not a context).

    Written into the connector home (created 0700 if need be) with mode 0600, never at a predictable path in a
    shared temp directory where another local user could plant a CA first.
    """
    system = _system_ca_file()
    if ca_bundle is None:
        return system or True
    parts = [Path(system).read_bytes()] if system else []
    try:
        parts.append(Path(ca_bundle).read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"D365SNOW_CA_BUNDLE ({ca_bundle}) could not be read: {exc.strerror}.") from None
    blob = b"\n".join(parts)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = home / CA_FILE
    if not (target.is_file() and target.read_bytes() == blob):
        write_private(target, blob)  # atomic: processes writing it at once each rename their own temp file
    return str(target)


def entra_http_session(ca_bundle: Path | None, home: Path) -> requests.Session:
    """The ``http_client`` for msal: ``trust_env=False`` so REQUESTS_CA_BUNDLE cannot replace ``verify`` (§1.2)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = combined_ca_bundle(ca_bundle, home)
    return session


class _TimeoutSession:
    """msal passes no timeout to its http_client; a hung IdP must not hang a run.

    It also gives back the proxy that ``trust_env=False`` drops along with REQUESTS_CA_BUNDLE: HTTPS_PROXY /
    HTTP_PROXY / ALL_PROXY with NO_PROXY, chosen per URL exactly as requests does for a session that trusts the
    environment, so token requests take the same way out as every other call (httpx honours the same variables).
    """

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._session, self._timeout = session, timeout

    def _kwargs(self, url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("proxies", requests.utils.get_environ_proxies(url))
        return kwargs

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self._session.get(url, **self._kwargs(url, kwargs))

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self._session.post(url, **self._kwargs(url, kwargs))

    def close(self) -> None:
        self._session.close()


# ---------------------------------------------------------------------------------------------------------------
# Tokens


class EntraTokenProvider:
    """Client-credentials tokens for F&O from msal, with eviction of a token F&O rejected.

    msal serves a cached token until 5 minutes before expiry (§1.2), so after a 401 the rejected token must be
    removed from the cache; otherwise ``acquire_token_for_client`` hands the same token back.

    An error answer of the token endpoint (wrong secret, unknown application or tenant) is final for this provider:
    :attr:`refused` keeps it and every later call raises it without asking Entra again.
    """

    def __init__(self, settings: ConnectorSettings, *, http_client: Any | None = None,
                 timeout_s: float = 30.0) -> None:
        settings.check(["d365"])
        self.client_id: str = settings.require("d365_client_id")
        self._secret: str = settings.secret("d365_client_secret") or ""
        self.authority = settings.d365_authority_url
        self.scope = settings.d365_scope
        host = urlsplit(self.authority).hostname or ""
        # Instance discovery asks login.microsoftonline.com about the authority host, which fails (or leaks the
        # host name) for anything that is not a Microsoft cloud (§1.2): keep it only for Microsoft's hosts.
        self.instance_discovery = host in WELL_KNOWN_AUTHORITY_HOSTS
        self._http = http_client or _TimeoutSession(entra_http_session(settings.ca_bundle, settings.home),
                                                    timeout_s)
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        self.refused: CredentialsRefusedError | None = None
        register_secrets([self._secret])

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            try:
                # The constructor fetches the OpenID configuration (network I/O), hence lazily and guarded.
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._secret, authority=self.authority,
                    http_client=self._http, instance_discovery=self.instance_discovery)
            except requests.RequestException as exc:
                raise AuthError(f"The Entra authority {self.authority} could not be reached "
                                f"({exc.__class__.__name__}); check D365SNOW_D365_AUTHORITY, the network and "
                                f"D365SNOW_CA_BUNDLE.", system="Entra ID") from None
            except ValueError as exc:
                raise AuthError(f"The Entra authority {self.authority} did not answer with an OpenID configuration "
                                f"({str(exc).splitlines()[0][:160]}); check D365SNOW_D365_AUTHORITY and "
                                f"D365SNOW_D365_TENANT_ID.", system="Entra ID") from None
            except msal.exceptions.MsalServiceError as exc:
                raise TransientError(f"The Entra authority failed ({exc}); try again later.",
                                     system="Entra ID") from None
        return self._app

    def token(self) -> str:
        with self._lock:
            if self.refused is not None:
                raise self.refused
            try:
                # Building the app already fetches the OpenID configuration (reference/d365.md §1.2).
                app = self._application()
                result = app.acquire_token_for_client([self.scope])
            except requests.RequestException as exc:
                if is_tls_verification_failure(exc):
                    raise ConfigurationError(tls_failure_message("Entra ID", self.authority)) from None
                raise AuthError(f"The Entra token endpoint of {self.authority} could not be reached "
                                f"({exc.__class__.__name__}).", system="Entra ID") from None
            except msal.exceptions.MsalServiceError as exc:
                raise TransientError(f"The Entra token endpoint failed ({exc}); try again later.",
                                     system="Entra ID") from None
        if "access_token" not in result:
            error = str(result.get("error") or "")
            if error in _ENTRA_BUSY:
                raise TransientError(f"Entra ID could not issue a token right now ({error}); try again later.",
                                     system="Entra ID")
            self.refused = self._token_error(result)
            raise self.refused
        token = result["access_token"]
        register_secrets([token])
        return token

    def _token_error(self, result: Mapping[str, Any]) -> CredentialsRefusedError:
        description = str(result.get("error_description") or "")
        code_match = _AADSTS.search(description)
        code = code_match.group(0) if code_match else str(result.get("error") or "unknown_error")
        # The first sentence carries the reason; trace and correlation ids follow and are noise for an operator.
        first = description.split("\r\n")[0].split("\n")[0].split(" Trace ID:")[0].strip()
        hint = {"AADSTS7000215": "the client secret (D365SNOW_D365_CLIENT_SECRET) is wrong",
                "AADSTS7000222": "the client secret has expired; create a new one",
                "AADSTS700016": "the application (D365SNOW_D365_CLIENT_ID) is not found in this tenant",
                "AADSTS90002": "the tenant (D365SNOW_D365_TENANT_ID) does not exist",
                "AADSTS500011": "the F&O resource (D365SNOW_D365_URL) is not known to this tenant",
                }.get(code, "check the app registration and D365SNOW_D365_* settings")
        reason = first or str(result.get("error") or "")
        reason = reason if reason.startswith(code) else f"{code}: {reason}"
        return CredentialsRefusedError(f"Entra ID refused the F&O token request ({reason}); {hint}.",
                                       system="Entra ID", code=code, detail=first)

    def invalidate(self, token: str | None) -> None:
        """Remove ``token`` (or every access token when None) from msal's cache."""
        with self._lock:
            if self._app is None:
                return
            cache = self._app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                if token is None or item.get("secret") == token:
                    cache.remove_at(item)

    # -- Authenticator protocol for the transport ----------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def on_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        header = rejected.get("Authorization", "")
        self.invalidate(header[7:] if header.startswith("Bearer ") else None)
        return True

    def close(self) -> None:
        closer = getattr(self._http, "close", None)
        if closer:
            closer()


# ---------------------------------------------------------------------------------------------------------------
# Errors


def _error_texts(response: httpx.Response) -> tuple[str, str, str]:
    """(message, infolog / inner message, inner type) of an OData error body; empty strings when absent."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:300].strip(), "", ""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", "", ""
    inner = err.get("innererror") or {}
    inner = inner if isinstance(inner, dict) else {}
    return str(err.get("message") or ""), str(inner.get("message") or ""), str(inner.get("type") or "")


def is_write_failure(response: httpx.Response) -> bool:
    """A 5xx carrying an F&O infolog is a business answer (the transaction was rolled back), not an outage."""
    if "json" not in response.headers.get("content-type", ""):
        return False
    _, inner, kind = _error_texts(response)
    return bool(inner) and ("Infolog" in inner or "Exception" in kind)


def error_for(status: int, message: str, inner: str, what: str) -> ApiError:
    """Map an F&O error answer to the connector's exceptions, keeping the infolog (not secret) as detail."""
    text = inner or message or f"HTTP {status}"
    sentence = f"F&O refused {what}: {text}"
    lowered = text.lower()
    kwargs: dict[str, Any] = {"status": status, "system": SYSTEM, "detail": inner or message}
    if status == 404:
        return NotFoundError(sentence, **kwargs)
    if status == 412:
        return ConflictError(sentence, **kwargs)
    if status == 403:
        return ForbiddenError(sentence, **kwargs)
    if "already exists" in lowered or "has already been used" in lowered or "is already used" in lowered:
        return DuplicateError(sentence, **kwargs)
    if "read-only" in lowered or "read only" in lowered or status == 405:
        return ReadOnlyError(sentence, **kwargs)
    return ValidationError(sentence, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# $batch


@dataclass(frozen=True)
class BatchOp:
    """One request inside a changeset. ``key`` addresses PATCH/DELETE; ``body`` is the JSON payload."""

    method: str
    entity_set: str
    key: Mapping[str, Any] | None = None
    body: Mapping[str, Any] | None = None


@dataclass
class BatchPart:
    status: int
    body: dict[str, Any] | None
    content_id: str | None
    error: ApiError | None = None


@dataclass
class ChangesetResult:
    """All parts when the changeset committed; otherwise ``ok`` False and ``error`` from the failing part (the
    changeset is atomic, so nothing of it was written)."""

    ok: bool
    parts: list[BatchPart] = field(default_factory=list)
    error: ApiError | None = None
    failed_content_id: str | None = None


def _http_part(method: str, url: str, content_id: str, body: Mapping[str, Any] | None) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary", f"Content-ID: {content_id}", "",
             f"{method} {url} HTTP/1.1", "Accept: application/json", "OData-Version: 4.0"]
    payload = b""
    if body is not None:
        payload = orjson.dumps(dict(body))
        lines.append("Content-Type: application/json;odata.metadata=minimal")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def build_batch(base: str, changesets: Sequence[Sequence[BatchOp]]) -> tuple[bytes, str]:
    """The multipart/mixed ``$batch`` body (one changeset per inner list) and its content type."""
    boundary = f"batch_{uuid.uuid4()}"
    out = bytearray()
    for number, ops in enumerate(changesets):
        cs = f"changeset_{uuid.uuid4()}"
        out += f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n".encode()
        for index, op in enumerate(ops, start=1):
            target = odata.key_path(op.entity_set, op.key) if op.key is not None else op.entity_set
            url = f"{base}/{target}?cross-company=true"
            out += f"--{cs}\r\n".encode() + _http_part(op.method.upper(), url, f"{number + 1}.{index}",
                                                        op.body) + b"\r\n"
        out += f"--{cs}--\r\n".encode()
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/mixed; boundary={boundary}"


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _split_multipart(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        chunk = chunk.removesuffix(b"\r\n").removesuffix(b"\n")
        parts.append(chunk)
    return parts


def _head_and_body(blob: bytes) -> tuple[dict[str, str], bytes]:
    match = re.search(rb"\r?\n\r?\n", blob)
    head, rest = (blob[: match.start()], blob[match.end():]) if match else (blob, b"")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parse_http_part(blob: bytes) -> BatchPart:
    mime, inner = _head_and_body(blob)
    match = re.match(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r?\n", inner)
    if not match:
        raise TransientError("F&O answered a $batch part that is not an HTTP response; the answer was cut off.",
                             system=SYSTEM)
    status = int(match.group(1))
    headers, payload = _head_and_body(inner[match.start():].split(b"\n", 1)[1] if b"\n" in inner else b"")
    del headers
    payload = payload.strip()
    data: dict[str, Any] | None = None
    if payload:
        try:
            loaded = orjson.loads(payload)
            data = loaded if isinstance(loaded, dict) else None
        except orjson.JSONDecodeError:
            data = None
    return BatchPart(status, data, mime.get("content-id"))


def parse_batch_response(content: bytes, content_type: str) -> list[list[BatchPart]]:
    """Per top-level item, its parts (a changeset → its operations, or the single failing operation)."""
    match = _BOUNDARY.search(content_type)
    if not match:
        raise TransientError("F&O answered $batch without a multipart boundary.", system=SYSTEM)
    items: list[list[BatchPart]] = []
    for part in _split_multipart(content, match.group(1)):
        headers, body = _head_and_body(part)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            inner = _BOUNDARY.search(ctype)
            if not inner:
                raise TransientError("F&O answered a changeset without a boundary.", system=SYSTEM)
            items.append([_parse_http_part(p) for p in _split_multipart(body, inner.group(1))])
        else:
            items.append([_parse_http_part(part)])
    return items


# ---------------------------------------------------------------------------------------------------------------
# Page bodies

def page_frame(content: bytes, entity_set: str) -> pl.DataFrame:
    """The ``value`` rows of one page body as a frame (``@odata.*`` annotation columns dropped; an empty page is an
    empty frame).

    polars' JSON reader parses the body straight into columns (no Python object per value, and the GIL is released,
    so extracts of several legal entities parse in parallel): about 3x less client CPU than dicts → frame. Column
    types are inferred over the whole page as ``pl.from_dicts`` does (dates stay text).
    """
    try:
        envelope = pl.read_json(io.BytesIO(content), infer_schema_length=None)
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
        raise TransientError(f"F&O answered a read of {entity_set} with a body polars could not read as JSON "
                             f"({exc.__class__.__name__}); the answer was cut off.", system=SYSTEM) from None
    if "value" not in envelope.columns or not isinstance(envelope.schema["value"], pl.List):
        raise TransientError(f"F&O answered a read of {entity_set} without a 'value' list.", system=SYSTEM)
    values = envelope.get_column("value")
    if values.list.len()[0] == 0 or not isinstance(values.dtype.inner, pl.Struct):  # type: ignore[union-attr]
        return pl.DataFrame()
    frame = values.explode().struct.unnest()
    return frame.select([c for c in frame.columns if not c.startswith("@odata.")])


# ---------------------------------------------------------------------------------------------------------------
# The client


class D365Client:
    """F&O OData v4 at ``<D365SNOW_D365_URL>/data``. Thread-safe; one per process is enough."""

    def __init__(self, settings: ConnectorSettings, *, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 tokens: EntraTokenProvider | None = None, transport: Transport | None = None) -> None:
        settings.check(["d365"])
        self.settings = settings
        self.base = settings.d365_odata_root
        self._origin = urlsplit(self.base)
        self.tokens = tokens or EntraTokenProvider(settings)
        self.transport = transport or Transport("F&O", ca_bundle=settings.ca_bundle, policy=policy, sleep=sleep,
                                                clock=clock, final_error=is_write_failure,
                                                transient_success=cut_off_read, headers=ODATA_HEADERS)
        # Every page, count and probe of a read passes this gate (DESIGN §10); writes and key lookups do not. The
        # transport's own per-host ceiling bounds it: a wider gate would only queue in the transport.
        self.reads = AdaptiveConcurrency(min(settings.d365_max_concurrency,
                                             self.transport.policy.max_concurrency_per_host))
        self._bulk_reads = 0  # iter_bodies reads in progress: they share the gate
        self._bulk_lock = threading.Lock()

    def close(self) -> None:
        self.transport.close()
        self.tokens.close()

    @property
    def refused_credentials(self) -> CredentialsRefusedError | None:
        """Set once Entra ID refused the credentials: this client then sends nothing more."""
        return self.tokens.refused

    def __enter__(self) -> D365Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("https://", "http://")):
            parts = urlsplit(path_or_url)
            # A nextLink is opaque, but it must not carry the bearer token to another host.
            if (parts.scheme, parts.netloc) != (self._origin.scheme, self._origin.netloc):
                raise ConnectorError(f"F&O returned a link to another host ({parts.netloc}); refusing to follow it.",
                                     system=SYSTEM)
            return path_or_url
        return f"{self.base}/{path_or_url.lstrip('/')}"

    def _send(self, method: str, path_or_url: str, what: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, content: bytes | None = None, headers: Mapping[str, str] | None = None,
              retry_unsafe: bool = False, ok: Sequence[int] = (200, 201, 204)) -> httpx.Response:
        response = self.transport.request(method, self._url(path_or_url), params=params, json=json, content=content,
                                          headers=headers, auth=self.tokens, retry_unsafe=retry_unsafe)
        if response.status_code in ok:
            return response
        message, inner, _ = _error_texts(response)
        raise error_for(response.status_code, message, inner, what)

    @staticmethod
    def _json(response: httpx.Response | bytes) -> dict[str, Any]:
        return json_object(response if isinstance(response, bytes) else response.content, SYSTEM)

    def token(self) -> str:
        """A valid access token (acquired through msal; cached until 5 minutes before expiry)."""
        return self.tokens.token()

    # -- reads -----------------------------------------------------------------------------------------------------
    def iter_pages(self, entity_set: str, *, legal_entity: str | None = None, select: Sequence[str] | None = None,
                   odata_filter: str | odata.Filter | None = None, orderby: Sequence[str] | None = None,
                   top: int | None = None, annotations: bool = False) -> Iterator[list[dict[str, Any]]]:
        """Stream the pages of a query; each page is a list of rows, and only one page is held at a time.

        Always ``cross-company=true`` (a ``dataAreaId`` filter alone returns nothing for non-default companies,
        §2); follows ``@odata.nextLink`` unchanged until it is absent; a short or empty page is not the end.
        ``@odata.*`` annotations (etags) are dropped unless ``annotations``.
        """
        for content in self._iter_bodies(entity_set, self._query(entity_set, legal_entity, select, odata_filter,
                                                                 orderby, top)):
            data = self._json(content)
            rows = data.get("value")
            if not isinstance(rows, list):
                raise TransientError(f"F&O answered a read of {entity_set} without a 'value' list.", system=SYSTEM)
            if not annotations:
                for row in rows:
                    for k in [k for k in row if k.startswith("@odata.")]:
                        del row[k]
            del data
            yield rows

    def iter_bodies(self, entity_set: str, *, legal_entity: str | None = None, select: Sequence[str] | None = None,
                    odata_filter: str | odata.Filter | None = None, keys: Sequence[str] = ()) -> Iterator[bytes]:
        """The raw bodies of the pages of a query, for bulk extracts: an extract can tell from them, before parsing
        anything, that F&O answered exactly as last time, and :func:`page_frame` turns one into a frame.

        With the entity's ``keys`` a big read is split into key ranges read at once (:mod:`.paging`, DESIGN §10):
        a ``$count`` first decides, and a read under ``key_ranges.PARALLEL_MIN_ROWS`` rows stays one nextLink
        stream as :meth:`iter_pages` reads it. So does a read that would get no stream of its own: the gate's width
        (D365SNOW_D365_MAX_CONCURRENCY) is shared by this client's reads, and while as many reads are in progress as
        it allows, splitting one only adds requests. Either way the bodies of an unchanged F&O come out the same
        and in the same order, and memory stays bounded."""
        params = self._query(entity_set, legal_entity, select, odata_filter, None, None)
        # Within one legal entity dataAreaId is the same on every row: it cannot split anything.
        split_keys = [odata.check_identifier(k) for k in keys if not (legal_entity and k == "dataAreaId")]
        # The read counts as in progress from now, not from its first page: reads started together (one per legal
        # entity) must all be counted when the first of them decides.
        with self._bulk_lock:
            self._bulk_reads += 1
        done = threading.Event()
        bodies = self._bulk_bodies(entity_set, legal_entity, params, split_keys, done)
        weakref.finalize(bodies, self._bulk_read_done, done)  # a read dropped before its first page leaves too
        return bodies

    def _bulk_read_done(self, done: threading.Event) -> None:
        with self._bulk_lock:
            if not done.is_set():
                done.set()
                self._bulk_reads -= 1

    def _bulk_bodies(self, entity_set: str, legal_entity: str | None, params: Mapping[str, str],
                     split_keys: Sequence[str], done: threading.Event) -> Iterator[bytes]:
        try:
            streams = self.reads.cap - (self._bulk_reads - 1)
            if split_keys and streams > 1:
                total = self._count(entity_set, params)
                streams = self.reads.cap - (self._bulk_reads - 1)  # other reads may have started meanwhile
                if total >= key_ranges.PARALLEL_MIN_ROWS and streams > 1:
                    yield from self._iter_ranges(entity_set, legal_entity, params, split_keys, total, streams)
                    return
            yield from self._iter_bodies(entity_set, params)
        finally:
            self._bulk_read_done(done)

    def _iter_ranges(self, entity_set: str, legal_entity: str | None, params: Mapping[str, str],
                     keys: Sequence[str], total: int, streams: int) -> Iterator[bytes]:
        read = paging.RangeRead(self._read_page, partial(self._count, entity_set), entity_set, params, keys, total,
                                streams)
        yield from read
        log.info("%s%s: %s rows in %s key ranges, %s streams, %s read again", entity_set,
                 f" ({legal_entity})" if legal_entity else "", f"{read.stats.rows:,}", read.stats.ranges, streams,
                 read.stats.reread,
                 extra={"read": {"entity": entity_set, "rows": read.stats.rows, "ranges": read.stats.ranges,
                                 "streams": streams, "reread": read.stats.reread}})

    def _query(self, entity_set: str, legal_entity: str | None, select: Sequence[str] | None,
               odata_filter: str | odata.Filter | None, orderby: Sequence[str] | None,
               top: int | None) -> dict[str, str]:
        odata.check_identifier(entity_set, "entity set")
        filters: list[odata.Filter] = []
        if legal_entity:
            filters.append(odata.eq("dataAreaId", legal_entity.lower()))
        if odata_filter is not None:
            text = str(odata_filter)
            if isinstance(odata_filter, str):
                odata.check_raw_filter(text)
            filters.append(odata.Filter(text))
        params: dict[str, str] = {"cross-company": "true"}
        combined = odata.all_of(*filters)
        if combined is not None:
            params["$filter"] = combined.text
        if select:
            params["$select"] = ",".join(odata.check_identifier(s) for s in select)
        if orderby:
            params["$orderby"] = ",".join(orderby)
        if top is not None:
            params["$top"] = str(int(top))
        return params

    def _iter_bodies(self, entity_set: str, params: Mapping[str, str]) -> Iterator[bytes]:
        """Raw response bodies of a paged read, following ``@odata.nextLink`` until it is absent."""
        url: str | None = entity_set
        query: Mapping[str, str] | None = params
        while url is not None:
            content = self._read_page(entity_set, url, query, page=True)
            next_link = paging.next_link(content)
            yield content
            url, query = (next_link, None) if next_link else (None, None)

    def _read_page(self, entity_set: str, url: str, query: Mapping[str, str] | None, *, page: bool) -> bytes:
        """One GET of a read of ``entity_set`` through the adaptive gate (:mod:`.concurrency`). Only a ``page`` of
        rows reports its latency: a count's or a one-row probe's says nothing about how fast pages are served."""
        what = f"the read of {entity_set}"
        with self.reads.slot() as ticket:
            throttles = self.transport.stats.throttled
            started = time.monotonic()
            try:
                content = self._send("GET", url, what, params=query, ok=(200,)).content
            except BaseException:
                self.reads.observe(ticket, throttles=self.transport.stats.throttled, succeeded=False)
                raise
            seconds = time.monotonic() - started
            after = self.transport.stats.throttled
            # A page that waited out a Retry-After says nothing about how fast F&O serves pages.
            sample = LatencySample(entity_set, len(content), seconds) if page and after == throttles else None
            self.reads.observe(ticket, throttles=after, sample=sample)
        return content

    def _count(self, entity_set: str, params: Mapping[str, str]) -> int:
        """``/$count`` of a query (its ``$filter``, cross-company): a plain-text number (reference §2)."""
        query = {k: v for k, v in params.items() if k in ("cross-company", "$filter")}
        text = self._read_page(entity_set, f"{entity_set}/$count", query, page=False).strip()
        if not text.isdigit():
            raise TransientError(f"F&O answered the count of {entity_set} with something that is not a number.",
                                 system=SYSTEM)
        return int(text)

    def iter_rows(self, entity_set: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for page in self.iter_pages(entity_set, **kwargs):
            yield from page

    def read_all(self, entity_set: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every row (small, bounded result sets only: lookups, not extracts)."""
        return list(self.iter_rows(entity_set, **kwargs))

    def get(self, entity_set: str, key: Mapping[str, Any], *, select: Sequence[str] | None = None
            ) -> dict[str, Any]:
        params = {"cross-company": "true"}
        if select:
            params["$select"] = ",".join(odata.check_identifier(s) for s in select)
        return self._json(self._send("GET", odata.key_path(entity_set, key), f"the read of {entity_set} {dict(key)}",
                                     params=params, ok=(200,)))

    # -- writes ------------------------------------------------------------------------------------------------
    def create(self, entity_set: str, body: Mapping[str, Any], *, retry_unsafe: bool = False) -> dict[str, Any]:
        """POST → the created entity (201), with server-assigned numbers such as HeaderReference.

        Any answer that is neither a clear success nor a clear refusal (a 5xx, a reset or timeout after sending, a
        2xx whose body was cut off) raises :class:`MaybeWrittenError` unless ``retry_unsafe``: the caller looks the
        record up by its natural key before sending it again (DESIGN.md §6, §7.1).
        """
        response = self._send("POST", f"{odata.check_identifier(entity_set, 'entity set')}?cross-company=true",
                              f"the creation of a {entity_set} record", json=dict(body), retry_unsafe=retry_unsafe,
                              ok=(200, 201, 204))
        if not response.content:
            return {}
        try:
            return self._json(response)
        except TransientError:
            # F&O said 2xx, so the record most likely exists, but without the body the server-assigned key is
            # unknown: the same lookup as for a lost answer finds it.
            raise MaybeWrittenError(f"F&O's answer to the creation of a {entity_set} record was cut off; the record "
                                    f"may have been written, so look it up before sending it again.",
                                    status=response.status_code, system=SYSTEM) from None

    def update(self, entity_set: str, key: Mapping[str, Any], changes: Mapping[str, Any], *,
               etag: str | None = None) -> None:
        """PATCH the record with its full key → 204. Send only the fields to change (§4)."""
        headers = {"If-Match": etag} if etag else None
        self._send("PATCH", f"{odata.key_path(entity_set, key)}?cross-company=true",
                   f"the update of {entity_set} {dict(key)}", json=dict(changes), headers=headers, ok=(200, 204))

    def delete(self, entity_set: str, key: Mapping[str, Any]) -> None:
        self._send("DELETE", f"{odata.key_path(entity_set, key)}?cross-company=true",
                   f"the deletion of {entity_set} {dict(key)}", ok=(200, 204))

    def batch(self, changesets: Sequence[Sequence[BatchOp]], *, retry_unsafe: bool = False
              ) -> list[ChangesetResult]:
        """Send changesets in one ``$batch``; each is atomic. The outer answer is 200 even when a part failed
        (§2), so every part is inspected."""
        content, ctype = build_batch(self.base, changesets)
        response = self._send("POST", "$batch", "the $batch request", content=content,
                              headers={"Content-Type": ctype, "Accept": "multipart/mixed"},
                              retry_unsafe=retry_unsafe, ok=(200, 202))
        items = parse_batch_response(response.content, response.headers.get("content-type", ""))
        if len(items) != len(changesets):
            raise TransientError(f"F&O answered {len(items)} parts for {len(changesets)} changesets in $batch.",
                                 system=SYSTEM)
        results: list[ChangesetResult] = []
        for ops, parts in zip(changesets, items, strict=True):
            failed = next((p for p in parts if p.status >= 400), None)
            if failed is None and len(parts) == len(ops):
                results.append(ChangesetResult(True, parts))
                continue
            part = failed or parts[-1]
            err = (part.body or {}).get("error") if part.body else None
            message = str(err.get("message") or "") if isinstance(err, dict) else ""
            inner_obj = err.get("innererror") if isinstance(err, dict) else None
            inner = str(inner_obj.get("message") or "") if isinstance(inner_obj, dict) else ""
            index = _op_index(part.content_id)
            target = ops[index].entity_set if index is not None and index < len(ops) else "a changeset operation"
            part.error = error_for(part.status, message, inner, f"{target} in a $batch changeset")
            results.append(ChangesetResult(False, parts, part.error, part.content_id))
        return results

    # -- metadata ------------------------------------------------------------------------------------------------
    def entity_properties(self, entity_sets: Collection[str]) -> dict[str, frozenset[str]]:
        """The property names of each of ``entity_sets`` that ``$metadata`` declares (absent sets are left out).

        A real F&O ``$metadata`` runs to tens of megabytes and thousands of entity types, so it is parsed as a
        stream and only the wanted types are kept."""
        response = self._send("GET", "$metadata", "the read of $metadata", headers={"Accept": "application/xml"},
                              ok=(200,))
        wanted = set(entity_sets)
        type_of: dict[str, str] = {}  # entity type name -> entity set
        properties: dict[str, set[str]] = {}
        current: str | None = None
        for event, element in ElementTree.iterparse(io.BytesIO(response.content), events=("start", "end")):
            tag = element.tag.rsplit("}", 1)[-1]
            if event == "start" and tag == "EntityType":
                current = element.get("Name")
                properties[current or ""] = set()
            elif event == "start" and tag == "Property" and current is not None:
                properties[current].add(element.get("Name") or "")
            elif event == "end" and tag == "EntityType":
                current = None
                element.clear()
            elif event == "end" and tag == "EntitySet" and element.get("Name") in wanted:
                type_of[(element.get("EntityType") or "").rsplit(".", 1)[-1]] = element.get("Name") or ""
        return {entity_set: frozenset(properties.get(entity_type, ())) for entity_type, entity_set in type_of.items()}


def _op_index(content_id: str | None) -> int | None:
    if not content_id:
        return None
    tail = content_id.rsplit(".", 1)[-1]
    return int(tail) - 1 if tail.isdigit() else None


__all__ = ["AuthError", "BatchOp", "ChangesetResult", "D365Client", "EntraTokenProvider"]
