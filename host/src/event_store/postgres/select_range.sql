SELECT position, stream, version, event_type, data, metadata, timestamp
FROM tessera_events
WHERE position BETWEEN $1 AND $2
ORDER BY position
