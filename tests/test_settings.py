"""The configuration contract of DESIGN.md §3."""

from __future__ import annotations

import pytest

from d365_snow_assets.credentials import CredentialStore
from d365_snow_assets.settings import ConnectorSettings, SettingsError, load_settings

BASE = {"D365SNOW_D365_URL": "https://contoso.operations.dynamics.com/", "D365SNOW_D365_TENANT_ID": "contoso.com",
        "D365SNOW_D365_CLIENT_ID": "cid", "D365SNOW_D365_CLIENT_SECRET": "csecret",
        "D365SNOW_LEGAL_ENTITIES": " USMF, demf,,usmf ", "D365SNOW_SNOW_URL": "https://acme.service-now.com",
        "D365SNOW_SNOW_USERNAME": "u", "D365SNOW_SNOW_PASSWORD": "p"}


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("D365SNOW_HOME", str(tmp_path / "home"))
    for k, v in BASE.items():
        monkeypatch.setenv(k, v)
    return monkeypatch


def test_defaults_and_derived_values(env):
    s = load_settings()
    assert s.legal_entities == ["usmf", "demf"]
    assert s.d365_url == "https://contoso.operations.dynamics.com"
    assert s.d365_scope == "https://contoso.operations.dynamics.com/.default"
    assert s.d365_authority == "https://login.microsoftonline.com"
    assert s.d365_authority_url == "https://login.microsoftonline.com/contoso.com"
    assert s.snow_auth == "auto" and s.erp_source == "D365FO"
    assert "csecret" not in repr(s)


def test_data_suffix_is_dropped(env):
    env.setenv("D365SNOW_D365_URL", "https://contoso.operations.dynamics.com/data")
    assert load_settings().d365_odata_root == "https://contoso.operations.dynamics.com/data"


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("D365SNOW_D365_AUTHORITY", "http://login.example.com", "D365SNOW_D365_AUTHORITY"),
    ("D365SNOW_SNOW_URL", "acme.service-now.com", "D365SNOW_SNOW_URL"),
    ("D365SNOW_SNOW_AUTH", "kerberos", "D365SNOW_SNOW_AUTH"),
    ("D365SNOW_LEGAL_ENTITIES", "us mf", "D365SNOW_LEGAL_ENTITIES"),
    ("D365SNOW_CA_BUNDLE", "/nonexistent.pem", "D365SNOW_CA_BUNDLE"),
])
def test_invalid_values_name_the_variable(env, name, value, needle):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_values_name_the_variable(env):
    env.delenv("D365SNOW_D365_TENANT_ID")
    with pytest.raises(SettingsError, match="D365SNOW_D365_TENANT_ID is not set"):
        load_settings()
    assert load_settings(require=["snow"]).snow_url
    env.delenv("D365SNOW_SNOW_PASSWORD")
    with pytest.raises(SettingsError, match="D365SNOW_SNOW_AUTH=auto needs"):
        load_settings(require=["snow"])


def test_toml_file_and_env_priority(env, tmp_path):
    (tmp_path / "d365snow.toml").write_text('erp_source = "AX"\nlegal_entities = ["GBSI"]\n')
    env.delenv("D365SNOW_LEGAL_ENTITIES")
    s = load_settings()
    assert s.erp_source == "AX" and s.legal_entities == ["gbsi"]
    env.setenv("D365SNOW_ERP_SOURCE", "D365")
    assert load_settings().erp_source == "D365"


def test_credential_store_fills_unset_secrets_and_env_wins(env, tmp_path):
    env.delenv("D365SNOW_D365_CLIENT_SECRET")
    store = CredentialStore(tmp_path / "home")
    store.save({"d365_client_secret": "from-store", "snow_password": "store-pw"})
    s = load_settings()
    assert s.secret("d365_client_secret") == "from-store"
    assert s.secret("snow_password") == "p"  # the environment wins
    assert s.sources["d365_client_secret"] == "store"
    assert isinstance(s, ConnectorSettings)
