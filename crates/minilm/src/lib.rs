//! In-process sentence embeddings with **sentence-transformers/all-MiniLM-L6-v2**, in pure Rust.
//!
//! [`MiniLm::load`] reads the three files of the published model from a directory
//! (`model.safetensors`, `tokenizer.json`, `config.json`; `scripts/model.sh` installs them), and
//! [`MiniLm::embed_batch`] turns texts into 384-dimensional unit vectors that match
//! `SentenceTransformer("all-MiniLM-L6-v2").encode(texts)` to float32 precision.
//!
//! # The pipeline
//!
//! For each text, as sentence-transformers does it for this model:
//!
//! 1. **Strip** leading and trailing whitespace, with Python's `str.strip()` notion of
//!    whitespace ([`strip`]).
//! 2. **Tokenise** with the WordPiece tokenizer of `tokenizer.json` (BERT normalisation:
//!    lowercasing, accent handling, CJK splitting; unknown pieces become `[UNK]`), framed as
//!    `[CLS] … [SEP]` and **truncated to [`MAX_TOKENS`] (256) tokens counting `[CLS]` and
//!    `[SEP]`**. `tokenizer.json` itself asks for truncation at 128 and fixed padding to 128;
//!    sentence-transformers overrides both, and so does this crate. An empty or whitespace-only
//!    text is just `[CLS] [SEP]`. All token type ids are 0.
//! 3. **Encode** with the 6-layer BERT encoder (hidden size 384, 12 heads, exact erf GELU,
//!    layer-norm epsilon 1e-12).
//! 4. **Mean-pool** the last hidden states over the text's tokens (its attention mask) and
//!    **L2-normalise** the mean.
//!
//! A batch runs as one forward pass. Its texts are packed end to end instead of being padded to
//! the longest one: the result is what a padded batch with an attention mask gives, without the
//! work on padding (see the `model` module). Batches over 2048 tokens (e.g. 32 texts of 64
//! tokens) are split into several passes of whole texts, which bounds the working memory; since
//! texts never interact, that changes no result.
//!
//! # Threads and memory
//!
//! The compute thread count is set at load ([`MiniLm::load_with_threads`], default
//! [`default_threads`]: `EVOLVE_MINILM_THREADS` or the available parallelism) and can be changed
//! with [`MiniLm::set_threads`]. One thread means no thread is ever spawned; more means a pool
//! private to the model whose threads block all signals and end with it. The weights take about
//! 86 MiB (the tokenizer a few more); a pass needs about 17 KiB per token on top (32 texts of 50
//! tokens: 27 MiB; at most 34 MiB), allocated when it starts and freed when it returns.
//!
//! # Errors
//!
//! Loading tells missing files ([`LoadError::Missing`], listing them) from unreadable
//! ([`LoadError::Unreadable`]) and malformed ones ([`LoadError::Corrupt`]). Embedding never
//! panics on any text: a failure of the tokenizer, or an internal fault, is an [`EmbedError`].

mod kernels;
mod model;
mod text;
mod threads;
mod weights;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use text::strip;
pub use threads::{default_threads, MAX_THREADS, THREADS_ENV};

/// Dimensions of an embedding.
pub const DIMS: usize = 384;

/// Most tokens embedded per text, `[CLS]` and `[SEP]` included (sentence-transformers'
/// `max_seq_length` for this model); the rest of a longer text is ignored.
pub const MAX_TOKENS: usize = 256;

/// The files [`MiniLm::load`] reads from its directory.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// Most tokens run through one forward pass; larger batches are split into passes.
const MAX_PASS_TOKENS: usize = 2048;

/// Why [`MiniLm::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Some model files are not in the directory (or the directory itself is missing).
    #[error("model files missing from {}: {}", dir.display(), missing.join(", "))]
    Missing {
        dir: PathBuf,
        missing: Vec<&'static str>,
    },
    /// A file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but is not what this model needs (truncated, malformed, other model).
    #[error("{} is not a usable all-MiniLM-L6-v2 file: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The compute threads could not be started.
    #[error("cannot start {threads} compute threads: {reason}")]
    Threads { threads: usize, reason: String },
}

