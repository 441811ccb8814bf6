"""How many F&O reads one client keeps in flight (DESIGN.md §10): additive increase while latency holds,
multiplicative decrease on a 429 or on rising latency, never above ``D365SNOW_D365_MAX_CONCURRENCY``.

Why adaptive rather than a fixed fan-out: what one integration user may use of F&O is capped by limits the client
cannot see until it hits them, the user-based service protection limits (52 concurrent requests, 1,200 s of
execution time per 300 s) and resource-based throttling with unpublished thresholds (reference/d365.md §5). A fixed
fan-out past them turns into 429s whose Retry-After waits cost more than the extra streams gain. So the client
probes for the room it has the way TCP does: one more request in flight per round trip while the answers come back
as fast as before, fewer as soon as the service pushes back.

The two signals:
- **429**: the shared transport waits out Retry-After and counts every 429 it received. Any increase of that count
  since the last look halves the limit.
- **Latency**: per read (``key``), the seconds per byte of full pages. The best value seen is the baseline; it
  ages by ``BASELINE_AGING`` a page, so a lasting change (a busier AOS, a slower network) becomes the new normal
  after some dozens of pages instead of cutting the limit for good, while a sudden one still counts. When the
  recent average and the page just answered are both beyond ``DECREASE_AT`` times the baseline, the service is
  queueing the requests rather than serving more of them, and the limit shrinks by a quarter (the page itself must
  be slow too: a fast page after a slow spell says the spell is over, whatever the average still remembers). The
  additive increase waits while the average is above ``INCREASE_WHILE`` times the baseline. Rows differ in width
  between entities, so each read has its own baseline (and within a read, bytes measure a page as well as rows do,
  without counting them).

The gate starts ``INITIAL_WIDTH`` wide (or at the cap, if lower): four requests always in flight is what the
documented execution budget sustains (1,200 s per 300 s, reference/d365.md §5), as a TCP connection starts with an
initial window. Growth beyond needs pages: only a page that came back (without a 429 under way) counts towards one
more request in flight. Counts and one-row probes answer in a fraction of a page's time and show nothing about
what the service bears.

One decrease per round: requests that were already in flight when the limit was cut reflect the old limit, so what
they report cannot cut it again. And the width at which the last 429 came is remembered: the limit grows back at the
usual pace to one below it, and past that only one step per ``CAUTIOUS_ROUNDS`` round trips. A service whose limit
is an execution-time budget (1,200 s per 300 s) answers 429 only once its window has filled, long after the extra
stream started, so probing it at full pace would overshoot again and again (bench/: envelope, cap 16).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

INCREASE_WHILE = 1.25      # latency within 25% of the best seen still "holds"
DECREASE_AT = 2.0          # twice the best seen: requests are queueing at the server
LATENCY_DECREASE = 0.75
THROTTLE_DECREASE = 0.5
EWMA_WEIGHT = 0.3          # weight of the newest sample in the recent average
CAUTIOUS_ROUNDS = 8        # round trips per step at and above the width of the last 429
INITIAL_WIDTH = 4          # where the limit starts: 1,200 s of execution per 300 s keeps four requests busy
FULL_PAGE_SHARE = 0.9      # a page this close to the largest seen is "full": short last pages say little
BASELINE_AGING = 0.01      # the best latency seen may rise this much a full page


@dataclass(frozen=True)
class Ticket:
    """One admitted request: its sequence number, and whether the limit was in use when it started, at least half
    of it (only then does its success show that the limit could grow; a single stream under a limit of 4 shows
    nothing about 5)."""

    seq: int
    limit_in_use: bool


@dataclass(frozen=True)
class LatencySample:
    """How long a page of ``size`` bytes of read ``key`` took, with no 429 while it was under way."""

    key: str
    size: int
    seconds: float


@dataclass
class ConcurrencyStats:
    peak: int = 0
    increases: int = 0
    throttled_decreases: int = 0
    latency_decreases: int = 0
    changes: list[tuple[str, int]] = field(default_factory=list)  # ("grow" | "429" | "latency", new limit), in order


@dataclass
class _Latency:
    full_size: int = 0
    latest: float | None = None   # seconds per byte of the last page, if it was a full one
    best: float | None = None     # seconds per byte
    recent: float | None = None

    def add(self, size: int, seconds: float) -> None:
        if size <= 0 or size < FULL_PAGE_SHARE * self.full_size:
            self.latest = None
            return
        self.full_size = max(self.full_size, size)
        per_byte = self.latest = seconds / size
        self.best = per_byte if self.best is None else min(self.best * (1 + BASELINE_AGING), per_byte)
        self.recent = per_byte if self.recent is None else (1 - EWMA_WEIGHT) * self.recent + EWMA_WEIGHT * per_byte

    def ratio(self) -> float | None:
        """The recent average over the baseline."""
        if self.best is None or self.recent is None or self.best <= 0:
            return None
        return self.recent / self.best

    def rising(self) -> bool:
        """The recent average and the last page are both beyond DECREASE_AT times the baseline."""
        ratio = self.ratio()
        return (ratio is not None and ratio > DECREASE_AT and self.latest is not None and self.best is not None
                and self.latest > DECREASE_AT * self.best)


class AdaptiveConcurrency:
    """A gate for F&O requests whose width follows AIMD. Thread-safe; one per client."""

    def __init__(self, cap: int, *, start: int = INITIAL_WIDTH) -> None:
        if cap < 1:
            raise ValueError("the concurrency cap must be at least 1")
        self.cap = cap
        self._limit = float(min(max(start, 1), cap))
        self._cond = threading.Condition()
        self._in_flight = 0
        self._started = 0
        self._hold_until = 0      # requests with seq <= this started before the last decrease
        self._acks = 0
        self._throttles_seen = 0
        self._throttled_at: float | None = None   # the limit when the last 429 came
        self._latency: dict[str, _Latency] = {}
        self.stats = ConcurrencyStats()

    @property
    def limit(self) -> int:
        """How many requests may be in flight now."""
        return int(self._limit)

    @contextmanager
    def slot(self) -> Iterator[Ticket]:
        """Wait until a request may start, and hold its place while it runs."""
        with self._cond:
            while self._in_flight >= int(self._limit):
                self._cond.wait()
            self._in_flight += 1
            self._started += 1
            ticket = Ticket(self._started, 2 * self._in_flight >= int(self._limit))
            self.stats.peak = max(self.stats.peak, self._in_flight)
        try:
            yield ticket
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def observe(self, ticket: Ticket, *, throttles: int, sample: LatencySample | None = None,
                succeeded: bool = True) -> None:
        """Account for a finished request. ``throttles`` is the transport's count of 429s so far; ``sample`` the
        page's latency when it was a page read without a 429 under way."""
        with self._cond:
            if throttles > self._throttles_seen:
                self._throttles_seen = throttles
                self._decrease(ticket, THROTTLE_DECREASE, throttled=True)
                return
            ratio = None
            if sample is not None:
                latency = self._latency.setdefault(sample.key, _Latency())
                latency.add(sample.size, sample.seconds)
                ratio = latency.ratio()
                if latency.rising():
                    self._decrease(ticket, LATENCY_DECREASE, throttled=False)
                    return
            if (not succeeded or not ticket.limit_in_use or ticket.seq <= self._hold_until
                    or sample is None or (ratio is not None and ratio > INCREASE_WHILE)):
                return  # nothing learnt about a wider limit (a request from before the last cut says nothing)
            self._acks += 1
            rounds = CAUTIOUS_ROUNDS if self._throttled_at is not None and self._limit + 1 >= self._throttled_at \
                else 1
            if self._acks >= rounds * int(self._limit) and self._limit < self.cap:
                # About one round trip's worth of answers at this width, and latency held: one more.
                self._limit = min(float(self.cap), self._limit + 1)
                self._acks = 0
                self.stats.increases += 1
                self.stats.changes.append(("grow", int(self._limit)))
                self._cond.notify_all()

    def _decrease(self, ticket: Ticket, factor: float, *, throttled: bool) -> None:
        if ticket.seq <= self._hold_until:
            return  # it started before the last decrease: its news is about the old limit
        if throttled:
            self._throttled_at = self._limit
        self._limit = max(1.0, self._limit * factor)
        self._hold_until = self._started
        self._acks = 0
        if throttled:
            self.stats.throttled_decreases += 1
        else:
            self.stats.latency_decreases += 1
        self.stats.changes.append(("429" if throttled else "latency", int(self._limit)))


__all__ = ["AdaptiveConcurrency", "ConcurrencyStats", "LatencySample", "Ticket"]
