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
//!
//! ## Nested records
//!
//! An attribute whose definition declares its structure is written by [path](crate::path)
//! (its text form: `actor.login`, `payload.commits[].sha`) instead of as one JSON value:
//!
//! ```text
//! entity: github_event
//! actor (object): Who acted
//! actor.login (string): User name = "ada"
//! payload.commits[].message (string): Commit message = "fix"
//! payload.commits[].sha (string) = "a1"
//! payload.commits[].sha (string) = "b2"
//! payload.size (integer) = 2
//! payload.note = "an undeclared member"
//! ```
//!
//! - An `object` attribute with declared `properties` whose value is an object: one line per
//!   declared member, in name order, present and not `null`, each written by these same rules
//!   at its path (so at any depth, with the member's own type and description); then one line
//!   per undeclared member not `null`, in name order: `{path} = {value}`.
//! - An `array` attribute whose items are, at any depth of arrays, such an object, and whose
//!   value is an array: each element in order at the path ending `[]`, by these same rules
//!   (an element's lines follow each other; `null` elements write nothing). At most
//!   [`MAX_EXPANDED_ELEMENTS`] elements of such arrays are written in all, the earliest lines
//!   first; an array whose elements were cut ends with `{path}[] … {n} more`.
//! - Either one, when it writes at least one line and has a description, first writes
//!   `{path} ({type}): {description}` (no value), so that its description is embedded too.
//!
//! Anything else is one line as above, at its path: scalars, opaque objects and arrays whose
//! items are not records (arrays of scalars: `tags (array) = ["a","b"]`), a record whose value is
//! not an object (or array), and every remaining snapshot key (an undeclared object stays one
//! JSON value). A definition without declared `properties` therefore writes exactly the text
//! it wrote before nested records existed.

use serde_json::{Map, Value};

use crate::hash::fnv1a64;
use crate::path::Path;
use crate::schema::{AttrType, Attribute, Definition};

/// Dimension of the built-in embedder's vectors.
pub const DEFAULT_DIM: usize = 256;

/// Most elements of arrays of records [`enriched_text`] writes out, over the whole text.
pub const MAX_EXPANDED_ELEMENTS: usize = 32;

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

/// The record an array holds (through any depth of arrays): its items when they are, or lead
/// to, an object with declared properties.
fn holds_records(a: &Attribute) -> Option<&Attribute> {
    let items = a
        .items
        .as_deref()
        .filter(|_| a.attr_type == AttrType::Array)?;
    let mut inner = items;
    loop {
        if inner.is_structured() {
            return Some(items);
        }
        inner = inner.items.as_deref()?;
    }
}

/// How a path is written: a top-level name as it is (as ever), a deeper path in its text form.
fn path_label(path: &Path) -> String {
    match (path.len(), path.last_key()) {
        (1, Some(name)) => name.to_string(),
        _ => one_line(&path.to_string()),
    }
}

/// `{path} ({type})`, then `: {description}` when the attribute has one.
fn attribute_head(path: &Path, attr: &Attribute) -> String {
    let mut line = format!("{} ({})", path_label(path), attr.attr_type.as_str());
    if let Some(d) = description(&attr.description) {
        line.push_str(": ");
        line.push_str(&d);
    }
    line
}

