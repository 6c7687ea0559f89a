-- Benchmark: propose_schema() over 10,000 vs 1,000,000 fragments with the same 20 keys. Its
-- cost should follow distinct keys (aggregate rows), not fragment rows.
\o /dev/null
SELECT evolve.register_schema(format('{"entity_type": "%s", "attributes": {"mag": {"type": "number"}}}', t)::jsonb)
FROM unnest(ARRAY['small', 'large']) t;
INSERT INTO evolve.entities (entity_type, entity_key) SELECT 'small', 's' || i FROM generate_series(1, 500) i;
INSERT INTO evolve.entities (entity_type, entity_key) SELECT 'large', 'l' || i FROM generate_series(1, 50000) i;
-- 20 undeclared keys per entity: 10,000 fragment rows for "small", 1,000,000 for "large".
INSERT INTO evolve.raw_fragments (entity_id, entity_type, fragment_key, value, value_type, source)
SELECT e.entity_id, e.entity_type, 'k' || k,
       CASE WHEN k % 4 = 0 THEN to_jsonb(e.entity_id * k) WHEN k % 4 = 1 THEN to_jsonb(k + 0.5)
            WHEN k % 4 = 2 THEN to_jsonb('2026-11-0' || (k % 9 + 1) || 'T10:00:00Z') ELSE to_jsonb('v' || (e.entity_id % 50)) END,
       CASE WHEN k % 4 = 0 THEN 'integer' WHEN k % 4 = 1 THEN 'number' WHEN k % 4 = 2 THEN 'timestamp' ELSE 'string' END,
       's' || (e.entity_id % 3)
FROM evolve.entities e, generate_series(1, 20) k;
VACUUM ANALYZE;
\o
CREATE TEMP TABLE timings (variant text, ms float8);
DO $$
DECLARE t0 timestamptz;
BEGIN
    FOR round IN 1..20 LOOP
        t0 := clock_timestamp();
        PERFORM evolve.propose_schema('small');
        INSERT INTO timings VALUES ('10k fragments', 1000 * extract(epoch FROM clock_timestamp() - t0));
        t0 := clock_timestamp();
        PERFORM evolve.propose_schema('large');
        INSERT INTO timings VALUES ('1M fragments', 1000 * extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
END $$;
\set QUIET off
\echo 'propose_schema(), 20 keys: 10,000 vs 1,000,000 fragment rows (median of 20 calls each)'
SELECT variant, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS median_ms
FROM timings GROUP BY variant ORDER BY variant;
SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = '1M fragments')
            / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE variant = '10k fragments'))::numeric, 2)
       AS ratio_1m_vs_10k
FROM timings;
SELECT entity_type, count(*) AS proposals FROM evolve.schema_proposals GROUP BY 1 ORDER BY 1;
