#!/usr/bin/env bash
# README command 2: install everything, then run every test tier.
#   1. plain cargo test of the pure crate (evolve-core)
#   2. #[pg_test] in-backend tests (cargo pgrx test)
#   3. pg_regress scenarios in pg_test/ on a throwaway cluster
#   4. integration tests in tests/ (several sessions, own clusters, library preloaded)
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

step "format, lints and layering"
cargo fmt --all -- --check
python3 "$ROOT/scripts/layers.py"
cargo clippy --workspace --all-targets --features "pg15 pg_test integration" -- -D warnings

step "tier 1: pure logic (cargo test -p evolve-core)"
cargo test -p evolve-core

step "tier 2: in-backend tests (cargo pgrx test)"
PGRX_DATA=/tmp/pg_evolve_pgrx
mkdir -p "$PGRX_DATA" && chown postgres:postgres "$PGRX_DATA"
cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_DATA/data"

# cargo pgrx test installed its debug build; the other tiers use the release build.
install_release

step "tier 3: pg_regress scenarios (pg_test/)"
bash "$ROOT/scripts/regress.sh"

step "tier 4: integration tests (tests/)"
cargo test --features integration --test integration -- --test-threads=2

step "all test tiers passed"
