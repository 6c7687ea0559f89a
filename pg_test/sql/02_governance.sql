-- Registry governance: versions, diff, time travel, compatibility modes, quotas, name conflicts.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

SELECT evolve.register_schema('{"entity_type": "earthquake", "description": "v1",
  "attributes": {"mag": {"type": "integer"}, "place": {"type": "string"}}}');
SELECT now() AS after_v1 \gset
SELECT pg_sleep(0.01);
SELECT evolve.update_schema_incremental('earthquake',
  '{"description": "v2", "attributes": {"mag": {"type": "number"}, "depth": {"type": "number", "default": 0}}}');
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"place": null}}');

-- Versions, with diffs and who made them.
SELECT entity_type, user_id, version, created_by = current_user AS by_me, diff
FROM evolve.schema_versions ORDER BY version;
SELECT evolve.schema_diff('earthquake', 1, 3);
SELECT evolve.schema_diff('earthquake', 1, 9);
\echo :LAST_ERROR_SQLSTATE

-- Time travel: schema_at answers with the schema in force at an instant.
SELECT evolve.schema_at('earthquake', :'after_v1')->>'description' AS description_then,
       evolve.schema_at('earthquake', :'after_v1')->'version' AS version_then,
       evolve.schema_at('earthquake', now())->'version' AS version_now,
       evolve.schema_at('earthquake', '2000-01-01') IS NULL AS nothing_before;

-- Compatibility: BACKWARD by default.
SELECT compatibility FROM evolve.schemas WHERE entity_type = 'earthquake';
SELECT * FROM evolve.check_compatibility('{"entity_type": "earthquake",
  "attributes": {"mag": {"type": "number"}, "depth": {"type": "number"}, "tz": {"type": "integer"}}}');
-- A new required attribute without a default, and a narrowing: both reasons listed.
SELECT * FROM evolve.check_compatibility('{"entity_type": "earthquake",
  "attributes": {"mag": {"type": "integer"}, "depth": {"type": "number"}, "felt": {"type": "integer", "required": true}}}');
SELECT evolve.register_schema('{"entity_type": "earthquake",
  "attributes": {"mag": {"type": "integer"}, "depth": {"type": "number"}, "felt": {"type": "integer", "required": true}}}');
\echo :LAST_ERROR_SQLSTATE
-- With a default the new required attribute is fine.
SELECT * FROM evolve.check_compatibility('{"entity_type": "earthquake",
  "attributes": {"mag": {"type": "number"}, "depth": {"type": "number"}, "felt": {"type": "integer", "required": true, "default": 0}}}');
-- FORWARD: removing a required attribute breaks old readers.
SELECT evolve.register_schema('{"entity_type": "station", "attributes": {"code": {"type": "string", "required": true}, "name": {"type": "string"}}}');
SELECT evolve.set_compatibility('station', 'forward');
SELECT * FROM evolve.check_compatibility('{"entity_type": "station", "attributes": {"name": {"type": "string"}}}');
SELECT evolve.set_compatibility('station', 'FULL_TRANSITIVE');
SELECT evolve.set_compatibility('station', 'NONE');
SELECT evolve.register_schema('{"entity_type": "station", "attributes": {"name": {"type": "integer"}}}');
SELECT evolve.set_compatibility('station', 'sideways');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.set_compatibility('nothing', 'NONE');
\echo :LAST_ERROR_SQLSTATE

-- Quotas: 10 schemas and 200 fields per user by default; a WARNING at 80 %, an error at the limit.
SELECT evolve.set_quota('ana', 3, 5);
SELECT evolve.register_schema('{"entity_type": "a1", "attributes": {"x": {"type": "string"}}}', 'ana');
SELECT evolve.register_schema('{"entity_type": "a2", "attributes": {"x": {"type": "string"}}}', 'ana');
SELECT evolve.register_schema('{"entity_type": "a3", "attributes": {"x": {"type": "string"}}}', 'ana');
SELECT evolve.register_schema('{"entity_type": "a4", "attributes": {"x": {"type": "string"}}}', 'ana');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.update_schema_incremental('a1', '{"attributes": {"y": {"type": "string"}, "z": {"type": "string"}, "w": {"type": "string"}}}', 'ana');
\echo :LAST_ERROR_SQLSTATE
SELECT user_id, schema_count, max_schemas, total_fields, max_fields FROM evolve.user_schema_quotas;
SELECT evolve.set_quota('ana', 2, 5);
\echo :LAST_ERROR_SQLSTATE
-- The CHECK constraints keep the table true even against direct writes.
\set VERBOSITY terse
UPDATE evolve.user_schema_quotas SET schema_count = 99 WHERE user_id = 'ana';
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE

-- Conflict detection: near-duplicate type names wait for review.
SELECT evolve.register_schema('{"entity_type": "earthquakes"}');
SELECT evolve.register_schema('{"entity_type": "Earth_Quake"}');
SELECT evolve.register_schema('{"entity_type": "volcano"}');
SELECT entity_type, status FROM evolve.schemas WHERE user_id IS NULL ORDER BY entity_type;
SELECT id, kind, new_name, existing_name, round(score::numeric, 2) AS score, status
FROM evolve.entity_conflicts ORDER BY id;
SELECT evolve.active_schema('earthquakes') IS NULL AS pending_is_not_active;
SELECT evolve.activate_schema('earthquakes');
\echo :LAST_ERROR_SQLSTATE
-- keep: the new type stands.
SELECT evolve.resolve_conflict(1, action => 'keep');
SELECT evolve.active_schema('earthquakes')->>'entity_type' AS kept;
-- merge: the new name becomes an alias of the existing type.
SELECT evolve.resolve_conflict(2, action => 'merge');
SELECT evolve.active_schema('Earth_Quake')->>'entity_type' AS alias_of;
SELECT alias, entity_type FROM evolve.entity_type_aliases;
SELECT evolve.register_schema('{"entity_type": "Earth_Quake"}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.resolve_conflict(2, action => 'keep');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.resolve_conflict(99, action => 'keep');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.resolve_conflict(1, action => 'ignore');
\echo :LAST_ERROR_SQLSTATE
-- Attributes too: a near-duplicate attribute is recorded for review; merge folds it into an alias.
SELECT evolve.update_schema_incremental('volcano', '{"attributes": {"elevation": {"type": "number"}}}');
SELECT evolve.update_schema_incremental('volcano', '{"attributes": {"elevations": {"type": "number"}}}');
SELECT id, kind, entity_type, new_name, existing_name, status FROM evolve.entity_conflicts WHERE kind = 'attribute';
SELECT evolve.resolve_conflict(id, 'merge') FROM evolve.entity_conflicts WHERE kind = 'attribute';
SELECT evolve.active_schema('volcano')->'attributes';
