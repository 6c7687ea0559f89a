# Shared by the scripts: paths and the build/install step.
# shellcheck shell=bash
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Benchmark helpers (scripts/bench_*.sh). A command as the postgres user.
as_pg() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}
# psql into the cluster of scripts/cluster.sh: quiet, unaligned, no notices, stops at the first error.
psql_q() {
    PGOPTIONS="-c client_min_messages=warning" bash "$ROOT/scripts/cluster.sh" psql -X -v ON_ERROR_STOP=1 -Atq "$@"
}
# a / b with two decimals ("n/a" when b is 0 or missing).
# a / b, with 2 decimals (3 below 0.1, where 2 would round 0.035 to 0.04).
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (b + 0 <= 0) print "n/a"; else if (a / b < 0.1) printf "%.3f", a / b; else printf "%.2f", a / b }'; }
# "ok" when ratio $1 meets goal $3 under comparison $2 (<= or >=), "BELOW GOAL" otherwise.
verdict() {
    awk -v r="$1" -v op="$2" -v g="$3" 'BEGIN {
        if (r == "n/a") { print "n/a"; exit }
        ok = (op == "<=") ? (r + 0 <= g + 0) : (r + 0 >= g + 0)
        print ok ? "ok" : "BELOW GOAL" }'
}

# Copies a package tree ($1, laid out from / as `cargo pgrx package` writes it) into place the
# way a package manager does: each file is written under a temporary name next to its
# destination, then renamed over the old one. A server that has the old library loaded keeps
# its mapping of the old file (rewriting that file in place kills it with SIGILL or SIGSEGV);
# it loads the new one when it starts again.
install_tree() {
    local src=$1 f dest tmp mode
    while IFS= read -r -d '' f; do
        dest=/${f#"$src"/}
        tmp=$(dirname "$dest")/.$(basename "$dest").new.$$
        case "$dest" in *.so) mode=0755 ;; *) mode=0644 ;; esac
        mkdir -p "$(dirname "$dest")"
        install -m "$mode" "$f" "$tmp"
        mv -f "$tmp" "$dest"
    done < <(find "$src" -type f -print0)
}

# Builds pg_evolve against a pg_config ($1) and installs it with install_tree. Further arguments
# go to `cargo pgrx package` (default: a release build; `--debug` for a debug build).
build_and_install() {
    local pg_config=$1
    shift
    local pkg="${CARGO_TARGET_DIR:-$ROOT/target}/pg_evolve-package"
    rm -rf "$pkg"
    (cd "$ROOT" && cargo pgrx package --pg-config "$pg_config" --out-dir "$pkg" "$@" >/dev/null)
    install_tree "$pkg"
    # The minilm profile's model files, beside the extension's scripts (downloaded once, then
    # copied from the cache; nothing when they are there with the right digests).
    # shellcheck source=scripts/model.sh
    . "$ROOT/scripts/model.sh"
    install_model "$("$pg_config" --sharedir)/extension/pg_evolve_minilm" >/dev/null
}

# Builds the release library and installs it into PostgreSQL's directories.
install_release() {
    step "building and installing pg_evolve (release build: ~5 minutes the first time, seconds when nothing changed)"
    build_and_install "$PG_CONFIG"
}
