INSERT INTO snapshots (stream, digest, version, state) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (stream, digest) DO UPDATE SET version = excluded.version, state = excluded.state
WHERE excluded.version > snapshots.version
