-- Proposals on the real USGS feed: detection, evidence, review, rollback, audit, diagram.
\set SHOW_CONTEXT never
\set VERBOSITY terse
\i sql/fresh_extension.psql

\i sql/usgs_feed.psql

SELECT evolve.register_schema($${"entity_type": "earthquake", "attributes": {
  "mag": {"type": "number"}, "place": {"type": "string"}, "depth": {"type": "number"}}}$$);
INSERT INTO evolve.inbox (entity_type, payload, entity_key, source)
SELECT 'earthquake', payload, id, payload->>'net' FROM feed;
SELECT entity_count FROM evolve.entity_counts WHERE entity_type = 'earthquake';

-- Every undeclared key of the feed is proposed: kind, priority, inferred type, presence.
SELECT kind, name, safe_name, priority, evidence->>'inferred_type' AS inferred_type,
       round((evidence->>'presence')::numeric, 3) AS presence,
       round((evidence->>'type_consistency')::numeric, 3) AS consistency,
       round((evidence->>'null_rate')::numeric, 3) AS null_rate, impact
FROM evolve.propose_schema('earthquake')
ORDER BY kind, name;

-- One proposal in full.
SELECT title, rationale, sql_preview, evidence->'histogram' AS histogram,
       jsonb_array_length(evidence->'sample_values') > 0 AS has_samples
FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig';

-- Running it again updates evidence instead of adding duplicates.
SELECT count(*) AS proposals_before FROM evolve.schema_proposals \gset
SELECT count(*) AS returned FROM evolve.propose_schema('earthquake');
SELECT count(*) - :proposals_before AS added FROM evolve.schema_proposals;

-- Only evolve_admin members review: a writer has no EXECUTE on approve_proposal, and the
-- function checks the caller itself even when EXECUTE is granted by mistake.
CREATE ROLE evolve_test_writer;
GRANT evolve_writer TO evolve_test_writer;
SET ROLE evolve_test_writer;
SELECT evolve.approve_proposal(id) FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION evolve.approve_proposal TO evolve_test_writer;
SET ROLE evolve_test_writer;
SELECT evolve.approve_proposal(id) FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE EXECUTE ON FUNCTION evolve.approve_proposal FROM evolve_test_writer;

