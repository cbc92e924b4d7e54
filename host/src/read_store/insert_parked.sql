INSERT OR REPLACE INTO main._tessera_parked (position, event_type, error, parked_at)
VALUES (?1, ?2, ?3, ?4)
