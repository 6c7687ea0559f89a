-- Nested JSON by path, on the USGS feed as it is served: whole GeoJSON features, their fields
-- under "properties", their position under "geometry.coordinates". Nothing is unwrapped.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql
\i sql/usgs_features.psql
SELECT count(*) AS features FROM features;

-- A definition that declares a few members of each object: `properties` on an object, `items`
-- on an array. Everything else is undeclared.
SELECT evolve.register_schema($${"entity_type": "earthquake", "attributes": {
  "properties": {"type": "object", "properties": {
    "mag": {"type": "number", "merge_policy": "max"}, "place": {"type": "string"},
    "time": {"type": "timestamp"}}},
  "geometry": {"type": "object", "properties": {
    "coordinates": {"type": "array", "items": "number"}}}}}$$);
SELECT jsonb_pretty(evolve.active_schema('earthquake') - 'version');

-- The whole feed through the inbox. Declared paths become observations under their path;
-- undeclared members of the objects become raw fragments keyed by path.
INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT 'earthquake', payload, id FROM features;
SELECT (SELECT count(*) FROM evolve.entities) AS entities,
       (SELECT count(*) FROM evolve.observations) / (SELECT count(*) FROM evolve.entities) AS observations_each,
       (SELECT count(*) FROM evolve.raw_fragments) / (SELECT count(*) FROM evolve.entities) AS fragments_each;
SELECT attribute, count(*) FROM evolve.observations GROUP BY 1 ORDER BY 1;
SELECT fragment_key, dominant_type, sample_count = (SELECT count(*) FROM features) AS in_every_feature
FROM evolve.raw_fragment_aggregates ORDER BY 1;
SELECT * FROM evolve.verify_aggregates();

-- The snapshot is the nested object.
SELECT jsonb_pretty(evolve.entity(entity_id)) FROM evolve.entities WHERE entity_key = 'ci37868143';

-- Proposals by path: `name` is the text form, `path` the array form, `safe_name` where the
-- attribute goes. Each is an attribute of the object it lives in.
SELECT kind, name, path, safe_name, action->'patch' AS patch
FROM evolve.propose_schema('earthquake')
WHERE name IN ('properties.sig', 'properties.magType', 'geometry.type', 'id') ORDER BY name;

-- Approving one declares it inside its object and promotes its fragments into observations.
SELECT (evolve.approve_proposal(id, 'reviewer')).proposal_id = id AS approved
FROM evolve.schema_proposals WHERE name IN ('properties.sig', 'properties.magType') ORDER BY name;
SELECT jsonb_pretty(evolve.active_schema('earthquake')->'attributes'->'properties'->'properties');
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments
WHERE fragment_key IN ('properties.sig', 'properties.magType') GROUP BY 1;
SELECT evolve.entity(entity_id)->'properties'->'sig' AS sig,
       evolve.entity(entity_id)->'properties'->'magtype' AS magtype
FROM evolve.entities WHERE entity_key = 'ci37868143';
SELECT evolve.schema_diff('earthquake', 1, 3)->'attributes' AS diff;

-- A new feature is split by the new definition at once.
SELECT evolve.ingest('earthquake', '{"properties": {"mag": 3.1, "sig": 150, "magType": "mb", "extra": {"a": 1}}}',
                     entity_key => 'nested-1') IS NOT NULL AS ingested;
SELECT attribute, value FROM evolve.observations o JOIN evolve.entities e USING (entity_id)
WHERE e.entity_key = 'nested-1' ORDER BY 1;
SELECT fragment_key, value FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id)
WHERE e.entity_key = 'nested-1' ORDER BY 1;

-- Compatibility by path: every reason names the full path.
SELECT * FROM evolve.check_compatibility($${"entity_type": "earthquake", "attributes": {
  "properties": {"type": "object", "properties": {
    "mag": {"type": "string"}, "place": {"type": "string"}, "time": {"type": "timestamp"},
    "sig": {"type": "integer"}, "magtype": {"type": "string", "aliases": ["magType"]},
    "code": {"type": "string", "required": true}}},
  "geometry": {"type": "object", "properties": {
    "coordinates": {"type": "array", "items": "string"}}}}}$$);

-- A rollback removes what the approval added, at its path; the object stays.
SELECT (evolve.rollback_proposal(id)).proposal_id = id AS rolled_back FROM evolve.schema_proposals WHERE name = 'properties.sig';
SELECT jsonb_object_keys(evolve.active_schema('earthquake')->'attributes'->'properties'->'properties') AS members ORDER BY 1;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments WHERE fragment_key = 'properties.sig' GROUP BY 1;

