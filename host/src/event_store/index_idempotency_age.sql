-- Retention deletes the oldest keys first, a bounded number at a time.
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_ms);
