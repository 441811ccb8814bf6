"""Configuration problems end every command with exit 2 and one sentence (or a JSON error), never a traceback."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app

# Enough settings that only the problem under test is wrong; no command below reaches a network.
SETTINGS = {"D365SNOW_D365_URL": "https://contoso.operations.dynamics.com", "D365SNOW_D365_TENANT_ID": "contoso.com",
            "D365SNOW_D365_CLIENT_ID": "cid", "D365SNOW_D365_CLIENT_SECRET": "csecret",
            "D365SNOW_LEGAL_ENTITIES": "usmf", "D365SNOW_SNOW_URL": "https://acme.service-now.com",
            "D365SNOW_SNOW_USERNAME": "u", "D365SNOW_SNOW_PASSWORD": "p"}
COMMANDS = [["sync"], ["plan"], ["ping"], ["trace", "D365FO|USMF|V1"], ["replay", "--all-failed"],
            ["credentials", "show"]]
JSON_COMMANDS = [c for c in COMMANDS]  # every one of them has --json


def _run(tmp_path, args, **env):
    return CliRunner().invoke(app, args, env={**SETTINGS, "D365SNOW_HOME": str(tmp_path / "home"), "COLUMNS": "200",
                                              **env}, catch_exceptions=False)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_toml_syntax_error_names_the_file_and_line_in_every_command(in_tmp, args):
    (in_tmp / "d365snow.toml").write_text('erp_source = "D365FO"\nlegal_entities = ["usmf",\nsnow_auth = "basic"\n')
    result = _run(in_tmp, args)
    assert result.exit_code == 2, result.output
    assert f"Configuration problem: {in_tmp / 'd365snow.toml'}, line 3, column" in result.stderr
    assert "not valid TOML" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("args", JSON_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_configuration_errors_are_json_under_json(in_tmp, args):
    (in_tmp / "d365snow.toml").write_text('d365url = "https://contoso.operations.dynamics.com"\n')
    result = _run(in_tmp, [*args, "--json"])
    assert result.exit_code == 2, result.output
    document = orjson.loads(result.stdout)
    assert document["ok"] is False and document["error"]["kind"] == "configuration"
    assert "`d365url` is not a setting; did you mean `d365_url`?" in document["error"]["message"]


def test_every_missing_setting_at_once_with_the_same_code_from_sync_and_ping(in_tmp):
    env = {name: "" for name in ("D365SNOW_D365_URL", "D365SNOW_D365_CLIENT_SECRET", "D365SNOW_SNOW_URL")}
    sync, ping = _run(in_tmp, ["sync"], **env), _run(in_tmp, ["ping"], **env)
    assert sync.exit_code == ping.exit_code == 2
    sentence = ("D365SNOW_D365_URL, D365SNOW_D365_CLIENT_SECRET and D365SNOW_SNOW_URL are not set; set them in the "
                "environment or d365snow.toml, or store them with `d365-snow credentials set`.")
    assert sentence in sync.stderr and sentence in ping.stderr


def test_d365snow_config_names_the_file_and_ping_says_which_it_read(in_tmp):
    missing = in_tmp / "etc" / "d365snow.toml"
    result = _run(in_tmp, ["ping"], D365SNOW_CONFIG=str(missing))
    assert result.exit_code == 2
    assert f"D365SNOW_CONFIG names {missing}, which does not exist" in result.stderr
    missing.parent.mkdir()
    missing.write_text('snow_url = "https://127.0.0.1:9"\nd365_url = "https://127.0.0.1:9"\n')
    result = _run(in_tmp, ["ping", "--json"], D365SNOW_CONFIG=str(missing), D365SNOW_SNOW_URL="",
                  D365SNOW_D365_URL="")
    document = orjson.loads(result.stdout)
    assert document["config"] == {"path": str(missing), "mapping": "default"}
    assert result.exit_code == 1 and document["counts"]["fail"] >= 2  # the checks ran with the file's URLs
    text = _run(in_tmp, ["ping"], D365SNOW_CONFIG=str(missing), D365SNOW_SNOW_URL="", D365SNOW_D365_URL="")
    assert f"Configuration: {missing}" in text.stdout


def test_a_bad_value_from_the_file_names_the_file(in_tmp):
    (in_tmp / "d365snow.toml").write_text('legal_entities = "us mf"\n')
    result = _run(in_tmp, ["sync"], D365SNOW_LEGAL_ENTITIES="")
    assert result.exit_code == 2
    flat = " ".join(result.stderr.split())
    assert "D365SNOW_LEGAL_ENTITIES holds 'us mf'" in flat and f"(`legal_entities` in {in_tmp / 'd365snow.toml'})" \
        in flat
