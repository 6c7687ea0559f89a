-- Ingestion on the real USGS feed: observations, raw fragments, snapshots, aggregates, lifecycle.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

\i sql/usgs_feed.psql
SELECT count(*) AS features FROM feed;

-- An initial schema with a handful of attributes; everything else in the feed is undeclared.
SELECT evolve.register_schema($${"entity_type": "earthquake", "attributes": {
  "mag": {"type": "number", "merge_policy": "max"}, "place": {"type": "string"},
  "time": {"type": "timestamp"}, "status": {"type": "string"}, "depth": {"type": "number"}}}$$);

-- The whole feed through the inbox: one statement, routed set-based by the statement trigger.
INSERT INTO evolve.inbox (entity_type, payload, entity_key, source)
SELECT 'earthquake', payload, id, payload->>'net' FROM feed;
SELECT (SELECT count(*) FROM evolve.inbox) AS left_in_inbox,
       (SELECT count(*) FROM evolve.entities) AS entities,
       (SELECT count(*) FROM evolve.observations) AS observations,
       (SELECT count(*) FROM evolve.raw_fragments) AS fragments;

-- Aggregates of the keys the schema does not declare.
SELECT fragment_key, sample_count, dominant_type, round(type_consistency::numeric, 3) AS consistency,
       round(1 - coalesce(type_counts->>'null', '0')::numeric / sample_count, 3) AS non_null_share, unique_sources
FROM evolve.raw_fragment_aggregates
WHERE fragment_key IN ('felt', 'cdi', 'mmi', 'alert', 'tsunami', 'sig', 'gap', 'magType', 'nst')
ORDER BY fragment_key;
SELECT count(*) AS aggregate_keys FROM evolve.raw_fragment_aggregates;
SELECT * FROM evolve.verify_aggregates();
SELECT round(evolve.field_confidence('earthquake', 'sig')::numeric, 3) AS sig_confidence,
       round(evolve.field_confidence('earthquake', 'mmi')::numeric, 3) AS mmi_confidence,
       evolve.field_confidence('earthquake', 'nothing') AS unknown;

-- A snapshot, and the same entity seen again: frequency counts sightings, max keeps the larger mag.
SELECT evolve.entity(entity_id) FROM evolve.entities WHERE entity_key = 'ci37868143';
SELECT evolve.ingest('earthquake', '{"mag": 1.1, "place": "revised place", "felt": 2}',
                     source => 'ci', entity_key => 'ci37868143') = entity_id AS same_entity
FROM evolve.entities WHERE entity_key = 'ci37868143';
SELECT evolve.entity(entity_id) FROM evolve.entities WHERE entity_key = 'ci37868143';
SELECT fragment_key, value, frequency FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id)
WHERE e.entity_key = 'ci37868143' AND fragment_key IN ('felt', 'sig') ORDER BY 1;

-- Incremental snapshots equal a full recompute, for every entity.
SELECT count(*) AS differing FROM evolve.entities WHERE snapshot <> evolve.refresh_snapshot(entity_id);

-- Merge policies.
SELECT evolve.register_schema($${"entity_type": "sensor", "attributes": {
  "hi": {"type": "number", "merge_policy": "max"}, "lo": {"type": "number", "merge_policy": "min"},
  "tags": {"type": "array", "merge_policy": "union"}, "name": {"type": "string"},
  "owner": {"type": "string", "merge_policy": "source_priority", "source_priority": ["registry", "field"]}}}$$);
SELECT evolve.ingest('sensor', '{"hi": 3, "lo": 3, "tags": ["a"], "name": "n1", "owner": "from field"}', source => 'field', entity_key => 's');
SELECT evolve.ingest('sensor', '{"hi": 9, "lo": 1, "tags": ["b", "a"], "owner": "from registry"}', source => 'registry', entity_key => 's');
SELECT evolve.ingest('sensor', '{"hi": 5, "lo": 2, "tags": ["c"], "name": "n2", "owner": "field again"}', source => 'field', entity_key => 's');
SELECT evolve.entity(entity_id) FROM evolve.entities WHERE entity_type = 'sensor';

