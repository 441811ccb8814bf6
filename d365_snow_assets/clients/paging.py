"""Paged F&O reads: reading a page body without parsing it, and one big read as several key ranges read at once.

One ``@odata.nextLink`` chain is one request at a time, bounded by the server's time per page. A big read (one legal
entity's purchase order lines) is split into key ranges (:mod:`.key_ranges`), each a query of its own whose
nextLink chain is followed as DESIGN §6 asks, read by several streams through the client's adaptive gate
(:mod:`.concurrency`). Each range proves itself complete: its ``$count`` before its first page, the rows its pages
held and, for a chain of several pages, its ``$count`` after the last must agree, or the range is read again
(nextLink pages are ``$skip`` offsets: a row inserted or deleted before the cursor moves every later row, so a
chain can repeat or miss rows). A range's pages are held back until it is proven, so a read again never leaves
half a range behind. (``$count=true`` on the pages themselves would save the two requests, but a nextLink carries
it to every page, and each page would then be counted too.)

Bodies come out in range order, whatever order the ranges finish in, so an F&O that did not change gives the same
bodies in the same order (the snapshot's digest, warehouse/snapshots.py, depends on it). Memory stays bounded: at
most ``LOOKAHEAD_PER_STREAM`` ranges per stream are read ahead of the one being handed on, and a range's pages
spill from memory to an unnamed temporary file beyond ``SPOOL_IN_MEMORY`` bytes.

Left to chance: an insert and a delete in the same range while its chain is being read, before and after the
cursor, keep every count equal although one row was missed and one deleted row was kept. The next extraction reads
them right. A range that fits in one page is one query, where this cannot happen.
"""

from __future__ import annotations

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

log = get_logger(__name__)

SYSTEM = "F&O"
RANGE_ATTEMPTS = 4            # reads of one range that must agree with its counts before the read fails
LOOKAHEAD_PER_STREAM = 2      # ranges read ahead of the one being handed on, per stream
SPOOL_IN_MEMORY = 8 << 20     # bytes of one range's pages kept in memory before they spill to a temporary file

_NEXT_LINK_KEY = b'"@odata.nextLink"'
_ETAG_KEY = b'"@odata.etag":'
_LENGTH = struct.Struct(">Q")


def json_object(content: bytes) -> dict[str, Any]:
    """A response body as a JSON object; a body that is not one is a transient failure (a cut-off answer)."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise TransientError("F&O answered with a body that is not JSON; the answer was cut off.",
                             system=SYSTEM) from None
    if not isinstance(data, dict):
        raise TransientError("F&O answered with an unexpected JSON shape.", system=SYSTEM)
    return data


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
        tail = json_object(content)
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
    value = json_object(content).get("value")
    if not isinstance(value, list):
        raise TransientError("F&O answered a read without a 'value' list.", system=SYSTEM)
    return len(value)


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


class RangeRead:
    """One query read as ranges by up to ``streams`` workers; iterate it for the page bodies in range order."""

    def __init__(self, read_page: ReadPage, read_count: Callable[[Mapping[str, str]], int], entity_set: str,
                 params: Mapping[str, str], filters: Sequence[odata.Filter | None], streams: int) -> None:
        self._read_page = read_page
        self._read_count = read_count
        self.entity_set = entity_set
        self._params = dict(params)
        self._filters = list(filters)
        self._streams = max(1, min(streams, len(self._filters)))
        self.stats = RangeReadStats(ranges=len(self._filters))
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
            for index in range(len(self._filters)):
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

    def _work(self) -> None:
        lookahead = LOOKAHEAD_PER_STREAM * self._streams
        while True:
            with self._cond:
                while (not self._stopping and self._started < len(self._filters)
                       and self._started >= self._handed_on + lookahead):
                    self._cond.wait()
                if self._stopping or self._started >= len(self._filters):
                    return
                index = self._started
                self._started += 1
            try:
                spool = self._read_range(index)
            except BaseException as exc:  # handed to the consumer, which raises it
                with self._cond:
                    self._error = self._error or exc
                    self._stopping = True
                    self._cond.notify_all()
                return
            with self._cond:
                if spool is None:
                    return
                self._done[index] = spool
                self._cond.notify_all()

    def _read_range(self, index: int) -> _Spool | None:
        """Read range ``index`` until its counts agree with its rows; None when the read is being abandoned."""
        condition = self._filters[index]
        query = dict(self._params)
        if condition is not None:
            base = self._params.get("$filter")
            query["$filter"] = (odata.Filter(base) & condition).text if base else condition.text
        spool = _Spool()
        try:
            for attempt in range(1, RANGE_ATTEMPTS + 1):
                spool.clear()
                before = self._read_count(query)
                rows = pages = 0
                url: str | None = self.entity_set
                params: Mapping[str, str] | None = query
                while url is not None:
                    if self._stopping:
                        spool.close()
                        return None
                    content = self._read_page(self.entity_set, url, params, page=True)
                    rows += page_rows(content)
                    pages += 1
                    spool.add(content)
                    link = next_link(content)
                    url, params = (link, None) if link else (None, None)
                # One page is one query, so the count before it is all there is to compare with; a chain of pages
                # can drift between them, and only a count after it as well shows that nothing moved.
                after = before if pages == 1 else self._read_count(query)
                if before == rows == after:
                    with self._cond:
                        self.stats.rows += rows
                    return spool
                with self._cond:
                    self.stats.reread += 1
                log.info("%s: key range %s of %s changed while it was read (count %s before, %s after, %s rows "
                         "received); reading it again (attempt %s)", self.entity_set, index + 1, len(self._filters),
                         before, after, rows, attempt + 1,
                         extra={"read": {"entity": self.entity_set, "range": index, "count_before": before,
                                         "count_after": after, "rows": rows}})
        except BaseException:
            spool.close()
            raise
        spool.close()
        raise TransientError(f"F&O's {self.entity_set} kept changing while key range {index + 1} of "
                             f"{len(self._filters)} was read ({RANGE_ATTEMPTS} reads disagreed with its count); "
                             f"the extraction is tried again later.", system=SYSTEM)


def split_read(read_page: ReadPage, read_count: Callable[[Mapping[str, str]], int], entity_set: str,
               params: Mapping[str, str], keys: Sequence[str], total: int, streams: int) -> RangeRead | None:
    """Plan a read of ``total`` rows as key ranges: sample the boundaries (one row each, through the gate, up to
    ``streams`` at once) and return the read, or None when no usable boundary came back."""
    offsets = key_ranges.probe_offsets(total, key_ranges.range_count(total, streams))
    probe = {**params, "$select": ",".join(keys), "$orderby": ",".join(keys), "$top": "1"}

    def boundary(offset: int) -> tuple[Any, ...] | None:
        rows = json_object(read_page(entity_set, entity_set, {**probe, "$skip": str(offset)}, page=False)).get("value")
        return key_ranges.usable_boundary(keys, rows[0] if isinstance(rows, list) and rows else None)

    with ThreadPoolExecutor(max(1, min(streams, len(offsets))), thread_name_prefix="d365-probe") as pool:
        boundaries = [b for b in pool.map(boundary, offsets) if b is not None]
    if not boundaries:
        return None
    return RangeRead(read_page, read_count, entity_set, params, key_ranges.range_filters(keys, boundaries), streams)


__all__ = ["RangeRead", "RangeReadStats", "json_object", "next_link", "page_rows", "split_read"]
