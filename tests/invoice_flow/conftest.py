"""The invoice flow runs on the same fixture as the asset-graph tests: a small sandbox, a home, the CLI env."""

from tests.defs.conftest import Connector, connector

__all__ = ["Connector", "connector"]
