"""F&O's service envelope in the sandbox: what a request costs the server, and the user-based service protection
limits that cap what one integration user may consume (reference/d365.md §5). Off by default.

A run-time profile like the fault profile (``POST /admin/d365/envelope``). When it is on, every OData request

- is first admitted against the three user-based limits, each answered with 429, the documented message and
  ``Retry-After`` (integer seconds, as F&O sends them): concurrent requests (52), requests per sliding window
  (6,000 per 300 s) and combined execution time per sliding window (1,200 s per 300 s);
- then takes at least ``request_ms + row_ms × rows served`` of server time (the sandbox's own work counts towards
  it, the rest is waited out without holding a thread), which is the execution time it is charged.

Assumptions, none of them published [INF]:
- Server time per request and per row. No public measurement of F&O OData read cost per row was found (searched:
  reference/d365.md, docs and pages corpora: load tests and entity-performance posts give no per-row figure), so
  the defaults are the stated assumption 150 ms per request + 0.25 ms per row served: a full 10,000-row page takes
  2.65 s. Rows skipped by ``$skip`` and rows counted by ``$count`` are not charged (a clustered-index seek or count
  in SQL, not entity rows materialised by the AOS).
- How execution time is accounted. A request is charged when it completes, and only the part of its execution
  that lies inside the window counts, so the charge slides out of the window gradually. Requests still running are
  not counted yet. Throttled (429) requests cost nothing and do not count as requests.
- ``Retry-After`` for the execution limit is the time until the window's charge falls below the limit if nothing
  else completes; for the request limit, until the oldest admitted request leaves the window; for the concurrency
  limit, one second. F&O's own values are not documented, nor is the lengthening of later intervals under
  continued load (reference §5), which is not reproduced.

User-based limits are per user *per web server*; the sandbox is one web server and checks them for all callers
together. Since 10.0.36 real F&O no longer enforces them (reference §5): the profile models the envelope DESIGN §10
asks a connector to stay within, not what every environment enforces.

``time_scale`` multiplies every duration (server times, the window, Retry-After) so a benchmark can run the model
faster with every ratio kept. ``window_s`` and ``execution_limit_s`` can be set apart: a benchmark that shortens
the window but keeps their ratio (4 execution-seconds per second) measures the steady state of a read longer than
the window without waiting for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, Field

# reference/d365.md §5, verbatim (including F&O's own spelling "exeeded").
REQUESTS_MESSAGE = "Number of requests exeeded the limit of {limit} over the time window of {window} seconds."
EXECUTION_MESSAGE = ("Combined execution time of incoming requests exceeded limit of {limit} seconds over time window "
                     "of {window} seconds. Decrease number of concurrent requests or reduce the duration of requests "
                     "and try again later.")
CONCURRENCY_MESSAGE = "Number of concurrent requests exceeded the limit of {limit}."


class EnvelopeProfile(BaseModel):
    """The server-cost model and the user-based limits. Durations are F&O seconds, before ``time_scale``."""

    enabled: bool = False
    request_ms: float = Field(default=150.0, ge=0)   # server time per request [assumption, see module doc]
    row_ms: float = Field(default=0.25, ge=0)        # server time per row served [assumption]
    time_scale: float = Field(default=1.0, gt=0)     # every duration × this (benchmarks)
    concurrent_limit: int | None = Field(default=52, ge=0)         # None: not enforced
    request_limit: int | None = Field(default=6000, ge=0)
    execution_limit_s: float | None = Field(default=1200.0, ge=0)
    window_s: float = Field(default=300.0, gt=0)


@dataclass
class EnvelopeCounters:
    requests: int = 0                 # every request that arrived while the profile was on
    admitted: int = 0
    throttled_concurrency: int = 0
    throttled_requests: int = 0
    throttled_execution: int = 0
    rows_served: int = 0
    execution_s: float = 0.0          # wall seconds charged (already × time_scale)
    peak_concurrency: int = 0

    @property
    def throttled(self) -> int:
        return self.throttled_concurrency + self.throttled_requests + self.throttled_execution


@dataclass(frozen=True)
class Rejection:
    """A 429: which limit, the documented message, and the Retry-After in whole seconds."""

    limit: str
    message: str
    retry_after_s: int


@dataclass
class ServiceEnvelope:
    """The live envelope of the sandbox's F&O. Thread-safe; ``clock`` is injectable for tests."""

    clock: Callable[[], float] = time.monotonic
    profile: EnvelopeProfile = field(default_factory=EnvelopeProfile)
    counters: EnvelopeCounters = field(default_factory=EnvelopeCounters)
    _in_flight: int = 0
    _executions: deque[tuple[float, float]] = field(default_factory=deque)  # (start, end) of completed requests
    _arrivals: deque[float] = field(default_factory=deque)                  # admission times
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, profile: EnvelopeProfile) -> None:
        """A new profile starts from an empty window and zeroed counters (requests still in flight finish)."""
        with self._lock:
            self.profile = profile
            self.counters = EnvelopeCounters(peak_concurrency=self._in_flight)
            self._executions.clear()
            self._arrivals.clear()

    @property
    def enabled(self) -> bool:
        return self.profile.enabled

    # -- durations in wall seconds ----------------------------------------------------------------------------
    def _scaled(self, seconds: float) -> float:
        return seconds * self.profile.time_scale

    def server_time_s(self, rows: int) -> float:
        """The server time a request serving ``rows`` rows takes (wall seconds)."""
        p = self.profile
        return self._scaled((p.request_ms + p.row_ms * max(rows, 0)) / 1000)

    # -- admission ----------------------------------------------------------------------------------------------
    def admit(self) -> Rejection | None:
        """Admit a request (it is then in flight until :meth:`finish`), or say which limit rejects it."""
        with self._lock:
            now = self.clock()
            p = self.profile
            self.counters.requests += 1
            window = self._scaled(p.window_s)
            self._forget_before(now - window)
            if p.concurrent_limit is not None and self._in_flight >= p.concurrent_limit:
                self.counters.throttled_concurrency += 1
                return Rejection("concurrency", CONCURRENCY_MESSAGE.format(limit=p.concurrent_limit),
                                 _whole_seconds(self._scaled(1.0)))
            if p.request_limit is not None and len(self._arrivals) >= p.request_limit:
                self.counters.throttled_requests += 1
                # The window has room again when enough of the oldest admissions have left it.
                oldest = self._arrivals[len(self._arrivals) - p.request_limit]
                return Rejection("requests", REQUESTS_MESSAGE.format(limit=p.request_limit, window=_num(p.window_s)),
                                 _whole_seconds(oldest + window - now))
            if p.execution_limit_s is not None:
                budget = self._scaled(p.execution_limit_s)
                if self._charged(now, window) >= budget:
                    self.counters.throttled_execution += 1
                    return Rejection("execution",
                                     EXECUTION_MESSAGE.format(limit=_num(p.execution_limit_s), window=_num(p.window_s)),
                                     _whole_seconds(self._time_until_below(now, window, budget)))
            self._in_flight += 1
            self._arrivals.append(now)
            self.counters.admitted += 1
            self.counters.peak_concurrency = max(self.counters.peak_concurrency, self._in_flight)
            return None

    def finish(self, started: float, rows: int) -> None:
        """An admitted request that began at ``started`` (this clock) has completed: charge its execution time."""
        with self._lock:
            now = self.clock()
            self._in_flight -= 1
            self._executions.append((started, now))
            self.counters.execution_s += now - started
            self.counters.rows_served += rows

    # -- accounting ---------------------------------------------------------------------------------------------
    def charged(self) -> float:
        """Execution seconds (wall) inside the current window."""
        with self._lock:
            now = self.clock()
            return self._charged(now, self._scaled(self.profile.window_s))

    def _forget_before(self, edge: float) -> None:
        while self._executions and self._executions[0][1] <= edge:
            self._executions.popleft()
        while self._arrivals and self._arrivals[0] <= edge:
            self._arrivals.popleft()

    def _charged(self, at: float, window: float) -> float:
        edge = at - window
        return sum(max(0.0, min(end, at) - max(start, edge)) for start, end in self._executions)

    def _time_until_below(self, now: float, window: float, budget: float) -> float:
        """How long until the charge of the completed requests drops below ``budget`` as the window slides on.

        The charge only falls while nothing new completes and is 0 one window from now, so a bisection finds the
        moment to well under a millisecond."""
        low, high = 0.0, window
        for _ in range(40):
            middle = (low + high) / 2
            if self._charged(now + middle, window) >= budget:
                low = middle
            else:
                high = middle
        return high

    def snapshot(self) -> dict[str, object]:
        """Profile, counters and the current window's charge, for the admin route and benchmarks."""
        with self._lock:
            now = self.clock()
            window = self._scaled(self.profile.window_s)
            counters = asdict(self.counters) | {"throttled": self.counters.throttled}
            return {"profile": self.profile.model_dump(), "counters": counters, "in_flight": self._in_flight,
                    "window_charge_s": self._charged(now, window)}


def _whole_seconds(seconds: float) -> int:
    """F&O's Retry-After is whole seconds (reference §5); rounding up never sends a caller back too early."""
    return max(1, math.ceil(seconds - 1e-9))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


__all__ = ["CONCURRENCY_MESSAGE", "EXECUTION_MESSAGE", "REQUESTS_MESSAGE", "EnvelopeCounters", "EnvelopeProfile",
           "Rejection", "ServiceEnvelope"]
