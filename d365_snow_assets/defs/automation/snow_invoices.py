"""React to invoices approved in ServiceNow: request the invoice round trip of each legal entity that has some.

The sensor keeps no position of its own. It asks ServiceNow for the first ``new`` invoice after the keyset cursor
that the posting run commits together with its work (DESIGN §6), so the cursor only ever moves past committed
work: a failed run leaves it where it was, and the same invoices are requested again.
"""

import time

import dagster as dg

from ...clients.errors import ConnectorError
from ...clients.servicenow import KeysetCursor, ServiceNowClient
from ...discovery import load_schema
from ...discovery.outbound import OutboundFields, resolve_outbound
from ...paths import StatePaths
from ...settings import SettingsError, load_settings
from ...sync.invoices import poll_cursor_name, retry_cursor_name, scope_query
from ...sync.targets import load_mappings
from ...warehouse import Warehouse
from ..jobs import invoice_round_trip

# A run key names the first waiting invoice and the hour: the same invoices never launch twice within an hour, and
# a run that failed is tried again in the next hour rather than never (Dagster launches each run key only once).
RETRY_WINDOW_S = 60 * 60


def waiting_invoice(client: ServiceNowClient, warehouse: Warehouse, legal_entity: str, out: OutboundFields,
                    erp_source: str) -> str | None:
    """A key for the first invoice of ``legal_entity`` still to be done (new after the committed cursor, or marked
    for retry), or None when there is nothing to do."""
    if warehouse.get_cursor(retry_cursor_name(legal_entity), []):
        return "retry"
    stored = warehouse.get_cursor(poll_cursor_name(legal_entity))
    cursor = KeysetCursor(stored["updated_on"], stored["sys_id"]) if stored else None
    query = scope_query(out, legal_entity, erp_source, "new")
    for page in client.iter_keyset(out.header_table, query, fields=["sys_id"], page_size=1, cursor=cursor):
        if page.rows:
            return f"{page.rows[0]['sys_updated_on']}|{page.rows[0]['sys_id']}"
    return None


@dg.sensor(
    name="snow_approved_invoices",
    job=invoice_round_trip,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Every 2 minutes: for each legal entity with invoices approved in ServiceNow and not yet in F&O "
                "(integration_status new), run the invoice round trip.",
)
def snow_approved_invoices(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    try:
        settings = load_settings(require=("snow",))
    except SettingsError as exc:
        return dg.SkipReason(f"configuration problem: {exc}")
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    window = int(time.time() // RETRY_WINDOW_S)
    requests = []
    try:
        with ServiceNowClient(settings) as client:
            schema = load_schema(client, warehouse)
            out = resolve_outbound(schema, load_mappings(schema=schema))
            for le in settings.legal_entities:
                waiting = waiting_invoice(client, warehouse, le, out, settings.erp_source)
                if waiting:
                    requests.append(dg.RunRequest(run_key=f"invoices:{le}:{waiting}:{window}", partition_key=le,
                                                  tags=settings.run_tags()))
    except ConnectorError as exc:
        # Nothing was requested and nothing moved: the next tick asks again.
        return dg.SkipReason(f"ServiceNow could not be read: {exc}")
    if not requests:
        return dg.SkipReason("no approved invoices waiting")
    return dg.SensorResult(run_requests=requests)
