-- Benchmark: the cost of one leaf value of a nested payload against a flat one. Two types
-- hold the same 12 leaves per payload, 6 declared and 6 not: `flat` as 12 top-level keys,
-- `nested` as three objects of four leaves (two levels down), its declared leaves declared as
-- members of those objects. Both go through the inbox (20,000 payloads a round) and through
-- ingest() one call at a time (2,000 calls a round); the best of three rounds of each is
-- compared. Goal: nested ≤ 1.5× flat per leaf value.
CREATE FUNCTION pg_temp.elapsed_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN EXECUTE q; RETURN 1000 * extract(epoch FROM clock_timestamp() - t0); END $$;
\o /dev/null
SELECT evolve.register_schema('{"entity_type": "flat", "attributes": {
  "a1": {"type": "integer"}, "a2": {"type": "string"}, "b1": {"type": "number"},
  "b2": {"type": "string"}, "c1": {"type": "integer"}, "c2": {"type": "boolean"}}}');
SELECT evolve.register_schema('{"entity_type": "nested", "attributes": {
  "a": {"type": "object", "properties": {"x": {"type": "object", "properties": {
        "a1": {"type": "integer"}, "a2": {"type": "string"}}}}},
  "b": {"type": "object", "properties": {"x": {"type": "object", "properties": {
        "b1": {"type": "number"}, "b2": {"type": "string"}}}}},
  "c": {"type": "object", "properties": {"x": {"type": "object", "properties": {
        "c1": {"type": "integer"}, "c2": {"type": "boolean"}}}}}}}');
CREATE FUNCTION pg_temp.flat(i int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('a1', i, 'a2', 'name ' || i, 'a3', i % 7, 'a4', 'tag' || i % 5,
                            'b1', i / 3.0, 'b2', md5(i::text), 'b3', i % 2 = 0, 'b4', i * 2,
                            'c1', i % 11, 'c2', i % 3 = 0, 'c3', 'x' || i, 'c4', i % 13) $$;
CREATE FUNCTION pg_temp.nested(i int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'a', jsonb_build_object('x', jsonb_build_object('a1', i, 'a2', 'name ' || i), 'y', jsonb_build_object('a3', i % 7, 'a4', 'tag' || i % 5)),
    'b', jsonb_build_object('x', jsonb_build_object('b1', i / 3.0, 'b2', md5(i::text)), 'y', jsonb_build_object('b3', i % 2 = 0, 'b4', i * 2)),
    'c', jsonb_build_object('x', jsonb_build_object('c1', i % 11, 'c2', i % 3 = 0), 'y', jsonb_build_object('c3', 'x' || i, 'c4', i % 13))) $$;
-- The payloads are built beforehand (not timed).
CREATE TEMP TABLE payloads AS
SELECT i, pg_temp.flat(i) AS flat, pg_temp.nested(i) AS nested FROM generate_series(1, 20000) i;
\o
CREATE TEMP TABLE runs (shape text, path text, ms float8);
DO $$
BEGIN
  FOR round IN 1..3 LOOP
    INSERT INTO runs VALUES ('flat', 'inbox', pg_temp.elapsed_ms(format(
      'INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT ''flat'', flat, ''r%s-'' || i FROM payloads', round)));
    INSERT INTO runs VALUES ('nested', 'inbox', pg_temp.elapsed_ms(format(
      'INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT ''nested'', nested, ''r%s-'' || i FROM payloads', round)));
    INSERT INTO runs VALUES ('flat', 'ingest()', pg_temp.elapsed_ms(format(
      'SELECT count(evolve.ingest(''flat'', flat, entity_key => ''s%s-'' || i)) FROM payloads WHERE i <= 2000', round)));
    INSERT INTO runs VALUES ('nested', 'ingest()', pg_temp.elapsed_ms(format(
      'SELECT count(evolve.ingest(''nested'', nested, entity_key => ''s%s-'' || i)) FROM payloads WHERE i <= 2000', round)));
  END LOOP;
END $$;
\set QUIET off
\echo 'nested vs flat payloads, 12 leaves each (6 declared): best of 3 rounds'
SELECT path,
       round(min(ms) FILTER (WHERE shape = 'flat')::numeric, 1) AS flat_ms,
       round(min(ms) FILTER (WHERE shape = 'nested')::numeric, 1) AS nested_ms,
       round((min(ms) FILTER (WHERE shape = 'nested') / min(ms) FILTER (WHERE shape = 'flat'))::numeric, 2)
         AS nested_per_leaf_ratio
FROM runs GROUP BY path ORDER BY path;
-- Both shapes wrote the same rows per payload.
SELECT entity_type, count(*) / (SELECT count(*) FROM evolve.entities e WHERE e.entity_type = o.entity_type) AS observations_each
FROM evolve.observations x JOIN evolve.entities o USING (entity_id) GROUP BY entity_type ORDER BY 1;
SELECT entity_type, count(*) / (SELECT count(*) FROM evolve.entities e WHERE e.entity_type = f.entity_type) AS fragments_each
FROM evolve.raw_fragments f GROUP BY entity_type ORDER BY 1;
