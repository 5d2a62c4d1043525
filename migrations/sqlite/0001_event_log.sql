-- The append-only event log and what commits with it. Timestamps are epoch microseconds.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY,
    event_id        TEXT    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    org_id          TEXT    NOT NULL,
    actor_kind      TEXT    NOT NULL,
    actor_id        TEXT    NOT NULL,
    actor_role      TEXT,
    request_id      TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    data            TEXT    NOT NULL,
    chain_seq       INTEGER NOT NULL,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version),
    UNIQUE (org_id, chain_seq)
);
CREATE INDEX events_org_position ON events (org_id, position);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;

CREATE TABLE chain_heads (
    org_id    TEXT    PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    last_hash TEXT    NOT NULL
);

CREATE TABLE outbox (
    position   INTEGER PRIMARY KEY,
    event_id   TEXT    NOT NULL,
    org_id     TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Reservations: named sets per organization (asset values, group members) kept in step with the
-- log inside append transactions, with their sizes, for invariants that span streams.
CREATE TABLE reservations (
    org_id TEXT NOT NULL,
    scope  TEXT NOT NULL,
    key    TEXT NOT NULL,
    owner  TEXT NOT NULL,
    PRIMARY KEY (org_id, scope, key)
);

CREATE TABLE reservation_counts (
    org_id TEXT   NOT NULL,
    scope  TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (org_id, scope)
);
