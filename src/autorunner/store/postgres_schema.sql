-- version 1: events (with the pinned decision), runs, effect ledger, dead letters, rejected
-- deliveries, operator flags. Times are seconds since the epoch, as in the SQLite store.
CREATE TABLE events (
    event_id       text PRIMARY KEY,
    execution_id   text UNIQUE,
    query_id       text,
    event_type     text NOT NULL,
    channel        text NOT NULL,
    status         text NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    received_at    double precision NOT NULL,
    available_at   double precision NOT NULL,
    lease_owner    text,
    lease_until    double precision,
    finished_at    double precision,
    last_error     text,
    event_json     jsonb NOT NULL,
    raw_json       jsonb NOT NULL,
    decision_json  jsonb
);
CREATE INDEX events_unfinished ON events (available_at) WHERE status IN ('pending', 'running');
CREATE INDEX events_received ON events (received_at);
CREATE TABLE runs (
    run_id       bigserial PRIMARY KEY,
    event_id     text NOT NULL,
    attempt      integer NOT NULL,
    outcome      text NOT NULL,
    finished_at  double precision NOT NULL,
    record_json  jsonb NOT NULL
);
CREATE INDEX runs_event ON runs (event_id, run_id);
CREATE TABLE effects (
    effect_key   text PRIMARY KEY,
    event_id     text NOT NULL,
    step_id      text NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    tries        integer NOT NULL DEFAULT 1,
    params_json  jsonb NOT NULL,
    result_json  jsonb,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    route        text
);
CREATE INDEX effects_event ON effects (event_id);
CREATE INDEX effects_route ON effects (route, created_at);
CREATE TABLE dead_letters (
    event_id  text PRIMARY KEY,
    reason    text NOT NULL,
    attempts  integer NOT NULL,
    dead_at   double precision NOT NULL
);
CREATE TABLE rejected (
    id           bigserial PRIMARY KEY,
    reason       text NOT NULL,
    received_at  double precision NOT NULL,
    raw_json     jsonb NOT NULL
);
CREATE TABLE flags (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  double precision NOT NULL
);
