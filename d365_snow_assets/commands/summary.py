"""What one ``d365-snow sync`` did, read back from the audit store of the cycle's runs.

The counts come from the audit rows, not from the materialization metadata: a step that failed never emitted its
metadata, yet every record it sent or held back has an audit row (DESIGN §7). Each record counts once, with the
outcome of its last attempt in the cycle (a step retried after a lost answer audits the same record twice).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..invoices.payloads import HEADER_ENTITY, LINE_ENTITY
from ..warehouse import Warehouse
from .runs import RunOutcome, StepFailure

# Every audit outcome (warehouse.audit.OUTCOMES), in the order a reader expects: sent, then invoices, then not sent.
OUTCOME_ORDER = ("inserted", "updated", "ignored", "skipped", "created", "reused", "posted", "rejected", "error")
PUSH_PREFIX = "servicenow/"
SAMPLES = 2  # business keys shown per reason: enough to `d365-snow trace` one, short enough for a terminal
REASONS_SHOWN = 5  # reasons listed per outcome in the terminal, most records first (JSON has them all)


@dataclass(frozen=True)
class OutcomeCounts:
    """Records of one target (ServiceNow table or F&O entity) and legal entity, by the outcome of their last
    attempt in the cycle; ``asset`` is the asset that audited them."""

    direction: str
    target: str
    legal_entity: str | None
    asset: str
    counts: dict[str, int]


@dataclass(frozen=True)
class ReasonGroup:
    """Records held back (``rejected``) or failed (``error``) for one reason, with sample keys for ``trace``."""

    direction: str
    target: str
    legal_entity: str | None
    outcome: str
    reason: str
    count: int
    samples: list[str]


@dataclass
class CycleSummary:
    """The outcome of one cycle: its runs, what happened to the records, and why records did not go through."""

    cycle: str
    runs: list[RunOutcome]
    counts: list[OutcomeCounts] = field(default_factory=list)
    reasons: list[ReasonGroup] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(run.success for run in self.runs)

    def retry_next_run(self) -> dict[str | None, int]:
        """Invoices each legal entity's next run takes up again (the posting step's own count)."""
        out: dict[str | None, int] = {}
        for run in self.runs:
            value = run.materializations.get("invoices/posting", {}).get("retry_next_run")
            if run.job == "invoice_round_trip":
                out[run.partition] = out.get(run.partition, 0) + (value if isinstance(value, int) else 0)
        return out


_CYCLE_ROWS = """
    WITH cycle AS (
        SELECT *, row_number() OVER (PARTITION BY direction, entity, business_key
                                     ORDER BY "at" DESC, attempt DESC) AS nth
        FROM audit WHERE list_contains($runs, run_id))
