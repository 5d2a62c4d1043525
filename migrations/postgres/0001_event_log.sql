-- The append-only event log and what commits with it. Timestamps are epoch microseconds.
-- PostgreSQL: `position` is (transaction id << 16) + index within the append, so that the order of
-- positions is the order in which transactions become visible to readers (see crates/store).
CREATE TABLE events (
    position        BIGINT  PRIMARY KEY,
    event_id        TEXT    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL,
    stream_version  BIGINT  NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  BIGINT  NOT NULL,
    occurred_at     BIGINT  NOT NULL,
    org_id          TEXT    NOT NULL,
    actor_kind      TEXT    NOT NULL,
    actor_id        TEXT    NOT NULL,
    actor_role      TEXT,
    request_id      TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    data            TEXT    NOT NULL,
    chain_seq       BIGINT  NOT NULL,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version),
    UNIQUE (org_id, chain_seq)
);
CREATE INDEX events_org_position ON events (org_id, position);

CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable';
END;
$$;
CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

CREATE TABLE chain_heads (
    org_id    TEXT    PRIMARY KEY,
    last_seq  BIGINT  NOT NULL,
    last_hash TEXT    NOT NULL
);

CREATE TABLE outbox (
    position   BIGINT  PRIMARY KEY,
    event_id   TEXT    NOT NULL,
    org_id     TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
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
