"""Connector configuration: the contract of DESIGN.md §3.

Sources, highest priority first: ``D365SNOW_*`` environment variables, ``d365snow.toml`` in the working directory
(keys are the variable names without the prefix, lower-case, e.g. ``d365_url = "https://…"``), the encrypted
credential store (secrets and client ids only; DESIGN.md §8), then the defaults below.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .redaction import register_secrets

ENV_PREFIX = "D365SNOW_"
TOML_FILE = "d365snow.toml"
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

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, toml_file=TOML_FILE, extra="ignore",
                                      case_sensitive=False, validate_default=True)

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

    # Where each storable field came from ("env", "toml", "store"); filled by load_settings.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

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

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def require(self, name: str) -> Any:
        value = getattr(self, name)
        if value in (None, "", []):
            where = f"the environment, {TOML_FILE} or `d365-snow credentials set`" if name in STORABLE_FIELDS \
                else f"the environment or {TOML_FILE}"
            raise SettingsError(f"{env_name(name)} is not set; set it in {where}.")
        return value

    def check(self, systems: Iterable[str] = ("d365", "snow")) -> ConnectorSettings:
        """Raise :class:`SettingsError` for the first setting a connection to ``systems`` needs but lacks."""
        systems = set(systems)
        if "d365" in systems:
            for name in D365_REQUIRED:
                self.require(name)
        if "snow" in systems:
            for name in SNOW_REQUIRED:
                self.require(name)
            if self.snow_auth == "oauth":
                self.require("snow_client_id")
                self.require("snow_client_secret")
            elif self.snow_auth == "basic":
                self.require("snow_username")
                self.require("snow_password")
            elif not (self.snow_client_id and self.snow_client_secret) and not (
                    self.snow_username and self.snow_password):
                raise SettingsError("D365SNOW_SNOW_AUTH=auto needs D365SNOW_SNOW_CLIENT_ID and "
                                    "D365SNOW_SNOW_CLIENT_SECRET, or D365SNOW_SNOW_USERNAME and "
                                    "D365SNOW_SNOW_PASSWORD; neither pair is set.")
        return self

    def secret_values(self) -> list[str]:
        return [v for v in (self.secret(n) for n in (*SECRET_FIELDS, "master_key", "events_secret")) if v]


def _error_sentence(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err.get("loc") else ""
    message = str(err.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    if field and env_name(field) not in message:
        message = f"{env_name(field)}: {message}"
    return message.rstrip(".") + "."


def load_settings(*, require: Iterable[str] | None = ("d365", "snow"), use_store: bool = True,
                  **overrides: Any) -> ConnectorSettings:
    """Read the settings; with ``require`` (systems), fail with one clear sentence when something is missing.

    Secrets (and client ids / user name) not set in the environment or the TOML file are taken from the encrypted
    credential store under ``D365SNOW_HOME`` when it exists. Every secret is registered for log redaction.
    """
    try:
        settings = ConnectorSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_error_sentence(exc)) from None
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
                    raise SettingsError(_error_sentence(exc)) from None
                sources.update(dict.fromkeys(fill, "store"))
    settings._sources = sources
    register_secrets(settings.secret_values())
    if require:
        settings.check(require)
    return settings
