-- The pg_evolve demo, on the USGS "all earthquakes, past week" feed (data/README.md).
\pset footer off
\set QUIET on
DROP EXTENSION IF EXISTS pg_evolve CASCADE;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION pg_evolve;
DROP TABLE IF EXISTS usgs_feed;
CREATE TABLE usgs_feed AS
SELECT f->>'id' AS id, f->'properties' AS properties, f->'geometry' AS geometry
FROM (SELECT string_agg(line, E'\n' ORDER BY n)::jsonb AS doc FROM usgs_lines) d,
     jsonb_array_elements(d.doc->'features') AS f;
\set QUIET off

\echo '\n## 1. The feed: one row per earthquake, its properties as drifting JSON'
SELECT count(*) AS features, count(DISTINCT k) AS distinct_property_keys
FROM usgs_feed, jsonb_object_keys(properties) AS k;

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
