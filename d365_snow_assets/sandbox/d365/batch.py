"""Multipart ``$batch`` (reference §2): parse requests and changesets, render the multipart response."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_CHANGESET_OPS = 5000
TOO_MANY_OPS = ("The current change set contains too many operations. A maximum number of '5000' operations are "
                "allowed in a change set.")  # ODataLib's text (reference §2, issue I2)


@dataclass
class BatchRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None


@dataclass
class Changeset:
    requests: list[BatchRequest] = field(default_factory=list)


@dataclass
class BatchResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    content_id: str | None


class BatchFormatError(ValueError):
    pass


def boundary_of(content_type: str) -> str:
    m = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if not m:
        raise BatchFormatError("The batch request must have a 'Content-Type' header with a boundary parameter.")
    return m.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    delim = b"--" + boundary.encode()
    chunks = body.split(delim)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.strip(b"\r\n") if chunk.strip() else b"")
    return [p for p in parts if p]


def _headers_and_body(blob: bytes) -> tuple[dict[str, str], bytes]:
    sep = re.search(rb"\r?\n\r?\n", blob)
    head, rest = (blob[:sep.start()], blob[sep.end():]) if sep else (blob, b"")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8").splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return headers, rest


def _request(part: bytes) -> BatchRequest:
    mime_headers, http = _headers_and_body(part)
    http = http.lstrip(b"\r\n")
    line_end = http.find(b"\n")
    request_line = http[:line_end if line_end >= 0 else len(http)].decode().strip()
    bits = request_line.split(" ")
    if len(bits) < 2:
        raise BatchFormatError(f"Invalid request line '{request_line}' in a batch part.")
    headers, body = _headers_and_body(http[line_end + 1:] if line_end >= 0 else b"")
    if not headers and not body.strip() and http[line_end + 1:].strip():
        headers, body = {}, http[line_end + 1:]
    content_id = mime_headers.get("content-id") or headers.get("content-id")
    return BatchRequest(bits[0].upper(), bits[1], headers, body.rstrip(b"\r\n"), content_id)


def parse_batch(body: bytes, content_type: str) -> list[BatchRequest | Changeset]:
    items: list[BatchRequest | Changeset] = []
    for part in _split(body, boundary_of(content_type)):
        headers, inner = _headers_and_body(part)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            cs = Changeset([_request(p) for p in _split(inner, boundary_of(ctype))])
            items.append(cs)
        else:
            items.append(_request(part))
    return items


def _render_part(resp: BatchResponse) -> bytes:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if resp.content_id:
        lines.append(f"Content-ID: {resp.content_id}")
    reason = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ else ""
    lines += ["", f"HTTP/1.1 {resp.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in resp.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + resp.body


def render_batch(results: list[BatchResponse | list[BatchResponse]]) -> tuple[bytes, str]:
    """The multipart body and its content type; a changeset renders as a nested multipart."""
    outer = f"batchresponse_{uuid.uuid4()}"
    out = b""
    for item in results:
        out += f"--{outer}\r\n".encode()
        if isinstance(item, list):
            inner = f"changesetresponse_{uuid.uuid4()}"
            out += f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode()
            for resp in item:
                out += f"--{inner}\r\n".encode() + _render_part(resp) + b"\r\n"
            out += f"--{inner}--\r\n".encode()
        else:
            out += _render_part(item) + b"\r\n"
    out += f"--{outer}--\r\n".encode()
    return out, f"multipart/mixed; boundary={outer}"
