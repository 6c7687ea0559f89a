#!/usr/bin/env bash
# Installs everything pg_evolve needs on a Debian bookworm machine, idempotently:
# PostgreSQL 15 (+ server headers), pg_cron, pgvector (built from Debian's source package),
# the C toolchain bindgen needs, sudo (for `cargo pgrx test --runas`), cargo-pgrx, and
# prometheus-postgres-exporter (the metrics test scrapes it).
# Every step is skipped when its result is already present. Must run as root.
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGRX_VERSION=0.18.1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# Runs a quiet, long command ($2...), saying every 30 seconds that it still runs ($1: what).
with_heartbeat() {
    local what=$1 hb status=0
    shift
    (
        t0=$SECONDS
        while sleep 30; do log "  ... $what: $(((SECONDS - t0) / 60))m$(((SECONDS - t0) % 60))s so far" >&2; done
    ) &
    hb=$!
    "$@" || status=$?
    kill "$hb" 2>/dev/null
    wait "$hb" 2>/dev/null || true
    return $status
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "setup.sh must run as root (it installs packages)" >&2
        exit 1
    fi
}

apt_packages() {
    local pkgs=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron
        postgresql-contrib clang libclang-dev pkg-config build-essential sudo dpkg-dev
        prometheus-postgres-exporter)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "apt packages present"
        return
    fi
    log "installing: ${missing[*]} (apt-get, a minute or two)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    with_heartbeat "apt-get install" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pgvector() {
    local sharedir
    sharedir=$($PG_CONFIG --sharedir)
    if [ -f "$sharedir/extension/vector.control" ]; then
        log "pgvector present"
        return
    fi
    log "building pgvector from Debian's trixie source package (about a minute)"
    # Source only from trixie; binaries from trixie are pinned away so libc can never move.
    echo "deb-src http://deb.debian.org/debian trixie main" >/etc/apt/sources.list.d/pg-evolve-trixie-src.list
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: -1\n' >/etc/apt/preferences.d/pg-evolve-no-trixie
    apt-get update -qq
    local dir
    dir=$(mktemp -d /tmp/pgvector-src.XXXXXX)
    (cd "$dir" && apt-get source -qq pgvector >/dev/null 2>&1 || apt-get source pgvector)
    local src
    src=$(find "$dir" -maxdepth 1 -mindepth 1 -type d -name 'pgvector-*' | head -n1)
    make -s -C "$src" PG_CONFIG=$PG_CONFIG >/dev/null
    make -s -C "$src" install PG_CONFIG=$PG_CONFIG >/dev/null
    rm -rf "$dir"
}

cargo_pgrx() {
    if cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
        log "cargo-pgrx $PGRX_VERSION present"
    else
        log "installing cargo-pgrx $PGRX_VERSION: cargo install compiles ~300 crates, about 4 minutes on 2 cores"
        with_heartbeat "compiling cargo-pgrx" cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked --quiet
    fi
    if grep -q "pg$PG_MAJOR = \"$PG_CONFIG\"" "$HOME/.pgrx/config.toml" 2>/dev/null; then
        log "cargo pgrx already initialised for pg$PG_MAJOR"
    else
        log "cargo pgrx init --pg$PG_MAJOR"
        cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
    fi
}

need_root
apt_packages
pgvector
cargo_pgrx
log "setup complete"
