"""The adaptive gate of F&O reads (clients/concurrency.py): AIMD on 429s and on latency, within the cap."""

from __future__ import annotations

import threading

import pytest

from d365_snow_assets.clients.concurrency import AdaptiveConcurrency, LatencySample
from d365_snow_assets.settings import SettingsError, load_settings

PAGE = 4_500_000  # bytes of a 10,000-row page


def page(seconds: float, size: int = PAGE) -> LatencySample:
    return LatencySample("PurchaseOrderLinesV2", size, seconds)


def round_trip(gate: AdaptiveConcurrency, *, seconds: float = 2.0, throttles: int = 0) -> None:
    """One round trip in the steady state: as many answers as the limit, each while the other slots are busy."""
    width = gate.limit
    with ExitAll(gate, width - 1):
        for _ in range(width):
            if gate.limit < width:
                return  # cut: the slots held would fill it (a cut limit waits for them to finish)
            with gate.slot() as ticket:
                gate.observe(ticket, throttles=throttles, sample=page(seconds))


class ExitAll:
    """Hold ``n`` slots of the gate at once (the way n streams would), then free them all."""

    def __init__(self, gate: AdaptiveConcurrency, n: int) -> None:
        self.contexts = [gate.slot() for _ in range(n)]

    def __enter__(self) -> list:
        return [c.__enter__() for c in self.contexts]

    def __exit__(self, *exc: object) -> None:
        for c in self.contexts:
            c.__exit__(None, None, None)


def test_it_starts_four_wide_or_at_the_cap():
    assert AdaptiveConcurrency(16).limit == 4 and AdaptiveConcurrency(2).limit == 2


def test_additive_increase_one_per_round_trip_up_to_the_cap():
    gate = AdaptiveConcurrency(4, start=1)
    assert gate.limit == 1
    for _ in range(10):
        round_trip(gate)
    assert gate.limit == 4 and gate.stats.changes == [("grow", 2), ("grow", 3), ("grow", 4)] and gate.stats.peak == 4


def test_a_429_halves_the_limit_once_per_round():
    gate = AdaptiveConcurrency(8, start=8)
    with ExitAll(gate, 8) as tickets:
        # Three of the eight in flight saw 429s (the transport's count went 0 → 3): one decrease, not three.
        for throttles, ticket in zip([1, 2, 3, 3, 3, 3, 3, 3], tickets, strict=True):
            gate.observe(ticket, throttles=throttles, sample=page(2.0))
    assert gate.limit == 4 and gate.stats.throttled_decreases == 1
    # A request started after the cut that still sees a new 429 cuts again.
    with gate.slot() as ticket:
        gate.observe(ticket, throttles=4)
    assert gate.limit == 2 and gate.stats.throttled_decreases == 2
    with gate.slot() as ticket:
        gate.observe(ticket, throttles=5)
    with gate.slot() as ticket:
        gate.observe(ticket, throttles=6)
    assert gate.limit == 1  # never below one


def test_the_limit_grows_back_after_throttling_stops_and_slowly_past_where_it_was_throttled():
    gate = AdaptiveConcurrency(16, start=8)
    with gate.slot() as ticket:
        gate.observe(ticket, throttles=1)   # a 429 at a width of 8
    assert gate.limit == 4
    for _ in range(3):
        round_trip(gate, throttles=1)       # no new 429 since the last look: one step per round trip
    assert gate.limit == 7 and gate.stats.changes == [("429", 4), ("grow", 5), ("grow", 6), ("grow", 7)]
    for _ in range(7):
        round_trip(gate, throttles=1)       # the next step reaches the width of the 429: eight round trips
    assert gate.limit == 7
    round_trip(gate, throttles=1)
    assert gate.limit == 8


def test_rising_latency_shrinks_the_limit_and_holding_latency_lets_it_grow():
    gate = AdaptiveConcurrency(4)
    round_trip(gate, seconds=2.0)              # the baseline: 2 s a full page
    round_trip(gate, seconds=2.4)              # 20% slower: holds, nothing changes (already at the cap)
    assert gate.limit == 4 and gate.stats.latency_decreases == 0
    round_trip(gate, seconds=12.0)             # suddenly six times slower: the recent average passes twice it
    assert gate.limit == 3 and gate.stats.changes == [("latency", 3)]
    round_trip(gate, seconds=2.0)              # back to normal, but the average still remembers
    assert gate.limit == 3
    for _ in range(6):
        round_trip(gate, seconds=2.0)          # the average has come down: it grows again
    assert gate.limit == 4


def test_a_lasting_slowdown_becomes_the_new_normal():
    gate = AdaptiveConcurrency(8)
    round_trip(gate, seconds=2.0)
    for _ in range(60):
        round_trip(gate, seconds=5.0)          # everything 2.5 times slower from now on, for good
    cuts = gate.stats.latency_decreases
    assert cuts >= 1
    for _ in range(30):
        round_trip(gate, seconds=5.0)
    assert gate.stats.latency_decreases == cuts  # no more cuts for what has become normal ...
    assert gate.stats.changes[-1][0] == "grow"   # ... and it grows again


def test_only_pages_widen_the_limit():
    gate = AdaptiveConcurrency(16)
    for _ in range(50):  # counts and one-row probes, answered quickly
        with ExitAll(gate, gate.limit) as tickets:
            for ticket in tickets:
                gate.observe(ticket, throttles=0)
    assert gate.limit == 4
    round_trip(gate)
    assert gate.limit == 5


def test_short_pages_say_nothing_about_latency():
    gate = AdaptiveConcurrency(2, start=2)
    round_trip(gate, seconds=2.0)
    for _ in range(5):
        with ExitAll(gate, 2) as tickets:
            for ticket in tickets:
                gate.observe(ticket, throttles=0, sample=page(1.5, size=45_000))  # a last page of 100 rows
    assert gate.stats.latency_decreases == 0


def test_no_growth_when_the_limit_is_not_in_use():
    gate = AdaptiveConcurrency(8, start=3)
    for _ in range(10):
        with gate.slot() as ticket:  # one stream only: a limit of 3 is not in use
            gate.observe(ticket, throttles=0, sample=page(2.0))
    assert gate.limit == 3


def test_the_gate_holds_requests_beyond_the_limit():
    gate = AdaptiveConcurrency(3, start=1)
    release, entered = threading.Event(), threading.Event()

    def second() -> None:
        with gate.slot():
            entered.set()

    with gate.slot():
        thread = threading.Thread(target=second)
        thread.start()
        # The second request waits for the first: not entered while the first holds the only slot.
        assert not entered.wait(0.3)
        release.set()
    thread.join(5)
    assert entered.is_set() and gate.stats.peak == 1


def test_max_concurrency_setting(monkeypatch):
    assert load_settings(require=None, use_store=False).d365_max_concurrency == 4  # DESIGN §3 default
    monkeypatch.setenv("D365SNOW_D365_MAX_CONCURRENCY", "9")
    assert load_settings(require=None, use_store=False).d365_max_concurrency == 9
    monkeypatch.setenv("D365SNOW_D365_MAX_CONCURRENCY", "0")
    with pytest.raises(SettingsError, match="D365SNOW_D365_MAX_CONCURRENCY"):
        load_settings(require=None, use_store=False)
    with pytest.raises(ValueError):
        AdaptiveConcurrency(0)
