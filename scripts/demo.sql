-- The pg_evolve demo, on the USGS "all earthquakes, past week" feed (data/README.md).
-- scripts/demo.sh runs it in two sessions, split at the line `--@@ progress bar @@` (section 19),
-- and draws the re-embedding job's progress bar in between.
\set QUIET on
\pset footer off
-- A fresh start: nothing to drop on the first run, and no notices saying so.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_evolve CASCADE;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION pg_evolve;
DROP TABLE IF EXISTS usgs_feed;
CREATE TABLE usgs_feed AS
SELECT f->>'id' AS id, f->'properties' AS properties, f->'geometry' AS geometry
FROM (SELECT string_agg(line, E'\n' ORDER BY n)::jsonb AS doc FROM usgs_lines) d,
     jsonb_array_elements(d.doc->'features') AS f;
RESET client_min_messages;
-- Runs a statement that must be refused: shows the refusal (SQLSTATE and message) as a row;
-- a statement that is accepted instead fails the demo.
CREATE FUNCTION pg_temp.expect_refusal(statement text)
RETURNS TABLE (outcome text, code text, message text) LANGUAGE plpgsql AS $f$
BEGIN
    BEGIN
        EXECUTE statement;
    EXCEPTION WHEN OTHERS THEN
        outcome := 'expected refusal';
        GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        RETURN NEXT;
        RETURN;
    END;
    RAISE EXCEPTION 'the demo expected this statement to be refused, but it was accepted: %', statement;
END $f$;
\set QUIET off

\echo '\n## 1. The feed: one row per earthquake, its properties as drifting JSON'
SELECT (SELECT count(*) FROM usgs_feed) AS features,
       (SELECT count(DISTINCT k) FROM usgs_feed, jsonb_object_keys(properties) AS k) AS distinct_property_keys;

\echo '\n## 2. Register an initial earthquake schema (a handful of attributes)'
SELECT evolve.register_schema($${
  "entity_type": "earthquake",
  "description": "A seismic event reported by the USGS real-time feed",
  "attributes": {
    "mag":     {"type": "number",    "description": "Magnitude of the event", "merge_policy": "max"},
    "place":   {"type": "string",    "description": "Named place nearest to the epicentre"},
    "time":    {"type": "integer",   "description": "Origin time, milliseconds since the Unix epoch"},
    "status":  {"type": "string",    "description": "automatic or reviewed"},
    "magType": {"type": "string",    "description": "Method used to compute the magnitude"}
  },
  "relationships": {
    "reported_by": {"target": "network", "description": "Seismic network that reported the event"}
  }
}$$) AS version;

\echo '\n## 3. A user extends it: one more attribute and a description of their own'
SELECT evolve.register_schema($${
  "entity_type": "earthquake",
  "attributes": {
    "felt": {"type": "integer", "description": "Number of 'Did you feel it?' reports"},
    "mag":  {"type": "number",  "description": "Magnitude, as our analysts read it"}
  }
}$$, user_id => 'analyst_ana') AS ana_version;

\echo '\n## 4. active_schema: the global schema, and Ana''s effective (merged) schema'
SELECT jsonb_pretty(evolve.active_schema('earthquake')) AS global_schema;
SELECT key AS attribute, value->>'type' AS type, value->>'description' AS description
FROM jsonb_each(evolve.active_schema('earthquake', 'analyst_ana')->'attributes')
ORDER BY key;

\echo '\n## 5. Read it once per feed row: served from the backend-local cache'
SELECT count(evolve.active_schema('earthquake')) AS lookups FROM usgs_feed;
SELECT * FROM evolve.cache_stats();

\echo '\n## 6. A change commits: the cache is invalidated (in every backend), the next read is fresh'
SELECT evolve.update_schema_incremental('earthquake',
  '{"attributes": {"depth": {"type": "number", "description": "Depth of the hypocentre, km"}}}') AS version;
SELECT evolve.active_schema('earthquake')->'attributes' ? 'depth' AS sees_depth,
       evolve.active_schema('earthquake')->>'version' AS version;
SELECT hits, misses, invalidations, entries, capacity FROM evolve.cache_stats();

\echo '\n## 7. Versions: every change is an immutable version with its diff'
SELECT version, created_by, diff->'attributes'->'added' AS attributes_added
FROM evolve.schema_versions WHERE entity_type = 'earthquake' AND user_id IS NULL ORDER BY version;
SELECT evolve.schema_diff('earthquake', 1, 2) AS diff_v1_v2;

