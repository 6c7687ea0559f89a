//! The built-in deterministic embedder and the enriched text it embeds.
//!
//! # Embedding
//!
//! [`embed`] turns a text into a fixed-size, L2-normalized vector by feature hashing. The text is
//! lower-cased and split into tokens, a token being a maximal run of alphanumeric characters
//! (Unicode-aware; everything else separates tokens). The features are:
//!
//! | feature                                             | weight |
//! |-----------------------------------------------------|--------|
//! | each word (unigram)                                 | 1.0    |
//! | each pair of adjacent words (bigram)                | 0.5    |
//! | each character 3-gram of a word padded as `^word$`  | 0.25   |
//!
//! Each feature is hashed with 64-bit FNV-1a over a kind prefix (`w\0`, `b\0` or `c\0`) followed
//! by the feature's UTF-8 bytes (a bigram is the two words joined by one space). The bucket is
//! `hash % dim`; the sign is taken from the top bit of the hash (set: -1, clear: +1), so the
//! bucket and the sign use different bits. The summed vector is divided by its Euclidean norm.
//!
//! A text with no tokens (empty, or only punctuation and spaces) embeds as the all-zero vector,
//! as does the (practically impossible) case where all features cancel out. `dim == 0` gives an
//! empty vector. The result depends only on the text and `dim`: FNV-1a is implemented here, so it
//! is stable across builds, platforms and Rust versions.
//!
//! # Enriched text
//!
//! [`enriched_text`] renders an entity's snapshot together with its schema definition, so that
//! the embedding sees the descriptions as well as the values. The format is, with lines joined
//! by `\n` and no trailing newline:
//!
//! ```text
//! entity: earthquake — A seismic event
//! mag (number): Magnitude = 2.5
//! place (string): Nearest named place = "4km W of Castaic, CA"
//! near -> place: Closest named place = "castaic"
//! felt = 12
//! ```
//!
//! 1. One line for the entity type: `entity: {entity_type}`, followed by ` — {description}`
//!    (an em dash, U+2014) when the type has a description.
//! 2. One line per attribute of the definition, in name order, whose value in the snapshot is
//!    present and not `null`: `{name} ({type})`, then `: {description}` when the attribute has
//!    one, then ` = {value}`.
//! 3. One line per relationship of the definition, in name order, whose value in the snapshot is
//!    present and not `null`: `{name} -> {target}`, then `: {description}` when it has one, then
//!    ` = {value}`.
//! 4. One line per remaining snapshot key (neither an attribute nor a relationship of the
//!    definition), in name order, whose value is not `null`: `{key} = {value}`.
//!
//! `{value}` is the value as compact JSON (`serde_json`'s compact form: strings quoted and
//! escaped, objects keeping their stored key order). An empty description counts as no
//! description. Line breaks (`\r`, `\n`) inside descriptions and snapshot keys are replaced by
//! spaces so that every field stays on one line. The output depends only on its inputs.

use serde_json::{Map, Value};

use crate::hash::fnv1a64;
use crate::schema::Definition;

/// Dimension of the built-in embedder's vectors.
pub const DEFAULT_DIM: usize = 256;

const WEIGHT_UNIGRAM: f64 = 1.0;
const WEIGHT_BIGRAM: f64 = 0.5;
const WEIGHT_TRIGRAM: f64 = 0.25;

/// Lower-cased tokens: maximal runs of alphanumeric characters.
fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds one hashed feature to the accumulator.
fn add_feature(acc: &mut [f64], prefix: &[u8], feature: &[u8], weight: f64) {
    let h = fnv1a64(&[prefix, feature]);
    // `dim` fits in u64 on every supported platform, and the remainder is below `dim`.
    let index = (h % acc.len() as u64) as usize;
    let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
    acc[index] += sign * weight;
}

