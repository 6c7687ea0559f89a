#!/usr/bin/env bash
# Freshness benchmark: what keeping embeddings in step with the data costs and gives.
#   1. inbox COPY of BENCH_FRESH_ROWS payloads with freshness on (policy on_change) against the
#      same with it off (manual), interleaved rounds, best of each;
#   2. ingest() of one entity until it is embedded, with the worker running (median of
#      BENCH_FRESH_SAMPLES), against the worker's time for one batch of evolve.embed_batch_size
#      measured in the same run;
#   3. semantic_search latency (p50, one client) while a job re-embeds a whole type of
#      BENCH_FRESH_JOB entities, against the same searches idle.
# Ratios measured within one run matter; absolute times on a shared machine mean little.
# Runs its own throwaway cluster with the worker (port 28818); needs the installed pg_evolve.
set -euo pipefail
. "$(dirname "$0")/common.sh"

ROWS=${BENCH_FRESH_ROWS:-100000}
ROUNDS=${BENCH_FRESH_ROUNDS:-2}
SAMPLES=${BENCH_FRESH_SAMPLES:-200}
JOB=${BENCH_FRESH_JOB:-100000}
SEARCH_S=${BENCH_FRESH_SEARCH_S:-10}

export PG_EVOLVE_CLUSTER=/tmp/pg_evolve_bench_fresh PG_EVOLVE_PORT=28818 PG_EVOLVE_DB=evolve_fresh
export PG_EVOLVE_WORKER_DB=evolve_fresh
export PG_EVOLVE_EXTRA_CONF=$'shared_buffers = 2GB\nmaintenance_work_mem = 1GB\nevolve.worker_naptime = 10s'
BIN=${PG_EVOLVE_BIN:-/usr/lib/postgresql/15/bin}
WORK=$PG_EVOLVE_CLUSTER/bench_fresh
bash "$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true
rm -rf "$PG_EVOLVE_CLUSTER"
bash "$ROOT/scripts/cluster.sh" start
trap 'bash "$ROOT/scripts/cluster.sh" stop' EXIT

fresh_extension() {
    psql_q <<'SQL'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_evolve CASCADE;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION pg_evolve;
SELECT FROM evolve.register_schema('{"entity_type": "movie", "description": "A film",
  "attributes": {"title": {"type": "string"}, "year": {"type": "integer"}, "rating": {"type": "number"},
                 "runtime": {"type": "integer"}, "adult": {"type": "boolean"}}}');
SQL
}
as_pg mkdir -p "$WORK"

# 1. Inbox COPY, freshness on vs off. The worker is kept out of it (its database is another
#    while this runs: the queue it would drain is the cost measured elsewhere, in 2).
step "freshness 1/3: inbox COPY of $ROWS payloads, freshness on vs off"
psql_q -c "ALTER SYSTEM SET evolve.worker_database = 'postgres'" -c "SELECT pg_reload_conf()" >/dev/null
bash "$ROOT/scripts/cluster.sh" stop >/dev/null; bash "$ROOT/scripts/cluster.sh" start >/dev/null
psql_q <<SQL
COPY (SELECT 'movie', jsonb_build_object('title', 'Movie ' || i, 'year', 1950 + i % 75,
        'rating', round((i * 7919 % 100) / 10.0, 1), 'runtime', 70 + i * 31 % 120, 'adult', i % 17 = 0,
        'budget', i * 104729 % 200000000, 'tagline', 'A story about ' || md5(i::text),
        'original_language', (ARRAY['en', 'fr', 'de', 'ja', 'es'])[1 + i % 5]),
      'm' || i FROM generate_series(1::bigint, $ROWS) i) TO '$WORK/movies.tsv';