/// Writes the lines of a declared attribute's non-null value at `path` (see the module
/// documentation); `budget` is how many more array elements may be written out.
fn write_attribute(
    path: &Path,
    attr: &Attribute,
    value: &Value,
    lines: &mut Vec<String>,
    budget: &mut usize,
) {
    let mut inner = Vec::new();
    match (value, holds_records(attr)) {
        (Value::Object(members), _) if attr.is_structured() => {
            for (name, member) in &attr.properties {
                if let Some(v) = value_of(members, name) {
                    write_attribute(&path.child(name.as_str()), member, v, &mut inner, budget);
                }
            }
            let mut rest: Vec<(&String, &Value)> = members
                .iter()
                .filter(|(k, v)| !v.is_null() && !attr.properties.contains_key(k.as_str()))
                .collect();
            rest.sort_by(|a, b| a.0.cmp(b.0));
            for (key, v) in rest {
                inner.push(format!("{} = {v}", path_label(&path.child(key.as_str()))));
            }
        }
        (Value::Array(elements), Some(items)) => {
            let at = path.items();
            let mut shown = 0;
            for element in elements {
                if *budget == 0 {
                    break;
                }
                // An element counts before the elements of arrays it holds.
                *budget -= 1;
                shown += 1;
                if !element.is_null() {
                    write_attribute(&at, items, element, &mut inner, budget);
                }
            }
            if shown < elements.len() {
                inner.push(format!(
                    "{} … {} more",
                    path_label(&at),
                    elements.len() - shown
                ));
            }
        }
        _ => {
            lines.push(format!("{} = {value}", attribute_head(path, attr)));
            return;
        }
    }
    if inner.is_empty() {
        return;
    }
    if description(&attr.description).is_some() {
        lines.push(attribute_head(path, attr));
    }
    lines.append(&mut inner);
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

    let mut budget = MAX_EXPANDED_ELEMENTS;
    for (name, attr) in &def.attributes {
        let Some(value) = value_of(snapshot, name) else {
            continue;
        };
        write_attribute(
            &Path::key(name.as_str()),
            attr,
            value,
            &mut lines,
            &mut budget,
        );
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

    fn event() -> Definition {
        Definition::parse(&json!({
            "entity_type": "github_event",
            "attributes": {
                "type": {"type": "string", "description": "Kind of event"},
                "actor": {"type": "object", "description": "Who acted", "properties": {
                    "login": {"type": "string", "description": "User name"},
                    "id": {"type": "integer"}
                }},
                "payload": {"type": "object", "properties": {
                    "size": {"type": "integer"},
                    "labels": {"type": "array", "items": "string"},
                    "head": {"type": "object", "properties": {
                        "ref": {"type": "string", "description": "Branch\nname"}
                    }},
                    "commits": {"type": "array", "description": "Pushed commits", "items": {
                        "type": "object",
                        "properties": {
                            "sha": {"type": "string"},
                            "message": {"type": "string", "description": "Commit message"},
                            "author": {"type": "object", "properties": {
                                "name": {"type": "string"}
                            }}
                        }
                    }}
                }},
                "repo": {"type": "object"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn enriched_text_nested_objects() {
        let snapshot = json!({
            "type": "PushEvent",
            "actor": {"login": "ada", "id": 7, "avatar": "x.png", "gravatar_id": null},
            "payload": {
                "size": 2,
                "labels": ["a", "b"],
                "head": {"ref": "main"},
                "weird key": {"k": 1}
            },
            "repo": {"name": "evolve", "id": 3},
            "org": {"login": "acme"}
        });
        let text = enriched_text(&event(), snapshot.as_object().unwrap());
        assert_eq!(
            text,
            "entity: github_event\n\
             actor (object): Who acted\n\
             actor.id (integer) = 7\n\
             actor.login (string): User name = \"ada\"\n\
             actor.avatar = \"x.png\"\n\
             payload.head.ref (string): Branch name = \"main\"\n\
             payload.labels (array) = [\"a\",\"b\"]\n\
             payload.size (integer) = 2\n\
             payload.\"weird key\" = {\"k\":1}\n\
             repo (object) = {\"name\":\"evolve\",\"id\":3}\n\
             type (string): Kind of event = \"PushEvent\"\n\
             org = {\"login\":\"acme\"}"
        );
        assert_eq!(text, enriched_text(&event(), snapshot.as_object().unwrap()));
    }

    #[test]
    fn enriched_text_nested_nulls_skipped() {
        // Null leaves write nothing; an object with nothing left writes nothing, not even its
        // description line.
        let snapshot = json!({
            "actor": {"login": null, "id": null},
            "payload": {"size": null, "head": {"ref": null}, "commits": [null]},
            "type": null
        });
        assert_eq!(
            enriched_text(&event(), snapshot.as_object().unwrap()),
            "entity: github_event"
        );
        let snapshot = json!({"actor": {"login": null, "id": 1}, "payload": {"head": null}});
        assert_eq!(
            enriched_text(&event(), snapshot.as_object().unwrap()),
            "entity: github_event\nactor (object): Who acted\nactor.id (integer) = 1"
        );
        // A record whose value is not an object is written whole, as any value.
        let snapshot = json!({"actor": "ada", "payload": {"commits": "none"}});
        assert_eq!(
            enriched_text(&event(), snapshot.as_object().unwrap()),
            "entity: github_event\n\
             actor (object): Who acted = \"ada\"\n\
             payload.commits (array): Pushed commits = \"none\""
        );
    }

    #[test]
    fn enriched_text_arrays_of_objects() {
        let snapshot = json!({
            "payload": {
                "commits": [
                    {"sha": "a1", "message": "fix", "author": {"name": "Ada"}},
                    null,
                    {"sha": "b2", "message": null, "url": "u"},
                    "stray"
                ]
            }
        });
        let text = enriched_text(&event(), snapshot.as_object().unwrap());
        assert_eq!(
            text,
            "entity: github_event\n\
             payload.commits (array): Pushed commits\n\
             payload.commits[].author.name (string) = \"Ada\"\n\
             payload.commits[].message (string): Commit message = \"fix\"\n\
             payload.commits[].sha (string) = \"a1\"\n\
             payload.commits[].sha (string) = \"b2\"\n\
             payload.commits[].url = \"u\"\n\
             payload.commits[] (object) = \"stray\""
        );
    }

    #[test]
    fn enriched_text_bounds_array_elements() {
        let many =
            |n: usize| -> Value { (0..n).map(|i| json!({"sha": format!("s{i}")})).collect() };
        let snapshot = json!({"payload": {"commits": many(MAX_EXPANDED_ELEMENTS + 5)}});
        let text = enriched_text(&event(), snapshot.as_object().unwrap());
        let lines: Vec<&str> = text.lines().collect();
        // Head, description line, one line per element written, the cut.
        assert_eq!(lines.len(), 2 + MAX_EXPANDED_ELEMENTS + 1);
        assert_eq!(lines[2], "payload.commits[].sha (string) = \"s0\"");
        assert_eq!(
            lines[1 + MAX_EXPANDED_ELEMENTS],
            format!(
                "payload.commits[].sha (string) = \"s{}\"",
                MAX_EXPANDED_ELEMENTS - 1
            )
        );
        assert_eq!(lines.last().unwrap(), &"payload.commits[] … 5 more");

        // The bound is over the whole text: arrays inside elements share it.
        let def = Definition::parse(&json!({
            "entity_type": "t",
            "attributes": {"rows": {"type": "array", "items": {"type": "object", "properties": {
                "cells": {"type": "array", "items": {"type": "object", "properties": {
                    "v": {"type": "integer"}
                }}}
            }}}}
        }))
        .unwrap();
        let row = json!({"cells": (0..10).map(|v| json!({"v": v})).collect::<Value>()});
        let snapshot = json!({"rows": vec![row; 10]});
        let text = enriched_text(&def, snapshot.as_object().unwrap());
        let values = text.lines().filter(|l| l.contains(" = ")).count();
        let rows = text.lines().filter(|l| l.starts_with("rows[] …")).count();
        // 3 rows and 29 cells are written (each row counts before its cells).
        assert_eq!(values, MAX_EXPANDED_ELEMENTS - 3);
        assert_eq!(rows, 1);
        assert!(
            text.ends_with("rows[].cells[] … 1 more\nrows[] … 7 more"),
            "{text}"
        );
    }
}
