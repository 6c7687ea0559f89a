-- Benchmark: a job re-embedding a whole type of 100,000 entities with the built-in embedder,
-- as the worker does it (CALL evolve.run_reembedding(): batches of evolve.embed_batch_size, one
-- transaction each, into a generation of its own whose HNSW index is built when it is complete),
-- against
--   the floor: one bulk UPDATE ... SET embedding = evolve.embed(text) of the same rows without
--              any index, then one CREATE INDEX (what building the same table by hand costs);
--   one bulk UPDATE of the same rows with the HNSW index present (maintained row by row).
-- Every entity has its own text (an HNSW graph of mostly identical vectors is not what a real
-- table looks like, and costs very differently).
\o /dev/null
SELECT evolve.register_schema('{"entity_type": "quake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"}}}');
-- Loaded with freshness off, then embedded by a first whole-type job (not timed): a bulk load
-- embedded as it arrives would maintain generation 0's index row by row (bench_freshness.sh
-- measures freshness).
SELECT evolve.set_embedding_policy('quake', 'manual');
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'quake', jsonb_build_object('mag', (i % 90) / 10.0, 'place', 'place number ' || i), 'q' || i
FROM generate_series(1, 100000) i;
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "v0"}');
CALL evolve.run_reembedding();
\o
CREATE TEMP TABLE timings (variant text, ms float8);

-- 1. The worker's path: a whole-type change, the job into a new generation, its index built and
--    switched to; the time includes all of it, and the drop of the replaced rows.
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "v1"}') \gset
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
CALL evolve.run_reembedding();
INSERT INTO timings SELECT 'worker path, into a generation (HNSW built at the end)', 1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SELECT generation AS g FROM evolve.embedding_generations WHERE entity_type = 'quake' AND state = 'current' \gset
SELECT pg_get_indexdef(c.oid) AS hnsw_definition, c.relname AS hnsw_name
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
WHERE i.indrelid = ('evolve.entity_embeddings_g' || :g)::regclass AND a.amname = 'hnsw' \gset

-- The texts of the same change, for the bulk variants (prepared beforehand, not timed).
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "v2"}') \gset
CREATE TEMP TABLE texts AS SELECT entity_id, evolve.enriched_text(entity_id) AS t FROM evolve.entities;
DELETE FROM evolve.embedding_queue;
UPDATE evolve.schema_migration_jobs SET status = 'cancelled' WHERE status IN ('queued', 'running');
CALL evolve.run_reembedding();
VACUUM ANALYZE texts;

-- 2. The floor: the same rows, no index, one bulk UPDATE and one CREATE INDEX.
DROP INDEX evolve.:"hnsw_name";
VACUUM ANALYZE evolve.entity_embeddings;
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
UPDATE evolve.entity_embeddings x SET embedding = evolve.embed(texts.t)
FROM texts WHERE x.entity_id = texts.entity_id AND x.generation = :g;
:hnsw_definition;
INSERT INTO timings SELECT 'floor: bulk UPDATE without index + CREATE INDEX', 1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);

-- 3. One bulk UPDATE with the index present.
VACUUM ANALYZE evolve.entity_embeddings;
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
UPDATE evolve.entity_embeddings x SET embedding = evolve.embed(texts.t || ' ')
FROM texts WHERE x.entity_id = texts.entity_id AND x.generation = :g;
INSERT INTO timings SELECT 'bulk UPDATE with the HNSW index present', 1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);

\set QUIET off
\echo 'Re-embedding a whole type of 100,000 entities (built-in embedder, batches of 100)'
SELECT variant, round(ms::numeric, 0) AS ms,
       round(((SELECT ms FROM timings WHERE variant LIKE 'floor%') / ms)::numeric, 2) AS speed_vs_floor,
       round(((SELECT ms FROM timings WHERE variant LIKE 'bulk UPDATE with%') / ms)::numeric, 2) AS speed_vs_indexed_update
FROM timings ORDER BY ms;
