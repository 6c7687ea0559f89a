#!/usr/bin/env bash
# Runs the pg_regress scenarios in pg_test/ against a fresh throwaway cluster.
# Assumes pg_evolve is installed (scripts/test.sh does that first).
set -euo pipefail
. "$(dirname "$0")/common.sh"

export PG_EVOLVE_CLUSTER=${PG_EVOLVE_CLUSTER:-/tmp/pg_evolve_regress} PG_EVOLVE_PORT=${PG_EVOLVE_PORT:-28816}
export PG_EVOLVE_DB=postgres
PG_CONFIG=${PG_EVOLVE_PG_CONFIG:-$PG_CONFIG}
BIN=$("$PG_CONFIG" --bindir)
bash "$ROOT/scripts/cluster.sh" stop
rm -rf "$PG_EVOLVE_CLUSTER"
bash "$ROOT/scripts/cluster.sh" start
trap 'bash "$ROOT/scripts/cluster.sh" stop' EXIT

OUT=$(mktemp -d /tmp/pg_evolve_regress_out.XXXXXX)
cp -r "$ROOT/pg_test/sql" "$ROOT/pg_test/expected" "$OUT/"
cp "$ROOT/data/usgs-earthquakes-week.geojson" "$OUT/"
chown -R postgres:postgres "$OUT"
# Arguments name scenarios to run (default: all of pg_test/sql).
tests=${*:-$(cd "$ROOT/pg_test/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)}
PGXS=$("$PG_CONFIG" --pkglibdir)/pgxs
status=0
(cd "$OUT" && runuser -u postgres -- "$PGXS/src/test/regress/pg_regress" \
    --bindir="$BIN" --host="$PG_EVOLVE_CLUSTER" --port="$PG_EVOLVE_PORT" \
    --user=postgres --dbname=evolve_regress --inputdir=. --outputdir=. $tests) || status=$?
if [ $status -ne 0 ]; then
    cat "$OUT/regression.diffs" 2>/dev/null | head -200
    mkdir -p "$ROOT/pg_test/results" && cp "$OUT"/results/*.out "$ROOT/pg_test/results/" 2>/dev/null || true
    echo "pg_regress failed; actual outputs copied to pg_test/results/" >&2
fi
exit $status
