-- pg_evolve 0.2.0 → 0.3.0: trust. User-named functions never run with the owner's rights,
-- tenants never see or touch one another's rows, numbers keep every digit, audit columns name
-- the calling role.
--
-- As with 0.2.0, this one file is both the upgrade script (ALTER EXTENSION pg_evolve UPDATE)
-- and the last part of a fresh 0.3.0 install, so the two cannot drift (tests/upgrade.rs
-- compares their catalogs). Everything here is idempotent against a fresh install: CREATE OR
-- REPLACE, IF [NOT] EXISTS.

-- ---------------------------------------------------------------- user-named functions
-- A migration's function steps are resolved when it is registered (src/userfn.rs): the
-- functions' OIDs and the registering role, whose rights they run with. Steps registered
-- before 0.3.0 have neither and fail, with a hint to register the migration again, until
-- they are (their names were resolved at call time, in the ingesting session).
ALTER TABLE evolve.migrations ADD COLUMN IF NOT EXISTS run_as regrole;
ALTER TABLE evolve.migrations ADD COLUMN IF NOT EXISTS function_oids oid[];
COMMENT ON COLUMN evolve.migrations.run_as IS
    'The role that registered the migration: its function steps run with this role''s rights.';
COMMENT ON COLUMN evolve.migrations.function_oids IS
    'The functions of the function steps, in step order, resolved when the migration was registered.';
CREATE OR REPLACE VIEW evolve.migration_paths AS
SELECT entity_type, from_version, to_version, jsonb_array_length(steps) AS step_count, derived, steps,
       created_at, created_by, run_as, function_oids::regprocedure[] AS functions
FROM evolve.migrations;
ALTER VIEW evolve.migration_paths SET (security_invoker = true);

-- ---------------------------------------------------------------- numbers, bad input, inbox
-- COPY works for every writer: row-level security (which COPY FROM refuses) leaves the inbox;
-- the routing function checks each row's tenant against the inserting role instead and sets
-- a foreign row aside (42501), filed under the writer's own tenant.
DROP POLICY IF EXISTS tenant ON evolve.inbox;
ALTER TABLE evolve.inbox DISABLE ROW LEVEL SECURITY;
-- No id a writer chooses (OVERRIDING SYSTEM VALUE) can break another statement: inbox rows
-- live only inside their own statement and are found again by a plain index; rejects have ids
-- of their own.
ALTER TABLE evolve.inbox DROP CONSTRAINT IF EXISTS inbox_pkey;
CREATE INDEX IF NOT EXISTS inbox_inbox_id ON evolve.inbox (inbox_id);
ALTER TABLE evolve.inbox_rejects DROP CONSTRAINT IF EXISTS inbox_rejects_pkey;
ALTER TABLE evolve.inbox_rejects ADD COLUMN IF NOT EXISTS reject_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
CREATE INDEX IF NOT EXISTS inbox_rejects_inbox_id ON evolve.inbox_rejects (inbox_id);
COMMENT ON COLUMN evolve.inbox_rejects.inbox_id IS 'The row''s id in evolve.inbox (not unique: a writer may choose its ids).';

-- Payloads reach the routing function as text, so each one is read (exactly, depth-bounded)
-- by pg_evolve row by row and a bad one is set aside instead of failing the statement.
DROP FUNCTION IF EXISTS evolve._ingest_inbox(bigint[], text[], jsonb[], text[], text[], text[], integer[]);
CREATE OR REPLACE FUNCTION evolve._ingest_inbox(
    ids bigint[], entity_types text[], payloads text[], user_ids text[], sources text[],
    entity_keys text[], schema_versions integer[]) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'route_inbox_rows_wrapper';
REVOKE ALL ON FUNCTION evolve._ingest_inbox(bigint[], text[], text[], text[], text[], text[], integer[]) FROM PUBLIC;
CREATE OR REPLACE FUNCTION evolve._route_inbox() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM evolve._ingest_inbox(
        array_agg(inbox_id ORDER BY inbox_id), array_agg(entity_type ORDER BY inbox_id),
        array_agg(payload::text ORDER BY inbox_id), array_agg(user_id ORDER BY inbox_id),
        array_agg(source ORDER BY inbox_id), array_agg(entity_key ORDER BY inbox_id),
        array_agg(schema_version ORDER BY inbox_id))
    FROM new_rows;
    DELETE FROM evolve.inbox i USING new_rows n WHERE i.inbox_id = n.inbox_id;
    RETURN NULL;
END
$$;

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

-- Audit columns name the calling role: the role in effect outside any SECURITY DEFINER function
-- (after SET ROLE), where current_user would name the extension owner.
CREATE OR REPLACE FUNCTION evolve._calling_role() RETURNS text
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'calling_role_wrapper';
COMMENT ON FUNCTION evolve._calling_role() IS
    'The calling role: the role in effect outside any SECURITY DEFINER function (after SET ROLE). Audit columns record it.';
