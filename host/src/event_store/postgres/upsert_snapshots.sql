-- Snapshots riding along with a group (one per stream and digest); a newer stored one
-- is kept.
INSERT INTO tessera_snapshots (stream, digest, version, state)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
ON CONFLICT (stream, digest) DO UPDATE SET version = excluded.version, state = excluded.state
WHERE excluded.version > tessera_snapshots.version
