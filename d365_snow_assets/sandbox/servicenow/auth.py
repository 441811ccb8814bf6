"""``POST /oauth_token.do`` and request authentication (Basic or Bearer) for the fake instance
(reference/servicenow.md §3)."""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

ISSUER = "snow"
REFRESH_ISSUER = "snow-refresh"
REFRESH_LIFETIME_S = 8_640_000  # 100 days, the documented default
DENIED = orjson.dumps({"error_description": "access_denied", "error": "server_error"})
UNAUTHENTICATED = orjson.dumps({"error": {"message": "User Not Authenticated",
                                          "detail": "Required to provide Auth information"}, "status": "failure"})


def _eq(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def denied() -> Response:
    return Response(DENIED, status_code=401, media_type="application/json")


def unauthenticated() -> Response:
    return Response(UNAUTHENTICATED, status_code=401, media_type="application/json",
                    headers={"WWW-Authenticate": 'Basic realm="Service-now"'})


class OAuthEndpoint:
    """The token endpoint. Token requests made while a token is still valid return that token (reference §3.2),
    so the issued tokens are remembered per (client, user, grant)."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self._current: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    async def __call__(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        if ctype != "application/x-www-form-urlencoded":
            # "A content-type of application/json results in an unspecified error": the generic failure here.
            return denied()
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        creds = self.world.config.credentials
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = _basic(request)
        if basic and client_id is None:  # client_secret_basic, as requests-oauthlib may send it
            client_id, client_secret = basic
        if not (_eq(client_id, creds.snow_client_id) and _eq(client_secret, creds.snow_client_secret)):
            return denied()
        grant = form.get("grant_type", "")
        state = self.world.snow
        if grant == "password":
            if not (_eq(form.get("username"), creds.snow_username) and _eq(form.get("password"), creds.snow_password)):
                return denied()
            return self._grant(creds.snow_username, "password", with_refresh=True)
        if grant == "refresh_token":
            issued = self.world.tokens.validate(form.get("refresh_token", ""), issuer=REFRESH_ISSUER)
            if issued is None or issued.audience != creds.snow_client_id:
                return denied()
            return self._grant(issued.subject, "password", with_refresh=True, refresh=issued.token)
        if grant == "client_credentials":
            if not state.settings.client_credentials_enabled:
                return denied()
            # Requests run as the OAuth Application User; the sandbox uses the integration user. No refresh token
            # (undocumented; RFC 6749 says a client-credentials response should not carry one).
            return self._grant(creds.snow_username, "client_credentials", with_refresh=False)
        return denied()

    def _grant(self, user: str, grant: str, *, with_refresh: bool, refresh: str | None = None) -> Response:
        world = self.world
        creds = world.config.credentials
        lifetime = world.token_lifetime("snow", world.config.snow_token_lifetime_s)
        key = (creds.snow_client_id, user, grant)
        with self._lock:
            current = self._current.get(key)
            access = world.tokens.validate(current[0], issuer=ISSUER) if current else None
            if access is None:
                access = world.tokens.issue(issuer=ISSUER, audience=creds.snow_client_id, subject=user,
                                            lifetime_s=lifetime)
            if with_refresh and refresh is None:
                refresh_issued = world.tokens.validate(current[1], issuer=REFRESH_ISSUER) if current else None
                if refresh_issued is None:
                    refresh_issued = world.tokens.issue(issuer=REFRESH_ISSUER, audience=creds.snow_client_id,
                                                        subject=user, lifetime_s=REFRESH_LIFETIME_S)
                refresh = refresh_issued.token
            self._current[key] = (access.token, refresh or "")
        expires_in = max(1, int(access.expires_at - world.tokens._clock()))
        body: dict[str, Any] = {"access_token": access.token, "scope": "useraccount", "token_type": "Bearer",
                                "expires_in": expires_in}
        if with_refresh and refresh:
            body["refresh_token"] = refresh
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def authenticate(request: Request, world: Any) -> str | None:
    """The calling user, from a Bearer token issued by this instance or Basic credentials; None when neither."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        issued = world.tokens.validate(header[7:].strip(), issuer=ISSUER)
        return issued.subject if issued else None
    basic = _basic(request)
    creds = world.config.credentials
    if basic and _eq(basic[0], creds.snow_username) and _eq(basic[1], creds.snow_password):
        return basic[0]
    return None
