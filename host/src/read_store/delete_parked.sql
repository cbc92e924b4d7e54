DELETE FROM main._tessera_parked WHERE position = ?1
