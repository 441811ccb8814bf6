"""Paged F&O reads: reading a page body without parsing it, and one big read as several key ranges read at once.

One ``@odata.nextLink`` chain is one request at a time, bounded by the server's time per page. A big read (one legal
entity's purchase order lines) is split into key ranges (:mod:`.key_ranges`), each a query of its own whose
nextLink chain is followed as DESIGN §6 asks, read by several streams through the client's adaptive gate
(:mod:`.concurrency`). Each range proves itself complete: its ``@odata.count`` when its first page was served, the
rows its pages held, and its ``@odata.count`` when its last page was served must agree, or the range is read again
(nextLink pages are ``$skip`` offsets: a row inserted or deleted before the cursor moves every later row, so a
chain can repeat or miss rows). The counts come with the pages (``$count=true``, which the nextLink carries along),
so proving a range costs no request of its own. A range's pages are held back until it is proven, so a read again
never leaves half a range behind.

Bodies come out in range order, whatever order the ranges finish in, so an F&O that did not change gives the same
bodies in the same order (the snapshot's digest, warehouse/snapshots.py, depends on it). Memory stays bounded: at
most ``LOOKAHEAD_PER_STREAM`` ranges per stream are read ahead of the one being handed on, and a range's pages
spill from memory to an unnamed temporary file beyond ``SPOOL_IN_MEMORY`` bytes.

Left to chance: an insert and a delete in the same range while its chain is being read, before and after the
cursor, keep every count equal although one row was missed and one deleted row was kept. The next extraction reads
them right. A range that fits in one page is one query, where this cannot happen.
"""

from __future__ import annotations

import re
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..redaction import get_logger
from . import key_ranges, odata
from .errors import TransientError
from .transport import json_object

log = get_logger(__name__)

SYSTEM = "F&O"
RANGE_ATTEMPTS = 4            # reads of one range that must agree with its counts before the read fails
LOOKAHEAD_PER_STREAM = 2      # ranges read ahead of the one being handed on, per stream
SPOOL_IN_MEMORY = 1 << 20     # bytes of one range's pages kept in memory before they spill to a temporary file
                              # (a 10,000-row page is 4-5 MB: ranges held for their turn wait on disk, not in RSS)

_NEXT_LINK_KEY = b'"@odata.nextLink"'
_ETAG_KEY = b'"@odata.etag":'
_COUNT = re.compile(rb'"@odata\.count":\s*(\d+)')
_LENGTH = struct.Struct(">Q")


def next_link(content: bytes) -> str | None:
    """The page's ``@odata.nextLink``.

    F&O writes it after the ``value`` array, so only the tail after the last occurrence of the key is decoded
    instead of the whole page. Inside a JSON string the key's quotes would be escaped, so the only false match is
    a value that is exactly the key's text; its tail does not parse, and that falls back to a full parse.
    """
    at = content.rfind(_NEXT_LINK_KEY)
    if at < 0:
        return None  # the caller parses the whole body anyway, and reports a body that is not JSON
    try:
        tail = orjson.loads(b"{" + content[at:])
    except orjson.JSONDecodeError:
        tail = json_object(content, SYSTEM)
    if not isinstance(tail, dict):  # pragma: no cover - orjson only yields a dict for an object
        return None
    link = tail.get("@odata.nextLink")
    return str(link) if link else None


def page_rows(content: bytes) -> int:
    """How many rows a page holds, without parsing it: F&O annotates every row with its ``@odata.etag``
    (reference/d365.md §2), and inside a JSON string the key's quotes would be escaped. A page without etags is
    parsed and counted."""
    rows = content.count(_ETAG_KEY)
    if rows:
        return rows
    value = json_object(content, SYSTEM).get("value")
    if not isinstance(value, list):
        raise TransientError("F&O answered a read without a 'value' list.", system=SYSTEM)
    return len(value)


def odata_count(content: bytes) -> int | None:
    """The ``@odata.count`` of a page asked with ``$count=true``: the query's total when the page was served."""
    match = _COUNT.search(content)
    return int(match.group(1)) if match else None


class ReadPage(Protocol):
    """One gated GET of the client: ``url`` is the entity set or a nextLink; ``page`` when it returns rows."""

    def __call__(self, entity_set: str, url: str, query: Mapping[str, str] | None, *, page: bool) -> bytes: ...


@dataclass
class RangeReadStats:
    ranges: int = 0
    rows: int = 0
    reread: int = 0       # range reads whose counts disagreed, read again


