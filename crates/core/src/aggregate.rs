//! Pure pieces of the raw-fragment aggregates: count maps, samples, and field confidence.
//!
//! A count map is a JSON object `{label: count}` (value types, or sources). Aggregates are kept
//! as count maps so that inserts add and deletes subtract exactly; the derived columns
//! (dominant type, type consistency, unique sources) are functions of them.

use serde_json::{Map, Value};

use crate::infer::TypeHistogram;

/// Most sample values kept per key.
pub const MAX_SAMPLES: usize = 10;

fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Adds two count maps label by label; labels whose count becomes 0 disappear.
pub fn add_counts(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    let mut out = a.clone();
    for (k, v) in b {
        let n = out.get(k).map(count).unwrap_or(0) + count(v);
        if n == 0 {
            out.remove(k);
        } else {
            out.insert(k.clone(), Value::from(n));
        }
    }
    out
}

/// A count map from parallel label/count lists (NULL labels are skipped; counts summed).
pub fn count_object<'a>(
    pairs: impl IntoIterator<Item = (Option<&'a str>, i64)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (label, n) in pairs {
        if let Some(label) = label {
            let total = out.get(label).map(count).unwrap_or(0) + n;
            out.insert(label.to_string(), Value::from(total));
        }
    }
    out.retain(|_, v| count(v) != 0);
    out
}

/// The inferred type and its consistency from a value-type count map.
pub fn dominant(type_counts: &Map<String, Value>) -> (String, f64) {
    let mut h = TypeHistogram::new();
    for (t, n) in type_counts {
        h.add(t, count(n).max(0) as u64);
    }
    match h.infer() {
        Some((t, c)) => (t.as_str().to_string(), c),
        None => ("null".to_string(), 0.0),
    }
}

