//! Splitting an ingested payload against the active schema.
//!
//! A payload is a JSON object. Each **top-level key is one field**: nested objects are not
//! flattened, so `{"geo": {"lat": 1, "lon": 2}}` is the single field `geo` whose value is the
//! whole object (an `object` attribute, or one raw fragment if `geo` is undeclared). Arrays and
//! scalars are likewise kept whole.
//!
//! [`split`] sorts the fields into observations (declared and conforming), mismatches (declared
//! but of the wrong type) and fragments (undeclared), keeping the payload's key order.

use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::infer::conforms;
use crate::schema::{AttrType, Definition};

/// Largest payload accepted, in bytes of JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;
/// Deepest nesting accepted in a payload; the payload object itself is level 1.
pub const MAX_PAYLOAD_DEPTH: usize = 64;
/// The longest payload key and entity key, in bytes: keys are indexed, and PostgreSQL's
/// btree refuses entries over a third of a page (about 2.7 kB).
pub const MAX_KEY_BYTES: usize = 1024;

/// Whether `v` nests deeper than `limit` levels (an object or array is one level more than its
/// deepest member; a scalar is level 0). Iterative, so that any depth is safe to check.
fn deeper_than(v: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, level)) = stack.pop() {
        let level = level + 1;
        match v {
            Value::Array(_) | Value::Object(_) if level > limit => return true,
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, level))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, level))),
            _ => {}
        }
    }
    false
}

