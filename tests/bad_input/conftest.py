"""The bad-input catalogue runs on the asset-graph fixture: a small sandbox, a home, the CLI env."""

from tests.defs.conftest import Connector, connector

__all__ = ["Connector", "connector"]