/// Embeds `text` into a `dim`-dimensional L2-normalized vector; see the module documentation for
/// the features. A text without tokens gives the all-zero vector; `dim == 0` an empty one.
pub fn embed(text: &str, dim: usize) -> Vec<f32> {
    if dim == 0 {
        return Vec::new();
    }
    let mut acc = vec![0.0f64; dim];
    let words = tokens(text);
    for word in &words {
        add_feature(&mut acc, b"w\0", word.as_bytes(), WEIGHT_UNIGRAM);
        let padded: Vec<char> = std::iter::once('^')
            .chain(word.chars())
            .chain(std::iter::once('$'))
            .collect();
        let mut buf = String::new();
        for gram in padded.windows(3) {
            buf.clear();
            buf.extend(gram);
            add_feature(&mut acc, b"c\0", buf.as_bytes(), WEIGHT_TRIGRAM);
        }
    }
    for pair in words.windows(2) {
        let bigram = format!("{} {}", pair[0], pair[1]);
        add_feature(&mut acc, b"b\0", bigram.as_bytes(), WEIGHT_BIGRAM);
    }
    let norm = acc.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        return vec![0.0; dim];
    }
    acc.iter().map(|x| (x / norm) as f32).collect()
}

/// The 64-bit FNV-1a hash of the text's UTF-8 bytes, reinterpreted as a signed integer (to fit a
/// PostgreSQL `bigint`). Used to tell whether a text changed since it was last embedded.
pub fn content_hash(text: &str) -> i64 {
    fnv1a64(&[text.as_bytes()]) as i64
}

/// The cosine similarity of two vectors: their dot product divided by the product of their
/// norms, over the common prefix when the lengths differ. 0 when either vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}

/// Replaces line breaks by spaces so that a field stays on one line.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A description worth writing: present and not empty.
fn description(d: &Option<String>) -> Option<String> {
    d.as_deref().filter(|d| !d.is_empty()).map(one_line)
}

/// The snapshot value of `key`, unless absent or `null`.
fn value_of<'a>(snapshot: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    snapshot.get(key).filter(|v| !v.is_null())
}

