//! Splitting an ingested payload against the active schema, by path.
//!
//! A payload is a JSON object; its fields are named by [paths](crate::path). The split walks the
//! payload alongside the definition:
//!
//! - a declared attribute whose value conforms is an **observation** under its path (`mag`,
//!   `actor.login`); an `object` attribute that declares `properties` is walked into, so each of
//!   its declared members is observed on its own; an opaque object, an array and a scalar are
//!   observed whole;
//! - an undeclared key is a **fragment** under its path: an undeclared object is opened and
//!   each member becomes a fragment (`actor.id`, `actor.login`), down to its leaves; arrays
//!   and scalars are kept whole;
//! - a declared field whose value does not fit is a **mismatch**.
//!
//! [`Limits`] bound the opening of undeclared objects: past the depth limit, the paths limit
//! or [`MAX_KEY_BYTES`] of path text, the object is kept whole as one fragment, so nothing is
//! ever dropped. Every list keeps the payload's key order.

use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::infer::conforms;
use crate::path::Path;
use crate::schema::{AttrType, Attribute, Definition, Relationship};

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
    // A key is stored as its path's text form, quoted when it holds '.', '[', ']' or '"'.
    if let Some(size) = obj
        .keys()
        .map(|k| match k.len() > MAX_KEY_BYTES / 6 {
            true => Path::key(k.as_str()).to_string().len(),
            false => k.len(),
        })
        .find(|n| *n > MAX_KEY_BYTES)
    {
        return Err(CoreError::TooLarge {
            what: "payload key",
            size,
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
    /// and keys of related entities under the relationship's name, as (path text, value).
    /// A key that is an alias is reported under the attribute's current name.
    pub observations: Vec<(String, Value)>,
    /// Paths the schema does not declare, with their values.
    pub fragments: Vec<(String, Value)>,
    /// Declared fields whose value does not fit: (path text, value, expected type). For a
    /// relationship, whose value must be a key (a string or a number), the expected type is
    /// reported as [`AttrType::String`].
    pub mismatches: Vec<(String, Value, AttrType)>,
    /// Related entities embedded as objects, for relationships that declare the member holding
    /// the key: (relationship, target entity type, key as text, the object). The relationship
    /// is observed with the key.
    pub embedded: Vec<(String, String, String, Value)>,
}

/// How far undeclared objects are opened into paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most segments in a fragment's path; an object at this depth is kept whole.
    pub max_depth: usize,
    /// Most fragments one payload yields by opening objects (its top-level keys always count
    /// one each); an object whose members would pass it is kept whole.
    pub max_paths: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 16,
            max_paths: 1000,
        }
    }
}

/// What a top-level payload key names in a definition.
enum Field<'d> {
    Attribute(&'d str, &'d Attribute),
    Relationship(&'d str, &'d Relationship),
}

/// Resolves a top-level key: an attribute's name first, then a relationship's, then an
/// attribute's alias (when two attributes list the same alias, the first attribute by name wins).
fn resolve<'d>(def: &'d Definition, key: &str) -> Option<Field<'d>> {
    if let Some((name, a)) = def.attributes.get_key_value(key) {
        return Some(Field::Attribute(name, a));
    }
    if let Some((name, r)) = def.relationships.get_key_value(key) {
        return Some(Field::Relationship(name, r));
    }
    Attribute::member(&def.attributes, key).map(|(name, a)| Field::Attribute(name, a))
}

/// Sorts a payload's fields into observations, fragments and mismatches with the default
/// [`Limits`].
pub fn split(def: &Definition, payload: &Map<String, Value>) -> Split {
    split_with(def, payload, Limits::default())
}