-- Bad payloads: ingest() raises; the inbox sets bad rows aside with their SQLSTATE, the rest goes in.
SELECT evolve.ingest('earthquake', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.ingest('volcano', '{"a": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.ingest('earthquake', jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024)));
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.ingest('earthquake', (repeat('{"a":', 100) || '1' || repeat('}', 100))::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.ingest('earthquake', '{"mag": 1}', schema_version => 7);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO evolve.inbox (entity_type, payload, entity_key) VALUES
  ('earthquake', '{"mag": 4.2}', 'good-1'),
  ('earthquake', '"just a string"', 'bad-1'),
  ('volcano', '{"a": 1}', 'bad-2'),
  ('earthquake', jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024)), 'bad-3'),
  ('earthquake', '{"mag": 4.3}', 'good-2');
SELECT entity_key, sqlstate, error FROM evolve.inbox_rejects ORDER BY inbox_id;
SELECT count(*) AS good_rows_in FROM evolve.entities WHERE entity_key LIKE 'good-%';

-- Registering an attribute promotes its fragments (values of the declared type) into observations.
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"sig": {"type": "integer"}}}');
SELECT lifecycle_state, count(*), bool_and(expires_at > now() + interval '29 days') AS expires_in_30_days
FROM evolve.raw_fragments WHERE fragment_key = 'sig' GROUP BY 1;
SELECT evolve.entity(entity_id)->'sig' AS sig FROM evolve.entities WHERE entity_key = 'ci37868143';
SELECT * FROM evolve.verify_aggregates();
SELECT evolve.promote_fragments('earthquake', 'felt');
\echo :LAST_ERROR_SQLSTATE

-- Lifecycle: legal transitions pass, illegal ones are refused.
UPDATE evolve.raw_fragments SET lifecycle_state = 'archived'
WHERE fragment_id = (SELECT min(fragment_id) FROM evolve.raw_fragments WHERE fragment_key = 'sig');
\echo :LAST_ERROR_SQLSTATE
UPDATE evolve.raw_fragments SET lifecycle_state = 'pending_deletion'
WHERE fragment_id = (SELECT min(fragment_id) FROM evolve.raw_fragments WHERE fragment_key = 'sig');
UPDATE evolve.raw_fragments SET lifecycle_state = 'promoted'
WHERE fragment_id = (SELECT min(fragment_id) FROM evolve.raw_fragments WHERE fragment_key = 'sig');
\echo :LAST_ERROR_SQLSTATE

-- Cleanup deletes exactly the expired promoted / pending rows, in batches; never an active one.
UPDATE evolve.raw_fragments SET expires_at = now() - interval '1 second'
WHERE fragment_key = 'sig' AND entity_id % 2 = 0;
SELECT count(*) FILTER (WHERE expires_at <= now()) AS expired, count(*) FILTER (WHERE expires_at > now()) AS not_yet,
       (SELECT count(*) FROM evolve.raw_fragments WHERE lifecycle_state = 'active') AS active
FROM evolve.raw_fragments WHERE lifecycle_state IN ('promoted', 'pending_deletion');
SELECT evolve.cleanup_expired_fragments(batch_size => 500) AS deleted_first_batch;
SELECT evolve.cleanup_expired_fragments() AS deleted_rest;
SELECT evolve.cleanup_expired_fragments() AS nothing_left;
SELECT count(*) FILTER (WHERE expires_at <= now()) AS expired_left, count(*) FILTER (WHERE expires_at > now()) AS not_yet,
       (SELECT count(*) FROM evolve.raw_fragments WHERE lifecycle_state = 'active') AS active
FROM evolve.raw_fragments WHERE lifecycle_state IN ('promoted', 'pending_deletion');
SELECT * FROM evolve.verify_aggregates();

-- Archival of stale, rare fragments; a key seen again comes back.
UPDATE evolve.raw_fragments SET last_seen_at = now() - interval '100 days' WHERE fragment_key = 'mmi';
SELECT evolve.archive_stale_fragments() AS archived;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments WHERE fragment_key = 'mmi' GROUP BY 1;
SELECT evolve.ingest('earthquake', '{"mmi": 3.1}', entity_key => e.entity_key) > 0 AS seen_again
FROM evolve.entities e JOIN evolve.raw_fragments f USING (entity_id)
WHERE f.fragment_key = 'mmi' ORDER BY f.fragment_id LIMIT 1;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments WHERE fragment_key = 'mmi' GROUP BY 1 ORDER BY 1;
SELECT * FROM evolve.verify_aggregates();

-- pg_cron is not installed in this database: a clear error (55000). Its hint, which depends on
-- where pg_cron is, is checked by tests/ingest.rs: the statement to run in pg_cron's database,
-- or how to install pg_cron.
\set VERBOSITY sqlstate
SELECT * FROM evolve.schedule_maintenance();
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