\echo '\n## 8. Time travel: the schema as it was before version 2'
SELECT created_at - interval '1 microsecond' AS before_v2
FROM evolve.schema_versions WHERE entity_type = 'earthquake' AND user_id IS NULL AND version = 2 \gset
SELECT evolve.schema_at('earthquake', :'before_v2')->'version' AS version_then,
       evolve.schema_at('earthquake', :'before_v2')->'attributes' ? 'depth' AS had_depth_then,
       evolve.active_schema('earthquake')->'attributes' ? 'depth' AS has_depth_now;

\echo '\n## 9. Compatibility (BACKWARD by default): an incompatible change is refused with every reason'
SELECT * FROM evolve.check_compatibility($${
  "entity_type": "earthquake",
  "attributes": {"mag": {"type": "integer"}, "place": {"type": "string"}, "time": {"type": "integer"},
                 "status": {"type": "string"}, "magType": {"type": "string"}, "depth": {"type": "number"},
                 "sig": {"type": "integer", "required": true}}}$$);
\echo 'Registering it anyway is refused (the demo catches the error and shows it):'
SELECT outcome, code AS sqlstate, message FROM pg_temp.expect_refusal($sql$SELECT evolve.register_schema($${
  "entity_type": "earthquake",
  "attributes": {"mag": {"type": "integer"}, "place": {"type": "string"}, "time": {"type": "integer"},
                 "status": {"type": "string"}, "magType": {"type": "string"}, "depth": {"type": "number"},
                 "sig": {"type": "integer", "required": true}}}$$)$sql$);

\echo '\n## 10. Near-duplicate entity types are flagged for review, not activated'
SELECT evolve.register_schema('{"entity_type": "earthquakes", "description": "plural, by another team"}');
SELECT evolve.register_schema('{"entity_type": "Earth_Quake", "description": "yet another spelling"}');
SELECT entity_type, status FROM evolve.schemas WHERE user_id IS NULL ORDER BY entity_type;
SELECT id, new_name, existing_name, round(score::numeric, 2) AS similarity, status
FROM evolve.entity_conflicts ORDER BY id;
SELECT evolve.resolve_conflict(id, action => 'merge')
FROM evolve.entity_conflicts WHERE new_name = 'Earth_Quake' AND existing_name = 'earthquake';
SELECT evolve.active_schema('Earth_Quake')->>'entity_type' AS "Earth_Quake resolves to";

\echo '\n## 11. Quotas: a user may hold 10 schemas and 200 fields unless an administrator says otherwise'
SELECT user_id, schema_count, max_schemas, total_fields, max_fields FROM evolve.user_schema_quotas;

\echo '\n## 12. Ingest the whole feed through the inbox (one INSERT, routed set-based by a statement trigger)'
INSERT INTO evolve.inbox (entity_type, payload, entity_key, source)
SELECT 'earthquake', properties || jsonb_build_object('depth', geometry->'coordinates'->2), id, properties->>'net'
FROM usgs_feed;
SELECT (SELECT count(*) FROM evolve.entities WHERE entity_type = 'earthquake') AS entities,
       (SELECT count(*) FROM evolve.observations) AS observations,
       (SELECT count(*) FROM evolve.raw_fragments) AS raw_fragments,
       (SELECT count(*) FROM evolve.inbox_rejects) AS rejected;
\echo 'Each new entity was queued for embedding by the same statement, and its commit woke the worker:'
SELECT pg_sleep(2) \g /dev/null
SELECT entity_type, entities, embedded, queued, generation, policy FROM evolve.embedding_status;

\echo '\n## 13. What the schema does not declare yet: raw fragment aggregates (maintained by triggers)'
SELECT fragment_key, sample_count AS entities, dominant_type,
       round(type_consistency::numeric, 2) AS type_consistency,
       round(coalesce((type_counts->>'null')::numeric, 0) / sample_count, 3) AS null_rate,
       unique_sources, round(evolve.field_confidence('earthquake', fragment_key)::numeric, 2) AS confidence,
       left(sample_values::text, 40) AS samples
FROM evolve.raw_fragment_aggregates WHERE entity_type = 'earthquake' AND user_id IS NULL
ORDER BY null_rate, fragment_key;
SELECT count(*) AS aggregate_mismatches FROM evolve.verify_aggregates();

\echo '\n## 14. A snapshot reduced from observations (mag merges with max)'
SELECT evolve.entity(entity_id) AS snapshot FROM evolve.entities WHERE entity_key = 'ci37868143';

