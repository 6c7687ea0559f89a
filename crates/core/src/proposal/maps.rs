//! Maps: objects whose keys are data.
//!
//! Opening undeclared objects into paths gives one fragment key per member. That is right for a
//! record (`actor.id`, `actor.login`: the same few members in every payload) and wrong for a
//! map (`labels."app.kubernetes.io/name"`, `daily.2024-01-31`, `files.3f9a…`: many distinct
//! members, each in few payloads), which must be proposed as one `object` attribute with a type
//! for its values, not one attribute per key.
//!
//! A parent path is a **map** when it has at least [`MIN_MAP_KEYS`] distinct members, almost
//! all of them rare (at least 90 % present in at most [`RARE_PRESENCE`] of the type's
//! entities), and either at least half of the member keys [look like data](looks_like_data) or
//! there are at least [`MANY_MAP_KEYS`] of them. The outermost such parent wins (a map of maps
//! is one map whose values are objects).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::evidence::KeyStats;
use crate::infer::TypeHistogram;
use crate::path::{lenient, Path, Segment};

/// Fewest distinct members a map has.
pub const MIN_MAP_KEYS: usize = 8;
/// Members from which a map's keys need not look like data.
pub const MANY_MAP_KEYS: usize = 32;
/// Largest presence (share of the type's entities) of a rare member.
pub const RARE_PRESENCE: f64 = 0.25;

/// A map found among the undeclared keys of one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct MapCandidate {
    pub path: Path,
    /// The attribute it is proposed as: `{"type": "object", "values": {...}}`.
    pub attribute: Value,
    /// Distinct member keys seen.
    pub distinct_keys: usize,
    /// The first few member keys, for the evidence.
    pub sample_keys: Vec<String>,
    /// Share of the member keys that look like data.
    pub data_like_share: f64,
    /// Fragment keys (text form) of the map's members and their descendants.
    pub fragment_keys: Vec<String>,
    /// Entities holding some member (an upper bound: the largest member count, or their sum,
    /// capped at the entity count).
    pub entities: i64,
}

/// Whether a key looks like data rather than a field name: a number, a date or timestamp, a
/// hex hash or UUID, or an identifier mixing letters and digits with at least as many digits.
pub fn looks_like_data(key: &str) -> bool {
    let k = key.trim();
    if k.is_empty() {
        return false;
    }
    if k.parse::<f64>().is_ok() || crate::infer::is_date(k) || crate::infer::is_timestamp(k) {
        return true;
    }
    let hex = k.bytes().filter(u8::is_ascii_hexdigit).count();
    let dashes = k.bytes().filter(|b| *b == b'-').count();
    if k.len() >= 8 && hex + dashes == k.len() && hex > dashes * 4 {
        return true;
    }
    let digits = k.bytes().filter(u8::is_ascii_digit).count();
    k.len() >= 4 && digits * 2 >= k.len()
}