/// The text embedded for an entity: its snapshot rendered with the schema's descriptions, in the
/// format documented at the top of this module.
pub fn enriched_text(def: &Definition, snapshot: &Map<String, Value>) -> String {
    let mut lines = Vec::new();

    let mut head = format!("entity: {}", def.entity_type);
    if let Some(d) = description(&def.description) {
        head.push_str(" — ");
        head.push_str(&d);
    }
    lines.push(head);

    for (name, attr) in &def.attributes {
        let Some(value) = value_of(snapshot, name) else {
            continue;
        };
        let mut line = format!("{name} ({})", attr.attr_type.as_str());
        if let Some(d) = description(&attr.description) {
            line.push_str(": ");
            line.push_str(&d);
        }
        line.push_str(" = ");
        line.push_str(&value.to_string());
        lines.push(line);
    }

    for (name, rel) in &def.relationships {
        let Some(value) = value_of(snapshot, name) else {
            continue;
        };
        let mut line = format!("{name} -> {}", rel.target);
        if let Some(d) = description(&rel.description) {
            line.push_str(": ");
            line.push_str(&d);
        }
        line.push_str(" = ");
        line.push_str(&value.to_string());
        lines.push(line);
    }

    let mut extra: Vec<(&String, &Value)> = snapshot
        .iter()
        .filter(|(k, v)| {
            !v.is_null()
                && !def.attributes.contains_key(k.as_str())
                && !def.relationships.contains_key(k.as_str())
        })
        .collect();
    extra.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in extra {
        lines.push(format!("{} = {}", one_line(key), value));
    }

    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: &[f32]) -> f64 {
        v.iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
        assert_eq!(content_hash(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(content_hash("foobar"), 0x8594_4171_f739_67e8_u64 as i64);
        assert_ne!(content_hash("a"), content_hash("b"));
    }

    #[test]
    fn deterministic() {
        let t = "Magnitude 4.2 earthquake near Castaic, California";
        assert_eq!(embed(t, DEFAULT_DIM), embed(t, DEFAULT_DIM));
        assert_eq!(embed(t, 64), embed(t, 64));
        // Case and punctuation do not matter.
        assert_eq!(
            embed("Hello, World!", DEFAULT_DIM),
            embed("hello world", DEFAULT_DIM)
        );
    }

    #[test]
    fn normalized_and_sized() {
        for dim in [1, 7, 64, DEFAULT_DIM, 1000] {
            let v = embed("a small red bird with a long beak", dim);
            assert_eq!(v.len(), dim);
            assert!((norm(&v) - 1.0).abs() < 1e-5, "dim {dim}: {}", norm(&v));
        }
        let v = embed("ünïcödé Straße ÉTÉ 東京", DEFAULT_DIM);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
        assert!(embed("anything", 0).is_empty());
    }

    #[test]
    fn empty_text_is_zero() {
        for t in ["", "   ", "--- ,;!? ..."] {
            let v = embed(t, DEFAULT_DIM);
            assert_eq!(v.len(), DEFAULT_DIM);
            assert!(v.iter().all(|x| *x == 0.0), "{t:?}");
            assert_eq!(cosine(&v, &embed("bird", DEFAULT_DIM)), 0.0);
        }
    }

    #[test]
    fn similar_texts_are_closer() {
        let a = embed(
            "earthquake magnitude 4.2 near Castaic California",
            DEFAULT_DIM,
        );
        let b = embed("earthquake of magnitude 3.9 near Castaic CA", DEFAULT_DIM);
        let c = embed("chocolate cake recipe with butter and sugar", DEFAULT_DIM);
        let ab = cosine(&a, &b);
        let ac = cosine(&a, &c);
        assert!(ab > ac, "{ab} <= {ac}");
        assert!(ab > 0.4, "{ab}");
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        // Shared character 3-grams make inflections similar.
        let birds = cosine(&embed("birds", DEFAULT_DIM), &embed("bird", DEFAULT_DIM));
        let other = cosine(&embed("birds", DEFAULT_DIM), &embed("table", DEFAULT_DIM));
        assert!(birds > other, "{birds} <= {other}");
    }

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[-2.0, 0.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[], &[]), 0.0);
    }

    fn quake() -> Definition {
        Definition::parse(&json!({
            "entity_type": "earthquake",
            "description": "A seismic event",
            "attributes": {
                "place": {"type": "string", "description": "Nearest named place"},
                "mag": {"type": "number", "description": "Magnitude"},
                "depth": {"type": "number"},
                "tags": {"type": "array", "description": ""}
            },
            "relationships": {
                "near": {"target": "place", "description": "Closest named place"},
                "region": {"target": "region"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn enriched_text_format() {
        let snapshot = json!({
            "zeta": true,
            "place": "4km W of Castaic, CA",
            "mag": 2.5,
            "near": "castaic",
            "region": {"id": 7, "code": "CA"},
            "tags": ["a", "b"],
            "felt": 12
        });
        let text = enriched_text(&quake(), snapshot.as_object().unwrap());
        assert_eq!(
            text,
            "entity: earthquake — A seismic event\n\
             mag (number): Magnitude = 2.5\n\
             place (string): Nearest named place = \"4km W of Castaic, CA\"\n\
             tags (array) = [\"a\",\"b\"]\n\
             near -> place: Closest named place = \"castaic\"\n\
             region -> region = {\"id\":7,\"code\":\"CA\"}\n\
             felt = 12\n\
             zeta = true"
        );
        // Same input, same output.
        assert_eq!(text, enriched_text(&quake(), snapshot.as_object().unwrap()));
    }

    #[test]
    fn enriched_text_skips_nulls() {
        let snapshot = json!({"mag": null, "depth": 10, "near": null, "other": null});
        let text = enriched_text(&quake(), snapshot.as_object().unwrap());
        assert_eq!(
            text,
            "entity: earthquake — A seismic event\ndepth (number) = 10"
        );

        let mut def = quake();
        def.description = None;
        def.attributes.get_mut("depth").unwrap().description = Some("Depth\nin km".into());
        let text = enriched_text(&def, &Map::new());
        assert_eq!(text, "entity: earthquake");
        let snapshot = json!({"depth": 3});
        let text = enriched_text(&def, snapshot.as_object().unwrap());
        assert_eq!(text, "entity: earthquake\ndepth (number): Depth in km = 3");
    }
}
