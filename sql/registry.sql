-- The schema registry: one head row per (entity_type, user scope), every version kept.

CREATE TABLE evolve.schemas (
    schema_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type     text NOT NULL,
    user_id         text,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'inactive', 'pending_review')),
    current_version integer NOT NULL CHECK (current_version >= 0),
    definition      jsonb NOT NULL,
    compatibility   text NOT NULL DEFAULT 'BACKWARD',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schemas_scope_key UNIQUE NULLS NOT DISTINCT (entity_type, user_id)
);
COMMENT ON TABLE evolve.schemas IS
    'Head of each schema scope: the global schema of an entity type (user_id NULL) or a user''s extension of it, with its current definition.';
COMMENT ON COLUMN evolve.schemas.user_id IS 'NULL for the global schema; otherwise the user whose extension this is.';
COMMENT ON COLUMN evolve.schemas.current_version IS 'Latest version in evolve.schema_history (0 only inside the creating transaction).';

CREATE TABLE evolve.schema_history (
    schema_id   bigint NOT NULL REFERENCES evolve.schemas (schema_id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version >= 1),
    entity_type text NOT NULL,
    user_id     text,
    definition  jsonb NOT NULL,
    diff        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by  text NOT NULL DEFAULT current_user,
    PRIMARY KEY (schema_id, version)
);
CREATE INDEX schema_history_time ON evolve.schema_history (entity_type, created_at);
COMMENT ON TABLE evolve.schema_history IS
    'Every version of every schema scope, immutable, with its diff from the previous version.';

-- Versions are immutable: only a cascade from deleting the head may remove them.
CREATE FUNCTION evolve._refuse_history_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'schema versions are immutable'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Register a new version with evolve.register_schema or evolve.update_schema_incremental.';
END
$$;
CREATE TRIGGER schema_history_immutable BEFORE UPDATE ON evolve.schema_history
    FOR EACH ROW EXECUTE FUNCTION evolve._refuse_history_update();
