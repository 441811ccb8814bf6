"""Resources: the two systems and the warehouse, built from the connector settings (DESIGN.md §3).

Secrets are never resource fields (they would show in the Dagster UI's resource config): they come from the
environment or the encrypted credential store when a run starts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from ..clients.d365 import D365Client
from ..clients.errors import AuthError
from ..clients.servicenow import ServiceNowClient
from ..discovery import InstanceSchema, load_schema
from ..discovery.outbound import OutboundFields, resolve_outbound
from ..mapping.spec import TargetMapping
from ..paths import StatePaths
from ..settings import ConnectorSettings, load_settings
from ..sync.mass_change import RESOURCE_KEY, Acceptance
from ..sync.targets import load_mappings
from ..warehouse import Warehouse
from .io_manager import AtomicFilesystemIOManager


class _SettingsBacked(dg.ConfigurableResource):
    _settings: ConnectorSettings | None = PrivateAttr(default=None)

    @property
    def settings(self) -> ConnectorSettings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings


class WarehouseResource(_SettingsBacked):
    """The DuckDB file under ``D365SNOW_HOME``: F&O snapshots, pushed state, cursors and the audit store."""

    def open(self) -> Warehouse:
        return Warehouse(StatePaths(self.settings.home).ensure().warehouse)


class _ClientResource(_SettingsBacked):
    """One client per run process, created on first use and closed when the run's steps end."""

    _client: Any = PrivateAttr(default=None)

    def _create(self, settings: ConnectorSettings) -> Any:
        raise NotImplementedError

    def _cached(self) -> Any:
        if self._client is None:
            self._client = self._create(self.settings)
        return self._client

    def refused_credentials(self) -> AuthError | None:
        """Set once the service refused this run's credentials (its client then sends nothing more)."""
        return self._client.refused_credentials if self._client is not None else None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()


class D365Resource(_ClientResource):
    """Dynamics 365 F&O OData, authenticated through Entra ID client credentials (msal)."""

    def _create(self, settings: ConnectorSettings) -> D365Client:
        return D365Client(settings)

    def client(self) -> D365Client:
        return self._cached()


class ServiceNowResource(_ClientResource):
    """ServiceNow Table and Import Set APIs (OAuth client credentials, or basic auth as fallback)."""

    _discovered: Any = PrivateAttr(default=None)

    def _create(self, settings: ConnectorSettings) -> ServiceNowClient:
        return ServiceNowClient(settings)

    def client(self) -> ServiceNowClient:
        return self._cached()

    def instance_schema(self, warehouse: Warehouse) -> InstanceSchema:
        """The instance's discovered schema (the warehouse's cached copy while younger than a day)."""
        if self._discovered is None:
            self._discovered = load_schema(self.client(), warehouse)
        return self._discovered

    def mappings(self, warehouse: Warehouse) -> dict[str, TargetMapping]:
        """The mappings with the customer's overrides, checked against the instance's own fields too."""
        return load_mappings(schema=self.instance_schema(warehouse))

    def outbound(self, warehouse: Warehouse) -> OutboundFields:
        """How this instance's outbound invoice tables are read and written."""
        return resolve_outbound(self.instance_schema(warehouse), self.mappings(warehouse))


class MassChangeResource(dg.ConfigurableResource):
    """Mass deactivations the operator accepts for one run (DESIGN §7.1, ``sync/mass_change.py``). Empty unless set:
    ``d365-snow sync --accept-deactivations TARGET`` sets it; in the UI, the launchpad's run config does
    (``resources: mass_change: config: {accept_deactivations: [gl_accounts], accepted_by: <your name>}``)."""

    accept_deactivations: list[str] = Field(default_factory=list)
    accepted_by: str = ""
    accepted_at: str = ""  # ISO 8601; empty = when the run applies it

    def acceptance(self) -> Acceptance | None:
        at = datetime.fromisoformat(self.accepted_at) if self.accepted_at else None
        return Acceptance.of(self.accept_deactivations, self.accepted_by, at)


def connector_resources() -> dict[str, Any]:
    return {"d365": D365Resource(), "snow": ServiceNowResource(), "warehouse": WarehouseResource(),
            "io_manager": AtomicFilesystemIOManager(), RESOURCE_KEY: MassChangeResource.configure_at_launch()}


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(resources=connector_resources())
