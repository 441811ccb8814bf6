"""Inbound REST rate limit rules (reference/servicenow.md §4).

One rule at a time, applying to every user ("All users" rule), counted per user per fixed window. Real rules count
per hour; ``window_s`` is a sandbox extension so benchmarks can hit a limit in seconds. Real counters are committed
every 30 s so a client can briefly overshoot; here counting is exact (a stricter, deterministic simplification).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

# Stable sys_id of the simulated sys_rate_limit_rules record (X-RateLimit-Rule).
RULE_SYS_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    body: bytes = b""


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.limit: int | None = None
        self.window_s = 3600
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self.denied = 0

    def set_rule(self, limit: int | None, window_s: int = 3600) -> None:
        with self._lock:
            self.limit = limit if limit and limit > 0 else None
            self.window_s = max(1, int(window_s or 3600))
            self._counts.clear()
            self.denied = 0

    def check(self, user: str, api_name: str) -> Decision | None:
        """Count one request of ``user``; None when no rule applies."""
        with self._lock:
            if self.limit is None:
                return None
            now = self.clock()
            window = int(now // self.window_s)
            reset_at = (window + 1) * self.window_s
            headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Reset": str(int(reset_at)),
                       "X-RateLimit-Rule": RULE_SYS_ID}
            key = (user, window)
            used = self._counts.get(key, 0)
            if used >= self.limit:
                self.denied += 1
                headers["Retry-After"] = str(max(1, math.ceil(reset_at - now)))
                per = "hour" if self.window_s == 3600 else f"{self.window_s} seconds"
                body = orjson.dumps({"error": {"message": "Rate limit exceeded",
                                               "detail": f"Rate limit of {self.limit} requests per {per} for "
                                                         f"{api_name} exceeded"},
                                     "status": "failure"})
                return Decision(False, headers, body)
            self._counts[key] = used + 1
            if len(self._counts) > 10_000:  # old windows are never read again
                self._counts = {k: v for k, v in self._counts.items() if k[1] == window}
            return Decision(True, headers)
