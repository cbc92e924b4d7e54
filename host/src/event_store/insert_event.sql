INSERT INTO events (stream, version, event_type, data, metadata, timestamp)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
