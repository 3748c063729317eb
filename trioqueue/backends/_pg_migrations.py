"""The PostgreSQL schema's migrations: the SQL of each version, in order.

``{s}`` in each is the schema (an ``sql.Identifier``); ``_pg_schema.py``
applies them. Never edit one that shipped: append a new one.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]


def _flow_advance(arrival: str, count_done: str = "") -> str:
    # ``flow_advance`` (migrations 6, 9 and 11) with ``arrival``: the statements
    # that leave a join's remaining count in ``remaining_`` as its input arrives;
    # ``count_done``: those that count a node made DONE in the finished ledger.
    body = """
    CREATE OR REPLACE FUNCTION {s}.flow_advance(
        steps jsonb, tok text, at double precision, chan text, change text
    ) RETURNS text[] LANGUAGE plpgsql AS $$
    DECLARE
        st jsonb;
        j jsonb;
        node_status text;
        run_status text;
        run_flag boolean;
        remaining_ integer;
        settled text[] := ARRAY[]::text[];
        new_tasks jsonb;
    BEGIN
        FOR st IN SELECT x FROM jsonb_array_elements(steps) AS x LOOP
            UPDATE {s}.tasks SET
                status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'done' END,
                result = CASE WHEN cancel_requested THEN result
                              ELSE decode(st->>'result', 'hex') END,
                last_error = CASE
                    WHEN cancel_requested THEN coalesce(st->>'error',
                        'Cancelled: cancellation requested while it was claimed')
                    ELSE coalesce(st->>'error', last_error) END,
                traceback = CASE WHEN cancel_requested THEN NULL ELSE traceback END,
                finished_at = at,
                started_at = coalesce((st->>'started_at')::double precision, started_at),
                progress = coalesce(st->>'progress', progress),
                cancel_requested = false, lease_token = NULL, lease_expires_at = NULL
            WHERE id = st->>'id' AND lease_token = tok AND status IN ('queued', 'running')
            RETURNING status INTO node_status;
            IF NOT FOUND THEN
                CONTINUE;
            END IF;
<count_done>            settled := settled || (st->>'id');
            IF node_status <> 'done' THEN
                CONTINUE;
            END IF;
            -- A share lock: a cancel or an end of the run waits for this
            -- transaction, then sees (and cancels) what it created.
            SELECT status, cancel_requested INTO run_status, run_flag
            FROM {s}.tasks WHERE id = st->>'run' FOR SHARE;
            IF run_status IS DISTINCT FROM 'running' OR run_flag THEN
                CONTINUE;
            END IF;
            new_tasks := coalesce(st->'spawn', '[]'::jsonb);
            FOR j IN SELECT x FROM jsonb_array_elements(coalesce(st->'joins', '[]'::jsonb)) AS x
            LOOP
<arrival>                IF remaining_ > 0 THEN
                    CONTINUE;
                END IF;
                DELETE FROM {s}.flow_joins WHERE id = j->'task'->>'id';
                new_tasks := new_tasks || jsonb_build_array(jsonb_set(j->'task', '{{payload}}',
                    to_jsonb(encode(decode(j->'task'->>'payload', 'hex')
                        || int4send(jsonb_array_length(j->'inputs'))
                        || (SELECT string_agg(coalesce(int4send(length(t.result)) || t.result,
                                                       int4send(-1)), ''::bytea ORDER BY x.n)
                            FROM jsonb_array_elements_text(j->'inputs') WITH ORDINALITY
                                 AS x(id, n)
                            LEFT JOIN {s}.tasks t ON t.id = x.id), 'hex'))));
            END LOOP;
            INSERT INTO {s}.tasks (id, queue, payload, status, max_attempts, run_at, priority,
                                   meta, created_at)
            SELECT x->>'id', x->>'queue', decode(x->>'payload', 'hex'), 'pending',
                   (x->>'max_attempts')::integer, (x->>'run_at')::double precision,
                   (x->>'priority')::bigint, x->'meta', at
            FROM jsonb_array_elements(new_tasks) AS x
            ON CONFLICT (id) DO NOTHING;
            PERFORM pg_notify(chan, q)
            FROM (SELECT DISTINCT x->>'queue' AS q FROM jsonb_array_elements(new_tasks) AS x) d;
            IF (st->>'finish')::boolean THEN
                UPDATE {s}.tasks SET status = 'done', finished_at = at,
                    result = decode(st->>'result', 'hex')
                WHERE id = st->>'run' AND status = 'running';
                PERFORM pg_notify(change, json_build_array(st->>'run')::text);
            END IF;
        END LOOP;
        IF cardinality(settled) > 0 THEN
            PERFORM pg_notify(change, '');
        END IF;
        RETURN settled;
    END $$;
