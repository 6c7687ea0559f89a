-- Benchmark: active_schema served from the backend-local cache vs read from the registry.
-- Same session, same lookups, interleaved rounds; the best round of each variant is compared.
\o /dev/null
SELECT evolve.register_schema($${
  "entity_type": "earthquake", "description": "A seismic event reported by the USGS feed",
  "attributes": {
    "mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"},
    "time": {"type": "integer"}, "status": {"type": "string"}, "magType": {"type": "string"},
    "depth": {"type": "number"}, "felt": {"type": "integer"}, "tsunami": {"type": "integer"}},
  "relationships": {"reported_by": {"target": "network"}}}$$);
SELECT evolve.register_schema('{"entity_type": "earthquake", "attributes": {"cdi": {"type": "number"}}}', 'ana');
\o

CREATE FUNCTION pg_temp.elapsed_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN EXECUTE q; RETURN 1000 * extract(epoch FROM clock_timestamp() - t0); END $$;
CREATE TEMP TABLE runs (variant text, lookup text, ms float8);

DO $$
DECLARE
  n int := 100000;
  q_global text := format('SELECT count(evolve.active_schema(''earthquake'')) FROM generate_series(1, %s)', n);
  q_user text := format('SELECT count(evolve.active_schema(''earthquake'', ''ana'')) FROM generate_series(1, %s)', n);
BEGIN
  FOR round IN 1..3 LOOP
    PERFORM set_config('evolve.schema_cache_enabled', 'on', false);
    INSERT INTO runs VALUES ('cached', 'global', pg_temp.elapsed_ms(q_global)),
                            ('cached', 'user', pg_temp.elapsed_ms(q_user));
    PERFORM set_config('evolve.schema_cache_enabled', 'off', false);
    INSERT INTO runs VALUES ('uncached', 'global', pg_temp.elapsed_ms(q_global)),
                            ('uncached', 'user', pg_temp.elapsed_ms(q_user));
  END LOOP;
END $$;
\set QUIET off
\echo 'active_schema(): 100,000 lookups, best of 3 rounds'
SELECT lookup,
       round(min(ms) FILTER (WHERE variant = 'cached')::numeric, 1) AS cached_ms,
       round(min(ms) FILTER (WHERE variant = 'uncached')::numeric, 1) AS uncached_ms,
       round((min(ms) FILTER (WHERE variant = 'uncached') / min(ms) FILTER (WHERE variant = 'cached'))::numeric, 1)
         AS speedup_ratio
FROM runs GROUP BY lookup ORDER BY lookup;
