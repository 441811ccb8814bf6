"""No mass change from a partial view (DESIGN §7.1), decided in one place, without Dagster.

Two questions share one rule ("more than 10 records and more than 5 %"):

- may a plan deactivate what it would? A plan that would deactivate more than 5 % of a target's active pushed
  records in its partition, and more than 10, is not pushed unless the operator accepted a mass change of that
  target for this run (:func:`review_deactivations`);
- may a fresh F&O extract become the snapshot that plans and validation read? An answer with no rows where the
  current snapshot has rows, or with far fewer, is what lost read access looks like; it is held back, and the
  current snapshot stays, unless the operator accepted a mass change of a target that reads the entity
  (:func:`extract_suspicion`).

An acceptance (``d365-snow sync --accept-deactivations TARGET``, or the same as run config in the UI) names the
operator and the time; both end up in the run's tags and in the audit rows of the deactivations it lets through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..clients.errors import ConfigurationError
from ..warehouse import Warehouse, state
from .plan import SyncPlan
from .targets import TARGETS, TARGETS_BY_NAME

MAX_SHARE = 0.05
MAX_COUNT = 10
SAMPLE_KEYS = 20
RESOURCE_KEY = "mass_change"
TAG_TARGETS = "d365snow/accept_deactivations"
TAG_BY = "d365snow/accepted_by"
TAG_AT = "d365snow/accepted_at"


def is_mass_change(count: int, of: int) -> bool:
    """More than ``MAX_COUNT`` records and more than ``MAX_SHARE`` of ``of``."""
    return count > MAX_COUNT and count > MAX_SHARE * of


class AcceptanceError(ConfigurationError):
    """An acceptance that cannot be honoured: an unknown target, or nobody named as accepting it. A configuration
    error, so a run stops at once instead of retrying it."""


@dataclass(frozen=True)
class Acceptance:
    """An operator's acceptance of real mass deactivations of some targets, for one run."""

    targets: frozenset[str]
    by: str
    at: datetime

    @classmethod
    def of(cls, targets: Iterable[str], by: str, at: datetime | None = None) -> Acceptance | None:
        """The acceptance of ``targets`` (target names, e.g. ``gl_accounts``) by ``by``; None when no target."""
        names = frozenset(t.strip().lower() for t in targets if t.strip())
        if not names:
            return None
        unknown = sorted(names - set(TARGETS_BY_NAME))
        if unknown:
            raise AcceptanceError(f"--accept-deactivations names no target {', '.join(unknown)}; the targets are "
                                  f"{', '.join(t.name for t in TARGETS)}.")
        if not by.strip():
            raise AcceptanceError("An acceptance of mass deactivations must say who accepts them (accepted_by).")
        return cls(names, by.strip(), at or datetime.now(UTC))

    def covers(self, target: str) -> bool:
        return target in self.targets

    @property
    def note(self) -> str:
        """The words that go into the audit rows of the deactivations this acceptance lets through."""
        return f"mass deactivation accepted by {self.by} at {self.at.isoformat(timespec='seconds')}"

    def tags(self) -> dict[str, str]:
        return {TAG_TARGETS: ",".join(sorted(self.targets)), TAG_BY: self.by,
                TAG_AT: self.at.isoformat(timespec="seconds")}

    def run_config(self) -> dict[str, Any]:
        """The same acceptance as Dagster run config (what an operator enters in the UI's launchpad)."""
        return {"resources": {RESOURCE_KEY: {"config": {"accept_deactivations": sorted(self.targets),
                                                        "accepted_by": self.by,
                                                        "accepted_at": self.at.isoformat(timespec="seconds")}}}}


# -- plans ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeactivationReview:
    """What a plan would deactivate, against what its partition holds active in ServiceNow."""

    target: str
    scope: str  # the partition: a legal entity, or "shared"
    deactivations: int
    active: int  # pushed, not deactivated, in the plan's scope
    sample: tuple[str, ...]
    acceptance: Acceptance | None

    @property
    def share(self) -> float:
        return self.deactivations / self.active if self.active else float(self.deactivations > 0)

    @property
    def mass(self) -> bool:
        return is_mass_change(self.deactivations, self.active)

    @property
    def accepted(self) -> bool:
        """A mass change the operator accepted for this run: it is pushed, and audited with the acceptance."""
        return self.mass and self.acceptance is not None and self.acceptance.covers(self.target)

    @property
    def blocked(self) -> bool:
        return self.mass and not self.accepted

    def sentence(self) -> str:
        what = (f"{self.target} ({self.scope}): the plan would deactivate {self.deactivations:,} of "
                f"{self.active:,} active records ({self.share:.1%})")
        if self.blocked:
            return (f"{what}, more than {MAX_SHARE:.0%} and more than {MAX_COUNT}; nothing of it was pushed. If F&O "
                    f"really lost these records, run `d365-snow sync --accept-deactivations {self.target}`.")
        if self.accepted:
            return f"{what}; {self.acceptance.note if self.acceptance else ''}."
        return f"{what}."


def review_deactivations(plan: SyncPlan, warehouse: Warehouse, erp_source: str,
                         acceptance: Acceptance | None = None) -> DeactivationReview:
    """Judge ``plan``'s deactivations against the active records of its scope (the legal entities it diffed)."""
    if not plan.scope:
        raise ValueError(f"the plan of {plan.target.name} does not say which legal entities it compared")
    mapping = plan.target.mapping()
    with warehouse.reader() as con:
        active = state.active_count(con, mapping.target_table, erp_source, plan.scope)
    deletions = plan.diff.deletions
    sample = tuple(deletions.get_column(state.BUSINESS_KEY).head(SAMPLE_KEYS).to_list()) if deletions.height else ()
    return DeactivationReview(plan.target.name, plan.legal_entity or "shared", deletions.height, active, sample,
                              acceptance)


# -- extracts ------------------------------------------------------------------------------------------------------
def extract_suspicion(current_rows: int, rows: int) -> str | None:
    """Why an extract of ``rows`` rows must not replace a current snapshot of ``current_rows`` rows, or None
    (a :data:`~d365_snow_assets.warehouse.snapshots.Sanity`)."""
    if rows >= current_rows:
        return None
    if rows == 0:
        return (f"F&O answered with no rows where the current snapshot has {current_rows:,} (this is what lost read "
                f"access looks like)")
    if is_mass_change(current_rows - rows, current_rows):
        return (f"F&O answered with {rows:,} rows where the current snapshot has {current_rows:,} "
                f"({(current_rows - rows) / current_rows:.1%} fewer)")
    return None


def targets_reading(entity: str) -> tuple[str, ...]:
    """The targets whose plans read ``entity``'s snapshot: accepting a mass change of one lets its extract through."""
    return tuple(t.name for t in TARGETS
                 if entity in (t.mapping().source_entity, *t.mapping().related_entities))


__all__ = ["MAX_COUNT", "MAX_SHARE", "Acceptance", "AcceptanceError", "DeactivationReview", "extract_suspicion",
           "is_mass_change", "review_deactivations", "targets_reading"]
