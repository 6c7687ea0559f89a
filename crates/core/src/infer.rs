//! Typing of JSON values: the type name of one value, whether a value fits a declared attribute
//! type, and the inference of an attribute type from a histogram of observed type names.
//!
//! Type names are those of [`value_type`]: `null`, `boolean`, `integer`, `number`, `string`,
//! `timestamp`, `date`, `object` and `array`. A string is a `date` or a `timestamp` when it is
//! an ISO-8601 date or date-time as described at [`is_date`] and [`is_timestamp`]; every other
//! string is a `string`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::schema::AttrType;

/// Every name [`value_type`] returns.
pub const TYPE_NAMES: [&str; 9] = [
    "null",
    "boolean",
    "integer",
    "number",
    "string",
    "timestamp",
    "date",
    "object",
    "array",
];

/// The type name of a JSON value.
///
/// A number is an `integer` when it was written without a fraction or exponent and fits a
/// PostgreSQL `bigint` (i64); `2.0` is a `number`, and so is an integer above `i64::MAX`, which
/// no `bigint` column can hold.
pub fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(s) if is_date(s) => "date",
        Value::String(s) if is_timestamp(s) => "timestamp",
        Value::String(_) => "string",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
    }
}

/// Whether a value of type name `type_name` (see [`value_type`]) fits an attribute of type
/// `attr_type`. Used by [`conforms`] and by [`TypeHistogram::infer`] so that both agree.
pub fn type_name_conforms(attr_type: AttrType, type_name: &str) -> bool {
    matches!(
        (attr_type, type_name),
        (_, "null")
            | (AttrType::String, "string" | "date" | "timestamp")
            | (AttrType::Number, "number" | "integer")
            | (AttrType::Integer, "integer")
            | (AttrType::Boolean, "boolean")
            | (AttrType::Timestamp, "timestamp" | "integer")
            | (AttrType::Date, "date")
            | (AttrType::Object, "object")
            | (AttrType::Array, "array")
    )
}

/// Whether a value fits a declared attribute type.
///
/// - `null` fits every type (it is a valid observation of any attribute).
/// - `string` accepts every JSON string, including date and timestamp strings.
/// - `number` accepts every JSON number; `integer` only integers that fit an i64.
/// - `timestamp` accepts ISO-8601 timestamp strings and integers, which are read as
///   milliseconds since the Unix epoch. A bare date string does not fit a `timestamp`.
/// - `date` accepts only `YYYY-MM-DD` strings.
/// - `boolean`, `object` and `array` accept exactly that JSON kind.
pub fn conforms(attr_type: AttrType, v: &Value) -> bool {
    type_name_conforms(attr_type, value_type(v))
}

/// Parses exactly `n` ASCII digits at the start of `b`.
fn digits(b: &[u8], n: usize) -> Option<u32> {
    if b.len() < n {
        return None;
    }
    b[..n].iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses the `YYYY-MM-DD` at the start of `b`; returns the rest.
fn date_prefix(b: &[u8]) -> Option<&[u8]> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(b, 4)?;
    let month = digits(&b[5..], 2)?;
    let day = digits(&b[8..], 2)?;
    let valid =
        year >= 1 && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
    valid.then_some(&b[10..])
}

/// Whether `s` is an ISO-8601 calendar date `YYYY-MM-DD`: a four-digit year from 0001, a month
/// 01–12 and a day that exists in that month (leap years included), as PostgreSQL's `date`
/// input accepts.
pub fn is_date(s: &str) -> bool {
    date_prefix(s.as_bytes()).is_some_and(|rest| rest.is_empty())
}

/// Whether `s` is an ISO-8601 timestamp: a [date](is_date), `T` (or `t` or a space), `HH:MM`,
/// optionally `:SS` with an optional fraction `.f…` (one or more digits), then optionally `Z`
/// (or `z`) or an offset `±HH:MM`. Hours are 00–23, minutes 00–59, seconds 00–60 (a leap
/// second, which PostgreSQL accepts); offsets go up to ±15:59, the largest PostgreSQL accepts.
pub fn is_timestamp(s: &str) -> bool {
    let Some(rest) = date_prefix(s.as_bytes()) else {
        return false;
    };
    let Some((&sep, rest)) = rest.split_first() else {
        return false;
    };
    if !matches!(sep, b'T' | b't' | b' ') {
        return false;
    }
    // HH:MM
    if rest.len() < 5 || rest[2] != b':' {
        return false;
    }
    match (digits(rest, 2), digits(&rest[3..], 2)) {
        (Some(h), Some(m)) if h < 24 && m < 60 => {}
        _ => return false,
    }
    let mut rest = &rest[5..];
    // :SS(.f+)?
    if let Some(after) = rest.strip_prefix(b":") {
        match digits(after, 2) {
            Some(sec) if sec <= 60 => {}
            _ => return false,
        }
        rest = &after[2..];
        if let Some(fraction) = rest.strip_prefix(b".") {
            let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return false;
            }
            rest = &fraction[n..];
        }
    }
    // Z | ±HH:MM | nothing
    match rest {
        [] | [b'Z'] | [b'z'] => true,
        [b'+' | b'-', tail @ ..] => {
            tail.len() == 5
                && tail[2] == b':'
                && matches!(
                    (digits(tail, 2), digits(&tail[3..], 2)),
                    (Some(h), Some(m)) if h <= 15 && m < 60
                )
        }
        _ => false,
    }
}

