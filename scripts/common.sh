# Shared by the scripts: paths and the build/install step.
# shellcheck shell=bash
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }

# Builds the release library and installs it into PostgreSQL's directories.
install_release() {
    step "building and installing pg_evolve (release)"
    (cd "$ROOT" && cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null)
}