"""


def summarize_cycle(warehouse: Warehouse, cycle: str, runs: list[RunOutcome]) -> CycleSummary:
    """Counts and reasons of the records the cycle's runs audited; every push and invoice run shows up, with zeros
    when it moved nothing."""
    run_ids = [run.run_id for run in runs]
    with warehouse.reader() as con:
        counted = con.sql(_CYCLE_ROWS + """
            SELECT direction, entity, partition, asset_key, outcome, count(*) FROM cycle WHERE nth = 1
            GROUP BY ALL""", params={"runs": run_ids}).fetchall()
        reasons = con.sql(_CYCLE_ROWS + """
            SELECT direction, entity, partition, outcome, coalesce(message, ''), count(*),
                   list(business_key ORDER BY business_key)[1:$samples]
            FROM cycle WHERE nth = 1 AND outcome IN ('rejected', 'error')
            GROUP BY ALL ORDER BY entity, partition NULLS FIRST, outcome, count(*) DESC, 5""",
                          params={"runs": run_ids, "samples": SAMPLES}).fetchall()
    table: dict[tuple[str, str, str | None, str], dict[str, int]] = {}
    for run in runs:  # what ran, even when it audited nothing
        for asset in run.materializations:
            if asset.startswith(PUSH_PREFIX):
                table.setdefault(("d365_to_snow", asset.removeprefix(PUSH_PREFIX), run.partition, asset), {})
        if run.job == "invoice_round_trip":
            table.setdefault(("snow_to_d365", HEADER_ENTITY, run.partition, "invoices/posting"), {})
    for direction, entity, partition, asset, outcome, n in counted:
        key = (direction, entity, partition, asset or "")
        bucket = table.setdefault(key, {})
        bucket[outcome] = bucket.get(outcome, 0) + n
    counts = [OutcomeCounts(d, t, le, a, {o: c.get(o, 0) for o in OUTCOME_ORDER})
              for (d, t, le, a), c in sorted(table.items(), key=lambda i: (i[0][0], i[0][1], i[0][2] or ""))]
    groups = [ReasonGroup(d, t, le, o, reason, n, list(samples)) for d, t, le, o, reason, n, samples in reasons]
    return CycleSummary(cycle, runs, counts, groups)


def fatal_failure(runs: list[RunOutcome]) -> StepFailure | None:
    """The failure that stopped the cycle (configuration or refused credentials), if one did."""
    return next((f for run in runs for f in run.failures if f.fatal), None)


# -- JSON ------------------------------------------------------------------------------------------------------
def runs_json(runs: list[RunOutcome]) -> dict[str, Any]:
    """What every cycle command reports about its runs: ok/error, checks, failed steps and the runs."""
    failed_steps = [{"job": run.job, "legal_entity": run.partition, "run_id": run.run_id, "step": f.step,
                     "message": f.message, "kind": f.kind} for run in runs for f in run.failures]
    checks = [check for run in runs for check in run.checks]
    ok = all(run.success for run in runs)
    fatal = fatal_failure(runs)
    error = None if ok else {
        "kind": fatal.kind if fatal else "failed",
        "message": fatal.message if fatal else f"{len(failed_steps)} step(s) failed; see failed_steps"}
    return {
        "ok": ok,
        "error": error,
        "checks": [{"asset": c.asset, "check": c.check, "legal_entity": c.legal_entity, "passed": c.passed,
                    "severity": c.severity, "description": c.description} for c in checks],
        "failed_checks": [c.name for c in checks if not c.passed],
        "failed_steps": failed_steps,
        "runs": [{"job": run.job, "legal_entity": run.partition, "run_id": run.run_id, "success": run.success,
                  "error": run.error}
                 for run in runs],
    }


def summary_json(summary: CycleSummary, *, config: dict[str, Any], log_file: Path | None) -> dict[str, Any]:
    """The documented ``sync --json`` shape (README "Scripting"); every count is present, zeros included."""
    pushed: dict[str, dict[str, int]] = {}
    for row in summary.counts:
        if row.asset.startswith(PUSH_PREFIX):
            total = pushed.setdefault(row.target, dict.fromkeys(("inserted", "updated", "ignored", "skipped",
                                                                   "rejected", "errors"), 0))
            for outcome in ("inserted", "updated", "ignored", "skipped", "rejected"):
                total[outcome] += row.counts[outcome]
            total["errors"] += row.counts["error"]
    invoices = dict.fromkeys(("created", "reused", "posted", "skipped", "rejected", "error"), 0)
    for row in summary.counts:
        if row.target == HEADER_ENTITY:
            for outcome in invoices:
                invoices[outcome] += row.counts[outcome]
    invoices["retry_next_run"] = sum(summary.retry_next_run().values())
    runs = runs_json(summary.runs)
    return {
        "ok": runs["ok"],
        "error": runs["error"],
        "cycle": summary.cycle,
        "config": config,
        "log_file": str(log_file) if log_file else None,
        "pushed": pushed,
        "invoices": invoices,
        "outcomes": [{"direction": r.direction, "target": r.target, "legal_entity": r.legal_entity, **r.counts}
                     for r in summary.counts],
        "reasons": [{"direction": g.direction, "target": g.target, "legal_entity": g.legal_entity,
                     "outcome": g.outcome, "reason": g.reason, "count": g.count, "samples": g.samples}
                    for g in summary.reasons],
        **{k: v for k, v in runs.items() if k not in ("ok", "error")},
    }


# -- the terminal ----------------------------------------------------------------------------------------------
PUSH_COLUMNS = {"inserted": "inserted", "updated": "updated", "ignored": "ignored", "skipped": "skipped",
                "rejected": "held back", "error": "errors"}
INVOICE_COLUMNS = {"created": "created", "reused": "reused", "posted": "posted", "skipped": "skipped",
                   "rejected": "rejected", "error": "errors"}


def _le(legal_entity: str | None) -> str:
    return legal_entity.upper() if legal_entity else "all"


def print_outcome_table(title: str, rows: list[OutcomeCounts], columns: dict[str, str], console: Console, *,
                        extra: tuple[str, dict[str | None, int]] | None = None) -> None:
    """One row per target (``all`` when it is not per legal entity), else one per legal entity under its target.

    No vertical rules, and headers wrap at their space ("held back"): the widest target name still fits an
    80-column terminal next to the counts. A name that does not fit folds onto a second line, never cut short.
    """
    if not rows:
        return
    headers = [*columns.values(), *([extra[0]] if extra else [])]
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), collapse_padding=True, title_justify="left")
    table.add_column("target / legal entity", overflow="fold", min_width=12)
    for header in headers:
        table.add_column(header, justify="right", max_width=max(7, *(len(w) for w in header.split())))
    by_target: dict[str, list[OutcomeCounts]] = defaultdict(list)
    for row in rows:
        by_target[row.target].append(row)
    for target, group in by_target.items():
        if len(group) == 1 and group[0].legal_entity is None:
            table.add_row(Text(f"{target} (all)"), *_cells(group[0], columns, extra))
            continue
        table.add_row(Text(target))
        for row in group:
            table.add_row(Text(f"  {_le(row.legal_entity)}"), *_cells(row, columns, extra))
    console.print(table)


def _cells(row: OutcomeCounts, columns: dict[str, str],
           extra: tuple[str, dict[str | None, int]] | None) -> list[str]:
    cells = [f"{row.counts[c]:,}" for c in columns]
    if extra is not None:
        cells.append(f"{extra[1].get(row.legal_entity, 0):,}")
    return cells


# One line per column header of the two summary tables (`d365-snow demo` prints them under the tables).
PUSH_LEGEND = {
    "inserted": "ServiceNow created the record (no record with its key existed)",
    "updated": "ServiceNow changed the record with the same key to F&O's values",
    "ignored": "ServiceNow already had these values: nothing changed",
    "skipped": "ServiceNow skipped the row: a value it matches records on was missing",
    "held back": "not sent: the record breaks a rule (reasons below); sent once fixed in F&O",
    "errors": "ServiceNow refused the row or it could not be sent: the next cycle sends it again",
}
INVOICE_LEGEND = {
    "created": "created in F&O as a pending vendor invoice",
    "reused": "F&O already had it (same vendor and invoice number): not created twice",
    "posted": "F&O had already posted it: ServiceNow got the voucher, F&O was not written",
    "skipped": "already processed: nothing to do",
    "rejected": "not posted: it fails a check (reasons below), shown to the AP clerk in ServiceNow",
    "errors": "F&O refused it or a system failed: its message in ServiceNow says what to correct, or that the "
              "next cycle tries again",
    "retry next run": "F&O's answer was lost and a second look did not find it: the next cycle looks again",
}


def print_summary(summary: CycleSummary, console: Console, *, legend: bool = False) -> None:
    """Tables of outcomes per target and legal entity (``legend``: each column explained in a line), then reasons
    with sample keys, checks and failed steps."""
    # Every record sent to ServiceNow: the pushes, and the posted status written back to the outbound invoices.
    pushed = [r for r in summary.counts if r.direction == "d365_to_snow"]
    print_outcome_table("F&O → ServiceNow: records by the outcome of their last attempt", pushed, PUSH_COLUMNS,
                        console)
    if legend and pushed:
        _print_legend(PUSH_LEGEND, console)
    invoices = [replace(r, target="invoices") for r in summary.counts if r.target == HEADER_ENTITY]
    print_outcome_table("ServiceNow → F&O: approved invoices", invoices, INVOICE_COLUMNS, console,
                        extra=("retry next run", summary.retry_next_run()))
    if legend and invoices:
        _print_legend(INVOICE_LEGEND, console)
    _print_reasons(summary, console)
    print_runs(summary.runs, console)


def _print_legend(meanings: dict[str, str], console: Console) -> None:
    """Each word on a line of its own, its meaning wrapped beside it."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), style="dim")
    table.add_column(no_wrap=True, style="dim")
    table.add_column(overflow="fold", style="dim")
    for word, meaning in meanings.items():
        table.add_row(word, meaning)
    console.print(Padding(table, (0, 0, 0, 2)))


