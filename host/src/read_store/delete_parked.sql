DELETE FROM _tessera_parked WHERE position = ?1
