"""The shared state of one sandbox: the three services' data, tokens and fault injectors."""

from __future__ import annotations

from .config import SandboxConfig
from .d365 import D365State
from .faults import FaultInjector
from .servicenow import SnowState
from .tokens import TokenRegistry

SERVICES = ("entra", "d365", "snow")


class SandboxWorld:
    """Everything the fake Entra ID, F&O and ServiceNow share; tests may inspect it directly."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.tokens = TokenRegistry()
        self.faults = {name: FaultInjector(name) for name in SERVICES}
        self.d365 = D365State(self.config)
        self.snow = SnowState(self.config, self.d365)

    def token_lifetime(self, service: str, default: int) -> int:
        """The lifetime for a new token: the fault profile's override, else the service default."""
        return self.faults[service].profile.token_lifetime_s or default
