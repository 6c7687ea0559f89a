//! Where the forward pass runs: on the calling thread, or on a thread pool owned by the model.
//!
//! With one thread nothing is spawned: every kernel runs on the caller, which suits a host
//! process that must not have threads of its own. With more, a private rayon pool (never rayon's
//! global one) runs the matrix products and the row-parallel kernels; its threads are named
//! `minilm-N`, are created with every signal blocked (so the host's signal handlers only ever run
//! on its own threads), and end when the model is dropped or its thread count changes.

use rayon::prelude::*;

use crate::LoadError;

/// The environment variable read by [`default_threads`].
pub const THREADS_ENV: &str = "EVOLVE_MINILM_THREADS";

/// Upper bound on compute threads: more than this only adds scheduling overhead for a model this
/// small.
pub const MAX_THREADS: usize = 64;

/// The default number of compute threads: `EVOLVE_MINILM_THREADS` when it holds a positive
/// integer, otherwise the parallelism available to the process (CPU affinity and cgroup quota
/// included), at most 8.
pub fn default_threads() -> usize {
    std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8)
        })
        .min(MAX_THREADS)
}

pub enum Exec {
    Inline,
    Pool {
        pool: rayon::ThreadPool,
        threads: usize,
    },
}

impl Exec {
    pub fn new(threads: usize) -> Result<Exec, LoadError> {
        let threads = threads.clamp(1, MAX_THREADS);
        if threads == 1 {
            return Ok(Exec::Inline);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("minilm-{i}"))
            .spawn_handler(|thread| {
                let mut builder = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    builder = builder.name(name.to_owned());
                }
                if let Some(size) = thread.stack_size() {
                    builder = builder.stack_size(size);
                }
                with_signals_blocked(|| builder.spawn(|| thread.run()))?;
                Ok(())
            })
            .build()
            .map_err(|e| LoadError::Threads {
                threads,
                reason: e.to_string(),
            })?;
        Ok(Exec::Pool { pool, threads })
    }

    pub fn threads(&self) -> usize {
        match self {
            Exec::Inline => 1,
            Exec::Pool { threads, .. } => *threads,
        }
    }

    /// Runs `f` where the kernels are to run, handing it a [`Par`] for them.
    pub fn run<R: Send>(&self, f: impl FnOnce(Par) -> R + Send) -> R {
        match self {
            Exec::Inline => f(Par { threads: 1 }),
            Exec::Pool { pool, threads } => pool.install(|| f(Par { threads: *threads })),
        }
    }
}

/// How kernels split their work: over the current pool when `threads > 1`.
#[derive(Clone, Copy)]
pub struct Par {
    pub threads: usize,
}

impl Par {
    /// Calls `f(first_row, rows)` on consecutive groups of whole rows of `data` (rows of
    /// `width` elements), in parallel when there are threads to share them.
    pub fn rows_mut<F>(self, data: &mut [f32], width: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Send + Sync,
    {
        let rows = data.len() / width.max(1);
        // About four groups per thread, so that an uneven split still keeps every thread busy.
        let per_group = if self.threads > 1 {
            rows.div_ceil(4 * self.threads).max(1)
        } else {
            rows.max(1)
        };
        let chunk = per_group * width.max(1);
        if self.threads > 1 {
            data.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(i * per_group, c));
        } else {
            data.chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(i * per_group, c));
        }
    }

    /// Calls `f` on every item, in parallel when there are threads to share them.
    pub fn each<T: Send, F>(self, items: Vec<T>, f: F)
    where
        F: Fn(T) + Send + Sync,
    {
        if self.threads > 1 {
            items.into_par_iter().for_each(f);
        } else {
            items.into_iter().for_each(f);
        }
    }
}

/// Runs `f` (which spawns a thread) with every signal blocked on the calling thread, then
/// restores the caller's mask. A new thread inherits the mask of the thread that creates it, so
/// the spawned thread starts, and stays, with all signals blocked.
#[cfg(unix)]
fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    let result = f();
    if blocked.is_ok() {
        // Restoring a mask read a moment ago cannot fail.
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    result
}

#[cfg(not(unix))]
fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    f()
}