ALTER TABLE evolve.schema_history ALTER COLUMN created_by SET DEFAULT evolve._calling_role();
ALTER TABLE evolve.migrations ALTER COLUMN created_by SET DEFAULT evolve._calling_role();
ALTER TABLE evolve.schema_evolution_history ALTER COLUMN performed_by SET DEFAULT evolve._calling_role();
COMMENT ON COLUMN evolve.schema_history.created_by IS 'The role that registered this version (the calling role, not the extension owner).';
COMMENT ON COLUMN evolve.migrations.created_by IS 'The role that registered these steps (the calling role, not the extension owner).';
COMMENT ON COLUMN evolve.schema_evolution_history.performed_by IS
    'The role that performed the review (the calling role, whatever reviewer name was passed; that name is schema_proposals.reviewed_by).';
COMMENT ON COLUMN evolve.entity_conflicts.resolved_by IS 'The role that resolved the conflict (the calling role).';

-- Tenant binding. A role bound here acts only as its tenant: evolve.current_user_id cannot make
-- it another (see README, Privileges). The binding of the calling role counts, else that of the
-- login role, so that SET ROLE to an unbound role does not leave the tenant behind.
CREATE TABLE IF NOT EXISTS evolve.tenant_roles (
    role     regrole PRIMARY KEY,
    user_id  text NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 256 AND user_id !~ '[[:cntrl:]]'),
    bound_by text NOT NULL DEFAULT evolve._calling_role(),
    bound_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evolve.tenant_roles IS
    'Roles bound to a tenant (evolve.bind_tenant): a session of a bound role has that tenant whatever evolve.current_user_id says. Unbound roles take their tenant from evolve.current_user_id.';

-- Bindings are cached per backend; any change reaches every backend when it commits.
CREATE OR REPLACE FUNCTION evolve._invalidate_tenant_cache() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'invalidate_tenant_cache_wrapper';
CREATE OR REPLACE FUNCTION evolve._tenant_roles_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evolve._invalidate_tenant_cache();
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER tenant_roles_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evolve.tenant_roles
    FOR EACH STATEMENT EXECUTE FUNCTION evolve._tenant_roles_changed();

-- The session's tenant: the bound one, else evolve.current_user_id. Row-level security calls it
-- for every row; the SQL wrapper inlines into the policies, leaving one call of the cached
-- lookup. It never raises: a bound session that names another tenant still sees only its own
-- rows (the functions refuse it, 42501).
CREATE OR REPLACE FUNCTION evolve._session_tenant() RETURNS text
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'session_tenant_wrapper';
CREATE OR REPLACE FUNCTION evolve.current_user_id() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT evolve._session_tenant() $$;
COMMENT ON FUNCTION evolve.current_user_id() IS
    'The tenant of this session: the tenant its role is bound to (evolve.bind_tenant), else evolve.current_user_id; NULL when neither.';

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
        SET user_id = excluded.user_id, bound_by = evolve._calling_role(), bound_at = pg_catalog.now();
END
$$;
COMMENT ON FUNCTION evolve.bind_tenant(regrole, text) IS
    'Binds a role to a tenant (members of evolve_admin only): its sessions act as that tenant whatever evolve.current_user_id says, and naming another there is refused (42501). Binding again moves the role to the new tenant.';

CREATE OR REPLACE FUNCTION evolve.unbind_tenant(role regrole) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role()::pg_catalog.name, 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to unbind a role from its tenant'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'This is reserved to members of evolve_admin: GRANT evolve_admin TO the role.';
    END IF;
    DELETE FROM evolve.tenant_roles t WHERE t.role OPERATOR(pg_catalog.=) $1;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION evolve.unbind_tenant(regrole) IS
    'Removes a role''s tenant binding (members of evolve_admin only); its sessions take their tenant from evolve.current_user_id again. False when it was not bound.';

-- A session reads its own binding (the lookup behind evolve.current_user_id runs as the querying
-- role); admins read them all. Only bind_tenant and unbind_tenant write.
ALTER TABLE evolve.tenant_roles ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant ON evolve.tenant_roles;
CREATE POLICY tenant ON evolve.tenant_roles
    USING (pg_catalog.pg_get_userbyid(role) OPERATOR(pg_catalog.=) evolve._calling_role()
           OR pg_catalog.pg_get_userbyid(role) OPERATOR(pg_catalog.=) session_user
           OR pg_catalog.pg_has_role('evolve_admin', 'MEMBER'));
REVOKE ALL ON evolve.tenant_roles FROM PUBLIC;
GRANT SELECT ON evolve.tenant_roles TO evolve_reader;
REVOKE ALL ON FUNCTION
    evolve._calling_role(), evolve._session_tenant(), evolve._invalidate_tenant_cache(),
    evolve._tenant_roles_changed(), evolve.bind_tenant(regrole, text), evolve.unbind_tenant(regrole)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._calling_role(), evolve._session_tenant() TO evolve_reader;
GRANT EXECUTE ON FUNCTION evolve.bind_tenant(regrole, text), evolve.unbind_tenant(regrole) TO evolve_admin;
