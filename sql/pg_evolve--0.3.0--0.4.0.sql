-- pg_evolve 0.3.0 → 0.4.0: ingest at production speed and under concurrency.
--
-- As with the earlier versions, this one file is both the upgrade script (ALTER EXTENSION
-- pg_evolve UPDATE) and the last part of a fresh 0.4.0 install, so the two cannot drift
-- (tests/upgrade.rs compares their catalogs).

-- ---------------------------------------------------------------- aggregates without a hot row
-- Writers used to upsert one row per (entity_type, user_id, fragment_key): every writer seeing
-- the same undeclared key queued on it. Now each backend adds its statements' deltas to its own
-- part, keyed by its backend slot (unique among running backends), so no two writers ever wait
-- on one aggregate row; the parts are summed at read (the view evolve.raw_fragment_aggregates,
-- unchanged in name and columns) and folded together by evolve.fold_aggregates().
CREATE OR REPLACE FUNCTION evolve._backend_slot() RETURNS integer
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c AS 'MODULE_PATHNAME', 'backend_slot_wrapper';

CREATE TABLE evolve.raw_fragment_aggregate_parts (
    entity_type      text NOT NULL,
    user_id          text,
    fragment_key     text NOT NULL,
    slot             integer NOT NULL,
    sample_count     bigint NOT NULL,
    frequency_total  bigint NOT NULL,
    type_counts      jsonb NOT NULL DEFAULT '{}',
    source_counts    jsonb NOT NULL DEFAULT '{}',
    last_seen_at     timestamptz,
    sample_values    jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT raw_fragment_aggregate_parts_key UNIQUE NULLS NOT DISTINCT (entity_type, user_id, fragment_key, slot)
);
COMMENT ON TABLE evolve.raw_fragment_aggregate_parts IS
    'Partial sums of evolve.raw_fragment_aggregates: one row per key and backend slot that wrote it (signed: a delete adds negative counts). Summed at read; evolve.fold_aggregates() merges them.';
INSERT INTO evolve.raw_fragment_aggregate_parts
    (entity_type, user_id, fragment_key, slot, sample_count, frequency_total, type_counts,
     source_counts, last_seen_at, sample_values)
SELECT entity_type, user_id, fragment_key, 0, sample_count, frequency_total, type_counts,
       source_counts, last_seen_at, sample_values
FROM evolve.raw_fragment_aggregates;
DROP TABLE evolve.raw_fragment_aggregates;

