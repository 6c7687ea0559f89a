-- evolve.rebuild_aggregates(): the aggregates and entity counts recomputed from the data, for
-- when they drifted (rows removed where no trigger sees it, such as a DELETE FROM
-- evolve.entities on a distributed database, or a restore). verify_aggregates() tells.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

SELECT evolve.register_schema($${"entity_type": "earthquake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number"}}}$$);
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'earthquake', jsonb_build_object('mag', i, 'depth', i * 1.5, 'felt', CASE WHEN i % 2 = 0 THEN 'yes' END), 'q' || i
FROM generate_series(1, 20) i;
SELECT fragment_key, sample_count, frequency_total, type_counts, jsonb_array_length(sample_values) AS samples
FROM evolve.raw_fragment_aggregates ORDER BY 1;

-- Drift, made by hand: a part counting rows that are not there, and a count that is off.
UPDATE evolve.raw_fragment_aggregate_parts SET sample_count = sample_count + 5, frequency_total = frequency_total + 5
WHERE fragment_key = 'depth';
UPDATE evolve.entity_count_parts SET entity_count = entity_count + 3;
SELECT fragment_key, field, expected, actual FROM evolve.verify_aggregates() ORDER BY 1, 2;
SELECT entity_type, entity_count FROM evolve.entity_counts;

CALL evolve.rebuild_aggregates();
SELECT count(*) AS mismatches FROM evolve.verify_aggregates();
SELECT entity_type, entity_count FROM evolve.entity_counts;
-- The sample values (examples seen, not a recompute) are kept.
SELECT fragment_key, sample_count, frequency_total, type_counts, jsonb_array_length(sample_values) AS samples
FROM evolve.raw_fragment_aggregates ORDER BY 1;

-- Ingestion goes on adding to the rebuilt aggregates.
SELECT evolve.ingest('earthquake', '{"mag": 9, "depth": 3}', entity_key => 'q21') > 0 AS ingested;
SELECT count(*) AS mismatches FROM evolve.verify_aggregates();

-- Members of evolve_admin only; outside a transaction block (it commits between the two
-- tables, so that no transaction holds the locks of both) and at read committed (it must see
-- what writers commit while it waits for them).
CREATE ROLE rebuild_writer;
GRANT evolve_writer TO rebuild_writer;
SET ROLE rebuild_writer;
CALL evolve.rebuild_aggregates();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE rebuild_writer;
BEGIN ISOLATION LEVEL REPEATABLE READ;
CALL evolve.rebuild_aggregates();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
CALL evolve.rebuild_aggregates();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
