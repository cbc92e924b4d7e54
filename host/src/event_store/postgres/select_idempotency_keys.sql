SELECT key, request_digest, stream, stream_version, first_position, last_position
FROM tessera_idempotency_keys
WHERE key = ANY($1::text[])
