-- pg_evolve 0.1.0 → 0.2.0: roles, grants, tenant isolation, pinned SECURITY DEFINER functions.
--
-- 0.2.0 adds only SQL objects and settings of existing ones, so this one file is both the
-- upgrade script (ALTER EXTENSION pg_evolve UPDATE) and the last part of a fresh 0.2.0 install:
-- the two cannot drift. tests/upgrade.rs compares their catalogs.
--
-- The model (docs/security.md):
--   evolve_reader  reads schemas, proposals, progress; searches.
--   evolve_writer  ingests; registers and changes its own user schemas; proposes.   (⊃ reader)
--   evolve_admin   global schemas, review, quotas, changes, maintenance.           (⊃ writer)
--   PUBLIC         nothing: no USAGE on schema evolve, no EXECUTE on any routine.
-- The tenant of a session is evolve.current_user_id. Row-level security keeps readers to the
-- global rows and their tenant's rows; the writing functions run as SECURITY DEFINER with a
-- pinned search_path and check the caller and the tenant themselves (src/access.rs).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'evolve_reader') THEN
        CREATE ROLE evolve_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'evolve_writer') THEN
        CREATE ROLE evolve_writer NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('evolve_writer', 'evolve_reader', 'MEMBER') THEN
        GRANT evolve_reader TO evolve_writer;
    END IF;
    IF NOT pg_catalog.pg_has_role('evolve_admin', 'evolve_writer', 'MEMBER') THEN
        GRANT evolve_writer TO evolve_admin;
    END IF;
END
$$;

-- The session's tenant, NULL when unset. Policies and functions read it through this.
-- Policy expressions run with the querying session's search_path and stay inlinable only
-- without a SET clause, so every operator and function in them is named with its schema.
CREATE FUNCTION evolve.current_user_id() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN pg_catalog.textne(pg_catalog.current_setting('evolve.current_user_id', true), '')
                  THEN pg_catalog.current_setting('evolve.current_user_id', true) END $$;
COMMENT ON FUNCTION evolve.current_user_id() IS
    'The tenant of this session: evolve.current_user_id, NULL when unset or empty.';