""".replace("<arrival>", arrival)
    if not count_done:
        return body.replace("<count_done>", "")
    return (
        body.replace("<count_done>", count_done)
        .replace("node_status text;\n", "node_status text;\n        node_queue text;\n")
        .replace(
            "RETURNING status INTO node_status;",
            "RETURNING status, queue INTO node_status, node_queue;",
        )
    )


#: The join arrival of migration 6: a counter starts at the inputs' count.
_ARRIVAL_6 = """\
                INSERT INTO {s}.flow_joins (id, run, remaining)
                VALUES (j->'task'->>'id', st->>'run', jsonb_array_length(j->'inputs') - 1)
                ON CONFLICT (id) DO UPDATE SET remaining = {s}.flow_joins.remaining - 1
                RETURNING remaining INTO remaining_;
"""

#: The join arrival of migration 9: a missing counter starts at the inputs
#: not DONE (the end of a run drops its counters; a resumed run's joins count
#: the inputs that finished before it ended).
_ARRIVAL_9 = """\
                UPDATE {s}.flow_joins SET remaining = remaining - 1
                WHERE id = j->'task'->>'id' RETURNING remaining INTO remaining_;
                IF NOT FOUND THEN
                    -- The first arrival, or the first since the run resumed: the
                    -- inputs not DONE yet (this node is, a missing one is not).
                    SELECT count(*) INTO remaining_
                    FROM jsonb_array_elements_text(j->'inputs') AS x(id)
                    LEFT JOIN {s}.tasks t ON t.id = x.id
                    WHERE t.status IS DISTINCT FROM 'done';
                    IF remaining_ > 0 THEN
                        INSERT INTO {s}.flow_joins (id, run, remaining)
                        VALUES (j->'task'->>'id', st->>'run', remaining_)
                        ON CONFLICT (id) DO UPDATE SET remaining = {s}.flow_joins.remaining - 1
                        RETURNING remaining INTO remaining_;
                    END IF;
                END IF;
"""

#: Migration 11's count of a node made DONE: the ledger's trigger leaves out a
#: held task made DONE (every settle), so ``flow_advance`` counts it itself.
_COUNT_DONE = """\
            IF node_status = 'done' THEN
                INSERT INTO {s}.finished_counts (queue, status, n)
                VALUES (node_queue, 'done', 1);
            END IF;
