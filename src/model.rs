//! L0: the in-process sentence model of the `minilm` profile (all-MiniLM-L6-v2, `evolve-minilm`),
//! loaded once per backend, at its first use, from `evolve.model_dir` (default: the extension's
//! share directory, `extension/pg_evolve_minilm`, where `scripts/setup.sh` installs the files).
//! A failed load is not remembered: installing the files makes the next use work.

use std::cell::OnceCell;
use std::ffi::CStr;
use std::path::PathBuf;

use evolve_core::SqlState;
use evolve_minilm::{LoadError, MiniLm};
use pgrx::pg_sys;

use crate::error::raise;

thread_local! {
    static MODEL: OnceCell<&'static MiniLm> = const { OnceCell::new() };
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

/// The loaded model (loading it at the first call), or an error with its SQLSTATE and a hint.
pub fn minilm() -> &'static MiniLm {
    if let Some(m) = MODEL.with(|m| m.get().copied()) {
        return m;
    }
    let dir = model_dir();
    // The backend computes with one thread beside it per core (the model's own pool, whose
    // threads block every signal and never call into PostgreSQL).
    match MiniLm::load(&dir) {
        Ok(model) => {
            let model: &'static MiniLm = Box::leak(Box::new(model));
            MODEL.with(|m| {
                let _ = m.set(model);
            });
            model
        }
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
