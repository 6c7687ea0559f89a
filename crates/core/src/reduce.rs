//! Reduction of observations into entity snapshots under each attribute's merge policy.
//!
//! A snapshot holds one [`Cell`] per attribute: the winning value with the source and id of
//! the observation that produced it. [`merge`] needs only the stored cell and the new
//! observation, so a snapshot can be maintained incrementally, and folding observations into a
//! stored snapshot gives the same result as reducing the whole history ([`reduce_full`]).
//!
//! Policies:
//! - `last_write_wins`: the observation with the higher id wins, `null` included.
//! - `source_priority`: the observation whose source ranks better wins (rank = position in the
//!   attribute's `source_priority`; a missing or unlisted source ranks below every listed one);
//!   on equal rank the higher id wins. `null` is a value like any other (a source can clear it).
//! - `max` / `min`: the largest / smallest non-null value under [`compare`]; on equal values
//!   the cell of the lower id is kept. `null` observations are ignored.
//! - `union`: a JSON array of the distinct non-null values seen, in order of first appearance;
//!   an array observation contributes each of its elements. Distinct means unequal as JSON
//!   (`1` and `1.0` are distinct; objects are equal regardless of key order).
//!
//! `last_write_wins`, `source_priority`, `max` and `min` choose by a total order on
//! observations, so their result does not even depend on the order observations arrive in;
//! `union` keeps the order of first appearance, so it depends on the id order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::path::{insert_at, lenient};
use crate::schema::{AttrType, Attribute, Definition, MergePolicy};

/// One observed value of one attribute. Ids strictly increase in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub id: i64,
    pub value: Value,
    pub source: Option<String>,
}

/// The reduced value of one attribute, with the observation that last set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub value: Value,
    #[serde(default)]
    pub source: Option<String>,
    pub observation_id: i64,
}

/// An entity's reduced state: attribute name → cell. Serializes as a JSON object.
pub type Snapshot = BTreeMap<String, Cell>;

impl Cell {
    fn of(obs: &Observation) -> Cell {
        Cell {
            value: obs.value.clone(),
            source: obs.source.clone(),
            observation_id: obs.id,
        }
    }
}

/// The rank of a JSON kind in [`compare`]: null < boolean < number < string < array < object.
fn kind_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Compares two JSON numbers numerically and exactly, whatever their size or precision.
fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    crate::number::cmp(a, b)
}

fn sorted_entries(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// The order `max` and `min` use. Values of different JSON kinds compare by kind:
/// null < boolean < number < string < array < object, so under `max` any string beats any
/// number. Within a kind: `false < true`; numbers numerically (`1` equals `1.0`); strings by
/// their UTF-8 bytes (code point order); arrays element by element, a prefix first; objects as
/// their (key, value) lists sorted by key, compared the same way.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| compare(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => {
            let (x, y) = (sorted_entries(x), sorted_entries(y));
            x.iter()
                .zip(&y)
                .map(|((kp, vp), (kq, vq))| kp.cmp(kq).then_with(|| compare(vp, vq)))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| x.len().cmp(&y.len()))
        }
        _ => kind_rank(a).cmp(&kind_rank(b)),
    }
}

/// Position of a source in the attribute's priority list; unlisted and missing sources rank
/// after every listed one.
fn rank(attr: &Attribute, source: Option<&str>) -> usize {
    source
        .and_then(|s| attr.source_priority.iter().position(|p| p == s))
        .unwrap_or(attr.source_priority.len())
}

