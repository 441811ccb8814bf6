"""No blind re-send of a create (DESIGN §7.1): F&O commits an invoice header or line and the answer is lost (503 or
a reset), on companies that accept duplicate invoice numbers, so F&O itself would never refuse a second copy.
Through `d365-snow sync` on the sandbox; the end state is exact: one F&O invoice per key, every line once."""

from __future__ import annotations

from collections import Counter

import pytest

from d365_snow_assets.sandbox.faults import FaultProfile

from . import outbound
from .conftest import Connector

LOST = 8  # the first header, its lines, and the next header: both kinds of create lose their answer


@pytest.mark.parametrize("answer", ["503", "reset"])
def test_a_create_whose_answer_is_lost_after_commit_is_found_not_sent_again(connector: Connector,
                                                                            answer: str) -> None:
    world = connector.server.world
    world.d365.set_duplicate_check("AcceptDuplicate")
    connector.server.set_faults("d365", FaultProfile(lose_answers=LOST, lose_answer_as=answer,
                                                     path_contains="/data/VendorInvoice"))

    summary = connector.sync()

    assert world.faults["d365"].counters.lost_answers == LOST  # every lost answer followed a committed create
    headers = connector.fno('SELECT * FROM "VendorInvoiceHeaders"')
    keys = Counter((h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"].casefold()) for h in headers)
    assert keys.most_common(1)[0][1] == 1, keys.most_common(3)
    invoices = outbound.invoices(connector).values()
    processed = [r for r in invoices if r["status"] == "processed"]
    assert processed and {r["status"] for r in invoices} <= {"processed", "error"}
    assert summary["invoices"]["created"] == len(processed)
    assert summary["invoices"].get("retry_next_run", 0) == 0
    assert len(headers) == len(processed)
    by_document = {h["DocumentNumber"]: h for h in headers}
    fno_lines = Counter((r["dataAreaId"], r["HeaderReference"], int(r["InvoiceLineNumber"]))
                        for r in connector.fno('SELECT * FROM "VendorInvoiceLines"'))
    assert max(fno_lines.values()) == 1
    for invoice in processed:
        header = by_document[invoice["number"]]
        assert invoice["erp_number"] == header["HeaderReference"]
        expected = list(range(1, len(invoice["lines"]) + 1))  # F&O line n = the n-th line in the order of Number
        actual = sorted(n for (le, ref, n) in fno_lines if (le, ref) == (header["dataAreaId"],
                                                                          header["HeaderReference"]))
        assert actual == expected, invoice["number"]
