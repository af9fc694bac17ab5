-- Retry budget by time, crash budget by lease expiries (docs/decisions.md, "Outbox").
-- first_failed_at: when the row's first recorded failure happened; retryable failures go dead
--   once it is older than the worker's OUTBOX_RETRY_WINDOW_SECS (24 h by default).
-- lease_expiries: how many times a lease of this row expired without a result (the worker
--   died or hung on it); the row goes dead when it reaches max_attempts.
ALTER TABLE outbox ADD COLUMN first_failed_at TIMESTAMPTZ;
ALTER TABLE outbox ADD COLUMN lease_expiries INTEGER NOT NULL DEFAULT 0;
-- idempotency_keys is pruned by age (the uploader's maintenance tick).
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
