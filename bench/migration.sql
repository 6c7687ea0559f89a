-- Benchmark: ingesting 100,000 payloads written at v1 (two migration steps: rename, then cast +
-- add) vs the same payloads already at v3. Same session, interleaved rounds, best of 3.
\o /dev/null
SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"magnitude": {"type": "number"}, "place": {"type": "string"}}}');
SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number", "aliases": ["magnitude"]}, "place": {"type": "string"}}}');
SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number", "aliases": ["magnitude"]}, "place": {"type": "string"}, "depth": {"type": "number", "default": 0}}}');
SELECT evolve.register_migration('quake', 2, 3, '[{"cast": {"key": "mag", "to": "number"}}, {"add": {"key": "depth", "default": 0}}]');
\o
CREATE TEMP TABLE payloads AS
SELECT i, jsonb_build_object('magnitude', ((i % 70) / 10.0)::text, 'place', 'place ' || (i % 500)) AS v1,
          jsonb_build_object('mag', (i % 70) / 10.0, 'place', 'place ' || (i % 500), 'depth', 0) AS v3
FROM generate_series(1, 100000) i;
CREATE FUNCTION pg_temp.ingest_ms(version int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    TRUNCATE evolve.entities CASCADE;
    t0 := clock_timestamp();
    INSERT INTO evolve.inbox (entity_type, payload, entity_key, schema_version)
    SELECT 'quake', CASE WHEN version = 1 THEN v1 ELSE v3 END, 'e' || i, version FROM payloads;
    RETURN 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;
CREATE TEMP TABLE runs (version int, ms float8);
DO $$ BEGIN FOR r IN 1..3 LOOP
    INSERT INTO runs VALUES (1, pg_temp.ingest_ms(1)), (3, pg_temp.ingest_ms(3));
END LOOP; END $$;
\set QUIET off
\echo 'Inbox ingest of 100,000 payloads: written at v1 (migrated through 2 edges) vs at v3, best of 3'
SELECT round(min(ms) FILTER (WHERE version = 1)::numeric, 1) AS v1_ms,
       round(min(ms) FILTER (WHERE version = 3)::numeric, 1) AS v3_ms,
       round((min(ms) FILTER (WHERE version = 3) / min(ms) FILTER (WHERE version = 1))::numeric, 2) AS throughput_ratio
FROM runs;
SELECT count(DISTINCT snapshot) AS distinct_snapshots_of_last_run, count(*) AS entities FROM evolve.entities;
