SELECT request_digest, stream, stream_version, first_position, last_position
FROM idempotency_keys
WHERE key = ?1
