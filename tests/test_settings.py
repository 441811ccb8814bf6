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


def test_toml_syntax_error_names_the_file_and_line(env, tmp_path):
    (tmp_path / "d365snow.toml").write_text('erp_source = "AX"\nlegal_entities = "usmf\n')
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'd365snow.toml'}, line 2, column ")
    assert "not valid TOML" in message and "\n" not in message


def test_unknown_keys_get_the_nearest_valid_name(env, tmp_path):
    (tmp_path / "d365snow.toml").write_text('d365url = "https://x.example.com"\nD365SNOW_SNOW_URL = "https://y"\n'
                                            'colour = "blue"\n[mapping.sn_fcms_intg_imp_supplier]\nname = "X"\n')
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "`d365url` is not a setting; did you mean `d365_url`?" in message
    assert "`d365snow_snow_url` is not a setting; did you mean `snow_url`?" in message
    assert "`colour` is not a setting (" in message
    assert "mapping" not in message  # [mapping] belongs to the mapping module, not to the settings


def test_every_missing_setting_is_named_at_once(env):
    for name in ("D365SNOW_D365_URL", "D365SNOW_D365_CLIENT_SECRET", "D365SNOW_SNOW_URL", "D365SNOW_SNOW_PASSWORD"):
        env.delenv(name)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("D365SNOW_D365_URL, D365SNOW_D365_CLIENT_SECRET and D365SNOW_SNOW_URL are not set; "
                              "set them in the environment or d365snow.toml, or store them with `d365-snow "
                              "credentials set`.")
    assert "D365SNOW_SNOW_AUTH=auto needs" in message


def test_invalid_values_from_the_file_name_the_file_and_come_together(env, tmp_path):
    env.delenv("D365SNOW_LEGAL_ENTITIES")
    (tmp_path / "d365snow.toml").write_text('legal_entities = "us mf"\nd365_authority = "http://login.example"\n')
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "D365SNOW_LEGAL_ENTITIES holds 'us mf'" in message and "D365SNOW_D365_AUTHORITY" in message
    assert f"(`legal_entities` in {tmp_path / 'd365snow.toml'})" in message


def test_d365snow_config_names_the_file_every_process_reads(env, tmp_path):
    (tmp_path / "d365snow.toml").write_text('erp_source = "CWD"\n')
    shared = tmp_path / "etc" / "connector.toml"
    shared.parent.mkdir()
    shared.write_text('erp_source = "SHARED"\n[mapping.sn_fcms_intg_imp_supplier]\nname = "VendorSearchName"\n')
    default = load_settings()
    assert default.erp_source == "CWD" and default.run_tags() == {
        "d365snow/config": str(tmp_path / "d365snow.toml"), "d365snow/mapping": "default"}
    env.setenv("D365SNOW_CONFIG", str(shared))
    chosen = load_settings()
    assert chosen.erp_source == "SHARED"
    tags = chosen.run_tags()
    assert tags["d365snow/config"] == str(shared) and len(tags["d365snow/mapping"]) == 12
    shared.write_text('erp_source = "SHARED"\n[mapping.sn_fcms_intg_imp_supplier]\nname = "VendorName"\n')
    assert load_settings().run_tags()["d365snow/mapping"] != tags["d365snow/mapping"]
    env.setenv("D365SNOW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match=r"D365SNOW_CONFIG names .*missing\.toml, which does not exist"):
        load_settings()
