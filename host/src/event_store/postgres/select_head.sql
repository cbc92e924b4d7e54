SELECT position FROM tessera_head WHERE id
