"""The ServiceNow client against the sandbox over real sockets."""

from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox.snow_world import push_in_process

from d365_snow_assets.clients.encoded_query import EncodedQuery
from d365_snow_assets.clients.errors import AuthError, TransientError
from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.sandbox.server import SandboxServer

from .conftest import settings_for

OUT = "sn_spend_intg_outbound_invoice"
SUPPLIER = "sn_fcms_intg_imp_supplier"
NEW, PROCESSED = "10", "30"  # the documented instance's Integration status values


def supplier(code: str, name: str) -> dict[str, str]:
    """A supplier staging record by label: insertMultiple's documented default keys."""
    return {"ERP source": "D365FO", "ERP company code": code, "Legal name": name}


@pytest.fixture
def snow(server, fake_sleep, monkeypatch):
    """A client on a freshly seeded instance whose master data was pushed an hour ago, so its 20 approved
    invoices exist (and are older than anything a test writes)."""
    world = server.world.snow
    world.reset()
    monkeypatch.setattr(world, "clock", lambda: time.time() - 3600)
    push_in_process(server.world)
    monkeypatch.setattr(world, "clock", time.time)
    with ServiceNowClient(settings_for(server), sleep=fake_sleep) as c:
        yield c
    world.reset()


def test_oauth_token_and_refresh_on_401(server, snow):
    assert snow.ensure_fresh(60) > 60 and snow.auth.effective == "oauth"
    first = snow.auth.auth_headers()["Authorization"]
    server.world.tokens.expire_all("snow")
    assert snow.get_page(OUT, "", limit=1)[0]
    assert snow.transport.stats.refreshes == 1
    assert snow.auth.auth_headers()["Authorization"] != first


def test_ensure_fresh_renews_a_token_that_would_expire_during_the_job(server, snow):
    server.world.tokens.expire_all("snow")
    server.set_faults("snow", FaultProfile(token_lifetime_s=30))
    assert snow.ensure_fresh(10) <= 30
    before = snow.transport.stats.requests
    snow.ensure_fresh(10)
    assert snow.transport.stats.requests == before  # still valid long enough: no token request
    server.clear_faults()
    server.world.tokens.expire_all("snow")  # (time passes: the 30-second token runs out)
    assert snow.ensure_fresh(600) > 600  # a job of 10 minutes: asked for a new token up front
    assert snow.transport.stats.requests == before + 1


def test_auto_falls_back_to_basic_once(server, snow, caplog):
    server.world.snow.set_switches(client_credentials_enabled=False)
    assert snow.get_page(OUT, "", limit=1)[0]
    assert snow.get_page(OUT, "", limit=1)[0]
    assert snow.auth.effective == "basic" and snow.auth.oauth_refused
    assert sum("falling back to basic auth" in r.getMessage() for r in caplog.records) == 1


def test_oauth_mode_refusal_and_bad_basic_password_are_clear(server):
    server.world.snow.set_switches(client_credentials_enabled=False)
    with ServiceNowClient(settings_for(server, snow_auth="oauth")) as c, pytest.raises(AuthError) as info:
        c.get_page(OUT, "", limit=1)
    assert "client-credentials grant" in str(info.value)
    with ServiceNowClient(settings_for(server, snow_auth="basic", snow_password="wrong-pw")) as c, \
            pytest.raises(AuthError) as info:
        c.get_page(OUT, "", limit=1)
    assert "basic-auth" in str(info.value) and "wrong-pw" not in str(info.value)
    server.world.snow.reset()


def all_ids(snow, page_size=7):
    return [r["sys_id"] for p in snow.iter_keyset(OUT, "", fields=["sys_id"], page_size=page_size) for r in p.rows]


@pytest.mark.chaos
def test_429_storm_honours_retry_after(server, snow, fake_sleep):
    expected = sorted(r["sys_id"] for r in server.world.snow.dump(OUT))
    server.set_faults("snow", FaultProfile(share_429=0.5, retry_after_s=3, seed=2))
    assert sorted(all_ids(snow)) == expected
    assert snow.transport.stats.throttled > 3 and all(w == 3.0 for w in fake_sleep.waits)


