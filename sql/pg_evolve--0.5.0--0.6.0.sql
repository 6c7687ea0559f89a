-- pg_evolve 0.5.0 -> 0.6.0: nested JSON by path. Run by ALTER EXTENSION pg_evolve UPDATE, and
-- the end of a fresh install too.
--
-- Fields below the top level of a payload are named by paths (`actor.login`,
-- `payload.commits[].sha`, `labels."app.kubernetes.io/name"`): observations, raw fragments and
-- their aggregates keep the path's text form where they kept the key (a one-segment path is the
-- key itself, so existing rows keep their meaning). Definitions declare nested attributes with
-- `properties` (objects) and `items` (arrays) in their jsonb documents: no DDL. Proposals gain
-- the array form of the path they are about.

ALTER TABLE evolve.schema_proposals ADD COLUMN path text[];
UPDATE evolve.schema_proposals SET path = ARRAY[name]
 WHERE kind IN ('attribute', 'relationship', 'temporal') AND path IS NULL;
COMMENT ON COLUMN evolve.schema_proposals.path IS
    'For attribute, relationship and temporal proposals: the path of the field in array form ({actor,login}; [] stands for the elements of an array); name holds its text form (actor.login).';

-- extract_entity: a nested object with an identity of its own (an id repeated across entities
-- with the same other values) is proposed as an entity type related to its parent.
ALTER TABLE evolve.schema_proposals DROP CONSTRAINT schema_proposals_kind_check;
ALTER TABLE evolve.schema_proposals ADD CONSTRAINT schema_proposals_kind_check
    CHECK (kind IN ('attribute', 'table', 'relationship', 'temporal', 'index', 'entity_type',
                    'promote_to_global', 'extract_entity'));

-- ---------------------------------------------------------------- schema interchange
-- src/interop.rs: a type's effective schema as JSON Schema 2020-12 or Avro, and a schema in
-- either registered through the registry pipeline.
CREATE OR REPLACE FUNCTION evolve."export_schema"(
	"entity_type" TEXT, /* Option < & str > */
	"format" TEXT DEFAULT 'jsonschema', /* Option < & str > */
	"user_id" TEXT DEFAULT NULL /* Option < String > */
) RETURNS jsonb /* JsonB */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'export_schema_wrapper';
REVOKE ALL ON FUNCTION evolve.export_schema(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.export_schema(text, text, text) TO evolve_reader;
COMMENT ON FUNCTION evolve.export_schema(text, text, text) IS
    'A type''s effective schema as JSON Schema 2020-12 (format jsonschema: nested properties and items, required, descriptions, defaults, x-evolve-* annotations) or as an Avro record schema (format avro: nullable unions, logical types, nested records).';

CREATE OR REPLACE FUNCTION evolve."import_schema"(
	"doc" jsonb, /* Json */
	"format" TEXT DEFAULT 'jsonschema', /* Option < & str > */
	"entity_type" TEXT DEFAULT NULL, /* Option < String > */
	"user_id" TEXT DEFAULT NULL /* Option < String > */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'import_schema_wrapper';
ALTER FUNCTION evolve.import_schema(jsonb, text, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION evolve.import_schema(jsonb, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.import_schema(jsonb, text, text, text) TO evolve_writer;
COMMENT ON FUNCTION evolve.import_schema(jsonb, text, text, text) IS
    'Registers a schema given as JSON Schema (format jsonschema) or Avro (format avro), as register_schema does; the entity type is the argument, else the document''s title or name. Returns the new version.';

-- ---------------------------------------------------------------- typed projections
-- src/projections.rs: evolve.create_projection(entity_type, user_id) makes evolve_data.<type>,
-- one typed column per declared leaf (nested objects flattened: properties.mag is
-- properties_mag), filled from the snapshots and kept current with them in the same
-- transaction; a new schema version adds, retypes or drops columns and refills them.
CREATE SCHEMA evolve_data;
GRANT USAGE ON SCHEMA evolve_data TO evolve_reader;
COMMENT ON SCHEMA evolve_data IS 'Typed projections of entity types (evolve.create_projection).';
CREATE TABLE evolve.projections (
    entity_type text NOT NULL,
    user_id     text,
    table_name  text NOT NULL UNIQUE,
    columns     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (entity_type, user_id)
);
COMMENT ON TABLE evolve.projections IS
    'The typed projections (evolve.create_projection): their table in schema evolve_data and its columns (path, name, type), kept current with the snapshots.';
GRANT SELECT ON evolve.projections TO evolve_reader;

CREATE OR REPLACE FUNCTION evolve."_create_projection"(
	"entity_type" TEXT, /* Option < & str > */
	"user_id" TEXT DEFAULT NULL /* Option < String > */
) RETURNS oid /* pgrx::pg_sys::Oid */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_projection_wrapper';
ALTER FUNCTION evolve._create_projection(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION evolve._create_projection(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._create_projection(text, text) TO evolve_admin;
CREATE FUNCTION evolve.create_projection(entity_type text, user_id text DEFAULT NULL)
RETURNS regclass LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT evolve._create_projection($1, $2)::regclass $$;
REVOKE ALL ON FUNCTION evolve.create_projection(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.create_projection(text, text) TO evolve_admin;
COMMENT ON FUNCTION evolve.create_projection(text, text) IS
    'Creates and fills evolve_data.<type> (a user''s scope: <type>__<user>_<hash>): entity_id, entity_key, user_id, updated_at and one typed column per declared attribute (string text, number numeric, integer bigint, boolean, timestamp timestamptz, date, objects/arrays/maps jsonb, nested objects flattened), kept current with the snapshots.';

CREATE OR REPLACE FUNCTION evolve."drop_projection"(
	"entity_type" TEXT, /* Option < & str > */
	"user_id" TEXT DEFAULT NULL /* Option < String > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_projection_wrapper';
ALTER FUNCTION evolve.drop_projection(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION evolve.drop_projection(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.drop_projection(text, text) TO evolve_admin;
COMMENT ON FUNCTION evolve.drop_projection(text, text) IS
    'Drops a type''s projection (its table and its record); false when there was none.';
