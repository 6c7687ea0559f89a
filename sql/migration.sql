-- Conflict-driven migration: registered steps between versions of an entity type's global schema.

CREATE TABLE evolve.migrations (
    entity_type  text NOT NULL,
    from_version integer NOT NULL CHECK (from_version >= 1),
    to_version   integer NOT NULL CHECK (to_version >= 1),
    steps        jsonb NOT NULL,
    derived      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL DEFAULT current_user,
    PRIMARY KEY (entity_type, from_version, to_version),
    CHECK (from_version <> to_version)
);
COMMENT ON TABLE evolve.migrations IS
    'Migration steps between two versions of an entity type''s global schema. Derived edges (v → v+1, from aliases, widened types and defaults) are created with each new version; evolve.register_migration adds or replaces edges.';

CREATE VIEW evolve.migration_paths AS
SELECT entity_type, from_version, to_version, jsonb_array_length(steps) AS step_count, derived, steps,
       created_at, created_by
FROM evolve.migrations;
COMMENT ON VIEW evolve.migration_paths IS 'The version graph payloads are migrated along (shortest path).';

CREATE TABLE evolve.migration_failures (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type  text NOT NULL,
    user_id      text,
    entity_key   text,
    payload      jsonb NOT NULL,
    from_version integer,
    to_version   integer,
    failing_step integer,
    step         jsonb,
    error        text NOT NULL,
    sqlstate     text,
    strategy     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evolve.migration_failures IS
    'Payloads whose migration (or type coercion) failed, with the failing step and error; what happened next depends on evolve.migration_strategy.';
