-- The schema registry: register, read, extend per user, patch, (de)activate, and every error.
-- Errors are shown with their SQLSTATE (psql's LAST_ERROR_SQLSTATE).
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

-- A definition is one JSON document; registering returns the version.
SELECT evolve.register_schema($${
  "entity_type": "earthquake",
  "description": "A seismic event",
  "attributes": {
    "mag":   {"type": "number", "description": "Magnitude", "merge_policy": "max"},
    "place": {"type": "string", "description": "Nearest named place"},
    "time":  {"type": "timestamp", "required": true}
  },
  "relationships": {"near": {"target": "place", "description": "Closest named place"}}
}$$) AS version;

-- Registering the same definition again is not a change.
SELECT evolve.register_schema(evolve.active_schema('earthquake')) AS same_version;

SELECT jsonb_pretty(evolve.active_schema('earthquake'));

-- A user extends the global schema: adds fields, overrides descriptions.
SELECT evolve.register_schema($${
  "entity_type": "earthquake",
  "attributes": {
    "felt": {"type": "integer", "description": "Felt reports"},
    "mag":  {"type": "number", "description": "Richter magnitude"}
  }
}$$, 'ana') AS ana_version;
SELECT key, value->>'type' AS type, value->>'description' AS description
FROM jsonb_each(evolve.active_schema('earthquake', 'ana')->'attributes') ORDER BY key;
SELECT evolve.active_schema('earthquake', 'ana')->'user_version' AS user_version,
       evolve.active_schema('earthquake', 'bob')->'attributes' ? 'felt' AS bob_sees_felt;

-- A global change cascades to every user's effective schema.
SELECT evolve.update_schema_incremental('earthquake',
  '{"attributes": {"depth": {"type": "number"}}}') AS version;
SELECT evolve.active_schema('earthquake', 'ana')->'attributes' ? 'depth' AS ana_sees_depth;

-- Incremental patches: JSON merge patch, null removes a field.
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"felt": null}}', 'ana') AS ana_version;
SELECT evolve.active_schema('earthquake', 'ana')->'attributes' ? 'felt' AS ana_has_felt;
SELECT entity_type, user_id, version, diff FROM evolve.schema_history ORDER BY schema_id, version;

-- Deactivate / activate.
SELECT evolve.deactivate_schema('earthquake', 'ana');
SELECT evolve.active_schema('earthquake', 'ana')->'user_version' AS user_version_after_deactivate;
SELECT evolve.activate_schema('earthquake', 'ana');
SELECT evolve.deactivate_schema('earthquake');
SELECT evolve.active_schema('earthquake') IS NULL AS global_gone;
SELECT evolve.activate_schema('earthquake');
SELECT evolve.active_schema('nonexistent') IS NULL AS unknown_is_null;

-- Errors. Each leaves the registry unchanged.
SELECT evolve.register_schema('{"entity_type": "earthquake", "attributes": {"mag": {"type": "number"}}}', 'cy');
SELECT count(*) AS versions_before FROM evolve.schema_history;
SELECT evolve.register_schema('[]');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"description": "no type"}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": 42}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "bad name"}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "attributes": ["mag"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "attributes": {"mag": "number"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "attributes": {"mag": {"type": "float"}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "attributes": {"Robert''); DROP TABLE x;--": {"type": "string"}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "attributes": {"a": {"type": "string", "merge_policy": "sum"}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "relationships": {"r": {"description": "no target"}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "colour": "blue"}');
\echo :LAST_ERROR_SQLSTATE
-- A default must fit its attribute's type.
SELECT evolve.register_schema('{"entity_type": "e", "attributes": {"a": {"type": "string", "default": 5}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "attributes": {"a": {"type": "integer", "default": 1.5}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e", "attributes": {"a": {"type": "date", "default": "2023-02-29"}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"mag": {"default": "big"}}}');
\echo :LAST_ERROR_SQLSTATE
-- 10 MB document
SELECT evolve.register_schema(jsonb_build_object('entity_type', 'e', 'description', repeat('x', 10 * 1024 * 1024)));
\echo :LAST_ERROR_SQLSTATE
-- deep nesting
SELECT evolve.register_schema(('{"entity_type": "e", "attributes": {"a": {"type": "object", "default": '
  || repeat('[', 100) || repeat(']', 100) || '}}}')::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.register_schema('{"entity_type": "e"}', '');
\echo :LAST_ERROR_SQLSTATE
-- A user may not retype or remove a global field.
SELECT evolve.register_schema('{"entity_type": "earthquake", "attributes": {"place": {"type": "integer"}}}', 'ana');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"mag": null}}', 'ana');
\echo :LAST_ERROR_SQLSTATE
-- A global change may not contradict a user's extension (compatibility checks off, to show this rule alone).
SELECT evolve.set_compatibility('earthquake', 'NONE');
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"mag": {"type": "integer"}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.update_schema_incremental('nothing', '{"description": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.update_schema_incremental('earthquake', '[1]');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.update_schema_incremental('earthquake', '{"entity_type": "other"}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.deactivate_schema('nothing');
\echo :LAST_ERROR_SQLSTATE
-- Versions are immutable.
UPDATE evolve.schema_history SET diff = '{}';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS versions_after FROM evolve.schema_history;

-- The cache: bounded, with counters.
SET evolve.schema_cache_size = 100;
SELECT count(evolve.active_schema('type_' || i)) FROM generate_series(1, 1000) AS i;
SELECT entries <= capacity AS bounded, capacity FROM evolve.cache_stats();
RESET evolve.schema_cache_size;
-- A misspelt setting in the reserved prefix is an error.
SET evolve.no_such_setting = 1;
\echo :LAST_ERROR_SQLSTATE
