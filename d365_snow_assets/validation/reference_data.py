"""Do staging rows reference GL accounts and cost centers that exist and are active? (DESIGN §5.1, §5.2)

The same rules guard PO lines on their way to ServiceNow and invoice lines on their way to F&O, so they live here
once, vectorized: one anti-join per rule rather than a lookup per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..mapping.apply import REASON


@dataclass(frozen=True)
class ReferenceData:
    """Active-or-not sets of the reference data, built from the current snapshots."""

    gl_accounts: pl.DataFrame  # gl_account, gl_active
    cost_centers: pl.DataFrame  # legal_entity (upper-case, "" = shared), cost_center, cc_active

    @classmethod
    def from_snapshots(cls, main_accounts: pl.DataFrame, dimension_values: pl.DataFrame,
                       cost_center_dimension: str = "CostCenter") -> ReferenceData:
        """From ``MainAccounts`` and ``FinancialDimensionValues`` snapshot frames (F&O column names)."""
        gl = (main_accounts.select(pl.col("MainAccountId").cast(pl.String).alias("gl_account"),
                                   (pl.col("IsSuspended").cast(pl.String) != "Yes").alias("gl_active"))
              if main_accounts.height else pl.DataFrame(schema={"gl_account": pl.String, "gl_active": pl.Boolean}))
        if dimension_values.height:
            cc = dimension_values.filter(pl.col("FinancialDimension") == cost_center_dimension).select(
                pl.col("LegalEntityId").cast(pl.String).fill_null("").str.to_uppercase().alias("legal_entity"),
                pl.col("DimensionValue").cast(pl.String).alias("cost_center"),
                (pl.col("IsSuspended").cast(pl.String) != "Yes").alias("cc_active"))
        else:
            cc = pl.DataFrame(schema={"legal_entity": pl.String, "cost_center": pl.String, "cc_active": pl.Boolean})
        return cls(gl.unique("gl_account", keep="last"), cc.unique(["legal_entity", "cost_center"], keep="last"))


def check_account_references(rows: pl.DataFrame, refs: ReferenceData, *, legal_entity_column: str = "legal_entity",
                             gl_column: str = "gl_account", cost_center_column: str = "cost_center") -> pl.DataFrame:
    """``rows`` with a ``_reason`` column: ``""`` when both references are fine, else every problem in words.

    A cost center is valid when it exists for the row's legal entity or as a shared value (blank legal entity),
    and is not suspended; a company-specific value wins over a shared one with the same code. A blank GL account
    or cost center is no reference at all, so nothing to check (DESIGN §5.1: an item line's posting profile
    decides its account at invoicing, and many lines have no cost center).
    """
    le = pl.col(legal_entity_column).str.to_uppercase()
    specific = refs.cost_centers.filter(pl.col("legal_entity") != "").rename({"cc_active": "_cc_specific"})
    shared = (refs.cost_centers.filter(pl.col("legal_entity") == "").drop("legal_entity")
              .rename({"cc_active": "_cc_shared"}))
    joined = (
        rows.with_columns(le.alias("_le"))
        .join(refs.gl_accounts.rename({"gl_active": "_gl_active", "gl_account": gl_column}), on=gl_column,
              how="left")
        .join(specific.rename({"legal_entity": "_le", "cost_center": cost_center_column}),
              on=["_le", cost_center_column], how="left")
        .join(shared.rename({"cost_center": cost_center_column}), on=cost_center_column, how="left")
        .with_columns(pl.coalesce("_cc_specific", "_cc_shared").alias("_cc_active"))
    )
    gl, cc = pl.col(gl_column), pl.col(cost_center_column)
    problems = [
        pl.when(gl.fill_null("") == "").then(pl.lit(None, dtype=pl.String))
        .when(pl.col("_gl_active").is_null()).then(pl.format("GL account {} does not exist in F&O", gl))
        .when(~pl.col("_gl_active")).then(pl.format("GL account {} is suspended", gl)),
        pl.when(cc.fill_null("") == "").then(pl.lit(None, dtype=pl.String))
        .when(pl.col("_cc_active").is_null())
        .then(pl.format("cost center {} does not exist for legal entity {}", cc, pl.col("_le")))
        .when(~pl.col("_cc_active")).then(pl.format("cost center {} is suspended", cc)),
    ]
    return joined.with_columns(
        pl.concat_list(problems).list.drop_nulls().list.join("; ").alias(REASON)
    ).drop("_le", "_gl_active", "_cc_specific", "_cc_shared", "_cc_active")


def split_valid(rows: pl.DataFrame, refs: ReferenceData, **columns: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows whose references are fine, rows held back with their ``_reason``), order preserved."""
    checked = check_account_references(rows, refs, **columns)
    return (checked.filter(pl.col(REASON) == "").drop(REASON), checked.filter(pl.col(REASON) != ""))
