"""The PostgreSQL store's hot statements (``store.postgres``): each a single form and, for
``StatementBatch``, a form for many rows that takes the rows' parameters as one JSON array of
arrays, in the order of its single form's, and returns the row's key first.

A many-row form that changes rows it finds by key names those keys twice: joined to the rows, and
as ``key = ANY(...)`` (``_by_key``). PostgreSQL estimates a JSON array's elements at 100 whatever
it holds, and so, below some tens of thousands of rows (fewer the smaller the rows, and until the
statistics catch up with a burst), read the whole table for each batch (a hash join, or a nested
loop over the table) where it now reads the primary key for each row (docs/benchmarks.md, issue
16: 1.3 ms against 0.4 ms for 30 rows over 10,000 effects). That holds for a plan made for the
table as it is, which is why ``StatementBatch`` never prepares them."""

INSERT_EFFECT = (  # its parameters: begin_effect's ``values``
    "INSERT INTO effects (effect_key, event_id, step_id, kind, status, params_json, created_at,"
    " updated_at, route) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    " RETURNING 1"
)
ROWS = " FROM jsonb_array_elements(%s::jsonb) AS r"
KEYED_ROWS = f"WITH rows AS MATERIALIZED (SELECT r{ROWS})"


def _by_key(column: str, index: int) -> str:
    """``column`` is row ``r``'s element ``index``, said so the primary key is read for it."""
    return f"{column} = r->>{index} AND {column} = ANY(ARRAY(SELECT r->>{index} FROM rows))"


INSERT_EVENT_MANY = (
    "INSERT INTO events (event_id, execution_id, delivery_id, query_id, event_type, channel,"
    " status, received_at, available_at, event_json, raw_json)"
    " SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, 'pending', (r->>6)::float8,"
    f" (r->>7)::float8, r->8, r->9{ROWS} ON CONFLICT DO NOTHING RETURNING event_id, 1"
)
ACQUIRE_MANY = (
    f"{KEYED_ROWS} UPDATE events SET status = 'running', attempts = attempts + 1,"
    " lease_owner = r->>0, lease_until = (r->>1)::float8 FROM rows"
    f" WHERE {_by_key('event_id', 2)} AND (status = 'pending'"
    " OR (status = 'running' AND lease_until <= (r->>3)::float8))"
    " RETURNING r->>2, attempts, event_json, generation, decision_json, available_at"
)
_PIN = (  # (decision, event_id, owner, generation)
    "UPDATE events SET decision_json = coalesce(decision_json, %s)"
    " WHERE event_id = %s AND lease_owner = %s AND generation = %s"
)
PIN_DECISION = f"{_PIN} RETURNING decision_json"
PIN_DECISION_MANY = (
    f"{KEYED_ROWS} UPDATE events SET decision_json = coalesce(decision_json, r->0) FROM rows"
    f" WHERE {_by_key('event_id', 1)} AND lease_owner = r->>2"
    " AND generation = (r->>3)::integer"
    " RETURNING r->>1, decision_json"
)
INSERT_EFFECT_MANY = (
    "INSERT INTO effects (effect_key, event_id, step_id, kind, status, params_json, created_at,"
    " updated_at, route) SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->5, (r->>6)::float8,"
    f" (r->>7)::float8, r->>8{ROWS} ON CONFLICT DO NOTHING RETURNING effect_key, 1"
)
# An attempt's first effect: its decision pinned and its intent inserted, one atomic statement;
# the intent only when the decision kept is this one (compared as jsonb, as stored: a value JSON
# changes, a date, must not make the caller and the database disagree). Returns whether the
# decision kept is this one (NULL: the owner lost the event) and whether the intent was inserted.
# Its parameters: PIN_DECISION's, then INSERT_EFFECT's.
PIN_AND_INSERT_EFFECT = (
    "WITH mine AS (SELECT %s::jsonb AS d), kept AS (UPDATE events"
    " SET decision_json = coalesce(decision_json, (SELECT d FROM mine))"
    " WHERE event_id = %s AND lease_owner = %s AND generation = %s"
    " RETURNING decision_json = (SELECT d FROM mine) AS ours),"
    " begun AS (INSERT INTO effects (effect_key, event_id, step_id, kind, status, params_json,"
    " created_at, updated_at, route) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s FROM kept"
    " WHERE ours ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT (SELECT ours FROM kept), (SELECT count(*) FROM begun)"
)
PIN_AND_INSERT_EFFECT_MANY = (
    f"{KEYED_ROWS}, kept AS (UPDATE events SET decision_json = coalesce(decision_json, r->0)"
    f" FROM rows WHERE {_by_key('event_id', 1)} AND lease_owner = r->>2"
    " AND generation = (r->>3)::integer"
    " RETURNING event_id, decision_json = r->0 AS ours, r),"
    " begun AS (INSERT INTO effects (effect_key, event_id, step_id, kind, status, params_json,"
    " created_at, updated_at, route) SELECT r->>4, r->>5, r->>6, r->>7, r->>8, r->9,"
    " (r->>10)::float8, (r->>11)::float8, r->>12 FROM kept WHERE ours"
    " ON CONFLICT DO NOTHING RETURNING effect_key)"
    " SELECT r->>1, (SELECT ours FROM kept WHERE kept.event_id = rows.r->>1),"
    " (SELECT count(*) FROM begun WHERE effect_key = rows.r->>4) FROM rows"
)
# PIN_DECISION answering whether the decision kept is this one (compared as jsonb); its
# parameters: PIN_DECISION's, then the decision again.
PIN_DECISION_OURS = f"{_PIN} RETURNING decision_json = %s"
FINISH_EFFECT_MANY = (
    f"{KEYED_ROWS} UPDATE effects SET status = r->>0, result_json = r->1,"
    f" updated_at = (r->>2)::float8 FROM rows WHERE {_by_key('effect_key', 3)}"
)
# A finished run whose event is done, the worker's usual end (``finish``): the event moves only
# for its lease's owner, the run is appended whoever finishes; one atomic statement.
FINISH_DONE = (  # (now, error, route, event_id, owner, event_id, attempt, finished_at, record)
    "WITH moved AS (UPDATE events SET status = 'done', finished_at = %s, lease_owner = NULL,"
    " lease_until = NULL, last_error = %s, route = coalesce(%s, route) WHERE event_id = %s"
    " AND lease_owner = %s AND status = 'running' RETURNING event_id),"
    " run AS (INSERT INTO runs (event_id, attempt, outcome, finished_at, record_json)"
    " VALUES (%s, %s, 'done', %s, %s)) SELECT count(*) FROM moved"
)
FINISH_DONE_MANY = (
    f"{KEYED_ROWS}, moved AS (UPDATE events SET status = 'done',"
    " finished_at = (r->>0)::float8, lease_owner = NULL, lease_until = NULL,"
    " last_error = r->>1, route = coalesce(r->>2, route) FROM rows"
    f" WHERE {_by_key('event_id', 3)} AND lease_owner = r->>4"
    " AND status = 'running' RETURNING event_id),"
    " run AS (INSERT INTO runs (event_id, attempt, outcome, finished_at, record_json)"
    " SELECT r->>5, (r->>6)::integer, 'done', (r->>7)::float8, r->8 FROM rows)"
    " SELECT r->>3, (SELECT count(*) FROM moved WHERE moved.event_id = r->>3) FROM rows"
)
