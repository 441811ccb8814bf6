"""The F&O → ServiceNow targets the asset graph keeps current, and how each is scoped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..mapping import DEFAULT_MAPPINGS, apply_overrides, overrides_from_toml
from ..mapping.spec import TargetMapping
from ..settings import config_path


def load_mappings(config_file: Path | None = None) -> dict[str, TargetMapping]:
    """The DESIGN §5.1 mappings with the customer's ``[mapping]`` overrides from the configuration file
    (``D365SNOW_CONFIG``, default ``./d365snow.toml``) applied.

    Raises :class:`~d365_snow_assets.mapping.MappingError` with a sentence naming the table and column at fault.
    """
    return apply_overrides(overrides_from_toml(config_file or config_path()))

# The snapshot "legal entity" of company-independent entities (main accounts, financial dimension values).
SHARED = "shared"


@dataclass(frozen=True)
class SyncTarget:
    """One ServiceNow staging table fed from F&O snapshots."""

    name: str  # short, human: "suppliers"
    staging_table: str
    per_company: bool
    validate_accounts: bool = False  # hold back rows whose GL account / cost center is missing or inactive

    def mapping(self, mappings: dict[str, TargetMapping] | None = None) -> TargetMapping:
        return (mappings or DEFAULT_MAPPINGS)[self.staging_table]


TARGETS: tuple[SyncTarget, ...] = (
    SyncTarget("gl_accounts", "sn_fcms_intg_gl_account_stage", per_company=False),
    SyncTarget("cost_centers", "sn_fcms_intg_imp_cost_center", per_company=False),
    SyncTarget("suppliers", "sn_fcms_intg_imp_supplier", per_company=True),
    SyncTarget("purchase_orders", "sn_fcms_intg_imp_order", per_company=True),
    SyncTarget("purchase_order_lines", "sn_fcms_intg_imp_order_line", per_company=True, validate_accounts=True),
)
TARGETS_BY_NAME = {t.name: t for t in TARGETS}
