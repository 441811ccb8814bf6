"""Step outputs (the invoice poll, the sync plans) pickled under the Dagster instance's storage directory, like
Dagster's default filesystem IO manager, but replaced atomically.

The file of an asset partition is shared by every run of that partition. Dagster's default writes it in place
(truncate, then write), so a second run started at the same moment could read an empty or half-written pickle
and fail its step. Writing a temporary file beside it and renaming it over the old one means a reader sees the
previous output or the new one, never a torn one.
"""

import os
import pickle
import uuid
from typing import Any

import dagster as dg
from upath import UPath


class AtomicPickleIOManager(dg.UPathIOManager):
    extension = ""

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with temporary.open("wb") as file:
                pickle.dump(obj, file, pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        # Only this connector's runs write under the instance's storage directory (the trust of Dagster's default).
        with path.open("rb") as file:
            return pickle.load(file)  # noqa: S301


class AtomicFilesystemIOManager(dg.ConfigurableIOManagerFactory):
    """The connector's IO manager: step outputs under ``<instance storage>/``, each written atomically."""

    def create_io_manager(self, context: dg.InitResourceContext) -> AtomicPickleIOManager:
        instance = context.instance
        if instance is None:  # pragma: no cover - Dagster always passes the instance to a run's resources
            raise dg.DagsterInvariantViolationError("the IO manager needs the Dagster instance")
        return AtomicPickleIOManager(base_path=UPath(instance.storage_directory()))