\echo '\n## 15. Declaring felt promotes its fragments into observations (they expire after 30 days)'
SELECT evolve.update_schema_incremental('earthquake',
  '{"attributes": {"felt": {"type": "integer", "description": "Number of felt reports"}}}') AS version;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments WHERE fragment_key = 'felt' GROUP BY 1;
SELECT count(*) AS entities_with_felt FROM evolve.entities WHERE snapshot ? 'felt';

\echo '\n## 16. Maintenance jobs in pg_cron (cleanup daily, archival weekly)'
\set QUIET on
SET client_min_messages = warning;   -- pg_cron stays from an earlier run: no "already exists" notice
CREATE EXTENSION IF NOT EXISTS pg_cron;
RESET client_min_messages;
\set QUIET off
SELECT * FROM evolve.schedule_maintenance();

\echo '\n## 17. Old producers: a payload in an older shape is migrated on the way in'
-- Version 4 renames magType to magnitude_type (the old name stays an alias: the rename step is derived).
SELECT evolve.update_schema_incremental('earthquake',
  '{"attributes": {"magType": null, "magnitude_type": {"type": "string", "aliases": ["magType"]}}}') AS version;
-- Old producers also sent magnitudes as strings: cast on the way from version 3 to 4.
SELECT evolve.register_migration('earthquake', 3, 4,
  '[{"rename": {"from": "magType", "to": "magnitude_type"}}, {"cast": {"key": "mag", "to": "number"}}]') AS steps;
SELECT from_version, to_version, derived, steps FROM evolve.migration_paths WHERE entity_type = 'earthquake' ORDER BY 1;
SELECT evolve.migrate_payload('earthquake', '{"mag": "4.6", "magType": "mb", "place": "Fiji"}', 3) AS migrated;
SELECT evolve.ingest('earthquake', '{"mag": "4.6", "magType": "mb", "place": "Fiji region"}',
                     entity_key => 'old-producer-1', schema_version => 3, source => 'legacy') > 0 AS ingested;
SELECT snapshot FROM evolve.entities WHERE entity_key = 'old-producer-1';
\echo 'A payload that cannot be migrated is logged (and, by default, ingested as far as it fits):'
SELECT evolve.ingest('earthquake', '{"mag": "strong", "magType": "ml", "place": "Nowhere"}',
                     entity_key => 'old-producer-2', schema_version => 3, source => 'legacy') > 0 AS ingested;
SELECT from_version, to_version, failing_step, error, strategy FROM evolve.migration_failures;

\echo '\n## 18. Impact of a change, before applying it'
SELECT kind, entity_type, affected_entities, priority, round(estimated_seconds::numeric, 2) AS estimated_seconds, sample_entity_ids
FROM evolve.analyze_impact('{"kind": "entity_type_description_changed", "entity_type": "earthquake",
                             "description": "An earthquake, quarry blast or explosion located by the USGS network"}');

\echo '\n## 19. Apply it: a new version, a job, the background worker re-embeds every earthquake into a new generation (search keeps the current one meanwhile)'
SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake",
                             "description": "An earthquake, quarry blast or explosion located by the USGS network"}') AS job;
--@@ progress bar @@
\set QUIET on
\pset footer off
-- (Run as one script, psql waits here for the job without drawing anything.)
DO $$
BEGIN
    FOR i IN 1..1200 LOOP
        EXIT WHEN (SELECT status IN ('completed', 'failed') FROM evolve.migration_progress ORDER BY job_id DESC LIMIT 1);
        PERFORM pg_sleep(0.25);
    END LOOP;
END $$;
\set QUIET off
SELECT job_id, status, percent, processed_entities, total_entities, error_count, rate_per_second
FROM evolve.migration_progress ORDER BY job_id DESC LIMIT 1;
\echo 'The job built generation 1 beside generation 0 and switched to it in its last commit:'
SELECT generation, entity_type, state, job_id FROM evolve.embedding_generations;

\echo '\n## 20. Semantic search over the embeddings'
SELECT entity_key, round(distance::numeric, 3) AS distance, snapshot->>'place' AS place, snapshot->>'mag' AS mag, generation
FROM evolve.semantic_search('earthquake', 'near Amboy, Washington', 5);
\echo 'At a glance:'
SELECT check_name, severity, detail FROM evolve.health_check();