/// Keeps the first [`MAX_SAMPLES`] distinct non-null values: those already kept, then new ones
/// (which may come nested one level, as lists of lists).
pub fn merge_samples(existing: &[Value], new: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(MAX_SAMPLES);
    let flat = new.iter().flat_map(|v| match v {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        other => vec![other],
    });
    for v in existing.iter().chain(flat) {
        if out.len() == MAX_SAMPLES {
            break;
        }
        if !v.is_null() && !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

/// Confidence that a fragment key is a real field, from its aggregates only:
/// `type_consistency × (0.7 × evidence + 0.3 × corroboration)` where
/// `evidence = 1 − e^(−frequency_total / 10)` (saturates after a few dozen sightings) and
/// `corroboration = min(unique_sources, 3) / 3` (three independent sources are full agreement).
/// In [0, 1].
pub fn field_confidence(frequency_total: i64, type_consistency: f64, unique_sources: i64) -> f64 {
    let evidence = 1.0 - (-(frequency_total.max(0) as f64) / 10.0).exp();
    let corroboration = unique_sources.clamp(0, 3) as f64 / 3.0;
    (type_consistency.clamp(0.0, 1.0) * (0.7 * evidence + 0.3 * corroboration)).clamp(0.0, 1.0)
}

/// What one fragment row contributes to its key's aggregate (`sign` +1 when written, -1 when
/// removed): the same deltas the statement triggers derive from transition tables.
pub struct FragmentRow<'a> {
    pub value_type: &'a str,
    pub source: Option<&'a str>,
    pub frequency: i64,
    pub value: &'a Value,
    pub sign: i64,
}

/// The change of one key's aggregate: what a part row adds.
#[derive(Debug, Default, PartialEq)]
pub struct KeyDelta {
    pub sample_count: i64,
    pub frequency_total: i64,
    pub type_counts: Map<String, Value>,
    pub source_counts: Map<String, Value>,
    /// Up to [`MAX_SAMPLES`] distinct non-null values of the rows written.
    pub samples: Vec<Value>,
}

impl KeyDelta {
    /// Adds one row's contribution.
    pub fn add(&mut self, row: &FragmentRow<'_>) {
        self.sample_count += row.sign;
        self.frequency_total += row.sign * row.frequency;
        bump(&mut self.type_counts, row.value_type, row.sign);
        if let Some(source) = row.source {
            bump(&mut self.source_counts, source, row.sign);
        }
        if row.sign > 0
            && !row.value.is_null()
            && self.samples.len() < MAX_SAMPLES
            && !self.samples.contains(row.value)
        {
            self.samples.push(row.value.clone());
        }
    }
}

fn bump(counts: &mut Map<String, Value>, label: &str, by: i64) {
    let n = counts.get(label).map(count).unwrap_or(0) + by;
    if n == 0 {
        counts.remove(label);
    } else {
        counts.insert(label.to_string(), Value::from(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn counts_add_and_cancel() {
        let a = obj(json!({"integer": 3, "null": 1}));
        let b = obj(json!({"integer": -3, "number": 2}));
        assert_eq!(
            Value::Object(add_counts(&a, &b)),
            json!({"null": 1, "number": 2})
        );
        let c = count_object([(Some("x"), 2), (None, 5), (Some("x"), 1), (Some("y"), 0)]);
        assert_eq!(Value::Object(c), json!({"x": 3}));
    }

    #[test]
    fn dominant_widens_numbers() {
        let (t, c) = dominant(&obj(json!({"integer": 6, "number": 2, "null": 10})));
        assert_eq!(t, "number");
        assert!((c - 1.0).abs() < 1e-9);
        assert_eq!(dominant(&obj(json!({"null": 4}))).0, "null");
        let (t, c) = dominant(&obj(json!({"string": 3, "integer": 1})));
        assert_eq!(t, "string");
        assert!((c - 0.75).abs() < 1e-9);
    }

    #[test]
    fn samples_are_bounded_and_distinct() {
        let new: Vec<Value> = vec![json!([1, 2, 2, null]), json!([3])];
        assert_eq!(
            merge_samples(&[json!(0)], &new),
            vec![json!(0), json!(1), json!(2), json!(3)]
        );
        let many: Vec<Value> = (0..50).map(Value::from).collect();
        assert_eq!(merge_samples(&[], &many).len(), MAX_SAMPLES);
    }

    #[test]
    fn confidence_formula() {
        assert_eq!(field_confidence(0, 1.0, 0), 0.0);
        let low = field_confidence(1, 1.0, 1);
        let high = field_confidence(100, 1.0, 3);
        assert!(low < 0.2 && high > 0.99, "{low} {high}");
        assert!(field_confidence(100, 0.5, 3) < 0.51);
        assert!(field_confidence(1_000_000, 2.0, 99) <= 1.0);
    }

    #[test]
    fn a_rewritten_row_moves_its_type_and_source_and_keeps_the_count() {
        let old = json!("7");
        let new = json!(7);
        let mut d = KeyDelta::default();
        d.add(&FragmentRow {
            value_type: "string",
            source: Some("a"),
            frequency: 2,
            value: &old,
            sign: -1,
        });
        d.add(&FragmentRow {
            value_type: "integer",
            source: Some("b"),
            frequency: 3,
            value: &new,
            sign: 1,
        });
        assert_eq!(d.sample_count, 0);
        assert_eq!(d.frequency_total, 1);
        assert_eq!(
            Value::Object(d.type_counts),
            json!({"string": -1, "integer": 1})
        );
        assert_eq!(Value::Object(d.source_counts), json!({"a": -1, "b": 1}));
        assert_eq!(d.samples, vec![json!(7)]);
    }

    #[test]
    fn deltas_cancel_out_and_samples_stay_distinct_and_bounded() {
        let mut d = KeyDelta::default();
        let values: Vec<Value> = (0..30).map(|i| json!(i % 12)).collect();
        for v in &values {
            d.add(&FragmentRow {
                value_type: "integer",
                source: None,
                frequency: 1,
                value: v,
                sign: 1,
            });
            d.add(&FragmentRow {
                value_type: "integer",
                source: None,
                frequency: 1,
                value: v,
                sign: -1,
            });
        }
        d.add(&FragmentRow {
            value_type: "null",
            source: None,
            frequency: 1,
            value: &Value::Null,
            sign: 1,
        });
        assert_eq!(d.sample_count, 1);
        assert_eq!(Value::Object(d.type_counts), json!({"null": 1}));
        assert!(d.source_counts.is_empty());
        assert_eq!(d.samples, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
    }
}
