#!/usr/bin/env bash
# The minilm profile's benchmark (all-MiniLM-L6-v2 in the backend), ratios in one run:
#   1. the worker's path (CALL evolve.run_reembedding(): batches, the model's forward passes of
#      max_batch texts, the writes, the generation's index) re-embedding BENCH_MINILM_ROWS
#      entities, against SELECT evolve.embed(text, 'minilm') over the same texts in one statement;
#   2. texts/s inside PostgreSQL (the worker's path) against the same texts through the same
#      model in plain Rust outside it (crates/minilm's minilm-bench, batch 32, same threads);
#   3. the backend's resident memory after loading the model against before.
# Runs its own throwaway cluster; needs the installed pg_evolve (and builds minilm-bench).
set -euo pipefail
. "$(dirname "$0")/common.sh"

ROWS=${BENCH_MINILM_ROWS:-10000}
export PG_EVOLVE_CLUSTER=/tmp/pg_evolve_bench_minilm PG_EVOLVE_PORT=28819 PG_EVOLVE_DB=evolve_minilm
export PG_EVOLVE_WORKER_DB=
export PG_EVOLVE_EXTRA_CONF=$'shared_buffers = 1GB\nmaintenance_work_mem = 512MB'
WORK=$PG_EVOLVE_CLUSTER/bench_minilm
bash "$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true
rm -rf "$PG_EVOLVE_CLUSTER"
bash "$ROOT/scripts/cluster.sh" start
trap 'bash "$ROOT/scripts/cluster.sh" stop' EXIT
as_pg mkdir -p "$WORK"

step "minilm 1/3: $ROWS USGS-like entities, their enriched texts"
psql_q <<SQL
DROP EXTENSION IF EXISTS pg_evolve CASCADE;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION pg_evolve;
SELECT FROM evolve.register_schema('{"entity_type": "earthquake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"},
                 "status": {"type": "string"}, "depth": {"type": "number", "description": "Depth in km"}}}');
SELECT FROM evolve.set_embedding_policy('earthquake', 'manual');
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'earthquake', jsonb_build_object('mag', round(((i * 7919) % 80) / 10.0, 1),
         'place', (i % 97) || ' km ' || (ARRAY['N', 'SW', 'ESE', 'NNW'])[1 + i % 4] || ' of '
                  || (ARRAY['Ridgecrest, CA', 'Anchorage, Alaska', 'Hilo, Hawaii', 'Hualien City, Taiwan',
                            'Ovalle, Chile', 'the Fox Islands, Aleutian Islands'])[1 + i % 6],
         'status', (ARRAY['reviewed', 'automatic'])[1 + i % 2], 'depth', round(((i * 31) % 7000) / 10.0, 1)),
       'q' || i
FROM generate_series(1, $ROWS) i;
CREATE TABLE public.texts AS SELECT entity_id, evolve.enriched_text(entity_id) AS t FROM evolve.entities;
SQL
psql_q -c "SELECT json_agg(t ORDER BY entity_id) FROM public.texts" > "$WORK/texts.json"
tokens=$(psql_q -c "SELECT round(avg(array_length(regexp_split_to_array(t, '\s+'), 1)), 1) FROM public.texts")
note "$ROWS texts, ~$tokens words each"

step "minilm 2/3: the worker's path vs one statement of evolve.embed(text, 'minilm'), in the backend"
# Every session computes with as many threads as the background worker would (evolve.model_threads
# is 1 outside the worker by default), and as the plain Rust run below.
threads=$(nproc)
set_threads="SET evolve.model_threads = $threads;"
# Memory: a new backend, before and after loading the model (its first use).
read -r rss_before rss_after < <(psql_q <<'SQL'
SELECT pg_backend_pid() AS pid \gset
SELECT (regexp_match(pg_read_file('/proc/' || :pid || '/status'), 'VmRSS:\s+(\d+)'))[1] AS before \gset
SELECT FROM evolve.embed('warm', 'minilm');
SELECT :before || ' ' || (regexp_match(pg_read_file('/proc/' || :pid || '/status'), 'VmRSS:\s+(\d+)'))[1];
SQL
)
statement_ms=$( (echo "$set_threads"; cat) <<'SQL' | psql_q
SELECT FROM evolve.embed('warm', 'minilm');
SELECT clock_timestamp() AS t0 \gset
SELECT count(evolve.embed(t, 'minilm')) FROM public.texts \g /dev/null
SELECT round(1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz));
SQL
)
worker_ms=$( (echo "$set_threads"; cat) <<'SQL' | psql_q
SELECT FROM evolve.set_embedding_profile('earthquake', 'minilm');
SELECT FROM evolve.embed('warm', 'minilm');
SELECT clock_timestamp() AS t0 \gset
CALL evolve.run_reembedding();
SELECT round(1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz));
SQL
)
embedded=$(psql_q -c "SELECT count(*) FROM evolve.entity_embeddings WHERE profile = 'minilm'")
[ "$embedded" = "$ROWS" ] || { echo "the job embedded $embedded of $ROWS" >&2; exit 1; }

step "minilm 3/3: the same texts through the same model outside PostgreSQL (minilm-bench)"
(cd "$ROOT" && cargo build -q --release -p evolve-minilm --bin minilm-bench)
plain=$(EVOLVE_MINILM_DIR="$("$PG_CONFIG" --sharedir)/extension/pg_evolve_minilm" \
    EVOLVE_MINILM_TEXTS="$WORK/texts.json" \
    "${CARGO_TARGET_DIR:-$ROOT/target}/release/minilm-bench" "$ROWS" 32 "$threads" | tee /dev/stderr \
    | sed -n 's/^minilm texts\/s: \([0-9.]*\).*/\1/p')

worker_rate=$(awk -v n="$ROWS" -v ms="$worker_ms" 'BEGIN { printf "%.1f", n * 1000 / ms }')
statement_rate=$(awk -v n="$ROWS" -v ms="$statement_ms" 'BEGIN { printf "%.1f", n * 1000 / ms }')
path_ratio=$(ratio "$statement_ms" "$worker_ms")
rate_ratio=$(ratio "$worker_rate" "$plain")
mem_mb=$(awk -v a="$rss_after" -v b="$rss_before" 'BEGIN { printf "%.1f", (a - b) / 1024 }')

step "minilm: results"
printf '%-66s %-30s %-8s %s\n' "measure" "value" "goal" "verdict"
printf '%-66s %-30s %-8s %s\n' "worker re-embedding $ROWS with minilm vs one SELECT evolve.embed() (speed)" \
    "$path_ratio× ($worker_ms vs $statement_ms ms)" "≥ 0.9" "$(verdict "$path_ratio" ">=" 0.9)"
printf '%-66s %-30s %-8s %s\n' "minilm texts/s in the backend (worker path) vs plain Rust, batch 32" \
    "$rate_ratio× ($worker_rate vs $plain)" "≥ 0.9" "$(verdict "$rate_ratio" ">=" 0.9)"
printf '%-66s %-30s %-8s %s\n' "minilm texts/s in the backend, absolute ($threads cores)" \
    "$worker_rate (one statement: $statement_rate)" "≥ 80" "$(verdict "$worker_rate" ">=" 80)"
printf '%-66s %-30s %-8s %s\n' "backend resident memory, after loading the model minus before" \
    "$mem_mb MB" "≤ 150" "$(verdict "$mem_mb" "<=" 150)"
