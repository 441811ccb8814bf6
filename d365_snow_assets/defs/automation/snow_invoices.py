"""React to invoices approved in ServiceNow: request the invoice round trip of each legal entity that has some.

The sensor keeps no position of its own. It asks what the next run would take up (``invoices/run.py``
``waiting_invoice``): the first invoice on the retry list, the first left ``in_progress`` by a run that stopped,
and the first ``new`` invoice after the keyset cursor that the posting run commits together with its work
(DESIGN §6). That cursor never moves past an invoice whose outcome is not final, so a failed run leaves its
invoices waiting and the same invoices are requested again.
"""

import time

import dagster as dg

from ...clients.errors import ConnectorError
from ...clients.servicenow import ServiceNowClient
from ...discovery import load_schema
from ...discovery.outbound import resolve_outbound
from ...invoices.adapters import ServiceNowOutbound
from ...invoices.run import waiting_invoice
from ...paths import StatePaths
from ...settings import SettingsError, load_settings
from ...sync.targets import load_mappings
from ...warehouse import Warehouse
from ..jobs import invoice_round_trip
from .active import active_partitions

# A run key names the waiting invoices (the first of each kind) and the hour: the same invoices never launch twice
# within an hour, a run that failed is tried again in the next hour rather than never (Dagster launches each run key
# only once), and a new approval makes a new key at once, also while another invoice waits for its retry.
RETRY_WINDOW_S = 60 * 60


@dg.sensor(
    name="snow_approved_invoices",
    job=invoice_round_trip,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Every 2 minutes: for each legal entity with invoices waiting for F&O (approved in ServiceNow and "
                "not polled yet, left in progress by a run that stopped, or on the retry list), run the invoice "
                "round trip. Skips a legal entity whose round trip is still going.",
)
def snow_approved_invoices(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    try:
        settings = load_settings(require=("snow",))
    except SettingsError as exc:
        return dg.SkipReason(f"configuration problem: {exc}")
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    window = int(time.time() // RETRY_WINDOW_S)
    requests = []
    # A legal entity whose round trip is queued or running is left to it: its key moves as that run marks invoices
    # in progress and moves the cursor, and a run stacked behind it would retry the same invoices minutes later.
    busy = active_partitions(context.instance, invoice_round_trip.name)
    try:
        with ServiceNowClient(settings) as client:
            schema = load_schema(client, warehouse)
            source = ServiceNowOutbound(client, resolve_outbound(schema, load_mappings(schema=schema)),
                                        settings.erp_source)
            for le in (le for le in settings.legal_entities if le not in busy):
                waiting = waiting_invoice(source, warehouse, le)
                if waiting:
                    requests.append(dg.RunRequest(run_key=f"invoices:{le}:{waiting}:{window}", partition_key=le,
                                                  tags=settings.run_tags()))
    except ConnectorError as exc:
        # Nothing was requested and nothing moved: the next tick asks again.
        return dg.SkipReason(f"ServiceNow could not be read: {exc}")
    if not requests:
        going = f"; the round trip of {', '.join(sorted(map(str, busy)))} is still going" if busy else ""
        return dg.SkipReason(f"no approved invoices waiting{going}")
    return dg.SensorResult(run_requests=requests)
