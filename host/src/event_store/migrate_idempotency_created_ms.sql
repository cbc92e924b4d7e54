-- A store made before retention: idempotency keys gain the instant they were stored,
-- in milliseconds, computed from `created_at` (RFC 3339, as every version wrote it).
-- Run once, when the column is missing, in one transaction with the index below.
ALTER TABLE idempotency_keys ADD COLUMN created_ms INTEGER;
UPDATE idempotency_keys SET created_ms = CAST(unixepoch(created_at, 'subsec') * 1000 AS INTEGER);
