SELECT version, state FROM snapshots WHERE stream = ?1 AND digest = ?2
