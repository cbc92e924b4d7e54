SELECT position, setup FROM main._tessera_checkpoint WHERE id = 1
