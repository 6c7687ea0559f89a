//! L0: waking the re-embedding worker when a transaction that queued work commits. The worker
//! publishes its proc number in shared memory; the committing backend sets its latch.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PgAtomic};

/// The running worker's proc number plus one (0: none), in shared memory.
// SAFETY: the one shared memory segment of this name.
static WORKER_PROC: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"pg_evolve_worker_proc") };
/// Whether WORKER_PROC exists: set in the postmaster while preloading, inherited by every
/// process it forks. (Without preloading there is no worker to wake.)
static SHMEM_READY: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this transaction asked for a wake-up (one per transaction is enough).
    static PENDING: Cell<bool> = const { Cell::new(false) };
    /// Whether `after_release` is registered in this process.
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Creates the shared state; called from `_PG_init` while preloading.
pub fn init_shmem() {
    pg_shmem_init!(WORKER_PROC = AtomicI32::new(0));
    SHMEM_READY.store(true, Ordering::Relaxed);
}

/// This process's proc number: the index of its PGPROC in ProcGlobal->allProcs.
fn my_proc_number() -> i32 {
    // (PostgreSQL 17 replaced PGPROC.pgprocno with the global MyProcNumber.)
    // SAFETY: MyProc is this backend's PGPROC, set before any extension code runs in it.
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    let n = unsafe { (*pg_sys::MyProc).pgprocno };
    // SAFETY: a process-global integer set once at process start.
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let n = unsafe { pg_sys::MyProcNumber };
    n
}

/// The worker says it runs (its latch may be set) or stops.
pub fn publish_worker(running: bool) {
    let value = if running { my_proc_number() + 1 } else { 0 };
    WORKER_PROC.get().store(value, Ordering::Release);
}

/// Wakes the worker when the current transaction commits (nothing on abort): call it after
/// queuing entities. A wake with nothing to do costs the worker one empty batch.
///
/// The latch is set once the commit has sent its invalidation messages and released its locks
/// (the resource owner's last release phase), not at the commit event: a worker woken earlier
/// could still see the partitioned table of embeddings without a partition the transaction
/// attached.
pub fn wake_at_commit() {
    if !SHMEM_READY.load(Ordering::Relaxed) || PENDING.get() {
        return;
    }
    if !REGISTERED.get() {
        // SAFETY: registers a callback that lives as long as the process (a plain function).
        unsafe {
            pg_sys::RegisterResourceReleaseCallback(Some(after_release), std::ptr::null_mut())
        };
        REGISTERED.set(true);
    }
    PENDING.set(true);
}

#[pg_guard]
unsafe extern "C-unwind" fn after_release(
    phase: pg_sys::ResourceReleasePhase::Type,
    is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if phase != pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS
        || !is_top_level
        || !PENDING.get()
    {
        return;
    }
    PENDING.set(false);
    if !is_commit {
        return;
    }
    let proc = WORKER_PROC.get().load(Ordering::Acquire) - 1;
    // SAFETY: ProcGlobal and its allProcs array live for the whole postmaster lifetime; `proc`
    // was published by the worker as its own index in that array (a stale index after a crash
    // names another PGPROC: setting its latch is only a spurious wakeup).
    unsafe {
        let global = pg_sys::ProcGlobal;
        if proc >= 0 && !global.is_null() && (proc as u32) < (*global).allProcCount {
            pg_sys::SetLatch(&raw mut (*(*global).allProcs.add(proc as usize)).procLatch);
        }
    }
}
