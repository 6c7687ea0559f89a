#!/usr/bin/env bash
# README command 1: install everything, start a throwaway cluster, run the demo on real data.
set -euo pipefail
. "$(dirname "$0")/common.sh"

demo_psql() { bash "$ROOT/scripts/cluster.sh" psql -X "$@"; }

# Draws the newest re-embedding job's progress until it completes or fails: a bar updated in
# place on a terminal, a line per quarter otherwise.
progress_bar() {
    local row line status bucket last= tty=
    [ -t 1 ] && tty=1
    for _ in $(seq 1 2400); do
        row=$(demo_psql -Atq -F '|' -c "
            SELECT format('[%s] %5s%%  %s / %s entities  %s  %s',
                          rpad(repeat('#', (percent / 5)::int), 20, '.'), percent,
                          processed_entities, total_entities,
                          coalesce(round(rate_per_second) || '/s', '-'),
                          CASE WHEN status = 'running' AND eta IS NOT NULL
                               THEN 'ETA ' || ceil(extract(epoch FROM eta)) || 's' ELSE status END),
                   status, status || (percent / 25)::int
            FROM evolve.migration_progress ORDER BY job_id DESC LIMIT 1")
        IFS='|' read -r line status bucket <<<"$row"
        if [ -n "$tty" ]; then
            printf '\r\033[K%s' "$line"
        elif [ "$bucket" != "$last" ]; then
            printf '%s\n' "$line"
        fi
        last=$bucket
        case "$status" in completed | failed) break ;; esac
        sleep 0.25
    done
    [ -z "$tty" ] || printf '\n'
}

bash "$ROOT/scripts/setup.sh"
install_release
step "starting a throwaway cluster (scripts/cluster.sh; data in /tmp/pg_evolve_cluster)"
bash "$ROOT/scripts/cluster.sh" stop   # a running cluster still has the previous library loaded
bash "$ROOT/scripts/cluster.sh" start
step "loading the USGS feed (data/usgs-earthquakes-week.geojson)"
demo_psql -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "
    DROP TABLE IF EXISTS public.usgs_lines, public.usgs_feed;
    CREATE TABLE public.usgs_lines (n bigint GENERATED ALWAYS AS IDENTITY, line text);"
demo_psql -q -v ON_ERROR_STOP=1 \
    -c "COPY public.usgs_lines (line) FROM STDIN WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')" \
    <"$ROOT/data/usgs-earthquakes-week.geojson"
step "demo (scripts/demo.sql)"
# Up to section 19's job, the progress bar, then the rest (one script, split at its marker).
marker='^--@@ progress bar @@$'
grep -q "$marker" "$ROOT/scripts/demo.sql"
sed "/$marker/,\$d" "$ROOT/scripts/demo.sql" | demo_psql -v ON_ERROR_STOP=1 -f -
progress_bar
sed -n "/$marker/,\$p" "$ROOT/scripts/demo.sql" | demo_psql -v ON_ERROR_STOP=1 -f -
step "done; the demo cluster keeps running: scripts/cluster.sh psql connects, scripts/cluster.sh stop stops it"
