-- Benchmark: typed projections. (1) Upkeep: inbox ingestion of a type with a projection
-- against the same type without one (two identical types, 20,000 new entities a round each,
-- best of 3 rounds); goal: upkeep ≤ 20 % of inbox throughput. (2) Reads: an indexed typed
-- query on the projection against the same query on a natively typed table holding the same
-- rows with the same index (300 queries a round, best of 3); goal ≥ 0.8×.
CREATE FUNCTION pg_temp.elapsed_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN EXECUTE q; RETURN 1000 * extract(epoch FROM clock_timestamp() - t0); END $$;
\o /dev/null
SELECT evolve.register_schema(format($${"entity_type": "%s", "attributes": {
  "mag": {"type": "number"}, "place": {"type": "string"}, "time": {"type": "timestamp"},
  "depth": {"type": "number"}, "felt": {"type": "integer"}, "status": {"type": "string"}}}$$, t)::jsonb)
FROM unnest(ARRAY['plain', 'projected']) t;
SELECT evolve.create_projection('projected');
CREATE TEMP TABLE payloads AS
SELECT i, jsonb_build_object('mag', (i % 90) / 10.0, 'place', 'place ' || i, 'time', 1517966773840 + i * 1000,
                             'depth', (i % 700) / 10.0, 'felt', i % 50, 'status', 'reviewed', 'extra', 'x' || (i % 9)) AS p
FROM generate_series(1, 20000) i;
\o
CREATE TEMP TABLE runs (variant text, ms float8);
DO $$
BEGIN
  FOR round IN 1..3 LOOP
    INSERT INTO runs VALUES ('inbox, no projection', pg_temp.elapsed_ms(format(
      'INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT ''plain'', p, ''r%s-'' || i FROM payloads', round)));
    INSERT INTO runs VALUES ('inbox, with projection', pg_temp.elapsed_ms(format(
      'INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT ''projected'', p, ''r%s-'' || i FROM payloads', round)));
  END LOOP;
END $$;
-- The same rows in a natively typed table with the same index.
CREATE TABLE native AS SELECT entity_id, entity_key, mag, place, "time", depth, felt, status FROM evolve_data.projected;
ALTER TABLE native ADD PRIMARY KEY (entity_id);
CREATE INDEX ON native (mag);
CREATE INDEX ON evolve_data.projected (mag);
VACUUM ANALYZE native;
VACUUM ANALYZE evolve_data.projected;
CREATE FUNCTION pg_temp.queries(t text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE n bigint; a numeric;
BEGIN
  FOR q IN 1..300 LOOP
    EXECUTE format('SELECT count(*), avg(depth) FROM %s WHERE mag BETWEEN $1 AND $1 + 0.2', t)
    INTO n, a USING (q % 80) / 10.0;
  END LOOP;
END $$;
DO $$
BEGIN
  FOR round IN 1..3 LOOP
    INSERT INTO runs VALUES ('typed query, projection', pg_temp.elapsed_ms('SELECT pg_temp.queries(''evolve_data.projected'')'));
    INSERT INTO runs VALUES ('typed query, native table', pg_temp.elapsed_ms('SELECT pg_temp.queries(''native'')'));
  END LOOP;
END $$;
\set QUIET off
\echo 'typed projections: best of 3 rounds'
SELECT variant, round(min(ms)::numeric, 1) AS best_ms FROM runs GROUP BY variant ORDER BY variant;
SELECT round((min(ms) FILTER (WHERE variant = 'inbox, with projection') / min(ms) FILTER (WHERE variant = 'inbox, no projection') - 1)::numeric, 3)
         AS upkeep_share_of_inbox_time,
       round((min(ms) FILTER (WHERE variant = 'typed query, native table') / min(ms) FILTER (WHERE variant = 'typed query, projection'))::numeric, 2)
         AS projection_query_speed_vs_native
FROM runs;
SELECT (SELECT count(*) FROM evolve_data.projected) AS projected_rows, (SELECT count(*) FROM native) AS native_rows;
