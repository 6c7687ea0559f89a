//! Evidence for proposals: the evidence behind an undeclared key, its priority, temporal and
//! reference detection, stable fingerprints and the re-proposal rule.
//!
//! # Evidence ([`attribute_evidence`])
//!
//! The input is the aggregate of one undeclared key ([`KeyStats`]: `sample_count` fragment rows,
//! one per entity having the key, null values included; `type_counts` a count map over the type
//! names of [`crate::infer::value_type`]) and the number of entities of the type.
//!
//! - Only positive counts are used; a key with no non-null count gives `None` (nothing to
//!   propose).
//! - `inferred_type` and `type_consistency` are those of [`TypeHistogram::infer`], the same
//!   rule the `dominant_type`/`type_consistency` aggregate columns and the validator use:
//!   integers and numbers together give `number` (integers count for it); dates and timestamps
//!   together give `timestamp`. Consistency is the share of the non-null values that would
//!   *conform* to the inferred type once declared, so a bare date does not count for
//!   `timestamp` (the validator rejects it there) while an integer does (epoch milliseconds).
//!   Otherwise the most frequent type wins, ties by the number of conforming values, then by
//!   the order string, number, integer, boolean, timestamp, date, object, array.
//! - `entities_with_value` is the sum of the non-null counts.
//! - `entity_count` is `max(entity_count given, entities_with_value)`, so that presence stays
//!   in [0, 1] even when the two counts were read at different moments.
//! - `presence = entities_with_value / entity_count`.
//! - `null_rate = null count / sample_count` (0 when `sample_count` ≤ 0), clamped to [0, 1].
//! - `confidence = type_consistency × (0.7 × presence + 0.3 × min(unique_sources, 3) / 3)`.
//! - `histogram` is the positive counts of `type_counts` (nulls included); `samples` the
//!   non-null sample values, at most [`MAX_SAMPLES`].
//!
//! # Priority ([`priority`])
//!
//! `high` when `presence ≥ min_presence` and `confidence ≥ 0.8`; `medium` when
//! `presence ≥ min_presence`, or when `presence ≥ min_presence / 2` and `confidence ≥ 0.8`;
//! `low` otherwise. Keys below the threshold are still proposed, at low priority.
//!
//! # Temporal keys ([`is_temporal`])
//!
//! A key is temporal when its inferred type is `timestamp` or `date`, or when its inferred type
//! is `integer`, it has at least one sample, every sample is an integer in
//! [946684800000, 4102444800000) (epoch milliseconds from 2000-01-01 to 2100-01-01 UTC), and its
//! name suggests time: case-insensitively it contains `time`, `updated`, `created`, `date`,
//! `timestamp`, `seen` or `epoch`, or one of its words is `at` (`created_at`, `updatedAt`:
//! words are split at non-alphanumeric characters and at lower-to-upper-case changes).
//!
//! # References ([`references`])
//!
//! The candidate values are the string samples and the number samples (as their JSON text,
//! `42`); other samples are ignored, and no candidate gives `None`. For every known entity
//! type, the share is the fraction of candidates that are among its entity keys. The type with
//! the largest share wins (ties: a type the key's name hints at, then the smaller type name);
//! it is returned when its share is ≥ 0.5. Otherwise a type the name hints at is returned when
//! its share is ≥ 0.2. The name hints at type `t` when the key equals `t`, `t_id` or `tId`,
//! compared case-insensitively. The entity type of the key itself is not excluded (a
//! `parent_id` may refer to its own type); the caller filters when it wants to.
//!
//! # Fingerprints and re-proposal
//!
//! [`fingerprint`] is FNV-1a 64 over `kind`, `entity_type`, `user_id` (empty when `None`) and
//! `name` joined by U+001F, as 16 lower-case hex digits: stable across releases and platforms.
//! A 64-bit hash can collide, and a key can be searched for that makes it collide: the SQL layer
//! therefore never identifies a proposal by its fingerprint alone but by (user_id, fingerprint),
//! so that equal fingerprints of two scopes are two proposals.
//! [`should_repropose`]: a rejected proposal comes back only when
//! `current ≥ rejected × factor − 1e-9` (the slack absorbs floating-point rounding: `0.6`
//! reaches `0.4 × 1.5`) and `current > rejected` (so that a rejected presence of 0
//! does not bring it back at 0); a non-finite input never brings it back. The default factor
//! is [`REPROPOSE_FACTOR`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::aggregate::MAX_SAMPLES;
use crate::hash::fnv1a_joined;
use crate::infer::TypeHistogram;
use crate::schema::AttrType;

