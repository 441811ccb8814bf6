"""Business validation against the F&O reference-data snapshots (pure polars, no HTTP, no Dagster)."""
