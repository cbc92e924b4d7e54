SELECT version, state FROM tessera_snapshots WHERE stream = $1 AND digest = $2
