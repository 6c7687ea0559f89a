//! Integration tests against real throwaway clusters with the library preloaded: several
//! sessions, concurrency, invalidation delivery. Run by `scripts/test.sh` after the release
//! build is installed (`cargo test --features integration --test integration`).

mod common;

mod cache;
mod citus;
mod events;
mod freshness;
mod fuzz;
mod governance;
mod ingest;
mod load;
mod metrics;
mod profiles;
mod reference;
mod replica;
mod security;
mod security_audit;
mod security_tenants;
mod trust;
mod upgrade;
mod worker;
