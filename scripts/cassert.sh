#!/usr/bin/env bash
# Cache and assertion stress: builds PostgreSQL 15 from Debian's source package with
# --enable-cassert into its own prefix, builds pgvector and pg_evolve against it, and
# runs the whole pg_regress suite with debug_discard_caches = 1 (every cache entry is thrown
# away at every opportunity, so a stale relcache/catcache/plan reference shows up at once).
# Not part of scripts/test.sh: it takes long (the build ~10 min on 2 cores, the suite longer).
# Idempotent: every build step is skipped when its result is present. Must run as root.
set -euo pipefail
. "$(dirname "$0")/common.sh"

PREFIX=${PG_EVOLVE_CASSERT_PREFIX:-/opt/pg_evolve_cassert}
CASSERT_PG_CONFIG=$PREFIX/bin/pg_config
SRC=$PREFIX/src

bash "$ROOT/scripts/setup.sh"

fetch_source() { # $1: source package; leaves its unpacked folder in $SRC
    mkdir -p "$SRC"
    if ! ls -d "$SRC/$1"-*/ >/dev/null 2>&1; then
        (cd "$SRC" && apt-get source -qq "$1" >/dev/null 2>&1 || (cd "$SRC" && apt-get source "$1"))
    fi
    ls -d "$SRC/$1"-*/ | head -n1
}

# Debian's source package puts the library directory at /usr/lib/postgresql/15/lib unless the
# libdir names "postgres": without --libdir below, extensions built against this server would
# overwrite the system server's (its pgvector and pg_evolve) with assertion-enabled builds.
own_pkglibdir() {
    [ -x "$CASSERT_PG_CONFIG" ] && case "$("$CASSERT_PG_CONFIG" --pkglibdir)" in "$PREFIX"/*) true ;; *) false ;; esac
}

postgres_cassert() {
    if [ -x "$PREFIX/bin/postgres" ] && own_pkglibdir; then
        step "PostgreSQL 15 with assertions present in $PREFIX"
        return
    fi
    step "building PostgreSQL 15 with --enable-cassert into $PREFIX"
    if [ ! -f /etc/apt/sources.list.d/pg-evolve-bookworm-src.list ]; then
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" >/etc/apt/sources.list.d/pg-evolve-bookworm-src.list
        apt-get update -qq
    fi
    local deps=(bison flex zlib1g-dev libssl-dev)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${deps[@]}" >/dev/null
    local src
    src=$(fetch_source postgresql-15)
    (cd "$src" && { make -s distclean >/dev/null 2>&1 || true; } &&
        ./configure -q --prefix="$PREFIX" --libdir="$PREFIX/lib/postgresql" --enable-cassert --enable-debug \
        --without-readline --without-icu --with-openssl CFLAGS="-O1 -g" >/dev/null &&
        make -s -j"$(nproc)" >/dev/null && make -s install >/dev/null)
}

extension_build() { # $1: source package, $2: control file it installs
    if [ -f "$("$CASSERT_PG_CONFIG" --sharedir)/extension/$2.control" ] &&
        [ -f "$("$CASSERT_PG_CONFIG" --pkglibdir)/$2.so" ]; then
        step "$1 present in $PREFIX"
        return
    fi
    step "building $1 against the assertion-enabled server"
    local src
    src=$(fetch_source "$1")
    make -s -C "$src" clean PG_CONFIG="$CASSERT_PG_CONFIG" >/dev/null 2>&1 || true
    make -s -C "$src" PG_CONFIG="$CASSERT_PG_CONFIG" >/dev/null
    make -s -C "$src" install PG_CONFIG="$CASSERT_PG_CONFIG" >/dev/null
}

pg_evolve_cassert() {
    step "building pg_evolve against the assertion-enabled server (own PGRX_HOME and target dir)"
    export PGRX_HOME=$PREFIX/pgrx CARGO_TARGET_DIR=$ROOT/target/cassert
    mkdir -p "$PGRX_HOME"
    grep -q "pg15 = \"$CASSERT_PG_CONFIG\"" "$PGRX_HOME/config.toml" 2>/dev/null ||
        (cd "$ROOT" && cargo pgrx init --pg15 "$CASSERT_PG_CONFIG")
    build_and_install "$CASSERT_PG_CONFIG" --debug
}

postgres_cassert
own_pkglibdir || { echo "$CASSERT_PG_CONFIG --pkglibdir is outside $PREFIX; refusing to install there" >&2; exit 1; }
extension_build pgvector vector
pg_evolve_cassert

step "pg_regress with debug_discard_caches = 1 and assertions on"
id postgres >/dev/null
chown -R postgres:postgres "$PREFIX/src" 2>/dev/null || true
export PG_EVOLVE_BIN=$PREFIX/bin PG_EVOLVE_PG_CONFIG=$CASSERT_PG_CONFIG
export PG_EVOLVE_CLUSTER=/tmp/pg_evolve_cassert PG_EVOLVE_PORT=28818
export PG_EVOLVE_EXTRA_CONF="debug_discard_caches = 1"
# Every scenario and statement runs, on the first 60 features of the USGS feed (expected outputs
# *_1.out): with caches discarded, each of the ~46,000 foreign-key checks of a full-feed load
# rebuilds the relation cache (~5 per second here), hours per scenario.
export PG_EVOLVE_REGRESS_FEED_LIMIT=60
# pg_cron is not built here (the suite only checks the error for its absence).
export PG_EVOLVE_PRELOAD=pg_evolve
bash "$ROOT/scripts/regress.sh" "$@"