"""


#: The migrations, in order; the schema's version is how many were applied.
#: ``{s}`` is the schema (an ``sql.Identifier``). Never edit one that shipped:
#: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS {s}.tasks (
        id text COLLATE "C" PRIMARY KEY,
        queue text COLLATE "C" NOT NULL,
        payload bytea NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN
            ('pending', 'queued', 'running', 'done', 'failed', 'killed', 'cancelled')),
        attempts integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL DEFAULT 25,
        run_at double precision NOT NULL,
        priority bigint NOT NULL DEFAULT 0,
        meta jsonb NOT NULL DEFAULT '{{}}',
        last_error text,
        result bytea,
        created_at double precision NOT NULL,
        finished_at double precision,
        lease_token text,
        lease_expires_at double precision
    );
    CREATE INDEX IF NOT EXISTS tasks_ready ON {s}.tasks (queue, priority DESC, run_at, id)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX IF NOT EXISTS tasks_schedule ON {s}.tasks (queue, run_at)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX IF NOT EXISTS tasks_leases ON {s}.tasks (lease_expires_at)
        WHERE status IN ('queued', 'running');
    CREATE INDEX IF NOT EXISTS tasks_finished ON {s}.tasks (finished_at)
        WHERE status IN ('done', 'killed', 'cancelled');
    """,
    # 2: the earliest run_at of a queue is read from tasks_ready (a loose index
    # scan over its priorities): one index fewer to keep up on every insert.
    """
    DROP INDEX IF EXISTS {s}.tasks_schedule;
    """,
    # 3: the bounded traceback of a task's last failure.
    "ALTER TABLE {s}.tasks ADD COLUMN IF NOT EXISTS traceback text;",
    # 4: a task's whole life (when its attempt started, by which worker, its
    # progress, its snoozes, a cancellation asked while it was claimed),
    # paused queues and the workers' registry. Constant defaults: no rewrite.
    """
    ALTER TABLE {s}.tasks
        ADD COLUMN IF NOT EXISTS started_at double precision,
        ADD COLUMN IF NOT EXISTS worker text,
        ADD COLUMN IF NOT EXISTS progress text,
        ADD COLUMN IF NOT EXISTS snoozes integer NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS cancel_requested boolean NOT NULL DEFAULT false;
    CREATE TABLE IF NOT EXISTS {s}.paused_queues (
        queue text COLLATE "C" PRIMARY KEY
    );
    CREATE TABLE IF NOT EXISTS {s}.workers (
        name text COLLATE "C" PRIMARY KEY,
        host text NOT NULL,
        pid bigint NOT NULL,
        queue text COLLATE "C" NOT NULL,
        concurrency integer NOT NULL,
        running integer NOT NULL,
        started_at double precision NOT NULL,
        last_seen double precision NOT NULL
    );
    """,
    # 5: the schedules (cron and intervals): each one's last tick, by name.
    """
    CREATE TABLE IF NOT EXISTS {s}.schedules (
        name text COLLATE "C" PRIMARY KEY,
        queue text COLLATE "C" NOT NULL,
        expr text,
        "interval" double precision,
        tz text NOT NULL,
        last_tick double precision,
        next_tick double precision,
        updated_at double precision NOT NULL
    );
    """,
    # 6: workflows. The tasks of a run by its id (meta trioqueue_run), the
    # fan-in counters, ``flow_end_run`` (cancel a run's unfinished tasks) and
    # the end rule: a node that ends KILLED or CANCELLED ends its run in the
    # statement that ended it (settle, release, rescue or cancel).
    """
    CREATE INDEX IF NOT EXISTS tasks_run ON {s}.tasks ((meta->>'trioqueue_run'))
        WHERE meta ? 'trioqueue_run';
    CREATE TABLE IF NOT EXISTS {s}.flow_joins (
        id text COLLATE "C" PRIMARY KEY,
        run text COLLATE "C" NOT NULL,
        remaining integer NOT NULL
    );
    CREATE INDEX IF NOT EXISTS flow_joins_run ON {s}.flow_joins (run);
    CREATE OR REPLACE FUNCTION {s}.flow_end_run(
        rid text, skip text, at double precision, chan text
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        flagged integer;
    BEGIN
        WITH u AS (
            UPDATE {s}.tasks SET
                status = CASE WHEN status IN ('queued', 'running') THEN status
                              ELSE 'cancelled' END,
                cancel_requested = status IN ('queued', 'running'),
                last_error = CASE WHEN status IN ('queued', 'running') THEN last_error
                                  ELSE 'Cancelled: its run ended' END,
                finished_at = CASE WHEN status IN ('queued', 'running') THEN finished_at
                                   ELSE at END
            WHERE meta->>'trioqueue_run' = rid AND meta ? 'trioqueue_run'
              AND id <> rid AND id <> skip
              AND status NOT IN ('done', 'killed', 'cancelled')
            RETURNING cancel_requested)
        SELECT count(*) FILTER (WHERE cancel_requested) INTO flagged FROM u;
        DELETE FROM {s}.flow_joins WHERE run = rid;
        IF flagged > 0 AND chan IS NOT NULL AND octet_length(chan) <= 63 THEN
            PERFORM pg_notify(chan, '');
        END IF;
    END $$;
    CREATE OR REPLACE FUNCTION {s}.flow_node_ended() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        rid text := NEW.meta->>'trioqueue_run';
    BEGIN
        UPDATE {s}.tasks SET
            status = NEW.status,
            last_error = 'node ''' || (NEW.meta->>'trioqueue_node') || ''' ended '
                || NEW.status || ': ' || coalesce(NEW.last_error, 'no reason given'),
            finished_at = NEW.finished_at,
            cancel_requested = false
        WHERE id = rid AND status = 'running';
        IF FOUND THEN
            PERFORM {s}.flow_end_run(
                rid, NEW.id, NEW.finished_at, 'trioqueue.' || TG_TABLE_SCHEMA || '.cancel');
        END IF;
        RETURN NULL;
    END $$;
    """
    + _flow_advance(_ARRIVAL_6)
    + """
    CREATE TRIGGER flow_node_ended AFTER UPDATE OF status ON {s}.tasks
        FOR EACH ROW
        WHEN (NEW.status IN ('killed', 'cancelled')
              AND OLD.status NOT IN ('killed', 'cancelled', 'done')
              AND NEW.meta ? 'trioqueue_node')
        EXECUTE FUNCTION {s}.flow_node_ended();
    """,
    # 7: listings by status, newest first, without walking every task (a
    # status few or no tasks have, in a store of millions).
    "CREATE INDEX IF NOT EXISTS tasks_status ON {s}.tasks (status, id)",
    # 8: the (status, id) index only for the statuses few tasks have, so that
    # a push, a claim, a start and a done add no entry to it. A listing of
    # another status reads the index that status already has (claim order,
    # leases, finish time) or walks the key; see ``list_tasks_of_status``.
    """
    DROP INDEX IF EXISTS {s}.tasks_status;
    CREATE INDEX IF NOT EXISTS tasks_status_rare ON {s}.tasks (status, id)
        WHERE status IN ('failed', 'killed', 'cancelled');
    """,
    # 9: a join's counter that is missing (its first arrival, or the first
    # since its run resumed) starts at its inputs not DONE, read from storage.
    _flow_advance(_ARRIVAL_9),
    # 10: each queue's retention, stored so that every process applies the
    # same rule: seconds each final status is kept (NULL: forever). A queue
    # without a row follows each process's default.
    """
    CREATE TABLE IF NOT EXISTS {s}.retention (
        queue text COLLATE "C" PRIMARY KEY,
        done double precision CHECK (done >= 0),
        killed double precision CHECK (killed >= 0),
        cancelled double precision CHECK (cancelled >= 0)
    );
    """,
    # 11: the number of finished tasks per queue and final status, so that
    # ``counts`` never counts millions of finished rows: an append-only
    # ledger of deltas that the reader sums and now and then folds into one
    # row per queue and status (``AdminStatements.compact_finished``).
    # Nothing updates a shared row: concurrent settlers never wait for each
    # other on it. Written by a row-level trigger on changes of status into
    # or out of DONE, KILLED and CANCELLED (its WHEN is tested without
    # calling the function: a claim or a start costs nothing more), by one on
    # inserts of tasks already final, and by a statement-level one (a
    # transition table) on deletes: one row per purge or prune batch. A held
    # task made DONE, which is every successful settle, is left out by the
    # trigger and counted once per batch by the settle statement itself (and
    # by ``flow_advance``, recreated here to do so): a function called for
    # every settled row would cost more than the settle's own update.
    # ``queue_depth`` is the read: the unfinished tasks through the partial
    # indexes that hold only them (``enable_seqscan`` off: after much churn
    # those indexes have many empty pages, and the planner would rather scan
    # every task; ``jit`` off: the cost that setting gives the ledger's scan
    # would have each read compile its plan, about 200 ms), the finished ones
    # from the ledger. Created (and seeded)
    # under the lock CREATE TRIGGER takes on the table: no concurrent write
    # is missed or counted twice.
    """
    CREATE TABLE IF NOT EXISTS {s}.finished_counts (
        queue text COLLATE "C" NOT NULL,
        status text NOT NULL,
        n bigint NOT NULL
    );
    CREATE OR REPLACE FUNCTION {s}.finished_counts_update() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.status IN ('done', 'killed', 'cancelled') THEN
            INSERT INTO {s}.finished_counts (queue, status, n) VALUES (OLD.queue, OLD.status, -1);
        END IF;
        IF NEW.status IN ('done', 'killed', 'cancelled') THEN
            INSERT INTO {s}.finished_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1);
        END IF;
        RETURN NULL;
    END $$;
    CREATE OR REPLACE FUNCTION {s}.finished_counts_delete() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.finished_counts (queue, status, n)
        SELECT queue, status, -count(*) FROM old_tasks
        WHERE status IN ('done', 'killed', 'cancelled')
        GROUP BY queue, status;
        RETURN NULL;
    END $$;
    CREATE OR REPLACE FUNCTION {s}.finished_counts_insert() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.finished_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1);
        RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS finished_counts_update ON {s}.tasks;
    CREATE TRIGGER finished_counts_update AFTER UPDATE OF status, queue ON {s}.tasks
        FOR EACH ROW WHEN (NOT (NEW.status = 'done' AND OLD.lease_token IS NOT NULL)
            AND (OLD.status <> NEW.status OR OLD.queue <> NEW.queue)
            AND (OLD.status IN ('done', 'killed', 'cancelled')
                 OR NEW.status IN ('done', 'killed', 'cancelled')))
        EXECUTE FUNCTION {s}.finished_counts_update();
    """
    + _flow_advance(_ARRIVAL_9, _COUNT_DONE)
    + """
    DROP TRIGGER IF EXISTS finished_counts_delete ON {s}.tasks;
    CREATE TRIGGER finished_counts_delete AFTER DELETE ON {s}.tasks
        REFERENCING OLD TABLE AS old_tasks
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.finished_counts_delete();
    DROP TRIGGER IF EXISTS finished_counts_insert ON {s}.tasks;
    CREATE TRIGGER finished_counts_insert AFTER INSERT ON {s}.tasks
        FOR EACH ROW WHEN (NEW.status IN ('done', 'killed', 'cancelled'))
        EXECUTE FUNCTION {s}.finished_counts_insert();
    CREATE OR REPLACE FUNCTION {s}.queue_depth(q text)
    RETURNS TABLE (queue text, status text, n bigint, ledger bigint)
    LANGUAGE sql STABLE SET enable_seqscan = off SET jit = off AS $$
        SELECT t.queue, t.status, count(*), 0::bigint FROM {s}.tasks t
        WHERE t.status IN ('pending', 'failed') AND (q IS NULL OR t.queue = q)
        GROUP BY t.queue, t.status
        UNION ALL
        SELECT t.queue, t.status, count(*), 0::bigint FROM {s}.tasks t
        WHERE t.status IN ('queued', 'running') AND (q IS NULL OR t.queue = q)
        GROUP BY t.queue, t.status
        UNION ALL
        SELECT f.queue, f.status, sum(f.n)::bigint, count(*) FROM {s}.finished_counts f
        WHERE q IS NULL OR f.queue = q
        GROUP BY f.queue, f.status
    $$;
    DELETE FROM {s}.finished_counts;
    INSERT INTO {s}.finished_counts (queue, status, n)
    SELECT queue, status, count(*) FROM {s}.tasks
    WHERE status IN ('done', 'killed', 'cancelled') GROUP BY queue, status;
    """,
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)
