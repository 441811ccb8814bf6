from collections import Counter
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d365_snow_assets.invoices import (
    PostingResult,
    audit_rows,
    header_payload,
    line_payload,
    parse_invoices,
    post_invoice,
    post_invoices,
    validate_invoices,
)
from d365_snow_assets.warehouse import Warehouse

from .fakes import FAULTS, Crash, FakeLedger, FakeServiceNow, header, line, references

REFS = references(["usmf"])


def verdicts(sn, heads, lines):
    return validate_invoices(parse_invoices([sn.apply(h) for h in heads], lines), REFS)


def run(ledger, sn, heads=None, lines=None) -> list[PostingResult]:
    heads = heads or [header()]
    lines = lines if lines is not None else [line(1), line(2)]
    return post_invoices(verdicts(sn, heads, lines), ledger, sn)


def assert_one_complete_invoice(ledger, sn, h=None, lines=None):
    h = h or header()
    lines = lines if lines is not None else [line(1), line(2)]
    [v] = verdicts(FakeServiceNow(), [h], lines)
    refs = ledger.pending_for("usmf", h["supplier"], h["supplier_invoice_number"])
    assert len(refs) == 1, f"expected exactly one pending invoice, found {refs}"
    ref = refs[0]
    assert {k: x for k, x in ledger.headers[ref].items() if k != "HeaderReference"} == header_payload(
        v.invoice, v.order_account)
    assert ledger.lines_of(ref) == {li.line_number: line_payload(v.invoice, li, ref) for li in v.invoice.lines}
    assert sn.status[h["sys_id"]]["integration_status"] == "processed"
    assert sn.status[h["sys_id"]]["erp_number"] == ref
    return ref


def test_valid_invoice_creates_one_header_and_all_lines():
    ledger, sn = FakeLedger(), FakeServiceNow()
    [result] = run(ledger, sn)
    ref = assert_one_complete_invoice(ledger, sn)
    assert (result.outcome, result.erp_number, result.retryable) == ("created", ref, False)
    assert [c[0] for c in sn.calls] == ["in_progress", "processed"]
    assert [(a.entity, a.outcome) for a in result.audit] == [
        ("VendorInvoiceHeaders", "created"), ("VendorInvoiceLines", "created"), ("VendorInvoiceLines", "created"),
        ("sn_spend_intg_outbound_invoice", "updated")]
    assert result.audit[0].business_key == "USMF|V-0001|INV-h1"
    assert result.audit[1].business_key == "USMF|V-0001|INV-h1|1"
    assert result.audit[0].target_id == ref and result.audit[1].target_id == f"{ref}|1"
    assert '"ImportedAmount":1320.00' in result.audit[0].payload


def test_invalid_invoice_is_not_sent_and_the_clerk_is_told():
    ledger, sn = FakeLedger(), FakeServiceNow()
    h = header(supplier="V-0042")
    [result] = run(ledger, sn, [h], [line(1), line(2, gl_account="999999")])
    assert result.outcome == "rejected" and ledger.calls == []
    message = sn.status["h1"]["processing_message"]
    assert sn.status["h1"]["integration_status"] == "error"
    assert "Supplier V-0042 is on hold for invoices in USMF." in message
    assert "Line 2: GL account 999999 does not exist in Dynamics 365." in message
    assert [a.outcome for a in result.audit] == ["rejected", "updated"]


def test_crash_between_header_and_lines_then_rerun():
    ledger, sn = FakeLedger(faults=["ok", "ok", "crash_after"]), FakeServiceNow()
    [v] = verdicts(sn, [header()], [line(1), line(2)])
    with pytest.raises(Crash):
        post_invoice(v, ledger, sn)  # the process dies right after F&O stored the header
    assert len(ledger.headers) == 1 and ledger.lines == {}
    assert sn.status["h1"]["integration_status"] == "in_progress"
    [result] = run(ledger, sn)
    assert result.outcome == "reused"
    assert_one_complete_invoice(ledger, sn)