/// A rejected proposal comes back when its evidence has grown by this factor.
pub const REPROPOSE_FACTOR: f64 = 1.5;

/// Confidence at or above which a proposal counts as well supported.
pub const HIGH_CONFIDENCE: f64 = 0.8;

/// Epoch milliseconds of 2000-01-01T00:00:00Z (inclusive lower bound of plausible times).
pub const EPOCH_MS_MIN: i64 = 946_684_800_000;
/// Epoch milliseconds of 2100-01-01T00:00:00Z (exclusive upper bound of plausible times).
pub const EPOCH_MS_MAX: i64 = 4_102_444_800_000;

/// The aggregate of one undeclared key, as kept in `evolve.raw_fragment_aggregates`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyStats {
    pub key: String,
    /// Entities having the key, null values included.
    pub sample_count: i64,
    pub frequency_total: i64,
    /// `{value_type: count}`.
    pub type_counts: BTreeMap<String, i64>,
    pub unique_sources: i64,
    /// Up to 10 distinct non-null values.
    pub sample_values: Vec<Value>,
}

/// Proposals share the high/medium/low scale of impact analysis.
pub use crate::impact::Priority;

/// The evidence behind an attribute proposal; see the module documentation for every rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeEvidence {
    pub inferred_type: AttrType,
    pub type_consistency: f64,
    pub presence: f64,
    pub null_rate: f64,
    pub confidence: f64,
    pub histogram: BTreeMap<String, i64>,
    #[serde(rename = "sample_values")]
    pub samples: Vec<Value>,
    pub entities_with_value: i64,
    pub entity_count: i64,
}

impl AttributeEvidence {
    /// `{inferred_type, type_consistency, presence, null_rate, confidence, histogram,
    /// sample_values, entities_with_value, entity_count}`, in that order.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("evidence is always JSON")
    }
}

/// The evidence for proposing `stats.key` as an attribute; `None` when the key has only nulls.
pub fn attribute_evidence(stats: &KeyStats, entity_count: i64) -> Option<AttributeEvidence> {
    let histogram: BTreeMap<String, i64> = stats
        .type_counts
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, &n)| (k.clone(), n))
        .collect();
    let mut h = TypeHistogram::new();
    for (name, &n) in &histogram {
        h.add(name, n as u64);
    }
    let (inferred_type, type_consistency) = h.infer()?;
    let nulls = histogram.get("null").copied().unwrap_or(0);
    let entities_with_value: i64 = histogram
        .iter()
        .filter(|(name, _)| name.as_str() != "null")
        .map(|(_, &n)| n)
        .sum();
    let entity_count = entity_count.max(entities_with_value);
    let presence = ratio(entities_with_value, entity_count);
    let null_rate = ratio(nulls, stats.sample_count);
    let corroboration = stats.unique_sources.clamp(0, 3) as f64 / 3.0;
    let confidence = (type_consistency * (0.7 * presence + 0.3 * corroboration)).clamp(0.0, 1.0);
    let samples = stats
        .sample_values
        .iter()
        .filter(|v| !v.is_null())
        .take(MAX_SAMPLES)
        .cloned()
        .collect();
    Some(AttributeEvidence {
        inferred_type,
        type_consistency,
        presence,
        null_rate,
        confidence,
        histogram,
        samples,
        entities_with_value,
        entity_count,
    })
}

/// `part / whole` clamped to [0, 1]; 0 when `whole` ≤ 0.
fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        (part.max(0) as f64 / whole as f64).clamp(0.0, 1.0)
    }
}

