//! Cluster-wide counters in shared memory, read by `evolve.metrics()` (and by a Prometheus
//! exporter through it). Counts of committed work are added when their transaction commits,
//! so a rollback counts nothing; cache lookups are counted as they happen. Without
//! `shared_preload_libraries` there is no shared memory: nothing is counted.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{pg_shmem_init, register_xact_callback, PgAtomic, PgXactCallbackEvent};

/// One counter: its name in `evolve.metrics()` and its help text.
#[derive(Clone, Copy)]
pub enum Counter {
    PayloadsIngested,
    PayloadsRejected,
    FragmentsWritten,
    ProposalsCreated,
    CacheHits,
    CacheMisses,
    EmbeddingsWritten,
    EmbeddingFailures,
    WorkerBatches,
    WorkerBusyMicros,
}

const COUNTERS: usize = 10;

impl Counter {
    const ALL: [Counter; COUNTERS] = [
        Counter::PayloadsIngested,
        Counter::PayloadsRejected,
        Counter::FragmentsWritten,
        Counter::ProposalsCreated,
        Counter::CacheHits,
        Counter::CacheMisses,
        Counter::EmbeddingsWritten,
        Counter::EmbeddingFailures,
        Counter::WorkerBatches,
        Counter::WorkerBusyMicros,
    ];

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Counter::PayloadsIngested => (
                "payloads_ingested_total",
                "Payloads ingested (ingest() and the inbox), counted at commit.",
            ),
            Counter::PayloadsRejected => (
                "payloads_rejected_total",
                "Inbox rows set aside in evolve.inbox_rejects, counted at commit.",
            ),
            Counter::FragmentsWritten => (
                "fragments_written_total",
                "Raw fragment rows written (inserted or updated) by ingestion, counted at commit.",
            ),
            Counter::ProposalsCreated => (
                "proposals_created_total",
                "Schema proposals created by propose_schema, counted at commit.",
            ),
            Counter::CacheHits => (
                "schema_cache_hits_total",
                "active_schema lookups served from a backend's cache, in every backend.",
            ),
            Counter::CacheMisses => (
                "schema_cache_misses_total",
                "active_schema lookups that read the registry, in every backend.",
            ),
            Counter::EmbeddingsWritten => (
                "embeddings_written_total",
                "Entity embeddings written by re-embedding, counted at commit.",
            ),
            Counter::EmbeddingFailures => (
                "embedding_failures_total",
                "Failed embedding attempts (retried or parked), counted at commit.",
            ),
            Counter::WorkerBatches => (
                "worker_batches_total",
                "Non-empty re-embedding batches the background worker committed.",
            ),
            Counter::WorkerBusyMicros => (
                "worker_busy_seconds_total",
                "Time the background worker spent in non-empty batches.",
            ),
        }
    }
}

#[derive(Default)]
pub struct Counters([AtomicU64; COUNTERS]);

// SAFETY: plain atomics, valid at any address and in any process mapping the segment.
unsafe impl PGRXSharedMemory for Counters {}

// SAFETY: the one shared memory segment of this name.
static METRICS: PgAtomic<Counters> = unsafe { PgAtomic::new(c"pg_evolve_metrics") };
/// Set in the postmaster while preloading, inherited by every process it forks.
static READY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Counts of the current transaction, added to the shared ones at commit.
    static PENDING: Cell<[u64; COUNTERS]> = const { Cell::new([0; COUNTERS]) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Reserves the shared memory; from `_PG_init` while preloading only.
pub fn init() {
    // SAFETY: reading a flag PostgreSQL sets while loading shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg_shmem_init!(METRICS = Counters::default());
        READY.store(true, Ordering::Relaxed);
    }
}

/// Adds to a counter now (not transactional).
pub fn add_now(counter: Counter, n: u64) {
    if READY.load(Ordering::Relaxed) && n > 0 {
        METRICS.get().0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }
}

/// Adds to a counter when the current transaction commits (nothing on abort).
pub fn add_at_commit(counter: Counter, n: u64) {
    if !READY.load(Ordering::Relaxed) || n == 0 {
        return;
    }
    PENDING.with(|p| {
        let mut v = p.get();
        v[counter as usize] += n;
        p.set(v);
    });
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    register_xact_callback(PgXactCallbackEvent::Commit, || {
        let pending = PENDING.with(|p| p.replace([0; COUNTERS]));
        REGISTERED.with(|r| r.set(false));
        for (i, n) in pending.iter().enumerate() {
            if *n > 0 {
                METRICS.get().0[i].fetch_add(*n, Ordering::Relaxed);
            }
        }
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || {
        PENDING.with(|p| p.set([0; COUNTERS]));
        REGISTERED.with(|r| r.set(false));
    });
}

/// The cluster-wide counters (since the server started) and this database's queue gauges, in
/// the form a Prometheus exporter reads: name, value, kind (counter or gauge), help.
#[pg_extern(stable, parallel_safe)]
fn metrics() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(value, f64),
        name!(kind, String),
        name!(help, String),
    ),
> {
    let mut rows = Vec::new();
    for c in Counter::ALL {
        let (name, help) = c.describe();
        let raw = if READY.load(Ordering::Relaxed) {
            METRICS.get().0[c as usize].load(Ordering::Relaxed)
        } else {
            0
        };
        let value = match c {
            Counter::WorkerBusyMicros => raw as f64 / 1e6,
            _ => raw as f64,
        };
        rows.push((
            format!("pg_evolve_{name}"),
            value,
            "counter".into(),
            help.into(),
        ));
    }
    let gauges = crate::plans::one::<pgrx::JsonB>(
        "SELECT pg_catalog.jsonb_build_array( \
             (SELECT count(*) FROM evolve.embedding_queue WHERE state = 'queued'), \
             (SELECT count(*) FROM evolve.embedding_queue WHERE state = 'failed'), \
             (SELECT count(*) FROM evolve.schema_proposals WHERE status = 'pending'))",
        &[],
    )
    .map(|j| j.0)
    .unwrap_or_default();
    for (i, (name, help)) in [
        (
            "embedding_queue_queued",
            "Entities waiting to be embedded in this database.",
        ),
        (
            "embedding_queue_parked",
            "Entities parked after evolve.max_embed_attempts in this database.",
        ),
        (
            "proposals_pending",
            "Schema proposals awaiting review in this database.",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        rows.push((
            format!("pg_evolve_{name}"),
            gauges.get(i).and_then(|v| v.as_f64()).unwrap_or(0.0),
            "gauge".into(),
            help.into(),
        ));
    }
    TableIterator::new(rows)
}
