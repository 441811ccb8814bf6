"""The F&O client against the sandbox over real sockets (msal → fake Entra, httpx → fake F&O)."""

from __future__ import annotations

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d365_snow_assets.clients import odata
from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.clients.errors import (
    AuthError,
    DuplicateError,
    MaybeWrittenError,
    NotFoundError,
    ReadOnlyError,
    TransientError,
)
from d365_snow_assets.invoices.adapters import D365Ledger
from d365_snow_assets.sandbox.faults import FaultProfile

from .conftest import settings_for


@pytest.fixture
def client(server, fake_sleep):
    with D365Client(settings_for(server), sleep=fake_sleep) as c:
        yield c


def vendor_keys(server, le=None):
    sql = "SELECT dataAreaId, VendorAccountNumber FROM VendorsV2" + (f" WHERE dataAreaId='{le}'" if le else "")
    return sorted((r["dataAreaId"], r["VendorAccountNumber"]) for r in server.world.d365.read(sql))


def read_vendors(client, **kw):
    return sorted((r["dataAreaId"], r["VendorAccountNumber"]) for r in
                  client.iter_rows("VendorsV2", select=["dataAreaId", "VendorAccountNumber"], **kw))


@pytest.fixture
def small_pages(server):
    server.world.d365.set_page_size(7)
    yield
    server.world.d365.set_page_size(server.world.config.d365_max_page_size)


def test_token_and_refresh_on_401(server, client):
    first = client.token()
    assert read_vendors(client, legal_entity="usmf") == vendor_keys(server, "usmf")
    server.world.tokens.expire_all("entra")
    # msal would hand back its cached token: the client must evict it after the 401 and get a new one
    assert read_vendors(client, legal_entity="USMF") == vendor_keys(server, "usmf")
    assert client.transport.stats.refreshes == 1
    assert client.token() != first


def test_wrong_secret_is_a_clear_auth_error(server):
    c = D365Client(settings_for(server, d365_client_secret="not-the-secret"))
    with pytest.raises(AuthError) as info:
        c.token()
    assert "AADSTS7000215" in str(info.value) and "not-the-secret" not in str(info.value)
    assert info.value.code == "AADSTS7000215"


def test_instance_discovery_only_for_microsoft_hosts(server):
    c = D365Client(settings_for(server))
    assert c.tokens.instance_discovery is False
    ms = settings_for(server, d365_authority="https://login.microsoftonline.com")
    assert D365Client(ms).tokens.instance_discovery is True


@pytest.mark.chaos
def test_429_storm_honours_retry_after(server, client, fake_sleep, small_pages):
    expected = vendor_keys(server)
    server.set_faults("d365", FaultProfile(share_429=0.5, retry_after_s=2, seed=3))
    assert read_vendors(client) == expected
    assert client.transport.stats.throttled > 3
    assert fake_sleep.waits and all(w == 2.0 for w in fake_sleep.waits)


@pytest.mark.chaos
def test_5xx_burst_and_connection_resets(server, client, fake_sleep, small_pages):
    expected = vendor_keys(server)
    server.set_faults("d365", FaultProfile(share_5xx=0.3, seed=5))
    assert read_vendors(client) == expected
    server.set_faults("d365", FaultProfile(share_reset=0.3, seed=6))
    assert read_vendors(client) == expected
    stats = client.transport.stats
    assert stats.server_errors > 0 and stats.transport_errors > 0
    assert all(0 < w <= client.transport.policy.backoff_max_s for w in fake_sleep.waits)


def test_page_cut_off_on_the_way_is_read_again(server, client, small_pages):
    """A 200 whose JSON stops half-way (the rest lost by a proxy) is read again, rows neither lost nor doubled;
    one that stays cut off ends in a TransientError saying what happened."""
    expected = vendor_keys(server)
    server.world.d365.cut_off_next_reads(3)
    before = client.transport.stats.server_errors
    assert read_vendors(client) == expected
    assert server.world.d365.cut_off_reads_remaining == 0
    assert client.transport.stats.server_errors - before == 3
    server.world.d365.cut_off_next_reads(100)
    with pytest.raises(TransientError, match="cut off after"):
        read_vendors(client)
    server.world.d365.cut_off_next_reads(0)


def test_lost_post_answer_is_maybe_written_and_resolved_by_lookup(server, client):
    vendor = vendor_keys(server, "usmf")[0][1]
    body = {"dataAreaId": "usmf", "InvoiceNumber": "LOST-1", "InvoiceAccount": vendor, "Currency": "USD"}
    ledger = D365Ledger(client)
    server.set_faults("d365", FaultProfile(share_reset=1.0))
    with pytest.raises(MaybeWrittenError):
        client.create("VendorInvoiceHeaders", body)
    server.clear_faults()
    # the caller's rule (DESIGN §6): look up by natural key before re-sending
    assert ledger.find_pending("usmf", vendor, "LOST-1") is None
    created = client.create("VendorInvoiceHeaders", body)
    assert ledger.find_pending("usmf", vendor, "LOST-1").header_reference == created["HeaderReference"]


