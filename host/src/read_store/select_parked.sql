SELECT position, event_type, error, parked_at FROM main._tessera_parked ORDER BY position
