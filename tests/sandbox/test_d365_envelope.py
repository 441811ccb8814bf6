"""The sandbox F&O's service envelope: the server-cost model and the user-based limits (reference/d365.md §5).

The model is pure accounting over a clock, so most tests drive it with a fake clock; the last ones check the wiring
over real sockets (status, documented message, Retry-After, what is charged)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from d365_snow_assets.sandbox.d365.envelope import EnvelopeProfile, ServiceEnvelope


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def envelope(clock: Clock, **profile: object) -> ServiceEnvelope:
    env = ServiceEnvelope(clock=clock)
    env.set(EnvelopeProfile(enabled=True, **{"concurrent_limit": None, "request_limit": None,
                                             "execution_limit_s": None, **profile}))
    return env


def run(env: ServiceEnvelope, clock: Clock, seconds: float) -> None:
    """One admitted request lasting ``seconds`` from the clock's current time."""
    assert env.admit() is None
    started = clock.now
    clock.now += seconds
    env.finish(started, 0)


def test_server_time_is_per_request_plus_per_row_and_scales():
    env = envelope(Clock())
    assert env.server_time_s(10_000) == pytest.approx(0.150 + 2.5)  # the stated default assumption
    assert env.server_time_s(0) == pytest.approx(0.150)
    env.set(EnvelopeProfile(enabled=True, time_scale=0.5))
    assert env.server_time_s(10_000) == pytest.approx(1.325)


def test_execution_limit_counts_the_window_and_answers_when_it_has_room_again():
    clock = Clock()
    env = envelope(clock, execution_limit_s=20, window_s=10)
    started = clock.now
    for _ in range(3):  # three requests of 8 s at once: 24 s charged when they complete
        assert env.admit() is None
    clock.now += 8
    for _ in range(3):
        env.finish(started, 0)
    assert env.charged() == pytest.approx(24)
    rejection = env.admit()
    assert rejection is not None and rejection.limit == "execution"
    assert rejection.message == ("Combined execution time of incoming requests exceeded limit of 20 seconds over time "
                                 "window of 10 seconds. Decrease number of concurrent requests or reduce the duration "
                                 "of requests and try again later.")
    # The window's left edge reaches the requests 2 s from now and then uncovers 3 s of charge per second: below
    # 20 s after 3⅓ s, so Retry-After is 4 whole seconds.
    assert rejection.retry_after_s == 4
    clock.now += 3.3
    assert env.admit() is not None  # still 20.1 s charged
    clock.now += 0.1
    assert env.admit() is None
    assert env.counters.throttled_execution == 2 and env.counters.admitted == 4 and env.counters.requests == 6


def test_only_the_part_of_an_execution_inside_the_window_is_charged():
    clock = Clock()
    env = envelope(clock, window_s=10)
    run(env, clock, 10)       # [0, 10]
    clock.now += 5            # the window is [5, 15]: half of it
    assert env.charged() == pytest.approx(5)
    clock.now += 5
    assert env.charged() == pytest.approx(0)
    assert env.counters.execution_s == pytest.approx(10)


def test_requests_still_running_are_not_charged_yet():
    clock = Clock()
    env = envelope(clock, execution_limit_s=5, window_s=10)
    assert env.admit() is None
    clock.now += 8
    assert env.charged() == 0
    assert env.admit() is None  # nothing completed: the second one is admitted although 8 s are under way


def test_concurrency_limit_rejects_beyond_the_limit_until_one_finishes():
    clock = Clock()
    env = envelope(clock, concurrent_limit=2)
    assert env.admit() is None and env.admit() is None
    rejection = env.admit()
    assert rejection is not None and rejection.limit == "concurrency"
    assert rejection.message == "Number of concurrent requests exceeded the limit of 2."
    assert rejection.retry_after_s == 1
    env.finish(clock.now, 0)
    assert env.admit() is None
    assert env.counters.peak_concurrency == 2 and env.counters.throttled_concurrency == 1


