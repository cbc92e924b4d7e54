-- The write store's schema. Applied at open; every statement is idempotent.

-- The log. `position` is the rowid: assigned in commit order, never reused because
-- events are never deleted, so it is gap-free.
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    stream      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    timestamp   TEXT    NOT NULL,
    -- Optimistic concurrency: two appends decided at the same version cannot both land.
    UNIQUE (stream, version)
);

-- Idempotency keys, written in the same transaction as the events they cover.
-- `first_position`..`last_position` are the events the first request appended
-- (empty when it appended none). `created_ms` (milliseconds since the Unix epoch, the
-- same instant as `created_at`) is what retention deletes by; a store made before it
-- existed gains it in `migrate_idempotency_created_ms.sql`.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key             TEXT    PRIMARY KEY,
    request_digest  TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    first_position  INTEGER NOT NULL,
    last_position   INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    created_ms      INTEGER
) WITHOUT ROWID;

-- Aggregate states folded by a command handler, keyed by the stream and the digest of
-- the code that folded them: a cache, never a source of truth. New code never reads
-- an old code's state (its digest differs), and deleting rows changes no answer.
CREATE TABLE IF NOT EXISTS snapshots (
    stream   TEXT    NOT NULL,
    digest   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    state    TEXT    NOT NULL,
    PRIMARY KEY (stream, digest)
) WITHOUT ROWID;