SQL
declare -A BEST=()
for round in $(seq "$ROUNDS"); do
    for mode in manual on_change; do
        fresh_extension
        psql_q -c "SELECT evolve.set_embedding_policy('movie', '$mode')" >/dev/null
        ms=$(psql_q <<SQL
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
COPY evolve.inbox (entity_type, payload, entity_key) FROM '$WORK/movies.tsv';
SELECT round(1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), 1);
SQL
)
        queued=$(psql_q -c "SELECT count(*) FROM evolve.embedding_queue")
        note "round $round, $mode: $ms ms, $queued queued"
        if [ "$mode" = on_change ] && [ "$queued" != "$ROWS" ]; then
            echo "freshness on queued $queued of $ROWS new entities" >&2; exit 1
        fi
        if [ -z "${BEST[$mode]:-}" ] || awk -v a="$ms" -v b="${BEST[$mode]}" 'BEGIN { exit !(a < b) }'; then
            BEST[$mode]=$ms
        fi
    done
done
copy_ratio=$(ratio "${BEST[manual]}" "${BEST[on_change]}")

# 2. ingest() → embedded, worker running (woken by the commit; naptime 10 s).
step "freshness 2/3: ingest() → searchable with the worker running ($SAMPLES samples)"
# (The extension is made again before the worker starts: dropping it under a running worker
# can deadlock with its batch.)
fresh_extension
psql_q -c "ALTER SYSTEM SET evolve.worker_database = 'evolve_fresh'" >/dev/null
bash "$ROOT/scripts/cluster.sh" stop >/dev/null; bash "$ROOT/scripts/cluster.sh" start >/dev/null
psql_q <<'SQL'
SELECT FROM evolve.register_schema('{"entity_type": "quake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"}}}');
CREATE TABLE public.fresh_latency (ms float8);
CREATE PROCEDURE public.fresh_samples(n int) LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
    t0 timestamptz;
BEGIN
    FOR i IN 1..n LOOP
        id := evolve.ingest('quake', jsonb_build_object('mag', i % 9, 'place', 'fresh place ' || i),
                            entity_key => 'f' || i);
        COMMIT;
        t0 := clock_timestamp();
        WHILE NOT EXISTS (SELECT FROM evolve.entity_embeddings WHERE entity_id = id) LOOP
            IF clock_timestamp() - t0 > interval '30 seconds' THEN
                RAISE EXCEPTION 'entity % not embedded after 30 s', id;
            END IF;
            PERFORM pg_sleep(0.0002);
        END LOOP;
        INSERT INTO public.fresh_latency VALUES (1000 * extract(epoch FROM clock_timestamp() - t0));
        COMMIT;
    END LOOP;
END
$$;
SQL
psql_q -c "CALL public.fresh_samples($SAMPLES)"
median_ms=$(psql_q -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM public.fresh_latency")
p90_ms=$(psql_q -c "SELECT round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM public.fresh_latency")
# The worker's batch time: a job of 30 full batches, its busy time per batch.
psql_q <<'SQL'
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'quake', jsonb_build_object('mag', i % 9, 'place', 'batch place ' || i), 'b' || i FROM generate_series(1, 3000) i;
SQL
busy0=$(psql_q -c "SELECT value FROM evolve.metrics() WHERE name = 'pg_evolve_worker_busy_seconds_total'")
batches0=$(psql_q -c "SELECT value FROM evolve.metrics() WHERE name = 'pg_evolve_worker_batches_total'")
psql_q -c "SELECT evolve.apply_change('{\"kind\": \"attribute_description_changed\", \"entity_type\": \"quake\", \"attribute\": \"place\", \"description\": \"Where\"}')" >/dev/null
for _ in $(seq 600); do
    left=$(psql_q -c "SELECT count(*) FROM evolve.embedding_queue")
    [ "$left" = 0 ] && break
    sleep 0.2
done
sleep 0.5
busy1=$(psql_q -c "SELECT value FROM evolve.metrics() WHERE name = 'pg_evolve_worker_busy_seconds_total'")
batches1=$(psql_q -c "SELECT value FROM evolve.metrics() WHERE name = 'pg_evolve_worker_batches_total'")
batch_ms=$(awk -v b0="$busy0" -v b1="$busy1" -v n0="$batches0" -v n1="$batches1" \
    'BEGIN { if (n1 > n0) printf "%.2f", 1000 * (b1 - b0) / (n1 - n0); else print "n/a" }')
latency_ratio=$(ratio "$median_ms" "$batch_ms")

# 3. Search latency during a whole-type job vs idle (one pgbench client; the job in another
#    session through CALL evolve.run_reembedding(), as the worker would run it).
step "freshness 3/3: semantic_search p50 during a whole-type job of $JOB vs idle"
psql_q -c "ALTER SYSTEM SET evolve.worker_database = 'postgres'" >/dev/null
bash "$ROOT/scripts/cluster.sh" stop >/dev/null; bash "$ROOT/scripts/cluster.sh" start >/dev/null
fresh_extension
psql_q -c "SELECT evolve.set_embedding_policy('quake', 'manual')" >/dev/null
psql_q <<SQL
SELECT FROM evolve.register_schema('{"entity_type": "quake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"}}}');
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'quake', jsonb_build_object('mag', (i % 90) / 10.0, 'place', 'place number ' || i), 'q' || i
FROM generate_series(1, $JOB) i;
SELECT FROM evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "A seismic event"}');
CALL evolve.run_reembedding();
VACUUM ANALYZE;
SQL
echo "SELECT count(*) FROM evolve.semantic_search('quake', 'place number ' || (random() * $JOB)::int, 10);" \
    | as_pg tee "$WORK/search.sql" >/dev/null
