"""Jobs the CLI and schedules launch."""

import dagster as dg

from ..sync.targets import TARGETS
from .d365_extract.assets import extract_key
from .d365_extract.specs import EXTRACTS
from .invoices.reconciliation import RECONCILIATION_KEY
from .snow_sync.assets import plan_key, push_key

_SHARED_TARGETS = [t for t in TARGETS if not t.per_company]
SHARED_SELECTION = dg.AssetSelection.assets(
    *(extract_key(s.entity_set) for s in EXTRACTS if not s.per_company or s.all_companies),
    *(plan_key(t) for t in _SHARED_TARGETS), *(push_key(t) for t in _SHARED_TARGETS),
)
PER_COMPANY_SELECTION = dg.AssetSelection.groups("d365_extract", "plan", "servicenow") - SHARED_SELECTION

sync_reference_data = dg.define_asset_job(
    "sync_reference_data", selection=SHARED_SELECTION,
    description="Legal entities, GL accounts, cost centers, suppliers and their legal-entity mappings F&O → "
                "ServiceNow: what every legal entity's orders and invoices refer to.")
sync_legal_entity = dg.define_asset_job(
    "sync_legal_entity", selection=PER_COMPANY_SELECTION,
    description="Purchase orders and purchase order lines of one legal entity F&O → ServiceNow.")

_NO_PUSH = dg.AssetSelection.groups("servicenow")
plan_reference_data = dg.define_asset_job(
    "plan_reference_data", selection=SHARED_SELECTION - _NO_PUSH,
    description="Extract and diff the reference data without pushing (d365-snow plan).")
plan_legal_entity = dg.define_asset_job(
    "plan_legal_entity", selection=PER_COMPANY_SELECTION - _NO_PUSH,
    description="Extract and diff one legal entity without pushing (d365-snow plan).")

# The month-end reconciliation shares the invoices group in the UI but runs in its own job (reconcile_invoices).
INVOICE_SELECTION = dg.AssetSelection.groups("snow_extract", "invoices", "status_back") - dg.AssetSelection.assets(
    RECONCILIATION_KEY)
invoice_round_trip = dg.define_asset_job(
    "invoice_round_trip", selection=INVOICE_SELECTION,
    description="Approved ServiceNow invoices of one legal entity → F&O pending invoices, then posted status and "
                "payments back to ServiceNow (the month-end reconciliation is the job reconcile_invoices).")