def test_duplicate_number_on_post_is_resolved_by_lookup():
    """Another worker created the header between our lookup and our POST: F&O refuses ours as a duplicate."""
    ledger, sn = FakeLedger(), FakeServiceNow()
    [v] = verdicts(sn, [header()], [line(1), line(2)])
    real_find = ledger.find_pending
    seen = []

    def racing_find(*key):
        if not seen:  # the first lookup misses; meanwhile the other worker writes the same header
            seen.append(key)
            ledger.headers["USMF-VI99999999"] = dict(header_payload(v.invoice), HeaderReference="USMF-VI99999999")
            return None
        return real_find(*key)

    ledger.find_pending = racing_find
    result = post_invoice(v, ledger, sn)
    assert result.outcome == "reused" and result.erp_number == "USMF-VI99999999"
    assert assert_one_complete_invoice(ledger, sn) == "USMF-VI99999999"


def test_lost_response_on_header_never_makes_a_second_invoice():
    ledger, sn = FakeLedger(duplicate_check="AcceptDuplicate", faults=["ok", "ok", "lost_after"]), FakeServiceNow()
    [result] = run(ledger, sn)
    assert result.outcome == "created"
    assert_one_complete_invoice(ledger, sn)
    assert sum(1 for op, _ in ledger.calls if op == "create_header") == 1


def test_unconfirmed_header_is_not_resent_in_the_same_attempt():
    ledger, sn = FakeLedger(duplicate_check="AcceptDuplicate", faults=["ok", "ok", "lost_before"]), FakeServiceNow()
    [result] = run(ledger, sn)
    assert (result.outcome, result.retryable) == ("error", True)
    assert "did not confirm the invoice header" in sn.status["h1"]["processing_message"]
    assert ledger.headers == {}
    [result] = run(ledger, sn)  # the next attempt looks up first, then creates
    assert result.outcome == "created"
    assert_one_complete_invoice(ledger, sn)


def test_unconfirmed_header_gets_a_second_look_after_the_pause_at_the_end_of_the_batch():
    """With a pause (the posting asset's), the same run looks up again and then creates: one header, both
    attempts audited, the pause asked for once with the number of invoices to look at again."""
    ledger, sn = FakeLedger(duplicate_check="AcceptDuplicate", faults=["ok", "ok", "lost_before"]), FakeServiceNow()
    pauses: list[int] = []
    [result] = post_invoices(verdicts(sn, [header()], [line(1), line(2)]), ledger, sn, settle=pauses.append)
    assert pauses == [1]
    assert (result.outcome, result.unconfirmed) == ("created", False)
    assert [r.outcome for r in result.audit if r.entity == "VendorInvoiceHeaders"] == ["error", "created"]
    assert sum(1 for op, _ in ledger.calls if op == "create_header") == 2  # the first was lost before F&O
    assert_one_complete_invoice(ledger, sn)


def test_a_header_lost_after_it_was_written_is_found_by_the_second_look_not_sent_again():
    # The answer is lost after the write, and the lookup right after it misses it (still committing); the
    # second look after the pause finds it.
    ledger, sn = FakeLedger(duplicate_check="AcceptDuplicate", faults=["ok", "ok", "lost_after"]), FakeServiceNow()
    real_find, misses = ledger.find_pending, [1]

    def committing(*key):
        if misses and ledger.headers:
            misses.pop()
            return None
        return real_find(*key)

    ledger.find_pending = committing
    pauses: list[int] = []
    [result] = post_invoices(verdicts(sn, [header()], [line(1), line(2)]), ledger, sn, settle=pauses.append)
    assert pauses == [1] and result.outcome == "reused"
    assert sum(1 for op, _ in ledger.calls if op == "create_header") == 1
    assert_one_complete_invoice(ledger, sn)


def test_already_posted_invoice_is_not_touched():
    ledger, sn = FakeLedger(), FakeServiceNow()
    run(ledger, sn)
    ref = next(iter(ledger.headers))
    ledger.post(ref, "APINV-000042", date(2026, 5, 20))
    sn.status.clear()  # e.g. our earlier write-back was lost
    ledger.calls.clear()
    [result] = run(ledger, sn)
    assert (result.outcome, result.erp_number) == ("posted", "APINV-000042")
    assert ledger.writes() == 0
    assert sn.status["h1"] == {"integration_status": "processed", "erp_number": "APINV-000042",
                               "erp_posting_date": "2026-05-20"}
    assert [a.outcome for a in result.audit] == ["posted", "updated"]


