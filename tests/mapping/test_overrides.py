from datetime import UTC, datetime

import polars as pl
import pytest

from d365_snow_assets.discovery.model import Column, InstanceSchema, TableSchema
from d365_snow_assets.mapping import MappingContext, MappingError, apply_mapping, apply_overrides, overrides_from_toml
from d365_snow_assets.mapping.spec import Const, Field

from .test_targets import vendor


def test_toml_overrides_applied(tmp_path):
    path = tmp_path / "d365snow.toml"
    path.write_text("""
[mapping.sn_fcms_intg_imp_supplier]
"Legal name" = "VendorSearchName"
"Duns" = { field = "CreditLimit", format = "amount" }
remove = ["Tax id", "Primary phone number"]

[mapping.sn_fcms_intg_imp_supplier.constants]
Industry = "Manufacturing"

[mapping.sn_fcms_intg_imp_supplier.elements]
"Legal name" = "u_legal_name"
""")
    mappings = apply_overrides(overrides_from_toml(path))
    supplier = mappings["sn_fcms_intg_imp_supplier"]
    assert supplier.sources["Legal name"] == Field("VendorSearchName")
    assert supplier.sources["Industry"] == Const("Manufacturing")
    assert dict(supplier.element_overrides) == {"Legal name": "u_legal_name"}
    assert "Tax id" not in supplier.column_names and "Primary phone number" not in supplier.column_names
    frame = pl.DataFrame([vendor(VendorSearchName="ACME", CreditLimit=5000)])
    row = apply_mapping(supplier, frame, MappingContext()).row(0, named=True)
    assert (row["Legal name"], row["Duns"], row["Industry"]) == ("ACME", "5000.00", "Manufacturing")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"sn_fcms_intg_imp_suplier": {}}, "unknown staging table.*did you mean 'sn_fcms_intg_imp_supplier'"),
    ({"sn_fcms_intg_imp_supplier": {"Legal nmae": "VendorSearchName"}},
     "has no field labelled 'Legal nmae' \\(did you mean 'Legal name'\\?\\)"),
    ({"sn_fcms_intg_imp_supplier": {"Legal name": "VendorNmae"}},
     "'VendorNmae' is not a known VendorsV2 field \\(did you mean 'VendorName'|'VendorNmae' is not a known"),
    ({"sn_fcms_intg_imp_supplier": {"remove": ["ERP company code"]}}, "connector's key"),
    ({"sn_fcms_intg_imp_supplier": {"remove": ["Duns"]}}, "does not send it"),
    ({"sn_fcms_intg_imp_supplier": {"Duns": {"field": "CreditLimit", "format": "money"}}}, "unknown value format"),
    ({"sn_fcms_intg_imp_supplier": {"Duns": {"rule": "magic"}}}, "unknown rule"),
    ({"sn_fcms_intg_imp_supplier": {"constants": {"u_channel": "erp"}}}, "has no field labelled 'u_channel'"),
])
def test_override_errors(overrides, message):
    with pytest.raises(MappingError, match=message):
        apply_overrides(overrides)


def test_the_instances_own_fields_are_known_once_discovered():
    staging = TableSchema("sn_fcms_intg_imp_supplier", (Column("u_channel", "Channel", table="t"),))
    schema = InstanceSchema("https://x", datetime.now(UTC), {"sn_fcms_intg_imp_supplier": staging})
    mappings = apply_overrides({"sn_fcms_intg_imp_supplier": {"constants": {"u_channel": "erp"}}}, schema=schema)
    assert mappings["sn_fcms_intg_imp_supplier"].sources["Channel"] == Const("erp")


def test_extension_fields_are_allowed_when_declared():
    mappings = apply_overrides({"sn_fcms_intg_imp_supplier": {"Industry": "ZZRegion",
                                                               "extra_source_fields": ["ZZRegion"]}})
    assert mappings["sn_fcms_intg_imp_supplier"].sources["Industry"] == Field("ZZRegion")