-- Whether a row of this user scope is visible: global rows, the tenant's rows, or any row to
-- evolve_admin.
CREATE FUNCTION evolve._visible(user_id text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT $1 IS NULL OR pg_catalog.texteq($1, evolve.current_user_id())
             OR pg_catalog.pg_has_role('evolve_admin', 'MEMBER') $$;
COMMENT ON FUNCTION evolve._visible(text) IS
    'Row-level security: a row of this user scope is visible (global, the session''s tenant, or the caller is in evolve_admin).';

-- The built-in embedder, callable whatever the caller's search_path: user embedding and
-- migration functions run inside the pinned writing functions, where the vector type cannot be
-- named unqualified. pgvector's assignment cast turns the real[] into the vector.
CREATE OR REPLACE FUNCTION evolve.embed(text) RETURNS vector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT evolve._embed_builtin($1) $$;

-- Vector indexes set aside while a large re-embedding job runs (evolve.index_rebuild_threshold)
-- and built again in one pass when the queue drains. A row exists exactly while its index does
-- not: the drop and the rebuild each commit with their row.
CREATE TABLE evolve.deferred_indexes (
    index_name  text PRIMARY KEY,
    definition  text NOT NULL,
    deferred_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evolve.deferred_indexes IS
    'Vector indexes of evolve.entity_embeddings set aside during a large re-embedding job, with the definition they are built again from when the queue drains.';

-- ---------------------------------------------------------------- privileges
REVOKE ALL ON SCHEMA evolve FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA evolve FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA evolve FROM PUBLIC;
GRANT USAGE ON SCHEMA evolve TO evolve_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA evolve TO evolve_reader;
GRANT INSERT ON evolve.inbox TO evolve_writer;

GRANT EXECUTE ON FUNCTION
    evolve.current_user_id, evolve._visible,
    evolve.active_schema, evolve.schema_at, evolve.schema_diff, evolve.check_compatibility,
    evolve.schema_diagram, evolve.field_confidence, evolve.migrate_payload,
    evolve.entity, evolve.enriched_text, evolve.embed, evolve.semantic_search,
    evolve.analyze_impact, evolve.cache_stats, evolve.verify_aggregates,
    -- used by the views and verify_aggregates
    evolve._dominant_type, evolve._type_consistency, evolve._count_keys, evolve._count_object,
    evolve._add_counts, evolve._merge_samples, evolve._fragment_transition_allowed,
    evolve._embed_builtin
    TO evolve_reader;

GRANT EXECUTE ON FUNCTION
    evolve.ingest, evolve.register_schema, evolve.update_schema_incremental,
    evolve.activate_schema, evolve.deactivate_schema, evolve.promote_fragments,
    evolve.propose_schema, evolve.refresh_snapshot
    TO evolve_writer;

GRANT EXECUTE ON FUNCTION
    evolve.approve_proposal, evolve.reject_proposal, evolve.rollback_proposal,
    evolve.apply_change, evolve.retry_failed, evolve._reembed_batch,
    evolve.set_quota, evolve.set_compatibility, evolve.resolve_conflict,
    evolve.register_migration, evolve.schedule_maintenance,
    evolve.archive_stale_fragments, evolve.cleanup_expired_fragments
    TO evolve_admin;
-- A procedure that commits cannot be SECURITY DEFINER; it calls _reembed_batch, which is.
GRANT EXECUTE ON PROCEDURE evolve.run_reembedding TO evolve_admin;

-- Functions that write run as the extension owner, with a search_path no caller can plant
-- objects in; every name they use is schema-qualified. They check the caller themselves.
-- _route_inbox: the inbox trigger fires as the inserting writer and routes as the owner.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'ingest', 'register_schema', 'update_schema_incremental', 'activate_schema',
        'deactivate_schema', 'promote_fragments', 'propose_schema', 'refresh_snapshot',
        'approve_proposal', 'reject_proposal', 'rollback_proposal', 'apply_change', 'retry_failed',
        '_reembed_batch', 'set_quota', 'set_compatibility', 'resolve_conflict',
        'register_migration', 'schedule_maintenance', 'archive_stale_fragments',
        'cleanup_expired_fragments', '_route_inbox']
    LOOP
        EXECUTE format('ALTER FUNCTION evolve.%I SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
    END LOOP;
END
$$;

-- A re-embedding batch runs the same few statements thousands of times: their kept plans stay
-- generic (planned once) instead of being planned again whenever the custom-plan heuristic
-- prefers it, which cost a tenth of the batch.
ALTER FUNCTION evolve._reembed_batch() SET plan_cache_mode = force_generic_plan;

-- ---------------------------------------------------------------- tenant isolation
-- Owners and superusers (the SECURITY DEFINER functions, the worker) bypass these policies.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'schemas', 'schema_history', 'entities', 'raw_fragments', 'raw_fragment_aggregates',
        'entity_counts', 'schema_proposals', 'inbox_rejects', 'migration_failures', 'entity_conflicts']
    LOOP
        EXECUTE format('ALTER TABLE evolve.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant ON evolve.%I USING (evolve._visible(user_id))', t);
    END LOOP;
END
$$;
-- A quota row is its user's: no global rows here.
ALTER TABLE evolve.user_schema_quotas ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.user_schema_quotas USING (evolve._visible(user_id) AND user_id IS NOT NULL);
-- A writer inserts inbox rows of its own tenant only (the global scope when unset).
ALTER TABLE evolve.inbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.inbox USING (evolve._visible(user_id))
    WITH CHECK ((user_id IS NULL AND evolve.current_user_id() IS NULL)
                OR pg_catalog.texteq(user_id, evolve.current_user_id())
                OR pg_catalog.pg_has_role('evolve_admin', 'MEMBER'));
-- Rows that belong to an entity or a proposal follow it (the subquery is itself filtered).
ALTER TABLE evolve.observations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.observations
    USING (EXISTS (SELECT FROM evolve.entities e WHERE e.entity_id OPERATOR(pg_catalog.=) observations.entity_id));
ALTER TABLE evolve.entity_embeddings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.entity_embeddings
    USING (EXISTS (SELECT FROM evolve.entities e WHERE e.entity_id OPERATOR(pg_catalog.=) entity_embeddings.entity_id));
ALTER TABLE evolve.embedding_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.embedding_queue
    USING (EXISTS (SELECT FROM evolve.entities e WHERE e.entity_id OPERATOR(pg_catalog.=) embedding_queue.entity_id));
ALTER TABLE evolve.schema_evolution_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.schema_evolution_history
    USING (proposal_id IS NULL
           OR EXISTS (SELECT FROM evolve.schema_proposals p WHERE p.id OPERATOR(pg_catalog.=) schema_evolution_history.proposal_id));
ALTER TABLE evolve.dynamic_tables ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.dynamic_tables
    USING (proposal_id IS NULL
           OR EXISTS (SELECT FROM evolve.schema_proposals p WHERE p.id OPERATOR(pg_catalog.=) dynamic_tables.proposal_id));

-- Every view reads with the privileges and policies of whoever queries it.
DO $$
DECLARE
    v regclass;
BEGIN
    FOR v IN SELECT c.oid FROM pg_catalog.pg_class c
             WHERE c.relnamespace = 'evolve'::pg_catalog.regnamespace AND c.relkind = 'v'
    LOOP
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', v);
    END LOOP;
END
$$;