class CutOffPostTransport(httpx.BaseTransport):
    """Between client and sandbox: F&O's answer to a POST arrives as a 201 whose JSON stops half-way."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method != "POST":
            return response
        self.posts += 1
        response.read()
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length",
                                                                                   "content-encoding")}
        return httpx.Response(response.status_code, headers=headers,
                              content=response.content[: len(response.content) // 2])


def test_a_create_whose_answer_is_cut_off_is_maybe_written_and_not_sent_again(server, client):
    server.world.d365.set_duplicate_check("AcceptDuplicate", "usmf")
    vendor = vendor_keys(server, "usmf")[0][1]
    proxy = CutOffPostTransport(client.transport.client._transport)
    client.transport.client._transport = proxy
    try:
        with pytest.raises(MaybeWrittenError):
            client.create("VendorInvoiceHeaders", {"dataAreaId": "usmf", "InvoiceNumber": "CUT-1",
                                                   "InvoiceAccount": vendor, "Currency": "USD"})
    finally:
        server.world.d365.set_duplicate_check("NoDuplicate", "usmf")
    assert proxy.posts == 1
    written = server.world.d365.read('SELECT "HeaderReference" FROM "VendorInvoiceHeaders" '
                                     "WHERE \"InvoiceNumber\" = 'CUT-1'")
    assert len(written) == 1
    assert D365Ledger(client).find_pending("usmf", vendor, "cut-1").header_reference == written[0]["HeaderReference"]


class ShortPageTransport(httpx.BaseTransport):
    """Between client and sandbox: cuts the second VendorsV2 page short but keeps its nextLink."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.dropped: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/VendorsV2") and "skip=7" in str(request.url.query):
            response.read()
            data = orjson.loads(response.content)
            self.dropped = [r["VendorAccountNumber"] for r in data["value"][2:]]
            data["value"] = data["value"][:2]
            headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length",
                                                                                       "content-encoding")}
            return httpx.Response(response.status_code, headers=headers, content=orjson.dumps(data))
        return response


def test_nextlink_paging_continues_after_a_short_page(server, client, small_pages):
    proxy = ShortPageTransport(client.transport.client._transport)
    client.transport.client._transport = proxy
    pages = list(client.iter_pages("VendorsV2", legal_entity="usmf", select=["VendorAccountNumber"]))
    sizes = [len(p) for p in pages]
    total = len(vendor_keys(server, "usmf"))
    assert sizes[1] == 2 and len(pages) == -(-total // 7)  # the short page did not end the read
    got = {r["VendorAccountNumber"] for p in pages for r in p}
    assert got == {v for _, v in vendor_keys(server, "usmf")} - set(proxy.dropped)


def test_empty_page_in_the_middle_is_not_the_end(server, client, small_pages):
    class EmptyPage(ShortPageTransport):
        def handle_request(self, request):
            response = super().handle_request(request)
            if "skip=7" in str(request.url.query):
                data = orjson.loads(response.content)
                data["value"] = []
                return httpx.Response(200, headers={"content-type": "application/json"}, content=orjson.dumps(data))
            return response

    client.transport.client._transport = EmptyPage(client.transport.client._transport)
    pages = list(client.iter_pages("VendorsV2", legal_entity="usmf", select=["VendorAccountNumber"]))
    assert [len(p) for p in pages][1] == 0 and len(pages) > 2


def test_duplicate_and_read_only_errors(server, client):
    server.world.d365.set_duplicate_check("NoDuplicate")
    vendor = vendor_keys(server, "usmf")[1][1]
    body = {"dataAreaId": "usmf", "InvoiceNumber": "DUP-1", "InvoiceAccount": vendor, "Currency": "USD"}
    client.create("VendorInvoiceHeaders", body)
    with pytest.raises(DuplicateError) as info:
        client.create("VendorInvoiceHeaders", body)
    assert "DUP-1" in info.value.detail  # the infolog is kept
    with pytest.raises(ReadOnlyError):
        client.create("VendInvoiceJourBiEntities", {"dataAreaId": "usmf"})
    with pytest.raises(NotFoundError):
        client.update("VendorInvoiceHeaders", {"dataAreaId": "usmf", "HeaderReference": "NOPE'1"}, {"Comment": "x"})
    key = {"dataAreaId": "usmf", "VendorAccountNumber": vendor}
    # a duplicate primary key (VendorsV2) maps the same way
    with pytest.raises(DuplicateError):
        client.create("VendorsV2", {**key, "VendorOrganizationName": "Dup", "VendorGroupId": "10"})


def test_quotes_carets_unicode_and_wildcards_in_lookups(server, client):
    vendor = vendor_keys(server, "demf")[0][1]
    tricky = "Q'*^ü😀 \"x\" & % # / ?"
    other = "Q'Z^ü😀 \"x\" & % # / ?"  # matches tricky's '*' as a wildcard
    for number in (tricky, other):
        client.create("VendorInvoiceHeaders", {"dataAreaId": "demf", "InvoiceNumber": number,
                                               "InvoiceAccount": vendor, "Currency": "EUR"})
    ledger = D365Ledger(client)
    found = ledger.find_pending("DEMF", vendor, tricky)
    got = client.get("VendorInvoiceHeaders", {"dataAreaId": "demf", "HeaderReference": found.header_reference})
    assert got["InvoiceNumber"] == tricky
    other_found = ledger.find_pending("demf", vendor, other)
    assert client.get("VendorInvoiceHeaders", {"dataAreaId": "demf", "HeaderReference": other_found.header_reference}
                      )["InvoiceNumber"] == other
    assert ledger.find_posted("demf", vendor, tricky) is None


_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="*\x00"), min_size=1, max_size=40)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_values)
def test_filter_escaping_round_trips_through_the_sandbox(server, client, name):
    le, account = vendor_keys(server, "gbsi")[0]
    server.world.d365.admin_update("VendorsV2", {"dataAreaId": le, "VendorAccountNumber": account},
                                   {"VendorOrganizationName": name})
    rows = client.read_all("VendorsV2", legal_entity=le, odata_filter=odata.eq("VendorOrganizationName", name),
                           select=["VendorAccountNumber", "VendorOrganizationName"])
    assert [(r["VendorAccountNumber"], r["VendorOrganizationName"]) for r in rows] == [(account, name)]