-- The state function of _sum_samples (not STRICT: NULL parts add nothing).
CREATE FUNCTION evolve._add_samples(samples jsonb, more jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT evolve._merge_samples(samples, pg_catalog.jsonb_build_array(more)) $$;
CREATE AGGREGATE evolve._sum_counts(jsonb) (sfunc = evolve._add_counts, stype = jsonb, initcond = '{}');
CREATE AGGREGATE evolve._sum_samples(jsonb) (sfunc = evolve._add_samples, stype = jsonb, initcond = '[]');

CREATE VIEW evolve.raw_fragment_aggregates WITH (security_invoker = true) AS
SELECT entity_type, fragment_key, user_id, sample_count, frequency_total, type_counts, source_counts,
       evolve._dominant_type(type_counts) AS dominant_type,
       evolve._type_consistency(type_counts) AS type_consistency,
       evolve._count_keys(source_counts) AS unique_sources,
       last_seen_at, sample_values
FROM (SELECT entity_type, fragment_key, user_id,
             sum(sample_count)::bigint AS sample_count, sum(frequency_total)::bigint AS frequency_total,
             evolve._sum_counts(type_counts) AS type_counts, evolve._sum_counts(source_counts) AS source_counts,
             max(last_seen_at) AS last_seen_at, evolve._sum_samples(sample_values) AS sample_values
      FROM evolve.raw_fragment_aggregate_parts
      GROUP BY entity_type, fragment_key, user_id) p;
COMMENT ON VIEW evolve.raw_fragment_aggregates IS
    'Per (entity_type, user_id, fragment_key): fragment rows (sample_count), sightings (frequency_total), value types and sources as count maps, the inferred dominant type and its consistency, last sighting, up to 10 sample values seen. Sums evolve.raw_fragment_aggregate_parts (kept by ingestion and by statement triggers); evolve.verify_aggregates() proves it equals a recompute.';
COMMENT ON COLUMN evolve.raw_fragment_aggregates.sample_values IS
    'Up to 10 distinct non-null values seen for the key (examples: not removed when fragments are).';

-- The latest sighting of a key is read back through this index when a row that may have held it
-- goes away.
DROP INDEX evolve.raw_fragments_key;
CREATE INDEX raw_fragments_key ON evolve.raw_fragments (entity_type, fragment_key, user_id, last_seen_at);

-- Lock order of the parts, everywhere: (entity_type, user_id NULLS FIRST, fragment_key) in
-- byte order ("C"), then slot. Writers lock only their own slot's parts, in that order, through
-- _add_parts; a statement that removes rows (or moves a sighting back) locks every slot's parts
-- of all the keys it changes in one pass, in that order, before it adds its own deltas: no two
-- statements can wait on each other's parts.
-- (PL/pgSQL throughout: a statement is planned once per session; a SQL function's would be at
-- each call.)

-- Adds per-key deltas to this backend's parts: the one place parts are written (ingestion, the
-- triggers and folding all call it).
CREATE FUNCTION evolve._add_parts(
    entity_types text[], user_ids text[], fragment_keys text[], sample_counts bigint[],
    frequency_totals bigint[], type_counts jsonb[], source_counts jsonb[], sightings timestamptz[],
    samples jsonb[]) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    INSERT INTO evolve.raw_fragment_aggregate_parts AS a
        (entity_type, user_id, fragment_key, slot, sample_count, frequency_total, type_counts,
         source_counts, last_seen_at, sample_values)
    SELECT t, u, k, evolve._backend_slot(), n, f, tc, sc, seen, sv
    FROM unnest(entity_types, user_ids, fragment_keys, sample_counts, frequency_totals, type_counts,
                source_counts, sightings, samples) AS x(t, u, k, n, f, tc, sc, seen, sv)
    ORDER BY t COLLATE "C", u COLLATE "C" NULLS FIRST, k COLLATE "C"
    ON CONFLICT ON CONSTRAINT raw_fragment_aggregate_parts_key DO UPDATE SET
        sample_count = a.sample_count + EXCLUDED.sample_count,
        frequency_total = a.frequency_total + EXCLUDED.frequency_total,
        type_counts = evolve._add_counts(a.type_counts, EXCLUDED.type_counts),
        source_counts = evolve._add_counts(a.source_counts, EXCLUDED.source_counts),
        last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
        sample_values = evolve._merge_samples(a.sample_values, jsonb_build_array(EXCLUDED.sample_values));
END
$$;

-- Folds signed fragment rows (+1 written, -1 removed) into per-key deltas and adds them.
CREATE FUNCTION evolve._add_fragment_deltas(
    entity_types text[], user_ids text[], fragment_keys text[], value_types text[], sources text[],
    signs integer[], frequencies bigint[], sightings timestamptz[], sample_vals jsonb[]) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM evolve._add_parts(array_agg(entity_type), array_agg(user_id), array_agg(fragment_key),
                              array_agg(n), array_agg(f), array_agg(tc), array_agg(sc), array_agg(seen), array_agg(sv))
    FROM (WITH d AS (
              SELECT * FROM unnest(entity_types, user_ids, fragment_keys, value_types, sources, signs,
                                   frequencies, sightings, sample_vals)
                     AS d(entity_type, user_id, fragment_key, value_type, source, sign, frequency, last_seen_at, value)),
          g AS (
              SELECT entity_type, user_id, fragment_key, value_type, source,
                     sum(sign) AS n, sum(sign * frequency) AS f,
                     max(last_seen_at) FILTER (WHERE sign > 0) AS seen,
                     (array_agg(value) FILTER (WHERE sign > 0 AND jsonb_typeof(value) <> 'null'))[1:10] AS vals
              FROM d GROUP BY 1, 2, 3, 4, 5)
          SELECT entity_type, user_id, fragment_key, sum(n)::bigint AS n, sum(f)::bigint AS f,
                 evolve._count_object(array_agg(value_type), array_agg(n)) AS tc,
                 evolve._count_object(array_agg(source), array_agg(n)) AS sc,
                 max(seen) AS seen,
                 evolve._merge_samples('[]', coalesce(jsonb_agg(to_jsonb(vals)) FILTER (WHERE vals IS NOT NULL), '[]')) AS sv
          FROM g GROUP BY 1, 2, 3) k;
END
$$;

