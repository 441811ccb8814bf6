"""Suite-wide isolation: the developer's own D365SNOW_* settings must never steer a test to a real system."""

from __future__ import annotations

import os

import pytest

for _name in [n for n in os.environ if n.startswith("D365SNOW_")]:
    del os.environ[_name]
# The CLI's rich consoles fix their width when they are made (at import) if COLUMNS is set then, and a
# pytest-xdist worker starts with COLUMNS=80. Without it they read COLUMNS at each print, so the width a test gives
# its CliRunner call or subprocess is the width it gets.
os.environ.pop("COLUMNS", None)
# msal would otherwise probe the Azure instance metadata service for a region (reference/d365.md §1.2).
os.environ.pop("MSAL_FORCE_REGION", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos", action="store_true",
                     help="also run the chaos scenarios of tests/chaos (about three minutes per seed; CHAOS_SEED=<n> "
                          "replays a seed, else a random one is drawn and printed)")
