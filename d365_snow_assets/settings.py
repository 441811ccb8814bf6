"""Connector configuration: the contract of DESIGN.md §3.

Sources, highest priority first: ``D365SNOW_*`` environment variables, the configuration file (``D365SNOW_CONFIG``,
default ``./d365snow.toml``; keys are the variable names without the prefix, lower-case, e.g.
``d365_url = "https://…"``), the encrypted credential store (secrets and client ids only; DESIGN.md §8), then the
defaults below. Every process of a deployment reads the same file through ``D365SNOW_CONFIG``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .redaction import register_secrets

ENV_PREFIX = "D365SNOW_"
TOML_FILE = "d365snow.toml"
CONFIG_ENV = "D365SNOW_CONFIG"
# Tables of the configuration file that are not settings: each is read and checked by its own module.
_OTHER_TABLES = frozenset({"mapping"})
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"

SECRET_FIELDS = ("d365_client_secret", "snow_client_secret", "snow_password")
STORABLE_FIELDS = ("d365_client_id", "d365_client_secret", "snow_client_id", "snow_client_secret", "snow_username",
                   "snow_password")
"""What ``d365-snow credentials set`` may store: both credential sets (DESIGN.md §8)."""

D365_REQUIRED = ("d365_url", "d365_tenant_id", "d365_client_id", "d365_client_secret", "legal_entities")
SNOW_REQUIRED = ("snow_url",)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one sentence naming the variable."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def config_path() -> Path:
    """The configuration file every process reads: ``D365SNOW_CONFIG``, else ``./d365snow.toml``."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    return Path(value) if value else Path(TOML_FILE)


