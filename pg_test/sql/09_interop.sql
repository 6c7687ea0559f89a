-- Schema interchange: a type's effective schema as JSON Schema 2020-12 or Avro, and schemas in
-- either format registered.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

SELECT evolve.register_schema($${"entity_type": "earthquake", "description": "A seismic event", "attributes": {
  "properties": {"type": "object", "properties": {
    "mag": {"type": "number", "merge_policy": "max", "description": "Magnitude"},
    "place": {"type": "string"}, "time": {"type": "timestamp", "required": true},
    "tsunami": {"type": "integer", "default": 0}}},
  "geometry": {"type": "object", "properties": {"coordinates": {"type": "array", "items": "number"}}},
  "id": {"type": "string", "required": true}},
  "relationships": {"network": {"target": "network"}}}$$);

-- JSON Schema: nested properties and items, required, descriptions, defaults; null fits every
-- attribute, as in ingestion; pg_evolve's own facts as x-evolve-* annotations.
SELECT jsonb_pretty(evolve.export_schema('earthquake'));

-- Avro: a record of nullable unions, logical types for times, nested records.
SELECT jsonb_pretty(evolve.export_schema('earthquake', 'avro'));

-- Both import back to the same definition.
SELECT evolve.import_schema(evolve.export_schema('earthquake'), 'jsonschema', 'quake_js');
SELECT evolve.import_schema(evolve.export_schema('earthquake', 'avro'), 'avro', 'quake_avro');
SELECT (evolve.active_schema('quake_js') - 'entity_type' - 'version') = (evolve.active_schema('earthquake') - 'entity_type' - 'version') AS jsonschema_round_trip,
       (evolve.active_schema('quake_avro') - 'entity_type' - 'version') = (evolve.active_schema('earthquake') - 'entity_type' - 'version') AS avro_round_trip;

-- A schema written by hand or by another tool: nullable unions, formats, local $refs.
SELECT evolve.import_schema($${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "order",
  "type": "object",
  "required": ["id"],
  "properties": {
    "id": {"type": "string"},
    "placed at": {"type": ["string", "null"], "format": "date-time"},
    "total": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    "customer": {"$ref": "#/$defs/customer"},
    "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}}
  },
  "$defs": {
    "customer": {"type": "object", "properties": {"email": {"type": "string"}, "since": {"type": "string", "format": "date"}}},
    "line": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}
  }}$$);
SELECT jsonb_pretty(evolve.active_schema('order') - 'version');

-- Errors: an unknown format, a type without a schema, a remote $ref.
\set VERBOSITY terse
SELECT evolve.export_schema('earthquake', 'protobuf');
SELECT evolve.export_schema('nothing');
SELECT evolve.import_schema('{"title": "x", "type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}');
\set VERBOSITY default
