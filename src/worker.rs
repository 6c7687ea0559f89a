//! The re-embedding background worker. Registered from `_PG_init` when the library is preloaded
//! and `evolve.worker_database` is set. It connects to that database and drains
//! `evolve.embedding_queue` one batch per transaction (the same `evolve._reembed_batch()` that
//! `CALL evolve.run_reembedding()` uses), then sleeps `evolve.worker_naptime` on its latch.
//! A crash loses at most the batch in flight, whose transaction never committed: its queue rows
//! are still there and are simply taken again. SIGHUP reloads settings; SIGTERM exits cleanly.
//! On a hot standby it idles until the server is promoted.
//!
//! A transaction that queues work wakes it when it commits (`crate::wakeup`), so queued
//! entities do not wait for the end of a nap.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::gucs;

pub const WORKER_TYPE: &str = "pg_evolve re-embedding worker";

pub fn register() {
    // SAFETY: reading a flag PostgreSQL sets while loading shared_preload_libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    if !preloading {
        return;
    }
    crate::wakeup::init_shmem();
    if gucs::worker_database().is_none() {
        return;
    }
    BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_function("evolve_worker_main")
        .set_library("pg_evolve")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(2)))
        .load();
}

fn extension_installed() -> bool {
    BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_evolve')",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    })
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn evolve_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = gucs::worker_database().unwrap_or_default();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    crate::wakeup::publish_worker(true);
    crate::model::mark_worker();
    let mut nap = Duration::from_millis(0);
    while BackgroundWorker::wait_latch(Some(nap)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a background worker to reload its configuration.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        nap = Duration::from_millis(gucs::worker_naptime_ms());
        // On a hot standby the queue is the primary's to drain; once promoted, this one's.
        // SAFETY: RecoveryInProgress only reads shared memory state.
        if unsafe { pg_sys::RecoveryInProgress() } || !extension_installed() {
            continue;
        }
        // A distributed database's queue is drained from its coordinator, shard by shard.
        if BackgroundWorker::transaction(crate::shards::on_worker_node) {
            continue;
        }
        // Drain the queue, one committed batch at a time, until it is empty or we must stop.
        while !BackgroundWorker::sigterm_received() {
            let started = std::time::Instant::now();
            let taken = BackgroundWorker::transaction(|| {
                Spi::get_one::<i32>("SELECT evolve._reembed_batch()")
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            });
            if taken == 0 {
                break;
            }
            // Committed: counted now.
            crate::metrics::add_now(crate::metrics::Counter::WorkerBatches, 1);
            crate::metrics::add_now(
                crate::metrics::Counter::WorkerBusyMicros,
                started.elapsed().as_micros() as u64,
            );
        }
    }
    crate::wakeup::publish_worker(false);
}
