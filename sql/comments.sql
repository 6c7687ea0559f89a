-- Descriptions of the functions defined in Rust (the SQL files comment their own objects).
COMMENT ON FUNCTION evolve.register_schema(jsonb, text) IS
    'Registers (or updates) an entity type''s schema; global when user_id is NULL, else a user''s extension of the global schema. Returns the new version.';
COMMENT ON FUNCTION evolve.update_schema_incremental(text, jsonb, text) IS
    'Applies a JSON merge patch (objects merge, null removes) to a schema and registers the result as a new version. A user may not remove a global field.';
COMMENT ON FUNCTION evolve.activate_schema(text, text) IS 'Makes a deactivated schema active again; false when it already was.';
COMMENT ON FUNCTION evolve.deactivate_schema(text, text) IS 'Deactivates a schema (a user scope falls back to the global schema); its versions are kept. False when it already was inactive.';
COMMENT ON FUNCTION evolve.active_schema(text, text) IS 'The effective schema of a type (global merged with the user''s extension), served from the backend-local cache.';
COMMENT ON FUNCTION evolve.cache_stats() IS 'This backend''s schema cache: hits, misses, entries, invalidations.';
COMMENT ON FUNCTION evolve.check_compatibility(jsonb, text) IS 'Dry run: whether a definition would be accepted under its type''s compatibility mode, with every reason when not.';
COMMENT ON FUNCTION evolve.set_compatibility(text, text) IS 'Sets a type''s compatibility mode: NONE, BACKWARD, FORWARD, FULL or their _TRANSITIVE forms.';
COMMENT ON FUNCTION evolve.set_quota(text, integer, integer) IS 'Sets how many schemas and fields a user may hold.';
COMMENT ON FUNCTION evolve.resolve_conflict(bigint, text) IS 'Resolves a flagged name conflict: keep (both stay) or merge (the new name becomes an alias of the existing one).';
COMMENT ON FUNCTION evolve.schema_at(text, timestamp with time zone, text) IS 'Time travel: the schema of a type as it was at a moment.';
COMMENT ON FUNCTION evolve.schema_diff(text, integer, integer, text) IS 'What changed between two versions of a schema.';
COMMENT ON FUNCTION evolve.ingest(text, jsonb, text, text, text, integer) IS
    'Ingests one payload: declared fields become observations, others raw fragments; payloads of older versions are migrated first. Returns the entity id.';
COMMENT ON FUNCTION evolve.entity(bigint) IS 'An entity''s snapshot: its attributes'' values reduced with their merge policies.';
COMMENT ON FUNCTION evolve.refresh_snapshot(bigint) IS 'Recomputes an entity''s snapshot from all its observations and returns it.';
COMMENT ON FUNCTION evolve.field_confidence(text, text, text) IS 'Confidence (0–1) that an undeclared key is a real field of the type, from its aggregate.';
COMMENT ON FUNCTION evolve.promote_fragments(text, text, text) IS 'Turns the active fragments of a declared key into observations and marks them promoted.';
COMMENT ON FUNCTION evolve.cleanup_expired_fragments(integer) IS 'Deletes expired promoted and pending-deletion fragments, at most batch_size per call; returns how many.';
COMMENT ON FUNCTION evolve.archive_stale_fragments(interval, integer) IS 'Archives active fragments not seen for inactive_for and seen fewer than min_frequency times; returns how many.';
COMMENT ON FUNCTION evolve.register_migration(text, integer, integer, jsonb) IS 'Registers the steps upgrading payloads of a type from one version to another.';
COMMENT ON FUNCTION evolve.migrate_payload(text, jsonb, integer, integer) IS 'Upgrades a payload between two versions through the shortest path of registered migrations.';
COMMENT ON FUNCTION evolve.analyze_impact(jsonb) IS 'Dry run of a schema change: entities affected, priority, estimated seconds, sample ids.';
COMMENT ON FUNCTION evolve.apply_change(jsonb) IS 'Applies a schema change (a new version) and queues the affected entities for re-embedding in one job; returns the job id.';
COMMENT ON FUNCTION evolve.enriched_text(bigint) IS 'The text an entity is embedded from: its snapshot with the semantic descriptions of its type, attributes and relationships.';
COMMENT ON FUNCTION evolve.retry_failed(bigint) IS 'Queues a job''s parked entities again (attempts reset); returns how many.';
COMMENT ON FUNCTION evolve.semantic_search(text, text, integer) IS 'The k entities of a type nearest to a query text by cosine distance of their embeddings in the type''s current generation (returned as generation): a type being re-embedded whole is answered from its complete current generation until the new one replaces it in one commit.';
COMMENT ON FUNCTION evolve.schedule_maintenance() IS 'Schedules the pg_cron jobs: fragment cleanup, archival, folding of aggregate parts, and re-embedding when no worker runs.';
COMMENT ON FUNCTION evolve.schema_diagram(text, text) IS 'The active schema as a Mermaid erDiagram (types, typed attributes, relationships).';
