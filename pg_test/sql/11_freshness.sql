-- Embeddings follow the data: every change of a snapshot queues the entities whose enriched
-- text changed, in the same transaction; whole-type re-embeddings build a generation beside the
-- current one, which search keeps answering from; the status view and the health check tell
-- the state. (Without the worker: CALL evolve.run_reembedding() does its work.)
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

SELECT evolve.register_schema($${"entity_type": "earthquake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"}}}$$);

-- Ingested: queued at once, by no job, above every job's priority.
SELECT evolve.ingest('earthquake', '{"mag": 4.5, "place": "10 km SW of Anchorage, Alaska"}', entity_key => 'ak1');
SELECT e.entity_key, q.job_id, q.priority_rank, q.state
FROM evolve.embedding_queue q JOIN evolve.entities e USING (entity_id);
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'earthquake', jsonb_build_object('mag', i / 10.0, 'place', CASE WHEN i % 2 = 0 THEN 'Alaska Peninsula' ELSE 'Southern California' END), 'q' || i
FROM generate_series(1, 40) i;
SELECT entity_type, entities, embedded, stale, queued, failed, oldest_pending IS NOT NULL AS pending,
       generation, building_generation, policy
FROM evolve.embedding_status;
CALL evolve.run_reembedding();
SELECT entity_type, entities, embedded, stale, queued, generation FROM evolve.embedding_status;

-- The same values again, a key the schema does not declare (a fragment, not in the snapshot):
-- the enriched text is unchanged, nothing is queued.
SELECT evolve.ingest('earthquake', '{"mag": 4.5, "place": "10 km SW of Anchorage, Alaska"}', entity_key => 'ak1');
SELECT evolve.ingest('earthquake', '{"depth_km": 35}', entity_key => 'ak1');
SELECT count(*) AS queued FROM evolve.embedding_queue;
-- A changed value: queued; the embedded entity is stale until the worker takes it.
SELECT evolve.ingest('earthquake', '{"mag": 4.9}', entity_key => 'ak1');
SELECT entity_type, embedded, stale, queued FROM evolve.embedding_status;
CALL evolve.run_reembedding();

-- Per type, data changes can be left to jobs alone.
SELECT evolve.set_embedding_policy('earthquake', 'manual');
SELECT evolve.ingest('earthquake', '{"mag": 5.0}', entity_key => 'ak1');
SELECT count(*) AS queued FROM evolve.embedding_queue;
SELECT evolve.set_embedding_policy('earthquake', 'on_change');
SELECT evolve.set_embedding_policy('earthquake', 'sometimes');
\echo :LAST_ERROR_SQLSTATE

-- Search answers from the type's current generation (0: the shared one).
SELECT entity_key, generation FROM evolve.semantic_search('earthquake', 'Anchorage, Alaska', 1);

-- A change that re-embeds the whole type builds generation 1 beside it...
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake",
                             "description": "An earthquake: a sudden shaking of the ground"}') AS job \gset
SELECT generation, entity_type, state, job_id = :job AS by_the_job FROM evolve.embedding_generations;
SET evolve.embed_batch_size = 10;
CALL evolve.run_reembedding(2);
-- ... while search keeps answering from generation 0, whole, with no warning even when set to
-- block (it never mixes generations) ...
SET evolve.search_during_reembed = 'block';
SELECT count(*) AS results, min(generation) AS generation FROM evolve.semantic_search('earthquake', 'Alaska', 10);
SELECT entity_type, embedded, queued, generation, building_generation FROM evolve.embedding_status;
-- ... and generation 1 becomes current in the commit that completes the job.
CALL evolve.run_reembedding();
RESET evolve.embed_batch_size;
SELECT generation, entity_type, state FROM evolve.embedding_generations;
SELECT count(*) AS results, min(generation) AS generation FROM evolve.semantic_search('earthquake', 'Alaska', 10);
SELECT entity_type, entities, embedded, stale, queued, generation, building_generation FROM evolve.embedding_status;
SELECT generation, count(*) FROM evolve.entity_embeddings GROUP BY 1 ORDER BY 1;
-- A change that touches part of a type re-embeds in place (search warns or blocks meanwhile).
SELECT evolve.apply_change('{"kind": "attribute_description_changed", "entity_type": "earthquake",
                             "attribute": "mag", "description": "Richter magnitude"}') > 0 AS job;
SELECT count(*) FROM evolve.semantic_search('earthquake', 'Alaska', 10);
\echo :LAST_ERROR_SQLSTATE
RESET evolve.search_during_reembed;
CALL evolve.run_reembedding();
SELECT generation, state FROM evolve.embedding_generations;

-- The health check, one row per check (this cluster runs no worker for this database).
SELECT check_name, severity FROM evolve.health_check() WHERE check_name <> 'worker';
