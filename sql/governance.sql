-- Registry governance: versions view, quotas, name conflicts, aliases.

CREATE VIEW evolve.schema_versions AS
SELECT entity_type, user_id, version, created_at, created_by, diff, definition
FROM evolve.schema_history;
COMMENT ON VIEW evolve.schema_versions IS
    'Every version of every schema with who made it, when, and its diff from the previous version.';

CREATE TABLE evolve.user_schema_quotas (
    user_id      text PRIMARY KEY,
    schema_count integer NOT NULL DEFAULT 0,
    max_schemas  integer NOT NULL DEFAULT 10,
    total_fields integer NOT NULL DEFAULT 0,
    max_fields   integer NOT NULL DEFAULT 200,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quota_counts_nonnegative CHECK (schema_count >= 0 AND total_fields >= 0),
    CONSTRAINT quota_limits_positive CHECK (max_schemas >= 0 AND max_fields >= 0),
    CONSTRAINT quota_schemas_within_limit CHECK (schema_count <= max_schemas),
    CONSTRAINT quota_fields_within_limit CHECK (total_fields <= max_fields)
);
COMMENT ON TABLE evolve.user_schema_quotas IS
    'Per-user limits on schemas and fields (attributes + relationships across all the user''s schemas); a WARNING at 80 %, an error at the limit. Change them with evolve.set_quota.';

CREATE TABLE evolve.entity_conflicts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('entity_type', 'attribute')),
    entity_type   text NOT NULL,
    user_id       text,
    new_name      text NOT NULL,
    existing_name text NOT NULL,
    score         double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'kept', 'merged')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolved_by   text
);
CREATE INDEX entity_conflicts_pending ON evolve.entity_conflicts (entity_type) WHERE status = 'pending';
COMMENT ON TABLE evolve.entity_conflicts IS
    'Near-duplicate names (normalized similarity at or above evolve.similarity_threshold) awaiting review with evolve.resolve_conflict(id, action => ''keep''|''merge'').';

CREATE TABLE evolve.entity_type_aliases (
    alias       text PRIMARY KEY,
    entity_type text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evolve.entity_type_aliases IS
    'Names merged into an existing entity type: active_schema(alias) returns the type''s schema.';
CREATE TRIGGER aliases_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evolve.entity_type_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION evolve._registry_changed();
