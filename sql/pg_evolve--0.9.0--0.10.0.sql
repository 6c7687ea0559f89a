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

-- ---------------------------------------------------------------- evolve.distribute()
-- On a Citus coordinator: the registry as reference tables (a copy on every node), the data
-- distributed by entity_id and colocated (an entity's rows, fragments, queue row and embeddings
-- on one shard group). Entity ids then derive from the keys (src/ingest.rs: derived_ids), since
-- no index can keep (entity_type, user_id, entity_key) unique across nodes: entities_key goes,
-- and so the database must not hold entities yet. The inbox, its rejects and the aggregate parts
-- stay on the coordinator, where ingestion writes them. Idempotent: a table Citus has already
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
END $$;
REVOKE ALL ON FUNCTION evolve.distribute(integer) FROM PUBLIC;
COMMENT ON FUNCTION evolve.distribute(integer) IS
    'On a Citus coordinator, before the first ingest: makes the registry reference tables and distributes the data by entity_id, colocated (entity ids then derive from their keys). Idempotent; 55000 without Citus. Run by the extension''s owner.';
