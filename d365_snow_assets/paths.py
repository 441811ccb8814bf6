"""Where the connector keeps its state under ``D365SNOW_HOME`` (DESIGN.md §3, §7)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

_PACKAGED_INSTANCE_YAML = Path(__file__).with_name("dagster_instance.yaml")


@dataclass(frozen=True)
class StatePaths:
    """The files and folders of one connector home."""

    home: Path

    @property
    def warehouse(self) -> Path:
        """The DuckDB file: snapshots, pushed state, cursors and the audit store."""
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        """``DAGSTER_HOME`` of CLI runs, so ``dagster dev`` pointed at it shows them."""
        return self.home / "dagster"

    def ensure(self) -> StatePaths:
        """Create the home (mode 0700: it holds the credential store) and a Dagster instance config."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        self.dagster_home.mkdir(exist_ok=True)
        instance_yaml = self.dagster_home / "dagster.yaml"
        if not instance_yaml.exists():
            shutil.copyfile(_PACKAGED_INSTANCE_YAML, instance_yaml)
        return self


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, the file created 0600 from the start (never briefly readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
