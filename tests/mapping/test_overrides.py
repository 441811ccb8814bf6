import polars as pl
import pytest

from d365_snow_assets.mapping import MappingContext, MappingError, apply_mapping, apply_overrides, overrides_from_toml
from d365_snow_assets.mapping.spec import Const, Field

from .test_targets import vendor


def test_toml_overrides_applied(tmp_path):
    path = tmp_path / "d365snow.toml"
    path.write_text("""
[mapping.sn_fcms_intg_imp_supplier]
name = "VendorSearchName"
credit_limit = { field = "CreditLimit", format = "amount" }
remove = ["tax_id", "phone"]

[mapping.sn_fcms_intg_imp_supplier.constants]
u_channel = "erp"
""")
    mappings = apply_overrides(overrides_from_toml(path))
    supplier = mappings["sn_fcms_intg_imp_supplier"]
    assert supplier.sources["name"] == Field("VendorSearchName")
    assert supplier.sources["u_channel"] == Const("erp")
    assert "tax_id" not in supplier.column_names and "phone" not in supplier.column_names
    frame = pl.DataFrame([vendor(VendorSearchName="ACME", CreditLimit=5000)])
    row = apply_mapping(supplier, frame, MappingContext()).row(0, named=True)
    assert (row["name"], row["credit_limit"], row["u_channel"]) == ("ACME", "5000.00", "erp")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"sn_nope": {}}, "unknown staging table"),
    ({"sn_fcms_intg_imp_supplier": {"name": "VendorNmae"}}, "'VendorNmae' is not a known VendorsV2 field"),
    ({"sn_fcms_intg_imp_supplier": {"remove": ["supplier_code"]}}, "coalesce key"),
    ({"sn_fcms_intg_imp_supplier": {"remove": ["nope"]}}, "no such staging column"),
    ({"sn_fcms_intg_imp_supplier": {"x": {"field": "CreditLimit", "format": "money"}}}, "unknown value format"),
    ({"sn_fcms_intg_imp_supplier": {"x": {"rule": "magic"}}}, "unknown rule"),
])
def test_override_errors(overrides, message):
    with pytest.raises(MappingError, match=message):
        apply_overrides(overrides)


def test_extension_fields_are_allowed_when_declared():
    mappings = apply_overrides({"sn_fcms_intg_imp_supplier": {"region": "ZZRegion",
                                                               "extra_source_fields": ["ZZRegion"]}})
    assert mappings["sn_fcms_intg_imp_supplier"].sources["region"] == Field("ZZRegion")
