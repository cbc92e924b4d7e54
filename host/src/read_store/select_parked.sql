SELECT position, event_type, error, parked_at FROM _tessera_parked ORDER BY position
