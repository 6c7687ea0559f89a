//! The backend-local cache of effective schemas behind `evolve.active_schema()`.
//!
//! Each backend keeps a bounded LRU (see `evolve_core::cache`) of effective schemas, stored as
//! ready-to-return jsonb bytes. Invalidation follows PostgreSQL's own relcache model: a statement
//! trigger on `evolve.schemas` queues a relcache invalidation for that table; PostgreSQL delivers
//! it to every backend when (and only when) the transaction commits, applies it locally at the
//! next command boundary, and replays it locally on abort. Our relcache callback clears the cache
//! when the message names `evolve.schemas`, or on a full reset (a backend that fell behind the
//! shared invalidation queue receives a reset, with `InvalidOid`). The TTL is only a backstop.
//!
//! No locking is needed: a backend is single-threaded and the cache is thread-local.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use evolve_core::cache::{BoundedCache, CacheStats};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::gucs;

/// Cache key: (entity_type, user_id); `None` is the global scope.
pub type Key = (String, Option<String>);
/// Cached value: the jsonb varlena bytes of the effective schema, or `None` when the type has
/// no active schema (negative entries are cached too).
pub type Value = Option<Box<[u8]>>;

thread_local! {
    static CACHE: RefCell<BoundedCache<Key, Value>> = RefCell::new(BoundedCache::new(gucs::schema_cache_size()));
    /// OID of `evolve.schemas`, looked up lazily; `InvalidOid` until then.
    static REGISTRY_RELID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    static EPOCH: Instant = Instant::now();
}

fn now_ms() -> u64 {
    EPOCH.with(|e| e.elapsed().as_millis() as u64)
}

/// Called from a relcache invalidation: must not touch the catalogs or raise an error.
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let registry = REGISTRY_RELID.with(|r| r.get());
    if relid == pg_sys::InvalidOid || (registry != pg_sys::InvalidOid && relid == registry) {
        if relid != pg_sys::InvalidOid {
            // The table may have been dropped (DROP EXTENSION): look it up again next time.
            REGISTRY_RELID.with(|r| r.set(pg_sys::InvalidOid));
        }
        CACHE.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.invalidate_all()
            }
        });
    }
}

/// Registers the invalidation callback; once per backend, from `_PG_init`.
pub fn init() {
    // SAFETY: registering a callback with a 'static function pointer is what the API is for;
    // the callback itself neither errors nor accesses catalogs.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0))
    };
}

/// The OID of `evolve.schemas` in the current database.
pub fn registry_relid() -> pg_sys::Oid {
    let cached = REGISTRY_RELID.with(|r| r.get());
    if cached != pg_sys::InvalidOid {
        return cached;
    }
    // A read-only query (no transaction id: this runs on hot standbys too).
    let oid = crate::plans::one::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regclass('evolve.schemas')::pg_catalog.oid",
        &[],
    )
    .unwrap_or(pg_sys::InvalidOid);
    REGISTRY_RELID.with(|r| r.set(oid));
    oid
}

/// Looks an effective schema up, computing and storing it on a miss.
pub fn lookup(key: Key, compute: impl FnOnce(&Key) -> Value) -> Value {
    if !gucs::schema_cache_enabled() {
        return compute(&key);
    }
    // Apply any invalidations that arrived since the last command, so a change committed
    // before this statement began is never served stale even inside a long transaction.
    // SAFETY: plain call into PostgreSQL's invalidation processing, as every lock acquisition does.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    // Make sure the relid is known before anything is cached, so its invalidation is recognised.
    registry_relid();
    let now = now_ms();
    let ttl = gucs::schema_cache_ttl_ms();
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.resize(gucs::schema_cache_size());
        c.get(&key, now, ttl).cloned()
    });
    if let Some(v) = hit {
        crate::metrics::add_now(crate::metrics::Counter::CacheHits, 1);
        return v;
    }
    crate::metrics::add_now(crate::metrics::Counter::CacheMisses, 1);
    // An invalidation processed while computing (SPI takes locks, which accepts invalidation
    // messages) may mean the value was read from a snapshot older than the change: return it,
    // but do not cache it.
    let generation = CACHE.with(|c| c.borrow().stats().invalidations);
    // Read with a snapshot taken after the invalidations above were applied: a change it does
    // not see has its invalidation still on the way, so the entry cannot outlive that change.
    // The statement's (or a repeatable-read transaction's) snapshot may predate a change whose
    // invalidation was just consumed, and caching what it sees would serve that change stale.
    // SAFETY: a balanced push/pop; on error, transaction abort resets the snapshot stack.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let value = compute(&key);
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.stats().invalidations == generation {
            c.put(key, value.clone(), now);
        }
    });
    value
}

/// Drops this backend's entries now (the committed-state invalidation reaches others at commit).
pub fn invalidate_local() {
    CACHE.with(|c| c.borrow_mut().invalidate_all());
}

pub fn stats() -> (CacheStats, usize, usize) {
    CACHE.with(|c| {
        let c = c.borrow();
        (c.stats(), c.len(), c.capacity())
    })
}

/// Queues a relcache invalidation of `evolve.schemas`: at commit it reaches every backend, on
/// abort it is discarded (and replayed locally to undo what this transaction cached).
#[pg_extern(volatile, parallel_unsafe, name = "_invalidate_schema_cache")]
fn invalidate_schema_cache() {
    let relid = registry_relid();
    if relid != pg_sys::InvalidOid {
        // SAFETY: relid names an existing relation (just looked up in this transaction).
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    }
    invalidate_local();
}

/// Counters of this backend's schema cache.
#[pg_extern(volatile, parallel_safe)]
fn cache_stats() -> TableIterator<
    'static,
    (
        name!(hits, i64),
        name!(misses, i64),
        name!(invalidations, i64),
        name!(entries, i64),
        name!(capacity, i64),
        name!(evictions, i64),
        name!(expirations, i64),
    ),
> {
    let (s, len, cap) = stats();
    TableIterator::once((
        s.hits as i64,
        s.misses as i64,
        s.invalidations as i64,
        len as i64,
        cap as i64,
        s.evictions as i64,
        s.expirations as i64,
    ))
}
