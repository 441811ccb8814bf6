"""Bearer tokens issued by the fake Entra ID and the fake ServiceNow OAuth endpoint.

Tokens are JWT-shaped (``header.claims.signature``, HMAC-SHA256 over a per-sandbox key) so they look like what the
real services hand out, but every service checks them against this registry, which also lets tests expire or
revoke them at will.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

import orjson


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    issuer: str
    audience: str
    subject: str
    expires_at: float


class TokenRegistry:
    """All live tokens of one sandbox, keyed by token string."""

    def __init__(self, clock: callable = time.time) -> None:  # type: ignore[valid-type]
        self._key = secrets.token_bytes(32)
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def issue(self, *, issuer: str, audience: str, subject: str, lifetime_s: int) -> IssuedToken:
        now = self._clock()
        header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        claims = _b64(orjson.dumps({"iss": issuer, "aud": audience, "sub": subject, "iat": int(now),
                                    "exp": int(now + lifetime_s), "jti": secrets.token_hex(8)}))
        signature = _b64(hmac.new(self._key, f"{header}.{claims}".encode(), hashlib.sha256).digest())
        issued = IssuedToken(f"{header}.{claims}.{signature}", issuer, audience, subject, now + lifetime_s)
        with self._lock:
            self._tokens[issued.token] = issued
        return issued

    def validate(self, token: str, *, issuer: str, audience: str | None = None) -> IssuedToken | None:
        """The token if it is known, unexpired, from ``issuer`` and (when given) for ``audience``."""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued.issuer != issuer or issued.expires_at <= self._clock():
            return None
        if audience is not None and issued.audience.rstrip("/") != audience.rstrip("/"):
            return None
        return issued

    def expire_all(self, issuer: str | None = None) -> int:
        """Expire every token (of one issuer): the next call with one gets a 401. Returns how many."""
        with self._lock:
            doomed = [t for t, i in self._tokens.items() if issuer is None or i.issuer == issuer]
            for t in doomed:
                del self._tokens[t]
        return len(doomed)