/// Counts of observed values per type name (see [`value_type`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeHistogram {
    pub counts: BTreeMap<String, u64>,
}

impl TypeHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `count` values of type name `type_name`.
    pub fn add(&mut self, type_name: &str, count: u64) {
        *self.counts.entry(type_name.to_string()).or_insert(0) += count;
    }

    /// Adds one value.
    pub fn add_value(&mut self, v: &Value) {
        self.add(value_type(v), 1);
    }

    fn count(&self, type_name: &str) -> u64 {
        self.counts.get(type_name).copied().unwrap_or(0)
    }

    /// The inferred attribute type and its consistency: the share (0–1] of the non-null values
    /// that [conform](type_name_conforms) to it.
    ///
    /// Nulls are ignored. Integers and numbers together give `number`; dates and timestamps
    /// together give `timestamp` (whose consistency counts only the timestamps and integers,
    /// since a bare date does not conform to `timestamp`). Otherwise the most frequent type
    /// wins; among equally frequent types the one more values conform to wins (two integers
    /// and two timestamps give `timestamp`, since integers are epoch milliseconds there), and
    /// remaining ties go to the first in the order string, number, integer, boolean,
    /// timestamp, date, object, array. Unknown type names count as values that fit no type. `None` when
    /// no non-null value was seen.
    pub fn infer(&self) -> Option<(AttrType, f64)> {
        let total: u64 = self
            .counts
            .iter()
            .filter(|(name, _)| name.as_str() != "null")
            .map(|(_, &n)| n)
            .sum();
        if total == 0 {
            return None;
        }
        let (integers, numbers) = (self.count("integer"), self.count("number"));
        let (dates, timestamps) = (self.count("date"), self.count("timestamp"));
        let candidates = AttrType::ALL.map(|t| {
            let weight = match t {
                AttrType::Number => numbers + if numbers > 0 { integers } else { 0 },
                AttrType::Integer if numbers > 0 => 0,
                AttrType::Timestamp => timestamps + if timestamps > 0 { dates } else { 0 },
                AttrType::Date if timestamps > 0 => 0,
                _ => self.count(t.as_str()),
            };
            (t, weight)
        });
        // The largest weight; among equals the one more values conform to; then the first in
        // AttrType::ALL order.
        let mut best: Option<(AttrType, u64, u64)> = None;
        for (t, weight) in candidates {
            if weight == 0 {
                continue;
            }
            let fitting = self.fitting(t);
            if best.is_none_or(|(_, w, f)| (weight, fitting) > (w, f)) {
                best = Some((t, weight, fitting));
            }
        }
        // None when only unknown type names were seen.
        best.map(|(t, _, fitting)| (t, fitting as f64 / total as f64))
    }

    /// How many non-null values conform to `t`.
    fn fitting(&self, t: AttrType) -> u64 {
        self.counts
            .iter()
            .filter(|(name, _)| name.as_str() != "null" && type_name_conforms(t, name))
            .map(|(_, &n)| n)
            .sum()
    }
}

/// Elements of one array looked at when inferring what an array holds, by default.
pub const MAX_ELEMENTS_SAMPLED: usize = 20;

/// The attribute (as definition JSON) that the sampled values of one field suggest: the
/// [inferred](TypeHistogram::infer) type, and below it, recursively, the `items` of arrays
/// (from the first `elements` elements of each) and the `properties` of objects
/// (the members present in at least half of the sampled objects). `None` when no value is
/// non-null. Deeper than `depth` levels, objects and arrays are left open.
pub fn infer_attribute<'a>(
    values: impl IntoIterator<Item = &'a Value>,
    depth: usize,
    elements: usize,
) -> Option<Value> {
    infer_from(values.into_iter().collect(), depth, elements)
}

