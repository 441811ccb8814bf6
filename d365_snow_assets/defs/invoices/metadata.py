"""Materialization metadata of the invoice assets that reads the same way every run (issue 18): every count under
the same key, zeros included, so the UI's Plots tab charts each one over time; and a few business keys, each with
the command that shows its whole history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from ..snow_sync.metadata import audit_commands

TRACE_SAMPLES = 5


def counts(values: Iterable[str], keys: Sequence[str]) -> dict[str, int]:
    """How often each of ``keys`` occurs in ``values``; every key present, 0 when it did not occur."""
    found = dict.fromkeys(keys, 0)
    for value in values:
        found[value] = found.get(value, 0) + 1
    return found


def trace_lines(keys: Iterable[str], what: str = "invoice") -> dg.MetadataValue:
    """Up to :data:`TRACE_SAMPLES` distinct business keys, in the order given (put the ones a reader most needs
    first), each as the ``d365-snow trace`` command to paste."""
    sample = list(dict.fromkeys(k for k in keys if k))[:TRACE_SAMPLES]
    return audit_commands(None, [(what, k) for k in sample])