def _indented(text: str, indent: int, style: str = "") -> Padding:
    """Wrapped text with every line indented (a long sentence stays visibly under its heading)."""
    return Padding(Text(text, style=style), (0, 0, 0, indent), expand=False)


def print_runs(runs: list[RunOutcome], console: Console) -> None:
    """Checks that did not pass, named with their legal entity and reason, and the steps that failed and why."""
    failing = [c for run in runs for c in run.checks if not c.passed]
    if failing:
        console.print("Checks not passing:")
        for c in failing:
            severity = "warning" if c.severity == "WARN" else "failed"
            console.print(_indented(f"{_le(c.legal_entity)}: {c.check} ({severity})", 2,
                                    "yellow" if severity == "warning" else "red"))
            console.print(_indented(f"{c.asset}: {c.description or 'no description'}", 4))
    by_message: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        for f in run.failures:
            scope = _le(run.partition) if run.partition else "reference data"
            by_message[f.message].append(f"{scope} {f.step} (run {run.run_id[:8]})")
    if by_message:
        console.print("Steps that failed:")
        for message, steps in by_message.items():
            console.print(_indented("✗ " + ", ".join(steps), 2, "red"))
            console.print(_indented(message, 4))


_REASON_HEADINGS = {
    "rejected": "Held back or rejected (not sent; fix the record in F&O or ServiceNow, the next cycle sends it):",
    "error": "Failed (audited as errors; the next cycle or `d365-snow replay` sends them again):",
}


