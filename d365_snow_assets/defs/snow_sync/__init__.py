"""DuckDB → ServiceNow: per target, a plan asset (the diff, with held-back rows) and a push asset."""
