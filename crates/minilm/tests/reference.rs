//! Checks the embedder against reference vectors of all-MiniLM-L6-v2 (tests/data/README.md).
//!
//! Needs the model files: in `EVOLVE_MINILM_DIR`, or by default in `<workspace>/target/minilm-model`
//! where `bash scripts/model.sh` installs them. Without them the test fails, unless
//! `EVOLVE_MINILM_SKIP=1`.

use std::path::PathBuf;

use evolve_minilm::{MiniLm, DIMS, MAX_TOKENS};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    dims: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens: Option<usize>,
    truncated: Option<bool>,
    embedding: Vec<f64>,
}

const MIN_COSINE: f64 = 0.9999;

fn model_dir() -> PathBuf {
    match std::env::var_os("EVOLVE_MINILM_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/minilm-model"),
    }
}

/// The model, or `None` when the files are missing and `EVOLVE_MINILM_SKIP=1`.
fn load(threads: usize) -> Option<MiniLm> {
    let dir = model_dir();
    match MiniLm::load_with_threads(&dir, threads) {
        Ok(model) => Some(model),
        Err(e @ evolve_minilm::LoadError::Missing { .. }) => {
            if std::env::var("EVOLVE_MINILM_SKIP").as_deref() == Ok("1") {
                eprintln!("skipped (EVOLVE_MINILM_SKIP=1): {e}");
                None
            } else {
                panic!(
                    "{e}\nthe reference test needs the model: run `bash scripts/model.sh` \
                     (or set EVOLVE_MINILM_DIR to a directory holding it, or EVOLVE_MINILM_SKIP=1 \
                     to skip this test)"
                );
            }
        }
        Err(e) => panic!("cannot load the model from {}: {e}", dir.display()),
    }
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minilm-reference.json"
    );
    let text = std::fs::read_to_string(path).expect("reading the reference file");
    serde_json::from_str(&text).expect("parsing the reference file")
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Embeds every reference text with `embed(texts)` and checks each vector; returns the lowest
/// cosine.
fn check(label: &str, vectors: &[Vec<f32>], items: &[&Item]) -> f64 {
    assert_eq!(vectors.len(), items.len());
    let mut worst = f64::INFINITY;
    let mut failures = Vec::new();
    for (v, item) in vectors.iter().zip(items) {
        assert_eq!(v.len(), DIMS);
        let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "{label}: norm {norm} for {:?}",
            item.text
        );
        let c = cosine(v, &item.embedding);
        worst = worst.min(c);
        if c.is_nan() || c < MIN_COSINE {
            failures.push(format!("cosine {c:.7} for {:?}", item.text));
        }
    }
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
    eprintln!(
        "{label}: min cosine {worst:.9} (1 - {:.1e}) over {} texts",
        1.0 - worst,
        items.len()
    );
    worst
}

#[test]
fn matches_reference_vectors() {
    let reference = reference();
    assert_eq!(reference.dims, DIMS);
    assert_eq!(reference.max_seq_length, MAX_TOKENS);
    assert_eq!(MiniLm::max_tokens(), MAX_TOKENS);
    for threads in [1, 2] {
        let Some(model) = load(threads) else { return };
        assert_eq!(model.threads(), threads);
        let items: Vec<&Item> = reference.items.iter().collect();
        let items = &items[..];

        for item in items {
            let ids = model.tokenize(&item.text).unwrap();
            if let Some(tokens) = item.tokens {
                assert_eq!(ids.len(), tokens, "token count of {:?}", item.text);
            }
            if let Some(truncated) = item.truncated {
                assert_eq!(ids.len() == MAX_TOKENS, truncated, "{:?}", item.text);
            }
        }

        // Batches of 8: texts of different lengths share a pass.
        let mut batched = Vec::new();
        for chunk in items.chunks(8) {
            let texts: Vec<&str> = chunk.iter().map(|i| i.text.as_str()).collect();
            batched.extend(model.embed_batch(&texts).unwrap());
        }
        check(&format!("batches of 8, {threads} threads"), &batched, items);

        // One at a time.
        let single: Vec<Vec<f32>> = items
            .iter()
            .map(|i| model.embed(&i.text).unwrap())
            .collect();
        check(&format!("one at a time, {threads} threads"), &single, items);

        // All in one batch.
        let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
        let all = model.embed_batch(&texts).unwrap();
        check(
            &format!("one batch of {}, {threads} threads", texts.len()),
            &all,
            items,
        );

        // Three copies in one call: more tokens than one pass takes, so several passes.
        let tripled: Vec<&str> = texts.iter().chain(&texts).chain(&texts).copied().collect();
        let passes = model.embed_batch(&tripled).unwrap();
        for copy in passes.chunks(texts.len()) {
            check(
                &format!("three copies in one call, {threads} threads"),
                copy,
                items,
            );
        }

        // Batching changes nothing beyond float rounding.
        for ((a, b), item) in batched.iter().zip(&single).zip(items) {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-5,
                "batched and single differ by {diff} for {:?}",
                item.text
            );
        }
    }
}

