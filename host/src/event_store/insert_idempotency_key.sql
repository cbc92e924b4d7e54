INSERT INTO idempotency_keys
    (key, request_digest, stream, stream_version, first_position, last_position, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
