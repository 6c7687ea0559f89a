//! Typed projections: the columns a type's definition gives a typed table, and the value each
//! column takes from a snapshot.
//!
//! One column per leaf of the definition: a top-level attribute, or a member of a declared
//! object at any depth (objects with `properties` are flattened: `properties.mag` is the column
//! `properties_mag`); arrays, maps and opaque objects are one `jsonb` column; a relationship is a
//! `text` column holding the related entity's key. Types, exactness first:
//!
//! | attribute | column | value |
//! |---|---|---|
//! | string | `text` | the string |
//! | number | `numeric` | the number's exact text (exponents within ±[`MAX_EXPONENT`]; beyond, NULL) |
//! | integer | `bigint` | integers that fit 64 bits (larger ones are NULL: the snapshot keeps them) |
//! | boolean | `boolean` | |
//! | timestamp | `timestamptz` | ISO-8601 strings as written, epoch milliseconds converted |
//! | date | `date` | |
//! | object, array, map | `jsonb` | the value |
//!
//! A value of another JSON kind than its column's (a snapshot cell of a name the definition no
//! longer types so) is NULL. Values are handed to SQL as text and cast there: every text this
//! module produces casts without error.

use serde_json::Value;

use crate::ident::{safe_name, MAX_IDENT_LEN};
use crate::number::is_integer;
use crate::path::{Path, Segment};
use crate::schema::{AttrType, Attribute, Definition};

/// Columns every projection has before its attribute columns.
pub const FIXED_COLUMNS: [&str; 4] = ["entity_id", "entity_key", "user_id", "updated_at"];
/// Largest decimal exponent a `numeric` column takes (PostgreSQL's own limits are wider; this
/// keeps every cast cheap and safe).
pub const MAX_EXPONENT: i64 = 1000;
/// Largest absolute epoch-milliseconds value converted (about year 250,000).
pub const MAX_EPOCH_MS: i64 = 8_000_000_000_000_000;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Numeric,
    Bigint,
    Boolean,
    Timestamptz,
    Date,
    Jsonb,
}

impl ColumnKind {
    pub fn sql_type(self) -> &'static str {
        match self {
            ColumnKind::Text => "text",
            ColumnKind::Numeric => "numeric",
            ColumnKind::Bigint => "bigint",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Timestamptz => "timestamptz",
            ColumnKind::Date => "date",
            ColumnKind::Jsonb => "jsonb",
        }
    }

    fn of(a: &Attribute) -> ColumnKind {
        match a.attr_type {
            AttrType::String => ColumnKind::Text,
            AttrType::Number => ColumnKind::Numeric,
            AttrType::Integer => ColumnKind::Bigint,
            AttrType::Boolean => ColumnKind::Boolean,
            AttrType::Timestamp => ColumnKind::Timestamptz,
            AttrType::Date => ColumnKind::Date,
            AttrType::Object | AttrType::Array => ColumnKind::Jsonb,
        }
    }

    pub fn parse(s: &str) -> Option<ColumnKind> {
        [
            ColumnKind::Text,
            ColumnKind::Numeric,
            ColumnKind::Bigint,
            ColumnKind::Boolean,
            ColumnKind::Timestamptz,
            ColumnKind::Date,
            ColumnKind::Jsonb,
        ]
        .into_iter()
        .find(|k| k.sql_type() == s)
    }
}

/// One attribute column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The snapshot path it reads (keys only).
    pub path: Path,
    /// Its name in the table: a safe identifier, unique in the table.
    pub name: String,
    pub kind: ColumnKind,
}

/// The attribute columns of a definition, in walk order (attributes by name, members after
/// their object), then relationships by name.
pub fn columns(def: &Definition) -> Vec<Column> {
    let mut taken: Vec<String> = FIXED_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let name_for = |path: &Path, taken: &mut Vec<String>| {
        let joined: Vec<&str> = path
            .segments()
            .iter()
            .filter_map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Items => None,
            })
            .collect();
        let base = safe_name(&joined.join("_"));
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            let suffix = format!("_{n}");
            let cut: String = base.chars().take(MAX_IDENT_LEN - suffix.len()).collect();
            name = format!("{cut}{suffix}");
            n += 1;
        }
        taken.push(name.clone());
        name
    };
    for (path, a) in def.walk() {
        if path.has_items() || a.is_structured() {
            continue;
        }
        let name = name_for(&path, &mut taken);
        out.push(Column {
            path,
            name,
            kind: ColumnKind::of(a),
        });
    }
    for r in def.relationships.keys() {
        let path = Path::key(r.clone());
        let name = name_for(&path, &mut taken);
        out.push(Column {
            path,
            name,
            kind: ColumnKind::Text,
        });
    }
    out
}

/// The value at `path` in a (nested) snapshot.
pub fn lookup<'a>(snapshot: &'a Value, path: &Path) -> Option<&'a Value> {
    path.segments().iter().try_fold(snapshot, |v, s| match s {
        Segment::Key(k) => v.get(k),
        Segment::Items => None,
    })
}

