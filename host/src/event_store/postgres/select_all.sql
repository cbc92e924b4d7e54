SELECT position, stream, version, event_type, data, metadata, timestamp
FROM tessera_events
WHERE position > $1
ORDER BY position
LIMIT $2
