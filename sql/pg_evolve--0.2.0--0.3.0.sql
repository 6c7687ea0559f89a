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
LANGUAGE c AS 'MODULE_PATHNAME', 'ingest_inbox_wrapper';
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

-- ---------------------------------------------------------------- audit, defaults, tenant binding