\echo '\n## 21. A sentence model in the backend: earthquakes move to the minilm profile (all-MiniLM-L6-v2)'
\echo 'The hashing profile matches words and letters: asked for "volcanic islands in the middle of the Pacific", it finds:'
SELECT entity_key, snapshot->>'place' AS place, generation
FROM evolve.semantic_search('earthquake', 'volcanic islands in the middle of the Pacific', 5);
SELECT evolve.set_embedding_profile('earthquake', 'minilm') AS job;
\set QUIET on
DO $$
BEGIN
    FOR i IN 1..2400 LOOP
        EXIT WHEN (SELECT status IN ('completed', 'failed') FROM evolve.schema_migration_jobs ORDER BY id DESC LIMIT 1);
        PERFORM pg_sleep(0.25);
    END LOOP;
END $$;
\set QUIET off
SELECT generation, profile, state FROM evolve.embedding_generations WHERE entity_type = 'earthquake';
\echo 'The same question, answered by meaning (the model runs inside this backend):'
SELECT entity_key, snapshot->>'place' AS place, generation
FROM evolve.semantic_search('earthquake', 'volcanic islands in the middle of the Pacific', 5);

\echo '\n## 22. Proposals: what the data suggests, with evidence and priority'
SELECT kind, name, safe_name, priority, evidence->>'inferred_type' AS inferred_type,
       round((evidence->>'presence')::numeric, 2) AS presence, impact
FROM evolve.propose_schema('earthquake') LIMIT 14;
SELECT title, rationale, sql_preview FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig';

\echo '\n## 23. Approve the best one: a new version, its fragments promoted, the audit row'
SELECT action, success, executed_sql, rollback_sql
FROM evolve.approve_proposal((SELECT id FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig'),
                             'demo-reviewer', 'significance drives alerting');
SELECT evolve.active_schema('earthquake')->'version' AS version,
       evolve.active_schema('earthquake')->'attributes'->'sig' AS sig;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments WHERE fragment_key = 'sig' GROUP BY 1;
SELECT kind, status, priority, proposals FROM evolve.proposal_stats ORDER BY kind, status, priority;

\echo '\n## 24. Nested JSON: the same feed as it is served, whole GeoJSON features (nothing unwrapped)'
-- A second type declares a few members of the feature's objects; everything else is seen by path.
SELECT evolve.register_schema($${"entity_type": "quake_feature", "attributes": {
  "properties": {"type": "object", "properties": {
    "mag": {"type": "number", "merge_policy": "max"}, "place": {"type": "string"}, "time": {"type": "timestamp"}}},
  "geometry": {"type": "object", "properties": {"coordinates": {"type": "array", "items": "number"}}}}}$$) AS version;
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'quake_feature', jsonb_build_object('type', 'Feature', 'id', id, 'properties', properties, 'geometry', geometry), id
FROM usgs_feed;
SELECT attribute, count(*) AS observations FROM evolve.observations o JOIN evolve.entities e USING (entity_id)
WHERE e.entity_type = 'quake_feature' GROUP BY 1 ORDER BY 1;
SELECT fragment_key, dominant_type, sample_count FROM evolve.raw_fragment_aggregates
WHERE entity_type = 'quake_feature' ORDER BY fragment_key LIMIT 8;
\echo 'Proposals by path (name in text form, path as an array, each placed inside its object):'
SELECT kind, name, path, safe_name, priority, evidence->>'inferred_type' AS inferred_type
FROM evolve.propose_schema('quake_feature') WHERE kind = 'attribute'
ORDER BY CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, name LIMIT 10;
\echo 'Approve the useful ones: significance, magnitude type and the tsunami flag, inside properties:'
SELECT p.name, (evolve.approve_proposal(p.id, 'demo-reviewer')).details->'version' AS version
FROM evolve.schema_proposals p
WHERE p.entity_type = 'quake_feature' AND p.name IN ('properties.sig', 'properties.magType', 'properties.tsunami')
ORDER BY p.name;
SELECT jsonb_pretty(evolve.active_schema('quake_feature')->'attributes'->'properties'->'properties') AS properties;
SELECT jsonb_pretty(evolve.entity(entity_id)) AS nested_snapshot
FROM evolve.entities WHERE entity_type = 'quake_feature' AND entity_key = 'ci37868143';

\echo '\n## 25. The active schemas as a Mermaid diagram (nested records are boxes of their own)'
\set QUIET on
\pset format unaligned
\pset tuples_only on
SELECT evolve.schema_diagram();
\pset format aligned
\pset tuples_only off
\set QUIET off
