-- pg_evolve 0.9.0 -> 0.10.0: a layout that Citus can distribute as installed. Run by ALTER
-- EXTENSION pg_evolve UPDATE, and the end of a fresh install too.
--
-- Citus does not rebuild an extension's tables on its workers: each worker keeps the tables its
-- own CREATE EXTENSION made. So whatever a distribution cannot take has to leave the install
-- script (docs/scaling.md, "Tried on a Citus cluster"):
--   * foreign keys between the registry's tables: Citus converts a table referencing a
--     reference table by dropping and recreating it, and an extension's member cannot be
--     dropped. The functions that write these tables keep them consistent instead (they never
--     delete proposals, jobs or profiles; the history of a deleted schema is deleted with it);
--   * row-level policies with subqueries, which Citus refuses on its tables: each row carries
--     the scope its policy needs.
-- A single node behaves as before.

-- ---------------------------------------------------------------- keys between registry tables
ALTER TABLE evolve.schema_history DROP CONSTRAINT schema_history_schema_id_fkey;
ALTER TABLE evolve.schema_evolution_history DROP CONSTRAINT schema_evolution_history_proposal_id_fkey;
ALTER TABLE evolve.dynamic_tables DROP CONSTRAINT dynamic_tables_proposal_id_fkey;
ALTER TABLE evolve.embedding_queue DROP CONSTRAINT embedding_queue_job_id_fkey;
ALTER TABLE evolve.embedding_generations DROP CONSTRAINT embedding_generations_job_id_fkey;
ALTER TABLE evolve.embedding_generations DROP CONSTRAINT embedding_generations_profile_fkey;
ALTER TABLE evolve.entity_type_profiles DROP CONSTRAINT entity_type_profiles_profile_fkey;

-- ---------------------------------------------------------------- scopes carried by the rows
-- One definition of who sees a proposal, its history and the objects it created.
CREATE FUNCTION evolve._proposal_visible(user_id text, kind text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT evolve._visible($1)
             AND ($2 IS DISTINCT FROM 'promote_to_global' OR pg_catalog.pg_has_role('evolve_admin', 'MEMBER')) $$;
COMMENT ON FUNCTION evolve._proposal_visible(text, text) IS
    'Row-level security: a proposal (or a row of its history) of this user scope and kind is visible (promotions to global to evolve_admin only).';
REVOKE ALL ON FUNCTION evolve._proposal_visible(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._proposal_visible(text, text) TO evolve_reader;

-- Observations and embeddings: their entity's user_id (entities never change scope).
ALTER TABLE evolve.observations ADD COLUMN user_id text;
UPDATE evolve.observations o SET user_id = e.user_id
FROM evolve.entities e WHERE e.entity_id = o.entity_id AND e.user_id IS NOT NULL;
COMMENT ON COLUMN evolve.observations.user_id IS
    'The entity''s user_id (NULL for a global entity), for row-level security.';
DROP POLICY tenant ON evolve.observations;
CREATE POLICY tenant ON evolve.observations USING (evolve._visible(user_id));

ALTER TABLE evolve.entity_embeddings ADD COLUMN user_id text;
UPDATE evolve.entity_embeddings x SET user_id = e.user_id
FROM evolve.entities e WHERE e.entity_id = x.entity_id AND e.user_id IS NOT NULL;
COMMENT ON COLUMN evolve.entity_embeddings.user_id IS
    'The entity''s user_id (NULL for a global entity), for row-level security.';
DO $$
DECLARE
    t regclass;
BEGIN
    -- The parent and each generation's partition (a partition read by name has its own policy).
    FOR t IN SELECT c.oid::regclass FROM pg_catalog.pg_class c
             WHERE c.oid = 'evolve.entity_embeddings'::regclass
                OR c.oid IN (SELECT inhrelid FROM pg_catalog.pg_inherits
                             WHERE inhparent = 'evolve.entity_embeddings'::regclass) LOOP
        EXECUTE pg_catalog.format('DROP POLICY IF EXISTS tenant ON %s', t);
        EXECUTE pg_catalog.format('CREATE POLICY tenant ON %s USING (evolve._visible(user_id))', t);
    END LOOP;
END $$;

-- The queue has carried its entity's tenant since 0.7.0 ('' for a global entity; a user_id is
-- never empty).
DROP POLICY tenant ON evolve.embedding_queue;
CREATE POLICY tenant ON evolve.embedding_queue USING (evolve._visible(NULLIF(tenant, '')));

-- A proposal's history and objects: its user_id and kind.
ALTER TABLE evolve.schema_evolution_history ADD COLUMN user_id text, ADD COLUMN proposal_kind text;
UPDATE evolve.schema_evolution_history h SET user_id = p.user_id, proposal_kind = p.kind
FROM evolve.schema_proposals p WHERE p.id = h.proposal_id;
COMMENT ON COLUMN evolve.schema_evolution_history.user_id IS
    'The proposal''s user_id (NULL for a global proposal or none), for row-level security.';
COMMENT ON COLUMN evolve.schema_evolution_history.proposal_kind IS
    'The proposal''s kind (NULL without a proposal), for row-level security.';
DROP POLICY tenant ON evolve.schema_evolution_history;
CREATE POLICY tenant ON evolve.schema_evolution_history USING (evolve._proposal_visible(user_id, proposal_kind));

ALTER TABLE evolve.dynamic_tables ADD COLUMN user_id text, ADD COLUMN proposal_kind text;
UPDATE evolve.dynamic_tables d SET user_id = p.user_id, proposal_kind = p.kind
FROM evolve.schema_proposals p WHERE p.id = d.proposal_id;
COMMENT ON COLUMN evolve.dynamic_tables.user_id IS
    'The user_id of the proposal that created the object (NULL for a global one or none), for row-level security.';
COMMENT ON COLUMN evolve.dynamic_tables.proposal_kind IS
    'The kind of the proposal that created the object (NULL without one), for row-level security.';
DROP POLICY tenant ON evolve.dynamic_tables;
CREATE POLICY tenant ON evolve.dynamic_tables USING (evolve._proposal_visible(user_id, proposal_kind));

-- ---------------------------------------------------------------- triggers on Citus
-- Citus runs a distributed table's triggers on its shards, where each shard lives (tables named
-- after the shard, such as raw_fragments_102008), and a reference table's on each node's copy.
-- There, the aggregate, count and cascade triggers of entities and raw fragments would write the
-- node's own copies of tables that are not the distributed ones: on a shard they do nothing. On
-- a distributed database ingestion adds the aggregate and count deltas itself, and foreign keys
-- between the colocated tables (added by evolve.distribute()) cascade an entity's delete to its
-- rows. Notifications are sent by the coordinator only (a worker's copy cannot take part in the
-- two-phase commit of a NOTIFY). A single node has no shards: nothing changes there.
CREATE OR REPLACE FUNCTION evolve._fragments_aggregate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    -- The statement's signed rows, column by column.
    types text[]; users text[]; fkeys text[]; vtypes text[]; srcs text[]; signs integer[];
    freqs bigint[]; seens timestamptz[]; vals jsonb[];
    -- The keys whose last sighting must be read again (they lost a row, or it moved back).
    stypes text[]; susers text[]; skeys text[];
