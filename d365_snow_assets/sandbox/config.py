"""Sandbox configuration: data sizes, credentials the fake services accept, behaviour switches."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SandboxCredentials(BaseModel):
    """Credentials the sandbox accepts. They are demo values, printed by ``d365-snow sandbox serve``."""

    tenant_id: str = "contoso.onmicrosoft.com"
    d365_client_id: str = "3f6c7c43-1b9e-4d57-9d0b-6f2e0c1a8e11"
    d365_client_secret: str = "sandbox-d365-secret"  # noqa: S105 - a sandbox demo value
    snow_client_id: str = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    snow_client_secret: str = "sandbox-snow-secret"  # noqa: S105 - a sandbox demo value
    snow_username: str = "d365.integration"
    snow_password: str = "sandbox-snow-password"  # noqa: S105 - a sandbox demo value


class SandboxDataSize(BaseModel):
    """Parameters of the deterministic data generator (DESIGN.md §9)."""

    seed: int = 42
    legal_entities: list[str] = Field(default_factory=lambda: ["usmf", "demf", "gbsi"])
    vendors: int = 2_000
    purchase_orders: int = 10_000
    po_lines: int = 50_000
    main_accounts: int = 120
    cost_centers: int = 40
    approved_invoices: int = 60
    invalid_invoice_share: float = 0.2

    @classmethod
    def small(cls, seed: int = 42) -> SandboxDataSize:
        """A size that generates in milliseconds, for tests."""
        return cls(seed=seed, vendors=60, purchase_orders=150, po_lines=600, main_accounts=40,
                   cost_centers=12, approved_invoices=20)


class SandboxConfig(BaseModel):
    """Everything that shapes one sandbox instance."""

    data: SandboxDataSize = Field(default_factory=SandboxDataSize)
    credentials: SandboxCredentials = Field(default_factory=SandboxCredentials)
    # F&O: the company a caller sees without cross-company=true (the integration user's default company).
    d365_default_company: str = "usmf"
    d365_max_page_size: int = 10_000
    d365_token_lifetime_s: int = 3599
    # ServiceNow behaviour switches (see reference/servicenow.md §2–§4).
    snow_client_credentials_enabled: bool = True
    snow_token_lifetime_s: int = 1800
    snow_insert_multiple_async: bool = True
    snow_acl_hidden_share: float = 0.0
    snow_rate_limit_per_hour: int | None = None
    # Which ServiceNow instance to imitate: the documented S2P schema, or a customised "variant" whose element
    # names, status values and one transform map's coalesce differ (servicenow/schema.py VARIANT).
    snow_instance: Literal["documented", "variant"] = "documented"
    # Approved invoices whose references all exist appear at this rate (ties on sys_updated_on for keyset readers).
    snow_invoices_per_second: int = 3
