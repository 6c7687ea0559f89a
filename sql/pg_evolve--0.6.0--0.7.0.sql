-- pg_evolve 0.6.0 -> 0.7.0: embeddings follow the data, and search never goes dark. Run by
-- ALTER EXTENSION pg_evolve UPDATE, and the end of a fresh install too.
--
-- Freshness: every statement that changes snapshots queues, in its own transaction, the
-- entities whose enriched text changed (compared by content hash with their embedding), unless
-- their type's policy is 'manual'. Such queue rows belong to no job (job_id NULL) and rank
-- above every job: fresh data is searchable first (README: Impact analysis and re-embedding).
--
-- Generations: evolve.entity_embeddings is partitioned by generation. Generation 0
-- (entity_embeddings_shared, the table of 0.6.0) holds every type until a job re-embeds a
-- whole type: that job fills a generation of its own (a partition, indexed when complete) while
-- search keeps answering from the current one, and the switch is one commit.

-- ---------------------------------------------------------------- freshness
ALTER TABLE evolve.embedding_queue ALTER COLUMN job_id DROP NOT NULL;
COMMENT ON COLUMN evolve.embedding_queue.job_id IS
    'The job that queued the entity; NULL when a change of its data did (freshness).';

CREATE TABLE evolve.embedding_policies (
    entity_type text PRIMARY KEY,
    mode        text NOT NULL CHECK (mode IN ('on_change', 'manual')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT evolve._calling_role()
);
COMMENT ON TABLE evolve.embedding_policies IS
    'Per entity type: whether a change of an entity''s data queues it for embedding (on_change, the default for types not listed) or only jobs do (manual).';
GRANT SELECT ON evolve.embedding_policies TO evolve_reader;

CREATE FUNCTION evolve.set_embedding_policy(entity_type text, mode text DEFAULT 'on_change')
RETURNS text LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role(), 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to set an embedding policy'
            USING ERRCODE = '42501', HINT = 'Embedding policies are set by members of evolve_admin.';
    END IF;
    IF entity_type IS NULL OR mode IS NULL OR mode NOT IN ('on_change', 'manual') THEN
        RAISE EXCEPTION 'invalid embedding policy mode: %', coalesce(mode, 'NULL')
            USING ERRCODE = '22023', HINT = 'The mode is on_change or manual, for a non-null entity type.';
    END IF;
    INSERT INTO evolve.embedding_policies AS p (entity_type, mode) VALUES ($1, $2)
    ON CONFLICT ON CONSTRAINT embedding_policies_pkey DO UPDATE
        SET mode = EXCLUDED.mode, updated_at = now(), updated_by = EXCLUDED.updated_by;
    RETURN mode;
END
$$;
REVOKE ALL ON FUNCTION evolve.set_embedding_policy(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.set_embedding_policy(text, text) TO evolve_admin;
COMMENT ON FUNCTION evolve.set_embedding_policy(text, text) IS
    'Sets whether a change of an entity''s data queues it for embedding (on_change, the default) or only schema-change jobs and explicit calls do (manual). Returns the mode.';

-- ---------------------------------------------------------------- tenants share the worker
-- Within a priority, batches go to the tenants with queued work in turn (stride scheduling,
-- src/reembed.rs with evolve_core::fair), in proportion to their weights: a small job of one
-- tenant does not wait behind a large one of another. The queue keeps each row's tenant ('' for
-- global entities) and is ordered by it within a priority.
ALTER TABLE evolve.embedding_queue ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE evolve.embedding_queue q SET tenant = e.user_id
  FROM evolve.entities e WHERE e.entity_id = q.entity_id AND e.user_id IS NOT NULL;
COMMENT ON COLUMN evolve.embedding_queue.tenant IS
    'The entity''s user_id (empty for a global entity): batches go round-robin between tenants within a priority.';
DROP INDEX evolve.embedding_queue_next;
CREATE INDEX embedding_queue_next ON evolve.embedding_queue (priority_rank DESC, tenant, job_id, entity_id)
    WHERE state = 'queued';

CREATE TABLE evolve.tenant_weights (
    user_id    text PRIMARY KEY,
    weight     integer NOT NULL CHECK (weight BETWEEN 1 AND 1000),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT evolve._calling_role()
);
COMMENT ON TABLE evolve.tenant_weights IS
    'Shares of the re-embedding worker per tenant (1 for tenants not listed and for global entities): within a priority, a tenant of weight 3 gets three batches for each one of a tenant of weight 1.';
ALTER TABLE evolve.tenant_weights ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.tenant_weights USING (evolve._visible(user_id));
GRANT SELECT ON evolve.tenant_weights TO evolve_reader;

CREATE FUNCTION evolve.set_tenant_weight(user_id text, weight integer DEFAULT 1)
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role(), 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to set a tenant''s weight'
            USING ERRCODE = '42501', HINT = 'Tenant weights are set by members of evolve_admin.';
    END IF;
    IF $1 IS NULL OR $1 = '' OR $2 IS NULL OR $2 NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'invalid tenant weight: % for %', coalesce($2::text, 'NULL'), coalesce($1, 'NULL')
            USING ERRCODE = '22023', HINT = 'A tenant (a non-empty user_id) has a weight from 1 to 1000; 1 is the default.';
    END IF;
    IF $2 = 1 THEN
        DELETE FROM evolve.tenant_weights w WHERE w.user_id = $1;
    ELSE
        INSERT INTO evolve.tenant_weights AS w (user_id, weight) VALUES ($1, $2)
        ON CONFLICT ON CONSTRAINT tenant_weights_pkey DO UPDATE
            SET weight = EXCLUDED.weight, updated_at = now(), updated_by = EXCLUDED.updated_by;
    END IF;
    RETURN $2;
END
$$;
REVOKE ALL ON FUNCTION evolve.set_tenant_weight(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.set_tenant_weight(text, integer) TO evolve_admin;
COMMENT ON FUNCTION evolve.set_tenant_weight(text, integer) IS
    'Sets a tenant''s share of the re-embedding worker within a priority (1 to 1000; 1, the default, removes the row). Returns the weight.';

-- ---------------------------------------------------------------- generations
ALTER TABLE evolve.entity_embeddings RENAME TO entity_embeddings_shared;
ALTER TABLE evolve.entity_embeddings_shared ADD COLUMN generation bigint NOT NULL DEFAULT 0;
ALTER TABLE evolve.entity_embeddings_shared ADD CONSTRAINT entity_embeddings_shared_generation
    CHECK (generation = 0);
-- The partitioned table's key (entity_id, generation) replaces it (ATTACH builds it).
ALTER TABLE evolve.entity_embeddings_shared DROP CONSTRAINT entity_embeddings_pkey;
ALTER TABLE evolve.entity_embeddings_shared ADD COLUMN profile text NOT NULL DEFAULT 'hashing';
CREATE TABLE evolve.entity_embeddings (
    entity_id      bigint NOT NULL REFERENCES evolve.entities (entity_id) ON DELETE CASCADE,
    embedding      vector(256) NOT NULL,
    schema_version integer NOT NULL,
    content_hash   bigint NOT NULL,
    job_id         bigint,
    embedded_at    timestamptz NOT NULL DEFAULT now(),
    generation     bigint NOT NULL DEFAULT 0,
    profile        text NOT NULL DEFAULT 'hashing',
    PRIMARY KEY (entity_id, generation)
) PARTITION BY LIST (generation);
ALTER TABLE evolve.entity_embeddings ATTACH PARTITION evolve.entity_embeddings_shared FOR VALUES IN (0);
COMMENT ON TABLE evolve.entity_embeddings IS
    'One embedding per entity and generation of its enriched text (snapshot + semantic descriptions), with the schema version and the content hash (embedder + text) it was computed from. Partitioned by generation: 0 (entity_embeddings_shared) holds every type without a generation of its own.';
COMMENT ON TABLE evolve.entity_embeddings_shared IS
    'Generation 0 of evolve.entity_embeddings: the embeddings of every type that has no generation of its own.';
ALTER TABLE evolve.entity_embeddings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.entity_embeddings
    USING (EXISTS (SELECT FROM evolve.entities e WHERE e.entity_id OPERATOR(pg_catalog.=) entity_embeddings.entity_id));
GRANT SELECT ON evolve.entity_embeddings TO evolve_reader;

-- Indexes set aside by 0.6.0 during a large job: built again now, on the table they were on.
DO $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT index_name, definition FROM evolve.deferred_indexes LOOP
        IF pg_catalog.to_regclass(pg_catalog.format('evolve.%I', d.index_name)) IS NULL THEN
            EXECUTE pg_catalog.replace(d.definition, ' ON evolve.entity_embeddings ',
                                       ' ON evolve.entity_embeddings_shared ');
        END IF;
    END LOOP;
    DELETE FROM evolve.deferred_indexes;
END
$$;

CREATE TABLE evolve.embedding_generations (
    generation  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type text NOT NULL,
    state       text NOT NULL CHECK (state IN ('building', 'current', 'retired')),
    job_id      bigint REFERENCES evolve.schema_migration_jobs (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz,
    -- The type's rows of generation 0 still to delete (it left the shared generation).
    shared_leftover boolean NOT NULL DEFAULT false,
    -- The embedding profile every vector of the generation comes from.
    profile     text NOT NULL DEFAULT 'hashing'
);
CREATE UNIQUE INDEX embedding_generations_building ON evolve.embedding_generations (entity_type)
    WHERE state = 'building';
CREATE UNIQUE INDEX embedding_generations_current ON evolve.embedding_generations (entity_type)
    WHERE state = 'current';
COMMENT ON TABLE evolve.embedding_generations IS
    'Generations of embeddings of an entity type, each a partition of evolve.entity_embeddings (entity_embeddings_g<generation>): building (filled by its job; search does not read it), current (what search reads; a type without one reads generation 0), retired (replaced, its partition dropped as soon as no search holds the table).';
GRANT SELECT ON evolve.embedding_generations TO evolve_reader;

-- The views of 0.6.0 followed the renamed table: they read the partitioned one again.
CREATE OR REPLACE VIEW evolve.migration_progress WITH (security_invoker = false) AS
WITH visible AS (
    SELECT u.job_id, count(*) FILTER (WHERE u.done) AS processed, count(*) AS total,
           count(*) FILTER (WHERE u.parked) AS parked, sum(u.attempts) AS errors
    FROM (SELECT x.job_id, x.entity_id, true AS done, false AS parked, 0 AS attempts
          FROM evolve.entity_embeddings x WHERE x.job_id IS NOT NULL
          UNION ALL
          SELECT q.job_id, q.entity_id, false, q.state = 'failed', q.attempts
          FROM evolve.embedding_queue q WHERE q.job_id IS NOT NULL) u
    JOIN evolve.entities e ON e.entity_id = u.entity_id
    WHERE NOT pg_catalog.pg_has_role('evolve_admin', 'MEMBER') AND evolve._visible(e.user_id)
    GROUP BY u.job_id),
jobs AS (
    SELECT j.id, j.status, j.kind, j.entity_types, j.priority, j.created_at, j.started_at, j.completed_at,
           CASE WHEN a.admin THEN j.processed_entities ELSE coalesce(v.processed, 0) END AS processed_entities,
           CASE WHEN a.admin THEN j.total_entities ELSE coalesce(v.total, 0) END AS total_entities,
           CASE WHEN a.admin THEN j.unchanged_entities END AS unchanged_entities,
           CASE WHEN a.admin THEN j.error_count ELSE coalesce(v.errors, 0) END AS error_count,
           CASE WHEN a.admin THEN j.parked_entities ELSE coalesce(v.parked, 0) END AS parked_entities
    FROM evolve.schema_migration_jobs j
    CROSS JOIN (SELECT pg_catalog.pg_has_role('evolve_admin', 'MEMBER') AS admin) a
    LEFT JOIN visible v ON v.job_id = j.id)
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
FROM jobs j
CROSS JOIN LATERAL (SELECT CASE WHEN j.started_at IS NOT NULL AND j.processed_entities > 0
    THEN round((j.processed_entities / greatest(extract(epoch FROM coalesce(j.completed_at, now()) - j.started_at), 0.001))::numeric, 1)
    END AS rate) r;

-- ---------------------------------------------------------------- search
-- semantic_search returns the generation it answered from.
DROP FUNCTION evolve.semantic_search(text, text, integer);
CREATE FUNCTION evolve."semantic_search"(
	"entity_type" TEXT, /* &str */
	"query" TEXT, /* &str */
	"k" INT DEFAULT 10 /* i32 */
) RETURNS TABLE (
	"entity_id" bigint,  /* i64 */
	"entity_key" TEXT,  /* alloc::string::String */
	"distance" double precision,  /* f64 */
	"snapshot" jsonb,  /* pgrx::datum::json::JsonB */
	"generation" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'semantic_search_wrapper';
REVOKE ALL ON FUNCTION evolve.semantic_search(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.semantic_search(text, text, integer) TO evolve_reader;
COMMENT ON FUNCTION evolve.semantic_search(text, text, integer) IS 'The k entities of a type nearest to a query text by cosine distance of their embeddings in the type''s current generation (returned as generation): a type being re-embedded whole is answered from its complete current generation until the new one replaces it in one commit.';

-- ---------------------------------------------------------------- status and health
CREATE VIEW evolve.embedding_status WITH (security_invoker = true) AS
WITH ents AS (
    SELECT e.entity_type, count(*) AS entities FROM evolve.entities e GROUP BY e.entity_type),
gens AS (
    SELECT t.entity_type,
           coalesce((SELECT g.generation FROM evolve.embedding_generations g
                     WHERE g.entity_type = t.entity_type AND g.state = 'current'), 0) AS generation,
           (SELECT g.generation FROM evolve.embedding_generations g
            WHERE g.entity_type = t.entity_type AND g.state = 'building') AS building_generation
    FROM ents t),
embedded AS (
    SELECT e.entity_type, count(*) AS embedded
    FROM evolve.entity_embeddings x JOIN evolve.entities e USING (entity_id)
    JOIN gens g ON g.entity_type = e.entity_type AND x.generation = g.generation
    GROUP BY e.entity_type),
queue AS (
    SELECT e.entity_type,
           count(*) FILTER (WHERE q.state = 'queued') AS queued,
           count(*) FILTER (WHERE q.state = 'failed') AS failed,
           count(*) FILTER (WHERE q.state = 'queued' AND EXISTS (
               SELECT FROM evolve.entity_embeddings x JOIN gens g ON x.generation = g.generation
               WHERE x.entity_id = q.entity_id AND g.entity_type = e.entity_type)) AS stale,
           min(q.enqueued_at) FILTER (WHERE q.state = 'queued') AS oldest_pending
    FROM evolve.embedding_queue q JOIN evolve.entities e USING (entity_id)
    GROUP BY e.entity_type)
SELECT t.entity_type, t.entities, coalesce(m.embedded, 0) AS embedded,
       coalesce(q.stale, 0) AS stale, coalesce(q.queued, 0) AS queued,
       coalesce(q.failed, 0) AS failed, q.oldest_pending,
       g.generation, g.building_generation,
       coalesce(p.mode, 'on_change') AS policy
FROM ents t
JOIN gens g USING (entity_type)
LEFT JOIN embedded m USING (entity_type)
LEFT JOIN queue q USING (entity_type)
LEFT JOIN evolve.embedding_policies p USING (entity_type)
ORDER BY t.entity_type;
GRANT SELECT ON evolve.embedding_status TO evolve_reader;
COMMENT ON VIEW evolve.embedding_status IS
    'Per entity type, of the entities the session may see: entities, embedded (in the current generation), stale (embedded, but queued since their text changed), queued, failed (parked), oldest_pending, the current generation, the generation being built, and the embedding policy.';

CREATE FUNCTION evolve.health_check()
RETURNS TABLE (check_name text, severity text, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    preloaded boolean := 'pg_evolve' = ANY (pg_catalog.string_to_array(
        pg_catalog.replace(pg_catalog.current_setting('shared_preload_libraries'), ' ', ''), ','));
    worker_db text := pg_catalog.current_setting('evolve.worker_database', true);
    workers integer;
    queued bigint;
    oldest interval;
    parked bigint;
    n bigint;
    names text;
BEGIN
    SELECT count(*) INTO workers FROM pg_catalog.pg_stat_activity
     WHERE backend_type = 'pg_evolve re-embedding worker';
    SELECT count(*) FILTER (WHERE q.state = 'queued'), count(*) FILTER (WHERE q.state = 'failed'),
           now() - min(q.enqueued_at) FILTER (WHERE q.state = 'queued')
      INTO queued, parked, oldest FROM evolve.embedding_queue q;

    check_name := 'preload';
    IF preloaded THEN
        severity := 'ok'; detail := 'pg_evolve is in shared_preload_libraries';
    ELSE
        severity := 'warning';
        detail := 'pg_evolve is not in shared_preload_libraries: no background worker, no wake-up on commit, metrics stay 0';
    END IF;
    RETURN NEXT;

    check_name := 'worker';
    IF workers > 0 THEN
        severity := 'ok'; detail := pg_catalog.format('%s worker(s) running (evolve.worker_database = %s)', workers, worker_db);
    ELSIF coalesce(worker_db, '') = '' THEN
        severity := CASE WHEN queued > 0 THEN 'warning' ELSE 'ok' END;
        detail := 'no worker configured (evolve.worker_database is empty): CALL evolve.run_reembedding() or evolve.schedule_maintenance() drains the queue';
    ELSE
        severity := 'critical';
        detail := pg_catalog.format('evolve.worker_database = %s but no worker is running', worker_db);
    END IF;
    RETURN NEXT;

    check_name := 'queue_age';
    severity := CASE WHEN oldest IS NULL OR oldest < interval '5 minutes' THEN 'ok'
                     WHEN oldest < interval '1 hour' THEN 'warning' ELSE 'critical' END;
    detail := CASE WHEN oldest IS NULL THEN 'the queue is empty'
                   ELSE pg_catalog.format('%s queued, the oldest for %s', queued, date_trunc('second', oldest)) END;
    RETURN NEXT;

    check_name := 'parked';
    severity := CASE WHEN parked = 0 THEN 'ok' ELSE 'warning' END;
    detail := CASE WHEN parked = 0 THEN 'no entity parked'
                   ELSE pg_catalog.format('%s entities parked after evolve.max_embed_attempts (see evolve.failed_embeddings; evolve.retry_failed(job_id) queues them again)', parked) END;
    RETURN NEXT;

    check_name := 'deferred_indexes';
    SELECT count(*), string_agg(index_name, ', ') INTO n, names FROM evolve.deferred_indexes;
    severity := CASE WHEN n = 0 THEN 'ok' ELSE 'warning' END;
    detail := CASE WHEN n = 0 THEN 'no vector index set aside'
                   ELSE pg_catalog.format('vector indexes set aside, built again when the queue drains: %s', names) END;
    RETURN NEXT;

    check_name := 'generations';
    SELECT count(*), string_agg(pg_catalog.format('%s (generation %s, %s)', g.entity_type, g.generation,
                                coalesce(p.percent || ' %', 'no job')), ', ')
      INTO n, names
      FROM evolve.embedding_generations g LEFT JOIN evolve.migration_progress p ON p.job_id = g.job_id
     WHERE g.state = 'building';
    severity := CASE WHEN n = 0 THEN 'ok' ELSE 'info' END;
    detail := CASE WHEN n = 0 THEN 'no generation being built'
                   ELSE pg_catalog.format('being built while search serves the current one: %s', names) END;
    RETURN NEXT;

    check_name := 'retired_generations';
    SELECT count(*), string_agg(pg_catalog.format('%s (generation %s)', entity_type, generation), ', ')
      INTO n, names FROM evolve.embedding_generations
     WHERE state = 'retired' AND switched_at < now() - interval '10 minutes';
    severity := CASE WHEN n = 0 THEN 'ok' ELSE 'warning' END;
    detail := CASE WHEN n = 0 THEN 'no replaced generation waiting to be dropped'
                   ELSE pg_catalog.format('replaced generations not dropped yet (searches kept evolve.entity_embeddings busy): %s', names) END;
    RETURN NEXT;

    check_name := 'settings';
    SELECT count(*), string_agg(name, ', ') INTO n, names FROM pg_catalog.pg_settings
     WHERE name LIKE 'evolve.%' AND pending_restart;
    severity := CASE WHEN n = 0 THEN 'ok' ELSE 'warning' END;
    detail := CASE WHEN n = 0 THEN 'no setting waits for a restart'
                   ELSE pg_catalog.format('changed in the configuration but in effect only after a restart: %s', names) END;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION evolve.health_check() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.health_check() TO evolve_admin, pg_monitor;
COMMENT ON FUNCTION evolve.health_check() IS
    'What an operator needs at a glance, one row per check (check_name, severity ok/info/warning/critical, detail): preload, worker, queue_age, parked, deferred_indexes, generations, retired_generations, settings.';

-- A batch's kept generic plans cannot know its LIMIT, and with a partition per generation their
-- estimates pass jit_above_cost: compiling them took more than the batch's own work.
ALTER FUNCTION evolve._reembed_batch() SET jit = off;

-- ---------------------------------------------------------------- embedding profiles
-- A profile names how texts become vectors: the built-in hashing embedder (256 dimensions; what
-- evolve.embedding_function replaces when set) or all-MiniLM-L6-v2 run in the backend (384).
-- Each entity type embeds with one profile (hashing unless set); changing it re-embeds the type
-- into a new generation. The embedding column takes any dimension: each generation's vector
-- index is on the column cast to its profile's dimension, and so is every search.
CREATE TABLE evolve.embedding_profiles (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    dims       integer NOT NULL CHECK (dims BETWEEN 1 AND 16000),
    model      text NOT NULL CHECK (model IN ('hashing', 'minilm')),
    max_batch  integer NOT NULL DEFAULT 32 CHECK (max_batch BETWEEN 1 AND 1024),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((model = 'hashing' AND dims = 256) OR (model = 'minilm' AND dims = 384))
);
INSERT INTO evolve.embedding_profiles (name, dims, model, max_batch)
VALUES ('hashing', 256, 'hashing', 100), ('minilm', 384, 'minilm', 32);
COMMENT ON TABLE evolve.embedding_profiles IS
    'Embedding profiles: a name, the dimensions and the model (hashing: the built-in feature-hashing embedder, or the function evolve.embedding_function names; minilm: all-MiniLM-L6-v2 in the backend), with the batch size the worker embeds in.';
GRANT SELECT ON evolve.embedding_profiles TO evolve_reader;

CREATE TABLE evolve.entity_type_profiles (
    entity_type text PRIMARY KEY,
    profile     text NOT NULL REFERENCES evolve.embedding_profiles (name),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL DEFAULT evolve._calling_role()
);
COMMENT ON TABLE evolve.entity_type_profiles IS
    'The embedding profile of each entity type that does not use hashing (evolve.set_embedding_profile).';
GRANT SELECT ON evolve.entity_type_profiles TO evolve_reader;
ALTER TABLE evolve.embedding_generations
    ADD FOREIGN KEY (profile) REFERENCES evolve.embedding_profiles (name);

-- Any dimension: the vector indexes of generation 0 are on the column cast to 256 dimensions.
DO $$
DECLARE
    d record;
    defs text[] := '{}';
BEGIN
    FOR d IN SELECT c.relname, pg_catalog.pg_get_indexdef(c.oid) AS def
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
             JOIN pg_catalog.pg_am a ON a.oid = c.relam
             WHERE i.indrelid = 'evolve.entity_embeddings_shared'::pg_catalog.regclass
               AND a.amname IN ('hnsw', 'ivfflat') LOOP
        defs := defs || pg_catalog.regexp_replace(d.def, 'USING (\w+) \(embedding ', 'USING \1 (((embedding)::vector(256)) ');
        EXECUTE pg_catalog.format('DROP INDEX evolve.%I', d.relname);
    END LOOP;
    ALTER TABLE evolve.entity_embeddings ALTER COLUMN embedding TYPE vector;
    FOR i IN 1 .. pg_catalog.array_length(defs, 1) LOOP
        EXECUTE defs[i];
    END LOOP;
END
$$;

CREATE FUNCTION evolve.set_embedding_profile(entity_type text, profile text)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role(), 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to set an embedding profile'
            USING ERRCODE = '42501', HINT = 'Embedding profiles are set by members of evolve_admin.';
    END IF;
    IF NOT EXISTS (SELECT FROM evolve.embedding_profiles p WHERE p.name = $2) THEN
        RAISE EXCEPTION 'embedding profile "%" does not exist', $2
            USING ERRCODE = '42704', HINT = 'See evolve.embedding_profiles.';
    END IF;
    IF $2 = 'hashing' THEN
        DELETE FROM evolve.entity_type_profiles t WHERE t.entity_type = $1;
    ELSE
        INSERT INTO evolve.entity_type_profiles AS t (entity_type, profile) VALUES ($1, $2)
        ON CONFLICT ON CONSTRAINT entity_type_profiles_pkey DO UPDATE
            SET profile = EXCLUDED.profile, updated_at = now(), updated_by = EXCLUDED.updated_by;
    END IF;
    -- The type is re-embedded whole, into a generation of the new profile.
    SELECT evolve.apply_change(pg_catalog.jsonb_build_object(
        'kind', 'embedding_function_changed', 'entity_types', pg_catalog.jsonb_build_array($1))) INTO job;
    RETURN job;
END
$$;
REVOKE ALL ON FUNCTION evolve.set_embedding_profile(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.set_embedding_profile(text, text) TO evolve_admin;
COMMENT ON FUNCTION evolve.set_embedding_profile(text, text) IS
    'Sets the embedding profile of an entity type and re-embeds the type into a new generation of that profile (search keeps the current one until it is complete). Returns the job id.';

CREATE FUNCTION evolve.create_embedding_profile(name text, dims integer, model text DEFAULT 'minilm',
                                                max_batch integer DEFAULT 32)
RETURNS text LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role(), 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to create an embedding profile'
            USING ERRCODE = '42501', HINT = 'Embedding profiles are created by members of evolve_admin.';
    END IF;
    IF $1 IS NULL OR $1 !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid embedding profile name: %', coalesce($1, 'NULL')
            USING ERRCODE = '22023', HINT = 'A profile name is a lowercase letter followed by up to 62 lowercase letters, digits or underscores.';
    END IF;
    IF $3 IS NULL OR ($3, $2) NOT IN (('minilm', 384), ('hashing', 256)) THEN
        RAISE EXCEPTION 'invalid embedding profile: model %, % dimensions', coalesce($3, 'NULL'), coalesce($2::text, 'NULL')
            USING ERRCODE = '22023', HINT = 'The models are minilm (384 dimensions) and hashing (256).';
    END IF;
    IF $4 IS NULL OR $4 NOT BETWEEN 1 AND 1024 THEN
        RAISE EXCEPTION 'invalid max_batch: %', coalesce($4::text, 'NULL')
            USING ERRCODE = '22023', HINT = 'max_batch is from 1 to 1024.';
    END IF;
    IF EXISTS (SELECT FROM evolve.embedding_profiles p WHERE p.name = $1) THEN
        RAISE EXCEPTION 'embedding profile "%" already exists', $1 USING ERRCODE = '42710';
    END IF;
    INSERT INTO evolve.embedding_profiles (name, dims, model, max_batch) VALUES ($1, $2, $3, $4);
    RETURN $1;
END
$$;
REVOKE ALL ON FUNCTION evolve.create_embedding_profile(text, integer, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.create_embedding_profile(text, integer, text, integer) TO evolve_admin;
COMMENT ON FUNCTION evolve.create_embedding_profile(text, integer, text, integer) IS
    'Creates an embedding profile: a name, its dimensions and its model (minilm, 384; hashing, 256), with the number of texts the worker embeds per forward pass (max_batch). Returns the name.';

CREATE OR REPLACE FUNCTION evolve."_embed_profile"(
	"text" TEXT, /* &str */
	"profile" TEXT /* &str */
) RETURNS real[] /* alloc::vec::Vec<f32> */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'embed_profile_wrapper';
REVOKE ALL ON FUNCTION evolve._embed_profile(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._embed_profile(text, text) TO evolve_reader;
CREATE FUNCTION evolve.embed(text, profile text) RETURNS vector
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT evolve._embed_profile($1, $2)::vector $$;
REVOKE ALL ON FUNCTION evolve.embed(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.embed(text, text) TO evolve_reader;
COMMENT ON FUNCTION evolve.embed(text, text) IS
    'A text''s embedding with an embedding profile (hashing: 256 dimensions; minilm: all-MiniLM-L6-v2 in the backend, 384 dimensions, unit length).';
