-- At most $2 keys stored before $1 (milliseconds since the Unix epoch), oldest first.
DELETE FROM tessera_idempotency_keys
WHERE key IN (
    SELECT key FROM tessera_idempotency_keys
    WHERE created_ms < $1
    ORDER BY created_ms
    LIMIT $2
)