class _Spool:
    """One range's page bodies, length-prefixed, in memory up to SPOOL_IN_MEMORY bytes and then in an unnamed
    temporary file (deleted by the system when closed, even if the process dies)."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by close()

    def clear(self) -> None:
        self._file.seek(0)
        self._file.truncate()

    def add(self, body: bytes) -> None:
        self._file.write(_LENGTH.pack(len(body)))
        self._file.write(body)

    def bodies(self) -> Iterator[bytes]:
        self._file.seek(0)
        while head := self._file.read(_LENGTH.size):
            yield self._file.read(_LENGTH.unpack(head)[0])

    def close(self) -> None:
        self._file.close()


_PENDING = object()   # a boundary whose probe has not answered yet
_BOTTOM = object()    # below every key: what stands in for an unusable first boundary
_TOP = object()       # above every key: the upper end of the last range


class RangeRead:
    """One query read as key ranges by up to ``streams`` workers; iterate it for the page bodies in range order.

    The same workers sample the boundaries (the key at evenly spaced offsets, one row each) and read the ranges.
    A range starts as soon as both its boundaries are known, and the probes are kept only a few ranges ahead of the
    reads, so no stream waits for the whole plan. A boundary that cannot be used (:func:`key_ranges.usable_boundary`)
    is replaced by the one before it, which leaves one range empty and the next one wider. The key prefix the
    ranges compare (:func:`key_ranges.shortest_prefix`) is decided by the first two boundaries; a later pair that
    it does not tell apart only makes a range empty, never a row lost."""

    def __init__(self, read_page: ReadPage, read_count: Callable[[Mapping[str, str]], int], entity_set: str,
                 params: Mapping[str, str], keys: Sequence[str], total: int, streams: int) -> None:
        self._read_page = read_page
        self._read_count = read_count
        self.entity_set = entity_set
        self._params = dict(params)
        self._keys = tuple(keys)
        self._offsets = key_ranges.probe_offsets(total, key_ranges.range_count(total, streams))
        self._probed: list[Any] = [_PENDING] * len(self._offsets)  # a key tuple, or None when unusable
        self._probes_started = 0
        self._columns: int | None = None
        self._ranges = len(self._offsets) + 1
        self._streams = max(1, min(streams, self._ranges))
        self.stats = RangeReadStats(ranges=self._ranges)
        self._cond = threading.Condition()
        self._started = 0                  # ranges handed to a worker
        self._handed_on = 0                # ranges the consumer has taken
        self._done: dict[int, _Spool] = {}
        self._error: BaseException | None = None
        self._stopping = False

    def __iter__(self) -> Iterator[bytes]:
        pool = ThreadPoolExecutor(self._streams, thread_name_prefix=f"d365-{self.entity_set}")
        try:
            for _ in range(self._streams):
                pool.submit(self._work)
            for index in range(self._ranges):
                spool = self._next(index)
                try:
                    yield from spool.bodies()
                finally:
                    spool.close()
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            pool.shutdown(wait=True, cancel_futures=True)
            for spool in self._done.values():
                spool.close()

    def _next(self, index: int) -> _Spool:
        with self._cond:
            while index not in self._done and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            self._handed_on = index + 1
            self._cond.notify_all()
            return self._done.pop(index)

    # -- the plan, under the lock ----------------------------------------------------------------------------------
    def _boundary(self, j: int) -> Any:
        """Boundary ``j`` (range ``j``'s upper end, range ``j + 1``'s lower): a key tuple, _BOTTOM or _PENDING."""
        while j >= 0:
            if self._probed[j] is not None:
                return self._probed[j]
            j -= 1  # unusable: the boundary before it stands in
        return _BOTTOM

    def _plan(self, index: int) -> tuple[bool, odata.Filter | None] | None:
        """(empty, condition) of range ``index``, or None while a boundary it needs is still being probed."""
        if self._columns is None:
            first = [self._boundary(j) for j in range(min(2, len(self._offsets)))]
            if _PENDING in first:
                return None
            self._columns = key_ranges.shortest_prefix([b for b in first if b is not _BOTTOM])
        lower = _BOTTOM if index == 0 else self._boundary(index - 1)
        upper = _TOP if index == len(self._offsets) else self._boundary(index)
        if lower is _PENDING or upper is _PENDING:
            return None
        columns = self._columns
        if upper is _BOTTOM or (lower not in (_BOTTOM, _TOP) and upper is not _TOP
                                and tuple(lower[:columns]) == tuple(upper[:columns])):
            return True, None
        return False, key_ranges.between(self._keys, None if lower is _BOTTOM else lower,
                                         None if upper is _TOP else upper, columns)

    def _take(self) -> tuple[str, int, tuple[bool, odata.Filter | None] | None] | None:
        """The next task: a probe while the boundaries are fewer than a stream's worth ahead of the reads, else the
        next range if it is planned and within the lookahead, else any probe left; None when all is handed out."""
        lookahead = LOOKAHEAD_PER_STREAM * self._streams
        with self._cond:
            while not self._stopping:
                probes_left = self._probes_started < len(self._offsets)
                if probes_left and self._probes_started <= self._started + self._streams:
                    self._probes_started += 1
                    return "probe", self._probes_started - 1, None
                if self._started < self._ranges and self._started < self._handed_on + lookahead:
                    plan = self._plan(self._started)
                    if plan is not None:
                        self._started += 1
                        return "range", self._started - 1, plan
                if probes_left:
                    self._probes_started += 1
                    return "probe", self._probes_started - 1, None
                if self._started >= self._ranges:
                    return None
                self._cond.wait()
            return None

    # -- the workers -----------------------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            while (task := self._take()) is not None:
                kind, index, plan = task
                if kind == "probe":
                    boundary = self._probe(self._offsets[index])
                    with self._cond:
                        self._probed[index] = boundary
                        self._cond.notify_all()
                    continue
                assert plan is not None
                empty, condition = plan
                spool = _Spool() if empty else self._read_range(index, condition)
                with self._cond:
                    if spool is None:
                        return
                    self._done[index] = spool
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer, which raises it
            with self._cond:
                self._error = self._error or exc
                self._stopping = True
                self._cond.notify_all()

    def _probe(self, offset: int) -> tuple[Any, ...] | None:
        """The key at ``offset`` in F&O's key order (one row, keys only), if it can be a boundary."""
        query = {**self._params, "$select": ",".join(self._keys), "$orderby": ",".join(self._keys), "$top": "1",
                 "$skip": str(offset)}
        rows = json_object(self._read_page(self.entity_set, self.entity_set, query, page=False), SYSTEM).get("value")
        return key_ranges.usable_boundary(self._keys, rows[0] if isinstance(rows, list) and rows else None)

    def _read_range(self, index: int, condition: odata.Filter | None) -> _Spool | None:
        """Read range ``index`` until its counts agree with its rows; None when the read is being abandoned."""
        query = dict(self._params)
        if condition is not None:
            base = self._params.get("$filter")
            query["$filter"] = (odata.Filter(base) & condition).text if base else condition.text
        spool = _Spool()
        try:
            for attempt in range(1, RANGE_ATTEMPTS + 1):
                spool.clear()
                before = after = None
                rows = pages = 0
                url: str | None = self.entity_set
                params: Mapping[str, str] | None = {**query, "$count": "true"}
                while url is not None:
                    if self._stopping:
                        spool.close()
                        return None
                    content = self._read_page(self.entity_set, url, params, page=True)
                    after = odata_count(content)
                    if pages == 0:
                        # A server that ignores $count=true is asked right away instead.
                        before = after if after is not None else self._read_count(query)
                    rows += page_rows(content)
                    pages += 1
                    spool.add(content)
                    link = next_link(content)
                    url, params = (link, None) if link else (None, None)
                if after is None:
                    # The nextLink dropped $count=true (F&O's links are opaque): ask for the count at the end.
                    after = self._read_count(query)
                if before == rows == after:
                    with self._cond:
                        self.stats.rows += rows
                    return spool
                with self._cond:
                    self.stats.reread += 1
                log.info("%s: key range %s of %s changed while it was read (count %s before, %s after, %s rows "
                         "received); reading it again (attempt %s)", self.entity_set, index + 1, self._ranges,
                         before, after, rows, attempt + 1,
                         extra={"read": {"entity": self.entity_set, "range": index, "count_before": before,
                                         "count_after": after, "rows": rows}})
        except BaseException:
            spool.close()
            raise
        spool.close()
        raise TransientError(f"F&O's {self.entity_set} kept changing while key range {index + 1} of "
                             f"{self._ranges} was read ({RANGE_ATTEMPTS} reads disagreed with its count); "
                             f"the extraction is tried again later.", system=SYSTEM)


__all__ = ["RangeRead", "RangeReadStats", "next_link", "odata_count", "page_rows"]
