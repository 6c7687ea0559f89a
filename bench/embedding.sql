-- Benchmark: re-embedding 100,000 entities with the built-in embedder, as the worker does it
-- (CALL evolve.run_reembedding(): batches of evolve.embed_batch_size, one transaction each),
-- vs a single bulk UPDATE ... SET embedding = evolve.embed(text) over the same entities.
\o /dev/null
SELECT evolve.register_schema('{"entity_type": "quake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"}}}');
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'quake', jsonb_build_object('mag', (i % 90) / 10.0, 'place', 'place number ' || (i % 1000)), 'q' || i
FROM generate_series(1, 100000) i;
\o
CREATE TEMP TABLE timings (variant text, ms float8);
DROP INDEX evolve.entity_embeddings_hnsw;

-- 1. The worker's path, no index.
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "v1"}') \gset
SELECT clock_timestamp() AS t0 \gset
CALL evolve.run_reembedding();
INSERT INTO timings SELECT 'worker path, no index', 1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);

-- 2. One bulk UPDATE over the same entities (texts prepared beforehand, not timed).
CREATE TEMP TABLE texts AS SELECT entity_id, evolve.enriched_text(entity_id) AS t FROM evolve.entities;
SELECT clock_timestamp() AS t0 \gset
UPDATE evolve.entity_embeddings x SET embedding = evolve.embed(texts.t) FROM texts WHERE x.entity_id = texts.entity_id;
INSERT INTO timings SELECT 'bulk UPDATE, no index', 1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);

-- 3. The worker's path with the HNSW index present.
CREATE INDEX entity_embeddings_hnsw ON evolve.entity_embeddings USING hnsw (embedding vector_cosine_ops);
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "v2"}') \gset
SELECT clock_timestamp() AS t0 \gset
CALL evolve.run_reembedding();
INSERT INTO timings SELECT 'worker path, HNSW index', 1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);

-- 4. The bulk UPDATE with the HNSW index present (back to the v1 texts, so every vector changes):
--    what the index itself costs.
SELECT clock_timestamp() AS t0 \gset
UPDATE evolve.entity_embeddings x SET embedding = evolve.embed(texts.t) FROM texts WHERE x.entity_id = texts.entity_id;
INSERT INTO timings SELECT 'bulk UPDATE, HNSW index', 1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
\set QUIET off
\echo 'Re-embedding 100,000 entities (built-in embedder, batches of 100)'
SELECT variant, round(ms::numeric, 0) AS ms,
       round(((SELECT ms FROM timings WHERE variant = 'bulk UPDATE, no index') / ms)::numeric, 2) AS throughput_vs_bulk_update
FROM timings;
SELECT round(((SELECT ms FROM timings WHERE variant = 'bulk UPDATE, HNSW index')
            / (SELECT ms FROM timings WHERE variant = 'worker path, HNSW index'))::numeric, 2)
       AS worker_vs_bulk_both_with_hnsw;
SELECT status, processed_entities, total_entities FROM evolve.migration_progress ORDER BY job_id;
