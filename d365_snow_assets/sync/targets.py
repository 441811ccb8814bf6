"""The F&O → ServiceNow targets the asset graph keeps current, and how each is scoped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..discovery.model import InstanceSchema
from ..mapping import DEFAULT_MAPPINGS, MappingContext, apply_overrides, overrides_from_toml
from ..mapping.spec import TargetMapping
from ..settings import ConnectorSettings, config_path


def load_mappings(config_file: Path | None = None, schema: InstanceSchema | None = None
                  ) -> dict[str, TargetMapping]:
    """The DESIGN §5.1 mappings with the customer's ``[mapping]`` overrides from the configuration file
    (``D365SNOW_CONFIG``, default ``./d365snow.toml``) applied; with ``schema`` (the instance's discovered schema)
    overrides may also name the instance's own fields.

    Raises :class:`~d365_snow_assets.mapping.MappingError` with a sentence naming the table and field at fault.
    """
    return apply_overrides(overrides_from_toml(config_file or config_path()), schema=schema)


def mapping_context(settings: ConnectorSettings) -> MappingContext:
    """The mapping rules' configuration from the connector settings."""
    return MappingContext(erp_source=settings.erp_source,
                          legal_entities=tuple(le.lower() for le in settings.legal_entities))


# The snapshot "legal entity" of company-independent entities (main accounts, financial dimension values).
SHARED = "shared"


@dataclass(frozen=True)
class SyncTarget:
    """One ServiceNow staging table fed from F&O snapshots.

    ``per_company`` targets are planned and pushed per legal entity partition; the others once for all configured
    companies (GL accounts and cost centers are shared by F&O itself; a ServiceNow supplier is global, so suppliers
    and their legal-entity mappings are planned over every configured company's vendors at once)."""

    name: str  # short, human: "suppliers"
    staging_table: str
    per_company: bool
    validate_accounts: bool = False  # hold back rows whose GL account / cost center is missing or inactive
    # Targets whose records this one's transform map looks up (a reference must exist before the row that names
    # it: a cost center names its legal entity, an order line its order): pushed first.
    after: tuple[str, ...] = ()

    def mapping(self, mappings: dict[str, TargetMapping] | None = None) -> TargetMapping:
        return (mappings or DEFAULT_MAPPINGS)[self.staging_table]


# In push order: what a later target references must be in ServiceNow first (an order names its supplier and legal
# entity, a supplier–legal entity mapping both).
TARGETS: tuple[SyncTarget, ...] = (
    SyncTarget("legal_entities", "sn_fcms_intg_legal_entity_stage", per_company=False),
    SyncTarget("gl_accounts", "sn_fcms_intg_gl_account_stage", per_company=False),
    SyncTarget("cost_centers", "sn_fcms_intg_imp_cost_center", per_company=False, after=("legal_entities",)),
    SyncTarget("suppliers", "sn_fcms_intg_imp_supplier", per_company=False, after=("legal_entities",)),
    SyncTarget("supplier_legal_entities", "sn_fcms_intg_supplier_legal_entity_inbound", per_company=False,
               after=("suppliers", "legal_entities")),
    SyncTarget("purchase_orders", "sn_fcms_intg_imp_order", per_company=True,
               after=("suppliers", "legal_entities", "cost_centers")),
    SyncTarget("purchase_order_lines", "sn_fcms_intg_imp_order_line", per_company=True, validate_accounts=True,
               after=("purchase_orders", "gl_accounts", "cost_centers")),
)
TARGETS_BY_NAME = {t.name: t for t in TARGETS}