/// The maps among `keys` (the undeclared keys of one scope with `entity_count` entities).
pub fn detect_maps(keys: &[KeyStats], entity_count: i64) -> Vec<MapCandidate> {
    // parent → member key → the stats of the member and of everything below it.
    let mut parents: BTreeMap<Path, BTreeMap<String, Vec<&KeyStats>>> = BTreeMap::new();
    for stats in keys {
        let path = lenient(&stats.key);
        if path.has_items() {
            continue;
        }
        let segments = path.segments();
        for depth in 1..segments.len() {
            let (Ok(parent), Segment::Key(member)) = (
                Path::from_segments(segments[..depth].to_vec()),
                &segments[depth],
            ) else {
                continue;
            };
            parents
                .entry(parent)
                .or_default()
                .entry(member.clone())
                .or_default()
                .push(stats);
        }
    }
    let total = entity_count.max(1) as f64;
    let mut out: Vec<MapCandidate> = Vec::new();
    for (parent, members) in &parents {
        if members.len() < MIN_MAP_KEYS || out.iter().any(|m| parent.starts_with(&m.path)) {
            continue;
        }
        let presence = |stats: &[&KeyStats]| {
            stats.iter().map(|s| s.sample_count).max().unwrap_or(0) as f64 / total
        };
        let rare = members
            .values()
            .filter(|s| presence(s) <= RARE_PRESENCE)
            .count();
        let data_like = members.keys().filter(|k| looks_like_data(k)).count();
        let n = members.len();
        let data_like_share = data_like as f64 / n as f64;
        if (rare as f64) < 0.9 * n as f64 || (data_like_share < 0.5 && n < MANY_MAP_KEYS) {
            continue;
        }
        // The values: the leaves' types when every member is a leaf, else objects.
        let leaf = |k: &String, s: &Vec<&KeyStats>| {
            s.len() == 1
                && lenient(&s[0].key).len() == parent.len() + 1
                && lenient(&s[0].key).last_key() == Some(k)
        };
        let values = if members.iter().all(|(k, s)| leaf(k, s)) {
            let mut h = TypeHistogram::new();
            for s in members.values().flatten() {
                for (t, c) in &s.type_counts {
                    h.add(t, (*c).max(0) as u64);
                }
            }
            h.infer().map(|(t, _)| json!({"type": t.as_str()}))
        } else {
            Some(json!({"type": "object"}))
        };
        let mut attribute = json!({"type": "object"});
        if let Some(v) = values {
            attribute["values"] = v;
        }
        let mut fragment_keys: Vec<String> =
            members.values().flatten().map(|s| s.key.clone()).collect();
        fragment_keys.sort();
        fragment_keys.dedup();
        let sum: i64 = members
            .values()
            .map(|s| s.iter().map(|x| x.sample_count).max().unwrap_or(0))
            .sum();
        out.push(MapCandidate {
            path: parent.clone(),
            attribute,
            distinct_keys: n,
            sample_keys: members.keys().take(5).cloned().collect(),
            data_like_share,
            fragment_keys,
            entities: sum.min(entity_count),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(key: &str, n: i64, t: &str) -> KeyStats {
        KeyStats {
            key: key.into(),
            sample_count: n,
            frequency_total: n,
            type_counts: [(t.to_string(), n)].into(),
            unique_sources: 1,
            sample_values: vec![],
        }
    }

    #[test]
    fn data_like_keys() {
        for k in [
            "2024-01-31",
            "1517966773840",
            "3f9a0c2e11",
            "550e8400-e29b-41d4-a716-446655440000",
            "ci37868143",
            "42",
            "2024-01-31T12:00:00Z",
        ] {
            assert!(looks_like_data(k), "{k}");
        }
        for k in [
            "login",
            "name",
            "app.kubernetes.io/name",
            "tier",
            "avatar_url",
            "mag",
            "deadbeef_name",
        ] {
            assert!(!looks_like_data(k), "{k}");
        }
    }

    #[test]
    fn maps_of_data_keys_and_records_apart() {
        let mut keys = vec![
            stats("actor.id", 100, "integer"),
            stats("actor.login", 100, "string"),
        ];
        // A map of dates to counts: 30 days, each in 3 of 100 entities.
        for d in 1..=30 {
            keys.push(stats(&format!("daily.2024-01-{d:02}"), 3, "integer"));
        }
        // A map of commit hashes to objects.
        for i in 0..10 {
            keys.push(stats(
                &format!("files.{:08x}.size", i * 7919 + 100_000),
                2,
                "integer",
            ));
            keys.push(stats(
                &format!("files.{:08x}.path", i * 7919 + 100_000),
                2,
                "string",
            ));
        }
        // Rare, but few and named like fields: not a map.
        for k in ["a", "b", "c", "d", "e"] {
            keys.push(stats(&format!("extra.{k}"), 1, "string"));
        }
        let maps = detect_maps(&keys, 100);
        let found: Vec<String> = maps.iter().map(|m| m.path.to_string()).collect();
        assert_eq!(found, ["daily", "files"]);
        assert_eq!(
            maps[0].attribute,
            json!({"type": "object", "values": {"type": "integer"}})
        );
        assert_eq!(maps[0].distinct_keys, 30);
        assert_eq!(maps[0].fragment_keys.len(), 30);
        assert_eq!(maps[0].entities, 90);
        assert_eq!(
            maps[1].attribute,
            json!({"type": "object", "values": {"type": "object"}})
        );
        assert_eq!(maps[1].fragment_keys.len(), 20);
        // Many rare keys named like words are a map too (labels, tags by name).
        let words: Vec<KeyStats> = (0..40)
            .map(|i| {
                stats(
                    &format!(
                        "labels.\"team-{}.name\"",
                        ["x", "y", "z", "w"][i % 4].repeat(i / 4 + 1)
                    ),
                    1,
                    "string",
                )
            })
            .collect();
        assert_eq!(detect_maps(&words, 100)[0].path.to_string(), "labels");
        // Common members are a record, however many.
        let record: Vec<KeyStats> = (0..12)
            .map(|i| stats(&format!("p.f{i}x"), 90, "string"))
            .collect();
        assert!(detect_maps(&record, 100).is_empty());
    }
}
