-- Conflict-driven migration: payloads written against older versions are migrated along the
-- version graph; failures are recorded and handled per evolve.migration_strategy.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

-- v1: the old shape.
SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {
  "magnitude": {"type": "number"}, "place": {"type": "string"}}}') AS v1;
-- v2: magnitude renamed to mag (kept as an alias): the rename step is derived automatically.
SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {
  "mag": {"type": "number", "aliases": ["magnitude"]}, "place": {"type": "string"}}}') AS v2;
-- v3: a depth with a default.
SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {
  "mag": {"type": "number", "aliases": ["magnitude"]}, "place": {"type": "string"},
  "depth": {"type": "number", "default": 0}}}') AS v3;
SELECT from_version, to_version, derived, steps FROM evolve.migration_paths ORDER BY 1;
-- Old producers also sent magnitudes as strings: cast them on the way from v2 to v3.
SELECT evolve.register_migration('quake', 2, 3,
  '[{"cast": {"key": "mag", "to": "number"}}, {"add": {"key": "depth", "default": 0}}]') AS steps;
SELECT from_version, to_version, derived, steps FROM evolve.migration_paths ORDER BY 1;

-- Dry runs.
SELECT evolve.migrate_payload('quake', '{"magnitude": "2.5", "place": "Castaic"}', 1);
SELECT evolve.migrate_payload('quake', '{"magnitude": "2.5", "place": "Castaic"}', 1, 2);
SELECT evolve.migrate_payload('quake', '{"mag": "2.5"}', 3, 1);
\echo :LAST_ERROR_SQLSTATE

-- Payloads at v1, v2 and v3 land identically.
SELECT evolve.ingest('quake', '{"magnitude": "2.5", "place": "Castaic"}', entity_key => 'at-v1', schema_version => 1);
SELECT evolve.ingest('quake', '{"mag": "2.5", "place": "Castaic"}', entity_key => 'at-v2', schema_version => 2);
SELECT evolve.ingest('quake', '{"mag": 2.5, "place": "Castaic", "depth": 0}', entity_key => 'at-v3', schema_version => 3);
SELECT entity_key, snapshot FROM evolve.entities ORDER BY entity_key;
SELECT count(DISTINCT snapshot) AS distinct_snapshots FROM evolve.entities;
SELECT count(*) AS fragments FROM evolve.raw_fragments;
-- The inbox migrates too, set-based.
INSERT INTO evolve.inbox (entity_type, payload, entity_key, schema_version) VALUES
  ('quake', '{"magnitude": 1.5, "place": "Anza"}', 'inbox-v1', 1),
  ('quake', '{"mag": "1.5", "place": "Anza"}', 'inbox-v2', 2);
SELECT entity_key, snapshot FROM evolve.entities WHERE entity_key LIKE 'inbox-%' ORDER BY 1;

-- A failing step: nothing is written for the payload, one failure row, then the strategy decides.
-- reject: ingest() raises (its transaction, failure row included, rolls back) ...
SELECT count(*) AS entities_before FROM evolve.entities \gset
SET evolve.migration_strategy = 'reject';
SELECT evolve.ingest('quake', '{"magnitude": "strong", "place": "X"}', entity_key => 'bad', schema_version => 1);
\echo :LAST_ERROR_SQLSTATE
-- ... and the inbox sets the row aside, keeping the failure.
INSERT INTO evolve.inbox (entity_type, payload, entity_key, schema_version)
VALUES ('quake', '{"magnitude": "strong", "place": "X"}', 'bad', 1);
SELECT count(*) = :entities_before AS no_partial_rows FROM evolve.entities;
SELECT entity_key, sqlstate, error FROM evolve.inbox_rejects;
SELECT entity_type, from_version, to_version, failing_step, step, error, strategy FROM evolve.migration_failures;
-- fragment (the default): ingest what fits, the rest becomes raw fragments.
SET evolve.migration_strategy = 'fragment';
SELECT evolve.ingest('quake', '{"magnitude": "strong", "place": "X"}', entity_key => 'bad', schema_version => 1) > 0 AS ingested;
SELECT e.snapshot, array_agg(f.fragment_key || '=' || f.value ORDER BY f.fragment_key) AS fragments
FROM evolve.entities e JOIN evolve.raw_fragments f USING (entity_id) WHERE e.entity_key = 'bad' GROUP BY 1;
-- auto: built-in coercions, then migration again.
SET evolve.migration_strategy = 'auto';
SELECT evolve.ingest('quake', '{"mag": "7", "place": "Y"}', entity_key => 'auto-current') > 0 AS ingested;
SELECT snapshot FROM evolve.entities WHERE entity_key = 'auto-current';
-- Under reject, a value of the wrong type at the current version is refused too.
SET evolve.migration_strategy = 'reject';
SELECT evolve.ingest('quake', '{"mag": "seven"}', entity_key => 'typed');
\echo :LAST_ERROR_SQLSTATE
RESET evolve.migration_strategy;
SELECT strategy, count(*) FROM evolve.migration_failures GROUP BY 1 ORDER BY 1;

