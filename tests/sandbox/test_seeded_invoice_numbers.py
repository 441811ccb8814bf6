"""The chaos suite varies the sandbox's data seed; every seed must generate invoices whose validity the sandbox
knows (a "valid" invoice the real F&O would refuse would make the end-state assertions lie)."""

from __future__ import annotations

import pytest

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.world import SandboxWorld


@pytest.mark.parametrize("seed", [1, 7, 42, 99, 542253])
def test_generated_valid_invoice_numbers_fit_fno(seed: int) -> None:
    world = SandboxWorld(SandboxConfig(data=SandboxDataSize.small(seed=seed)))
    invoices = world.snow.select("sn_spend_intg_outbound_invoice")
    valid = [i for i in invoices if i["sys_id"] not in world.snow.invalid_invoices]
    assert valid
    assert all(len(i["supplier_invoice_number"]) <= 20 for i in valid), [i["supplier_invoice_number"] for i in valid]