/// The priority of a proposal; see the module documentation.
pub fn priority(presence: f64, confidence: f64, min_presence: f64) -> Priority {
    let confident = confidence >= HIGH_CONFIDENCE;
    if presence >= min_presence && confident {
        Priority::High
    } else if presence >= min_presence || (presence >= min_presence / 2.0 && confident) {
        Priority::Medium
    } else {
        Priority::Low
    }
}

/// The words of a key: split at non-alphanumeric characters and at lower-to-upper-case
/// changes, lower-cased.
fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_numeric();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether a key's name suggests a point in time.
pub fn name_suggests_time(key: &str) -> bool {
    let lower = key.to_lowercase();
    [
        "time",
        "updated",
        "created",
        "date",
        "timestamp",
        "seen",
        "epoch",
    ]
    .iter()
    .any(|w| lower.contains(w))
        || words(key).iter().any(|w| w == "at")
}

/// Whether a key holds points in time; see the module documentation.
pub fn is_temporal(key: &str, ev: &AttributeEvidence) -> bool {
    match ev.inferred_type {
        AttrType::Timestamp | AttrType::Date => true,
        AttrType::Integer => {
            !ev.samples.is_empty()
                && ev.samples.iter().all(|v| {
                    v.as_i64()
                        .is_some_and(|n| (EPOCH_MS_MIN..EPOCH_MS_MAX).contains(&n))
                })
                && name_suggests_time(key)
        }
        _ => false,
    }
}

/// Whether the key's name hints at entity type `entity_type` (`t`, `t_id`, `tId`, any case).
fn name_hints_at(key: &str, entity_type: &str) -> bool {
    key.eq_ignore_ascii_case(entity_type)
        || key.eq_ignore_ascii_case(&format!("{entity_type}_id"))
        || key.eq_ignore_ascii_case(&format!("{entity_type}id"))
}

/// The entity type the key's samples refer to and the share of samples that matched; see the
/// module documentation.
pub fn references(
    key: &str,
    samples: &[Value],
    known_keys_by_type: &BTreeMap<String, BTreeSet<String>>,
) -> Option<(String, f64)> {
    let candidates: Vec<String> = samples
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    // (share, hinted, type); the best is the largest share, then hinted, then the first name.
    let mut best: Option<(f64, bool, &str)> = None;
    let mut best_hinted: Option<(f64, &str)> = None;
    for (entity_type, keys) in known_keys_by_type {
        let matched = candidates.iter().filter(|c| keys.contains(*c)).count();
        if matched == 0 {
            continue;
        }
        let share = matched as f64 / candidates.len() as f64;
        let hinted = name_hints_at(key, entity_type);
        if best.is_none_or(|(s, h, _)| (share, hinted) > (s, h)) {
            best = Some((share, hinted, entity_type));
        }
        if hinted && best_hinted.is_none_or(|(s, _)| share > s) {
            best_hinted = Some((share, entity_type));
        }
    }
    match (best, best_hinted) {
        (Some((share, _, t)), _) if share >= 0.5 => Some((t.to_string(), share)),
        (_, Some((share, t))) if share >= 0.2 => Some((t.to_string(), share)),
        _ => None,
    }
}

/// A stable identity of a proposal: FNV-1a 64 of the parts joined by U+001F, 16 hex digits.
pub fn fingerprint(kind: &str, entity_type: &str, user_id: Option<&str>, name: &str) -> String {
    format!(
        "{:016x}",
        fnv1a_joined(&[kind, entity_type, user_id.unwrap_or(""), name])
    )
}

/// Whether a rejected proposal should be proposed again; see the module documentation.
pub fn should_repropose(rejected_presence: f64, current_presence: f64, factor: f64) -> bool {
    rejected_presence.is_finite()
        && current_presence.is_finite()
        && factor.is_finite()
        && current_presence > rejected_presence
        && current_presence >= rejected_presence * factor - REPROPOSE_TOLERANCE
}

