//! Casts of single values ([`cast`]) and the built-in coercion of the "auto" strategy
//! ([`coerce`]). The rules are the [table of the module documentation](super#cast-rules).

use serde_json::{Map, Number, Value};

use crate::infer::{conforms, is_date, is_timestamp, value_type};
use crate::named::named_enum;
use crate::schema::{AttrType, Definition};

named_enum! {
    /// The target type of a [`Step::Cast`](super::Step::Cast).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum CastTarget {
        Number = "number",
        Integer = "integer",
        String = "string",
        Boolean = "boolean",
        Timestamp = "timestamp",
    }
}

impl CastTarget {
    /// The cast target for an attribute type; `None` for `date`, `object` and `array`, which
    /// have no built-in coercion.
    pub fn for_attr_type(t: AttrType) -> Option<CastTarget> {
        match t {
            AttrType::Number => Some(CastTarget::Number),
            AttrType::Integer => Some(CastTarget::Integer),
            AttrType::String => Some(CastTarget::String),
            AttrType::Boolean => Some(CastTarget::Boolean),
            AttrType::Timestamp => Some(CastTarget::Timestamp),
            AttrType::Date | AttrType::Object | AttrType::Array => None,
        }
    }
}

/// A value for error messages: its JSON text, cut to a readable length.
fn show(v: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let text = v.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}…")
    }
}

fn cast_error(value: &Value, to: CastTarget, why: Option<&str>) -> String {
    let mut msg = format!(
        "cannot cast {} {} to {}",
        value_type(value),
        show(value),
        to.as_str()
    );
    if let Some(why) = why {
        msg.push_str(": ");
        msg.push_str(why);
    }
    msg
}

/// `f` as an i64 when it is finite, has no fraction and lies within i64.
fn f64_to_i64(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; i64::MAX is not.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// Reads a string as a finite number: an integer when it is one that fits i64.
fn parse_number(s: &str) -> Option<Number> {
    // A JSON number is kept digit for digit; other spellings Rust reads (".5", "5.") go
    // through f64.
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    serde_json::from_str::<Number>(s)
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(Number::from_f64))
}

/// Converts a value to a cast target by the rules of the module documentation's
/// [table](super#cast-rules). The error is a message naming the value and the target.
pub fn cast(value: &Value, to: CastTarget) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let fail = |why: Option<&str>| Err(cast_error(value, to, why));
    match to {
        CastTarget::Number => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => match parse_number(s) {
                Some(n) => Ok(Value::Number(n)),
                None => fail(Some("not a finite number")),
            },
            _ => fail(None),
        },
        CastTarget::Integer => match value {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(i.into())
                } else if n.is_u64() {
                    fail(Some("out of the 64-bit integer range"))
                } else {
                    match n.as_f64().and_then(f64_to_i64) {
                        Some(i) => Ok(i.into()),
                        None => fail(Some("not a whole number within the 64-bit integer range")),
                    }
                }
            }
            Value::String(s) => {
                let t = s.trim();
                if let Ok(i) = t.parse::<i64>() {
                    return Ok(i.into());
                }
                match t.parse::<f64>().ok().and_then(f64_to_i64) {
                    Some(i) => Ok(i.into()),
                    None => fail(Some("not a whole number within the 64-bit integer range")),
                }
            }
            _ => fail(None),
        },
        CastTarget::String => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => fail(None),
        },
        CastTarget::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Ok(Value::Bool(false)),
                Some(1) => Ok(Value::Bool(true)),
                _ => fail(Some("only the integers 0 and 1 are booleans")),
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => fail(Some("expected true, false, yes, no, 1 or 0")),
            },
            _ => fail(None),
        },
        CastTarget::Timestamp => match value {
            Value::Number(n) if n.is_i64() => Ok(value.clone()),
            Value::String(s) => {
                let t = s.trim();
                if is_timestamp(t) {
                    Ok(Value::String(t.to_string()))
                } else if is_date(t) {
                    Ok(Value::String(format!("{t}T00:00:00Z")))
                } else {
                    fail(Some("not an ISO-8601 date or timestamp"))
                }
            }
            Value::Number(_) => fail(Some(
                "only integers (epoch milliseconds) are timestamps among numbers",
            )),
            _ => fail(None),
        },
    }
}

