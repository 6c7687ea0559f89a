//! Every setting of pg_evolve, in one place. All are named `evolve.*`; the prefix is reserved so
//! that a misspelt setting in postgresql.conf is reported instead of silently ignored.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

static SCHEMA_CACHE_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static SCHEMA_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024);
static SCHEMA_CACHE_TTL: GucSetting<i32> = GucSetting::<i32>::new(300);
static SIMILARITY_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.85);
static PROMOTED_FRAGMENT_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
/// What happens to a payload whose schema conflict (older version, mismatched types) cannot
/// be resolved by its migration path.
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum MigrationStrategy {
    /// Raise an error (SQLSTATE 22000).
    #[name = c"reject"]
    Reject,
    /// Ingest what fits; the rest becomes raw fragments.
    #[name = c"fragment"]
    Fragment,
    /// Try built-in coercions, then fall back to fragments.
    #[name = c"auto"]
    Auto,
}

static MIGRATION_STRATEGY: GucSetting<MigrationStrategy> =
    GucSetting::<MigrationStrategy>::new(MigrationStrategy::Fragment);
static MAX_MIGRATION_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
static WORKER_DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"evolve.schema_cache_enabled",
        c"Serve active_schema() from the backend-local cache.",
        c"Off makes every lookup read the registry; for comparison and debugging.",
        &SCHEMA_CACHE_ENABLED,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.schema_cache_size",
        c"Most effective schemas one backend keeps cached.",
        c"Least recently used entries are evicted beyond this many.",
        &SCHEMA_CACHE_SIZE,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.schema_cache_ttl",
        c"Age after which a cached schema is read again.",
        c"A backstop only: registry changes invalidate every backend's cache when they commit.",
        &SCHEMA_CACHE_TTL,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_float_guc(
        c"evolve.similarity_threshold",
        c"Name similarity at or above which a new entity type or attribute is flagged for review.",
        c"Normalized Levenshtein similarity of normalized names, between 0 and 1.",
        &SIMILARITY_THRESHOLD,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.promoted_fragment_retention",
        c"How long promoted raw fragments are kept before cleanup deletes them.",
        c"",
        &PROMOTED_FRAGMENT_RETENTION,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_enum_guc(
        c"evolve.migration_strategy",
        c"What to do with a payload whose schema conflict cannot be migrated: reject, fragment or auto.",
        c"reject raises SQLSTATE 22000; fragment ingests what fits and keeps the rest as raw fragments; auto tries built-in coercions first.",
        &MIGRATION_STRATEGY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.max_migration_attempts",
        c"Attempts (migration, then built-in coercions) the auto strategy makes before falling back to fragments.",
        c"",
        &MAX_MIGRATION_ATTEMPTS,
        1,
        100,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"evolve.worker_database",
        c"Database the background worker connects to.",
        c"Empty: the worker is not started.",
        &WORKER_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // SAFETY: called from _PG_init with a valid, NUL-terminated C string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"evolve".as_ptr()) };
}

pub fn schema_cache_enabled() -> bool {
    SCHEMA_CACHE_ENABLED.get()
}

pub fn schema_cache_size() -> usize {
    SCHEMA_CACHE_SIZE.get().max(1) as usize
}

pub fn schema_cache_ttl_ms() -> u64 {
    SCHEMA_CACHE_TTL.get().max(1) as u64 * 1000
}

pub fn similarity_threshold() -> f64 {
    SIMILARITY_THRESHOLD.get()
}

#[allow(dead_code)]
pub fn promoted_fragment_retention_secs() -> i64 {
    PROMOTED_FRAGMENT_RETENTION.get() as i64
}

#[allow(dead_code)]
pub fn worker_database() -> Option<String> {
    WORKER_DATABASE
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
}

pub fn migration_strategy() -> MigrationStrategy {
    MIGRATION_STRATEGY.get()
}

pub fn max_migration_attempts() -> u32 {
    MAX_MIGRATION_ATTEMPTS.get().max(1) as u32
}
