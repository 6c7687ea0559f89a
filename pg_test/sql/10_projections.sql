-- Typed projections: a table per entity type with one typed column per declared attribute,
-- filled from the snapshots and kept current with them.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql
\i sql/usgs_features.psql
SET TimeZone = 'UTC';

SELECT evolve.register_schema($${"entity_type": "earthquake", "attributes": {
  "properties": {"type": "object", "properties": {
    "mag": {"type": "number", "merge_policy": "max"}, "place": {"type": "string"},
    "time": {"type": "timestamp"}, "tsunami": {"type": "integer"}}},
  "geometry": {"type": "object", "properties": {"coordinates": {"type": "array", "items": "number"}}}}}$$);
INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT 'earthquake', payload, id FROM features;

-- Created and filled: nested members flattened into typed columns.
SELECT evolve.create_projection('earthquake');
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'evolve_data' AND table_name = 'earthquake' ORDER BY ordinal_position;
SELECT count(*) = (SELECT count(*) FROM features) AS every_entity FROM evolve_data.earthquake;
SELECT entity_key, properties_mag, properties_place, properties_time, properties_tsunami, geometry_coordinates
FROM evolve_data.earthquake WHERE entity_key = 'ci37868143';
-- A plain typed query, with an index like any table's.
CREATE INDEX ON evolve_data.earthquake (properties_mag);
SELECT count(*) AS strong FROM evolve_data.earthquake WHERE properties_mag >= 4.5;
SELECT count(*) = (SELECT count(*) FROM features WHERE (payload->'properties'->>'mag')::numeric >= 4.5) AS same_as_the_feed
FROM evolve_data.earthquake WHERE properties_mag >= 4.5;

-- Kept current in the same transaction as the snapshot (max merge: the larger mag stays).
BEGIN;
SELECT evolve.ingest('earthquake', '{"properties": {"mag": 7.3, "place": "revised"}}', entity_key => 'ci37868143') > 0 AS ingested;
SELECT properties_mag, properties_place FROM evolve_data.earthquake WHERE entity_key = 'ci37868143';
ROLLBACK;
SELECT properties_mag, properties_place FROM evolve_data.earthquake WHERE entity_key = 'ci37868143';
SELECT evolve.ingest('earthquake', '{"properties": {"mag": 1.5, "place": "new one", "time": "2024-01-31T12:00:00Z"}}', entity_key => 'new-1') > 0 AS ingested;
SELECT entity_key, properties_mag, properties_place, properties_time FROM evolve_data.earthquake WHERE entity_key = 'new-1';

-- Exact numbers: a number column is numeric, every digit kept.
SELECT evolve.ingest('earthquake', '{"properties": {"mag": 0.1000000000000000000000000001}}', entity_key => 'exact') > 0 AS ingested;
SELECT properties_mag FROM evolve_data.earthquake WHERE entity_key = 'exact';

-- A new version adds its columns and fills them; a retyped attribute's column is replaced.
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"properties": {"properties": {"sig": {"type": "integer"}, "magType": {"type": "string"}}}}}');
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'evolve_data' AND table_name = 'earthquake' AND column_name IN ('properties_sig', 'properties_magtype') ORDER BY 1;
SELECT properties_sig, properties_magtype FROM evolve_data.earthquake WHERE entity_key = 'ci37868143';

-- Deleting an entity deletes its row.
DELETE FROM evolve.entities WHERE entity_key = 'new-1';
SELECT count(*) AS gone FROM evolve_data.earthquake WHERE entity_key = 'new-1';

-- Tenants see their own rows (and the global ones), never another tenant's.
SELECT evolve.ingest('earthquake', '{"properties": {"mag": 2.2}}', 'ana', entity_key => 'ana-1') > 0 AS ingested;
SELECT evolve.ingest('earthquake', '{"properties": {"mag": 3.3}}', 'bob', entity_key => 'bob-1') > 0 AS ingested;
CREATE ROLE projection_reader_ana;
GRANT evolve_reader TO projection_reader_ana;
SELECT evolve.bind_tenant('projection_reader_ana', 'ana');
SET ROLE projection_reader_ana;
SELECT user_id, count(*) FROM evolve_data.earthquake GROUP BY user_id ORDER BY user_id;
RESET ROLE;
SELECT user_id, count(*) FROM evolve_data.earthquake GROUP BY user_id ORDER BY user_id;

-- Errors, then drop.
\set VERBOSITY terse
SELECT evolve.create_projection('nothing');
\set VERBOSITY default
SELECT evolve.drop_projection('earthquake'), evolve.drop_projection('earthquake');
SELECT to_regclass('evolve_data.earthquake') IS NULL AS dropped;
DROP ROLE projection_reader_ana;
