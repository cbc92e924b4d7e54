-- The host's own tables inside every projection database. Guests cannot write them.
CREATE TABLE IF NOT EXISTS main._tessera_checkpoint (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    -- The log position of the last event whose effects are committed here.
    position INTEGER NOT NULL,
    -- 1 once the projection's setup has run in this database.
    setup    INTEGER NOT NULL
);
INSERT OR IGNORE INTO main._tessera_checkpoint (id, position, setup) VALUES (1, 0, 0);

-- Events the projection could not apply and skipped (policy `skip`), with why.
-- Written in the same transaction as the checkpoint that moves past them.
CREATE TABLE IF NOT EXISTS main._tessera_parked (
    position   INTEGER PRIMARY KEY,
    event_type TEXT NOT NULL,
    error      TEXT NOT NULL,
    parked_at  TEXT NOT NULL
);
