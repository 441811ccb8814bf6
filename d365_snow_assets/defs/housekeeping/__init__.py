"""Housekeeping: keep the Dagster database bounded and expire audit rows past their retention (issue 9)."""
