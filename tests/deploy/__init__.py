"""Production profile (deploy/): Postgres-backed instance, run queue, housekeeping."""