/// Sorts a payload's fields into observations, fragments and mismatches.
///
/// - A declared attribute (or an alias of one) whose value [conforms](conforms_to) — `null`
///   always does — is an observation under the attribute's path. If a payload holds both an
///   attribute and one of its aliases, both are observations, in payload order. An object
///   with declared `properties` is walked into instead.
/// - A relationship (top level only) whose value is a string, a number or `null` is an
///   observation under the relationship's name; any other value is a mismatch.
/// - A declared attribute whose value does not conform is a mismatch.
/// - Any other key is a fragment, undeclared objects opened into their members' paths within
///   `limits`.
pub fn split_with(def: &Definition, payload: &Map<String, Value>, limits: Limits) -> Split {
    let mut walk = Walk {
        out: Split::default(),
        limits,
        budget: limits.max_paths.saturating_sub(payload.len()),
    };
    for (key, value) in payload {
        match resolve(def, key) {
            Some(Field::Attribute(name, a)) => walk.declared(Path::key(name), a, value),
            Some(Field::Relationship(name, r)) => {
                let embedded_key = match (&r.key, value) {
                    (Some(k), Value::Object(o)) => match o.get(k) {
                        Some(Value::String(s)) => Some((Value::String(s.clone()), s.clone())),
                        Some(Value::Number(n)) => Some((Value::Number(n.clone()), n.to_string())),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some((key_value, key_text)) = embedded_key {
                    walk.out.observations.push((name.to_string(), key_value));
                    walk.out.embedded.push((
                        name.to_string(),
                        r.target.clone(),
                        key_text,
                        value.clone(),
                    ));
                } else if matches!(value, Value::String(_) | Value::Number(_) | Value::Null) {
                    walk.out
                        .observations
                        .push((name.to_string(), value.clone()));
                } else {
                    walk.out
                        .mismatches
                        .push((name.to_string(), value.clone(), AttrType::String));
                }
            }
            None => walk.undeclared(Path::key(key.clone()), value),
        }
    }
    walk.out
}

struct Walk {
    out: Split,
    limits: Limits,
    /// Fragments the opening of objects may still add.
    budget: usize,
}

impl Walk {
    fn declared(&mut self, path: Path, a: &Attribute, value: &Value) {
        let members = match value {
            Value::Object(m) if a.is_structured() && !m.is_empty() => Some(m),
            _ => None,
        };
        if let Some(members) = members {
            for (key, v) in members {
                match Attribute::member(&a.properties, key) {
                    Some((name, m)) => self.declared(path.child(name.clone()), m, v),
                    None => {
                        // Within a declared object, each undeclared member is a field of its own.
                        self.budget = self.budget.saturating_sub(1);
                        self.undeclared(path.child(key.clone()), v)
                    }
                }
            }
        } else if conforms_to(a, value) {
            self.out
                .observations
                .push((path.to_string(), value.clone()));
        } else {
            self.out
                .mismatches
                .push((path.to_string(), value.clone(), a.attr_type));
        }
    }

    /// An undeclared field at `path` (already counted): opened when it is a non-empty object
    /// whose members fit the limits, kept whole otherwise.
    fn undeclared(&mut self, path: Path, value: &Value) {
        if let Value::Object(members) = value {
            let opens = !members.is_empty()
                && path.len() < self.limits.max_depth
                && members.len() - 1 <= self.budget
                && path.to_string().len()
                    + 1
                    + members
                        .keys()
                        .map(|k| member_text_len(k))
                        .max()
                        .unwrap_or(0)
                    <= MAX_KEY_BYTES;
            if opens {
                self.budget -= members.len() - 1;
                for (key, v) in members {
                    self.undeclared(path.child(key.clone()), v);
                }
                return;
            }
        }
        self.out.fragments.push((path.to_string(), value.clone()));
    }
}

/// An upper bound of a member key's length in a path's text form (a JSON string at worst,
/// every character escaped as `\uXXXX`).
fn member_text_len(k: &str) -> usize {
    if k.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.len()
    } else {
        k.len() * 6 + 2
    }
}

/// Whether a value fits a declared attribute: its type ([`conforms`]), each element of an
/// array fits the declared `items`, and each declared member of an object fits (members the
/// attribute does not declare are free).
pub fn conforms_to(a: &Attribute, value: &Value) -> bool {
    if !conforms(a.attr_type, value) {
        return false;
    }
    match value {
        Value::Array(elements) => a
            .items
            .as_deref()
            .is_none_or(|items| elements.iter().all(|e| conforms_to(items, e))),
        Value::Object(members) => members.iter().all(|(k, v)| match a.values.as_deref() {
            Some(values) => conforms_to(values, v),
            None => Attribute::member(&a.properties, k).is_none_or(|(_, m)| conforms_to(m, v)),
        }),
        _ => true,
    }
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
                ("alpha.nested".to_string(), json!([1, 2])),
                ("place2".to_string(), json!(null)),
            ]
        );
        assert_eq!(
            s.mismatches,
            vec![("felt".to_string(), json!(2.5), AttrType::Integer)]
        );
    }

    fn event() -> Definition {
        Definition::parse(&json!({
            "entity_type": "event",
            "attributes": {
                "type": {"type": "string"},
                "actor": {"type": "object", "properties": {
                    "id": {"type": "integer"},
                    "login": {"type": "string", "aliases": ["user"]}
                }},
                "payload": {"type": "object", "properties": {
                    "commits": {"type": "array", "items": {"type": "object", "properties": {
                        "sha": {"type": "string"}
                    }}}
                }}
            }
        }))
        .unwrap()
    }

    #[test]
    fn walks_declared_objects_and_opens_undeclared_ones() {
        let payload = obj(json!({
            "type": "PushEvent",
            "actor": {"id": 7, "user": "ada", "avatar": {"url": "u", "size": 40}},
            "repo": {"id": 9, "name": "x/y", "labels": {"app.kubernetes.io/name": "web"}},
            "payload": {"size": 1, "commits": [{"sha": "abc", "message": "m"}], "empty": {}}
        }));
        let s = split(&event(), &payload);
        assert_eq!(
            s.observations,
            vec![
                ("type".to_string(), json!("PushEvent")),
                ("actor.id".to_string(), json!(7)),
                ("actor.login".to_string(), json!("ada")),
                (
                    "payload.commits".to_string(),
                    json!([{"sha": "abc", "message": "m"}])
                ),
            ]
        );
        assert_eq!(
            s.fragments,
            vec![
                ("actor.avatar.url".to_string(), json!("u")),
                ("actor.avatar.size".to_string(), json!(40)),
                ("repo.id".to_string(), json!(9)),
                ("repo.name".to_string(), json!("x/y")),
                (
                    "repo.labels.\"app.kubernetes.io/name\"".to_string(),
                    json!("web")
                ),
                ("payload.size".to_string(), json!(1)),
                ("payload.empty".to_string(), json!({})),
            ]
        );
        assert!(s.mismatches.is_empty());
    }

    #[test]
    fn nested_mismatches_keep_their_path() {
        let s = split(
            &event(),
            &obj(json!({"actor": {"id": "seven"}, "payload": {"commits": [{"sha": 1}]}})),
        );
        assert_eq!(
            s.mismatches,
            vec![
                ("actor.id".to_string(), json!("seven"), AttrType::Integer),
                (
                    "payload.commits".to_string(),
                    json!([{"sha": 1}]),
                    AttrType::Array
                ),
            ]
        );
        // A structured object given as something else, or null.
        let s = split(&event(), &obj(json!({"actor": "ada", "payload": null})));
        assert_eq!(
            s.mismatches,
            vec![("actor".to_string(), json!("ada"), AttrType::Object)]
        );
        assert_eq!(s.observations, vec![("payload".to_string(), json!(null))]);
    }

    #[test]
    fn limits_keep_the_rest_whole() {
        let d = Definition::parse(&json!({"entity_type": "e"})).unwrap();
        let deep = obj(json!({"a": {"b": {"c": {"d": 1}}, "e": 2}}));
        let s = split_with(
            &d,
            &deep,
            Limits {
                max_depth: 3,
                max_paths: 100,
            },
        );
        assert_eq!(
            s.fragments,
            vec![
                ("a.b.c".to_string(), json!({"d": 1})),
                ("a.e".to_string(), json!(2))
            ]
        );
        // Paths: 2 top-level keys, then "a" opens into 3 members (4 fragments in all); "b"'s
        // two members would make 5.
        let wide = obj(json!({"a": {"x": 1, "y": 2, "b": {"p": 1, "q": 2}}, "z": 0}));
        let s = split_with(
            &d,
            &wide,
            Limits {
                max_depth: 16,
                max_paths: 4,
            },
        );
        assert_eq!(
            s.fragments,
            vec![
                ("a.x".to_string(), json!(1)),
                ("a.y".to_string(), json!(2)),
                ("a.b".to_string(), json!({"p": 1, "q": 2})),
                ("z".to_string(), json!(0)),
            ]
        );
        let s = split_with(
            &d,
            &wide,
            Limits {
                max_depth: 16,
                max_paths: 5,
            },
        );
        assert_eq!(s.fragments.len(), 5);
        // Never fewer than the top-level keys; nothing is dropped at any limit.
        let s = split_with(
            &d,
            &wide,
            Limits {
                max_depth: 1,
                max_paths: 0,
            },
        );
        assert_eq!(
            s.fragments,
            vec![
                (
                    "a".to_string(),
                    json!({"x": 1, "y": 2, "b": {"p": 1, "q": 2}})
                ),
                ("z".to_string(), json!(0)),
            ]
        );
        // A path that would pass the key limit keeps its object whole.
        let long = "k".repeat(MAX_KEY_BYTES);
        let s = split(&d, &obj(json!({"a": {long.clone(): 1}})));
        assert_eq!(s.fragments, vec![("a".to_string(), json!({long: 1}))]);
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