/// Slack in the comparison of [`should_repropose`], so that `0.4 × 1.5` (which is
/// `0.6000000000000001` in floating point) is reached by `0.6`.
const REPROPOSE_TOLERANCE: f64 = 1e-9;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats(type_counts: &[(&str, i64)], sample_count: i64, sources: i64) -> KeyStats {
        KeyStats {
            key: "k".into(),
            sample_count,
            frequency_total: sample_count,
            type_counts: type_counts
                .iter()
                .map(|&(t, n)| (t.to_string(), n))
                .collect(),
            unique_sources: sources,
            sample_values: vec![json!(1), Value::Null, json!(2)],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn evidence_table() {
        use AttrType::*;
        // (type counts, sample_count, unique_sources, entity_count) ->
        // (type, consistency, presence, null_rate, confidence, entities_with_value, entity_count)
        type Want = Option<(AttrType, f64, f64, f64, f64, i64, i64)>;
        type Case = (Vec<(&'static str, i64)>, i64, i64, i64, Want);
        let cases: Vec<Case> = vec![
            (vec![], 0, 0, 10, None),
            (vec![("null", 5)], 5, 2, 10, None),
            (vec![("null", 5), ("integer", 0)], 5, 2, 10, None),
            (
                vec![("integer", 6), ("number", 2), ("null", 2)],
                10,
                3,
                20,
                Some((Number, 1.0, 0.4, 0.2, 0.7 * 0.4 + 0.3, 8, 20)),
            ),
            (
                vec![("integer", 4)],
                4,
                1,
                4,
                Some((Integer, 1.0, 1.0, 0.0, 0.7 + 0.1, 4, 4)),
            ),
            (
                vec![("string", 8), ("integer", 2)],
                10,
                1,
                10,
                Some((String, 0.8, 1.0, 0.0, 0.8 * 0.8, 10, 10)),
            ),
            // Dates with timestamps give timestamp; bare dates do not conform to it.
            (
                vec![("date", 3), ("timestamp", 1)],
                4,
                6,
                8,
                Some((Timestamp, 0.25, 0.5, 0.0, 0.25 * (0.35 + 0.3), 4, 8)),
            ),
            // Equal counts: the first in the fixed order.
            (
                vec![("object", 2), ("boolean", 2)],
                4,
                0,
                4,
                Some((Boolean, 0.5, 1.0, 0.0, 0.35, 4, 4)),
            ),
            // More values than entities counted: presence is capped at 1.
            (
                vec![("boolean", 5)],
                5,
                3,
                0,
                Some((Boolean, 1.0, 1.0, 0.0, 1.0, 5, 5)),
            ),
            // Negative counts (a transient of subtraction) are ignored.
            (
                vec![("array", 2), ("string", -3), ("null", 2)],
                4,
                -1,
                10,
                Some((Array, 1.0, 0.2, 0.5, 0.14, 2, 10)),
            ),
        ];
        for (counts, sample_count, sources, entities, want) in cases {
            let got = attribute_evidence(&stats(&counts, sample_count, sources), entities);
            match (got, want) {
                (None, None) => {}
                (Some(ev), Some((t, cons, pres, nulls, conf, with, count))) => {
                    assert_eq!(ev.inferred_type, t, "{counts:?}");
                    assert!(close(ev.type_consistency, cons), "{counts:?}: {ev:?}");
                    assert!(close(ev.presence, pres), "{counts:?}: {ev:?}");
                    assert!(close(ev.null_rate, nulls), "{counts:?}: {ev:?}");
                    assert!(close(ev.confidence, conf), "{counts:?}: {ev:?}");
                    assert_eq!(ev.entities_with_value, with, "{counts:?}");
                    assert_eq!(ev.entity_count, count, "{counts:?}");
                    assert_eq!(ev.samples, vec![json!(1), json!(2)]);
                    assert!(ev.histogram.values().all(|&n| n > 0));
                }
                (got, want) => panic!("{counts:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn evidence_json_shape() {
        let ev = attribute_evidence(&stats(&[("integer", 3), ("null", 1)], 4, 3), 6).unwrap();
        let j = ev.to_json();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "inferred_type",
                "type_consistency",
                "presence",
                "null_rate",
                "confidence",
                "histogram",
                "sample_values",
                "entities_with_value",
                "entity_count"
            ]
        );
        assert_eq!(j["inferred_type"], "integer");
        assert_eq!(j["histogram"], json!({"integer": 3, "null": 1}));
        assert_eq!(j["sample_values"], json!([1, 2]));
        assert_eq!(j["entities_with_value"], 3);
        assert_eq!(j["entity_count"], 6);
        assert_eq!(j["presence"], 0.5);
        assert_eq!(j["null_rate"], 0.25);
        for t in AttrType::ALL {
            assert!(AttrType::parse(t.as_str()).is_some());
        }
    }

    #[test]
    fn priority_table() {
        use Priority::*;
        let cases = [
            (0.9, 0.9, 0.5, High),
            (0.5, 0.8, 0.5, High),
            (0.5, 0.79, 0.5, Medium),
            (1.0, 0.0, 0.5, Medium),
            (0.3, 0.85, 0.5, Medium),
            (0.25, 0.8, 0.5, Medium),
            (0.24, 0.99, 0.5, Low),
            (0.3, 0.7, 0.5, Low),
            (0.0, 0.0, 0.5, Low),
            (0.0, 0.0, 0.0, Medium),
        ];
        for (presence, confidence, min, want) in cases {
            assert_eq!(
                priority(presence, confidence, min),
                want,
                "{presence} {confidence} {min}"
            );
        }
        for p in [High, Medium, Low] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(High.as_str(), "high");
        assert_eq!(Priority::parse("urgent"), None);
    }

    fn ev_of(t: AttrType, samples: Vec<Value>) -> AttributeEvidence {
        AttributeEvidence {
            inferred_type: t,
            type_consistency: 1.0,
            presence: 1.0,
            null_rate: 0.0,
            confidence: 1.0,
            histogram: BTreeMap::new(),
            samples,
            entities_with_value: 1,
            entity_count: 1,
        }
    }

    #[test]
    fn temporal_table() {
        use AttrType::*;
        let ms = json!(1_700_000_000_000_i64);
        let cases: Vec<(&str, AttrType, Vec<Value>, bool)> = vec![
            ("whatever", Timestamp, vec![], true),
            ("birthday", Date, vec![json!("2024-01-01")], true),
            ("time", Integer, vec![ms.clone()], true),
            (
                "updated",
                Integer,
                vec![ms.clone(), json!(946_684_800_000_i64)],
                true,
            ),
            ("created_at", Integer, vec![ms.clone()], true),
            ("updatedAt", Integer, vec![ms.clone()], true),
            ("CreatedAt", Integer, vec![ms.clone()], true),
            ("LAST_SEEN", Integer, vec![ms.clone()], true),
            ("eventTimestamp", Integer, vec![ms.clone()], true),
            ("start_date", Integer, vec![ms.clone()], true),
            ("at", Integer, vec![ms.clone()], true),
            // The name does not suggest time.
            ("population", Integer, vec![ms.clone()], false),
            ("format", Integer, vec![ms.clone()], false),
            ("attempts", Integer, vec![ms.clone()], false),
            // Out of range: seconds, or after 2100.
            ("time", Integer, vec![json!(1_700_000_000_i64)], false),
            ("time", Integer, vec![json!(4_102_444_800_000_i64)], false),
            ("time", Integer, vec![ms.clone(), json!(5)], false),
            ("time", Integer, vec![], false),
            ("time", Integer, vec![json!("1700000000000")], false),
            ("time", Number, vec![ms.clone()], false),
            ("time", String, vec![json!("noon")], false),
        ];
        for (key, t, samples, want) in cases {
            assert_eq!(
                is_temporal(key, &ev_of(t, samples.clone())),
                want,
                "{key} {} {samples:?}",
                t.as_str()
            );
        }
    }

    #[test]
    fn references_table() {
        let known: BTreeMap<String, BTreeSet<String>> = [
            ("place", vec!["p1", "p2", "p3", "p4"]),
            ("station", vec!["s1", "s2", "42", "p1"]),
            ("network", vec!["us", "ak"]),
        ]
        .into_iter()
        .map(|(t, ks)| (t.to_string(), ks.into_iter().map(String::from).collect()))
        .collect();
        type Case = (&'static str, Vec<Value>, Option<(&'static str, f64)>);
        let cases: Vec<Case> = vec![
            ("near", vec![json!("p1"), json!("p2")], Some(("place", 1.0))),
            (
                "near",
                vec![json!("p1"), json!("p2"), json!("x"), json!("y")],
                Some(("place", 0.5)),
            ),
            ("near", vec![json!("p1"), json!("x"), json!("y")], None),
            // Numbers match by their text.
            ("sta", vec![json!(42), json!("s1")], Some(("station", 1.0))),
            // Equal shares: the type the name hints at, then the smaller name.
            ("station_id", vec![json!("p1")], Some(("station", 1.0))),
            ("loc", vec![json!("p1")], Some(("place", 1.0))),
            // A name hint needs only 0.2.
            (
                "network",
                vec![json!("us"), json!("a"), json!("b"), json!("c"), json!("d")],
                Some(("network", 0.2)),
            ),
            (
                "networkId",
                vec![json!("us"), json!("a"), json!("b"), json!("c")],
                Some(("network", 0.25)),
            ),
            (
                "NETWORK_ID",
                vec![json!("us"), json!("a"), json!("b"), json!("c")],
                Some(("network", 0.25)),
            ),
            (
                "net",
                vec![json!("us"), json!("a"), json!("b"), json!("c")],
                None,
            ),
            (
                "network",
                vec![
                    json!("us"),
                    json!("a"),
                    json!("b"),
                    json!("c"),
                    json!("d"),
                    json!("e"),
                ],
                None,
            ),
            // Other kinds of samples are ignored; no candidate gives nothing.
            (
                "near",
                vec![json!(true), json!({"a": 1}), json!("p1")],
                Some(("place", 1.0)),
            ),
            ("near", vec![json!(true), Value::Null], None),
            ("near", vec![], None),
            ("near", vec![json!("zzz")], None),
        ];
        for (key, samples, want) in cases {
            let got = references(key, &samples, &known);
            match (&got, want) {
                (None, None) => {}
                (Some((t, s)), Some((wt, ws))) if t == wt && close(*s, ws) => {}
                _ => panic!("{key} {samples:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(references("x", &[json!("a")], &BTreeMap::new()), None);
    }

    #[test]
    fn fingerprints_are_stable() {
        let cases = [
            (
                ("attribute", "earthquake", None, "felt"),
                "1de20dd5222c1ac6",
            ),
            (
                ("index", "earthquake", Some("alice"), "mag"),
                "356c72e73408a036",
            ),
        ];
        for ((kind, t, user, name), want) in cases {
            assert_eq!(fingerprint(kind, t, user, name), want);
            assert_eq!(
                fingerprint(kind, t, user, name),
                fingerprint(kind, t, user, name)
            );
        }
        let a = fingerprint("attribute", "earthquake", None, "felt");
        assert_ne!(a, fingerprint("attribute", "earthquake", Some("u"), "felt"));
        assert_ne!(a, fingerprint("index", "earthquake", None, "felt"));
        assert_ne!(
            fingerprint("a", "bc", None, "d"),
            fingerprint("ab", "c", None, "d")
        );
        assert!(
            a.len() == 16
                && a.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn reproposal_table() {
        let cases = [
            (0.4, 0.6, REPROPOSE_FACTOR, true),
            (0.4, 0.59, REPROPOSE_FACTOR, false),
            (0.4, 0.4, REPROPOSE_FACTOR, false),
            (0.4, 0.2, REPROPOSE_FACTOR, false),
            (0.4, 1.0, REPROPOSE_FACTOR, true),
            (0.0, 0.0, REPROPOSE_FACTOR, false),
            (0.0, 0.01, REPROPOSE_FACTOR, true),
            (0.5, 0.8, 2.0, false),
            (0.5, 1.0, 2.0, true),
            (0.5, f64::NAN, 1.5, false),
            (f64::NAN, 1.0, 1.5, false),
            (0.5, 1.0, f64::INFINITY, false),
        ];
        for (rejected, current, factor, want) in cases {
            assert_eq!(
                should_repropose(rejected, current, factor),
                want,
                "{rejected} {current} {factor}"
            );
        }
    }
}
