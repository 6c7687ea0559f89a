#!/usr/bin/env bash
# README command 1: install everything, start a throwaway cluster, run the demo on real data.
set -euo pipefail
. "$(dirname "$0")/common.sh"

bash "$ROOT/scripts/setup.sh"
install_release
step "starting a throwaway cluster (scripts/cluster.sh; data in /tmp/pg_evolve_cluster)"
bash "$ROOT/scripts/cluster.sh" stop   # a running cluster still has the previous library loaded
bash "$ROOT/scripts/cluster.sh" start
step "loading the USGS feed (data/usgs-earthquakes-week.geojson)"
bash "$ROOT/scripts/cluster.sh" psql -q -v ON_ERROR_STOP=1 -c "
    DROP TABLE IF EXISTS public.usgs_lines, public.usgs_feed;
    CREATE TABLE public.usgs_lines (n bigint GENERATED ALWAYS AS IDENTITY, line text);" 
bash "$ROOT/scripts/cluster.sh" psql -q -v ON_ERROR_STOP=1 \
    -c "COPY public.usgs_lines (line) FROM STDIN WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')" \
    <"$ROOT/data/usgs-earthquakes-week.geojson"
step "demo (sql/demo.sql)"
bash "$ROOT/scripts/cluster.sh" psql -v ON_ERROR_STOP=1 -X -f - <"$ROOT/scripts/demo.sql"
step "done; connect with: scripts/cluster.sh psql"
