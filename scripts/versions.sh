#!/usr/bin/env bash
# PostgreSQL versions other than the system's 15: builds each server from Debian's source
# package into a prefix of its own (never over the system server), pgvector and pg_cron against
# it, and runs pg_evolve's test tiers there.
#   scripts/versions.sh setup [MAJOR...]   build what is missing (default: 17 18); idempotent
#   scripts/versions.sh test [MAJOR...]    #[pg_test], pg_regress, the upgrade and standby tests on
#                                          each (default: 15 18); `--all`: every integration test
#   scripts/versions.sh pg_config MAJOR    the pg_config of that version (builds nothing)
# A server build takes ~11 minutes on 2 cores the first time; afterwards every step is skipped.
# PostgreSQL 17's source package (trixie) is listed by apt but its files are not served by the
# mirror these machines reach (404), nor is any 16: `setup 17` fails until they are.
# Must run as root (apt-get source, installs under /opt).
set -euo pipefail
. "$(dirname "$0")/common.sh"

# Where each version lives: 15 is Debian bookworm's package, the others are built here.
# (16 has no source package the machines can reach; see README's support table.)
declare -A SUITE=([17]=trixie [18]=sid)
prefix_of() { echo "${PG_EVOLVE_VERSIONS_PREFIX:-/opt/pg_evolve}/pg$1"; }
pg_config_of() {
    if [ "$1" = 15 ]; then echo "$PG_CONFIG"; else echo "$(prefix_of "$1")/bin/pg_config"; fi
}

# Debian's source packages only: a deb-src line per suite, with that suite's binaries pinned
# away so apt can never replace bookworm's libc or server.
source_suite() {
    local suite=$1 list=/etc/apt/sources.list.d/pg-evolve-$1-src.list
    [ -f "$list" ] && return
    echo "deb-src http://deb.debian.org/debian $suite main" >"$list"
    printf 'Package: *\nPin: release n=%s\nPin-Priority: -1\n' "$suite" >"/etc/apt/preferences.d/pg-evolve-no-$suite"
    apt-get update -qq
}

# Unpacks source package $1 under $3 (once), from the first of the suites $2 (space-separated)
# whose files the mirror serves; prints its folder, or nothing when none does.
fetch_source() {
    local pkg=$1 suites=$2 dir=$3 suite
    mkdir -p "$dir"
    if ! ls -d "$dir/$pkg"-*/ >/dev/null 2>&1; then
        for suite in $suites; do
            (cd "$dir" && apt-get source -qq "$pkg/$suite" >/dev/null 2>&1) && break
        done
    fi
    ls -d "$dir/$pkg"-*/ 2>/dev/null | head -n1
}

build_server() {
    local major=$1 prefix suite=${SUITE[$1]}
    prefix=$(prefix_of "$major")
    # Without --libdir naming the prefix, Debian's tree installs the server library (and every
    # extension built against it) into the system server's /usr/lib/postgresql/N/lib.
    if [ -x "$prefix/bin/postgres" ] && [ "$("$prefix/bin/pg_config" --pkglibdir)" = "$prefix/lib/postgresql" ]; then
        note "PostgreSQL $major present in $prefix"
        return
    fi
    step "building PostgreSQL $major from Debian's $suite source package into $prefix (~10 minutes)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        bison flex zlib1g-dev libssl-dev >/dev/null
    local src
    src=$(fetch_source "postgresql-$major" "$suite" "$prefix/src")
    [ -n "$src" ] || { echo "the source package postgresql-$major ($suite) cannot be fetched" >&2; exit 1; }
    (cd "$src" && { make -s distclean >/dev/null 2>&1 || true; } &&
        ./configure -q --prefix="$prefix" --libdir="$prefix/lib/postgresql" \
            --without-readline --without-icu --with-openssl >/dev/null &&
        make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null &&
        make -s -C contrib/pg_stat_statements install >/dev/null)
}

