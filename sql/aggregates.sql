-- Per-key aggregates of raw fragments, maintained by statement triggers with transition tables:
-- one upsert per distinct key per statement, keys in a fixed order (no deadlocks between
-- concurrent writers). Counts are kept as count maps so deletes subtract exactly; the derived
-- columns are functions of them.

CREATE TABLE evolve.raw_fragment_aggregates (
    entity_type      text NOT NULL,
    fragment_key     text NOT NULL,
    user_id          text,
    sample_count     bigint NOT NULL,
    frequency_total  bigint NOT NULL,
    type_counts      jsonb NOT NULL DEFAULT '{}',
    source_counts    jsonb NOT NULL DEFAULT '{}',
    dominant_type    text GENERATED ALWAYS AS (evolve._dominant_type(type_counts)) STORED,
    type_consistency double precision GENERATED ALWAYS AS (evolve._type_consistency(type_counts)) STORED,
    unique_sources   integer GENERATED ALWAYS AS (evolve._count_keys(source_counts)) STORED,
    last_seen_at     timestamptz,
    sample_values    jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT raw_fragment_aggregates_key UNIQUE NULLS NOT DISTINCT (entity_type, user_id, fragment_key)
);
COMMENT ON TABLE evolve.raw_fragment_aggregates IS
    'Per (entity_type, user_id, fragment_key): fragment rows (sample_count), sightings (frequency_total), value types and sources as count maps, the inferred dominant type and its consistency, last sighting, up to 10 sample values seen. Maintained by triggers; evolve.verify_aggregates() proves it equals a recompute.';
COMMENT ON COLUMN evolve.raw_fragment_aggregates.sample_values IS
    'Up to 10 distinct non-null values seen for the key (examples: not removed when fragments are).';

-- The trigger turns the statement's transition tables into signed rows (+1 inserted, -1
-- deleted) and folds them into per-key deltas. The delta source is one of three constants
-- chosen by TG_OP, never data. (Transition tables are visible only inside the trigger
-- function itself, hence the dynamic SQL here rather than in a helper.)
CREATE FUNCTION evolve._fragments_aggregate() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    cols constant text := 'entity_type, user_id, fragment_key, value_type, source, frequency, last_seen_at, value';
    delta_sql text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        delta_sql := format('SELECT %s, 1 AS sign FROM new_rows', cols);
    ELSIF TG_OP = 'DELETE' THEN
        delta_sql := format('SELECT %s, -1 AS sign FROM old_rows', cols);
    ELSE
        delta_sql := format('SELECT %1$s, 1 AS sign FROM new_rows UNION ALL SELECT %1$s, -1 FROM old_rows', cols);
    END IF;
    EXECUTE format($sql$
        WITH delta AS (%s),
        g AS (
            SELECT entity_type, user_id, fragment_key, value_type, source,
                   sum(sign) AS n, sum(sign * frequency) AS f,
                   max(last_seen_at) FILTER (WHERE sign > 0) AS seen,
                   (array_agg(value) FILTER (WHERE sign > 0 AND jsonb_typeof(value) <> 'null'))[1:10] AS vals
            FROM delta GROUP BY 1, 2, 3, 4, 5)
        INSERT INTO evolve.raw_fragment_aggregates AS a
            (entity_type, user_id, fragment_key, sample_count, frequency_total, type_counts,
             source_counts, last_seen_at, sample_values)
        SELECT entity_type, user_id, fragment_key, sum(n), sum(f),
               evolve._count_object(array_agg(value_type), array_agg(n)),
               evolve._count_object(array_agg(source), array_agg(n)),
               max(seen),
               evolve._merge_samples('[]', coalesce(jsonb_agg(to_jsonb(vals)) FILTER (WHERE vals IS NOT NULL), '[]'))
        FROM g GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
        ON CONFLICT ON CONSTRAINT raw_fragment_aggregates_key DO UPDATE SET
            sample_count = a.sample_count + EXCLUDED.sample_count,
            frequency_total = a.frequency_total + EXCLUDED.frequency_total,
            type_counts = evolve._add_counts(a.type_counts, EXCLUDED.type_counts),
            source_counts = evolve._add_counts(a.source_counts, EXCLUDED.source_counts),
            last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
            sample_values = evolve._merge_samples(a.sample_values, jsonb_build_array(EXCLUDED.sample_values))
    $sql$, delta_sql);
    IF TG_OP <> 'INSERT' THEN
        -- A removed row may have been the latest sighting: recompute those keys (indexed), and
        -- drop the keys with no rows left. Only keys this statement touched (and so already
        -- locked, in order, by the upsert above) are visited: no new lock waits here.
        EXECUTE format($sql$
            WITH keys AS (SELECT DISTINCT entity_type, user_id, fragment_key FROM (%s) d WHERE sign < 0),
            recomputed AS (
                UPDATE evolve.raw_fragment_aggregates a
                SET last_seen_at = (SELECT max(f.last_seen_at) FROM evolve.raw_fragments f
                                    WHERE f.entity_type = a.entity_type AND f.fragment_key = a.fragment_key
                                      AND f.user_id IS NOT DISTINCT FROM a.user_id)
                FROM keys k
                WHERE a.entity_type = k.entity_type AND a.fragment_key = k.fragment_key
                  AND a.user_id IS NOT DISTINCT FROM k.user_id AND a.sample_count > 0)
            DELETE FROM evolve.raw_fragment_aggregates a USING keys k
            WHERE a.entity_type = k.entity_type AND a.fragment_key = k.fragment_key
              AND a.user_id IS NOT DISTINCT FROM k.user_id AND a.sample_count = 0
        $sql$, delta_sql);
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER raw_fragments_aggregate_insert AFTER INSERT ON evolve.raw_fragments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION evolve._fragments_aggregate();
CREATE TRIGGER raw_fragments_aggregate_update AFTER UPDATE ON evolve.raw_fragments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION evolve._fragments_aggregate();
CREATE TRIGGER raw_fragments_aggregate_delete AFTER DELETE ON evolve.raw_fragments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION evolve._fragments_aggregate();

