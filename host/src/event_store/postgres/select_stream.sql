SELECT position, stream, version, event_type, data, metadata, timestamp
FROM tessera_events
WHERE stream = $1 AND version > $2
ORDER BY version
LIMIT $3
