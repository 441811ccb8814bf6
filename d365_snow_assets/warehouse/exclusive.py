"""Named cross-process locks beside the warehouse file, for work that must never run twice at once yet lasts far
too long to hold the warehouse lock for: posting one legal entity's invoices (two runs posting the same invoices
race on its ServiceNow status and on the retry list; chaos seed 882466).

The lock is an OS file lock (``flock`` through filelock), which the kernel releases when the holding process ends,
even by SIGKILL: a crashed run never blocks the next one. The holder writes a one-line description into a side
file so that a waiting run can say what it waits for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import filelock

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_POLL_S = 15.0  # how often a waiting run reports that it still waits


class ExclusiveBusy(TimeoutError):
    """Another process held the named lock for longer than the caller was willing to wait."""


def lock_path(warehouse_path: Path, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise ValueError(f"lock name {name!r}: use lower-case letters, digits, '-' and '_'")
    return Path(f"{warehouse_path}.{name}.lock")


def _owner(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def exclusive(path: Path, holder: str, *, timeout: float,
              on_wait: Callable[[str, float], None] | None = None) -> Iterator[None]:
    """Hold the lock file ``path`` for the block. While another process holds it, call ``on_wait(owner, waited_s)``
    at once and then every 15 s; raise :class:`ExclusiveBusy` after ``timeout`` seconds. ``owner`` is the holder's
    ``holder`` text plus when it took the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # No silent fallback to a marker-file lock where flock is missing: that one would outlive a killed holder.
    # A non-negative timeout on every acquire also keeps filelock from calling a second holder in this process
    # (another thread's lock object) a deadlock.
    lock = filelock.FileLock(path, fallback_to_soft=False)
    owner_file = path.with_suffix(".owner")
    start = time.monotonic()
    wait = 0.0  # the first attempt does not block, so the caller hears about a holder before waiting on it
    while True:
        try:
            lock.acquire(timeout=wait)
            break
        except filelock.Timeout:
            waited = time.monotonic() - start
            owner = _owner(owner_file)
            if waited >= timeout:
                raise ExclusiveBusy(f"{owner} still held {path.name} after {waited:.0f} s of waiting") from None
            if on_wait:
                on_wait(owner, waited)
            wait = min(_POLL_S, timeout - waited)
    try:
        owner_file.write_text(f"{holder} (since {datetime.now(UTC):%H:%M:%S} UTC)", encoding="utf-8")
        yield
    finally:
        lock.release()
