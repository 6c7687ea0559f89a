-- Hostile keys through proposals: every proposal approved, only the expected objects appear and
-- a canary table is intact; then every approval rolled back leaves registry, fragments and
-- catalog as they were. Also a relationship found from the data.
\set SHOW_CONTEXT never
\set VERBOSITY terse
\i sql/fresh_extension.psql
SET client_min_messages = warning;
CREATE TABLE public.canary (id int);
INSERT INTO public.canary VALUES (1), (2), (3);

SELECT evolve.register_schema('{"entity_type": "bird", "attributes": {"species": {"type": "string"}}}');
SELECT evolve.register_schema('{"entity_type": "nest", "attributes": {"height": {"type": "number"}}}');
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'nest', jsonb_build_object('height', i), 'nest-' || i FROM generate_series(1, 5) i;
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'bird', jsonb_build_object(
    'species', 'sparrow',
    '"; DROP TABLE public.canary; --', 'x',
    'Running Time min', i * 1.5,
    'Beak Length (mm)', i,
    'Größe (cm)', 10 + i,
    repeat('very_long_key_', 15), true,
    'x''); DROP TABLE public.canary; --', 'y',
    'nest', 'nest-' || (i % 5 + 1),
    'seen_at', '2026-11-0' || (i % 9 + 1) || 'T10:00:00Z'), 'bird-' || i
FROM generate_series(1, 8) i;

-- Snapshots of what exists before any approval.
CREATE TEMP TABLE before_catalog AS
SELECT c.relname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('evolve', 'evolve_data', 'public');
CREATE TEMP TABLE before_fragments AS
SELECT fragment_id, lifecycle_state FROM evolve.raw_fragments;
SELECT evolve.active_schema('bird') - 'version' AS bird_before \gset

SELECT kind, name, safe_name, priority, evidence->>'inferred_type' AS inferred_type, evidence->>'target' AS target
FROM evolve.propose_schema('bird') ORDER BY kind, name;

-- Every generated statement holds data only as quoted identifiers or literals.
SELECT name, sql_preview FROM evolve.schema_proposals
WHERE name LIKE '%DROP%' ORDER BY name;

-- Approve everything pending, repeatedly (approvals lead to index proposals).
DO $$
DECLARE
    r record;
    rounds int := 0;
BEGIN
    LOOP
        rounds := rounds + 1;
        PERFORM evolve.propose_schema('bird');
        EXIT WHEN rounds > 3 OR NOT EXISTS (SELECT FROM evolve.schema_proposals WHERE status = 'pending' AND entity_type = 'bird');
        FOR r IN SELECT id FROM evolve.schema_proposals WHERE status = 'pending' AND entity_type = 'bird' ORDER BY id LOOP
            PERFORM evolve.approve_proposal(r.id, 'reviewer', NULL);
        END LOOP;
    END LOOP;
END
$$;
SELECT kind, name, status FROM evolve.schema_proposals WHERE entity_type = 'bird' ORDER BY kind, name;
SELECT count(*) AS failed_approvals FROM evolve.schema_evolution_history WHERE NOT success;

-- The canary is intact and the catalog holds exactly the expected new objects.
SELECT count(*) AS canary_rows FROM public.canary;
SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('evolve', 'evolve_data', 'public')
  AND (c.relname::text, c.relkind::text) NOT IN (SELECT * FROM before_catalog)
ORDER BY 1;
SELECT column_name FROM information_schema.columns
WHERE table_schema = 'evolve_data' AND table_name = 'bird' ORDER BY ordinal_position;
SELECT jsonb_pretty(evolve.active_schema('bird') - 'version');
SELECT snapshot FROM evolve.entities WHERE entity_key = 'bird-1';

-- New payloads with the hostile keys now land in the declared attributes.
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
VALUES ('bird', '{"species": "robin", "Beak Length (mm)": 12, "\"; DROP TABLE public.canary; --": "z"}', 'bird-99');
SELECT snapshot FROM evolve.entities WHERE entity_key = 'bird-99';

-- Roll back every implemented proposal, newest first.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT p.id FROM evolve.schema_proposals p
             WHERE p.status = 'implemented' AND p.entity_type = 'bird' ORDER BY
             (SELECT max(h.id) FROM evolve.schema_evolution_history h WHERE h.proposal_id = p.id) DESC LOOP
        PERFORM evolve.rollback_proposal(r.id);
    END LOOP;
END
$$;
DELETE FROM evolve.entities WHERE entity_key = 'bird-99';
SELECT count(*) AS failed_rollbacks FROM evolve.schema_evolution_history WHERE action = 'rollback' AND NOT success;
SELECT (evolve.active_schema('bird') - 'version') = :'bird_before'::jsonb AS registry_as_before;
SELECT count(*) AS fragments_changed FROM evolve.raw_fragments f
JOIN before_fragments b USING (fragment_id) WHERE f.lifecycle_state <> b.lifecycle_state;
SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('evolve', 'evolve_data', 'public')
  AND (c.relname::text, c.relkind::text) NOT IN (SELECT * FROM before_catalog)
ORDER BY 1;
SELECT count(*) FILTER (WHERE snapshot <> jsonb_build_object('species', 'sparrow')) AS snapshots_changed
FROM evolve.entities WHERE entity_type = 'bird';
SELECT count(*) AS canary_rows FROM public.canary;
DROP TABLE public.canary;

-- Types that co-occur: sensors and stations share their keys (the same sites seen twice).
SELECT evolve.register_schema('{"entity_type": "station", "attributes": {"name": {"type": "string"}}}');
SELECT evolve.register_schema('{"entity_type": "sensor", "attributes": {"model": {"type": "string"}}}');
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT t, jsonb_build_object(CASE t WHEN 'station' THEN 'name' ELSE 'model' END, 'x' || i), 'ST' || i
FROM generate_series(1, 10) i, unnest(ARRAY['station', 'sensor']) t;
SELECT kind, name, priority, evidence->>'target' AS target, evidence->>'shared_keys' AS shared, rationale
FROM evolve.propose_schema('sensor') WHERE kind = 'relationship';
