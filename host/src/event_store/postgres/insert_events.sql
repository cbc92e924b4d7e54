-- A whole group's events in one statement; they share the group's timestamp ($7).
INSERT INTO tessera_events (position, stream, version, event_type, data, metadata, timestamp)
SELECT e.position, e.stream, e.version, e.event_type, e.data, e.metadata, $7
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])
    AS e(position, stream, version, event_type, data, metadata)
