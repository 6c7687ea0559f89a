//! Every setting of pg_evolve, in one place. All are named `evolve.*`; the prefix is reserved so
//! that a misspelt setting in postgresql.conf is reported instead of silently ignored.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

static SCHEMA_CACHE_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static SCHEMA_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024);
static SCHEMA_CACHE_TTL: GucSetting<i32> = GucSetting::<i32>::new(300);
static SIMILARITY_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.85);
static PROMOTED_FRAGMENT_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
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
