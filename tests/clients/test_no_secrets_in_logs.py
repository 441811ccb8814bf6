"""Secrets and tokens never reach logs or exception messages (DESIGN.md §8)."""

from __future__ import annotations

import logging

import pytest

from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.clients.errors import ConnectorError
from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.redaction import install_redaction, redact, register_secrets
from d365_snow_assets.sandbox.faults import FaultProfile

from .conftest import settings_for


def test_redact_masks_known_secrets_and_token_shapes():
    register_secrets(["s3cr3t-value"])
    text = redact("client_secret=abc&x=1 Authorization: Bearer eyJa.bbbbbbb.ccccccc s3cr3t-value")
    assert "s3cr3t-value" not in text and "abc" not in text and "eyJa" not in text


def test_a_faulty_run_logs_no_secret(server, fake_sleep, caplog):
    install_redaction()
    caplog.set_level(logging.DEBUG)
    creds = server.world.config.credentials
    secrets = [creds.d365_client_secret, creds.snow_client_secret, creds.snow_password]
    tokens: list[str] = []
    errors: list[str] = []
    server.set_faults("d365", FaultProfile(share_429=0.2, share_5xx=0.2, retry_after_s=1, seed=9))
    server.set_faults("snow", FaultProfile(share_429=0.2, share_reset=0.1, seed=9))
    with D365Client(settings_for(server), sleep=fake_sleep) as d365, \
            ServiceNowClient(settings_for(server), sleep=fake_sleep) as snow:
        tokens.append(d365.token())
        list(d365.iter_pages("VendorsV2", legal_entity="usmf"))
        server.world.tokens.expire_all()
        list(d365.iter_pages("MainAccounts"))
        tokens.append(d365.token())
        snow.get_page("sn_spend_intg_outbound_invoice", "", limit=3)
        tokens.append(snow.auth.auth_headers()["Authorization"][7:])
        server.world.snow.set_switches(client_credentials_enabled=False)
        server.world.tokens.expire_all("snow")
        snow.get_page("sn_spend_intg_outbound_invoice", "", limit=3)  # falls back to basic auth
    server.world.snow.reset()
    for bad in ({"d365_client_secret": "wrong-d365-secret-123"}, {"snow_auth": "basic", "snow_password": "pw-wrong-9"}):
        secrets += [v for k, v in bad.items() if k != "snow_auth"]
        with pytest.raises(ConnectorError) as info:
            s = settings_for(server, **bad)
            if "d365_client_secret" in bad:
                D365Client(s).token()
            else:
                ServiceNowClient(s).get_page("sn_spend_intg_outbound_invoice", "", limit=1)
        errors.append(str(info.value))
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert caplog.records  # the run did log (retries, refreshes, fallback)
    for value in secrets + tokens:
        assert value not in logged
        for message in errors:
            assert value not in message
