"""Plan and push assets, one pair per ServiceNow target, generated from ``sync.targets.TARGETS``."""

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from ...sync.mass_change import MAX_COUNT, MAX_SHARE, RESOURCE_KEY, DeactivationReview, review_deactivations
from ...sync.plan import LINE_ACCOUNT_COLUMNS, SyncPlan, build_plan, reference_data
from ...sync.push import AuditContext, PushSummary, push_plan
from ...sync.targets import TARGETS, TARGETS_BY_NAME, SyncTarget, mapping_context
from ...validation.reference_data import check_account_references
from ...warehouse.state import BUSINESS_KEY
from ..d365_extract.assets import extract_key
from ..failures import fail_fast_on_configuration
from ..partitions import LEGAL_ENTITY
from ..resources import MassChangeResource, ServiceNowResource, WarehouseResource
from .metadata import SAMPLES, audit_commands, preview_table, reasons_table, servicenow_list_url

# What ServiceNow's Import Set API answers per row (the audit outcomes of a push): each is a metadata key of every
# push materialization, zeros included, so the asset's Plots tab draws one line per outcome across runs.
PUSH_OUTCOMES = ("inserted", "updated", "ignored", "skipped")
PROGRESS_ROWS = 2_000
PUSH_RETRY = dg.RetryPolicy(max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
ACCOUNTS_CHECK = "lines_reference_active_accounts"
FIT_CHECK = "fits_servicenow"
DEACTIVATION_CHECK = "no_mass_deactivation"


def plan_key(target: SyncTarget) -> dg.AssetKey:
    # Named apart from the push asset: the lineage graph labels nodes by the last key part only.
    return dg.AssetKey(["plan", f"{target.mapping().target_table}_changes"])


def push_key(target: SyncTarget) -> dg.AssetKey:
    return dg.AssetKey(["servicenow", target.mapping().target_table])


def _upstream(target: SyncTarget) -> list[dg.AssetKey]:
    mapping = target.mapping()
    entities = [mapping.source_entity, *mapping.related_entities]
    if target.validate_accounts:
        entities += ["MainAccounts", "FinancialDimensionValues"]
    return [extract_key(e) for e in dict.fromkeys(entities)]


def build_plan_asset(target: SyncTarget) -> dg.AssetsDefinition:
    mapping = target.mapping()
    key = plan_key(target)
    checks = [
        dg.AssetCheckSpec(
            FIT_CHECK, asset=key, blocking=True,
            description=f"The mapping fits this ServiceNow instance's `{mapping.staging_table}`: every key field "
                        "resolves to one column, a transform map reads the table and coalesces on the connector's "
                        "key. Fails (and nothing is pushed) on a blocking finding of `d365-snow fit`; lists the "
                        "others."),
        dg.AssetCheckSpec(DEACTIVATION_CHECK, asset=key, blocking=True,
                          description=f"The plan deactivates at most {MAX_SHARE:.0%} of the partition's active "
                                      f"records, or at most {MAX_COUNT}. More is what a partial view of F&O looks "
                                      "like (lost read access): the plan is not pushed, with the count, the share "
                                      "and a sample of keys here, unless the run accepts it (`d365-snow sync "
                                      f"--accept-deactivations {target.name}`, or run config resources → "
                                      f"{RESOURCE_KEY})."),
    ]
    if target.validate_accounts:
        checks.append(dg.AssetCheckSpec(
            ACCOUNTS_CHECK, asset=key, blocking=True,
            description="Every line references an existing, active GL account and cost center. Lines that do not are "
                        "held back (audited as rejected) and listed here: a warning, the rest is pushed. An error, "
                        "which stops the push, means a line about to be pushed still fails the rule."))

    @dg.asset(
        key=key, deps=_upstream(target), group_name="plan", kinds={"duckdb", "polars"},
        partitions_def=LEGAL_ENTITY if target.per_company else None,
        description=f"What the next push would write to `{mapping.staging_table}` (→ `{mapping.target_table}`): "
                    f"inserts and changes per coalesce key ({', '.join(mapping.coalesce)}) against the last pushed "
                    f"state, and deactivations of records gone from F&O.",
        owners=["team:integration"], tags={"direction": "d365_to_snow"}, check_specs=checks,
        metadata={"staging_table": mapping.staging_table, "target_table": mapping.target_table,
                  "coalesce": list(mapping.coalesce)},
    )
    def _plan(context: dg.AssetExecutionContext, snow: ServiceNowResource, warehouse: WarehouseResource,
              mass_change: MassChangeResource) -> Iterator[dg.Output[SyncPlan] | dg.AssetCheckResult]:
        settings = warehouse.settings
        legal_entity = context.partition_key if target.per_company else None
        wh = warehouse.open()
        plan = build_plan(target, wh, mapping_context(settings), legal_entity=legal_entity,
                          configured_legal_entities=settings.legal_entities,
                          mapping=target.mapping(snow.mappings(wh)), schema=snow.instance_schema(wh))
        review = review_deactivations(plan, wh, settings.erp_source, mass_change.acceptance())
        if review.accepted and review.acceptance is not None:
            plan = replace(plan, deactivation_note=review.acceptance.note)
            # Recorded on the run whoever launched it (the CLI sets the same tags at launch, the UI does not).
            context.instance.add_run_tags(context.run.run_id, review.acceptance.tags())
        counts = plan.counts
        context.log.info(f"{mapping.target_table} ({legal_entity or 'shared'}): {counts}")
        # The same keys on every run (zeros included): the Plots tab draws each count across runs.
        metadata: dict[str, object] = {f"rows_{k}": v for k, v in counts.items()}
        metadata["dagster/row_count"] = plan.diff.to_push.height + plan.diff.deletions.height  # rows in the plan
        metadata["held_back_by_reason"] = reasons_table(plan.held_back, "_reason")
        if plan.diff.to_push.height:
            metadata["preview_changes"] = preview_table(plan.diff.to_push)
        yield dg.Output(plan, metadata=metadata)
        yield fit_check(plan)
        yield _deactivation_check(review)
        if target.validate_accounts:
            yield _account_check(plan, warehouse)

    return _plan


def fit_check(plan: SyncPlan) -> dg.AssetCheckResult:
    findings = [f for f in plan.findings if f.severity != "info"]
    metadata: dict[str, object] = {"blocking": len(plan.blocked), "warnings": len(findings) - len(plan.blocked),
                                   "key_mode": plan.bound.mode if plan.bound else ""}
    if findings:
        metadata["findings"] = preview_table(pl.DataFrame([f.as_dict() for f in findings]),
                                             ["severity", "label", "message"])
    # Warnings (a mandatory field F&O has no source for) are listed, not failed on: they hold on every run until
    # an admin acts, and a check that always warns teaches people to ignore checks.
    return dg.AssetCheckResult(check_name=FIT_CHECK, passed=not plan.blocked, severity=dg.AssetCheckSeverity.ERROR,
                               metadata=metadata, description=plan.blocked[0].message if plan.blocked else None)


def _deactivation_check(review: DeactivationReview) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {"partition": review.scope, "deactivations": review.deactivations,
                                   "active_records": review.active, "share": round(review.share, 4),
                                   "sample_keys": dg.MetadataValue.md("\n".join(f"- `{k}`" for k in review.sample)
                                                                      or "none")}
    if review.acceptance is not None and review.accepted:
        metadata.update({"accepted_by": review.acceptance.by,
                         "accepted_at": review.acceptance.at.isoformat(timespec="seconds")})
    return dg.AssetCheckResult(check_name=DEACTIVATION_CHECK, passed=not review.blocked, metadata=metadata,
                               description=review.sentence())


def _account_check(plan: SyncPlan, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    # Re-checked independently of build_plan's split: the blocking gate must not trust the code it guards.
    rechecked = check_account_references(plan.diff.to_push, reference_data(warehouse.open()),
                                         **LINE_ACCOUNT_COLUMNS)
    violations = rechecked.filter(pl.col("_reason") != "")
    held = plan.held_back
    metadata: dict[str, object] = {"legal_entity": plan.legal_entity or "all",
                                   "lines_to_push": plan.diff.to_push.height, "held_back": held.height,
                                   "violations_in_push": violations.height}
    if violations.height:
        metadata["violations"] = preview_table(violations, ["_business_key", "_reason"])
        return dg.AssetCheckResult(check_name=ACCOUNTS_CHECK, passed=False, metadata=metadata,
                                   description="Lines about to be pushed reference missing or inactive accounts.")
    if held.height:
        metadata["held_back_by_reason"] = reasons_table(held, "_reason")
        return dg.AssetCheckResult(check_name=ACCOUNTS_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata=metadata,
                                   description=f"{held.height} line(s) held back; the others are pushed.")
    return dg.AssetCheckResult(check_name=ACCOUNTS_CHECK, passed=True, metadata=metadata)


def build_push_asset(target: SyncTarget) -> dg.AssetsDefinition:
    mapping = target.mapping()

    @dg.asset(
        key=push_key(target), ins={"plan": dg.AssetIn(plan_key(target))}, group_name="servicenow",
        deps=[push_key(TARGETS_BY_NAME[name]) for name in target.after],
        kinds={"servicenow"}, partitions_def=LEGAL_ENTITY if target.per_company else None,
        description=f"ServiceNow `{mapping.target_table}`, kept current through the Import Set API "
                    f"(`{mapping.staging_table}`, coalesce on {', '.join(mapping.coalesce)}). Every record sent "
                    f"has an audit row.",
        owners=["team:integration"], tags={"direction": "d365_to_snow", "system": "servicenow"},
        retry_policy=PUSH_RETRY,
        metadata={"staging_table": mapping.staging_table, "target_table": mapping.target_table},
    )
    @fail_fast_on_configuration
    def _push(context: dg.AssetExecutionContext, plan: SyncPlan, snow: ServiceNowResource,
              warehouse: WarehouseResource) -> dg.MaterializeResult:
        started = datetime.now(UTC)
        total = plan.diff.to_push.height + plan.diff.deletions.height

        logged = [0]

        def progress(done: int, of: int) -> None:
            # About every tenth of the push (and at least 2,000 rows apart): each line is an event the Dagster
            # instance stores with its own commit, and one per 200-row batch cost seconds on a large push.
            if done == of or done - logged[0] >= max(PROGRESS_ROWS, of // 10):
                logged[0] = done
                context.log.info(f"{mapping.staging_table}: {done}/{of} rows sent")

        audit_ctx = AuditContext(context.run.run_id, context.asset_key.to_user_string(),
                                 context.partition_key if target.per_company else None,
                                 attempt=context.retry_number + 1)
        summary = push_plan(plan, snow.client(), warehouse.open(), audit_ctx, progress=progress)
        context.log.info(f"{mapping.target_table}: {summary.outcomes or 'nothing to push'} of {total} rows")
        metadata = push_metadata(plan, summary, context.run.run_id)
        metadata["servicenow_list"] = servicenow_list_url(warehouse.settings.require("snow_url"),
                                                          mapping.target_table, started, datetime.now(UTC))
        if summary.unsent_chunks:
            # Everything that did arrive is recorded; what did not is audited as an error. Failing lets the retry
            # policy and the run status say the cycle did not complete.
            raise dg.Failure(description=f"{summary.unsent_chunks} call(s) to {mapping.staging_table} failed; "
                                         f"{summary.errors.height} rows audited as errors will be sent again",
                             metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)

    return _push


def push_metadata(plan: SyncPlan, summary: PushSummary, run_id: str) -> dict[str, object]:
    """What one push did, for the UI: the same numeric keys on every run (zeros included), so the Plots tab charts
    them over time. ``rows_sent_this_run`` counts rows sent by this run, not rows in the table: a push with nothing
    to send is a 0, and Dagster's ``dagster/row_count`` ("Row count" on the overview) would read as an empty
    table."""
    metadata: dict[str, object] = {
        "rows_sent_this_run": plan.diff.to_push.height + plan.diff.deletions.height,
        "deactivations_sent": plan.diff.deletions.height,
        **{outcome: summary.outcomes.get(outcome, 0) for outcome in PUSH_OUTCOMES},
        **{outcome: n for outcome, n in summary.outcomes.items() if outcome not in (*PUSH_OUTCOMES, "error")},
        "errors": summary.errors.height,
        "held_back": plan.held_back.height,
        "held_back_by_reason": reasons_table(plan.held_back, "_reason"),
        "errors_by_reason": reasons_table(summary.errors, "message"),
    }
    sent = plan.diff.to_push.get_column(BUSINESS_KEY).head(SAMPLES).to_list()
    failed = summary.errors.get_column(BUSINESS_KEY).head(SAMPLES).to_list()
    held = plan.held_back.get_column(BUSINESS_KEY).head(SAMPLES).to_list()
    metadata["audit"] = audit_commands(run_id, [*(("sent", k) for k in sent if k not in failed),
                                                *(("failed", k) for k in failed), *(("held back", k) for k in held)])
    return metadata


plan_assets = [build_plan_asset(t) for t in TARGETS]
push_assets = [build_push_asset(t) for t in TARGETS]
