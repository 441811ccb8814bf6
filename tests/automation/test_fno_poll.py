"""The F&O polling sensor: what it requests, that a tick cannot double-launch, that busy jobs are skipped."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest

from d365_snow_assets.defs.automation.fno_poll import fno_poll


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _evaluate(instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    return fno_poll(dg.build_sensor_context(instance=instance))


def test_skips_until_legal_entities_are_configured(instance, monkeypatch) -> None:
    monkeypatch.delenv("D365SNOW_LEGAL_ENTITIES", raising=False)
    result = _evaluate(instance)
    assert isinstance(result, dg.SkipReason)
    assert "D365SNOW_LEGAL_ENTITIES" in (result.skip_message or "")


def test_requests_reference_data_and_each_legal_entity_once_per_window(instance, monkeypatch) -> None:
    monkeypatch.setenv("D365SNOW_LEGAL_ENTITIES", "usmf,DEMF")
    first = _evaluate(instance)
    assert isinstance(first, dg.SensorResult)
    assert [(r.job_name, r.partition_key) for r in first.run_requests] == [
        ("sync_reference_data", None), ("sync_legal_entity", "usmf"), ("sync_legal_entity", "demf")]
    assert [req.partition_keys for req in first.dynamic_partitions_requests] == [["usmf", "demf"]]
    instance.add_dynamic_partitions("legal_entity", ["usmf", "demf"])

    second = _evaluate(instance)
    # Same window → same run keys: the daemon launches a run key once, so re-evaluation cannot double-launch.
    assert [r.run_key for r in second.run_requests] == [r.run_key for r in first.run_requests]
    assert len({r.run_key for r in first.run_requests}) == 3
    assert not second.dynamic_partitions_requests


def test_a_legal_entity_still_running_is_not_requested_again(instance, monkeypatch) -> None:
    monkeypatch.setenv("D365SNOW_LEGAL_ENTITIES", "usmf,demf")
    instance.add_run(dg.DagsterRun(job_name="sync_legal_entity", run_id=str(uuid.uuid4()),
                                   status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": "usmf"}))
    result = _evaluate(instance)
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [
        ("sync_reference_data", None), ("sync_legal_entity", "demf")]
