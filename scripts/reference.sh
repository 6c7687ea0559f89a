#!/usr/bin/env bash
# Regenerates docs/reference.md from the catalog of a throwaway cluster (the installed build).
set -euo pipefail
. "$(dirname "$0")/common.sh"
export PG_EVOLVE_CLUSTER=/tmp/pg_evolve_reference PG_EVOLVE_PORT=28819 PG_EVOLVE_DB=evolve_reference PG_EVOLVE_WORKER_DB=
bash "$ROOT/scripts/cluster.sh" start
trap 'bash "$ROOT/scripts/cluster.sh" stop' EXIT
bash "$ROOT/scripts/cluster.sh" psql -X -v ON_ERROR_STOP=1 -f - <"$ROOT/scripts/reference.sql" >"$ROOT/docs/reference.md"
echo "wrote docs/reference.md"