@dataclass(frozen=True)
class ConfigFile:
    """What one configuration file holds: the settings it sets and the tables other modules read."""

    path: Path
    exists: bool
    values: dict[str, Any] = field(default_factory=dict)
    mapping: dict[str, Any] = field(default_factory=dict)

    @property
    def mapping_hash(self) -> str:
        """A short hash of the ``[mapping]`` table (``default`` without one): which mapping a run pushed with."""
        if not self.mapping:
            return "default"
        return hashlib.sha256(orjson.dumps(self.mapping, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def read_config_file(path: Path | None = None) -> ConfigFile:
    """Parse and check the configuration file (``path``, else :func:`config_path`).

    Raises :class:`SettingsError` with one sentence naming the file for a TOML syntax error (with its line and
    column), for keys that are not settings (with the nearest valid name), and for a ``D365SNOW_CONFIG`` that names
    a file that does not exist. An absent default file is no error: the environment may hold everything.
    """
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV, "").strip())
    path = (path or config_path()).expanduser().absolute()
    try:
        stat = path.stat()
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"{CONFIG_ENV} names {path}, which does not exist; create it or point "
                                f"{CONFIG_ENV} at the connector's d365snow.toml.") from None
        return ConfigFile(path, exists=False)
    except OSError as exc:
        raise SettingsError(f"The configuration file {path} could not be read ({exc.strerror}).") from None
    return _parse_config_file(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _parse_config_file(path: Path, mtime_ns: int, size: int) -> ConfigFile:
    """Parsed once per file version (mtime and size are the cache key): runs and sensors read it often."""
    del mtime_ns, size
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends "(at line L, column C)"; lead with the place so the sentence reads naturally.
        reason, _, where = str(exc).partition(" (at ")
        place = f", {where.rstrip(')')}" if where else ""
        raise SettingsError(f"{path}{place}: this is not valid TOML ({reason}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"The configuration file {path} could not be read ({exc.__class__.__name__}).") from None
    values = {key.lower(): value for key, value in data.items() if key.lower() not in _OTHER_TABLES}
    unknown = [key for key in values if key not in FILE_KEYS]
    if unknown:
        raise SettingsError(f"{path}: {_unknown_keys(unknown)}")
    mapping = data.get("mapping", {})
    return ConfigFile(path, exists=True, values=values, mapping=mapping if isinstance(mapping, dict) else {})


def _unknown_keys(keys: list[str]) -> str:
    """One sentence per key with a near valid name (difflib), one for all keys without."""
    sentences, lost = [], []
    for key in keys:
        bare = key.removeprefix(ENV_PREFIX.lower())  # someone pasted the variable name
        guess = bare if bare in FILE_KEYS else next(iter(difflib.get_close_matches(bare, sorted(FILE_KEYS), n=1)),
                                                    None)
        if guess:
            sentences.append(f"`{key}` is not a setting; did you mean `{guess}`?")
        else:
            lost.append(f"`{key}`")
    if lost:
        listed = lost[0] if len(lost) == 1 else f"{', '.join(lost[:-1])} and {lost[-1]}"
        sentences.append(f"{listed} {'is not a setting' if len(lost) == 1 else 'are not settings'} (settings are "
                         f"the D365SNOW_* variables in lower case without the prefix, e.g. `d365_url`).")
    return " ".join(sentences)


def _https_origin(value: str, name: str, *, allow_path: bool = False) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{env_name(name)} must be an https URL such as https://host.example.com (got {value!r})")
    if parts.query or parts.fragment or (parts.path and not allow_path):
        raise ValueError(f"{env_name(name)} must be the bare https origin, without a path or query (got {value!r})")
    return value


class ConnectorSettings(BaseSettings):
    """All ``D365SNOW_*`` settings. Secrets are :class:`SecretStr` and never printed."""

    # An exported-but-empty variable means "not set": the file's value (or the default) applies.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False,
                                      validate_default=True, env_ignore_empty=True)

    d365_url: str | None = None
    d365_tenant_id: str | None = None
    d365_authority: str = MICROSOFT_AUTHORITY
    d365_client_id: str | None = None
    d365_client_secret: SecretStr | None = None
    legal_entities: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Most F&O reads one client has in flight; adaptive below it (DESIGN.md §3, §10).
    d365_max_concurrency: int = Field(default=4, ge=1)
    snow_url: str | None = None
    snow_auth: Literal["auto", "oauth", "basic"] = "auto"
    snow_client_id: str | None = None
    snow_client_secret: SecretStr | None = None
    snow_username: str | None = None
    snow_password: SecretStr | None = None
    erp_source: str = "D365FO"
    ca_bundle: Path | None = None
    home: Path = Path(".d365snow")
    master_key: SecretStr | None = None
    # The path segment F&O's HTTPS business-event endpoint URL carries (`d365-snow events serve`, DESIGN.md §8).
    events_secret: SecretStr | None = None
    # The configuration file (D365SNOW_CONFIG; None = ./d365snow.toml). From the environment, never the file itself.
    config: Path | None = None

    # Where each storable field came from ("env", "toml", "store"); filled by load_settings.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = getattr(init_settings, "init_kwargs", {}).get("config")
        file = read_config_file(Path(given) if given else None)
        return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file.values))

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, values: Any) -> Any:
        # An exported-but-empty variable (D365SNOW_SNOW_AUTH=) means "not set": the default applies.
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        return values

    @field_validator("d365_url", mode="before")
    @classmethod
    def _d365_url(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        value = str(value).strip().rstrip("/")
        if value.lower().endswith("/data"):  # a common slip: the OData root instead of the environment URL
            value = value[: -len("/data")]
        return _https_origin(value, "d365_url")

    @field_validator("snow_url", mode="before")
    @classmethod
    def _snow_url(cls, value: Any) -> Any:
        return None if value in (None, "") else _https_origin(str(value), "snow_url")

    @field_validator("d365_authority", mode="before")
    @classmethod
    def _authority(cls, value: Any) -> Any:
        # msal needs an https authority (reference/d365.md §1.2); a sovereign cloud or a proxy may add a path.
        return _https_origin(str(value or MICROSOFT_AUTHORITY), "d365_authority", allow_path=True)

    @field_validator("legal_entities", mode="before")
    @classmethod
    def _legal_entities(cls, value: Any) -> list[str]:
        items = value.split(",") if isinstance(value, str) else list(value or [])
        out: list[str] = []
        for item in items:
            code = str(item).strip().lower()  # dataAreaIds compare case-insensitively (reference/d365.md §2)
            if not code:
                continue
            if not code.replace("_", "").replace("-", "").isalnum() or len(code) > 8:
                raise ValueError(f"D365SNOW_LEGAL_ENTITIES holds {item!r}, which is not a legal entity code "
                                 f"(dataAreaId, up to 8 letters or digits)")
            if code not in out:
                out.append(code)
        return out

    @field_validator("d365_tenant_id", "d365_client_id", "snow_client_id", "snow_username", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else (value.strip() if isinstance(value, str)
                                                                          else value)

    @field_validator("d365_client_secret", "snow_client_secret", "snow_password", "master_key", "events_secret",
                     mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if value in (None, "") else value

    @field_validator("ca_bundle", mode="after")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"D365SNOW_CA_BUNDLE points to {str(value)!r}, which is not a readable file")
        return value

    @field_validator("erp_source", mode="after")
    @classmethod
    def _erp_source(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("D365SNOW_ERP_SOURCE must not be empty")
        return value.strip()

    # -- derived values -------------------------------------------------------------------------------------
    @property
    def d365_scope(self) -> str:
        """``<F&O origin>/.default``: built from the environment URL, never the ``/data`` URL (reference §1.1)."""
        return f"{self.require('d365_url')}/.default"

    @property
    def d365_odata_root(self) -> str:
        return f"{self.require('d365_url')}/data"

    @property
    def d365_authority_url(self) -> str:
        return f"{self.d365_authority}/{self.require('d365_tenant_id')}"

    @property
    def sources(self) -> dict[str, str]:
        return dict(self._sources)

    @property
    def config_file(self) -> ConfigFile:
        """The configuration file these settings were read from (it may not exist)."""
        return read_config_file(self.config)

    def run_tags(self) -> dict[str, str]:
        """Dagster run tags saying which configuration a run used: the file and its ``[mapping]`` table's hash."""
        file = self.config_file
        return {"d365snow/config": str(file.path) if file.exists else "none", "d365snow/mapping": file.mapping_hash}

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def _where(self, names: Iterable[str], it: str) -> str:
        file = self.config.name if self.config else TOML_FILE
        if any(name in STORABLE_FIELDS for name in names):
            return f"the environment or {file}, or store {it} with `d365-snow credentials set`"
        return f"the environment or {file}"

    def require(self, name: str) -> Any:
        value = getattr(self, name)
        if value in (None, "", []):
            raise SettingsError(f"{env_name(name)} is not set; set it in {self._where([name], 'it')}.")
        return value

    def problems(self, systems: Iterable[str] = ("d365", "snow")) -> list[str]:
        """Every setting a connection to ``systems`` needs but lacks, as sentences (empty when complete)."""
        systems = set(systems)
        needed: list[str] = []
        if "d365" in systems:
            needed += D365_REQUIRED
        if "snow" in systems:
            needed += SNOW_REQUIRED
            if self.snow_auth == "oauth":
                needed += ["snow_client_id", "snow_client_secret"]
            elif self.snow_auth == "basic":
                needed += ["snow_username", "snow_password"]
        missing = [name for name in needed if getattr(self, name) in (None, "", [])]
        out = []
        if missing:
            names = [env_name(n) for n in missing]
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            verb, it = ("is", "it") if len(names) == 1 else ("are", "them")
            out.append(f"{listed} {verb} not set; set {it} in {self._where(missing, it)}.")
        if "snow" in systems and self.snow_auth == "auto" and not (
                self.snow_client_id and self.snow_client_secret) and not (self.snow_username and self.snow_password):
            out.append("D365SNOW_SNOW_AUTH=auto needs D365SNOW_SNOW_CLIENT_ID and D365SNOW_SNOW_CLIENT_SECRET, or "
                       "D365SNOW_SNOW_USERNAME and D365SNOW_SNOW_PASSWORD; neither pair is set.")
        return out

    def check(self, systems: Iterable[str] = ("d365", "snow")) -> ConnectorSettings:
        """Raise :class:`SettingsError` naming every setting a connection to ``systems`` needs but lacks."""
        problems = self.problems(systems)
        if problems:
            raise SettingsError(" ".join(problems))
        return self

    def secret_values(self) -> list[str]:
        return [v for v in (self.secret(n) for n in (*SECRET_FIELDS, "master_key", "events_secret")) if v]


FILE_KEYS = frozenset(ConnectorSettings.model_fields) - {"config"}
"""The keys a configuration file may set (besides the tables of ``_OTHER_TABLES``)."""


def _error_sentence(exc: ValidationError, overrides: dict[str, Any]) -> str:
    """Every invalid value at once, each naming its variable (and the file, when the value came from it)."""
    given = overrides.get("config")
    file = read_config_file(Path(given) if given else None)
    sentences = []
    for err in exc.errors():
        field_name = str(err["loc"][0]) if err.get("loc") else ""
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ").rstrip(".")
        if field_name and env_name(field_name) not in message:
            message = f"{env_name(field_name)}: {message}"
        if field_name in file.values and not os.environ.get(env_name(field_name)) and field_name not in overrides:
            message += f" (`{field_name}` in {file.path})"
        sentences.append(message + ".")
    return " ".join(dict.fromkeys(sentences))


def load_settings(*, require: Iterable[str] | None = ("d365", "snow"), use_store: bool = True,
                  **overrides: Any) -> ConnectorSettings:
    """Read the settings; with ``require`` (systems), fail with one clear sentence when something is missing.

    Secrets (and client ids / user name) not set in the environment or the TOML file are taken from the encrypted
    credential store under ``D365SNOW_HOME`` when it exists. Every secret is registered for log redaction.
    """
    try:
        settings = ConnectorSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_error_sentence(exc, overrides)) from None
    sources = {name: "env/toml" for name in STORABLE_FIELDS if getattr(settings, name) not in (None, "")}
    if use_store:
        from .credentials import CredentialStore, CredentialStoreError

        store = CredentialStore.for_settings(settings)
        if store.exists():
            try:
                stored = store.load()
            except CredentialStoreError as exc:
                raise SettingsError(str(exc)) from None
            fill = {k: v for k, v in stored.items() if k in STORABLE_FIELDS and k not in sources and v}
            if fill:
                try:
                    settings = ConnectorSettings(**{**overrides, **fill})
                except ValidationError as exc:
                    raise SettingsError(_error_sentence(exc, {**overrides, **fill})) from None
                sources.update(dict.fromkeys(fill, "store"))
    settings._sources = sources
    register_secrets(settings.secret_values())
    if require:
        settings.check(require)
    return settings