/// Appends the distinct non-null values of `v` (its elements if it is an array) to `set`;
/// returns whether any was added.
fn union_into(set: &mut Vec<Value>, v: &Value) -> bool {
    let items = match v {
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    let before = set.len();
    for item in items {
        if !item.is_null() && !set.contains(item) {
            set.push(item.clone());
        }
    }
    set.len() > before
}

/// Merges one observation into the current cell of an attribute. Returns the new cell, or
/// `None` when the current cell stays as it is (which includes `None` staying `None`, e.g. a
/// `null` observation under `max`). See the module documentation for the policies.
pub fn merge(attr: &Attribute, current: Option<&Cell>, obs: &Observation) -> Option<Cell> {
    match attr.merge_policy {
        MergePolicy::LastWriteWins => match current {
            Some(c) if c.observation_id >= obs.id => None,
            _ => Some(Cell::of(obs)),
        },
        MergePolicy::SourcePriority => match current {
            Some(c) => {
                let key =
                    |source: Option<&str>, id: i64| (std::cmp::Reverse(rank(attr, source)), id);
                (key(obs.source.as_deref(), obs.id) > key(c.source.as_deref(), c.observation_id))
                    .then(|| Cell::of(obs))
            }
            None => Some(Cell::of(obs)),
        },
        MergePolicy::Max | MergePolicy::Min => {
            if obs.value.is_null() {
                return None;
            }
            // A stored null (e.g. from before the policy changed) counts as no value.
            let Some(c) = current.filter(|c| !c.value.is_null()) else {
                return Some(Cell::of(obs));
            };
            let mut order = compare(&obs.value, &c.value);
            if attr.merge_policy == MergePolicy::Min {
                order = order.reverse();
            }
            let wins = match order {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => obs.id < c.observation_id,
            };
            wins.then(|| Cell::of(obs))
        }
        MergePolicy::Union => {
            if obs.value.is_null() {
                return None;
            }
            let mut set = match current {
                Some(Cell {
                    value: Value::Array(items),
                    ..
                }) => items.clone(),
                // A stored non-array value (e.g. from before the policy became union) is the
                // first member.
                Some(c) if !c.value.is_null() => vec![c.value.clone()],
                _ => Vec::new(),
            };
            let added = union_into(&mut set, &obs.value);
            let was_array = matches!(
                current,
                Some(Cell {
                    value: Value::Array(_),
                    ..
                })
            );
            (added || !was_array).then(|| Cell {
                value: Value::Array(set),
                source: obs.source.clone(),
                observation_id: obs.id,
            })
        }
    }
}

/// Reduces a whole history: [`merge`] folded over the observations in id order (the slice need
/// not be sorted).
pub fn reduce_full(attr: &Attribute, history: &[Observation]) -> Option<Cell> {
    let mut ordered: Vec<&Observation> = history.iter().collect();
    ordered.sort_by_key(|o| o.id);
    ordered
        .into_iter()
        .fold(None, |cell, obs| merge(attr, cell.as_ref(), obs).or(cell))
}

/// The attribute used for names the definition does not declare: last write wins.
fn fallback() -> Attribute {
    Attribute::of(AttrType::Object)
}

/// Applies one observation of `attribute` (a path in text form) to a snapshot. A path through
/// aliases is stored under the attribute's current path; a name the definition does not declare
/// as an attribute (a relationship, or an attribute since removed) is merged as last write wins.
pub fn apply(def: &Definition, snapshot: &mut Snapshot, attribute: &str, obs: &Observation) {
    let fallback_attr;
    let declared = if attribute.contains(['.', '[', ']', '"']) {
        def.attribute_named(attribute)
            .map(|(path, attr)| (path.to_string(), attr))
    } else {
        // A top-level name (the common case): no path to read or write.
        Attribute::member(&def.attributes, attribute).map(|(name, attr)| (name.clone(), attr))
    };
    let (name, attr) = match declared {
        Some(found) => found,
        None => {
            fallback_attr = fallback();
            (attribute.to_string(), &fallback_attr)
        }
    };
    if let Some(cell) = merge(attr, snapshot.get(&name), obs) {
        snapshot.insert(name, cell);
    }
}

/// The plain values of a snapshot: a JSON object with each cell's value at its path, nested
/// (`actor.login` is `{"actor": {"login": …}}`). A member's cell fills in its parent's value,
/// which becomes an object if it was not one.
pub fn snapshot_values(snapshot: &Snapshot) -> Value {
    let mut out = Map::new();
    for (name, cell) in snapshot {
        if !name.contains(['.', '[', ']', '"']) {
            // A top-level key (the common case): no path to read.
            out.insert(name.clone(), cell.value.clone());
            continue;
        }
        let path = lenient(name);
        match path.keys() {
            Some(keys) => insert_at(&mut out, &keys, cell.value.clone()),
            // A path into array elements is not a cell ingestion makes; keep it by its name.
            None => {
                out.insert(name.clone(), cell.value.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn attr(policy: MergePolicy, sources: &[&str]) -> Attribute {
        Attribute {
            merge_policy: policy,
            source_priority: sources.iter().map(|s| s.to_string()).collect(),
            ..fallback()
        }
    }

    fn obs(id: i64, value: Value, source: Option<&str>) -> Observation {
        Observation {
            id,
            value,
            source: source.map(str::to_string),
        }
    }

    /// Reduces `values` (ids 1, 2, …, no source) and returns the value and winning id.
    fn run(a: &Attribute, values: &[Value]) -> Option<(Value, i64)> {
        let history: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| obs(i as i64 + 1, v.clone(), None))
            .collect();
        reduce_full(a, &history).map(|c| (c.value, c.observation_id))
    }

    #[test]
    fn last_write_wins() {
        let a = attr(MergePolicy::LastWriteWins, &[]);
        assert_eq!(run(&a, &[]), None);
        assert_eq!(run(&a, &[json!(1), json!("x")]), Some((json!("x"), 2)));
        assert_eq!(run(&a, &[json!(1), json!(null)]), Some((json!(null), 2)));
        // An older or replayed observation changes nothing.
        let c = Cell::of(&obs(5, json!(1), None));
        assert_eq!(merge(&a, Some(&c), &obs(4, json!(2), None)), None);
        assert_eq!(merge(&a, Some(&c), &obs(5, json!(2), None)), None);
        // Out-of-order history is sorted by id.
        let h = [obs(9, json!("late"), None), obs(3, json!("early"), None)];
        assert_eq!(reduce_full(&a, &h).unwrap().value, json!("late"));
    }

    #[test]
    fn source_priority() {
        let a = attr(MergePolicy::SourcePriority, &["usgs", "emsc"]);
        let h = [
            obs(1, json!(1), Some("emsc")),
            obs(2, json!(2), Some("usgs")),
            obs(3, json!(3), Some("emsc")),
            obs(4, json!(4), None),
            obs(5, json!(5), Some("blog")),
        ];
        let c = reduce_full(&a, &h).unwrap();
        assert_eq!((c.value, c.source.as_deref()), (json!(2), Some("usgs")));
        // Equal rank: the later one wins, null included.
        let h2 = [
            obs(1, json!(1), Some("usgs")),
            obs(2, json!(null), Some("usgs")),
        ];
        assert_eq!(reduce_full(&a, &h2).unwrap().value, json!(null));
        // Unlisted and missing sources rank equally, below every listed one.
        let h3 = [obs(1, json!(1), None), obs(2, json!(2), Some("blog"))];
        assert_eq!(reduce_full(&a, &h3).unwrap().value, json!(2));
        let h4 = [
            obs(1, json!(1), Some("emsc")),
            obs(2, json!(2), Some("blog")),
        ];
        assert_eq!(reduce_full(&a, &h4).unwrap().value, json!(1));
    }

    #[test]
    fn max_and_min() {
        let max = attr(MergePolicy::Max, &[]);
        let min = attr(MergePolicy::Min, &[]);
        let nums = [json!(3), json!(null), json!(10.5), json!(-2), json!(7)];
        assert_eq!(run(&max, &nums), Some((json!(10.5), 3)));
        assert_eq!(run(&min, &nums), Some((json!(-2), 4)));
        assert_eq!(run(&max, &[json!(null), json!(null)]), None);
        let strs = [json!("b"), json!("abc"), json!("ba")];
        assert_eq!(run(&max, &strs), Some((json!("ba"), 3)));
        assert_eq!(run(&min, &strs), Some((json!("abc"), 2)));
        assert_eq!(
            run(&max, &[json!(true), json!(false)]),
            Some((json!(true), 1))
        );
        // Equal values keep the earlier cell; 1 and 1.0 are equal numbers.
        assert_eq!(
            run(&max, &[json!(1), json!(1.0), json!(1)]),
            Some((json!(1), 1))
        );
        assert_eq!(run(&min, &[json!("a"), json!("a")]), Some((json!("a"), 1)));
        // Mixed kinds compare by kind: null < bool < number < string < array < object.
        let mixed = [json!(5), json!("a"), json!(true), json!([0]), json!({})];
        assert_eq!(run(&max, &mixed), Some((json!({}), 5)));
        assert_eq!(run(&min, &mixed), Some((json!(true), 3)));
        assert_eq!(run(&max, &[json!("1"), json!(1000)]), Some((json!("1"), 1)));
    }

    #[test]
    fn exact_number_order() {
        let big = (1_i64 << 53) + 1;
        let cases: Vec<(Value, Value, Ordering)> = vec![
            (json!(1), json!(1.0), Ordering::Equal),
            (json!(-1), json!(-0.5), Ordering::Less),
            (json!(big), json!((1_i64 << 53) as f64), Ordering::Greater),
            (json!(u64::MAX), json!(i64::MAX), Ordering::Greater),
            (json!(u64::MAX), json!(1e30), Ordering::Less),
            (json!(i64::MIN), json!(-1e300), Ordering::Greater),
            (json!(0.1), json!(0.2), Ordering::Less),
            (json!([1, 2]), json!([1, 2, 0]), Ordering::Less),
            (json!([2]), json!([1, 9]), Ordering::Greater),
            (
                json!({"b": 1, "a": 2}),
                json!({"a": 2, "b": 1}),
                Ordering::Equal,
            ),
            (json!({"a": 1}), json!({"a": 1, "b": 0}), Ordering::Less),
            (json!({"a": 3}), json!({"b": 0}), Ordering::Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(&a, &b), want, "{a} vs {b}");
            assert_eq!(compare(&b, &a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn union() {
        let u = attr(MergePolicy::Union, &[]);
        let vals = [
            json!("a"),
            json!(null),
            json!(["b", "a", null, "c"]),
            json!(1),
            json!(1.0),
            json!({"x": 1, "y": 2}),
            json!({"y": 2, "x": 1}),
            json!([[1]]),
        ];
        assert_eq!(
            run(&u, &vals),
            Some((json!(["a", "b", "c", 1, 1.0, {"x": 1, "y": 2}, [1]]), 8))
        );
        // Nothing new keeps the cell (and its observation id).
        assert_eq!(
            run(&u, &[json!("a"), json!(["a"])]),
            Some((json!(["a"]), 1))
        );
        assert_eq!(run(&u, &[json!(null)]), None);
        assert_eq!(run(&u, &[json!([])]), Some((json!([]), 1)));
        // A stored scalar (e.g. from another policy) becomes the first member.
        let c = Cell::of(&obs(1, json!("old"), None));
        let merged = merge(&u, Some(&c), &obs(2, json!("old"), None)).unwrap();
        assert_eq!(merged.value, json!(["old"]));
    }

    #[test]
    fn nested_snapshots() {
        let def = Definition::parse(&json!({
            "entity_type": "e",
            "attributes": {
                "actor": {"type": "object", "properties": {
                    "login": {"type": "string", "aliases": ["user"]},
                    "stars": {"type": "integer", "merge_policy": "max"}
                }},
                "geo": {"type": "object"}
            }
        }))
        .unwrap();
        let mut snap = Snapshot::new();
        apply(&def, &mut snap, "actor.user", &obs(1, json!("ada"), None));
        apply(&def, &mut snap, "actor.stars", &obs(2, json!(9), None));
        apply(&def, &mut snap, "actor.stars", &obs(3, json!(4), None));
        apply(&def, &mut snap, "geo", &obs(4, json!({"lat": 1}), None));
        apply(&def, &mut snap, "geo.depth", &obs(5, json!(10), None));
        apply(
            &def,
            &mut snap,
            "repo.\"full name\"",
            &obs(6, json!("x/y"), None),
        );
        assert!(snap.contains_key("actor.login") && !snap.contains_key("actor.user"));
        assert_eq!(
            snapshot_values(&snap),
            json!({
                "actor": {"login": "ada", "stars": 9},
                "geo": {"lat": 1, "depth": 10},
                "repo": {"full name": "x/y"}
            })
        );
        // A member fills in a parent that was null.
        let mut snap = Snapshot::new();
        apply(&def, &mut snap, "actor", &obs(1, json!(null), None));
        apply(&def, &mut snap, "actor.login", &obs(2, json!("bo"), None));
        assert_eq!(snapshot_values(&snap), json!({"actor": {"login": "bo"}}));
    }

    #[test]
    fn snapshots() {
        let def = Definition::parse(&json!({
            "entity_type": "e",
            "attributes": {
                "mag": {"type": "number", "merge_policy": "max", "aliases": ["magnitude"]},
                "tags": {"type": "array", "merge_policy": "union"}
            },
            "relationships": {"near": {"target": "city"}}
        }))
        .unwrap();
        let mut snap = Snapshot::new();
        apply(&def, &mut snap, "mag", &obs(1, json!(4.5), None));
        apply(&def, &mut snap, "magnitude", &obs(2, json!(5.1), Some("s")));
        apply(&def, &mut snap, "mag", &obs(3, json!(3), None));
        apply(&def, &mut snap, "tags", &obs(4, json!(["x"]), None));
        apply(&def, &mut snap, "tags", &obs(5, json!("y"), None));
        apply(&def, &mut snap, "near", &obs(6, json!("lisbon"), None));
        apply(&def, &mut snap, "near", &obs(7, json!("porto"), None));
        apply(&def, &mut snap, "gone", &obs(8, json!(1), None));
        apply(&def, &mut snap, "gone", &obs(9, json!(null), None));
        assert_eq!(snap["mag"].source.as_deref(), Some("s"));
        assert_eq!(snap["mag"].observation_id, 2);
        assert!(!snap.contains_key("magnitude"));
        assert_eq!(
            snapshot_values(&snap),
            json!({"gone": null, "mag": 5.1, "near": "porto", "tags": ["x", "y"]})
        );
        // Snapshots round-trip through JSON.
        let text = serde_json::to_string(&snap).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, snap);
        let cell: Cell = serde_json::from_value(json!({"value": 1, "observation_id": 3})).unwrap();
        assert_eq!(cell.source, None);
    }

    const POLICIES: [MergePolicy; 5] = [
        MergePolicy::LastWriteWins,
        MergePolicy::SourcePriority,
        MergePolicy::Max,
        MergePolicy::Min,
        MergePolicy::Union,
    ];
    const SOURCES: [&str; 4] = ["a", "b", "c", "d"];

    fn value_strategy() -> impl Strategy<Value = Value> {
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..4).prop_map(|i| json!(i)),
            prop::sample::select(vec![-1.5, 0.0, 0.25, 1.0, 2.5, 1e10]).prop_map(|f| json!(f)),
            prop::sample::select(vec!["", "a", "b", "ab", "1"]).prop_map(|s| json!(s)),
        ];
        prop_oneof![
            4 => scalar.clone(),
            1 => prop::collection::vec(scalar, 0..3).prop_map(Value::Array),
        ]
    }

    fn attr_strategy() -> impl Strategy<Value = Attribute> {
        (
            prop::sample::select(POLICIES.to_vec()),
            prop::sample::subsequence(SOURCES.to_vec(), 0..=3).prop_shuffle(),
        )
            .prop_map(|(policy, sources)| attr(policy, &sources))
    }

    fn history_strategy() -> impl Strategy<Value = Vec<Observation>> {
        prop::collection::vec(
            (
                1i64..4,
                value_strategy(),
                prop::option::of(prop::sample::select(SOURCES.to_vec())),
            ),
            0..12,
        )
        .prop_map(|steps| {
            let mut id = 0;
            steps
                .into_iter()
                .map(|(gap, value, source)| {
                    id += gap;
                    obs(id, value, source)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn incremental_equals_full(a in attr_strategy(), history in history_strategy()) {
            let full = reduce_full(&a, &history);
            for k in 0..=history.len() {
                let prefix = reduce_full(&a, &history[..k]);
                let stored = serde_json::to_string(&prefix).unwrap();
                let mut cell: Option<Cell> = serde_json::from_str(&stored).unwrap();
                prop_assert_eq!(&cell, &prefix);
                for o in &history[k..] {
                    if let Some(next) = merge(&a, cell.as_ref(), o) {
                        cell = Some(next);
                    }
                }
                prop_assert_eq!(&cell, &full, "split at {}", k);
            }
        }

        #[test]
        fn order_free_policies_ignore_arrival_order(
            a in attr_strategy(),
            history in history_strategy(),
            seed in any::<u64>(),
        ) {
            prop_assume!(a.merge_policy != MergePolicy::Union);
            let full = reduce_full(&a, &history);
            // Fold in a scrambled order.
            let mut shuffled = history.clone();
            let n = shuffled.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut cell: Option<Cell> = None;
            for o in &shuffled {
                if let Some(next) = merge(&a, cell.as_ref(), o) {
                    cell = Some(next);
                }
            }
            prop_assert_eq!(cell, full);
        }

        #[test]
        fn union_holds_every_distinct_value(history in history_strategy()) {
            let a = attr(MergePolicy::Union, &[]);
            let cell = reduce_full(&a, &history);
            let mut want: Vec<Value> = Vec::new();
            for o in &history {
                let items = match &o.value {
                    Value::Array(items) => items.clone(),
                    v => vec![v.clone()],
                };
                for v in items {
                    if !v.is_null() && !want.contains(&v) {
                        want.push(v);
                    }
                }
            }
            let any_value = history.iter().any(|o| !o.value.is_null());
            prop_assert_eq!(cell.map(|c| c.value), any_value.then(|| Value::Array(want)));
        }
    }
}
