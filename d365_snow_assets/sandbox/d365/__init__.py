"""The fake Dynamics 365 F&O OData service (reference/d365.md)."""

from .app import build_d365_app
from .state import D365State

__all__ = ["D365State", "build_d365_app"]
