SELECT position, setup FROM _tessera_checkpoint WHERE id = 1
