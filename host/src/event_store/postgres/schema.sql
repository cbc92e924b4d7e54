-- The PostgreSQL write store's schema. Applied at open, by every host, under an
-- advisory lock (two hosts starting at once would otherwise race inside CREATE ... IF
-- NOT EXISTS); every statement is idempotent. The tables carry a `tessera_` prefix so
-- that the store can live beside other tables, though a database of its own is best.

-- The head: the position of the last event committed, in a single row. Every append
-- transaction locks this row first (lock_head.sql) and moves it forward just before it
-- commits (advance_head.sql), so committers take turns: positions are handed out in
-- commit order, and no transaction can commit position p + 1 before the one that holds
-- p has committed. Readers therefore never see a gap that fills in later.
CREATE TABLE IF NOT EXISTS tessera_head (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    position  bigint  NOT NULL
);
INSERT INTO tessera_head (id, position) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;

-- The log. `position` is assigned by the writer under the head's lock, gap-free.
CREATE TABLE IF NOT EXISTS tessera_events (
    position    bigint PRIMARY KEY,
    stream      text   NOT NULL,
    version     bigint NOT NULL,
    event_type  text   NOT NULL,
    -- JSON kept as the text it was written as (jsonb would reorder keys).
    data        text   NOT NULL,
    metadata    text   NOT NULL,
    timestamp   text   NOT NULL,
    -- Optimistic concurrency, checked a second time by the database itself: two
    -- appends decided at the same version can never both land, whichever host made them.
    UNIQUE (stream, version)
);

-- Idempotency keys, written in the same transaction as the events they cover.
-- `first_position`..`last_position` are the events the first request appended (empty
-- when it appended none); `created_ms` (milliseconds since the Unix epoch) is what
-- retention deletes by.
CREATE TABLE IF NOT EXISTS tessera_idempotency_keys (
    key             text   PRIMARY KEY,
    request_digest  text   NOT NULL,
    stream          text   NOT NULL,
    stream_version  bigint NOT NULL,
    first_position  bigint NOT NULL,
    last_position   bigint NOT NULL,
    created_at      text   NOT NULL,
    created_ms      bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS tessera_idempotency_keys_by_age
    ON tessera_idempotency_keys (created_ms);

-- Aggregate states folded by a command handler, keyed by the stream and the digest of
-- the code that folded them: a cache, never a source of truth.
CREATE TABLE IF NOT EXISTS tessera_snapshots (
    stream   text   NOT NULL,
    digest   text   NOT NULL,
    version  bigint NOT NULL,
    state    text   NOT NULL,
    PRIMARY KEY (stream, digest)
);
