#!/usr/bin/env bash
# The benchmark command: builds the release library, starts a throwaway cluster and prints
# ratios measured within one run (absolute times on a shared machine mean little).
set -euo pipefail
. "$(dirname "$0")/common.sh"

bash "$ROOT/scripts/setup.sh"
install_release
# No background worker: the re-embedding benchmark runs the worker's batches itself.
export PG_EVOLVE_CLUSTER=/tmp/pg_evolve_bench PG_EVOLVE_PORT=28817 PG_EVOLVE_DB=evolve_bench PG_EVOLVE_WORKER_DB=
# Memory as a production server would have it: the 100k-entity tables and the HNSW graph fit in
# shared buffers, and an index build fits in maintenance_work_mem (otherwise pgvector builds on
# disk, several times slower).
export PG_EVOLVE_EXTRA_CONF=$'shared_buffers = 2GB\nmaintenance_work_mem = 1GB'
bash "$ROOT/scripts/cluster.sh" stop
rm -rf "$PG_EVOLVE_CLUSTER"
bash "$ROOT/scripts/cluster.sh" start
trap 'bash "$ROOT/scripts/cluster.sh" stop' EXIT
for f in "$ROOT"/bench/*.sql; do
    step "bench/$(basename "$f")"
    cat "$ROOT/bench/fresh.psql" "$f" | bash "$ROOT/scripts/cluster.sh" psql -X -v ON_ERROR_STOP=1 -f -
done
# Ingestion: ingest() and the inbox against plain inserts, concurrency, memory (same cluster).
bash "$ROOT/scripts/bench_ingest.sh"
