"""Replay (DESIGN §7, §7.1): repair the F&O → ServiceNow records whose latest attempt failed, never moving one
backwards.

A failed payload is only worth re-sending while it is still what F&O says. So each failed record is held against
the plan its target would push now (the current snapshot, mapped and diffed against pushed state, exactly as a
sync plans it):

- the plan sends the same state as the failed attempt (same row hash): that audited state is sent again;
- the plan sends another state (F&O changed since): the current one is sent instead, the failed one is stale;
- the plan sends nothing for it (ServiceNow already holds what F&O holds, e.g. F&O went back to the pushed
  state), holds it back, or its legal entity is no longer configured: it is skipped, with the reason;
- the plan's deactivations are a mass change the sync would not push either (sync/mass_change.py): skipped.

What is sent goes through :func:`~d365_snow_assets.sync.push.push_plan`, the one path every push takes (coalescing
``insertMultiple``, pushed state and audit in one transaction), audited with the next attempt number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from ..discovery import InstanceSchema
from ..mapping import MappingContext
from ..mapping.spec import TargetMapping
from ..warehouse import DiffResult, Warehouse
from ..warehouse.state import BUSINESS_KEY, ROW_HASH
from .invoices import PAYMENT_MAPPING, plan_payments
from .mass_change import review_deactivations
from .plan import SyncPlan, build_plan
from .push import DIRECTION as TO_SERVICENOW
from .push import AuditContext, ImportClient, push_plan
from .targets import TARGETS

Action = Literal["resend", "rederive", "skip"]


@dataclass(frozen=True)
class ReplayScope:
    """What a replay needs of the configuration to plan the way a sync does."""

    # The sync's own mapping context: the configured companies decide which company's row speaks for a record
    # shared by several (a supplier) and which rows are in scope, so a replay planned without them would send
    # another state than the sync does.
    context: MappingContext
    mappings: Mapping[str, TargetMapping]  # by staging table, with the customer's overrides
    schema: InstanceSchema  # the instance's fields: a replayed row is encoded and checked as a sync's would be


@dataclass(frozen=True)
class ReplayDecision:
    business_key: str
    staging_table: str
    action: Action
    reason: str


@dataclass
class ReplaySummary:
    dry_run: bool = False
    decisions: list[ReplayDecision] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    not_replayable: list[str] = field(default_factory=list)  # business keys whose direction has no replay path here

    def count(self, action: Action) -> int:
        return sum(1 for d in self.decisions if d.action == action)


def replay_to_servicenow(failed: pl.DataFrame, client: ImportClient, warehouse: Warehouse, scope: ReplayScope,
                         run_id: str, *, dry_run: bool = False) -> ReplaySummary:
    """Repair the failed F&O → ServiceNow rows in ``failed`` (rows of ``Warehouse.failed_records``); with
    ``dry_run``, only decide what would be sent."""
    summary = ReplaySummary(dry_run=dry_run)
    summary.not_replayable = failed.filter(pl.col("direction") != TO_SERVICENOW).get_column("business_key").to_list()
    mine = failed.filter(pl.col("direction") == TO_SERVICENOW)
    for (staging, partition), group in mine.group_by(["target", "partition"], maintain_order=True):
        staging, partition = str(staging), (str(partition) if partition is not None else None)
        current = _current_plan(staging, partition, warehouse, scope)
        if isinstance(current, str):
            summary.decisions += [ReplayDecision(k, staging, "skip", current)
                                  for k in group.get_column("business_key")]
            continue
        plan = current
        decisions = _decide(plan, group, warehouse, scope)
        summary.decisions += decisions
        send = {d.business_key for d in decisions if d.action != "skip"}
        if dry_run or not send:
            continue
        # Audited like the attempt it repairs (same asset and partition), one attempt number higher.
        chosen = group.filter(pl.col("business_key").is_in(sorted(send)))
        for (attempt, asset_key), keys in chosen.group_by(["attempt", "asset_key"], maintain_order=True):
            pushed = push_plan(_only(plan, keys.get_column("business_key").to_list()), client, warehouse,
                               AuditContext(run_id, str(asset_key), partition, int(attempt) + 1))
            for outcome, n in pushed.outcomes.items():
                summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + n
    return summary


def _current_plan(staging: str, partition: str | None, warehouse: Warehouse,
                  scope: ReplayScope) -> SyncPlan | str:
    """What a sync would push now to ``staging`` for ``partition``, or why nothing."""
    ctx = scope.context
    if partition is not None and partition.lower() not in ctx.legal_entities:
        return f"legal entity {partition.upper()} is no longer configured: out of scope, not sent"
    if staging == PAYMENT_MAPPING.staging_table and partition is not None:
        return plan_payments(warehouse, ctx, partition, scope.schema)
    target = next((t for t in TARGETS if t.staging_table == staging), None)
    if target is None:
        return f"{staging} is not a table the connector keeps current any more"
    return build_plan(target, warehouse, ctx, legal_entity=partition if target.per_company else None,
                      configured_legal_entities=ctx.legal_entities, mapping=target.mapping(dict(scope.mappings)),
                      schema=scope.schema)


def _decide(plan: SyncPlan, failed: pl.DataFrame, warehouse: Warehouse, scope: ReplayScope) -> list[ReplayDecision]:
    planned = {k: h for k, h in pl.concat([plan.diff.to_push.select(BUSINESS_KEY, ROW_HASH),
                                            plan.diff.deletions.select(BUSINESS_KEY, ROW_HASH)]).iter_rows()}
    deleting = set(plan.diff.deletions.get_column(BUSINESS_KEY).to_list())
    held = dict(plan.held_back.select(BUSINESS_KEY, "_reason").iter_rows()) if plan.held_back.height else {}
    blocked = bool(deleting) and review_deactivations(plan, warehouse, scope.context.erp_source).blocked
    staging = plan.target.staging_table
    decisions = []
    for key, audited_hash in failed.select("business_key", "payload_hash").iter_rows():
        if key in held:
            decisions.append(ReplayDecision(key, staging, "skip", f"held back now: {held[key]}"))
        elif key not in planned:
            decisions.append(ReplayDecision(key, staging, "skip", "ServiceNow already holds what F&O holds now; the "
                                                                  "failed state is out of date"))
        elif key in deleting and blocked:
            decisions.append(ReplayDecision(key, staging, "skip", "the current plan would deactivate a mass of "
                                                                  f"records; accept it with `d365-snow sync "
                                                                  f"--accept-deactivations {plan.target.name}`"))
        elif planned[key] == audited_hash:
            decisions.append(ReplayDecision(key, staging, "resend", "still F&O's current state: sent as audited"))
        else:
            decisions.append(ReplayDecision(key, staging, "rederive", "F&O changed since the failed attempt: its "
                                                                      "current state is sent instead"))
    return decisions


def _only(plan: SyncPlan, keys: list[str]) -> SyncPlan:
    """``plan`` narrowed to ``keys``: nothing else is sent, and nothing held back is audited again."""
    wanted = pl.col(BUSINESS_KEY).is_in(keys)
    diff = plan.diff
    return dataclasses.replace(
        plan, diff=DiffResult(diff.target, diff.inserts.filter(wanted), diff.changes.filter(wanted),
                              diff.deletions.filter(wanted), diff.orphans.clear(), 0, 0),
        held_back=plan.held_back.clear())


__all__ = ["ReplayDecision", "ReplayScope", "ReplaySummary", "replay_to_servicenow"]
