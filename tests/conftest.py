"""Suite-wide isolation: the developer's own D365SNOW_* settings must never steer a test to a real system."""

from __future__ import annotations

import os

import pytest

for _name in [n for n in os.environ if n.startswith("D365SNOW_")]:
    del os.environ[_name]
# msal would otherwise probe the Azure instance metadata service for a region (reference/d365.md §1.2).
os.environ.pop("MSAL_FORCE_REGION", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos", action="store_true",
                     help="also run the chaos scenarios of tests/chaos (about three minutes per seed; CHAOS_SEED=<n> "
                          "replays a seed, else a random one is drawn and printed)")