-- Recompute from raw_fragments and compare: no rows when the aggregates are exact.
CREATE FUNCTION evolve.verify_aggregates()
RETURNS TABLE (entity_type text, user_id text, fragment_key text, field text, expected text, actual text)
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT entity_type, user_id, fragment_key, count(*) AS sample_count, sum(frequency) AS frequency_total,
               max(last_seen_at) AS last_seen_at
        FROM evolve.raw_fragments GROUP BY 1, 2, 3),
    rt AS (
        SELECT entity_type, user_id, fragment_key, evolve._count_object(array_agg(value_type), array_agg(n)) AS type_counts
        FROM (SELECT entity_type, user_id, fragment_key, value_type, count(*) AS n
              FROM evolve.raw_fragments GROUP BY 1, 2, 3, 4) t GROUP BY 1, 2, 3),
    rs AS (
        SELECT entity_type, user_id, fragment_key, evolve._count_object(array_agg(source), array_agg(n)) AS source_counts
        FROM (SELECT entity_type, user_id, fragment_key, source, count(*) AS n
              FROM evolve.raw_fragments GROUP BY 1, 2, 3, 4) t GROUP BY 1, 2, 3),
    expected AS (
        SELECT r.*, rt.type_counts, rs.source_counts,
               coalesce(r.user_id, '') || E'\x1f' || r.entity_type || E'\x1f' || r.fragment_key AS k
        FROM r JOIN rt ON rt.entity_type = r.entity_type AND rt.fragment_key = r.fragment_key
                      AND rt.user_id IS NOT DISTINCT FROM r.user_id
               JOIN rs ON rs.entity_type = r.entity_type AND rs.fragment_key = r.fragment_key
                      AND rs.user_id IS NOT DISTINCT FROM r.user_id),
    actual AS (
        SELECT a.*, coalesce(a.user_id, '') || E'\x1f' || a.entity_type || E'\x1f' || a.fragment_key AS k
        FROM evolve.raw_fragment_aggregates a)
    SELECT coalesce(e.entity_type, a.entity_type), coalesce(e.user_id, a.user_id),
           coalesce(e.fragment_key, a.fragment_key), c.field, c.expected, c.actual
    FROM expected e FULL JOIN actual a ON a.k = e.k
    CROSS JOIN LATERAL (VALUES
        ('sample_count', e.sample_count::text, a.sample_count::text),
        ('frequency_total', e.frequency_total::text, a.frequency_total::text),
        ('type_counts', e.type_counts::text, a.type_counts::text),
        ('source_counts', e.source_counts::text, a.source_counts::text),
        ('last_seen_at', e.last_seen_at::text, a.last_seen_at::text)) AS c(field, expected, actual)
    WHERE c.expected IS DISTINCT FROM c.actual
    ORDER BY 1, 2, 3, 4
$$;
COMMENT ON FUNCTION evolve.verify_aggregates() IS
    'Compares evolve.raw_fragment_aggregates with a recompute from evolve.raw_fragments; returns the mismatching keys and fields (none when exact).';