/// The built-in coercions of the "auto" strategy: every declared attribute present in the
/// payload whose value does not [conform](conforms) to its type is [`cast`] to that type and
/// replaced on success. Attributes of type `date`, `object` and `array` are not coerced.
/// Returns the names of the attributes whose values still do not conform, sorted.
pub fn coerce(def: &Definition, payload: &mut Map<String, Value>) -> Vec<String> {
    let mut failed = Vec::new();
    for (name, attr) in &def.attributes {
        let Some(v) = payload.get_mut(name) else {
            continue;
        };
        if conforms(attr.attr_type, v) {
            continue;
        }
        match CastTarget::for_attr_type(attr.attr_type).map(|t| cast(v, t)) {
            Some(Ok(new)) if conforms(attr.attr_type, &new) => *v = new,
            _ => failed.push(name.clone()),
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::test_support::{def, obj};
    use serde_json::json;

    #[test]
    fn cast_targets_round_trip() {
        for t in CastTarget::ALL {
            assert_eq!(CastTarget::parse(t.as_str()), Some(t));
        }
        assert_eq!(CastTarget::parse("date"), None);
        assert_eq!(CastTarget::parse("Number"), None);
        for t in AttrType::ALL {
            if let Some(c) = CastTarget::for_attr_type(t) {
                assert_eq!(c.as_str(), t.as_str());
            }
        }
    }

    #[test]
    fn cast_rules() {
        use CastTarget::*;
        let ok = |v: Value| Some(v);
        let cases: Vec<(Value, CastTarget, Option<Value>)> = vec![
            // null stays null
            (json!(null), Number, ok(json!(null))),
            (json!(null), Integer, ok(json!(null))),
            (json!(null), String, ok(json!(null))),
            (json!(null), Boolean, ok(json!(null))),
            (json!(null), Timestamp, ok(json!(null))),
            // number
            (json!(3), Number, ok(json!(3))),
            (json!(-2.5), Number, ok(json!(-2.5))),
            (json!(u64::MAX), Number, ok(json!(u64::MAX))),
            (json!("42"), Number, ok(json!(42))),
            (json!(" -1.5 "), Number, ok(json!(-1.5))),
            (
                json!("1e3"),
                Number,
                ok(serde_json::from_str("1e3").unwrap()),
            ),
            (
                json!("123456789012345678901234567890.5"),
                Number,
                ok(serde_json::from_str("123456789012345678901234567890.5").unwrap()),
            ),
            (json!("+2"), Number, ok(json!(2))),
            (json!("abc"), Number, None),
            (json!(""), Number, None),
            (json!("NaN"), Number, None),
            (json!("inf"), Number, None),
            // Numbers are exact: a JSON number beyond f64 is still a number.
            (
                json!("1e400"),
                Number,
                ok(serde_json::from_str("1e400").unwrap()),
            ),
            (json!("NaN"), Number, None),
            (json!(true), Number, None),
            (json!({"a": 1}), Number, None),
            (json!([1]), Number, None),
            // integer
            (json!(7), Integer, ok(json!(7))),
            (json!(i64::MIN), Integer, ok(json!(i64::MIN))),
            (json!(u64::MAX), Integer, None),
            (json!(2.0), Integer, ok(json!(2))),
            (json!(-0.0), Integer, ok(json!(0))),
            (json!(1e3), Integer, ok(json!(1000))),
            (json!(2.5), Integer, None),
            (json!(1e19), Integer, None),
            (json!(" 12 "), Integer, ok(json!(12))),
            (json!("-9223372036854775808"), Integer, ok(json!(i64::MIN))),
            (json!("9223372036854775808"), Integer, None),
            (json!("2.0"), Integer, ok(json!(2))),
            (json!("2.5"), Integer, None),
            (json!("twelve"), Integer, None),
            (json!(false), Integer, None),
            (json!([]), Integer, None),
            // string
            (json!("x"), String, ok(json!("x"))),
            (json!(" padded "), String, ok(json!(" padded "))),
            (json!(5), String, ok(json!("5"))),
            (json!(1.5), String, ok(json!("1.5"))),
            (json!(2.0), String, ok(json!("2.0"))),
            (json!(true), String, ok(json!("true"))),
            (json!(false), String, ok(json!("false"))),
            (json!({}), String, None),
            (json!(["a"]), String, None),
            // boolean
            (json!(true), Boolean, ok(json!(true))),
            (json!(false), Boolean, ok(json!(false))),
            (json!("true"), Boolean, ok(json!(true))),
            (json!(" FALSE "), Boolean, ok(json!(false))),
            (json!("Yes"), Boolean, ok(json!(true))),
            (json!("no"), Boolean, ok(json!(false))),
            (json!("1"), Boolean, ok(json!(true))),
            (json!("0"), Boolean, ok(json!(false))),
            (json!("y"), Boolean, None),
            (json!("2"), Boolean, None),
            (json!(1), Boolean, ok(json!(true))),
            (json!(0), Boolean, ok(json!(false))),
            (json!(2), Boolean, None),
            (json!(-1), Boolean, None),
            (json!(1.0), Boolean, None),
            (json!({}), Boolean, None),
            // timestamp
            (
                json!("2024-01-01T10:00:00Z"),
                Timestamp,
                ok(json!("2024-01-01T10:00:00Z")),
            ),
            (
                json!(" 2024-01-01 10:00+02:00 "),
                Timestamp,
                ok(json!("2024-01-01 10:00+02:00")),
            ),
            (
                json!("2024-02-29"),
                Timestamp,
                ok(json!("2024-02-29T00:00:00Z")),
            ),
            (json!("2023-02-29"), Timestamp, None),
            (json!("yesterday"), Timestamp, None),
            (
                json!(1_700_000_000_000_i64),
                Timestamp,
                ok(json!(1_700_000_000_000_i64)),
            ),
            (json!(-5), Timestamp, ok(json!(-5))),
            (json!(1.5), Timestamp, None),
            (json!(u64::MAX), Timestamp, None),
            (json!(true), Timestamp, None),
            (json!([]), Timestamp, None),
        ];
        assert!(cases.len() >= 40);
        for (input, to, want) in cases {
            let got = cast(&input, to);
            match (&got, &want) {
                (Ok(g), Some(w)) => {
                    assert_eq!(g, w, "{input} → {}", to.as_str());
                    // Same JSON kind of number too (integer vs float).
                    assert_eq!(value_type(g), value_type(w), "{input} → {}", to.as_str());
                }
                (Err(e), None) => {
                    assert!(e.contains(to.as_str()), "{e}");
                }
                _ => panic!("{input} → {}: got {got:?}, want {want:?}", to.as_str()),
            }
        }
    }

    #[test]
    fn cast_results_conform() {
        let inputs = [
            json!(1),
            json!(2.0),
            json!("3"),
            json!("true"),
            json!("2024-01-01"),
            json!("2024-01-01T00:00Z"),
            json!(false),
        ];
        for t in AttrType::ALL {
            let Some(target) = CastTarget::for_attr_type(t) else {
                continue;
            };
            for v in &inputs {
                if let Ok(out) = cast(v, target) {
                    assert!(conforms(t, &out), "{v} → {} gave {out}", t.as_str());
                }
            }
        }
    }

    #[test]
    fn cast_error_messages_are_short() {
        let long = Value::String("x".repeat(1000));
        let e = cast(&long, CastTarget::Number).unwrap_err();
        assert!(e.len() < 200, "{e}");
        assert!(e.starts_with("cannot cast string"), "{e}");
    }

    #[test]
    fn coercion() {
        let d = def(json!({
            "entity_type": "t",
            "attributes": {
                "n": {"type": "number"},
                "i": {"type": "integer"},
                "s": {"type": "string"},
                "b": {"type": "boolean"},
                "ts": {"type": "timestamp"},
                "d": {"type": "date"},
                "o": {"type": "object"},
                "a": {"type": "array"},
                "absent": {"type": "integer"}
            }
        }));
        let mut payload = obj(json!({
            "n": "1.5", "i": "42", "s": 7, "b": "yes", "ts": "2024-01-01",
            "d": "2024-01-01", "o": {}, "a": [], "extra": "untouched"
        }));
        assert_eq!(coerce(&d, &mut payload), Vec::<String>::new());
        assert_eq!(
            Value::Object(payload),
            json!({
                "n": 1.5, "i": 42, "s": "7", "b": true, "ts": "2024-01-01T00:00:00Z",
                "d": "2024-01-01", "o": {}, "a": [], "extra": "untouched"
            })
        );

        let mut payload = obj(json!({
            "n": "lots", "i": 1.5, "s": [1], "b": "maybe", "ts": "soon",
            "d": "2024-01-01T00:00Z", "o": [], "a": {}, "extra": 1
        }));
        let before = payload.clone();
        assert_eq!(
            coerce(&d, &mut payload),
            vec!["a", "b", "d", "i", "n", "o", "s", "ts"]
        );
        assert_eq!(payload, before);

        // Conforming values and nulls are left alone; a mix is partly coerced.
        let mut payload =
            obj(json!({"n": 3, "i": null, "ts": 1_700_000_000_000_i64, "b": 0, "d": 5}));
        assert_eq!(coerce(&d, &mut payload), vec!["d"]);
        assert_eq!(
            Value::Object(payload),
            json!({"n": 3, "i": null, "ts": 1_700_000_000_000_i64, "b": false, "d": 5})
        );
    }
}