-- Approve the attribute "sig": a new version, its fragments promoted, a history row.
SELECT action, success, executed_sql, rollback_sql
FROM evolve.approve_proposal((SELECT id FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig'),
                             'reviewer-1', 'significance is useful');
SELECT evolve.active_schema('earthquake')->'attributes'->'sig' AS sig, evolve.active_schema('earthquake')->'version' AS version;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments WHERE fragment_key = 'sig' GROUP BY 1;
SELECT count(*) AS snapshots_with_sig FROM evolve.entities WHERE snapshot ? 'sig';
SELECT status, reviewed_by, review_notes FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig';
-- Approving twice is refused.
SELECT evolve.approve_proposal(id) FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig';
\echo :LAST_ERROR_SQLSTATE

-- Roll it back: registry, fragments and snapshots as before.
SELECT action, success, details->'fragments_reactivated' AS fragments
FROM evolve.rollback_proposal((SELECT id FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig'));
SELECT evolve.active_schema('earthquake')->'attributes' ? 'sig' AS sig_declared;
SELECT lifecycle_state, count(*) FROM evolve.raw_fragments WHERE fragment_key = 'sig' GROUP BY 1;
SELECT count(*) AS snapshots_with_sig FROM evolve.entities WHERE snapshot ? 'sig';

-- Reject: not proposed again at the same evidence.
SELECT action, success FROM evolve.reject_proposal((SELECT id FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'gap'), 'reviewer-1', 'not needed');
SELECT count(*) AS gap_back FROM evolve.propose_schema('earthquake') WHERE name = 'gap' AND kind = 'attribute';

-- A temporal proposal: the attribute and its index.
SELECT action, success FROM evolve.approve_proposal((SELECT id FROM evolve.schema_proposals WHERE kind = 'temporal' AND name = 'time'));
SELECT evolve.active_schema('earthquake')->'attributes'->'time'->>'type' AS time_type;
SELECT indexname FROM pg_indexes WHERE schemaname = 'evolve' AND indexname LIKE 'earthquake_time%';
-- The table proposal: a typed projection, filled from the snapshots and kept current.
SELECT action, success FROM evolve.approve_proposal((SELECT id FROM evolve.schema_proposals WHERE kind = 'table'));
SELECT count(*) = (SELECT count(*) FROM evolve.entities WHERE entity_type = 'earthquake') AS filled FROM evolve_data.earthquake;
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'evolve_data' AND table_name = 'earthquake' ORDER BY ordinal_position;
SELECT kind, object_name, dropped_at IS NULL AS live FROM evolve.dynamic_tables ORDER BY id;

-- A type the inbox rejected is proposed and, with no name conflict, registered at once.
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
VALUES ('volcano', '{"name": "Etna", "Elevation (m)": 3357}', 'etna'),
       ('volcano', '{"name": "Fuji", "Elevation (m)": 3776}', 'fuji');
SELECT kind, name, status, action->'definition' AS definition FROM evolve.propose_schema('volcano');
SELECT entity_key, snapshot FROM evolve.entities WHERE entity_type = 'volcano' ORDER BY entity_key;
SELECT count(*) AS rejects_left FROM evolve.inbox_rejects;

-- An approval that would break the type's compatibility is refused and changes nothing: "felt"
-- was meanwhile declared boolean, and turning it into an integer breaks BACKWARD compatibility.
-- The approval checks again what it would write, whatever the evidence said when proposed.
SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"felt": {"type": "boolean"}}}');
SELECT evolve.active_schema('earthquake')->'version' AS version_before;
SELECT action FROM evolve.approve_proposal(
    (SELECT id FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'felt'));
\echo :LAST_ERROR_SQLSTATE
SELECT evolve.active_schema('earthquake')->'version' AS version_after,
       evolve.active_schema('earthquake')->'attributes'->'felt'->>'type' AS felt_type;
SELECT status FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'felt';

-- Every pending proposal carries its verdict, recomputed by each propose_schema run: what
-- approving it would do to the type's compatibility (as check_compatibility says it) and how
-- many entities it would re-embed (as analyze_impact says it). A sensor's "reading" was a string
-- in version 1 and was dropped; its values are numbers now, and declaring it a number breaks
-- BACKWARD_TRANSITIVE (version 1's strings do not read as numbers); "unit" is compatible.
SELECT evolve.register_schema('{"entity_type": "sensor", "attributes": {"reading": {"type": "string"}, "site": {"type": "string"}}}');
SELECT evolve.set_compatibility('sensor', 'BACKWARD_TRANSITIVE');
SELECT evolve.update_schema_incremental('sensor', '{"attributes": {"reading": null}}');
SELECT count(*) AS sensors FROM (
    SELECT evolve.ingest('sensor', jsonb_build_object('site', 's' || i, 'reading', i * 1.5, 'unit', 'kPa'),
                         entity_key => 's' || i) FROM generate_series(1, 6) i) s;
SELECT name, evidence->'compatibility' AS compatibility, evidence->'impact'->'entities' AS reembeds,
       evidence->'impact'->>'priority' AS priority
FROM evolve.propose_schema('sensor') WHERE kind = 'attribute' ORDER BY name;
-- Approving the incompatible one is refused as the change itself would be (55000)...
SELECT action FROM evolve.approve_proposal(
    (SELECT id FROM evolve.schema_proposals WHERE entity_type = 'sensor' AND kind = 'attribute' AND name = 'reading'));
\echo :LAST_ERROR_SQLSTATE
-- ... unless the reviewer forces it: applied, and its history row says it was forced, and why.
SELECT action, success, details->'forced' AS forced, details->'incompatibilities' AS incompatibilities
FROM evolve.approve_proposal(
    (SELECT id FROM evolve.schema_proposals WHERE entity_type = 'sensor' AND kind = 'attribute' AND name = 'reading'),
    force => true);
SELECT evolve.active_schema('sensor')->'attributes'->'reading'->>'type' AS reading_type;

-- Fields many users declare are proposed for the global schema.
SET evolve.promotion_min_users = 3;
SELECT evolve.register_schema(jsonb_build_object('entity_type', 'earthquake', 'attributes',
         jsonb_build_object('felt_reports', jsonb_build_object('type', 'integer'))), 'user-' || i)
FROM generate_series(1, 3) i;
SELECT kind, name, priority, impact FROM evolve.propose_schema('earthquake') WHERE kind = 'promote_to_global';

-- A rationale function rewrites rationales; a failing one leaves the built-in text.
CREATE FUNCTION public.shout(t text) RETURNS text LANGUAGE sql AS $$ SELECT 'REVIEWED: ' || split_part(t, E'\n', 1) $$;
SET evolve.rationale_function = 'public.shout';
SELECT left(rationale, 40) AS rationale FROM evolve.propose_schema('earthquake') WHERE kind = 'attribute' AND name = 'tz';
CREATE FUNCTION public.broken(t text) RETURNS text LANGUAGE sql AS $$ SELECT (1 / 0)::text $$;
SET evolve.rationale_function = 'public.broken';
SET client_min_messages = error;
SELECT left(rationale, 40) AS rationale FROM evolve.propose_schema('earthquake') WHERE kind = 'attribute' AND name = 'tz';
RESET client_min_messages;
RESET evolve.rationale_function;

SELECT kind, status, priority, proposals FROM evolve.proposal_stats ORDER BY kind, status, priority;
SELECT kind, inferred_type, accepted, rejected, rolled_back FROM evolve.knowledge_patterns
WHERE accepted + rejected + rolled_back > 0 ORDER BY kind, inferred_type;
SELECT proposal_id IS NOT NULL AS has_proposal, action, success FROM evolve.schema_evolution_history ORDER BY id;

SELECT evolve.schema_diagram();
SELECT evolve.schema_diagram('svg');
\echo :LAST_ERROR_SQLSTATE
DROP OWNED BY evolve_test_writer;
DROP ROLE evolve_test_writer;
DROP FUNCTION public.shout(text), public.broken(text);
