"""The encrypted credential store and `d365-snow credentials` (DESIGN.md §8)."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.credentials import CredentialStore, CredentialStoreError


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_modes_and_ciphertext(tmp_path):
    store = CredentialStore(tmp_path)
    store.save({"snow_password": "hunter2-secret"})
    assert mode(store.path) == 0o600 and mode(store.key_file) == 0o600
    assert b"hunter2-secret" not in store.path.read_bytes()
    assert CredentialStore(tmp_path).load() == {"snow_password": "hunter2-secret"}


@pytest.mark.parametrize("key", [Fernet.generate_key().decode(), "a long passphrase"], ids=["fernet key", "passphrase"])
def test_master_key_from_env_and_wrong_key(tmp_path, key):
    CredentialStore(tmp_path, key).save({"d365_client_secret": "v"})
    assert not (tmp_path / "master.key").exists()
    assert CredentialStore(tmp_path, key).load() == {"d365_client_secret": "v"}
    with pytest.raises(CredentialStoreError, match="could not be decrypted") as info:
        CredentialStore(tmp_path, "another key").load()
    assert key not in str(info.value)


def test_rotate_key_file_and_to_passphrase(tmp_path):
    store = CredentialStore(tmp_path)
    store.save({"snow_password": "x1"})
    old_key = store.key_file.read_bytes()
    store.rotate()
    assert store.key_file.read_bytes() != old_key and mode(store.key_file) == 0o600
    assert CredentialStore(tmp_path).load() == {"snow_password": "x1"}
    store.rotate("new passphrase")
    assert CredentialStore(tmp_path, "new passphrase").load() == {"snow_password": "x1"}
    with pytest.raises(CredentialStoreError):
        CredentialStore(tmp_path, "new passphrase").rotate()


def test_cli_set_show_rotate_never_print_secrets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"D365SNOW_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    r = runner.invoke(app, ["credentials", "set", "d365_client_secret", "D365SNOW_SNOW_PASSWORD", "--stdin"],
                      input="sec-one-111\nsec-two-222\n", env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["credentials", "set", "snow_client_secret"], input="sec-3-333\nsec-3-333\n", env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["credentials", "show"], env={**env, "D365SNOW_SNOW_PASSWORD": "env-pw-444"})
    assert r.exit_code == 0
    assert "credential store" in r.output and "environment" in r.output
    r2 = runner.invoke(app, ["credentials", "rotate"], env=env)
    assert r2.exit_code == 0, r2.output
    for out in (r.output, r2.output):
        for secret in ("sec-one-111", "sec-two-222", "sec-3-333", "env-pw-444"):
            assert secret not in out
    assert CredentialStore(tmp_path / "home").load()["snow_password"] == "sec-two-222"
    bad = runner.invoke(app, ["credentials", "show"], env={**env, "D365SNOW_MASTER_KEY": "wrong"})
    assert bad.exit_code == 1 and "could not be decrypted" in bad.output