def test_request_limit_slides_with_the_window():
    clock = Clock()
    env = envelope(clock, request_limit=3, window_s=10)
    for _ in range(3):
        run(env, clock, 1)    # admitted at 0, 1, 2
    rejection = env.admit()   # at 3
    assert rejection is not None and rejection.limit == "requests"
    assert rejection.message == "Number of requests exeeded the limit of 3 over the time window of 10 seconds."
    assert rejection.retry_after_s == 7  # the admission at 0 leaves the window at 10
    clock.now += 7.01
    assert env.admit() is None
    assert env.counters.requests == 5 and env.counters.admitted == 4  # the throttled one is not an admitted request


def test_time_scale_shrinks_the_window_and_retry_after():
    clock = Clock()
    env = envelope(clock, execution_limit_s=10, window_s=20, time_scale=0.5)  # 10 s window, 5 s budget (wall)
    run(env, clock, 6)
    rejection = env.admit()
    assert rejection is not None and rejection.limit == "execution"
    # The message states F&O's limits; the wall-clock wait is scaled: 6 s charged must fall below 5 s, which takes
    # the window's edge 4 s + 1 s from now.
    assert "limit of 10 seconds over time window of 20 seconds" in rejection.message
    assert rejection.retry_after_s == 5


def test_a_new_profile_starts_an_empty_window():
    clock = Clock()
    env = envelope(clock, execution_limit_s=1, window_s=100)
    run(env, clock, 5)
    assert env.admit() is not None
    env.set(EnvelopeProfile(enabled=True, execution_limit_s=1, window_s=100))
    assert env.admit() is None
    assert env.counters.requests == 1


# -- over real sockets -------------------------------------------------------------------------------------------

@pytest.fixture
def live_envelope(sandbox_server):
    env = sandbox_server.world.d365.envelope
    yield env
    env.set(EnvelopeProfile())


def test_execution_limit_over_the_wire(d365_client, live_envelope):
    live_envelope.set(EnvelopeProfile(enabled=True, execution_limit_s=0))
    resp = d365_client.get("/data/VendorsV2")
    # Nothing ever gets below a budget of 0 s: the longest answer, one window.
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "300"
    assert resp.json() == {"error": {"code": "", "message": (
        "Combined execution time of incoming requests exceeded limit of 0 seconds over time window of 300 seconds. "
        "Decrease number of concurrent requests or reduce the duration of requests and try again later.")}}
    assert live_envelope.counters.throttled_execution == 1 and live_envelope.counters.admitted == 0


def test_a_served_page_is_charged_its_rows(d365_client, live_envelope):
    live_envelope.set(EnvelopeProfile(enabled=True, request_ms=20, row_ms=1))
    resp = d365_client.get("/data/VendorsV2", params={"cross-company": "true", "$top": "7"})
    assert resp.status_code == 200 and len(resp.json()["value"]) == 7
    count = d365_client.get("/data/VendorsV2/$count", params={"cross-company": "true"})
    assert count.status_code == 200
    counters = live_envelope.counters
    assert counters.admitted == 2 and counters.rows_served == 7
    # The page took at least 20 ms + 7 × 1 ms of server time, the count at least 20 ms; both are charged.
    assert counters.execution_s >= 0.027 + 0.020
    assert live_envelope.charged() == pytest.approx(counters.execution_s)


def test_envelope_admin_route_sets_and_reports(sandbox_server, live_envelope):
    ca = ssl.create_default_context(cafile=str(sandbox_server.tls.ca_pem))
    with httpx.Client(base_url=sandbox_server.d365_url, verify=ca) as admin:
        set_ = admin.post("/admin/d365/envelope", json={"enabled": True, "time_scale": 0.5, "window_s": 30,
                                                       "execution_limit_s": 120})
        assert set_.status_code == 200
        assert set_.json()["profile"]["window_s"] == 30 and set_.json()["counters"]["requests"] == 0
        assert live_envelope.enabled and live_envelope.profile.time_scale == 0.5
        bad = admin.post("/admin/d365/envelope", json={"time_scale": 0})
        assert bad.status_code == 400
        admin.post("/admin/d365/reset")
    assert not live_envelope.enabled  # a reset restores the default: off