def test_rerun_of_processed_invoice_is_a_noop():
    ledger, sn = FakeLedger(), FakeServiceNow()
    run(ledger, sn)
    ledger.calls.clear()
    sn.calls.clear()
    [result] = run(ledger, sn)
    assert result.outcome == "skipped" and ledger.calls == [] and sn.calls == []


def test_rerun_with_stale_status_reuses_everything():
    ledger, sn = FakeLedger(), FakeServiceNow()
    run(ledger, sn)
    sn.status.clear()
    ledger.calls.clear()
    [result] = run(ledger, sn)
    assert result.outcome == "reused" and ledger.writes() == 0
    assert [c[0] for c in sn.calls][-1] == "processed"
    assert_one_complete_invoice(ledger, sn)


def test_validation_error_from_dynamics_on_header():
    ledger, sn = FakeLedger(), FakeServiceNow()
    ledger.reject_header = "Error: Field 'Invoice account' must be filled in."
    [result] = run(ledger, sn)
    assert (result.outcome, result.retryable) == ("error", False)
    assert sn.status["h1"]["processing_message"] == (
        "Dynamics 365 rejected the invoice: Error: Field 'Invoice account' must be filled in.. Correct it and resend.")
    assert result.audit[0].outcome == "error"


def test_validation_error_on_a_line_then_fixed_and_resent():
    ledger, sn = FakeLedger(), FakeServiceNow()
    ledger.reject_line = {2: "Item A0001 is stopped."}
    [result] = run(ledger, sn)
    assert (result.outcome, result.retryable) == ("error", False)
    assert "rejected line 2: Item A0001 is stopped." in sn.status["h1"]["processing_message"]
    ref = result.erp_number
    assert set(ledger.lines_of(ref)) == {1}
    assert [(a.entity, a.outcome) for a in result.audit][-2:] == [("VendorInvoiceLines", "error"),
                                                                   ("sn_spend_intg_outbound_invoice", "updated")]
    ledger.reject_line = {}
    [result] = run(ledger, sn)  # replay
    assert result.outcome == "reused"
    assert assert_one_complete_invoice(ledger, sn) == ref


@pytest.mark.parametrize("fault", ["lost_after", "lost_before"])
def test_lost_response_on_a_line(fault):
    # find_posted, find_pending, create_header, create_line(1)
    ledger, sn = FakeLedger(faults=["ok", "ok", "ok", fault]), FakeServiceNow()
    [result] = run(ledger, sn)
    assert result.outcome == "created"
    assert_one_complete_invoice(ledger, sn)


def test_header_posted_before_lines_were_added():
    ledger, sn = FakeLedger(), FakeServiceNow()
    ledger.after_header = lambda lg: lg.post(next(iter(lg.headers)))
    [result] = run(ledger, sn)
    assert (result.outcome, result.retryable) == ("error", False)
    assert "was posted or removed in Dynamics 365 before all lines were added" in sn.status["h1"]["processing_message"]


def test_second_servicenow_invoice_with_the_same_number_is_not_merged():
    ledger, sn = FakeLedger(duplicate_check="AcceptDuplicate"), FakeServiceNow()
    heads = [header("a", supplier_invoice_number="INV-1"), header("b", supplier_invoice_number="inv-1")]
    results = run(ledger, sn, heads, [line(1, "a"), line(2, "a"), line(1, "b"), line(2, "b")])
    assert [r.outcome for r in results] == ["created", "error"]
    assert len(ledger.headers) == 1 and len(ledger.lines) == 2
    assert "already pending in Dynamics 365" in sn.status["b"]["processing_message"]
    assert "ServiceNow invoice OBINV-a" in sn.status["b"]["processing_message"]


@pytest.mark.parametrize("document_number", [None, "", "  "])
def test_a_pending_invoice_keyed_by_hand_is_a_conflict_and_left_untouched(document_number):
    ledger, sn = FakeLedger(duplicate_check="AcceptDuplicate"), FakeServiceNow()
    by_hand = {"dataAreaId": "usmf", "InvoiceAccount": "V-0001", "InvoiceNumber": "inv-h1", "HeaderReference": "AP-7"}
    if document_number is not None:
        by_hand["DocumentNumber"] = document_number
    ledger.headers["AP-7"] = by_hand
    [result] = run(ledger, sn)
    assert (result.outcome, result.retryable, result.erp_number) == ("error", False, "AP-7")
    assert ledger.writes() == 0 and ledger.headers == {"AP-7": by_hand} and ledger.lines == {}
    message = sn.status["h1"]["processing_message"]
    assert "AP-7" in message and "a manual entry" in message
    assert [c[0] for c in sn.calls] == ["error"]  # never in_progress: nothing was attempted in F&O


