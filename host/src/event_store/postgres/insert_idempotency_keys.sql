-- A whole group's keys in one statement, stored when the group was ($7, $8 in ms).
INSERT INTO tessera_idempotency_keys
    (key, request_digest, stream, stream_version, first_position, last_position, created_at,
     created_ms)
SELECT k.key, k.request_digest, k.stream, k.stream_version, k.first_position, k.last_position,
       $7, $8
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
    AS k(key, request_digest, stream, stream_version, first_position, last_position)