-- Locks every slot's parts of the given keys, in the lock order above.
CREATE FUNCTION evolve._lock_fragment_keys(entity_types text[], user_ids text[], fragment_keys text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM FROM evolve.raw_fragment_aggregate_parts a
    JOIN (SELECT DISTINCT * FROM unnest(entity_types, user_ids, fragment_keys)) k(t, u, f)
      ON a.entity_type = k.t AND a.fragment_key = k.f AND a.user_id IS NOT DISTINCT FROM k.u
    ORDER BY a.entity_type COLLATE "C", a.user_id COLLATE "C" NULLS FIRST, a.fragment_key COLLATE "C", a.slot
    FOR UPDATE OF a;
END
$$;

-- Keys that lost a row (or whose latest sighting moved back): their last sighting is read again
-- from raw_fragments (indexed), and a key with no rows left loses its parts (all locked
-- beforehand by _lock_fragment_keys).
CREATE FUNCTION evolve._settle_fragment_keys(entity_types text[], user_ids text[], fragment_keys text[])
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    WITH k AS (SELECT DISTINCT * FROM unnest(entity_types, user_ids, fragment_keys) k(t, u, f)),
    latest AS (
        SELECT t, u, f,
               CASE WHEN u IS NULL
                    THEN (SELECT max(r.last_seen_at) FROM evolve.raw_fragments r
                          WHERE r.entity_type = k.t AND r.fragment_key = k.f AND r.user_id IS NULL)
                    ELSE (SELECT max(r.last_seen_at) FROM evolve.raw_fragments r
                          WHERE r.entity_type = k.t AND r.fragment_key = k.f AND r.user_id = k.u)
               END AS seen
        FROM k),
    gone AS (
        DELETE FROM evolve.raw_fragment_aggregate_parts a USING latest l
        WHERE a.entity_type = l.t AND a.fragment_key = l.f AND a.user_id IS NOT DISTINCT FROM l.u
          AND l.seen IS NULL)
    UPDATE evolve.raw_fragment_aggregate_parts a SET last_seen_at = l.seen
    FROM latest l
    WHERE a.entity_type = l.t AND a.fragment_key = l.f AND a.user_id IS NOT DISTINCT FROM l.u
      AND l.seen IS NOT NULL AND a.last_seen_at > l.seen;
END
$$;

-- The statement triggers turn transition tables into deltas for every other statement
-- (lifecycle, deletes, cascades, an administrator's DML); static SQL, so each runs a kept plan. An UPDATE counts only the rows whose aggregated columns changed (a
-- lifecycle change moves nothing).
CREATE OR REPLACE FUNCTION evolve._aggregates_by_caller() RETURNS boolean
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c AS 'MODULE_PATHNAME', 'aggregates_by_caller_wrapper';

CREATE OR REPLACE FUNCTION evolve._fragments_aggregate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    -- The statement's signed rows, column by column.
    types text[]; users text[]; fkeys text[]; vtypes text[]; srcs text[]; signs integer[];
    freqs bigint[]; seens timestamptz[]; vals jsonb[];
    -- The keys whose last sighting must be read again (they lost a row, or it moved back).
    stypes text[]; susers text[]; skeys text[];
BEGIN
    -- Ingestion adds the deltas of its own fragment upserts (src/ingest.rs).
    IF evolve._aggregates_by_caller() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(entity_type), array_agg(user_id), array_agg(fragment_key), array_agg(value_type),
               array_agg(source), array_agg(1), array_agg(frequency), array_agg(last_seen_at), array_agg(value)
        INTO types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals
        FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(entity_type), array_agg(user_id), array_agg(fragment_key), array_agg(value_type),
               array_agg(source), array_agg(-1), array_agg(frequency), array_agg(last_seen_at), array_agg(value)
        INTO types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals
        FROM old_rows;
        stypes := types; susers := users; skeys := fkeys;
    ELSE
        -- Only rows whose aggregated columns changed count, each as it left and as it came back
        -- (a lifecycle change moves nothing).
        SELECT array_agg(d.t), array_agg(d.u), array_agg(d.k), array_agg(d.vt), array_agg(d.src),
               array_agg(d.sign), array_agg(d.freq), array_agg(d.seen), array_agg(d.val)
        INTO types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals
        FROM new_rows n JOIN old_rows o USING (fragment_id)
        CROSS JOIN LATERAL (VALUES
            (o.entity_type, o.user_id, o.fragment_key, o.value_type, o.source, -1, o.frequency, o.last_seen_at, o.value),
            (n.entity_type, n.user_id, n.fragment_key, n.value_type, n.source, 1, n.frequency, n.last_seen_at, n.value))
            AS d(t, u, k, vt, src, sign, freq, seen, val)
        WHERE (n.entity_type, n.user_id, n.fragment_key, n.value_type, n.source, n.frequency, n.last_seen_at, n.value)
              IS DISTINCT FROM
              (o.entity_type, o.user_id, o.fragment_key, o.value_type, o.source, o.frequency, o.last_seen_at, o.value);
        SELECT array_agg(o.entity_type), array_agg(o.user_id), array_agg(o.fragment_key)
        INTO stypes, susers, skeys
        FROM new_rows n JOIN old_rows o USING (fragment_id)
        WHERE (n.entity_type, n.user_id, n.fragment_key) IS DISTINCT FROM (o.entity_type, o.user_id, o.fragment_key)
           OR n.last_seen_at < o.last_seen_at;
    END IF;
    -- A statement that settles keys touches other backends' parts: it first locks every part of
    -- every key it changes, in one sorted pass, so that adding its own deltas afterwards waits
    -- on nothing a statement doing the same could hold.
    IF skeys IS NOT NULL THEN
        PERFORM evolve._lock_fragment_keys(types, users, fkeys);
    END IF;
    IF fkeys IS NOT NULL THEN
        PERFORM evolve._add_fragment_deltas(types, users, fkeys, vtypes, srcs, signs, freqs, seens, vals);
    END IF;
    IF skeys IS NOT NULL THEN
        PERFORM evolve._settle_fragment_keys(stypes, susers, skeys);
    END IF;
    RETURN NULL;
END
$fn$;

-- One payload per call: the same few statements every time, so their kept plans stay generic
-- (planned once per session) instead of being planned again at every call whenever the
-- custom-plan heuristic prefers it (a tenth of the call).
ALTER FUNCTION evolve.ingest(text, jsonb, text, text, text, integer) SET plan_cache_mode = force_generic_plan;

-- ---------------------------------------------------------------- entity counts, the same way
CREATE TABLE evolve.entity_count_parts (
    entity_type  text NOT NULL,
    user_id      text,
    slot         integer NOT NULL,
    entity_count bigint NOT NULL,
    CONSTRAINT entity_count_parts_key UNIQUE NULLS NOT DISTINCT (entity_type, user_id, slot)
);
COMMENT ON TABLE evolve.entity_count_parts IS
    'Partial entity counts of evolve.entity_counts, one row per type, user scope and backend slot that wrote it (signed). Summed at read.';
INSERT INTO evolve.entity_count_parts (entity_type, user_id, slot, entity_count)
SELECT entity_type, user_id, 0, entity_count FROM evolve.entity_counts;
DROP TABLE evolve.entity_counts;
CREATE VIEW evolve.entity_counts WITH (security_invoker = true) AS
SELECT entity_type, user_id, sum(entity_count)::bigint AS entity_count
FROM evolve.entity_count_parts GROUP BY entity_type, user_id;
COMMENT ON VIEW evolve.entity_counts IS
    'Entities per type and user scope: sums the parts kept by statement triggers on evolve.entities.';

-- Adds per-scope entity-count deltas to this backend's parts, in the lock order of the
-- fragment parts (the triggers and folding call it).
CREATE FUNCTION evolve._add_count_parts(entity_types text[], user_ids text[], counts bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    INSERT INTO evolve.entity_count_parts AS c (entity_type, user_id, slot, entity_count)
    SELECT t, u, evolve._backend_slot(), n FROM unnest(entity_types, user_ids, counts) AS x(t, u, n)
    ORDER BY t COLLATE "C", u COLLATE "C" NULLS FIRST
    ON CONFLICT ON CONSTRAINT entity_count_parts_key DO UPDATE SET entity_count = c.entity_count + EXCLUDED.entity_count;
END
$$;

CREATE OR REPLACE FUNCTION evolve._count_entities() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM evolve._add_count_parts(array_agg(entity_type), array_agg(user_id), array_agg(n))
        FROM (SELECT entity_type, user_id, count(*) AS n FROM new_rows GROUP BY 1, 2) d;
    ELSE
        PERFORM evolve._add_count_parts(array_agg(entity_type), array_agg(user_id), array_agg(-n))
        FROM (SELECT entity_type, user_id, count(*) AS n FROM old_rows GROUP BY 1, 2) d;
    END IF;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------- folding the parts
-- evolve.fold_aggregates() (src/fragments.rs) merges every key's parts into its caller's.
CREATE OR REPLACE FUNCTION evolve.fold_aggregates() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'fold_aggregates_wrapper';
ALTER FUNCTION evolve.fold_aggregates() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION evolve.schedule_maintenance() IS 'Schedules the pg_cron jobs: fragment cleanup, archival, folding of aggregate parts, and re-embedding when no worker runs.';
COMMENT ON FUNCTION evolve.fold_aggregates() IS
    'Merges the per-backend parts of evolve.raw_fragment_aggregates and evolve.entity_counts (members of evolve_admin only); parts a writer holds are left for the next run. Returns the number of parts merged away. Scheduled by evolve.schedule_maintenance().';

-- ---------------------------------------------------------------- the inbox in bounded chunks
-- A statement's rows are routed in chunks of evolve.inbox_batch_size, so a COPY of millions of
-- payloads holds one chunk in memory at a time (the transition table itself spills to disk).
CREATE OR REPLACE FUNCTION evolve._route_inbox() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    chunk constant integer := greatest(coalesce(pg_catalog.current_setting('evolve.inbox_batch_size', true)::integer, 5000), 1);
    r record;
    n integer := 0;
    ids bigint[] := '{}';
    types text[] := '{}';
    payloads text[] := '{}';
    users text[] := '{}';
    sources text[] := '{}';
    keys text[] := '{}';
    versions integer[] := '{}';
BEGIN
    FOR r IN SELECT inbox_id, entity_type, payload::text AS payload, user_id, source, entity_key, schema_version
             FROM new_rows LOOP
        n := n + 1;
        ids[n] := r.inbox_id;
        types[n] := r.entity_type;
        payloads[n] := r.payload;
        users[n] := r.user_id;
        sources[n] := r.source;
        keys[n] := r.entity_key;
        versions[n] := r.schema_version;
        IF n = chunk THEN
            PERFORM evolve._ingest_inbox(ids, types, payloads, users, sources, keys, versions);
            n := 0;
            ids := '{}'; types := '{}'; payloads := '{}'; users := '{}'; sources := '{}'; keys := '{}'; versions := '{}';
        END IF;
    END LOOP;
    IF n > 0 THEN
        PERFORM evolve._ingest_inbox(ids, types, payloads, users, sources, keys, versions);
    END IF;
    DELETE FROM evolve.inbox i USING new_rows n WHERE i.inbox_id = n.inbox_id;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------- privileges and isolation
-- Parts follow their scope like the tables they replace; the views read with the privileges
-- and policies of whoever queries them.
ALTER TABLE evolve.raw_fragment_aggregate_parts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.raw_fragment_aggregate_parts USING (evolve._visible(user_id));
ALTER TABLE evolve.entity_count_parts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON evolve.entity_count_parts USING (evolve._visible(user_id));
REVOKE ALL ON evolve.raw_fragment_aggregate_parts, evolve.entity_count_parts,
              evolve.raw_fragment_aggregates, evolve.entity_counts FROM PUBLIC;
GRANT SELECT ON evolve.raw_fragment_aggregate_parts, evolve.entity_count_parts,
                evolve.raw_fragment_aggregates, evolve.entity_counts TO evolve_reader;
REVOKE ALL ON FUNCTION evolve._backend_slot(), evolve._aggregates_by_caller(),
    evolve._add_samples(jsonb, jsonb), evolve._sum_counts(jsonb), evolve._sum_samples(jsonb),
    evolve._add_fragment_deltas(text[], text[], text[], text[], text[], integer[], bigint[], timestamptz[], jsonb[]),
    evolve._lock_fragment_keys(text[], text[], text[]), evolve._settle_fragment_keys(text[], text[], text[]),
    evolve._add_parts(text[], text[], text[], bigint[], bigint[], jsonb[], jsonb[], timestamptz[], jsonb[]),
    evolve._add_count_parts(text[], text[], bigint[]), evolve.fold_aggregates() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve._add_samples(jsonb, jsonb), evolve._sum_counts(jsonb),
    evolve._sum_samples(jsonb) TO evolve_reader;
GRANT EXECUTE ON FUNCTION evolve.fold_aggregates() TO evolve_admin;
