-- pg_evolve 0.8.0 -> 0.9.0: the keys of observations and raw fragments lead with entity_id, and
-- the embedding queue has no foreign key to entities. Run by ALTER EXTENSION pg_evolve UPDATE,
-- and the end of a fresh install too.
--
-- Every read of observations and fragments is by entity (snapshots, promotion, the cascade from
-- entities), so each needs one key, led by entity_id: ingestion writes one index entry less per
-- row, and a table distributed by entity keeps its keys (a key must include the distribution
-- column).

-- ---------------------------------------------------------------- observations
-- (entity_id, observation_id) was an index beside the key on observation_id alone; it becomes
-- the key. Observation ids still come from their sequence, in the order snapshots absorb them.
ALTER TABLE evolve.observations DROP CONSTRAINT observations_pkey;
DROP INDEX evolve.observations_entity;
ALTER TABLE evolve.observations ADD CONSTRAINT observations_pkey PRIMARY KEY (entity_id, observation_id);

-- ---------------------------------------------------------------- raw fragments
-- (entity_id, fragment_key) was unique beside the key on fragment_id; it becomes the key (under
-- its old name, which ingestion's upsert names). fragment_id still numbers the rows, from its
-- sequence, without an index of its own: rows are found by entity and key, or by key across
-- entities (raw_fragments_key).
ALTER TABLE evolve.raw_fragments DROP CONSTRAINT raw_fragments_pkey;
ALTER TABLE evolve.raw_fragments DROP CONSTRAINT raw_fragments_entity_key;
ALTER TABLE evolve.raw_fragments ADD CONSTRAINT raw_fragments_entity_key PRIMARY KEY (entity_id, fragment_key);
COMMENT ON COLUMN evolve.raw_fragments.fragment_id IS
    'Numbers the fragment rows (from a sequence; not indexed: the key is (entity_id, fragment_key)).';

-- ---------------------------------------------------------------- the embedding queue
-- The queue loses its foreign key to entities, as observations and fragments did in 0.8.0: its
-- writers queue entities they hold locked (ingestion, promotion, snapshot refresh) or lock them
-- for the purpose (a job's enqueue, FOR KEY SHARE), and the entities' cascade trigger deletes
-- the rows of deleted entities and empties the queue when entities is truncated. (Checking
-- the key cost a query and a trigger event per queued row.)
ALTER TABLE evolve.embedding_queue DROP CONSTRAINT embedding_queue_entity_id_fkey;
CREATE OR REPLACE FUNCTION evolve._entities_cascade() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE evolve.raw_fragments, evolve.observations, evolve.raw_fragment_aggregate_parts,
                 evolve.entity_count_parts, evolve.embedding_queue;
    ELSE
        DELETE FROM evolve.raw_fragments f USING old_rows o WHERE f.entity_id = o.entity_id;
        DELETE FROM evolve.observations x USING old_rows o WHERE x.entity_id = o.entity_id;
        DELETE FROM evolve.embedding_queue q USING old_rows o WHERE q.entity_id = o.entity_id;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION evolve._entities_cascade() IS
    'Trigger: deletes the observations, raw fragments and queue rows of deleted entities (and empties them when evolve.entities is truncated).';

-- ---------------------------------------------------------------- aggregate triggers
-- Ingestion adds the aggregate deltas of its own fragment writes (src/ingest.rs): the statement
-- triggers of its inserts and upserts are not called at all (they returned at once, after a
-- PL/pgSQL call per statement). Every other write still fires them.
DROP TRIGGER raw_fragments_aggregate_insert ON evolve.raw_fragments;
DROP TRIGGER raw_fragments_aggregate_update ON evolve.raw_fragments;
CREATE TRIGGER raw_fragments_aggregate_insert AFTER INSERT ON evolve.raw_fragments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    WHEN (NOT evolve._aggregates_by_caller()) EXECUTE FUNCTION evolve._fragments_aggregate();
CREATE TRIGGER raw_fragments_aggregate_update AFTER UPDATE ON evolve.raw_fragments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    WHEN (NOT evolve._aggregates_by_caller()) EXECUTE FUNCTION evolve._fragments_aggregate();