@pytest.mark.chaos
def test_5xx_resets_and_cancelled_transactions(server, snow):
    expected = sorted(r["sys_id"] for r in server.world.snow.dump(OUT))
    server.set_faults("snow", FaultProfile(share_5xx=0.3, seed=4))
    assert sorted(all_ids(snow)) == expected
    server.set_faults("snow", FaultProfile(share_reset=0.3, seed=4))
    assert sorted(all_ids(snow)) == expected
    server.clear_faults()
    server.world.snow.cancel_next_gets(2)
    assert sorted(all_ids(snow)) == expected
    stats = snow.transport.stats
    assert stats.server_errors >= 3 and stats.transport_errors > 0


def test_page_cut_off_without_servicenow_error_is_read_again(server, snow):
    expected = sorted(r["sys_id"] for r in server.world.snow.dump(OUT))
    server.world.snow.cut_off_next_gets(2)
    assert sorted(all_ids(snow)) == expected
    assert not server.world.snow.broken_gets and snow.transport.stats.server_errors == 2
    server.world.snow.cut_off_next_gets(100)
    with pytest.raises(TransientError, match="cut off after"):
        all_ids(snow)


def test_keyset_reads_a_changing_table_without_missing_or_repeating(server, snow):
    """Records are processed, edited and created between pages (ties on sys_updated_on included)."""
    world = server.world.snow
    base = EncodedQuery().eq("integration_status", NEW)
    seen: list[str] = []
    for n, page in enumerate(snow.iter_keyset(OUT, base, fields=["sys_id", "integration_status"], page_size=3)):
        seen += [r["sys_id"] for r in page.rows]
        if n < 4:
            snow.patch(OUT, page.rows[0]["sys_id"], {"integration_status": PROCESSED})
            unread = [x for x in world.dump(OUT, str(base)) if x["sys_id"] not in seen]
            if unread:
                snow.patch(OUT, unread[0]["sys_id"], {"processing_message": "edited"})
            world.approve_invoices(1)
    assert len(seen) == len(set(seen))
    assert {x["sys_id"] for x in world.dump(OUT, str(base))} <= set(seen)


def test_keyset_survives_acl_hidden_rows_and_resumes_from_cursor(server, snow):
    world = server.world.snow
    world.set_switches(acl_hidden_share=0.4)
    visible = {r["sys_id"] for r in world.dump(OUT) if not world.is_acl_hidden(OUT, r["sys_id"])}
    pages = list(snow.iter_keyset(OUT, "", fields=["sys_id"], page_size=4))
    assert {r["sys_id"] for p in pages for r in p.rows} == visible
    world.set_switches(acl_hidden_share=0.0)
    cursor = pages[-1].cursor
    world.approve_invoices(2)
    later = [r["sys_id"] for p in snow.iter_keyset(OUT, "", cursor=cursor, page_size=4) for r in p.rows]
    assert len(later) >= 2 and not set(later) & visible


def test_insert_multiple_async_and_sync(server, snow):
    rows = [supplier(f"S{i:04d}", f"Näme ^{i}") for i in range(430)]
    rows.insert(17, {"ERP source": "D365FO", "Legal name": "no key"})
    progress: list[tuple[int, int]] = []
    results = snow.insert_multiple(SUPPLIER, rows, progress=lambda d, t: progress.append((d, t)))
    assert len(results) == 431 and results[17].status == "skipped"
    assert all(r.status == "inserted" and r.target_sys_id for i, r in enumerate(results) if i != 17)
    assert progress[-1] == (431, 431)
    target = {r["erp_company_code"]: r["sys_id"] for r in server.world.snow.dump("sn_fin_supplier")}
    assert results[0].target_sys_id == target["S0000"] and results[430].target_sys_id == target["S0429"]
    server.world.snow.set_switches(insert_multiple_async=False)
    again = snow.insert_multiple(SUPPLIER, rows[:5])
    assert [r.status for r in again] == ["ignored"] * 5
    # The single-row API takes column names (its documented sample does).
    one = snow.import_one(SUPPLIER, {"erp_source": "D365FO", "erp_company_code": "S0000", "legal_name": "changed"})
    assert one.status == "updated" and one.target_sys_id == target["S0000"]