impl LoadError {
    fn unreadable(path: &Path, source: std::io::Error) -> LoadError {
        LoadError::Unreadable {
            path: path.to_owned(),
            source,
        }
    }

    /// A read that failed part-way: a file shorter than its header says is corrupt, anything
    /// else is an I/O failure.
    fn read_failed(path: &Path, source: std::io::Error) -> LoadError {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            LoadError::corrupt(path, "file ends early (truncated)".to_owned())
        } else {
            LoadError::unreadable(path, source)
        }
    }

    fn corrupt(path: &Path, reason: String) -> LoadError {
        LoadError::Corrupt {
            path: path.to_owned(),
            reason,
        }
    }
}

/// Why [`MiniLm::embed_batch`] failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The tokenizer rejected a text.
    #[error("cannot tokenize text: {0}")]
    Tokenize(String),
    /// An internal fault (a bug): the computation stopped and was abandoned.
    #[error("internal error in the embedder: {0}")]
    Internal(String),
}

/// The loaded model: tokenizer, encoder weights and compute threads. Immutable once loaded
/// except for its thread count; it is `Send` and `Sync`.
pub struct MiniLm {
    encoder: text::TextEncoder,
    model: model::Encoder,
    exec: threads::Exec,
    load_time: std::time::Duration,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("threads", &self.threads())
            .field("weight_bytes", &self.weight_bytes())
            .finish_non_exhaustive()
    }
}

impl MiniLm {
    /// Loads the model from `dir` with [`default_threads`] compute threads.
    pub fn load(dir: &Path) -> Result<MiniLm, LoadError> {
        MiniLm::load_with_threads(dir, default_threads())
    }

    /// Loads the model from `dir` with `threads` compute threads (clamped to
    /// 1..=[`MAX_THREADS`]; 1 runs everything on the calling thread).
    pub fn load_with_threads(dir: &Path, threads: usize) -> Result<MiniLm, LoadError> {
        let started = Instant::now();
        let missing: Vec<&'static str> = MODEL_FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::Missing {
                dir: dir.to_owned(),
                missing,
            });
        }
        let config = weights::Config::read(&dir.join("config.json"))?;
        let encoder = text::TextEncoder::load(&dir.join("tokenizer.json"), config.vocab_size)?;
        let weights = weights::read_weights(&dir.join("model.safetensors"), &config)?;
        let exec = threads::Exec::new(threads)?;
        Ok(MiniLm {
            encoder,
            model: model::Encoder { config, weights },
            exec,
            load_time: started.elapsed(),
        })
    }

    /// Most tokens embedded per text (256, `[CLS]` and `[SEP]` included).
    pub fn max_tokens() -> usize {
        MAX_TOKENS
    }

    /// Compute threads in use.
    pub fn threads(&self) -> usize {
        self.exec.threads()
    }

    /// Changes the number of compute threads (clamped to 1..=[`MAX_THREADS`]). The old pool's
    /// threads end; with 1 no thread is kept.
    pub fn set_threads(&mut self, threads: usize) -> Result<(), LoadError> {
        if threads.clamp(1, MAX_THREADS) != self.threads() {
            // Drop the old pool first, so that both never exist at once.
            self.exec = threads::Exec::Inline;
            self.exec = threads::Exec::new(threads)?;
        }
        Ok(())
    }

    /// Bytes held by the encoder's weights (the tokenizer's vocabulary comes on top).
    pub fn weight_bytes(&self) -> usize {
        self.model.weights.bytes()
    }

    /// How long [`MiniLm::load`] took.
    pub fn load_time(&self) -> std::time::Duration {
        self.load_time
    }

    /// The token ids the model sees for `text`: stripped, tokenised, `[CLS] … [SEP]`, at most
    /// [`MAX_TOKENS`] of them.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        catch(|| self.encoder.encode(text))?
    }

    /// The embedding of one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = self.embed_batch(&[text])?;
        v.pop()
            .ok_or_else(|| EmbedError::Internal("no vector for the text".to_owned()))
    }

    /// The embeddings of `texts`, in order: [`DIMS`] floats each, of unit length. The batch runs
    /// as one forward pass (passes of at most 2048 tokens for larger batches).
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        catch(|| {
            let seqs = texts
                .iter()
                .map(|t| self.encoder.encode(t))
                .collect::<Result<Vec<_>, _>>()?;
            let vocab = self.model.config.vocab_size;
            if seqs.iter().flatten().any(|id| *id as usize >= vocab) {
                return Err(EmbedError::Internal(
                    "the tokenizer produced an id outside the model's vocabulary".to_owned(),
                ));
            }
            let mut out = Vec::with_capacity(texts.len());
            let mut rest = &seqs[..];
            while !rest.is_empty() {
                let mut n = 0;
                let mut tokens = 0;
                while n < rest.len() && (n == 0 || tokens + rest[n].len() <= MAX_PASS_TOKENS) {
                    tokens += rest[n].len();
                    n += 1;
                }
                let (pass, tail) = rest.split_at(n);
                let mut scratch = model::Scratch::new(&self.model.config, tokens);
                out.extend(
                    self.exec
                        .run(|par| self.model.forward(pass, &mut scratch, par)),
                );
                rest = tail;
            }
            Ok(out)
        })?
    }
}

