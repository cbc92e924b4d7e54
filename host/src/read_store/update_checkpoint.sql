UPDATE main._tessera_checkpoint SET position = ?1, setup = ?2 WHERE id = 1