/// Checks a payload before it is split: at most [`MAX_PAYLOAD_BYTES`] of JSON text
/// (`text_len`), a JSON object, nested at most [`MAX_PAYLOAD_DEPTH`] levels. Returns the object.
pub fn check_payload(v: &Value, text_len: usize) -> Result<&Map<String, Value>, CoreError> {
    if text_len > MAX_PAYLOAD_BYTES {
        return Err(CoreError::TooLarge {
            what: "payload",
            size: text_len,
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let Value::Object(obj) = v else {
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => unreachable!(),
        };
        return Err(CoreError::InvalidArgument {
            what: "payload",
            message: format!("must be a JSON object, not {kind}"),
        });
    };
    if let Some(k) = obj.keys().find(|k| k.len() > MAX_KEY_BYTES) {
        return Err(CoreError::TooLarge {
            what: "payload key",
            size: k.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    if deeper_than(v, MAX_PAYLOAD_DEPTH) {
        return Err(CoreError::TooDeep {
            what: "payload",
            limit: MAX_PAYLOAD_DEPTH,
        });
    }
    Ok(obj)
}

/// A payload sorted against a schema. Every list keeps the payload's key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// Values of declared attributes that conform to the attribute's type (`null` included),
    /// and keys of related entities under the relationship's name, as (field name, value).
    /// A key that is an alias is reported under the attribute's current name.
    pub observations: Vec<(String, Value)>,
    /// Keys the schema does not declare, with their values.
    pub fragments: Vec<(String, Value)>,
    /// Declared fields whose value does not fit: (field name, value, expected type). For a
    /// relationship, whose value must be a key (a string or a number), the expected type is
    /// reported as [`AttrType::String`].
    pub mismatches: Vec<(String, Value, AttrType)>,
}

/// What a payload key names in a definition.
enum Field<'d> {
    Attribute(&'d str, AttrType),
    Relationship(&'d str),
}

/// Resolves a key: an attribute's name first, then a relationship's, then an attribute's alias
/// (when two attributes list the same alias, the first attribute by name wins).
fn resolve<'d>(def: &'d Definition, key: &str) -> Option<Field<'d>> {
    if let Some((name, a)) = def.attributes.get_key_value(key) {
        return Some(Field::Attribute(name, a.attr_type));
    }
    if let Some((name, _)) = def.relationships.get_key_value(key) {
        return Some(Field::Relationship(name));
    }
    def.attributes
        .iter()
        .find(|(_, a)| a.aliases.iter().any(|alias| alias == key))
        .map(|(name, a)| Field::Attribute(name, a.attr_type))
}

/// Sorts a payload's top-level fields into observations, fragments and mismatches.
///
/// - A declared attribute (or an alias of one) whose value [conforms](conforms) — `null` always
///   does — is an observation under the attribute's name. If a payload holds both an attribute
///   and one of its aliases, both are observations, in payload order.
/// - A relationship whose value is a string, a number or `null` is an observation under the
///   relationship's name; any other value is a mismatch.
/// - A declared attribute whose value does not conform is a mismatch.
/// - Any other key is a fragment.
pub fn split(def: &Definition, payload: &Map<String, Value>) -> Split {
    let mut out = Split::default();
    for (key, value) in payload {
        match resolve(def, key) {
            Some(Field::Attribute(name, t)) => {
                if conforms(t, value) {
                    out.observations.push((name.to_string(), value.clone()));
                } else {
                    out.mismatches.push((name.to_string(), value.clone(), t));
                }
            }
            Some(Field::Relationship(name)) => {
                if matches!(value, Value::String(_) | Value::Number(_) | Value::Null) {
                    out.observations.push((name.to_string(), value.clone()));
                } else {
                    out.mismatches
                        .push((name.to_string(), value.clone(), AttrType::String));
                }
            }
            None => out.fragments.push((key.clone(), value.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quake() -> Definition {
        Definition::parse(&json!({
            "entity_type": "earthquake",
            "attributes": {
                "mag": {"type": "number", "aliases": ["magnitude"]},
                "place": {"type": "string"},
                "time": {"type": "timestamp"},
                "felt": {"type": "integer"},
                "geo": {"type": "object"}
            },
            "relationships": {"near": {"target": "city"}}
        }))
        .unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn splits_in_payload_order() {
        let payload = obj(json!({
            "zeta": 1,
            "magnitude": 4.5,
            "place": "Lisbon",
            "felt": 2.5,
            "geo": {"lat": 38.7, "lon": -9.1, "depth": {"km": 10}},
            "alpha": {"nested": [1, 2]},
            "time": 1_700_000_000_000_i64,
            "near": "lisbon",
            "place2": null,
            "mag": null
        }));
        let s = split(&quake(), &payload);
        assert_eq!(
            s.observations,
            vec![
                ("mag".to_string(), json!(4.5)),
                ("place".to_string(), json!("Lisbon")),
                (
                    "geo".to_string(),
                    json!({"lat": 38.7, "lon": -9.1, "depth": {"km": 10}})
                ),
                ("time".to_string(), json!(1_700_000_000_000_i64)),
                ("near".to_string(), json!("lisbon")),
                ("mag".to_string(), json!(null)),
            ]
        );
        assert_eq!(
            s.fragments,
            vec![
                ("zeta".to_string(), json!(1)),
                ("alpha".to_string(), json!({"nested": [1, 2]})),
                ("place2".to_string(), json!(null)),
            ]
        );
        assert_eq!(
            s.mismatches,
            vec![("felt".to_string(), json!(2.5), AttrType::Integer)]
        );
    }

    #[test]
    fn relationships_take_keys() {
        let d = quake();
        for (v, ok) in [
            (json!("x"), true),
            (json!(17), true),
            (json!(null), true),
            (json!(true), false),
            (json!({"id": 1}), false),
            (json!([1]), false),
        ] {
            let s = split(&d, &obj(json!({ "near": v.clone() })));
            if ok {
                assert_eq!(s.observations, vec![("near".to_string(), v)]);
                assert!(s.mismatches.is_empty());
            } else {
                assert_eq!(
                    s.mismatches,
                    vec![("near".to_string(), v, AttrType::String)]
                );
                assert!(s.observations.is_empty());
            }
            assert!(s.fragments.is_empty());
        }
    }

    #[test]
    fn names_before_aliases() {
        // An alias that is also a relationship's name: the relationship wins.
        let d = Definition::parse(&json!({
            "entity_type": "e",
            "attributes": {
                "a": {"type": "string", "aliases": ["r", "old"]},
                "b": {"type": "integer", "aliases": ["old"]}
            },
            "relationships": {"r": {"target": "t"}}
        }))
        .unwrap();
        let s = split(&d, &obj(json!({"r": 5, "old": "x"})));
        assert_eq!(
            s.observations,
            vec![("r".to_string(), json!(5)), ("a".to_string(), json!("x"))]
        );
    }

    #[test]
    fn empty_schema_makes_everything_a_fragment() {
        let d = Definition::parse(&json!({"entity_type": "e"})).unwrap();
        let s = split(&d, &obj(json!({"b": 1, "a": 2})));
        assert_eq!(
            s.fragments,
            vec![("b".to_string(), json!(1)), ("a".to_string(), json!(2))]
        );
        assert!(s.observations.is_empty() && s.mismatches.is_empty());
    }

    #[test]
    fn payload_checks() {
        let ok = json!({"a": {"b": [1]}});
        assert_eq!(check_payload(&ok, 20).unwrap().len(), 1);

        for (v, word) in [
            (json!([]), "not an array"),
            (json!("s"), "not a string"),
            (json!(1), "not a number"),
            (json!(1.5), "not a number"),
            (json!(true), "not a boolean"),
            (json!(null), "not null"),
        ] {
            match check_payload(&v, 2) {
                Err(
                    e @ CoreError::InvalidArgument {
                        what: "payload", ..
                    },
                ) => {
                    assert!(e.to_string().contains(word), "{e}");
                    assert_eq!(e.sqlstate().code(), "22023");
                }
                other => panic!("{v}: {other:?}"),
            }
        }

        let e = check_payload(&ok, MAX_PAYLOAD_BYTES + 1).unwrap_err();
        assert!(matches!(
            e,
            CoreError::TooLarge {
                what: "payload",
                ..
            }
        ));
        assert_eq!(e.sqlstate().code(), "54000");
        assert!(check_payload(&ok, MAX_PAYLOAD_BYTES).is_ok());

        // The payload object is level 1: 63 nested arrays inside it is the limit.
        let nest = |n: usize| {
            let mut v = json!(0);
            for _ in 0..n {
                v = json!([v]);
            }
            json!({ "a": v })
        };
        assert!(check_payload(&nest(MAX_PAYLOAD_DEPTH - 1), 0).is_ok());
        assert!(matches!(
            check_payload(&nest(MAX_PAYLOAD_DEPTH), 0),
            Err(CoreError::TooDeep {
                what: "payload",
                limit: MAX_PAYLOAD_DEPTH
            })
        ));
    }
}
