-- pg_evolve 0.2.0 → 0.3.0: trust. User-named functions never run with the owner's rights,
-- tenants never see or touch one another's rows, numbers keep every digit, audit columns name
-- the calling role.
--
-- As with 0.2.0, this one file is both the upgrade script (ALTER EXTENSION pg_evolve UPDATE)
-- and the last part of a fresh 0.3.0 install, so the two cannot drift (tests/upgrade.rs
-- compares their catalogs). Everything here is idempotent against a fresh install: CREATE OR
-- REPLACE, IF [NOT] EXISTS.

-- ---------------------------------------------------------------- user-named functions

-- ---------------------------------------------------------------- numbers, bad input, inbox

-- ---------------------------------------------------------------- proposals and tenants

-- A proposal's identity is its scope and its fingerprint: two scopes whose fingerprints are
-- equal (FNV-1a 64 can collide, and a key can be searched for) own two proposals. Every lookup
-- and update of propose_schema names the scope too (src/proposals.rs).
ALTER TABLE evolve.schema_proposals DROP CONSTRAINT IF EXISTS schema_proposals_fingerprint_key;
ALTER TABLE evolve.schema_proposals DROP CONSTRAINT IF EXISTS schema_proposals_scope_fingerprint;
ALTER TABLE evolve.schema_proposals
    ADD CONSTRAINT schema_proposals_scope_fingerprint UNIQUE NULLS NOT DISTINCT (user_id, fingerprint);

-- promote_to_global proposals are global rows built from every tenant's own schemas: their
-- evidence names users and fields. They are computed only in an admin's run and readable by
-- admins only (their history and created objects follow through the policies on
-- schema_evolution_history and dynamic_tables). Other tenants' data never reaches a non-admin.
DROP POLICY IF EXISTS tenant ON evolve.schema_proposals;
CREATE POLICY tenant ON evolve.schema_proposals
    USING (evolve._visible(user_id)
           AND (pg_catalog.textne(kind, 'promote_to_global')
                OR pg_catalog.pg_has_role('evolve_admin', 'MEMBER')));

-- Returns only rows of the scope it was asked about (the detection returns no other ids; this
-- keeps it so whatever the ids).
CREATE OR REPLACE FUNCTION evolve.propose_schema(entity_type text DEFAULT NULL, user_id text DEFAULT NULL)
RETURNS SETOF evolve.schema_proposals
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ids bigint[] := evolve._propose_schema($1, $2);
BEGIN
    -- A statement of its own, so that it sees the rows the detection just wrote.
    RETURN QUERY
    SELECT p.* FROM evolve.schema_proposals p WHERE p.id = ANY (ids) AND p.user_id IS NOT DISTINCT FROM $2
    ORDER BY CASE p.priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, p.kind, p.entity_type, p.name;
END
$$;

-- Re-embedding jobs are global (apply_change changes global schemas), but their counters count
-- every tenant's entities: outside evolve_admin, the counters are read through
-- migration_progress only, which counts the entities the session may see.
REVOKE SELECT ON evolve.schema_migration_jobs FROM evolve_reader;
GRANT SELECT (id, status, kind, entity_types, change, priority, priority_rank, schema_version,
              created_at, started_at, completed_at, updated_at)
    ON evolve.schema_migration_jobs TO evolve_reader;
GRANT SELECT ON evolve.schema_migration_jobs TO evolve_admin;

-- The view reads with its owner's rights (the counter columns are not granted to readers) and
-- filters the entities itself with evolve._visible, as row-level security would. For admins it
-- shows the job's counters; for others, per job, the visible entities embedded by it
-- (processed), still queued or parked for it (total = processed + queued + parked), and the
-- failed attempts of those still queued (error_count); unchanged_entities is NULL (not kept
-- per entity). Functions in a view run as the querying role, so pg_has_role and _visible judge
-- the caller.
CREATE OR REPLACE VIEW evolve.migration_progress WITH (security_invoker = false) AS
WITH visible AS (
    SELECT u.job_id, count(*) FILTER (WHERE u.done) AS processed, count(*) AS total,
           count(*) FILTER (WHERE u.parked) AS parked, sum(u.attempts) AS errors
    FROM (SELECT x.job_id, x.entity_id, true AS done, false AS parked, 0 AS attempts
          FROM evolve.entity_embeddings x WHERE x.job_id IS NOT NULL
          UNION ALL
          SELECT q.job_id, q.entity_id, false, q.state = 'failed', q.attempts
          FROM evolve.embedding_queue q) u
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
COMMENT ON VIEW evolve.migration_progress IS
    'Re-embedding jobs: status, percent, processed/total, errors, parked entities, rate and ETA. Outside evolve_admin the counts are of the entities the session may see (unchanged_entities NULL).';

-- ---------------------------------------------------------------- audit, defaults, tenant binding

