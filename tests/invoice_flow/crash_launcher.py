"""Test-only launcher: the `d365-snow` CLI in a process that SIGKILLs itself right after F&O confirmed an invoice
header POST and before any of its lines is sent, the one moment DESIGN §5.2's natural-key lookup exists for.

The fault is installed here, around the production ledger, so no production path reads a test switch. A hook in the
process under test is deterministic; a latency fault on the sandbox would make the kill racy.
Run as ``python tests/invoice_flow/crash_launcher.py sync --json``.
"""

from __future__ import annotations

import os
import signal

from d365_snow_assets.cli import app
from d365_snow_assets.invoices.adapters import D365Ledger
from d365_snow_assets.invoices.payloads import Payload

_create_header = D365Ledger.create_header


def _create_header_then_die(self: D365Ledger, payload: Payload) -> str:
    _create_header(self, payload)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: the process is gone")


if __name__ == "__main__":
    D365Ledger.create_header = _create_header_then_die  # type: ignore[method-assign]
    app()