/// Runs `f`, turning a panic inside it (a bug; panics on worker threads reach here too) into
/// [`EmbedError::Internal`].
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, EmbedError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        EmbedError::Internal(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_listed() {
        let dir = std::env::temp_dir().join(format!("minilm-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        match MiniLm::load(&dir) {
            Err(LoadError::Missing { missing, .. }) => {
                assert_eq!(missing, vec!["model.safetensors", "tokenizer.json"])
            }
            other => panic!("expected Missing, got {other:?}"),
        }
        let err = MiniLm::load(&dir.join("nowhere")).unwrap_err();
        assert!(matches!(err, LoadError::Missing { ref missing, .. } if missing.len() == 3));
        assert!(err
            .to_string()
            .contains("model.safetensors, tokenizer.json, config.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_reported_as_corrupt() {
        let dir = std::env::temp_dir().join(format!("minilm-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in MODEL_FILES {
            std::fs::write(dir.join(f), "not json").unwrap();
        }
        let err = MiniLm::load(&dir).unwrap_err();
        assert!(
            matches!(err, LoadError::Corrupt { ref path, .. } if path.ends_with("config.json")),
            "{err:?}"
        );
        std::fs::write(
            dir.join("config.json"),
            r#"{"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 6,
                "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512}"#,
        )
        .unwrap();
        let err = MiniLm::load(&dir).unwrap_err();
        assert!(err.to_string().contains("hidden_size is 768"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MiniLm>();
    }

    #[test]
    fn catch_turns_panics_into_errors() {
        let r: Result<(), EmbedError> = catch(|| panic!("boom"));
        assert!(matches!(r, Err(EmbedError::Internal(m)) if m == "boom"));
    }

    #[test]
    fn thread_pool_runs_kernels() {
        let exec = threads::Exec::new(2).unwrap();
        assert_eq!(exec.threads(), 2);
        let names = exec.run(|par| {
            let mut data = vec![0f32; 64];
            par.rows_mut(&mut data, 4, |first, rows| {
                for (i, r) in rows.chunks_exact_mut(4).enumerate() {
                    r.fill((first + i) as f32);
                }
            });
            assert!(data
                .chunks_exact(4)
                .enumerate()
                .all(|(i, r)| r[3] == i as f32));
            std::thread::current().name().map(str::to_owned)
        });
        assert!(names.unwrap().starts_with("minilm-"));
        assert_eq!(threads::Exec::new(0).unwrap().threads(), 1);
    }
}
