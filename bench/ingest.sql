-- Benchmarks of ingestion: aggregate triggers on COPY, and incremental snapshots.
\o /dev/null
SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
-- 10,000 entities; 100,000 fragment rows (10 keys each) written to a file for COPY.
INSERT INTO evolve.entities (entity_type, entity_key) SELECT 'quake', 'e' || i FROM generate_series(1, 10000) i;
COPY (SELECT e.entity_id, 'quake', 'k' || k, to_jsonb(CASE WHEN k % 3 = 0 THEN (e.entity_id * k)::text::jsonb ELSE to_jsonb('v' || (e.entity_id % 50)) END),
             CASE WHEN k % 3 = 0 THEN 'integer' ELSE 'string' END, 's' || (e.entity_id % 7), 1
      FROM evolve.entities e, generate_series(1, 10) k)
  TO '/tmp/pg_evolve_bench/fragments.csv' WITH (FORMAT csv);
\o

-- The straightforward alternative: a per-row PL/pgSQL trigger upserting the same aggregates.
CREATE FUNCTION pg_temp.per_row_aggregate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evolve.raw_fragment_aggregates AS a
        (entity_type, user_id, fragment_key, sample_count, frequency_total, type_counts, source_counts, last_seen_at, sample_values)
    VALUES (NEW.entity_type, NEW.user_id, NEW.fragment_key, 1, NEW.frequency, jsonb_build_object(NEW.value_type, 1),
            CASE WHEN NEW.source IS NULL THEN '{}' ELSE jsonb_build_object(NEW.source, 1) END, NEW.last_seen_at,
            CASE WHEN jsonb_typeof(NEW.value) = 'null' THEN '[]' ELSE jsonb_build_array(NEW.value) END)
    ON CONFLICT ON CONSTRAINT raw_fragment_aggregates_key DO UPDATE SET
        sample_count = a.sample_count + 1,
        frequency_total = a.frequency_total + EXCLUDED.frequency_total,
        type_counts = evolve._add_counts(a.type_counts, EXCLUDED.type_counts),
        source_counts = evolve._add_counts(a.source_counts, EXCLUDED.source_counts),
        last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
        sample_values = evolve._merge_samples(a.sample_values, jsonb_build_array(EXCLUDED.sample_values));
    RETURN NULL;
END $$;

CREATE FUNCTION pg_temp.copy_ms(variant text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; elapsed float8;
BEGIN
    TRUNCATE evolve.raw_fragments, evolve.raw_fragment_aggregates;
    EXECUTE 'ALTER TABLE evolve.raw_fragments ' || CASE WHEN variant = 'statement triggers' THEN 'ENABLE' ELSE 'DISABLE' END
            || ' TRIGGER raw_fragments_aggregate_insert';
    IF variant = 'per-row trigger' THEN
        CREATE TRIGGER bench_per_row AFTER INSERT ON evolve.raw_fragments FOR EACH ROW EXECUTE FUNCTION pg_temp.per_row_aggregate();
    END IF;
    t0 := clock_timestamp();
    COPY evolve.raw_fragments (entity_id, entity_type, fragment_key, value, value_type, source, frequency)
        FROM '/tmp/pg_evolve_bench/fragments.csv' WITH (FORMAT csv);
    elapsed := 1000 * extract(epoch FROM clock_timestamp() - t0);
    DROP TRIGGER IF EXISTS bench_per_row ON evolve.raw_fragments;
    ALTER TABLE evolve.raw_fragments ENABLE TRIGGER raw_fragments_aggregate_insert;
    RETURN elapsed;
END $$;

CREATE TEMP TABLE copy_runs (variant text, ms float8);
DO $$
BEGIN
    FOR round IN 1..3 LOOP
        INSERT INTO copy_runs SELECT v, pg_temp.copy_ms(v)
        FROM unnest(ARRAY['no aggregate trigger', 'statement triggers', 'per-row trigger']) v;
    END LOOP;
END $$;
-- The aggregates the statement trigger built are exact.
SELECT pg_temp.copy_ms('statement triggers') > 0 AS reloaded;
\set QUIET off
\echo 'COPY of 100,000 raw_fragments rows (10 keys), best of 3 rounds'
WITH best AS (SELECT variant, min(ms) AS ms FROM copy_runs GROUP BY variant)
SELECT variant, round(ms::numeric, 1) AS ms,
       round(((SELECT ms FROM best WHERE variant = 'no aggregate trigger') / ms)::numeric, 2) AS throughput_vs_no_trigger,
       round((ms / (SELECT ms FROM best WHERE variant = 'statement triggers'))::numeric, 2) AS cost_vs_statement_triggers
FROM best ORDER BY ms;
SELECT count(*) AS aggregate_mismatches FROM evolve.verify_aggregates();

\set QUIET on
-- Incremental snapshot: one new observation on an entity with 10,000 observations vs one with 10.
\o /dev/null
SELECT evolve.register_schema('{"entity_type": "sensor", "attributes": {"reading": {"type": "number", "merge_policy": "max"}, "label": {"type": "string"}}}');
SELECT evolve.ingest('sensor', jsonb_build_object('reading', i, 'label', 'l' || i), entity_key => 'big') FROM generate_series(1, 5000) i;
SELECT evolve.ingest('sensor', jsonb_build_object('reading', i, 'label', 'l' || i), entity_key => 'small') FROM generate_series(1, 5) i;
\o
CREATE TEMP TABLE snap_runs (entity text, ms float8);
DO $$
DECLARE t0 timestamptz; e text;
BEGIN
    FOR round IN 1..3 LOOP
        FOREACH e IN ARRAY ARRAY['big', 'small'] LOOP
            t0 := clock_timestamp();
            FOR i IN 1..300 LOOP
                PERFORM evolve.ingest('sensor', jsonb_build_object('reading', i % 97, 'label', 'x'), entity_key => e);
            END LOOP;
            INSERT INTO snap_runs VALUES (e, 1000 * extract(epoch FROM clock_timestamp() - t0));
        END LOOP;
    END LOOP;
END $$;
\set QUIET off
\echo 'One new observation merged into a snapshot: entity with 10,000 observations vs 10 (300 ingests, best of 3)'
SELECT (SELECT count(*) FROM evolve.observations o JOIN evolve.entities e USING (entity_id) WHERE e.entity_key = 'big') AS big_observations_at_end,
       round(min(ms) FILTER (WHERE entity = 'big')::numeric, 1) AS big_ms,
       round(min(ms) FILTER (WHERE entity = 'small')::numeric, 1) AS small_ms,
       round((min(ms) FILTER (WHERE entity = 'big') / min(ms) FILTER (WHERE entity = 'small'))::numeric, 2) AS cost_ratio
FROM snap_runs;