def _label(target: str) -> str:
    return {HEADER_ENTITY: "invoices", LINE_ENTITY: "invoice lines"}.get(target, target)


def _print_reasons(summary: CycleSummary, console: Console) -> None:
    """One entry per reason (the same reason often holds across targets and legal entities): where, how many,
    and sample keys for ``d365-snow trace``."""
    for outcome, heading in _REASON_HEADINGS.items():
        by_reason: dict[str, list[ReasonGroup]] = defaultdict(list)
        for g in summary.reasons:
            if g.outcome == outcome:
                by_reason[g.reason].append(g)
        if not by_reason:
            continue
        console.print(heading)
        ranked = sorted(by_reason.items(), key=lambda item: -sum(g.count for g in item[1]))
        for reason, groups in ranked[:REASONS_SHOWN]:
            per_target: dict[str, list[str]] = defaultdict(list)
            for g in groups:
                per_target[_label(g.target)].append(f"{_le(g.legal_entity)} {g.count:,}")
            where = "; ".join(f"{target}: {', '.join(places)}" for target, places in per_target.items())
            console.print(_indented(f"{reason or 'no reason recorded'}", 2))
            console.print(_indented(where, 4))
            samples = [key for g in sorted(groups, key=lambda g: -g.count)[:1] for key in g.samples]
            console.print(_indented(f"e.g. {', '.join(samples)}", 4, "dim"))
        rest = ranked[REASONS_SHOWN:]
        if rest:
            count = sum(g.count for _, groups in rest for g in groups)
            console.print(_indented(f"{count:,} more with {len(rest)} other reason(s) (all of them in "
                                    f"`d365-snow sync --json`)", 2))
