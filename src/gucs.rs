//! Every setting of pg_evolve, in one place. All are named `evolve.*`; the prefix is reserved so
//! that a misspelt setting in postgresql.conf is reported instead of silently ignored.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

static SCHEMA_CACHE_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static NOTIFY_USER_SCOPES: GucSetting<bool> = GucSetting::<bool>::new(false);
static NOTIFY_PGRST: GucSetting<bool> = GucSetting::<bool>::new(false);
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
/// What `semantic_search` does while its entity type has an active re-embedding job.
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum SearchDuringReembed {
    #[name = c"allow"]
    Allow,
    #[name = c"warn"]
    Warn,
    #[name = c"block"]
    Block,
}

static SEARCH_DURING_REEMBED: GucSetting<SearchDuringReembed> =
    GucSetting::<SearchDuringReembed>::new(SearchDuringReembed::Warn);
static INBOX_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1000);
static EMBED_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(100);
static INDEX_REBUILD_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static WORKER_NAPTIME: GucSetting<i32> = GucSetting::<i32>::new(1000);
static MAX_EMBED_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(5);
static EMBED_RETRY_BACKOFF: GucSetting<i32> = GucSetting::<i32>::new(1000);
static EMBEDDING_FUNCTION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static WORKER_DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static MODEL_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static MODEL_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
static MIN_ATTRIBUTE_PRESENCE: GucSetting<f64> = GucSetting::<f64>::new(0.5);
static PROMOTION_MIN_USERS: GucSetting<i32> = GucSetting::<i32>::new(10);
static MAX_PATH_DEPTH: GucSetting<i32> = GucSetting::<i32>::new(16);
static MAX_PATHS_PER_PAYLOAD: GucSetting<i32> = GucSetting::<i32>::new(1000);
static ARRAY_SAMPLE: GucSetting<i32> = GucSetting::<i32>::new(20);
static RATIONALE_FUNCTION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static CURRENT_USER_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn init() {
    GucRegistry::define_int_guc(
        c"evolve.inbox_batch_size",
        c"Inbox rows routed together, in one set of statements.",
        c"A statement's inbox rows are routed in chunks of this many: larger chunks cost fewer statements, smaller ones bound the memory one statement holds.",
        &INBOX_BATCH_SIZE,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"evolve.notify_user_scopes",
        c"Send the evolve_schema and evolve_proposal events of user scopes too.",
        c"Off: only the global scope's. Any role that can connect may LISTEN to a channel, so a user scope's events (its type names and user id) would reach every tenant.",
        &NOTIFY_USER_SCOPES,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"evolve.notify_pgrst",
        c"NOTIFY pgrst, 'reload schema' after an approval that creates a table.",
        c"For PostgREST, which reloads its schema cache on that notification.",
        &NOTIFY_PGRST,
        GucContext::Suset,
        GucFlags::default(),
    );
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
        GucContext::Suset,
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
    GucRegistry::define_enum_guc(
        c"evolve.search_during_reembed",
        c"semantic_search() on a type with an active re-embedding job: allow, warn or block.",
        c"",
        &SEARCH_DURING_REEMBED,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.embed_batch_size",
        c"Entities re-embedded per batch (one transaction each).",
        c"",
        &EMBED_BATCH_SIZE,
        1,
        100_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.index_rebuild_threshold",
        c"No longer used (kept so configurations naming it stay valid).",
        c"Since 0.7.0 a job that re-embeds a whole type fills a generation of its own and builds its vector indexes once; search never loses an index.",
        &INDEX_REBUILD_THRESHOLD,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.worker_naptime",
        c"How long the re-embedding worker sleeps when the queue is empty.",
        c"A transaction that queues work wakes it when it commits: this only bounds how often an idle worker looks.",
        &WORKER_NAPTIME,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"evolve.max_embed_attempts",
        c"Failed embedding attempts after which an entity is parked (see evolve.failed_embeddings).",
        c"",
        &MAX_EMBED_ATTEMPTS,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.embed_retry_backoff",
        c"Delay before the first retry of a failed embedding; doubles with every further attempt.",
        c"",
        &EMBED_RETRY_BACKOFF,
        0,
        86_400_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"evolve.embedding_function",
        c"A SQL function (text → vector) used instead of the built-in embedder.",
        c"Empty: the built-in feature-hashing embedder. Changing it changes every content hash, so the next job re-embeds everything it touches; apply an embedding_function_changed change to re-embed all.",
        &EMBEDDING_FUNCTION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"evolve.model_dir",
        c"The directory of the minilm profile's model files (model.safetensors, tokenizer.json, config.json).",
        c"Empty: the extension's share directory, extension/pg_evolve_minilm, where scripts/setup.sh installs them. Read once per backend, at the first use of the profile.",
        &MODEL_DIR,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.model_threads",
        c"Compute threads of the minilm profile's model in this backend.",
        c"0: one per core (at most 8) in the re-embedding worker and 1 (the backend's own thread, no pool) in every other backend. Takes effect at the next use of the model.",
        &MODEL_THREADS,
        0,
        evolve_minilm::MAX_THREADS as i32,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"evolve.min_attribute_presence",
        c"Share of a type's entities a key must be present in to be proposed above low priority.",
        c"Keys below it are still proposed, at low priority.",
        &MIN_ATTRIBUTE_PRESENCE,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.promotion_min_users",
        c"Users whose schemas must declare a field before it is proposed for the global schema.",
        c"",
        &PROMOTION_MIN_USERS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.max_path_depth",
        c"Deepest path an undeclared nested object is opened to; an object at this depth is kept whole as one raw fragment.",
        c"Declared objects are followed as deep as their definition goes.",
        &MAX_PATH_DEPTH,
        1,
        64,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.max_paths_per_payload",
        c"Most raw fragments one payload yields by opening undeclared objects; an object whose members would pass it is kept whole.",
        c"Top-level keys always count one each, so a payload never yields fewer fragments than it has undeclared keys.",
        &MAX_PATHS_PER_PAYLOAD,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"evolve.array_sample",
        c"Elements of each sampled array that propose_schema looks at to infer what an array holds (its items).",
        c"Arrays are kept whole in observations and fragments; this bounds only the inference.",
        &ARRAY_SAMPLE,
        1,
        100_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"evolve.rationale_function",
        c"A SQL function (text → text) writing a proposal's rationale from its built-in one.",
        c"Empty: the built-in deterministic rationale. The function gets the built-in rationale and the evidence as text; if it fails, the built-in rationale is kept.",
        &RATIONALE_FUNCTION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"evolve.current_user_id",
        c"The tenant of this session: the user whose schemas, fragments, proposals and entities it may see and write.",
        c"Set by the application after it authenticates its user (SET LOCAL per transaction with a pooler). Empty: global rows only. Row-level security and every function enforce it for roles outside evolve_admin.",
        &CURRENT_USER_ID,
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

pub fn notify_pgrst() -> bool {
    NOTIFY_PGRST.get()
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

pub fn promoted_fragment_retention_secs() -> i64 {
    PROMOTED_FRAGMENT_RETENTION.get() as i64
}

pub fn current_user_id() -> Option<String> {
    CURRENT_USER_ID
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
}

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

pub fn search_during_reembed() -> SearchDuringReembed {
    SEARCH_DURING_REEMBED.get()
}

pub fn embed_batch_size() -> i64 {
    EMBED_BATCH_SIZE.get().max(1) as i64
}

pub fn worker_naptime_ms() -> u64 {
    WORKER_NAPTIME.get().max(10) as u64
}

pub fn max_embed_attempts() -> i32 {
    MAX_EMBED_ATTEMPTS.get().max(1)
}

pub fn embed_retry_backoff_ms() -> i64 {
    EMBED_RETRY_BACKOFF.get().max(0) as i64
}

pub fn model_dir() -> Option<String> {
    MODEL_DIR
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
}

/// `evolve.model_threads` (0: automatic, one per core in the worker and 1 elsewhere).
pub fn model_threads() -> usize {
    MODEL_THREADS.get().max(0) as usize
}

pub fn embedding_function() -> Option<String> {
    EMBEDDING_FUNCTION
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
}

pub fn min_attribute_presence() -> f64 {
    MIN_ATTRIBUTE_PRESENCE.get()
}

/// How far ingestion opens undeclared objects into paths.
pub fn path_limits() -> evolve_core::payload::Limits {
    evolve_core::payload::Limits {
        max_depth: MAX_PATH_DEPTH.get().max(1) as usize,
        max_paths: MAX_PATHS_PER_PAYLOAD.get().max(1) as usize,
    }
}

pub fn array_sample() -> usize {
    ARRAY_SAMPLE.get().max(1) as usize
}

pub fn promotion_min_users() -> i64 {
    PROMOTION_MIN_USERS.get() as i64
}

pub fn rationale_function() -> Option<String> {
    RATIONALE_FUNCTION
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
}