pgbench_p50() {   # $1: seconds; prints the p50 latency in ms of one client's searches
    local dir=$WORK/log_$RANDOM
    as_pg mkdir -p "$dir"
    (cd "$dir" && as_pg "$BIN/pgbench" -n -h "$PG_EVOLVE_CLUSTER" -p "$PG_EVOLVE_PORT" -c 1 -T "$1" \
        -f "$WORK/search.sql" -l "$PG_EVOLVE_DB" >/dev/null)
    cat "$dir"/pgbench_log.* | awk '{ print $3 / 1000 }' | sort -n \
        | awk '{ v[NR] = $1 } END { printf "%.2f %d\n", v[int((NR + 1) / 2)], NR }'
}
read -r idle_p50 idle_n < <(pgbench_p50 "$SEARCH_S")
psql_q -c "SELECT evolve.apply_change('{\"kind\": \"entity_type_description_changed\", \"entity_type\": \"quake\", \"description\": \"A quake, again\"}')" >/dev/null
job_start=$(date +%s.%N)
psql_q -c "CALL evolve.run_reembedding()" &
job_pid=$!
sleep 1
read -r busy_p50 busy_n < <(pgbench_p50 "$SEARCH_S")
wait "$job_pid"
job_s=$(awk -v s="$job_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
generation=$(psql_q -c "SELECT generation FROM evolve.embedding_generations WHERE state = 'current'")
search_ratio=$(ratio "$busy_p50" "$idle_p50")

step "freshness: results"
printf '%-62s %-26s %-8s %s\n' "measure" "value" "goal" "verdict"
printf '%-62s %-26s %-8s %s\n' "inbox COPY of $ROWS, freshness on vs off (throughput)" \
    "$copy_ratio× (${BEST[on_change]} vs ${BEST[manual]} ms)" "≥ 0.9" "$(verdict "$copy_ratio" ">=" 0.9)"
printf '%-62s %-26s %-8s %s\n' "ingest() → searchable, median of $SAMPLES (vs one batch)" \
    "$latency_ratio× (${median_ms} vs ${batch_ms} ms)" "≤ 2" "$(verdict "$latency_ratio" "<=" 2)"
printf '%-62s %-26s\n' "  (p90)" "${p90_ms} ms"
printf '%-62s %-26s %-8s %s\n' "semantic_search p50 during a whole-type job of $JOB vs idle" \
    "$search_ratio× (${busy_p50} vs ${idle_p50} ms)" "≤ 2" "$(verdict "$search_ratio" "<=" 2)"
printf '%-62s %-26s\n' "  (searches idle / during; the job's time; generation)" "$idle_n / $busy_n; ${job_s} s; $generation"
