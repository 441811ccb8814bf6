"""The account rule of PO lines (DESIGN §5.1): a named GL account or cost center must exist and be active; a blank
one is no reference and passes (an item line's account comes from its posting profile at invoicing)."""

from __future__ import annotations

import polars as pl

from d365_snow_assets.validation.reference_data import ReferenceData, check_account_references

REFS = ReferenceData.from_snapshots(
    pl.DataFrame({"MainAccountId": ["600100", "600200"], "IsSuspended": ["No", "Yes"]}),
    pl.DataFrame({"FinancialDimension": ["CostCenter"] * 3, "LegalEntityId": ["usmf", "", "usmf"],
                  "DimensionValue": ["CC01", "CC99", "CC02"], "IsSuspended": ["No", "No", "Yes"]}))


def test_blank_references_pass_and_named_ones_must_exist_and_be_active() -> None:
    rows = pl.DataFrame({
        "legal_entity": ["USMF"] * 7,
        "gl_account": ["", None, "600100", "600100", "600200", "699999", ""],
        "cost_center": ["", "CC01", None, "CC99", "CC01", "CC02", "CC77"],
    })
    reasons = check_account_references(rows, REFS).get_column("_reason").to_list()
    assert reasons == [
        "", "", "", "",
        "GL account 600200 is suspended",
        "GL account 699999 does not exist in F&O; cost center CC02 is suspended",
        "cost center CC77 does not exist for legal entity USMF",
    ]
