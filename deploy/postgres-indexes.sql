-- Optional, once, by a DBA (Dagster's "Database tuning" guide, step 1.1): partial indexes that make the housekeeping
-- job's deletes index scans instead of full scans of event_logs. CONCURRENTLY: no table lock; cannot run inside a
-- transaction block (psql runs each statement on its own by default). Harmless for Dagster's own migrations.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_clear_event_logs_user_logs
    ON event_logs (((event::jsonb ->> 'level')::integer), timestamp)  -- the guide's index, cast like the job's query
    WHERE dagster_event_type IS NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_clear_event_logs_system_events
    ON event_logs (dagster_event_type, timestamp)
    WHERE dagster_event_type IS NOT NULL;