BEGIN
    -- A shard of a distributed table (its own name): see the section's header.
    IF TG_TABLE_NAME <> 'raw_fragments' THEN
        RETURN NULL;
    END IF;
    -- Ingestion adds the deltas of its own fragment upserts (src/ingest.rs).
    IF evolve._aggregates_by_caller() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(entity_type), array_agg(user_id), array_agg(fragment_key), array_agg(value_type),
               array_agg(source), array_agg(1), array_agg(frequency), array_agg(last_seen_at), array_agg(value)
        INTO types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals
        FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(entity_type), array_agg(user_id), array_agg(fragment_key), array_agg(value_type),
               array_agg(source), array_agg(-1), array_agg(frequency), array_agg(last_seen_at), array_agg(value)
        INTO types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals
        FROM old_rows;
        stypes := types; susers := users; skeys := fkeys;
    ELSE
        -- Only rows whose aggregated columns changed count, each as it left and as it came back
        -- (a lifecycle change moves nothing).
        SELECT array_agg(d.t), array_agg(d.u), array_agg(d.k), array_agg(d.vt), array_agg(d.src),
               array_agg(d.sign), array_agg(d.freq), array_agg(d.seen), array_agg(d.val)
        INTO types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals
        FROM new_rows n JOIN old_rows o USING (fragment_id)
        CROSS JOIN LATERAL (VALUES
            (o.entity_type, o.user_id, o.fragment_key, o.value_type, o.source, -1, o.frequency, o.last_seen_at, o.value),
            (n.entity_type, n.user_id, n.fragment_key, n.value_type, n.source, 1, n.frequency, n.last_seen_at, n.value))
            AS d(t, u, k, vt, src, sign, freq, seen, val)
        WHERE (n.entity_type, n.user_id, n.fragment_key, n.value_type, n.source, n.frequency, n.last_seen_at, n.value)
              IS DISTINCT FROM
              (o.entity_type, o.user_id, o.fragment_key, o.value_type, o.source, o.frequency, o.last_seen_at, o.value);
        SELECT array_agg(o.entity_type), array_agg(o.user_id), array_agg(o.fragment_key)
        INTO stypes, susers, skeys
        FROM new_rows n JOIN old_rows o USING (fragment_id)
        WHERE (n.entity_type, n.user_id, n.fragment_key) IS DISTINCT FROM (o.entity_type, o.user_id, o.fragment_key)
           OR n.last_seen_at < o.last_seen_at;
    END IF;
    -- A statement that settles keys touches other backends' parts: it first locks every part of
    -- every key it changes, in one sorted pass, so that adding its own deltas afterwards waits
    -- on nothing a statement doing the same could hold.
    IF skeys IS NOT NULL THEN
        PERFORM evolve._lock_fragment_keys(types, users, fkeys);
    END IF;
    IF fkeys IS NOT NULL THEN
        PERFORM evolve._add_fragment_deltas(types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals);
    END IF;
    IF skeys IS NOT NULL THEN
        PERFORM evolve._settle_fragment_keys(stypes, susers, skeys);
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION evolve._count_entities() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A shard of a distributed table (its own name): see the section's header.
    IF TG_TABLE_NAME <> 'entities' THEN
        RETURN NULL;
    END IF;
    -- Where entity ids derive from keys (no entities_key), ingestion counts what it creates.
    IF TG_OP = 'INSERT' AND pg_catalog.to_regclass('evolve.entities_key') IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM evolve._add_count_parts(array_agg(entity_type), array_agg(user_id), array_agg(n))
        FROM (SELECT entity_type, user_id, count(*) AS n FROM new_rows GROUP BY 1, 2) d;
    ELSE
        PERFORM evolve._add_count_parts(array_agg(entity_type), array_agg(user_id), array_agg(-n))
        FROM (SELECT entity_type, user_id, count(*) AS n FROM old_rows GROUP BY 1, 2) d;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION evolve._entities_cascade() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- A shard of a distributed table (its own name): see the section's header.
    IF TG_TABLE_NAME <> 'entities' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE evolve.raw_fragments, evolve.observations, evolve.raw_fragment_aggregate_parts,
                 evolve.entity_count_parts, evolve.embedding_queue;
    ELSE
        DELETE FROM evolve.raw_fragments f USING old_rows o WHERE f.entity_id = o.entity_id;
        DELETE FROM evolve.observations x USING old_rows o WHERE x.entity_id = o.entity_id;
        DELETE FROM evolve.embedding_queue q USING old_rows o WHERE q.entity_id = o.entity_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION evolve._notify_schema_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- A placement of a reference table (its own name): the coordinator's notifies.
    IF TG_TABLE_NAME <> 'schema_history' THEN
        IF NOT pg_catalog.citus_is_coordinator() THEN
            RETURN NULL;
        END IF;
    END IF;
    IF NEW.user_id IS NULL
       OR coalesce(pg_catalog.current_setting('evolve.notify_user_scopes', true), 'off') IN ('on', 'true') THEN
        PERFORM pg_catalog.pg_notify('evolve_schema', pg_catalog.json_build_object(
            'entity_type', NEW.entity_type, 'user_id', NEW.user_id, 'version', NEW.version)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION evolve._notify_proposal() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- A placement of a reference table (its own name): the coordinator's notifies.
    IF TG_TABLE_NAME <> 'schema_proposals' THEN
        IF NOT pg_catalog.citus_is_coordinator() THEN
            RETURN NULL;
        END IF;
    END IF;
    IF NEW.user_id IS NULL
       OR coalesce(pg_catalog.current_setting('evolve.notify_user_scopes', true), 'off') IN ('on', 'true') THEN
        PERFORM pg_catalog.pg_notify('evolve_proposal', pg_catalog.json_build_object(
            'id', NEW.id, 'event', CASE WHEN TG_OP = 'INSERT' THEN 'created'
                                        WHEN NEW.status = 'implemented' THEN 'approved'
                                        ELSE NEW.status END,
            'kind', NEW.kind, 'entity_type', NEW.entity_type, 'user_id', NEW.user_id,
            'name', NEW.name)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION evolve._notify_job() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- A placement of a reference table (its own name): the coordinator's notifies.
    IF TG_TABLE_NAME <> 'schema_migration_jobs' THEN
        IF NOT pg_catalog.citus_is_coordinator() THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_catalog.pg_notify('evolve_job', pg_catalog.json_build_object(
        'id', NEW.id, 'status', NEW.status, 'kind', NEW.kind, 'entity_types', NEW.entity_types,
        'processed_entities', NEW.processed_entities, 'total_entities', NEW.total_entities,
        'parked_entities', NEW.parked_entities)::text);
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------- verification on Citus
-- The same recompute and comparison in PL/pgSQL: Citus plans no SQL-language function over
-- its tables (their parameters), and plans each part of these on its own.
-- The aggregates recomputed from the fragments, a row per (entity_type, user_id, fragment_key):
-- what verify_aggregates() compares them with. With by_shard, a row per shard and key, the shard
-- by its key (0 on a single node): what rebuild_aggregates() writes. (Counts, sums and maxima:
-- Citus computes them on each shard, grouped by the shard's place among the hash ranges.)
CREATE FUNCTION evolve._recount_fragment_aggregates(by_shard boolean DEFAULT false)
RETURNS TABLE (shard bigint, entity_type text, user_id text, fragment_key text, sample_count bigint,
               frequency_total bigint, type_counts jsonb, source_counts jsonb, last_seen_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    keys bigint[] := ARRAY[0];
    lows integer[];
    place text := '1';
BEGIN
    IF by_shard THEN
        SELECT p.keys, p.lows, p.place INTO keys, lows, place FROM evolve._shard_places() p;
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format($q$
    WITH r AS (
        SELECT %1$s AS place, entity_type, user_id, fragment_key, count(*) AS sample_count,
               sum(frequency) AS frequency_total, max(last_seen_at) AS last_seen_at
        FROM evolve.raw_fragments GROUP BY 1, 2, 3, 4),
    rt AS (
        SELECT place, entity_type, user_id, fragment_key,
               evolve._count_object(array_agg(value_type), array_agg(n)) AS type_counts
        FROM (SELECT %1$s AS place, entity_type, user_id, fragment_key, value_type, count(*) AS n
              FROM evolve.raw_fragments GROUP BY 1, 2, 3, 4, 5) t GROUP BY 1, 2, 3, 4),
    rs AS (
        SELECT place, entity_type, user_id, fragment_key,
               evolve._count_object(array_agg(source), array_agg(n)) AS source_counts
        FROM (SELECT %1$s AS place, entity_type, user_id, fragment_key, source, count(*) AS n
              FROM evolve.raw_fragments GROUP BY 1, 2, 3, 4, 5) t GROUP BY 1, 2, 3, 4)
    SELECT ($1)[r.place], r.entity_type, r.user_id, r.fragment_key, r.sample_count, r.frequency_total::bigint,
           rt.type_counts, rs.source_counts, r.last_seen_at
    FROM r JOIN rt ON rt.place = r.place AND rt.entity_type = r.entity_type AND rt.fragment_key = r.fragment_key
                  AND rt.user_id IS NOT DISTINCT FROM r.user_id
           JOIN rs ON rs.place = r.place AND rs.entity_type = r.entity_type AND rs.fragment_key = r.fragment_key
                  AND rs.user_id IS NOT DISTINCT FROM r.user_id
    $q$, place) USING keys, lows;
END
$$;
-- (Read with its caller's rights and policies, as verify_aggregates() is.)
REVOKE ALL ON FUNCTION evolve._recount_fragment_aggregates(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._recount_fragment_aggregates(boolean) TO evolve_reader;

CREATE OR REPLACE FUNCTION evolve.verify_aggregates()
RETURNS TABLE (entity_type text, user_id text, fragment_key text, field text, expected text, actual text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH expected AS (
        SELECT r.*, coalesce(r.user_id, '') || E'\x1f' || r.entity_type || E'\x1f' || r.fragment_key AS k
        FROM evolve._recount_fragment_aggregates() r),
    actual AS (
        SELECT a.*, coalesce(a.user_id, '') || E'\x1f' || a.entity_type || E'\x1f' || a.fragment_key AS k
        FROM evolve.raw_fragment_aggregates a)
    SELECT coalesce(e.entity_type, a.entity_type), coalesce(e.user_id, a.user_id),
           coalesce(e.fragment_key, a.fragment_key), c.field, c.expected, c.actual
    FROM expected e FULL JOIN actual a ON a.k = e.k
    CROSS JOIN LATERAL (VALUES
        ('sample_count', e.sample_count::text, a.sample_count::text),
        ('frequency_total', e.frequency_total::text, a.frequency_total::text),
        ('type_counts', e.type_counts::text, a.type_counts::text),
        ('source_counts', e.source_counts::text, a.source_counts::text),
        ('last_seen_at', e.last_seen_at::text, a.last_seen_at::text)) AS c(field, expected, actual)
    WHERE c.expected IS DISTINCT FROM c.actual
    ORDER BY 1, 2, 3, 4;
END
$$;

-- ---------------------------------------------------------------- upserts without functions
-- Citus refuses a function call in the DO UPDATE clause of an upsert into one of its tables
-- (the registry's are reference tables there): the settings' upserts take the values their
-- inserts computed (EXCLUDED, the columns' defaults), the same values as before.
CREATE OR REPLACE FUNCTION evolve.bind_tenant(role regrole, user_id text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role()::pg_catalog.name, 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to bind a role to a tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'This is reserved to members of evolve_admin: GRANT evolve_admin TO the role.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1) THEN
        RAISE EXCEPTION 'role % does not exist', $1::pg_catalog.oid
            USING ERRCODE = 'undefined_object', HINT = 'Bind an existing role.';
    END IF;
    IF pg_catalog.pg_get_userbyid($1) OPERATOR(pg_catalog.=) ANY (ARRAY['evolve_reader', 'evolve_writer', 'evolve_admin']::pg_catalog.name[]) THEN
        RAISE EXCEPTION 'role % cannot be bound to a tenant', $1
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Bind the login (or SET ROLE) role of the tenant, not one of pg_evolve''s group roles.';
    END IF;
    IF $2 IS NULL OR pg_catalog.octet_length($2) OPERATOR(pg_catalog.<) 1 OR pg_catalog.octet_length($2) OPERATOR(pg_catalog.>) 256
       OR $2 OPERATOR(pg_catalog.~) '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'invalid user_id %', pg_catalog.quote_nullable($2)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A user_id is 1 to 256 bytes of printable text.';
    END IF;
    INSERT INTO evolve.tenant_roles AS t (role, user_id) VALUES ($1, $2)
    ON CONFLICT ON CONSTRAINT tenant_roles_pkey DO UPDATE
        SET user_id = excluded.user_id, bound_by = EXCLUDED.bound_by, bound_at = EXCLUDED.bound_at;
END
$$;

CREATE OR REPLACE FUNCTION evolve.set_embedding_policy(entity_type text, mode text DEFAULT 'on_change')
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
        SET mode = EXCLUDED.mode, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by;
    RETURN mode;
END
$$;

CREATE OR REPLACE FUNCTION evolve.set_tenant_weight(user_id text, weight integer DEFAULT 1)
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
            SET weight = EXCLUDED.weight, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by;
    END IF;
    RETURN $2;
END
$$;

CREATE OR REPLACE FUNCTION evolve.set_embedding_profile(entity_type text, profile text)
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
            SET profile = EXCLUDED.profile, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by;
    END IF;
    -- The type is re-embedded whole, into a generation of the new profile.
    SELECT evolve.apply_change(pg_catalog.jsonb_build_object(
        'kind', 'embedding_function_changed', 'entity_types', pg_catalog.jsonb_build_array($1))) INTO job;
    RETURN job;
END
$$;

-- ---------------------------------------------------------------- aggregate parts by shard
-- The parts of the aggregates and of the entity counts carry the shard whose rows they count.
-- On a distributed database they are distributed by it, colocated with the entities
-- (evolve.distribute()): ingestion adds its deltas on the shard it writes the rows to, and a
-- shard's parts are settled, folded and rebuilt there, so no part is shared by two shards and
-- the sums are read across them. A shard's `shard` is its key: the smallest non-negative
-- entity id Citus places on it (evolve._shard_keys()). A single node has one shard, 0. (The
-- parts' keys keep leading with the scope and key, which lookups name; Citus needs the shard
-- anywhere in them.) Lock order of the parts: shard key, then as before (entity_type, user_id,
-- fragment_key, slot).
ALTER TABLE evolve.raw_fragment_aggregate_parts ADD COLUMN shard bigint NOT NULL DEFAULT 0;
ALTER TABLE evolve.raw_fragment_aggregate_parts DROP CONSTRAINT raw_fragment_aggregate_parts_key;
ALTER TABLE evolve.raw_fragment_aggregate_parts ADD CONSTRAINT raw_fragment_aggregate_parts_key
    UNIQUE NULLS NOT DISTINCT (entity_type, user_id, fragment_key, shard, slot);
COMMENT ON TABLE evolve.raw_fragment_aggregate_parts IS
    'Partial sums of evolve.raw_fragment_aggregates: one row per key, shard and backend slot that wrote it (signed: a delete adds negative counts). Summed at read; evolve.fold_aggregates() merges a shard''s slots.';
COMMENT ON COLUMN evolve.raw_fragment_aggregate_parts.shard IS
    'The shard whose fragments the part counts, by its key (evolve._shard_keys()); 0 on a single node.';
ALTER TABLE evolve.entity_count_parts ADD COLUMN shard bigint NOT NULL DEFAULT 0;
ALTER TABLE evolve.entity_count_parts DROP CONSTRAINT entity_count_parts_key;
ALTER TABLE evolve.entity_count_parts ADD CONSTRAINT entity_count_parts_key
    UNIQUE NULLS NOT DISTINCT (entity_type, user_id, shard, slot);
COMMENT ON TABLE evolve.entity_count_parts IS
    'Partial entity counts of evolve.entity_counts, one row per type, user scope, shard and backend slot that wrote it (signed). Summed at read.';
COMMENT ON COLUMN evolve.entity_count_parts.shard IS
    'The shard whose entities the part counts, by its key (evolve._shard_keys()); 0 on a single node.';

-- A distributed database's shards of evolve.entities (and of every table colocated with it), in
-- hash order: each one's id, hash range and key. Read on a Citus coordinator only.
CREATE FUNCTION evolve._shard_keys()
RETURNS TABLE (shardid bigint, min_hash integer, max_hash integer, shard bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    shards bigint;
    bound bigint;
BEGIN
    -- (PL/pgSQL: an SQL function's body is checked at creation, where Citus may be absent.)
    -- Hashes spread evenly: 64 candidates per shard find every shard's smallest id but for odds
    -- of about e^-64; the search widens until they do.
    SELECT count(*) INTO shards FROM pg_dist_shard s WHERE s.logicalrelid = 'evolve.entities'::regclass;
    bound := 64 * shards;
    WHILE (SELECT count(DISTINCT s.shardid)
           FROM pg_dist_shard s
           JOIN (SELECT v, worker_hash(v) AS h FROM generate_series(0::bigint, bound) v) g
             ON g.h BETWEEN s.shardminvalue::integer AND s.shardmaxvalue::integer
           WHERE s.logicalrelid = 'evolve.entities'::regclass) < shards LOOP
        bound := bound * 2;
    END LOOP;
    RETURN QUERY
    SELECT s.shardid, s.shardminvalue::integer, s.shardmaxvalue::integer, min(g.v)
    FROM pg_dist_shard s
    JOIN (SELECT v, worker_hash(v) AS h FROM generate_series(0::bigint, bound) v) g
      ON g.h BETWEEN s.shardminvalue::integer AND s.shardmaxvalue::integer
    WHERE s.logicalrelid = 'evolve.entities'::regclass
    GROUP BY 1, 2, 3 ORDER BY 2;
END
$$;
REVOKE ALL ON FUNCTION evolve._shard_keys() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._shard_keys() TO evolve_reader;

-- Where a row's shard is, for the statements that group rows by it: the shards' keys in hash
-- order, their lowest hashes, and the expression that places a row by its entity_id among them
-- when the two are that statement's $1 and $2 (the row's shard key is then `($1)[place]`).
-- Where entities are not distributed: one shard, 0, and every row's place is 1.
CREATE FUNCTION evolve._shard_places(OUT keys bigint[], OUT lows integer[], OUT place text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_shard') IS NOT NULL THEN
        SELECT array_agg(s.shard ORDER BY s.min_hash), array_agg(s.min_hash ORDER BY s.min_hash)
        INTO keys, lows FROM evolve._shard_keys() s;
    END IF;
    IF lows IS NULL THEN
        keys := ARRAY[0];
        place := '1';
    ELSE
        place := 'pg_catalog.width_bucket(pg_catalog.worker_hash(entity_id), $2)';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION evolve._shard_places() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._shard_places() TO evolve_reader;

-- The writers of parts, shard by shard; the versions without a shard (the triggers of a single
-- node, whose one shard is 0) call these.
CREATE FUNCTION evolve._add_parts(
    part_shard bigint, entity_types text[], user_ids text[], fragment_keys text[], sample_counts bigint[],
    frequency_totals bigint[], type_counts jsonb[], source_counts jsonb[], sightings timestamptz[],
    samples jsonb[]) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    INSERT INTO evolve.raw_fragment_aggregate_parts AS a
        (shard, entity_type, user_id, fragment_key, slot, sample_count, frequency_total, type_counts,
         source_counts, last_seen_at, sample_values)
    SELECT part_shard, t, u, k, evolve._backend_slot(), n, f, tc, sc, seen, sv
    FROM unnest(entity_types, user_ids, fragment_keys, sample_counts, frequency_totals, type_counts,
                source_counts, sightings, samples) AS x(t, u, k, n, f, tc, sc, seen, sv)
    ORDER BY t COLLATE "C", u COLLATE "C" NULLS FIRST, k COLLATE "C"
    ON CONFLICT ON CONSTRAINT raw_fragment_aggregate_parts_key DO UPDATE SET
        sample_count = a.sample_count + EXCLUDED.sample_count,
        frequency_total = a.frequency_total + EXCLUDED.frequency_total,
        type_counts = evolve._add_counts(a.type_counts, EXCLUDED.type_counts),
        source_counts = evolve._add_counts(a.source_counts, EXCLUDED.source_counts),
        last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
        -- (_add_samples is _merge_samples of the one new list: declared immutable, as Citus
        -- requires of what a conflict clause calls.)
        sample_values = evolve._add_samples(a.sample_values, EXCLUDED.sample_values);
END
$$;

CREATE OR REPLACE FUNCTION evolve._add_parts(
    entity_types text[], user_ids text[], fragment_keys text[], sample_counts bigint[],
    frequency_totals bigint[], type_counts jsonb[], source_counts jsonb[], sightings timestamptz[],
    samples jsonb[]) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    PERFORM evolve._add_parts(0, entity_types, user_ids, fragment_keys, sample_counts, frequency_totals,
                              type_counts, source_counts, sightings, samples);
END
$$;

CREATE FUNCTION evolve._add_fragment_deltas(
    part_shard bigint, entity_types text[], user_ids text[], fragment_keys text[], value_types text[],
    sources text[], signs integer[], frequencies bigint[], sightings timestamptz[], sample_vals jsonb[])
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM evolve._add_parts(part_shard, array_agg(entity_type), array_agg(user_id), array_agg(fragment_key),
                              array_agg(n), array_agg(f), array_agg(tc), array_agg(sc), array_agg(seen), array_agg(sv))
    FROM (WITH d AS (
              SELECT * FROM unnest(entity_types, user_ids, fragment_keys, value_types, sources, signs,
                                   frequencies, sightings, sample_vals)
                     AS d(entity_type, user_id, fragment_key, value_type, source, sign, frequency, last_seen_at, value)),
          g AS (
              SELECT entity_type, user_id, fragment_key, value_type, source,
                     sum(sign) AS n, sum(sign * frequency) AS f,
                     max(last_seen_at) FILTER (WHERE sign > 0) AS seen,
                     (array_agg(value) FILTER (WHERE sign > 0 AND jsonb_typeof(value) <> 'null'))[1:10] AS vals
              FROM d GROUP BY 1, 2, 3, 4, 5)
          SELECT entity_type, user_id, fragment_key, sum(n)::bigint AS n, sum(f)::bigint AS f,
                 evolve._count_object(array_agg(value_type), array_agg(n)) AS tc,
                 evolve._count_object(array_agg(source), array_agg(n)) AS sc,
                 max(seen) AS seen,
                 evolve._merge_samples('[]', coalesce(jsonb_agg(to_jsonb(vals)) FILTER (WHERE vals IS NOT NULL), '[]')) AS sv
          FROM g GROUP BY 1, 2, 3) k;
END
$$;

CREATE OR REPLACE FUNCTION evolve._add_fragment_deltas(
    entity_types text[], user_ids text[], fragment_keys text[], value_types text[], sources text[],
    signs integer[], frequencies bigint[], sightings timestamptz[], sample_vals jsonb[]) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM evolve._add_fragment_deltas(0, entity_types, user_ids, fragment_keys, value_types, sources,
                                        signs, frequencies, sightings, sample_vals);
END
$$;

CREATE FUNCTION evolve._add_count_parts(part_shard bigint, entity_types text[], user_ids text[], counts bigint[])
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    INSERT INTO evolve.entity_count_parts AS c (shard, entity_type, user_id, slot, entity_count)
    SELECT part_shard, t, u, evolve._backend_slot(), n FROM unnest(entity_types, user_ids, counts) AS x(t, u, n)
    ORDER BY t COLLATE "C", u COLLATE "C" NULLS FIRST
    ON CONFLICT ON CONSTRAINT entity_count_parts_key DO UPDATE SET entity_count = c.entity_count + EXCLUDED.entity_count;
END
$$;

CREATE OR REPLACE FUNCTION evolve._add_count_parts(entity_types text[], user_ids text[], counts bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    PERFORM evolve._add_count_parts(0, entity_types, user_ids, counts);
END
$$;

-- The aggregate deltas of fragments deleted on shards, where statement triggers do not run (see
-- "triggers on Citus"): called on the coordinator by the distributed branch of fragment cleanup
-- with, for each shard it deleted on (by key, ascending: the parts' lock order), the rows its
-- one-shard delete returned, as a jsonb array of [entity_type, user_id, fragment_key,
-- value_type, source, frequency, last_seen_at, value]. Each shard's parts of those keys are
-- locked and take the deltas; then the latest sighting left on each shard of each key is read,
-- once for them all (per shard, by its place among the hash ranges), and the parts locked (and
-- this backend's own) get it: a part a writer created since, for a row this read may not have
-- seen, is left as it is. A shard with no row of a key left loses the key's parts when they sum
-- to nothing (they would not after a shard split: rebuild_aggregates() then). Every write is one
-- shard's statement. Returns how many rows it was given.
CREATE FUNCTION evolve._fragments_deleted(part_shards bigint[], deleted jsonb[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    types text[]; users text[]; fkeys text[]; vtypes text[]; srcs text[];
    freqs bigint[]; seens timestamptz[]; vals jsonb[];
    -- The parts locked: shard, scope, key and slot of each.
    l_shards bigint[] := '{}'; l_types text[] := '{}'; l_users text[] := '{}'; l_keys text[] := '{}';
    l_slots integer[] := '{}';
    m_shards bigint[]; m_types text[]; m_users text[]; m_keys text[]; m_slots integer[];
    all_shards bigint[] := '{}'; all_types text[] := '{}'; all_users text[] := '{}'; all_keys text[] := '{}';
    own integer := evolve._backend_slot();
    shard_keys bigint[]; lows integer[];
    n bigint := 0;
    x record;
    total numeric;
BEGIN
    FOR i IN 1 .. coalesce(pg_catalog.cardinality(part_shards), 0) LOOP
        SELECT array_agg(r->>0), array_agg(r->>1), array_agg(r->>2), array_agg(r->>3), array_agg(r->>4),
               array_agg((r->>5)::bigint), array_agg((r->>6)::timestamptz), array_agg(r->7)
        INTO types, users, fkeys, vtypes, srcs, freqs, seens, vals
        FROM pg_catalog.jsonb_array_elements(coalesce(deleted[i], '[]')) AS r;
        CONTINUE WHEN fkeys IS NULL;
        SELECT array_agg(p.shard), array_agg(p.entity_type), array_agg(p.user_id), array_agg(p.fragment_key),
               array_agg(p.slot)
        INTO m_shards, m_types, m_users, m_keys, m_slots
        FROM (SELECT a.shard, a.entity_type, a.user_id, a.fragment_key, a.slot
              FROM evolve.raw_fragment_aggregate_parts a
              JOIN (SELECT DISTINCT * FROM unnest(types, users, fkeys)) k(t, u, f)
                ON a.entity_type = k.t AND a.fragment_key = k.f AND a.user_id IS NOT DISTINCT FROM k.u
              WHERE a.shard = part_shards[i]
              ORDER BY a.entity_type COLLATE "C", a.user_id COLLATE "C" NULLS FIRST, a.fragment_key COLLATE "C", a.slot
              FOR UPDATE OF a) p;
        IF m_slots IS NOT NULL THEN
            l_shards := l_shards || m_shards; l_types := l_types || m_types; l_users := l_users || m_users;
            l_keys := l_keys || m_keys; l_slots := l_slots || m_slots;
        END IF;
        PERFORM evolve._add_fragment_deltas(part_shards[i], types, users, fkeys, vtypes, srcs,
                                            pg_catalog.array_fill(-1, ARRAY[pg_catalog.cardinality(fkeys)]),
                                            freqs, seens, vals);
        all_shards := all_shards || pg_catalog.array_fill(part_shards[i], ARRAY[pg_catalog.cardinality(fkeys)]);
        all_types := all_types || types;
        all_users := all_users || users;
        all_keys := all_keys || fkeys;
        n := n + pg_catalog.cardinality(fkeys);
    END LOOP;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    SELECT p.keys, p.lows INTO shard_keys, lows FROM evolve._shard_places() p;
    -- The scopes and keys, each once, for the read.
    SELECT array_agg(DISTINCT t), array_agg(DISTINCT f), array_agg(DISTINCT u)
    INTO types, fkeys, users
    FROM unnest(all_types, all_keys, all_users) AS d(t, f, u);
    FOR x IN
        WITH k AS (SELECT DISTINCT * FROM unnest(all_shards, all_types, all_users, all_keys) AS k(s, t, u, f)),
        latest AS (
            SELECT shard_keys[width_bucket(worker_hash(r.entity_id), lows)] AS s, r.entity_type AS t,
                   r.user_id AS u, r.fragment_key AS f, max(r.last_seen_at) AS seen
            FROM evolve.raw_fragments r
            WHERE r.entity_type = ANY (types) AND r.fragment_key = ANY (fkeys)
              AND (r.user_id = ANY (users) OR (r.user_id IS NULL AND EXISTS (SELECT FROM k WHERE k.u IS NULL)))
            GROUP BY 1, 2, 3, 4)
        SELECT k.s, k.t, k.u, k.f, l.seen,
               ARRAY(SELECT m.slot FROM unnest(l_shards, l_types, l_users, l_keys, l_slots) AS m(s, t, u, f, slot)
                     WHERE m.s = k.s AND m.t = k.t AND m.f = k.f AND m.u IS NOT DISTINCT FROM k.u) || own AS slots
        FROM k LEFT JOIN latest l ON l.s = k.s AND l.t = k.t AND l.f = k.f AND l.u IS NOT DISTINCT FROM k.u
    LOOP
        IF x.seen IS NULL THEN
            SELECT coalesce(abs(sum(a.sample_count)) + abs(sum(a.frequency_total)), 0) INTO total
            FROM evolve.raw_fragment_aggregate_parts a
            WHERE a.shard = x.s AND a.entity_type = x.t AND a.fragment_key = x.f
              AND a.user_id IS NOT DISTINCT FROM x.u AND a.slot = ANY (x.slots);
            IF total = 0 THEN
                DELETE FROM evolve.raw_fragment_aggregate_parts a
                WHERE a.shard = x.s AND a.entity_type = x.t AND a.fragment_key = x.f
                  AND a.user_id IS NOT DISTINCT FROM x.u AND a.slot = ANY (x.slots);
            END IF;
        ELSE
            UPDATE evolve.raw_fragment_aggregate_parts a SET last_seen_at = x.seen
            WHERE a.shard = x.s AND a.entity_type = x.t AND a.fragment_key = x.f
              AND a.user_id IS NOT DISTINCT FROM x.u AND a.slot = ANY (x.slots) AND a.last_seen_at > x.seen;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION evolve._fragments_deleted(bigint[], jsonb[]) FROM PUBLIC;

-- Folds one shard's parts of every key into the part of slot own_slot (the caller's), for
-- evolve.fold_aggregates(): the parts are locked without waiting (SKIP LOCKED: one a writer
-- holds is left for the next run), the caller's own part of each key too, so a key whose own
-- part someone else holds (a statement settling it) is left alone and adding the sums to it
-- never waits while other parts are held. Every statement names one shard (on Citus, one
-- shard's statement); the sums read are the same before and after. Returns the number of parts
-- merged away.
CREATE FUNCTION evolve._fold_parts(part_shard bigint, own_slot integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    merged bigint; more bigint;
    types text[]; users text[]; fkeys text[]; ns bigint[]; fs bigint[]; tcs jsonb[]; scs jsonb[];
    seens timestamptz[]; svs jsonb[];
BEGIN
    WITH multi AS (
        SELECT p.entity_type, p.user_id, p.fragment_key FROM evolve.raw_fragment_aggregate_parts p
        WHERE p.shard = part_shard GROUP BY 1, 2, 3 HAVING count(*) > 1),
    locked AS (
        SELECT a.ctid AS row, a.entity_type, a.user_id, a.fragment_key, a.slot
        FROM evolve.raw_fragment_aggregate_parts a JOIN multi m
          ON a.entity_type = m.entity_type AND a.fragment_key = m.fragment_key
         AND a.user_id IS NOT DISTINCT FROM m.user_id
        WHERE a.shard = part_shard
        FOR UPDATE OF a SKIP LOCKED),
    held AS (
        SELECT p.entity_type, p.user_id, p.fragment_key FROM evolve.raw_fragment_aggregate_parts p
        WHERE p.shard = part_shard AND p.slot = own_slot
        EXCEPT SELECT l.entity_type, l.user_id, l.fragment_key FROM locked l WHERE l.slot = own_slot),
    gone AS (
        DELETE FROM evolve.raw_fragment_aggregate_parts a USING locked l
        WHERE a.shard = part_shard AND a.ctid = l.row AND l.slot <> own_slot
          AND NOT EXISTS (SELECT FROM held h WHERE h.entity_type = l.entity_type
                          AND h.fragment_key = l.fragment_key AND h.user_id IS NOT DISTINCT FROM l.user_id)
        RETURNING a.*),
    folded AS (
        SELECT g.entity_type, g.user_id, g.fragment_key, sum(g.sample_count)::bigint AS n,
               sum(g.frequency_total)::bigint AS f, evolve._sum_counts(g.type_counts) AS tc,
               evolve._sum_counts(g.source_counts) AS sc, max(g.last_seen_at) AS seen,
               evolve._sum_samples(g.sample_values) AS sv
        FROM gone g GROUP BY 1, 2, 3)
    SELECT (SELECT count(*) FROM gone), array_agg(x.entity_type), array_agg(x.user_id), array_agg(x.fragment_key),
           array_agg(x.n), array_agg(x.f), array_agg(x.tc), array_agg(x.sc), array_agg(x.seen), array_agg(x.sv)
    INTO merged, types, users, fkeys, ns, fs, tcs, scs, seens, svs
    FROM folded x;
    IF fkeys IS NOT NULL THEN
        PERFORM evolve._add_parts(part_shard, types, users, fkeys, ns, fs, tcs, scs, seens, svs);
    END IF;

    WITH multi AS (
        SELECT p.entity_type, p.user_id FROM evolve.entity_count_parts p
        WHERE p.shard = part_shard GROUP BY 1, 2 HAVING count(*) > 1),
    locked AS (
        SELECT c.ctid AS row, c.entity_type, c.user_id, c.slot
        FROM evolve.entity_count_parts c JOIN multi m
          ON c.entity_type = m.entity_type AND c.user_id IS NOT DISTINCT FROM m.user_id
        WHERE c.shard = part_shard
        FOR UPDATE OF c SKIP LOCKED),
    held AS (
        SELECT p.entity_type, p.user_id FROM evolve.entity_count_parts p
        WHERE p.shard = part_shard AND p.slot = own_slot
        EXCEPT SELECT l.entity_type, l.user_id FROM locked l WHERE l.slot = own_slot),
    gone AS (
        DELETE FROM evolve.entity_count_parts c USING locked l
        WHERE c.shard = part_shard AND c.ctid = l.row AND l.slot <> own_slot
          AND NOT EXISTS (SELECT FROM held h WHERE h.entity_type = l.entity_type
                          AND h.user_id IS NOT DISTINCT FROM l.user_id)
        RETURNING c.*),
    folded AS (SELECT g.entity_type, g.user_id, sum(g.entity_count)::bigint AS n FROM gone g GROUP BY 1, 2)
    SELECT (SELECT count(*) FROM gone), array_agg(x.entity_type), array_agg(x.user_id), array_agg(x.n)
    INTO more, types, users, ns
    FROM folded x;
    IF types IS NOT NULL THEN
        PERFORM evolve._add_count_parts(part_shard, types, users, ns);
    END IF;
    RETURN merged + more;
END
$$;
REVOKE ALL ON FUNCTION evolve._fold_parts(bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION evolve._add_parts(bigint, text[], text[], text[], bigint[], bigint[], jsonb[], jsonb[],
                                         timestamptz[], jsonb[]),
    evolve._add_fragment_deltas(bigint, text[], text[], text[], text[], text[], integer[], bigint[],
                                timestamptz[], jsonb[]),
    evolve._add_count_parts(bigint, text[], text[], bigint[]) FROM PUBLIC;

-- ---------------------------------------------------------------- evolve.rebuild_aggregates()
-- Recomputes the aggregates and entity counts from the data, exactly (what verify_aggregates()
-- compares them with); a key's sample values (examples, not a recompute) are kept, and a key
-- that had no parts starts with none. For aggregates that drifted: after rows were deleted
-- where no trigger sees it (on a distributed database, a DELETE FROM evolve.entities cascades
-- on the shards), or restored from elsewhere. Each table is rebuilt in a transaction of its
-- own, under a lock that makes its writers wait (what they add after the commit is for rows
-- the rebuild did not see): a writer may hold one of the two while it waits for the other, so
-- no transaction holds both. Read committed only (each step reads what committed before it).
CREATE FUNCTION evolve._rebuild_check() RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role(), 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to rebuild the aggregates'
            USING ERRCODE = '42501', HINT = 'evolve.rebuild_aggregates() is for members of evolve_admin.';
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'evolve.rebuild_aggregates() runs at read committed isolation'
            USING ERRCODE = '25001',
                  HINT = 'CALL it outside a transaction block, at the default isolation level: it must see what writers committed while it waited for them.';
    END IF;
END
$$;

CREATE FUNCTION evolve._rebuild_fragment_aggregates() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    written bigint;
    slot integer := evolve._backend_slot();
BEGIN
    PERFORM evolve._rebuild_check();
    LOCK TABLE evolve.raw_fragment_aggregate_parts IN EXCLUSIVE MODE;
    IF pg_catalog.to_regclass('pg_temp.evolve_rebuilt_samples') IS NOT NULL THEN
        DROP TABLE pg_temp.evolve_rebuilt_samples;
    END IF;
    CREATE TEMP TABLE evolve_rebuilt_samples ON COMMIT DROP AS
        SELECT p.entity_type, p.user_id, p.fragment_key, evolve._sum_samples(p.sample_values) AS samples
        FROM evolve.raw_fragment_aggregate_parts p GROUP BY 1, 2, 3;
    DELETE FROM evolve.raw_fragment_aggregate_parts;
    -- A part per shard and key; each shard's part keeps the key's samples (merged at read).
    INSERT INTO evolve.raw_fragment_aggregate_parts
        (shard, entity_type, user_id, fragment_key, slot, sample_count, frequency_total, type_counts,
         source_counts, last_seen_at, sample_values)
    SELECT r.shard, r.entity_type, r.user_id, r.fragment_key, slot, r.sample_count, r.frequency_total,
           r.type_counts, r.source_counts, r.last_seen_at, coalesce(s.samples, '[]')
    FROM evolve._recount_fragment_aggregates(true) r
    LEFT JOIN evolve_rebuilt_samples s
           ON s.entity_type = r.entity_type AND s.fragment_key = r.fragment_key
          AND s.user_id IS NOT DISTINCT FROM r.user_id;
    SELECT count(*) INTO written FROM (
        SELECT DISTINCT p.entity_type, p.user_id, p.fragment_key FROM evolve.raw_fragment_aggregate_parts p) k;
    RETURN written;
END
$$;

CREATE FUNCTION evolve._rebuild_entity_counts() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    written bigint;
    slot integer := evolve._backend_slot();
    keys bigint[];
    lows integer[];
    place text;
BEGIN
    PERFORM evolve._rebuild_check();
    LOCK TABLE evolve.entity_count_parts IN EXCLUSIVE MODE;
    SELECT p.keys, p.lows, p.place INTO keys, lows, place FROM evolve._shard_places() p;
    DELETE FROM evolve.entity_count_parts;
    -- A part per shard and scope.
    EXECUTE pg_catalog.format($q$
        INSERT INTO evolve.entity_count_parts (shard, entity_type, user_id, slot, entity_count)
        SELECT ($1)[c.place], c.entity_type, c.user_id, $3, c.n
        FROM (SELECT %s AS place, entity_type, user_id, count(*) AS n FROM evolve.entities GROUP BY 1, 2, 3) c
    $q$, place) USING keys, lows, slot;
    SELECT count(*) INTO written FROM (
        SELECT DISTINCT c.entity_type, c.user_id FROM evolve.entity_count_parts c) k;
    RETURN written;
END
$$;

-- (A procedure, to commit between the two: one that commits cannot be SECURITY DEFINER, the
-- functions it calls are.)
CREATE PROCEDURE evolve.rebuild_aggregates(INOUT fragment_keys bigint DEFAULT NULL,
                                           INOUT entity_scopes bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    fragment_keys := evolve._rebuild_fragment_aggregates();
    COMMIT;
    entity_scopes := evolve._rebuild_entity_counts();
END
$$;
REVOKE ALL ON FUNCTION evolve._rebuild_check(), evolve._rebuild_fragment_aggregates(),
    evolve._rebuild_entity_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._rebuild_check(), evolve._rebuild_fragment_aggregates(),
    evolve._rebuild_entity_counts() TO evolve_admin;
REVOKE ALL ON PROCEDURE evolve.rebuild_aggregates(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE evolve.rebuild_aggregates(bigint, bigint) TO evolve_admin;
COMMENT ON PROCEDURE evolve.rebuild_aggregates(bigint, bigint) IS
    'Recomputes evolve.raw_fragment_aggregates and evolve.entity_counts from the data (sample values kept), each in a transaction of its own, for aggregates that drifted (verify_aggregates() shows it); returns the number of keys and of entity scopes. CALL it outside a transaction block; members of evolve_admin.';

-- ---------------------------------------------------------------- evolve.distribute()
-- On a Citus coordinator: the registry as reference tables (a copy on every node), the data
-- distributed by entity_id and colocated (an entity's rows, fragments, queue row and embeddings
-- on one shard group). Entity ids then derive from the keys (src/ingest.rs: derived_ids), since
-- no index can keep (entity_type, user_id, entity_key) unique across nodes: entities_key goes,
-- and so the database must not hold entities yet. The aggregate and count parts are distributed
-- by their shard's key, colocated too (each shard's parts beside its rows); the inbox and its
-- rejects stay on the coordinator, where ingestion reads them. Idempotent: a table Citus has already
-- taken is left as it is. Runs as the owner of the tables (Citus requires it), not for anyone
-- else: no SECURITY DEFINER.
CREATE FUNCTION evolve.distribute(shard_count integer DEFAULT NULL)
RETURNS TABLE (table_name text, citus_table_type text, created boolean)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    reference text[] := ARRAY[
        'schemas', 'schema_history', 'entity_type_aliases', 'entity_conflicts', 'user_schema_quotas',
        'migrations', 'migration_failures', 'schema_proposals', 'schema_evolution_history',
        'dynamic_tables', 'schema_migration_jobs', 'embedding_profiles', 'entity_type_profiles',
        'embedding_generations', 'embedding_policies', 'projections', 'tenant_roles', 'tenant_weights',
        'deferred_indexes'];
    -- entities first: the others are colocated with it.
    distributed text[] := ARRAY['entities', 'observations', 'raw_fragments', 'embedding_queue', 'entity_embeddings'];
    t text;
    rel regclass;
    coordinator boolean;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'evolve.distribute() runs on a Citus coordinator: CREATE EXTENSION citus, add the worker nodes (citus_add_node), then call it again. A single node needs nothing of it.';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user,
                                  (SELECT relowner FROM pg_catalog.pg_class WHERE oid = 'evolve.entities'::regclass),
                                  'USAGE') THEN
        RAISE EXCEPTION 'permission denied to distribute pg_evolve''s tables'
            USING ERRCODE = '42501', HINT = 'Run evolve.distribute() as the owner of the extension''s tables (the role that created it).';
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO STRICT coordinator;
    IF NOT coordinator THEN
        RAISE EXCEPTION 'evolve.distribute() runs on the Citus coordinator, not on a worker'
            USING ERRCODE = '55000';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = 'evolve.entities'::regclass) THEN
        IF EXISTS (SELECT 1 FROM evolve.entities LIMIT 1) THEN
            RAISE EXCEPTION 'evolve.entities holds entities: their ids came from a sequence, not from their keys'
                USING ERRCODE = '55000',
                      HINT = 'Distribute a database before its first ingest (the registry may be filled): on a distributed database an entity''s id is derived from its key.';
        END IF;
    END IF;
    -- A re-embedding batch takes the queue's lock before it looks at the layout: it runs wholly
    -- before this or wholly after.
    LOCK TABLE evolve.embedding_queue IN EXCLUSIVE MODE;
    -- Triggers run on every placement (cache invalidation, notifications, fragment lifecycle).
    SET LOCAL citus.enable_unsafe_triggers = on;
    IF shard_count IS NOT NULL THEN
        PERFORM pg_catalog.set_config('citus.shard_count', shard_count::text, true);
    END IF;
    FOREACH t IN ARRAY reference LOOP
        rel := pg_catalog.format('evolve.%I', t)::regclass;
        table_name := rel::text;
        citus_table_type := 'reference';
        created := NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = rel);
        IF created THEN
            -- The rows are copied into the table's placements; the local copy goes.
            PERFORM pg_catalog.create_reference_table(rel);
            PERFORM pg_catalog.truncate_local_data_after_distributing_table(rel);
        END IF;
        RETURN NEXT;
    END LOOP;
    ALTER TABLE evolve.entities DROP CONSTRAINT IF EXISTS entities_key;
    FOREACH t IN ARRAY distributed LOOP
        rel := pg_catalog.format('evolve.%I', t)::regclass;
        table_name := rel::text;
        citus_table_type := 'distributed';
        created := NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = rel);
        IF created THEN
            PERFORM pg_catalog.create_distributed_table(rel, 'entity_id',
                colocate_with => CASE WHEN t = 'entities' THEN 'default' ELSE 'evolve.entities' END);
        END IF;
        RETURN NEXT;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['raw_fragment_aggregate_parts', 'entity_count_parts'] LOOP
        rel := pg_catalog.format('evolve.%I', t)::regclass;
        table_name := rel::text;
        citus_table_type := 'distributed';
        created := NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = rel);
        IF created THEN
            PERFORM pg_catalog.create_distributed_table(rel, 'shard', colocate_with => 'evolve.entities');
        END IF;
        RETURN NEXT;
    END LOOP;
    -- Citus plans a statement with parameters that is not a single-shard one only with their
    -- values (a custom plan): ingest's statements may not be forced generic there.
    ALTER FUNCTION evolve.ingest(text, jsonb, text, text, text, integer) RESET plan_cache_mode;
    -- An entity's delete cascades to its rows on its shard (a trigger does it on a single node).
    FOREACH t IN ARRAY ARRAY['observations', 'raw_fragments', 'embedding_queue'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_constraint
                       WHERE conname = t || '_entity_cascade' AND connamespace = 'evolve'::regnamespace) THEN
            EXECUTE pg_catalog.format(
                'ALTER TABLE evolve.%I ADD CONSTRAINT %I FOREIGN KEY (entity_id) REFERENCES evolve.entities (entity_id) ON DELETE CASCADE',
                t, t || '_entity_cascade');
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION evolve.distribute(integer) FROM PUBLIC;
COMMENT ON FUNCTION evolve.distribute(integer) IS
    'On a Citus coordinator, before the first ingest: makes the registry reference tables and distributes the data by entity_id, colocated (entity ids then derive from their keys). Idempotent; 55000 without Citus. Run by the extension''s owner.';

-- Identity values an ingestion statement draws row by row come from a backend-local cache: an
-- inbox row or a fragment row no longer takes the sequence's buffer lock. (A session that ends
-- leaves the rest of its cache unused: gaps, and ids out of order across sessions, which they
-- already were by commit. Observation ids are not cached: an entity's snapshot absorbs its
-- observations in id order, drawn while the entity is locked.)
ALTER TABLE evolve.raw_fragments ALTER COLUMN fragment_id SET CACHE 64;
ALTER TABLE evolve.inbox ALTER COLUMN inbox_id SET CACHE 64;
