"""The shared transport policy, against scripted responses (httpx.MockTransport)."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from d365_snow_assets.clients.errors import (
    AuthError,
    ConfigurationError,
    MaybeWrittenError,
    ThrottledError,
    TransientError,
)
from d365_snow_assets.clients.transport import (
    RetryPolicy,
    Transport,
    build_ssl_context,
    cut_off_read,
    parse_retry_after,
)
from d365_snow_assets.sandbox.tls import make_tls_files

from .conftest import FakeSleep

NOW = 1_700_000_000.0


def test_parse_retry_after():
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    date = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    assert parse_retry_after(date, NOW) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def scripted(statuses: list[int | Exception], headers: dict[str, str] | None = None,
             sleep: FakeSleep | None = None, policy: RetryPolicy | None = None
             ) -> tuple[Transport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    script = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = script.pop(0) if script else 200
        if isinstance(item, Exception):
            raise item
        return httpx.Response(item, headers=headers or {}, json={"ok": item})

    t = Transport("test", sleep=sleep or FakeSleep(), clock=lambda: NOW, policy=policy)
    t.client = httpx.Client(transport=httpx.MockTransport(handler))
    return t, seen


def test_429_waits_retry_after_seconds_and_http_date():
    sleep = FakeSleep()
    t, _seen = scripted([429, 429, 200], {"Retry-After": "3"}, sleep)
    assert t.request("GET", "https://x.test/a").status_code == 200
    assert sleep.waits == [3.0, 3.0]
    sleep = FakeSleep()
    date = format_datetime(datetime.fromtimestamp(NOW + 12, UTC), usegmt=True)
    t, _ = scripted([429, 200], {"Retry-After": date}, sleep)
    t.request("POST", "https://x.test/a", json={})  # a 429 was not processed: even a POST is re-sent
    assert sleep.waits == [pytest.approx(12.0)]


def test_retry_after_is_capped_and_storm_ends_in_throttled_error():
    sleep = FakeSleep()
    t, _ = scripted([429] * 100, {"Retry-After": "99999"}, sleep,
                    RetryPolicy(max_throttled_attempts=4, retry_after_cap_s=5))
    with pytest.raises(ThrottledError):
        t.request("GET", "https://x.test/a")
    assert sleep.waits == [5.0, 5.0, 5.0]


def test_5xx_backoff_is_bounded_exponential_with_jitter():
    sleep = FakeSleep()
    policy = RetryPolicy(max_attempts=6, backoff_initial_s=1, backoff_max_s=4)
    t, _ = scripted([500] * 10, sleep=sleep, policy=policy)
    with pytest.raises(TransientError):
        t.request("GET", "https://x.test/a")
    caps = [1, 2, 4, 4, 4]
    assert len(sleep.waits) == 5
    for wait, cap in zip(sleep.waits, caps, strict=True):
        assert cap / 2 <= wait <= cap


def test_post_5xx_and_lost_answer_raise_maybe_written():
    t, seen = scripted([502])
    with pytest.raises(MaybeWrittenError):
        t.request("POST", "https://x.test/a", json={})
    assert len(seen) == 1
    t, seen = scripted([httpx.RemoteProtocolError("Server disconnected")])
    with pytest.raises(MaybeWrittenError):
        t.request("POST", "https://x.test/a", json={})
    assert len(seen) == 1
    # a connect error never reached the server, a 429 was not processed: both resent
    t, seen = scripted([httpx.ConnectError("refused"), 429, 201])
    assert t.request("POST", "https://x.test/a", json={}).status_code == 201
    assert len(seen) == 3
    # with retry_unsafe (coalescing import set) the lost answer is re-sent
    t, seen = scripted([httpx.ReadError("reset"), 503, 200])
    assert t.request("POST", "https://x.test/a", json={}, retry_unsafe=True).status_code == 200
    assert len(seen) == 3


@pytest.mark.parametrize("answer", [503, 500, httpx.ReadTimeout("timed out"), httpx.ReadError("reset"),
                                    httpx.RemoteProtocolError("Server disconnected")])
def test_a_post_is_never_resent_after_an_answer_that_may_follow_a_commit(answer: int | Exception) -> None:
    # A gateway answers 503 when the server behind it is slow, whether or not the write went through (DESIGN §6:
    # a 5xx after commit); re-sending an F&O invoice create on it would double the invoice where F&O accepts
    # duplicate numbers. Only the caller's lookup may decide.
    t, seen = scripted([answer, 201])
    with pytest.raises(MaybeWrittenError):
        t.request("POST", "https://x.test/a", json={})
    assert len(seen) == 1


class _Auth:
    def __init__(self) -> None:
        self.token = "t1"
        self.evicted: list[str] = []

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def on_unauthorized(self, rejected: dict[str, str]) -> bool:
        self.evicted.append(rejected["Authorization"])
        self.token = "t2"
        return True


def test_401_refreshes_once_then_gives_up():
    auth = _Auth()
    t, seen = scripted([401, 200])
    assert t.request("GET", "https://x.test/a", auth=auth).status_code == 200
    assert auth.evicted == ["Bearer t1"]
    assert [r.headers["Authorization"] for r in seen] == ["Bearer t1", "Bearer t2"]
    auth = _Auth()
    t, seen = scripted([401, 401, 200])
    with pytest.raises(AuthError):
        t.request("GET", "https://x.test/a", auth=auth)
    assert len(seen) == 2


def test_transient_success_hook_retries():
    sleep = FakeSleep()
    calls: list[int] = []
    check: Callable[[httpx.Response], str | None] = (  # noqa: E731
        lambda r: "broken" if not calls.append(1) and len(calls) == 1 else None)
    t, seen = scripted([200, 200], sleep=sleep)
    t._transient_success = check
    t.request("GET", "https://x.test/a")
    assert len(seen) == 2 and len(sleep.waits) == 1


@pytest.mark.parametrize(("method", "body", "content_type", "broken"), [
    ("GET", b'{"value":[{"a":1},{"a"', "application/json", True),
    ("GET", b'{"value":[]}\n', "application/json; charset=utf-8", False),
    ("GET", b'[1, 2]', "application/json", False),
    ("GET", b"", "application/json", False),  # an empty body is the caller's problem, not a lost stream
    ("GET", b"<html>", "text/html", False),  # not JSON at all: the caller reports it
    ("POST", b'{"InvoiceNumber":"A', "application/json", False),  # maybe written: never resent on this basis
])
def test_cut_off_read_only_flags_truncated_json_reads(method: str, body: bytes, content_type: str,
                                                      broken: bool) -> None:
    response = httpx.Response(200, content=body, headers={"Content-Type": content_type},
                              request=httpx.Request(method, "https://x.test/data/VendorsV2"))
    assert (cut_off_read(response) is not None) is broken


def _serial(pem: Path) -> str:
    return f"{x509.load_pem_x509_certificate(pem.read_bytes()).serial_number:X}"


def _trusts(context: ssl.SSLContext, pem: Path) -> bool:
    return _serial(pem).lstrip("0") in {cert["serialNumber"].lstrip("0") for cert in context.get_ca_certs()}


def test_the_tls_context_is_shared_until_the_ca_bundle_file_changes(tmp_path):
    first, second = make_tls_files(tmp_path / "a"), make_tls_files(tmp_path / "b")
    bundle = tmp_path / "ca.pem"
    shutil.copy(first.ca_pem, bundle)
    context = build_ssl_context(bundle)
    assert build_ssl_context(bundle) is context
    assert _trusts(context, first.ca_pem) and not _trusts(context, second.ca_pem)

    bundle.unlink()  # replaced by a new file (another inode), as a deploy or a certificate renewal does
    shutil.copy(second.ca_pem, bundle)
    renewed = build_ssl_context(bundle)
    assert _trusts(renewed, second.ca_pem) and not _trusts(renewed, first.ca_pem)

    bundle.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="D365SNOW_CA_BUNDLE"):
        build_ssl_context(bundle)