def test_rows_still_transforming_are_counted_not_read_again_on_every_poll():
    """A window the instance has not transformed yet is read once, then only counted (a one-row read) until the
    count says it is done, then read once more: not 1 + one full read per poll."""
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small())) as srv:
        world = srv.world.snow
        world.set_switches(async_delay_s=3600)  # the instance's scheduler never picks the set up by itself
        polls: list[float] = []

        def poll_sleep(seconds: float) -> None:
            polls.append(seconds)
            if len(polls) == 4:
                world.drain_imports()  # the transform finishes while the connector waits for the 4th time

        reads: list[httpx.Request] = []
        with ServiceNowClient(settings_for(srv), poll_sleep=poll_sleep) as client:
            client.transport.client.event_hooks["request"].append(
                lambda request: reads.append(request) if request.url.path.endswith("/sys_import_set_row") else None)
            results = client.insert_multiple(SUPPLIER, [supplier(f"W{i:03d}", f"W {i}") for i in range(450)])
    assert [r.status for r in results] == ["inserted"] * 450
    full = [r for r in reads if r.url.params.get("sysparm_limit") != "1"]
    counts = [r for r in reads if r.url.params.get("sysparm_limit") == "1"]
    assert len(polls) == 4
    assert len(full) == 2  # before the first wait, and once the transform is done
    assert len(counts) == 3 and all("sys_import_state!=pending" in r.url.params["sysparm_query"] for r in counts)


def test_parallel_insert_multiple_keeps_every_result_on_its_row_through_faults(server, snow):
    # Batches in flight together finish in any order, and 5xx/resets make some go twice: each result must still
    # be the answer for its own row, in input order, and every row must reach the target exactly once.
    rows = [supplier(f"P{i:04d}", f"Par {i}") for i in range(2_150)]
    server.set_faults("snow", FaultProfile(share_5xx=0.15, share_reset=0.1, seed=11))
    progress: list[tuple[int, int]] = []
    results = snow.insert_multiple(SUPPLIER, rows, batch_size=100, max_in_flight=6, parallel=3,
                                   progress=lambda d, t: progress.append((d, t)))
    server.clear_faults()
    target = {r["erp_company_code"]: r["sys_id"] for r in server.world.snow.dump("sn_fin_supplier")
              if r["erp_company_code"].startswith("P")}
    assert [r.target_sys_id for r in results] == [target[row["ERP company code"]] for row in rows]
    assert {r.status for r in results} <= {"inserted", "updated", "ignored"} and len(target) == len(rows)
    assert progress[-1] == (2_150, 2_150) and [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert snow.transport.stats.server_errors + snow.transport.stats.transport_errors > 0


_values = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=30).filter(
    lambda s: not s.lstrip().lower().startswith("javascript:") and s == s.strip())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_values)
def test_encoded_query_escaping_round_trips_through_the_sandbox(server, fake_sleep, value):
    world = server.world.snow
    target = (world.dump(OUT) or [world.insert(OUT, {"supplier_invoice_number": "ESCAPING"})])[0]["sys_id"]
    world.update(OUT, target, {"processing_message": value})
    with ServiceNowClient(settings_for(server), sleep=fake_sleep) as c:
        rows, _ = c.get_page(OUT, EncodedQuery().eq("processing_message", value), fields=["sys_id"], limit=50)
    assert [r["sys_id"] for r in rows] == [target]
