//! L0: the in-process sentence model of the `minilm` profile (all-MiniLM-L6-v2, `evolve-minilm`),
//! loaded once per backend, at its first use, from `evolve.model_dir` (default: the extension's
//! share directory, `extension/pg_evolve_minilm`, where `scripts/setup.sh` installs the files).
//! A failed load is not remembered: installing the files makes the next use work.
//!
//! Threads: `evolve.model_threads` (0, the default: the background worker computes with one
//! thread per core, up to 8, and every other backend on its own thread alone, so that sessions
//! calling `evolve.embed` or searching do not each keep a pool of threads). The model's threads
//! block every signal and never call into PostgreSQL.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::path::PathBuf;

use evolve_core::SqlState;
use evolve_minilm::{LoadError, MiniLm};
use pgrx::pg_sys;

use crate::error::raise;

thread_local! {
    static MODEL: RefCell<Option<Box<MiniLm>>> = const { RefCell::new(None) };
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Marks this backend as the re-embedding worker (for the automatic thread count).
pub fn mark_worker() {
    IN_WORKER.with(|w| w.set(true));
}

/// The compute threads this backend uses: `evolve.model_threads`, or when it is 0, one per core
/// (up to 8) in the worker and one elsewhere.
pub fn threads() -> usize {
    match crate::gucs::model_threads() {
        0 if IN_WORKER.with(Cell::get) => evolve_minilm::default_threads(),
        0 => 1,
        n => n,
    }
}

/// The identity of the model in content hashes.
pub const MINILM_ID: &str = "minilm-all-MiniLM-L6-v2-384";

/// Where the model files are read from.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = crate::gucs::model_dir() {
        return PathBuf::from(dir);
    }
    let mut buf = [0 as std::ffi::c_char; pg_sys::MAXPGPATH as usize];
    // SAFETY: my_exec_path is the backend's executable path (set at start); get_share_path
    // writes a NUL-terminated path of at most MAXPGPATH bytes into `buf`.
    let share = unsafe {
        pg_sys::get_share_path(
            std::ptr::addr_of!(pg_sys::my_exec_path).cast(),
            buf.as_mut_ptr(),
        );
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    PathBuf::from(share)
        .join("extension")
        .join("pg_evolve_minilm")
}

/// Runs `f` with the loaded model (loading it at the first call, and setting its threads to
/// [`threads`]), or raises an error with its SQLSTATE and a hint.
pub fn with_minilm<R>(f: impl FnOnce(&MiniLm) -> R) -> R {
    MODEL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let wanted = threads();
        let model = match slot.as_mut() {
            Some(model) => model,
            None => slot.insert(Box::new(load(wanted))),
        };
        if let Err(e) = model.set_threads(wanted) {
            raise(
                SqlState::InsufficientResources,
                format!("cannot start the minilm profile's threads: {e}"),
                None,
                Some("Lower evolve.model_threads (1 computes on the backend's own thread).".into()),
            );
        }
        f(model)
    })
}

fn load(threads: usize) -> MiniLm {
    let dir = model_dir();
    match MiniLm::load_with_threads(&dir, threads) {
        Ok(model) => model,
        Err(e @ LoadError::Missing { .. }) => raise(
            SqlState::UndefinedFile,
            format!("the minilm profile's model is not installed: {e}"),
            Some("The profile runs sentence-transformers/all-MiniLM-L6-v2 in the backend from model.safetensors, tokenizer.json and config.json.".into()),
            Some(format!(
                "Install them with bash scripts/model.sh {} (scripts/setup.sh does it), or point evolve.model_dir at a directory holding them.",
                dir.display()
            )),
        ),
        Err(e) => raise(
            SqlState::IoError,
            format!("cannot load the minilm profile's model: {e}"),
            None,
            Some("Install the files again with bash scripts/model.sh (it checks their digests).".into()),
        ),
    }
}