# Builds extension $2 (source package $1) against server $3 (once). Returns 1 when no suite's
# source can be fetched.
build_extension() {
    local pkg=$1 control=$2 major=$3 pg_config prefix src
    pg_config=$(pg_config_of "$major")
    prefix=$(prefix_of "$major")
    if [ -f "$("$pg_config" --sharedir)/extension/$control.control" ]; then
        note "$pkg present for PostgreSQL $major"
        return
    fi
    src=$(fetch_source "$pkg" "${SUITE[$major]} trixie bookworm" "$prefix/src")
    [ -n "$src" ] || return 1
    step "building $pkg against PostgreSQL $major"
    if [ "$pkg" = pgvector ] && [ "$major" -ge 18 ] && [ "$(basename "$src")" = pgvector-0.8.0 ]; then
        # pgvector 0.8.0 predates PostgreSQL 18, where vacuum_delay_point() gained an argument
        # and TupleDesc lost its attrs array (0.8.1 has the same two fixes; its source package
        # is not served here).
        sed -i 's/vacuum_delay_point()/vacuum_delay_point(false)/' "$src"/src/*.c
        sed -i 's/buildstate->tupdesc->attrs\[0\]\.atttypid/TupleDescAttr(buildstate->tupdesc, 0)->atttypid/' "$src/src/ivfbuild.c"
    fi
    make -s -C "$src" clean PG_CONFIG="$pg_config" >/dev/null 2>&1 || true
    make -s -C "$src" PG_CONFIG="$pg_config" >/dev/null 2>&1
    make -s -C "$src" install PG_CONFIG="$pg_config" >/dev/null
}

setup() {
    local major
    bash "$ROOT/scripts/setup.sh"
    for major in "$@"; do
        [ "$major" = 15 ] && continue
        [ -n "${SUITE[$major]:-}" ] || { echo "no source for PostgreSQL $major (known: 15 ${!SUITE[*]})" >&2; exit 2; }
        source_suite "${SUITE[$major]}"
        build_server "$major"
        build_extension pgvector vector "$major" ||
            { echo "no pgvector source for PostgreSQL $major can be fetched" >&2; exit 1; }
        # pg_cron is optional (schedule_maintenance says so with 55000 when it is missing):
        # the mirror serves no pg-cron source package today, so only 15 (Debian's binary
        # package) tests it.
        build_extension pg-cron pg_cron "$major" ||
            note "no pg-cron source package can be fetched: PostgreSQL $major runs without pg_cron"
    done
    pgrx_init
}

# `cargo pgrx init` with every version present here, only when a line is missing: each re-init
# rewrites ~/.pgrx/config.toml and rebuilds pgrx's bindings.
pgrx_init() {
    local args=() missing= major pg_config
    for major in 15 17 18; do
        pg_config=$(pg_config_of "$major")
        [ -x "$pg_config" ] || continue
        args+=("--pg$major" "$pg_config")
        grep -q "pg$major = \"$pg_config\"" "$HOME/.pgrx/config.toml" 2>/dev/null || missing=1
    done
    if [ -n "$missing" ]; then
        step "cargo pgrx init ${args[*]}"
        cargo pgrx init "${args[@]}"
    fi
}

# The tiers on one version: #[pg_test], pg_regress, the upgrade tests (and with --all every
# integration test). Each version installs its debug (pg_test) then release build into its
# own server's directories.
test_version() {
    local major=$1 all=$2 pg_config pgrx_data=/tmp/pg_evolve_pgrx$1
    pg_config=$(pg_config_of "$major")
    [ -x "$pg_config" ] || { echo "PostgreSQL $major is not set up: scripts/versions.sh setup $major" >&2; exit 1; }
    if [ "$major" != 15 ]; then
        step "PostgreSQL $major: lints of the code built for it"
        (cd "$ROOT" && cargo clippy --all-targets --features "pg$major pg_test" --no-default-features -- -D warnings)
    fi
    step "PostgreSQL $major: #[pg_test] tests"
    mkdir -p "$pgrx_data" && chown postgres:postgres "$pgrx_data"
    (cd "$ROOT" && cargo pgrx test "pg$major" --runas postgres --pgdata "$pgrx_data/data")
    step "PostgreSQL $major: release build, pg_regress"
    build_and_install "$pg_config" --features "pg$major" --no-default-features
    PG_EVOLVE_PG_CONFIG=$pg_config PG_EVOLVE_CLUSTER=/tmp/pg_evolve_regress$major \
        PG_EVOLVE_PORT=$((28830 + major)) bash "$ROOT/scripts/regress.sh"
    # The integration tests are clients: built once (default features), pointed at this server.
    local filter=(upgrade replica)
    [ -z "$all" ] || filter=()
    step "PostgreSQL $major: integration tests (${filter[*]:-all})"
    (cd "$ROOT" && PG_EVOLVE_PG_CONFIG=$pg_config cargo test --features integration \
        --test integration -- --test-threads=2 "${filter[@]}")
}

cmd=${1:-}
shift || true
case "$cmd" in
setup) setup "${@:-18}" ;;
pg_config) pg_config_of "${1:?major}" ;;
test)
    all=
    majors=()
    for a in "$@"; do if [ "$a" = --all ]; then all=1; else majors+=("$a"); fi; done
    [ ${#majors[@]} -gt 0 ] || majors=(15 18)
    setup "${majors[@]}"
    for major in "${majors[@]}"; do test_version "$major" "$all"; done
    step "every tier passed on PostgreSQL ${majors[*]}"
    ;;
*) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
