"""The business-events receiver over a real socket (DESIGN.md §8): auth, size bound, de-duplication, spool."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from .conftest import SECRET, envelope


def _post(url: str, body: object, **kwargs: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=10,
                      **kwargs)  # type: ignore[arg-type]


def test_accepted_event_is_spooled_once(receiver):
    event = envelope(event_id="55A81094-A14E-46A6-A12C-07ED5C5990C6", control=5637144576)
    resp = _post(receiver.url, event)
    assert resp.status_code == 200 and resp.json() == {"status": "accepted",
                                                       "eventId": "55A81094-A14E-46A6-A12C-07ED5C5990C6"}
    [spooled] = receiver.spool.pending(10)
    assert (spooled.event_id, spooled.business_event_id, spooled.legal_entity, spooled.control_number) == (
        "55A81094-A14E-46A6-A12C-07ED5C5990C6", "VendorInvoicePostedBusinessEvent", "usmf", 5637144576)
    assert spooled.payload == event and spooled.received_at.tzinfo is not None
    # The sensor's side: consumed events leave the pending list and are not offered again.
    assert receiver.spool.mark_consumed([spooled.event_id]) == 1
    assert receiver.spool.pending(10) == [] and receiver.spool.counts() == {"new": 0, "consumed": 1}
    assert receiver.spool.mark_consumed([spooled.event_id]) == 0


def test_older_envelope_with_legal_entity_only(receiver):
    # The 2021 PurchaseOrderConfirmedBusinessEvent capture (reference §6) has LegalEntity, no
    # BusinessEventLegalEntity.
    event = {"BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "ControlNumber": 5637144576,
             "EventId": "55A81094-A14E-46A6-A12C-07ED5C5990C6", "EventTime": "/Date(1637246655000)/",
             "LegalEntity": "brmf", "MajorVersion": 0, "MinorVersion": 0, "PurchaseOrderNumber": "BRMF-000018"}
    assert _post(receiver.url, event).status_code == 200
    assert receiver.spool.pending(10)[0].legal_entity == "brmf"


@pytest.mark.parametrize("path", [f"/events/{SECRET[:-1]}", f"/events/{SECRET}x", "/events/", "/events",
                                  "/events/%C3%A9t%C3%A9", f"/{SECRET}", "/"])
def test_wrong_or_missing_secret_is_not_found(receiver, path):
    resp = _post(receiver.base + path, envelope())
    assert resp.status_code == 404 and resp.text == "Not Found"
    # Other methods with a wrong secret look the same: the route's existence is not confirmed.
    assert httpx.get(receiver.base + path, timeout=10).status_code == 404
    assert receiver.spool.counts() == {"new": 0, "consumed": 0}


def test_right_secret_wrong_method(receiver):
    resp = httpx.get(receiver.url, timeout=10)
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"


def test_oversized_body_is_refused_before_reading_it(receiver):
    big = envelope(Padding="x" * (300 * 1024))
    resp = _post(receiver.url, big)
    assert resp.status_code == 413
    assert receiver.spool.counts() == {"new": 0, "consumed": 0}


def test_oversized_body_refused_without_reading_it_all(receiver):
    # Declare 10 MiB and send only the headers: the 413 must come back without the server waiting for the body.
    host, port = urlsplit(receiver.base).hostname, urlsplit(receiver.base).port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"POST /events/{SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {10 * 1024 * 1024}\r\n\r\n".encode())
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert receiver.spool.counts()["new"] == 0


def test_oversized_chunked_body_is_refused(receiver):
    def chunks():
        for _ in range(40):
            yield b"x" * 10_000

    resp = httpx.post(receiver.url, content=chunks(), timeout=10)  # no Content-Length: chunked encoding
    assert resp.status_code == 413
    assert receiver.spool.counts()["new"] == 0


def test_duplicate_event_id_is_ok_and_spooled_once(receiver):
    event = envelope()
    assert _post(receiver.url, event).json()["status"] == "accepted"
    again = _post(receiver.url, event)  # F&O's retry after a lost response
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    # The same EventId spelled with braces and lower case (a manual Resend through another tool) is the same event.
    resend = {**event, "EventId": "{" + str(event["EventId"]).lower() + "}", "ControlNumber": 1}
    assert _post(receiver.url, resend).json()["status"] == "duplicate"
    assert len(receiver.spool.pending(10)) == 1


def test_duplicate_control_number_is_ok_and_spooled_once(receiver):
    first = envelope(control=5637144600)
    assert _post(receiver.url, first).json()["status"] == "accepted"
    # A new EventId but the same event, legal entity and ControlNumber: the same business occurrence.
    assert _post(receiver.url, envelope(control=5637144600)).json()["status"] == "duplicate"
    # The same ControlNumber in another legal entity or for another event is a different event.
    assert _post(receiver.url, envelope(control=5637144600, le="DEMF")).json()["status"] == "accepted"
    assert _post(receiver.url, envelope("VendorPaymentPostedBusinessEvent", control=5637144600)).json()[
        "status"] == "accepted"
    assert len(receiver.spool.pending(10)) == 3


@pytest.mark.parametrize("body", [b"not json", b"", b"{\"BusinessEventId\": ", b"[1, 2]", b"\"text\""])
def test_non_json_body_is_bad_request(receiver, body):
    resp = _post(receiver.url, body)
    assert resp.status_code == 400
    assert receiver.spool.counts()["new"] == 0


@pytest.mark.parametrize("change", [{"EventId": None}, {"EventId": ""}, {"BusinessEventId": 7},
                                    {"ControlNumber": "5637144576"}, {"ControlNumber": True},
                                    {"ControlNumber": -1},
                                    {"BusinessEventLegalEntity": None, "LegalEntity": None}])
def test_envelope_fields_are_required(receiver, change):
    resp = _post(receiver.url, {**envelope(), **change})
    assert resp.status_code == 400 and resp.json()["error"]
    assert receiver.spool.counts()["new"] == 0


def test_parallel_posts_spool_each_event_once(receiver):
    events = [envelope(control=5637144700 + i) for i in range(5)]
    bodies = [events[i % 5] for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda e: _post(receiver.url, e), bodies))
    assert all(r.status_code == 200 for r in responses)
    assert sorted(r.json()["status"] for r in responses).count("accepted") == 5
    pending = receiver.spool.pending(100)
    assert sorted(e.event_id for e in pending) == sorted(str(e["EventId"]) for e in events)


def test_pending_filters_by_kind_and_keeps_arrival_order(receiver):
    kinds = ["VendorInvoicePostedBusinessEvent", "PurchaseOrderConfirmedBusinessEvent",
             "VendorPaymentPostedBusinessEvent", "VendorInvoicePostedBusinessEvent"]
    for i, kind in enumerate(kinds):
        _post(receiver.url, envelope(kind, control=5637144800 + i))
    invoices = receiver.spool.pending(10, business_event_ids=["VendorInvoicePostedBusinessEvent"])
    assert [e.control_number for e in invoices] == [5637144800, 5637144803]
    assert [e.control_number for e in receiver.spool.pending(2)] == [5637144800, 5637144801]
    assert receiver.spool.pending(10, business_event_ids=[]) == []


@pytest.mark.parametrize("receiver", ["trace"], indirect=True)
def test_secret_never_logged(receiver, caplog, capfd):
    # uvicorn's most verbose level logs every ASGI message (the scope holds the path): still masked.
    caplog.set_level(1)  # below DEBUG: uvicorn's TRACE level is 5
    event = envelope()
    _post(receiver.url, event)
    _post(receiver.url, event)
    _post(receiver.url, b"nope")
    _post(receiver.url, envelope(Padding="x" * (300 * 1024)))
    httpx.get(receiver.url, timeout=10)
    _post(receiver.base + f"/events/{SECRET[:-2]}", event)
    # Only the receiver's side: the test's own httpx client logs the URLs it requests.
    records = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records
                        if not r.name.startswith(("httpx", "httpcore")))
    out, err = capfd.readouterr()
    logs = records + out + err
    assert "/events/***" in logs  # the requests were logged, with the secret masked
    assert "uvicorn.asgi" in records and "uvicorn.access" in records  # even uvicorn's own path-printing lines
    assert "accepted" in logs and "duplicate" in logs
    for fragment in (SECRET, SECRET[:-2], SECRET[4:20]):
        assert fragment not in logs