/// The text a column's cast reads for a value (`None`: NULL).
pub fn cell(kind: ColumnKind, v: &Value) -> Option<String> {
    match (kind, v) {
        (_, Value::Null) => None,
        (ColumnKind::Jsonb, v) => Some(v.to_string()),
        (ColumnKind::Text, Value::String(s)) => Some(s.clone()),
        (ColumnKind::Text, Value::Number(n)) => Some(n.to_string()),
        (ColumnKind::Numeric, Value::Number(n)) => {
            let text = n.to_string();
            exponent_within(&text).then_some(text)
        }
        (ColumnKind::Bigint, Value::Number(n)) if is_integer(n) => {
            n.to_string().parse::<i64>().ok().map(|i| i.to_string())
        }
        (ColumnKind::Boolean, Value::Bool(b)) => Some(b.to_string()),
        (ColumnKind::Timestamptz, Value::String(s)) if crate::infer::is_timestamp(s) => {
            Some(s.clone())
        }
        (ColumnKind::Timestamptz, Value::Number(n)) if is_integer(n) => n
            .to_string()
            .parse::<i64>()
            .ok()
            .filter(|ms| ms.abs() <= MAX_EPOCH_MS)
            .map(epoch_ms_text),
        (ColumnKind::Date, Value::String(s)) if crate::infer::is_date(s) => Some(s.clone()),
        _ => None,
    }
}

/// Whether a number's decimal exponent (written or implied by its digits) stays within
/// ±[`MAX_EXPONENT`].
fn exponent_within(text: &str) -> bool {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().unwrap_or(i64::MAX)),
        None => (text, 0),
    };
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count() as i64;
    exp.checked_abs()
        .is_some_and(|e| e + digits <= MAX_EXPONENT)
}

/// Epoch milliseconds as an ISO-8601 UTC timestamp (`1970-01-01T00:00:00.000Z`).
fn epoch_ms_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (y, era_suffix) = if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    };
    format!(
        "{y:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}+00{era_suffix}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Definition {
        Definition::parse(&v).unwrap()
    }

    #[test]
    fn columns_flatten_declared_objects() {
        let d = def(json!({"entity_type": "quake", "attributes": {
            "properties": {"type": "object", "properties": {
                "mag": {"type": "number"}, "time": {"type": "timestamp"},
                "tags": {"type": "array", "items": "string"}}},
            "geometry": {"type": "object"},
            "entity_key": {"type": "string"},
            "properties_mag": {"type": "integer"}},
            "relationships": {"network": {"target": "net"}}}));
        let cols: Vec<(String, String, &str)> = columns(&d)
            .into_iter()
            .map(|c| (c.path.to_string(), c.name, c.kind.sql_type()))
            .collect();
        assert_eq!(
            cols,
            [
                ("entity_key".into(), "entity_key_2".into(), "text"),
                ("geometry".into(), "geometry".into(), "jsonb"),
                ("properties.mag".into(), "properties_mag".into(), "numeric"),
                ("properties.tags".into(), "properties_tags".into(), "jsonb"),
                (
                    "properties.time".into(),
                    "properties_time".into(),
                    "timestamptz"
                ),
                ("properties_mag".into(), "properties_mag_2".into(), "bigint"),
                ("network".into(), "network".into(), "text"),
            ]
        );
    }

    #[test]
    fn cells_cast_safely() {
        use ColumnKind::*;
        let cases = [
            (Numeric, json!(4.5), Some("4.5")),
            (
                Numeric,
                serde_json::from_str::<Value>("0.1000000000000000000000000001").unwrap(),
                Some("0.1000000000000000000000000001"),
            ),
            (
                Numeric,
                serde_json::from_str::<Value>("1e-400").unwrap(),
                Some("1e-400"),
            ),
            (
                Numeric,
                serde_json::from_str::<Value>("1e100000").unwrap(),
                None,
            ),
            (Numeric, json!("4.5"), None),
            (Bigint, json!(42), Some("42")),
            (
                Bigint,
                serde_json::from_str::<Value>("123456789012345678901234567890").unwrap(),
                None,
            ),
            (Bigint, json!(4.5), None),
            (Text, json!("x"), Some("x")),
            (Text, json!(7), Some("7")),
            (Boolean, json!(true), Some("true")),
            (
                Timestamptz,
                json!("2024-01-31T12:00:00Z"),
                Some("2024-01-31T12:00:00Z"),
            ),
            (
                Timestamptz,
                json!(1517966773840_i64),
                Some("2018-02-07 01:26:13.840+00"),
            ),
            (Timestamptz, json!(0), Some("1970-01-01 00:00:00.000+00")),
            (Timestamptz, json!(-1), Some("1969-12-31 23:59:59.999+00")),
            (Timestamptz, json!("yesterday"), None),
            (Date, json!("2024-02-29"), Some("2024-02-29")),
            (Date, json!("2023-02-29"), None),
            (Jsonb, json!({"a": [1]}), Some("{\"a\":[1]}")),
            (Numeric, json!(null), None),
        ];
        for (kind, v, want) in cases {
            assert_eq!(cell(kind, &v).as_deref(), want, "{kind:?} {v}");
        }
        assert_eq!(epoch_ms_text(951_782_400_000), "2000-02-29 00:00:00.000+00");
        let snap = json!({"properties": {"mag": 2}, "x": null});
        assert_eq!(
            lookup(&snap, &Path::parse("properties.mag").unwrap()),
            Some(&json!(2))
        );
        assert_eq!(
            lookup(&snap, &Path::parse("properties.nope").unwrap()),
            None
        );
    }
}
