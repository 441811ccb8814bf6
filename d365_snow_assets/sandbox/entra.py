"""The fake Microsoft Entra ID: OpenID configuration + v2 token endpoint for client credentials.

What msal 1.39 requests and needs is in reference/d365.md §1.2; error shapes in §1.1.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_IGNORED_SCOPES = {"openid", "profile", "offline_access"}


def _error(status: int, error: str, code: int, description: str) -> Response:
    """Entra's error body: error, error_description (with trace/correlation/timestamp), error_codes, … (§1.1)."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse({
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} "
                             f"Timestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}"}, status_code=status)


def build_entra_app(world: Any) -> Starlette:
    creds = world.config.credentials

    def tenant_ok(tenant: str) -> bool:
        return tenant.lower() == creds.tenant_id.lower()

    def unknown_tenant(tenant: str) -> Response:
        return _error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the "
                      "correct tenant ID and are signing into the correct cloud.")

    async def openid_configuration(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not tenant_ok(tenant):
            return unknown_tenant(tenant)
        base = str(request.base_url).rstrip("/")
        return JSONResponse({
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU", "cloud_instance_name": "microsoftonline.com",
        })

    async def token(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not tenant_ok(tenant):
            return unknown_tenant(tenant)
        # Parsed by hand: the body is urlencoded (§1.2) and python-multipart is not a dependency.
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                              keep_blank_values=True).items()}
        client_id = str(form.get("client_id") or "")
        secret = form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):  # client_secret_basic
            with contextlib.suppress(ValueError):
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        grant = form.get("grant_type")
        if grant != "client_credentials":
            return _error(400, "unsupported_grant_type", 70003,
                          f"The app requested an unsupported grant type '{grant}'.")
        if not client_id:
            return _error(400, "invalid_request", 900144,
                          "The request body must contain the following parameter: 'client_id'.")
        if client_id != creds.d365_client_id:
            # [INF] the unknown-application shape (AADSTS700016) as Entra documents it.
            return _error(400, "unauthorized_client", 700016,
                          f"Application with identifier '{client_id}' was not found in the directory "
                          f"'{creds.tenant_id}'. This can happen if the application has not been installed by the "
                          "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                          "your authentication request to the wrong tenant.")
        if not secret:
            return _error(401, "invalid_client", 7000218, "The request body must contain the following parameter: "
                          "'client_assertion' or 'client_secret'.")
        if secret != creds.d365_client_secret:
            return _error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being "
                          "sent in the request is the client secret value, not the client secret ID, for a secret "
                          f"added to app '{client_id}'.")
        scopes = [s for s in str(form.get("scope") or "").split() if s not in _IGNORED_SCOPES]
        resource = scopes[0] if len(scopes) == 1 else ""
        parts = urlsplit(resource)
        if not resource.endswith("/.default") or parts.scheme != "https" or not parts.netloc:
            return _error(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not "
                          "valid. Client credential flows must have a scope value with /.default suffixed to the "
                          "resource identifier (application ID URI).")
        audience = f"{parts.scheme}://{parts.netloc}"
        lifetime = world.token_lifetime("entra", world.config.d365_token_lifetime_s)
        issued = world.tokens.issue(issuer="entra", audience=audience, subject=client_id, lifetime_s=lifetime)
        return JSONResponse({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                             "access_token": issued.token})

    return Starlette(routes=[
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ])