def test_writeback_failure_after_success_recovers_on_rerun():
    ledger, sn = FakeLedger(), FakeServiceNow(faults=["ok", "fail"])  # in_progress ok, processed fails
    [result] = run(ledger, sn)
    assert (result.outcome, result.retryable) == ("error", True)
    assert result.audit[0].outcome == "created"  # what happened in F&O stays audited
    [result] = run(ledger, sn)
    assert result.outcome == "reused"
    assert_one_complete_invoice(ledger, sn)


def test_audit_rows_fit_the_audit_store(tmp_path):
    ledger, sn = FakeLedger(), FakeServiceNow()
    heads = [header("a"), header("b", supplier="V-0042"), header("c", supplier_invoice_number="O'B^Ü|\"x\"")]
    results = run(ledger, sn, heads, [line(n, s) for s in "abc" for n in (1, 2)])
    assert Counter(r.outcome for r in results) == {"created": 2, "rejected": 1}
    rows = audit_rows(results, "run-1", "invoices/post", "usmf")
    assert Warehouse(tmp_path / "wh.duckdb").write_audit(rows) == len(rows) == 10
    assert {r["direction"] for r in rows} == {"snow_to_d365"}


# -- convergence under any interleaving of failures ---------------------------------------------------------------
def converge(ledger, sn, heads, lines, max_runs):
    """Re-run until every invoice is processed, as the asset (or replay) would: a crash ends the run."""
    for _ in range(max_runs):
        pending = [h for h in heads if sn.apply(h).get("integration_status") != "processed"]
        if not pending:
            return
        for v in verdicts(sn, pending, lines):
            try:
                post_invoice(v, ledger, sn)
            except Exception:  # a crash or an unhandled outage: the process is gone, next run starts over
                break
    raise AssertionError("did not converge")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledger_faults=st.lists(st.sampled_from(FAULTS), max_size=25),
       sn_faults=st.lists(st.sampled_from(("ok", "ok", "fail", "crash_after")), max_size=8),
       duplicate_check=st.sampled_from(["NoDuplicate", "AcceptDuplicate"]),
       n_lines=st.integers(1, 4), n_invoices=st.integers(1, 2))
def test_any_failure_interleaving_converges_to_exactly_one_invoice(ledger_faults, sn_faults, duplicate_check,
                                                                    n_lines, n_invoices):
    ledger = FakeLedger(duplicate_check=duplicate_check, faults=ledger_faults)
    sn = FakeServiceNow(faults=sn_faults)
    heads = [header(f"h{i}") for i in range(n_invoices)]
    lines = [line(n, h["sys_id"], amount="300.00", tax_amount="0", purchase_order_line="")
             for h in heads for n in range(1, n_lines + 1)]
    for h in heads:
        h["amount_invoiced"], h["tax_amount"] = str(Decimal("300.00") * n_lines), "0.00"
    converge(ledger, sn, heads, lines, max_runs=len(ledger_faults) + len(sn_faults) + 3)
    for h in heads:
        assert_one_complete_invoice(ledger, sn, h, [li for li in lines if li["outbound_invoice"]["value"] ==
                                                     h["sys_id"]])
    assert len(ledger.headers) == n_invoices


def test_client_refusals_use_the_infolog_and_are_not_retried():
    from d365_snow_assets.clients.errors import ForbiddenError, ValidationError

    class Refusing(FakeLedger):
        def __init__(self, exc):
            super().__init__()
            self.exc = exc

        def create_header(self, payload):
            raise self.exc

    sn = FakeServiceNow()
    exc = ValidationError("F&O refused the creation of a VendorInvoiceHeaders record.",
                          detail="Error: Invoice date must be in an open period.")
    [result] = run(Refusing(exc), sn)
    assert (result.outcome, result.retryable) == ("error", False)
    assert "Invoice date must be in an open period" in sn.status["h1"]["processing_message"]
    [result] = run(Refusing(ForbiddenError("The connector may not create vendor invoices.")), FakeServiceNow())
    assert (result.outcome, result.retryable) == ("error", False)