-- A user function step, run in a subtransaction: its failure leaves nothing behind.
CREATE FUNCTION public.normalize_place(p jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT p || jsonb_build_object('place', upper(p->>'place')) $$;
CREATE FUNCTION public.explode(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO evolve.migration_failures (entity_type, payload, error, strategy) VALUES ('x', '{}', 'side effect', 'x');
     RAISE EXCEPTION 'cannot migrate %', p->>'place'; END $$;
SELECT evolve.register_migration('quake', 1, 2, '[{"rename": {"from": "magnitude", "to": "mag"}}, {"function": "public.normalize_place"}]');
SELECT evolve.migrate_payload('quake', '{"magnitude": 1, "place": "Anza"}', 1);
SELECT evolve.register_migration('quake', 1, 2, '[{"function": "public.explode"}]');
SELECT evolve.ingest('quake', '{"mag": 3, "place": "Anza"}', entity_key => 'exploding', schema_version => 1) > 0 AS ingested_as_is;
SELECT count(*) FILTER (WHERE error = 'side effect') AS side_effects_left,
       count(*) FILTER (WHERE error LIKE '%cannot migrate Anza%') AS recorded
FROM evolve.migration_failures;

-- Registration checks.
SELECT evolve.register_migration('quake', 1, 2, '[{"function": "public.nothing_here"}]');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION public.not_jsonb(p jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
SELECT evolve.register_migration('quake', 1, 2, '[{"function": "public.not_jsonb"}]');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION public.private_fn(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
REVOKE EXECUTE ON FUNCTION public.private_fn(jsonb) FROM PUBLIC;
-- The registering role's EXECUTE privilege is checked: the function runs with its rights.
CREATE ROLE migration_author;
GRANT evolve_admin TO migration_author;
SET ROLE migration_author;
SELECT evolve.register_migration('quake', 1, 2, '[{"function": "public.private_fn"}]');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT evolve.register_migration('quake', 1, 2, '[{"cast": {"key": "mag", "to": "color"}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_migration('quake', 1, 9, '[{"drop": {"key": "x"}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_migration('quake', 1, 2, '{}');
\echo :LAST_ERROR_SQLSTATE
-- A function whose owner does not hold the registering role's privileges is refused: its
-- owner could change its body to act with rights the owner does not have.
GRANT EXECUTE ON FUNCTION public.private_fn(jsonb) TO migration_author;
CREATE ROLE other_author;
ALTER FUNCTION public.private_fn(jsonb) OWNER TO other_author;
SET ROLE migration_author;
SELECT evolve.register_migration('quake', 1, 2, '[{"function": "public.private_fn"}]');
\echo :LAST_ERROR_SQLSTATE
-- Temporary schemas are refused: no session may plant a function another session calls.
CREATE FUNCTION pg_temp.tmp_fn(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
SELECT evolve.register_migration('quake', 1, 2, '[{"function": "pg_temp.tmp_fn"}]');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- A name without a schema means pg_catalog's function, whatever the search_path: resolved
-- once, when registered, and run as the registering role.
-- (PostgreSQL 18 gave jsonb_strip_nulls a second, defaulted parameter: there it is not
-- jsonb -> jsonb, the name is refused and the older path stays; see 04_migration_1.out.)
SET search_path = public, pg_catalog;
SELECT evolve.register_migration('quake', 1, 2, '[{"function": "jsonb_strip_nulls"}]');
RESET search_path;
SELECT from_version, to_version, run_as, functions FROM evolve.migration_paths WHERE NOT derived ORDER BY 1, 2;
SELECT evolve.migrate_payload('quake', '{"mag": 1, "place": null}', 1);
DROP OWNED BY migration_author;
DROP ROLE migration_author;
DROP OWNED BY other_author;
DROP ROLE other_author;
