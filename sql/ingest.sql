-- Ingestion: entities, observations, raw fragments (with lifecycle), the inbox.

CREATE SEQUENCE evolve.entity_key_seq;
COMMENT ON SEQUENCE evolve.entity_key_seq IS 'Keys for entities ingested without an entity_key (''_'' || n).';

CREATE TABLE evolve.entities (
    entity_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type  text NOT NULL,
    user_id      text,
    entity_key   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    snapshot     jsonb NOT NULL DEFAULT '{}',
    snapshot_cells jsonb NOT NULL DEFAULT '{}',
    snapshot_schema_hash bigint NOT NULL DEFAULT 0,
    last_computed_observation_id bigint NOT NULL DEFAULT 0,
    CONSTRAINT entities_key UNIQUE NULLS NOT DISTINCT (entity_type, user_id, entity_key)
);
CREATE INDEX entities_type_key ON evolve.entities (entity_type, entity_key);
COMMENT ON TABLE evolve.entities IS
    'One row per (entity_type, user_id, entity_key), with its snapshot reduced from its observations.';
COMMENT ON COLUMN evolve.entities.snapshot_cells IS
    'Per attribute: the winning value, its source and observation id; what incremental reduction merges into.';
COMMENT ON COLUMN evolve.entities.snapshot_schema_hash IS
    'Hash of the effective schema the snapshot was reduced with; a different schema forces a full recompute.';

CREATE TABLE evolve.observations (
    observation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_id      bigint NOT NULL REFERENCES evolve.entities (entity_id) ON DELETE CASCADE,
    attribute      text NOT NULL,
    value          jsonb,
    source         text,
    observed_at    timestamptz NOT NULL DEFAULT now(),
    schema_version integer
);
CREATE INDEX observations_entity ON evolve.observations (entity_id, observation_id);
COMMENT ON TABLE evolve.observations IS 'Values of declared attributes, as ingested; snapshots are reduced from them.';

CREATE TABLE evolve.raw_fragments (
    fragment_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_id       bigint NOT NULL REFERENCES evolve.entities (entity_id) ON DELETE CASCADE,
    entity_type     text NOT NULL,
    user_id         text,
    fragment_key    text NOT NULL,
    value           jsonb,
    value_type      text NOT NULL,
    source          text,
    frequency       integer NOT NULL DEFAULT 1 CHECK (frequency >= 1),
    lifecycle_state text NOT NULL DEFAULT 'active'
                    CHECK (lifecycle_state IN ('active', 'promoted', 'archived', 'pending_deletion')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    promoted_at     timestamptz,
    archived_at     timestamptz,
    expires_at      timestamptz,
    CONSTRAINT raw_fragments_entity_key UNIQUE (entity_id, fragment_key)
);
CREATE INDEX raw_fragments_key ON evolve.raw_fragments (entity_type, fragment_key, user_id);
CREATE INDEX raw_fragments_expiry ON evolve.raw_fragments (expires_at)
    WHERE lifecycle_state IN ('promoted', 'pending_deletion');
CREATE INDEX raw_fragments_stale ON evolve.raw_fragments (last_seen_at) WHERE lifecycle_state = 'active';
COMMENT ON TABLE evolve.raw_fragments IS
    'Fields of ingested payloads that the active schema does not declare (or whose values do not fit the declared type): one row per entity and key, frequency counting sightings.';

-- Legal lifecycle transitions only (see docs: active → promoted | archived; promoted →
-- pending_deletion | active (rollback); archived → active | pending_deletion).
CREATE FUNCTION evolve._check_fragment_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lifecycle_state IS DISTINCT FROM OLD.lifecycle_state
       AND NOT evolve._fragment_transition_allowed(OLD.lifecycle_state, NEW.lifecycle_state) THEN
        RAISE EXCEPTION 'illegal raw fragment transition from % to %', OLD.lifecycle_state, NEW.lifecycle_state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('fragment %s (%s)', OLD.fragment_id, OLD.fragment_key),
                  HINT = 'Legal: active→promoted, active→archived, promoted→pending_deletion, promoted→active, archived→active, archived→pending_deletion.';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER raw_fragments_lifecycle BEFORE UPDATE OF lifecycle_state ON evolve.raw_fragments
    FOR EACH ROW EXECUTE FUNCTION evolve._check_fragment_transition();

-- The inbox: INSERT or COPY payloads here; a statement trigger routes each statement's rows in
-- one set-based pass and removes them. Unlogged: rows never outlive their transaction.
CREATE UNLOGGED TABLE evolve.inbox (
    inbox_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type    text NOT NULL,
    payload        jsonb NOT NULL,
    user_id        text,
    source         text,
    entity_key     text,
    schema_version integer,
    received_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evolve.inbox IS
    'Set-based ingestion: INSERT/COPY rows here; they are routed at the end of the statement (observations, raw fragments, snapshots) and removed. Bad rows go to evolve.inbox_rejects.';

CREATE TABLE evolve.inbox_rejects (
    inbox_id       bigint PRIMARY KEY,
    entity_type    text,
    payload        jsonb,
    user_id        text,
    source         text,
    entity_key     text,
    schema_version integer,
    sqlstate       text NOT NULL,
    error          text NOT NULL,
    rejected_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE evolve.inbox_rejects IS
    'Inbox rows that could not be ingested, with the SQLSTATE and message they would have raised. Nothing is dropped silently.';

CREATE FUNCTION evolve._route_inbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evolve._ingest_inbox(
        array_agg(inbox_id ORDER BY inbox_id), array_agg(entity_type ORDER BY inbox_id),
        array_agg(payload ORDER BY inbox_id), array_agg(user_id ORDER BY inbox_id),
        array_agg(source ORDER BY inbox_id), array_agg(entity_key ORDER BY inbox_id),
        array_agg(schema_version ORDER BY inbox_id))
    FROM new_rows;
    DELETE FROM evolve.inbox i USING new_rows n WHERE i.inbox_id = n.inbox_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER inbox_route AFTER INSERT ON evolve.inbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION evolve._route_inbox();
