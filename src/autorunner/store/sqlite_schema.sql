-- version 1: events, runs, effect ledger, dead letters, rejected deliveries, queue jobs
CREATE TABLE events (
    event_id      TEXT PRIMARY KEY,
    execution_id  TEXT UNIQUE,
    query_id      TEXT,
    event_type    TEXT NOT NULL,
    channel       TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    received_at   REAL NOT NULL,
    available_at  REAL NOT NULL,
    lease_owner   TEXT,
    lease_until   REAL,
    finished_at   REAL,
    last_error    TEXT,
    event_json    TEXT NOT NULL,
    raw_json      TEXT NOT NULL
);
CREATE INDEX events_unfinished ON events (available_at) WHERE status IN ('pending', 'running');
CREATE INDEX events_received ON events (received_at);
CREATE TABLE runs (
    run_id       INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    finished_at  REAL NOT NULL,
    record_json  TEXT NOT NULL
);
CREATE INDEX runs_event ON runs (event_id, run_id);
CREATE TABLE effects (
    effect_key   TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    step_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    tries        INTEGER NOT NULL DEFAULT 1,
    params_json  TEXT NOT NULL,
    result_json  TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX effects_event ON effects (event_id);
CREATE TABLE dead_letters (
    event_id  TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    attempts  INTEGER NOT NULL,
    dead_at   REAL NOT NULL
);
CREATE TABLE rejected (
    id           INTEGER PRIMARY KEY,
    reason       TEXT NOT NULL,
    received_at  REAL NOT NULL,
    raw_json     TEXT NOT NULL
);
CREATE TABLE jobs (
    event_id      TEXT PRIMARY KEY,
    available_at  REAL NOT NULL,
    enqueued_at   REAL NOT NULL,
    deliveries    INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT
);
CREATE INDEX jobs_available ON jobs (available_at);
CREATE TABLE dead_jobs (
    event_id  TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    dead_at   REAL NOT NULL
)