-- Impact by path: a change names a nested attribute by its path; the entities it affects are
-- those whose snapshot holds a value there.
SELECT kind, entity_type, affected_entities, priority FROM evolve.analyze_impact(
  '{"kind": "attribute_description_changed", "entity_type": "earthquake", "attribute": "properties.mag", "description": "Magnitude"}');
SELECT evolve.apply_change(
  '{"kind": "attribute_description_changed", "entity_type": "earthquake", "attribute": "properties.mag", "description": "Magnitude"}') > 0 AS job;
SELECT evolve.active_schema('earthquake')->'attributes'->'properties'->'properties'->'mag' AS mag;
\set VERBOSITY terse
SELECT evolve.apply_change(
  '{"kind": "attribute_added", "entity_type": "earthquake", "attribute": "nothing.here", "type": "string"}');
\set VERBOSITY default

-- A user extends a global object with a member of their own; global members cannot change.
SELECT evolve.register_schema($${"entity_type": "earthquake", "attributes": {
  "properties": {"type": "object", "properties": {"my_note": {"type": "string"}}}}}$$, 'ana');
SELECT jsonb_object_keys(evolve.active_schema('earthquake', 'ana')->'attributes'->'properties'->'properties') AS members ORDER BY 1;
\set VERBOSITY terse
SELECT evolve.register_schema($${"entity_type": "earthquake", "attributes": {
  "properties": {"type": "object", "properties": {"mag": {"type": "string"}}}}}$$, 'ana');
-- Invalid nested definitions name the offending JSON pointer.
SELECT evolve.check_compatibility('{"entity_type": "earthquake", "attributes": {"properties": {"type": "string", "properties": {}}}}');
SELECT evolve.check_compatibility('{"entity_type": "earthquake", "attributes": {"properties": {"type": "object", "properties": {"bad key": {"type": "string"}}}}}');
\set VERBOSITY default

-- Limits: past evolve.max_path_depth an undeclared object is kept whole (nothing is dropped).
SET evolve.max_path_depth = 2;
SELECT evolve.ingest('earthquake', '{"deep": {"a": {"b": {"c": 1}}, "d": 2}}', entity_key => 'deep-1') IS NOT NULL AS ingested;
SELECT fragment_key, value FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id)
WHERE e.entity_key = 'deep-1' ORDER BY 1;
RESET evolve.max_path_depth;
SELECT * FROM evolve.verify_aggregates();

-- Maps: an object whose keys are data (here dates), each in few payloads, is proposed as one
-- object attribute with a type for its values, not as one attribute per date.
SELECT evolve.register_schema('{"entity_type": "repo", "attributes": {"name": {"type": "string"}}}');
SELECT count(evolve.ingest('repo', jsonb_build_object('name', 'r' || r,
           'owner', jsonb_build_object('login', 'u' || (r % 3)),
           'daily', (SELECT jsonb_object_agg(to_char(date '2024-01-01' + (r * 3 + d), 'YYYY-MM-DD'), r * d)
                     FROM generate_series(0, 2) d)),
           entity_key => 'r' || r))
FROM generate_series(1, 12) r;
SELECT kind, name, safe_name, title, evidence->'map'->'distinct_keys' AS distinct_keys,
       action->'patch' AS patch
FROM evolve.propose_schema('repo') WHERE name IN ('daily', 'owner.login') ORDER BY name;
SELECT (evolve.approve_proposal(id, 'reviewer')).proposal_id = id AS approved
FROM evolve.schema_proposals WHERE entity_type = 'repo' AND name = 'daily';
SELECT evolve.entity(entity_id)->'daily' AS daily FROM evolve.entities WHERE entity_key = 'r1';
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id)
WHERE e.entity_type = 'repo' AND fragment_key LIKE 'daily.%' GROUP BY 1;
-- A later payload's map is observed whole.
SELECT evolve.ingest('repo', '{"name": "r1", "daily": {"2024-03-01": 7}}', entity_key => 'r1') IS NOT NULL AS ingested;
SELECT evolve.entity(entity_id)->'daily' AS daily FROM evolve.entities WHERE entity_key = 'r1';
-- Rolling the map back makes its members fragments again.
SELECT (evolve.rollback_proposal(id)).proposal_id = id AS rolled_back
FROM evolve.schema_proposals WHERE entity_type = 'repo' AND name = 'daily';
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id)
WHERE e.entity_type = 'repo' AND fragment_key LIKE 'daily.%' GROUP BY 1;
SELECT * FROM evolve.verify_aggregates();

