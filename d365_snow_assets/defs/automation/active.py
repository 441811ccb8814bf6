"""Which partitions of a job have a run queued or in progress, for sensors that must not stack runs behind it."""

import dagster as dg

_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED]


def active_partitions(instance: dg.DagsterInstance, job_name: str) -> set[str | None]:
    """Partitions (None = unpartitioned) of ``job_name`` that have a run queued or in progress."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=_ACTIVE))
    return {record.dagster_run.tags.get("dagster/partition") for record in records}
