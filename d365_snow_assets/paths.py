"""Where the connector keeps its state under ``D365SNOW_HOME`` (DESIGN.md §3, §7)."""

from __future__ import annotations

import shutil
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