-- Entity extraction: an event's `org` is an object with an id that repeats across events, always
-- with the same name. It is proposed as an entity type of its own, related to the event.
SELECT evolve.register_schema('{"entity_type": "event", "attributes": {"type": {"type": "string"}}}');
SELECT count(evolve.ingest('event', jsonb_build_object('type', 'PushEvent',
           'org', jsonb_build_object('id', 100 + e % 4, 'login', 'org' || (e % 4)),
           'payload', jsonb_build_object('size', e % 3, 'head', md5(e::text))),
           entity_key => 'e' || e))
FROM generate_series(1, 40) e;
SELECT kind, name, safe_name, priority, evidence->'distinct_ids' AS distinct_ids,
       evidence->'repeats' AS repeats, evidence->'consistency' AS consistency, action->'definition' AS definition
FROM evolve.propose_schema('event') WHERE kind = 'extract_entity';
-- payload.head is unique per event: no identity, no extraction.
SELECT count(*) AS payload_extractions FROM evolve.schema_proposals WHERE kind = 'extract_entity' AND name = 'payload';
SELECT (evolve.approve_proposal(id, 'reviewer')).details - 'promoted_at' AS details
FROM evolve.schema_proposals WHERE kind = 'extract_entity' AND name = 'org';
SELECT entity_key, evolve.entity(entity_id) FROM evolve.entities WHERE entity_type = 'org' ORDER BY entity_key;
SELECT evolve.active_schema('event')->'relationships' AS relationships;
SELECT evolve.entity(entity_id) FROM evolve.entities WHERE entity_key = 'e1';
-- New events embedding an org create or update it, and link to it.
SELECT evolve.ingest('event', '{"type": "ForkEvent", "org": {"id": 104, "login": "org4"}}', entity_key => 'e41') IS NOT NULL AS ingested;
SELECT evolve.entity(entity_id)->'org' AS org FROM evolve.entities WHERE entity_key = 'e41';
SELECT entity_key, evolve.entity(entity_id)->'login' AS login FROM evolve.entities WHERE entity_type = 'org' AND entity_key = '104';
-- Rolling back removes the relationship and makes the fragments active again; the org type stays.
SELECT (evolve.rollback_proposal(id)).proposal_id = id AS rolled_back
FROM evolve.schema_proposals WHERE kind = 'extract_entity' AND name = 'org';
SELECT evolve.active_schema('event')->'relationships' AS relationships;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id)
WHERE e.entity_type = 'event' AND fragment_key LIKE 'org.%' GROUP BY 1;
SELECT * FROM evolve.verify_aggregates();

-- Quality on real nested data: with nothing declared, every leaf path that is non-null in at
-- least half of the features is proposed with the right type family.
SELECT evolve.register_schema('{"entity_type": "feature_raw"}');
INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT 'feature_raw', payload, id FROM features;
CREATE TEMP TABLE leaf_paths AS
WITH RECURSIVE walk(id, path, v) AS (
    SELECT id, k, v FROM features, jsonb_each(payload) AS e(k, v)
    UNION ALL
    SELECT w.id, w.path || '.' || e.k, e.v FROM walk w, jsonb_each(w.v) AS e(k, v) WHERE jsonb_typeof(w.v) = 'object'
)
SELECT path, mode() WITHIN GROUP (ORDER BY jsonb_typeof(v)) FILTER (WHERE jsonb_typeof(v) <> 'null') AS json_type
FROM walk WHERE jsonb_typeof(v) <> 'object'
GROUP BY path
HAVING count(*) FILTER (WHERE jsonb_typeof(v) <> 'null') >= 0.5 * (SELECT count(*) FROM features);
-- (`id` holds the keys of the earthquake entities above: it is proposed as a relationship.)
CREATE TEMP TABLE raw_proposals AS
SELECT kind, name, evidence->>'inferred_type' AS inferred_type FROM evolve.propose_schema('feature_raw')
WHERE kind IN ('attribute', 'relationship');
CREATE TEMP TABLE judged AS
SELECT l.path, l.json_type, p.kind, p.inferred_type,
       coalesce(CASE l.json_type
            WHEN 'number' THEN p.inferred_type IN ('number', 'integer', 'timestamp')
            WHEN 'string' THEN p.inferred_type IN ('string', 'timestamp', 'date')
            ELSE p.inferred_type = l.json_type END, false) AS right_family
FROM leaf_paths l LEFT JOIN raw_proposals p ON p.name = l.path;
SELECT count(*) AS leaf_paths, count(*) FILTER (WHERE right_family) AS proposed_right,
       count(*) FILTER (WHERE right_family)::float8 / count(*) >= 0.95 AS recall_at_least_095
FROM judged;
SELECT kind, inferred_type, string_agg(path, ', ' ORDER BY path) AS paths FROM judged GROUP BY 1, 2 ORDER BY 1, 2;
