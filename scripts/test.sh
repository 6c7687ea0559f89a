#!/usr/bin/env bash
# README command 2: install everything, then run every test tier.
#   1. plain cargo test of the pure crates (evolve-core, evolve-minilm)
#   2. #[pg_test] in-backend tests (cargo pgrx test)
#   3. pg_regress scenarios in pg_test/ on a throwaway cluster
#   4. integration tests in tests/ (several sessions, own clusters, library preloaded)
#   5. PostgreSQL 18 (built from Debian's source by scripts/versions.sh, ~11 minutes the first
#      time): tiers 2, 3 and 4 again
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

step "format, lints and layering"
cargo fmt --all -- --check
python3 "$ROOT/scripts/layers.py"
cargo clippy --workspace --all-targets --features "pg15 pg_test integration" -- -D warnings

step "tier 1: pure logic (cargo test -p evolve-core; the sentence model against its reference vectors)"
cargo test -p evolve-core
# The model's files, installed (or found) by scripts/model.sh; release build: the reference test
# embeds 43 texts, some of 256 tokens.
EVOLVE_MINILM_DIR="$(bash "$ROOT/scripts/model.sh" | tail -n 1)" cargo test -p evolve-minilm --release

step "tier 2: in-backend tests (cargo pgrx test)"
# cargo pgrx test installs its debug build by copying over the installed files, which kills a
# server that has the library loaded: the demo cluster (command 1), if it runs, is stopped for
# this tier and started again once the release build is back in place.
demo_stopped=
restart_demo() {
    if [ -n "$demo_stopped" ]; then
        demo_stopped=
        step "starting the demo cluster again (scripts/cluster.sh)"
        bash "$ROOT/scripts/cluster.sh" start
    fi
}
trap restart_demo EXIT
if bash "$ROOT/scripts/cluster.sh" status; then
    note "stopping the demo cluster while the test build is installed; it is started again after this tier"
    bash "$ROOT/scripts/cluster.sh" stop
    demo_stopped=1
fi
# The harness builds the library again, with other flags, inside its first test (cargo then
# reports that test "running for over 60 seconds"); build it here first, the same way, so the
# tests themselves start at once.
note "building the debug library the test harness installs (~5 minutes the first time, seconds after)"
cargo pgrx package --debug --test --pg-config "$PG_CONFIG" --features "pg15 pg_test" --no-default-features \
    --out-dir "${CARGO_TARGET_DIR:-$ROOT/target}/pg_evolve-test-package" >/dev/null
note "running the #[pg_test] tests (test binary build ~2 minutes the first time; the tests well under a minute)"
PGRX_DATA=/tmp/pg_evolve_pgrx
mkdir -p "$PGRX_DATA" && chown postgres:postgres "$PGRX_DATA"
cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_DATA/data"

# cargo pgrx test installed its debug build; the other tiers use the release build.
install_release
restart_demo

step "tier 3: pg_regress scenarios (pg_test/)"
bash "$ROOT/scripts/regress.sh"

step "tier 4: integration tests (tests/)"
cargo test --features integration --test integration -- --test-threads=2

step "tier 5: PostgreSQL 18 (scripts/versions.sh test 18 --all)"
bash "$ROOT/scripts/versions.sh" test 18 --all

step "all test tiers passed"
