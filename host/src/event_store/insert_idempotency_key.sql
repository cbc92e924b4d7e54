INSERT INTO idempotency_keys
    (key, request_digest, stream, stream_version, first_position, last_position, created_at,
     created_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CAST(unixepoch(?7, 'subsec') * 1000 AS INTEGER))
