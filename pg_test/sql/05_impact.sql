-- Impact analysis, re-embedding jobs, progress and semantic search (without the worker:
-- CALL evolve.run_reembedding() does the same work).
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

SELECT evolve.register_schema($${"entity_type": "earthquake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"},
                 "felt": {"type": "integer", "description": "Felt reports"}},
  "relationships": {"reported_by": {"target": "network", "description": "Reporting network"}}}$$);
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'earthquake',
       jsonb_build_object('mag', (i % 50) / 10.0, 'place', CASE WHEN i % 3 = 0 THEN 'Alaska Peninsula' ELSE 'Southern California' END)
       || CASE WHEN i % 10 = 0 THEN jsonb_build_object('felt', i) ELSE '{}' END
       || CASE WHEN i % 4 = 0 THEN jsonb_build_object('reported_by', 'ak') ELSE '{}' END,
       'q' || i
FROM generate_series(1, 200) i;
-- New data is queued for embedding as it arrives (11_freshness shows how); embed it now.
SELECT entity_type, entities, embedded, queued FROM evolve.embedding_status;
CALL evolve.run_reembedding();

-- The built-in embedder and the enriched text it embeds.
SELECT vector_dims(evolve.embed('magnitude 4.5 near Anchorage')) AS dims,
       round(vector_norm(evolve.embed('magnitude 4.5 near Anchorage'))::numeric, 6) AS norm,
       evolve.embed('same text') = evolve.embed('same text') AS deterministic,
       evolve.embed('Alaska Peninsula') <=> evolve.embed('Peninsula, Alaska') < evolve.embed('Alaska Peninsula') <=> evolve.embed('Southern California') AS similar_closer;
SELECT evolve.enriched_text(entity_id) FROM evolve.entities WHERE entity_key = 'q20';

-- Dry run: who is affected by each kind of change, at what priority.
SELECT kind, entity_type, affected_entities, priority, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "x"}')
UNION ALL SELECT kind, entity_type, affected_entities, priority, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "attribute_description_changed", "entity_type": "earthquake", "attribute": "felt", "description": "x"}')
UNION ALL SELECT kind, entity_type, affected_entities, priority, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "attribute_deleted", "entity_type": "earthquake", "attribute": "felt"}')
UNION ALL SELECT kind, entity_type, affected_entities, priority, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "attribute_added", "entity_type": "earthquake", "attribute": "depth", "type": "number"}')
UNION ALL SELECT kind, entity_type, affected_entities, priority, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "relationship_description_changed", "entity_type": "earthquake", "relationship": "reported_by", "description": "x"}')
UNION ALL SELECT kind, entity_type, affected_entities, priority, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "relationship_deleted", "entity_type": "earthquake", "relationship": "reported_by"}')
UNION ALL SELECT kind, entity_type, affected_entities, priority, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "template_applied", "template": "geo", "entity_types": ["earthquake"]}');

-- Apply: a new registry version, a job, the affected entities queued; then the work.
SELECT evolve.apply_change('{"kind": "attribute_description_changed", "entity_type": "earthquake",
                             "attribute": "mag", "description": "Richter magnitude"}') AS job;
SELECT version, diff->'attributes'->'changed' AS changed FROM evolve.schema_versions WHERE version = 2;
SELECT job_id, status, kind, priority, processed_entities, total_entities, percent FROM evolve.migration_progress;
-- While a job is active, search warns (default), or blocks.
SET evolve.search_during_reembed = 'block';
SELECT * FROM evolve.semantic_search('earthquake', 'Alaska');
\echo :LAST_ERROR_SQLSTATE
RESET evolve.search_during_reembed;
CALL evolve.run_reembedding(1);
SELECT job_id, status, processed_entities, total_entities, percent FROM evolve.migration_progress;
CALL evolve.run_reembedding();
SELECT job_id, status, processed_entities, total_entities, percent, error_count, parked FROM evolve.migration_progress;
SELECT count(*) AS embeddings, min(schema_version) AS min_version, max(schema_version) AS max_version
FROM evolve.entity_embeddings;
-- The 3 nearest (shown by key: their distances are nearly equal, and an approximate index may
-- return near-ties in either order).
SELECT entity_key, snapshot->>'place' AS place FROM evolve.semantic_search('earthquake', 'Alaska Peninsula', 3)
ORDER BY entity_key;

-- A second change over the same entities: unchanged texts are not recomputed... (a description of
-- an attribute none of them has leaves every text as it was)
SELECT evolve.apply_change('{"kind": "template_applied", "template": "geo", "entity_types": ["earthquake"]}') AS job;
CALL evolve.run_reembedding();
SELECT job_id, kind, status, processed_entities, unchanged_entities FROM evolve.migration_progress ORDER BY job_id;
-- ... and an entity queued by two jobs is embedded once, by the latest.
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "One"}') AS first_job \gset
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "Two"}') AS second_job \gset
SELECT job_id, status, total_entities FROM evolve.migration_progress WHERE job_id IN (:first_job, :second_job) ORDER BY 1;
CALL evolve.run_reembedding();
SELECT job_id, status, processed_entities, total_entities FROM evolve.migration_progress WHERE job_id IN (:first_job, :second_job) ORDER BY 1;
SELECT count(*) FILTER (WHERE job_id = :second_job) AS by_latest_job, count(*) AS all_embeddings FROM evolve.entity_embeddings;

-- Errors.
SELECT * FROM evolve.analyze_impact('{"kind": "colour_changed", "entity_type": "earthquake"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM evolve.analyze_impact('{"kind": "attribute_deleted", "entity_type": "earthquake"}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.apply_change('{"kind": "attribute_deleted", "entity_type": "earthquake", "attribute": "nope"}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "volcano", "description": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM evolve.semantic_search('earthquake', 'x', 0);
\echo :LAST_ERROR_SQLSTATE
