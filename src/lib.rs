//! pg_evolve: a living schema registry for JSON data, inside PostgreSQL.
//!
//! The pure logic lives in the `evolve-core` crate; these modules move data between it and
//! PostgreSQL.

#![deny(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

mod access;
mod args;
mod arrays;
mod cache;
mod embedders;
mod error;
mod extraction;
mod fragments;
mod freshness;
mod generations;
mod governance;
mod gucs;
mod impact;
mod ingest;
mod interop;
mod jsonb;
mod maintenance;
mod metrics;
mod migration;
mod model;
mod plans;
mod projections;
mod proposals;
mod reembed;
mod registry;
mod review;
mod shards;
mod snapshots;
mod store;
mod userfn;
mod vectors;
mod wakeup;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/registry.sql", name = "registry", bootstrap);
extension_sql_file!(
    "../sql/registry_cache.sql",
    name = "registry_cache",
    requires = ["registry", cache::invalidate_schema_cache]
);
extension_sql_file!(
    "../sql/governance.sql",
    name = "governance",
    requires = ["registry_cache"]
);
extension_sql_file!(
    "../sql/ingest.sql",
    name = "ingest",
    requires = [
        "governance",
        fragments::fragment_transition_allowed,
        ingest::route_inbox_rows
    ]
);
extension_sql_file!(
    "../sql/migration.sql",
    name = "migration",
    requires = ["ingest"]
);
extension_sql_file!(
    "../sql/aggregates.sql",
    name = "aggregates",
    requires = [
        "ingest",
        fragments::dominant_type,
        fragments::type_consistency,
        fragments::count_keys,
        fragments::count_object,
        fragments::add_counts,
        fragments::merge_samples
    ]
);

extension_sql_file!(
    "../sql/embedding.sql",
    name = "embedding",
    requires = [
        "aggregates",
        "migration",
        reembed::reembed_batch,
        embedders::embed_builtin
    ]
);

extension_sql_file!(
    "../sql/proposals.sql",
    name = "proposals",
    requires = [
        "embedding",
        proposals::propose_schema,
        review::approve_proposal,
        review::reject_proposal,
        review::rollback_proposal
    ]
);

// 0.2.0's privileges and tenant isolation. The upgrade script from 0.1.0 is also the end of a
// fresh install, so an upgraded database and a new one cannot differ. It needs every routine
// it grants on or alters.
extension_sql_file!(
    "../sql/pg_evolve--0.1.0--0.2.0.sql",
    name = "v0_2_0",
    requires = [
        "proposals",
        registry::register_schema,
        registry::update_schema_incremental,
        registry::activate_schema,
        registry::deactivate_schema,
        store::active_schema,
        governance::schema_at,
        governance::schema_diff,
        governance::check_compatibility,
        governance::set_quota,
        governance::set_compatibility,
        registry::resolve_conflict,
        review::schema_diagram,
        fragments::field_confidence,
        fragments::promote_fragments,
        fragments::archive_stale_fragments,
        fragments::cleanup_expired_fragments,
        migration::migrate_payload,
        migration::register_migration,
        ingest::ingest,
        snapshots::entity,
        snapshots::refresh_snapshot,
        vectors::enriched_text,
        vectors::semantic_search,
        impact::analyze_impact,
        impact::apply_change,
        reembed::retry_failed,
        cache::cache_stats,
        maintenance::schedule_maintenance
    ]
);
// 0.3.0: trust (see the file's header). Also the end of a fresh install, like 0.2.0's.
extension_sql_file!(
    "../sql/pg_evolve--0.2.0--0.3.0.sql",
    name = "v0_3_0",
    requires = [
        "v0_2_0",
        access::calling_role,
        access::session_tenant,
        access::invalidate_tenant_cache
    ]
);
// 0.4.0: ingest speed (see the file's header). The end of a fresh install too.
extension_sql_file!(
    "../sql/pg_evolve--0.3.0--0.4.0.sql",
    name = "v0_4_0",
    requires = [
        "v0_3_0",
        fragments::backend_slot,
        fragments::aggregates_by_caller
    ]
);
// 0.5.0: a proposal's verdict before approval (see the file's header). The end of a fresh
// install too.
extension_sql_file!(
    "../sql/pg_evolve--0.4.0--0.5.0.sql",
    name = "v0_5_0",
    requires = [
        "v0_4_0",
        review::approve_proposal_forcible,
        metrics::metrics,
        maintenance::unschedule_maintenance
    ]
);
// 0.6.0: nested JSON by path (see the file's header). The end of a fresh install too.
extension_sql_file!(
    "../sql/pg_evolve--0.5.0--0.6.0.sql",
    name = "v0_6_0",
    requires = [
        "v0_5_0",
        interop::export_schema,
        interop::import_schema,
        projections::create_projection,
        projections::drop_projection
    ]
);
// 0.7.0: embeddings follow the data; generations (see the file's header). The end of a fresh
// install too.
extension_sql_file!(
    "../sql/pg_evolve--0.6.0--0.7.0.sql",
    name = "v0_7_0",
    requires = [
        "v0_6_0",
        vectors::semantic_search,
        embedders::embed_profile,
        reembed::reembed_batch,
        impact::apply_change
    ]
);
// 0.8.0: function profiles (see the file's header). The end of a fresh install too.
extension_sql_file!(
    "../sql/pg_evolve--0.7.0--0.8.0.sql",
    name = "v0_8_0",
    requires = ["v0_7_0", embedders::resolve_embedding_function]
);
// 0.9.0: the keys of observations and raw fragments lead with entity_id (see the file's
// header). The end of a fresh install too.
extension_sql_file!(
    "../sql/pg_evolve--0.8.0--0.9.0.sql",
    name = "v0_9_0",
    requires = ["v0_8_0", fragments::aggregates_by_caller]
);
// 0.10.0: a layout Citus can distribute as installed (see the file's header). The end of a
// fresh install too.
extension_sql_file!(
    "../sql/pg_evolve--0.9.0--0.10.0.sql",
    name = "v0_10_0",
    requires = ["v0_9_0"]
);
extension_sql_file!("../sql/comments.sql", name = "comments", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Errors never carry a Rust backtrace to the client, whatever the server's environment
    // (RUST_BACKTRACE would otherwise add one to the DETAIL of every caught error). The
    // standard library reads this once, at the first capture, which has not happened yet.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    gucs::init();
    cache::init();
    access::init();
    metrics::init();
    worker::register();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    // In-backend tests (`cargo pgrx test`); #[pg_schema] needs an inline module.
    include!("tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_evolve'"]
    }
}