#[test]
fn long_texts_keep_their_first_tokens() {
    let Some(model) = load(2) else { return };
    let reference = reference();
    let filler = " more words, and punctuation; ".repeat(20_000);
    let controls = "\u{1}".repeat(3_000);
    let mut checked = 0;
    for item in reference.items.iter().filter(|i| i.truncated == Some(true)) {
        let want = model.tokenize(&item.text).unwrap();
        assert_eq!(want.len(), MAX_TOKENS);
        let variants = [
            // Tokenised by a prefix of the text at once.
            format!("{}{filler}", item.text),
            // Control characters vanish in normalisation: the first prefix is too short.
            format!("{controls}{}", item.text),
            format!("{controls}{}{filler}", item.text),
        ];
        let texts: Vec<&str> = variants.iter().map(String::as_str).collect();
        for text in &texts {
            assert_eq!(
                model.tokenize(text).unwrap(),
                want,
                "{:?}",
                &item.text[..40]
            );
        }
        let vectors = model.embed_batch(&texts).unwrap();
        check("long variants", &vectors, &[item, item, item]);
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn odd_inputs_do_not_fail() {
    let Some(model) = load(2) else { return };
    let empty = model.embed("").unwrap();
    let blank = model.embed(" \t\n\u{3000}\u{1c}").unwrap();
    assert_eq!(empty, blank);
    assert_eq!(model.tokenize("").unwrap().len(), 2);
    assert!(model.embed_batch(&[]).unwrap().is_empty());

    let long_word = "x".repeat(100_000);
    let many_words = "word ".repeat(50_000);
    let specials = "[CLS] [SEP] [PAD] [MASK] [UNK] ## ##a";
    let controls: String = (0u8..32)
        .map(char::from)
        .chain(['\u{7f}', '\u{fffd}'])
        .collect();
    let mixed = "\u{0}a\u{200b}b\u{feff}c\u{202e}d\u{10ffff}e\u{e000}";
    let texts = [
        long_word.as_str(),
        many_words.as_str(),
        specials,
        controls.as_str(),
        mixed,
        "🍕",
    ];
    let vectors = model.embed_batch(&texts).unwrap();
    for (v, t) in vectors.iter().zip(texts) {
        assert_eq!(v.len(), DIMS);
        assert!(
            v.iter().all(|x| x.is_finite()),
            "non-finite vector for {t:?}"
        );
        assert!(model.tokenize(t).unwrap().len() <= MAX_TOKENS);
    }
    assert_eq!(model.tokenize(&many_words).unwrap().len(), MAX_TOKENS);

    // More than one pass worth of tokens in one call: 40 texts of 256 tokens.
    let batch: Vec<&str> = std::iter::repeat_n(many_words.as_str(), 40).collect();
    let vectors = model.embed_batch(&batch).unwrap();
    assert_eq!(vectors.len(), 40);
    assert!(vectors.iter().all(|v| v == &vectors[0]));
}

#[test]
fn thread_count_can_change() {
    let Some(mut model) = load(1) else { return };
    let text = "entity: earthquake — A seismic event";
    let one = model.embed(text).unwrap();
    model.set_threads(2).unwrap();
    assert_eq!(model.threads(), 2);
    let two = model.embed(text).unwrap();
    let diff = one
        .iter()
        .zip(&two)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "{diff}");
    model.set_threads(0).unwrap();
    assert_eq!(model.threads(), 1);
}