fn infer_from(values: Vec<&Value>, depth: usize, elements: usize) -> Option<Value> {
    let mut h = TypeHistogram::new();
    for v in &values {
        h.add_value(v);
    }
    let (t, _) = h.infer()?;
    let mut attr = serde_json::json!({"type": t.as_str()});
    if depth == 0 {
        return Some(attr);
    }
    match t {
        AttrType::Array => {
            let sampled = values
                .iter()
                .filter_map(|v| v.as_array())
                .flat_map(|a| a.iter().take(elements))
                .collect();
            if let Some(items) = infer_from(sampled, depth - 1, elements) {
                attr["items"] = items;
            }
        }
        AttrType::Object => {
            let objects: Vec<&serde_json::Map<String, Value>> =
                values.iter().filter_map(|v| v.as_object()).collect();
            let mut keys: Vec<&String> = Vec::new();
            let mut seen: BTreeMap<&String, usize> = BTreeMap::new();
            for o in &objects {
                for k in o.keys() {
                    let n = seen.entry(k).or_insert(0);
                    if *n == 0 {
                        keys.push(k);
                    }
                    *n += 1;
                }
            }
            let mut properties = serde_json::Map::new();
            for k in keys {
                if seen[k] * 2 < objects.len() || !crate::ident::is_valid_name(k) {
                    continue;
                }
                let member = objects.iter().filter_map(|o| o.get(k)).collect();
                if let Some(a) = infer_from(member, depth - 1, elements) {
                    properties.insert(k.clone(), a);
                }
            }
            if !properties.is_empty() {
                attr["properties"] = Value::Object(properties);
            }
        }
        _ => {}
    }
    Some(attr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_types() {
        let cases: Vec<(Value, &str)> = vec![
            (json!(null), "null"),
            (json!(true), "boolean"),
            (json!(false), "boolean"),
            (json!(0), "integer"),
            (json!(-7), "integer"),
            (json!(i64::MAX), "integer"),
            (json!(u64::MAX), "number"),
            (json!(2.0), "number"),
            (json!(-0.5), "number"),
            (json!(1e300), "number"),
            (json!(""), "string"),
            (json!("hello"), "string"),
            (json!("2024-02-29"), "date"),
            (json!("2023-02-29"), "string"),
            (json!("2024-04-31"), "string"),
            (json!("2024-13-01"), "string"),
            (json!("2024-00-10"), "string"),
            (json!("2024-01-00"), "string"),
            (json!("0000-01-01"), "string"),
            (json!("2024-1-01"), "string"),
            (json!("20240101"), "string"),
            (json!("2024-01-01 "), "string"),
            (json!("2024-01-01T10:00"), "timestamp"),
            (json!("2024-01-01T10:00:59"), "timestamp"),
            (json!("2024-01-01T23:59:60"), "timestamp"),
            (json!("2024-01-01T10:00:00.123456789"), "timestamp"),
            (json!("2024-01-01T10:00:00Z"), "timestamp"),
            (json!("2024-01-01t10:00:00z"), "timestamp"),
            (json!("2024-01-01 10:00:00+02:00"), "timestamp"),
            (json!("2024-01-01T10:00-05:30"), "timestamp"),
            (json!("2024-01-01T10:00:00.5-15:59"), "timestamp"),
            (json!("2024-01-01T24:00"), "string"),
            (json!("2024-01-01T10:60"), "string"),
            (json!("2024-01-01T10:00:61"), "string"),
            (json!("2024-01-01T10"), "string"),
            (json!("2024-01-01T10:00:00."), "string"),
            (json!("2024-01-01T10:00:00,5"), "string"),
            (json!("2024-01-01T10:00+16:00"), "string"),
            (json!("2024-01-01T10:00+0200"), "string"),
            (json!("2024-01-01T10:00+02"), "string"),
            (json!("2024-01-01T10:00ZZ"), "string"),
            (json!("2024-01-01X10:00"), "string"),
            (json!("2024-01-01T"), "string"),
            (json!("２０２４-01-01"), "string"),
            (json!({"a": 1}), "object"),
            (json!([1, 2]), "array"),
        ];
        for (v, want) in cases {
            assert_eq!(value_type(&v), want, "{v}");
            assert!(TYPE_NAMES.contains(&want));
        }
    }

    #[test]
    fn conformance() {
        use AttrType::*;
        let cases: Vec<(AttrType, Value, bool)> = vec![
            (String, json!("x"), true),
            (String, json!("2024-01-01"), true),
            (String, json!("2024-01-01T00:00Z"), true),
            (String, json!(1), false),
            (Number, json!(1), true),
            (Number, json!(1.5), true),
            (Number, json!(u64::MAX), true),
            (Number, json!("1"), false),
            (Integer, json!(1), true),
            (Integer, json!(1.0), false),
            (Integer, json!(u64::MAX), false),
            (Boolean, json!(false), true),
            (Boolean, json!(0), false),
            (Timestamp, json!("2024-01-01T00:00Z"), true),
            (Timestamp, json!(1_700_000_000_000_i64), true),
            (Timestamp, json!(1.5), false),
            (Timestamp, json!("2024-01-01"), false),
            (Timestamp, json!("yesterday"), false),
            (Date, json!("2024-01-01"), true),
            (Date, json!("2024-01-01T00:00Z"), false),
            (Date, json!(20240101), false),
            (Object, json!({}), true),
            (Object, json!([]), false),
            (Array, json!([]), true),
            (Array, json!({}), false),
        ];
        for (t, v, want) in cases {
            assert_eq!(conforms(t, &v), want, "{} {v}", t.as_str());
        }
        for t in AttrType::ALL {
            assert!(conforms(t, &Value::Null));
        }
    }

    fn hist(entries: &[(&str, u64)]) -> TypeHistogram {
        let mut h = TypeHistogram::new();
        for &(name, n) in entries {
            h.add(name, n);
        }
        h
    }

    #[test]
    fn inference() {
        use AttrType::*;
        type Case = (Vec<(&'static str, u64)>, Option<(AttrType, f64)>);
        let cases: Vec<Case> = vec![
            (vec![], None),
            (vec![("null", 5)], None),
            (vec![("integer", 3), ("null", 10)], Some((Integer, 1.0))),
            (vec![("integer", 3), ("number", 1)], Some((Number, 1.0))),
            (
                vec![("integer", 9), ("number", 1), ("string", 5)],
                Some((Number, 10.0 / 15.0)),
            ),
            (vec![("date", 3), ("timestamp", 1)], Some((Timestamp, 0.25))),
            (vec![("date", 4)], Some((Date, 1.0))),
            (
                vec![("timestamp", 2), ("integer", 2)],
                Some((Timestamp, 1.0)),
            ),
            (vec![("string", 3), ("date", 1)], Some((String, 1.0))),
            (vec![("string", 1), ("date", 3)], Some((Date, 0.75))),
            (vec![("string", 2), ("boolean", 2)], Some((String, 0.5))),
            (vec![("boolean", 2), ("integer", 2)], Some((Integer, 0.5))),
            (vec![("object", 1), ("array", 1)], Some((Object, 0.5))),
            (
                vec![("array", 3), ("object", 1), ("null", 100)],
                Some((Array, 0.75)),
            ),
            (vec![("boolean", 1), ("mystery", 3)], Some((Boolean, 0.25))),
            (vec![("mystery", 3)], None),
        ];
        for (entries, want) in cases {
            let got = hist(&entries).infer();
            match (got, want) {
                (None, None) => {}
                (Some((t, c)), Some((wt, wc))) => {
                    assert_eq!(t, wt, "{entries:?}");
                    assert!((c - wc).abs() < 1e-12, "{entries:?}: {c} != {wc}");
                }
                _ => panic!("{entries:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn histogram_accumulates() {
        let mut h = TypeHistogram::new();
        for v in [json!(1), json!(2), json!(null), json!(2.5)] {
            h.add_value(&v);
        }
        h.add("integer", 2);
        assert_eq!(h.counts["integer"], 4);
        assert_eq!(h.infer(), Some((AttrType::Number, 1.0)));
    }

    #[test]
    fn infers_nested_attributes() {
        use serde_json::json;
        let commits = [
            json!([{"sha": "a1", "message": "m", "distinct": true}, {"sha": "b2", "message": "n"}]),
            json!([{"sha": "c3", "message": "o", "author": {"name": "ada"}}]),
            json!([]),
        ];
        assert_eq!(
            infer_attribute(&commits, 4, MAX_ELEMENTS_SAMPLED).unwrap(),
            json!({"type": "array", "items": {"type": "object", "properties": {
                "sha": {"type": "string"}, "message": {"type": "string"}}}})
        );
        let coordinates = [json!([-118.6, 34.4, 26]), json!([1, 2, 3.5])];
        assert_eq!(
            infer_attribute(&coordinates, 4, MAX_ELEMENTS_SAMPLED).unwrap(),
            json!({"type": "array", "items": {"type": "number"}})
        );
        // Members that are not identifiers stay undeclared (open); depth bounds the walk.
        let labels = [json!({"app.kubernetes.io/name": "x", "tier": "web"})];
        assert_eq!(
            infer_attribute(&labels, 4, MAX_ELEMENTS_SAMPLED).unwrap(),
            json!({"type": "object", "properties": {"tier": {"type": "string"}}})
        );
        assert_eq!(
            infer_attribute(&labels, 0, MAX_ELEMENTS_SAMPLED).unwrap(),
            json!({"type": "object"})
        );
        assert_eq!(
            infer_attribute(&[json!(null)], 4, MAX_ELEMENTS_SAMPLED),
            None
        );
        assert_eq!(
            infer_attribute(&[json!([null])], 4, MAX_ELEMENTS_SAMPLED).unwrap(),
            json!({"type": "array"})
        );
    }
}
