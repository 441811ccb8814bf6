"""Sync use cases between the layers: plan (snapshots → mapping → validation → diff) and push (plan → ServiceNow →
pushed state + audit). Orchestration-agnostic: the Dagster assets and the CLI both call these."""
