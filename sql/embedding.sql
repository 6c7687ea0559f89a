-- Impact analysis and re-embedding: embeddings, jobs, the queue, progress, the procedure.

CREATE TABLE evolve.entity_embeddings (
    entity_id      bigint PRIMARY KEY REFERENCES evolve.entities (entity_id) ON DELETE CASCADE,
    embedding      vector(256) NOT NULL,
    schema_version integer NOT NULL,
    content_hash   bigint NOT NULL,
    job_id         bigint,
    embedded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entity_embeddings_hnsw ON evolve.entity_embeddings USING hnsw (embedding vector_cosine_ops);
COMMENT ON TABLE evolve.entity_embeddings IS
    'One embedding per entity of its enriched text (snapshot + semantic descriptions), with the schema version and the content hash (embedder + text) it was computed from.';

CREATE TABLE evolve.schema_migration_jobs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    kind               text NOT NULL,
    entity_types       text[] NOT NULL,
    change             jsonb NOT NULL,
    priority           text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    priority_rank      integer NOT NULL,
    schema_version     integer,
    total_entities     bigint NOT NULL DEFAULT 0 CHECK (total_entities >= 0),
    processed_entities bigint NOT NULL DEFAULT 0 CHECK (processed_entities >= 0),
    unchanged_entities bigint NOT NULL DEFAULT 0,
    error_count        bigint NOT NULL DEFAULT 0,
    parked_entities    bigint NOT NULL DEFAULT 0 CHECK (parked_entities >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (processed_entities <= total_entities)
);
COMMENT ON TABLE evolve.schema_migration_jobs IS
    'One job per applied change: the entities it re-embeds, progress, errors. An entity queued by two jobs belongs to the latest only (it is embedded once, at the latest version).';

CREATE TABLE evolve.embedding_queue (
    entity_id       bigint PRIMARY KEY REFERENCES evolve.entities (entity_id) ON DELETE CASCADE,
    job_id          bigint NOT NULL REFERENCES evolve.schema_migration_jobs (id) ON DELETE CASCADE,
    priority_rank   integer NOT NULL,
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    enqueued_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX embedding_queue_next ON evolve.embedding_queue (priority_rank DESC, job_id, entity_id)
    WHERE state = 'queued';
-- Only parked rows are looked up by job (retry_failed, failed_embeddings); a job's queued rows
-- are never scanned: its counters (processed + parked = total) tell when it is done.
CREATE INDEX embedding_queue_parked ON evolve.embedding_queue (job_id) WHERE state = 'failed';
COMMENT ON TABLE evolve.embedding_queue IS
    'Entities waiting to be (re-)embedded, one row per entity; taken in batches with FOR UPDATE SKIP LOCKED, highest priority first. Rows in state failed are parked after evolve.max_embed_attempts.';

CREATE VIEW evolve.failed_embeddings AS
SELECT q.entity_id, e.entity_type, e.entity_key, q.job_id, q.attempts, q.last_error, q.enqueued_at
FROM evolve.embedding_queue q JOIN evolve.entities e USING (entity_id)
WHERE q.state = 'failed';
COMMENT ON VIEW evolve.failed_embeddings IS 'Entities parked after too many failed embedding attempts; evolve.retry_failed(job_id) queues them again.';

CREATE VIEW evolve.migration_progress AS
SELECT j.id AS job_id, j.status, j.kind, j.entity_types, j.priority,
       j.processed_entities, j.total_entities,
       CASE WHEN j.total_entities = 0 THEN 100.0
            ELSE round(100.0 * j.processed_entities / j.total_entities, 1) END AS percent,
       j.unchanged_entities, j.error_count,
       j.parked_entities AS parked,
       r.rate AS rate_per_second,
       CASE WHEN j.status IN ('queued', 'running') AND r.rate > 0
            THEN make_interval(secs => (j.total_entities - j.processed_entities) / r.rate) END AS eta,
       j.created_at, j.started_at, j.completed_at
FROM evolve.schema_migration_jobs j
CROSS JOIN LATERAL (SELECT CASE WHEN j.started_at IS NOT NULL AND j.processed_entities > 0
    THEN round((j.processed_entities / greatest(extract(epoch FROM coalesce(j.completed_at, now()) - j.started_at), 0.001))::numeric, 1)
    END AS rate) r;
COMMENT ON VIEW evolve.migration_progress IS 'Re-embedding jobs: status, percent, processed/total, errors, parked entities, rate and ETA.';

-- Without the background worker: the same work, one committed batch at a time (pg_cron can call it).
CREATE PROCEDURE evolve.run_reembedding(max_batches integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    done integer := 0;
    n integer;
BEGIN
    LOOP
        EXIT WHEN max_batches IS NOT NULL AND done >= max_batches;
        n := evolve._reembed_batch();
        COMMIT;
        EXIT WHEN n = 0;
        done := done + 1;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE evolve.run_reembedding(integer) IS
    'Re-embeds queued entities in committed batches of evolve.embed_batch_size, as the background worker does; stops when the queue is empty or after max_batches.';

CREATE FUNCTION evolve.embed(text) RETURNS vector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT evolve._embed_builtin($1)::vector(256) $$;
COMMENT ON FUNCTION evolve.embed(text) IS
    'The built-in deterministic embedder: feature hashing of words (1.0), word pairs (0.5) and character trigrams (0.25), L2-normalized, 256 dimensions.';
