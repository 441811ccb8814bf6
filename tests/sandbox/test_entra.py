"""The fake Entra ID against msal 1.39 unchanged (reference/d365.md §1.2)."""

from __future__ import annotations

import ssl
import time

import httpx
import msal
import requests

from d365_snow_assets.sandbox.faults import FaultProfile


def _app(server, secret=None, client_id=None):
    creds = server.world.config.credentials
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (reference §1.2 gotcha)
    session.verify = str(server.tls.ca_pem)
    return msal.ConfidentialClientApplication(
        client_id or creds.d365_client_id, client_credential=secret or creds.d365_client_secret,
        authority=f"{server.entra_url}/{creds.tenant_id}", instance_discovery=False, http_client=session)


def _get(server, token, path="/data/VendorsV2?$top=1"):
    return httpx.get(server.d365_url + path, verify=ssl.create_default_context(cafile=str(server.tls.ca_pem)),
                     headers={"Authorization": f"Bearer {token}"})


def test_msal_token_reads_fo(sandbox_server):
    result = _app(sandbox_server).acquire_token_for_client([f"{sandbox_server.d365_url}/.default"])
    assert result["token_type"] == "Bearer" and result["token_source"] == "identity_provider"
    resp = _get(sandbox_server, result["access_token"])
    assert resp.status_code == 200 and len(resp.json()["value"]) == 1


def test_bad_secret_gives_entra_error(sandbox_server):
    result = _app(sandbox_server, secret="wrong").acquire_token_for_client([f"{sandbox_server.d365_url}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215")
    assert result["error_codes"] == [7000215]


def test_unknown_client_and_bad_scope(sandbox_server):
    creds = sandbox_server.world.config.credentials
    url = f"{sandbox_server.entra_url}/{creds.tenant_id}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x",
            "scope": f"{sandbox_server.d365_url}/.default"}
    resp = httpx.post(url, data=form, verify=ssl.create_default_context(cafile=str(sandbox_server.tls.ca_pem)))
    assert resp.status_code == 400 and resp.json()["error"] == "unauthorized_client"
    form.update(client_id=creds.d365_client_id, client_secret=creds.d365_client_secret,
                scope=f"{sandbox_server.d365_url}/user.read")
    resp = httpx.post(url, data=form, verify=ssl.create_default_context(cafile=str(sandbox_server.tls.ca_pem)))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"


def test_token_for_other_audience_is_rejected(sandbox_server):
    creds = sandbox_server.world.config.credentials
    token = sandbox_server.world.tokens.issue(issuer="entra", audience="https://other.example", subject=creds.
                                              d365_client_id, lifetime_s=600).token
    assert _get(sandbox_server, token).status_code == 401
    verify = ssl.create_default_context(cafile=str(sandbox_server.tls.ca_pem))
    assert httpx.get(sandbox_server.d365_url + "/data/VendorsV2", verify=verify).status_code == 401


def test_expired_token_gives_401(sandbox_server):
    sandbox_server.set_faults("entra", FaultProfile(token_lifetime_s=1))
    try:
        result = _app(sandbox_server).acquire_token_for_client([f"{sandbox_server.d365_url}/.default"])
        assert result["expires_in"] == 1
        assert _get(sandbox_server, result["access_token"]).status_code == 200
        time.sleep(1.2)
        assert _get(sandbox_server, result["access_token"]).status_code == 401
    finally:
        sandbox_server.clear_faults()
    token = _app(sandbox_server).acquire_token_for_client([f"{sandbox_server.d365_url}/.default"])["access_token"]
    assert _get(sandbox_server, token).status_code == 200
    sandbox_server.world.tokens.expire_all("entra")
    assert _get(sandbox_server, token).status_code == 401
