//! Migration steps: the [`Step`] model and its JSON form, read by [`parse_steps`] with errors
//! naming JSON pointers, written by [`Step::to_json`]. The shapes are in the
//! [module documentation](super).

use serde_json::{Map, Value};

use super::cast::CastTarget;
use crate::error::CoreError;
use crate::ident::{is_valid_name, MAX_IDENT_LEN};
use crate::validate::{check_name, escape, reject_unknown, required_name, required_string};

/// One migration step; see the [module documentation](super) for the JSON shapes and effects.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Rename { from: String, to: String },
    Add { key: String, default: Value },
    Drop { key: String },
    Cast { key: String, to: CastTarget },
    Nest { keys: Vec<String>, into: String },
    Unnest { key: String, prefix: Option<String> },
    Function { name: String },
}

const STEP_KINDS: &str = "rename, add, drop, cast, nest, unnest or function";

impl Step {
    /// The step's kind, which is also its JSON key.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Rename { .. } => "rename",
            Step::Add { .. } => "add",
            Step::Drop { .. } => "drop",
            Step::Cast { .. } => "cast",
            Step::Nest { .. } => "nest",
            Step::Unnest { .. } => "unnest",
            Step::Function { .. } => "function",
        }
    }

    /// The step as JSON, in the shape [`parse_steps`] reads.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        match self {
            Step::Rename { from, to } => {
                body.insert("from".into(), Value::String(from.clone()));
                body.insert("to".into(), Value::String(to.clone()));
            }
            Step::Add { key, default } => {
                body.insert("key".into(), Value::String(key.clone()));
                body.insert("default".into(), default.clone());
            }
            Step::Drop { key } => {
                body.insert("key".into(), Value::String(key.clone()));
            }
            Step::Cast { key, to } => {
                body.insert("key".into(), Value::String(key.clone()));
                body.insert("to".into(), Value::String(to.as_str().into()));
            }
            Step::Nest { keys, into } => {
                body.insert("keys".into(), keys.clone().into());
                body.insert("into".into(), Value::String(into.clone()));
            }
            Step::Unnest { key, prefix } => {
                body.insert("key".into(), Value::String(key.clone()));
                if let Some(p) = prefix {
                    body.insert("prefix".into(), Value::String(p.clone()));
                }
            }
            Step::Function { name } => {
                let mut m = Map::new();
                m.insert("function".into(), Value::String(name.clone()));
                return Value::Object(m);
            }
        }
        let mut m = Map::new();
        m.insert(self.kind().into(), Value::Object(body));
        Value::Object(m)
    }
}

/// The body object of a step, with no keys other than `allowed`.
fn step_body<'a>(
    v: &'a Value,
    path: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, CoreError> {
    let obj = v.as_object().ok_or_else(|| {
        CoreError::def(
            path,
            format!("must be an object with {}", allowed.join(", ")),
        )
    })?;
    reject_unknown(obj, allowed, |key| format!("{path}/{}", escape(key)))?;
    Ok(obj)
}

/// A required member holding any non-empty string (a key of old data).
fn raw_key_field(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, CoreError> {
    let s = required_string(obj, key, path)?;
    if s.is_empty() {
        return Err(CoreError::def(format!("{path}/{key}"), "must not be empty"));
    }
    Ok(s)
}

/// Whether `name` is a function name `name` or `schema.name`, each part a valid name.
fn is_valid_function_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| is_valid_name(p))
}

fn parse_step(path: &str, v: &Value) -> Result<Step, CoreError> {
    let obj = v.as_object().ok_or_else(|| {
        CoreError::def(
            path,
            format!("a step must be an object with exactly one key: {STEP_KINDS}"),
        )
    })?;
    let mut members = obj.iter();
    let (kind, body) = match (members.next(), members.next()) {
        (Some(only), None) => only,
        _ => {
            return Err(CoreError::def(
                path,
                format!(
                    "a step must have exactly one key ({STEP_KINDS}), found {}",
                    obj.len()
                ),
            ))
        }
    };
    let path = format!("{path}/{}", escape(kind));
    let path = path.as_str();
    match kind.as_str() {
        "rename" => {
            let b = step_body(body, path, &["from", "to"])?;
            let from = raw_key_field(b, "from", path)?;
            let to = required_name(b, "to", path)?;
            if from == to {
                return Err(CoreError::def(
                    format!("{path}/to"),
                    "must differ from \"from\"",
                ));
            }
            Ok(Step::Rename { from, to })
        }
        "add" => {
            let b = step_body(body, path, &["key", "default"])?;
            let key = required_name(b, "key", path)?;
            let default = b.get("default").cloned().ok_or_else(|| {
                CoreError::def(
                    format!("{path}/default"),
                    "is required (any JSON value, null included)",
                )
            })?;
            Ok(Step::Add { key, default })
        }
        "drop" => {
            let b = step_body(body, path, &["key"])?;
            Ok(Step::Drop {
                key: raw_key_field(b, "key", path)?,
            })
        }
        "cast" => {
            let b = step_body(body, path, &["key", "to"])?;
            let key = required_name(b, "key", path)?;
            let to_text = required_string(b, "to", path)?;
            let to = CastTarget::parse(&to_text).ok_or_else(|| {
                CoreError::def(
                    format!("{path}/to"),
                    format!(
                        "unknown cast target \"{to_text}\"; expected one of {}",
                        CastTarget::ALL.map(|t| t.as_str()).join(", ")
                    ),
                )
            })?;
            Ok(Step::Cast { key, to })
        }
        "nest" => {
            let b = step_body(body, path, &["keys", "into"])?;
            let items = match b.get("keys") {
                Some(Value::Array(items)) if !items.is_empty() => items,
                None | Some(Value::Null) => {
                    return Err(CoreError::def(format!("{path}/keys"), "is required"))
                }
                Some(_) => {
                    return Err(CoreError::def(
                        format!("{path}/keys"),
                        "must be a non-empty array of names",
                    ))
                }
            };
            let mut keys = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}/keys/{i}");
                let Value::String(k) = item else {
                    return Err(CoreError::def(item_path, "must be a string"));
                };
                check_name(&item_path, k)?;
                if keys.contains(k) {
                    return Err(CoreError::def(item_path, format!("duplicate key \"{k}\"")));
                }
                keys.push(k.clone());
            }
            let into = required_name(b, "into", path)?;
            if keys.contains(&into) {
                return Err(CoreError::def(
                    format!("{path}/into"),
                    "must not be one of the nested keys",
                ));
            }
            Ok(Step::Nest { keys, into })
        }
        "unnest" => {
            let b = step_body(body, path, &["key", "prefix"])?;
            let key = required_name(b, "key", path)?;
            let prefix = match b.get("prefix") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => {
                    if !is_valid_name(p) || p.len() >= MAX_IDENT_LEN {
                        return Err(CoreError::def(
                            format!("{path}/prefix"),
                            format!("prefix \"{p}\" must start with a letter or underscore, hold only ASCII letters, digits and underscores and be at most {} bytes; omit it for no prefix", MAX_IDENT_LEN - 1),
                        ));
                    }
                    Some(p.clone())
                }
                Some(_) => {
                    return Err(CoreError::def(
                        format!("{path}/prefix"),
                        "must be a string",
                    ))
                }
            };
            Ok(Step::Unnest { key, prefix })
        }
        "function" => match body {
            Value::String(name) if is_valid_function_name(name) => {
                Ok(Step::Function { name: name.clone() })
            }
            Value::String(name) => Err(CoreError::def(
                path,
                format!("function name \"{name}\" must be name or schema.name, each part starting with a letter or underscore and holding only ASCII letters, digits and underscores (at most 63 bytes)"),
            )),
            _ => Err(CoreError::def(
                path,
                "must be a function name such as \"myschema.fix_payload\"",
            )),
        },
        _ => Err(CoreError::def(
            path,
            format!("unknown step kind; expected one of {STEP_KINDS}"),
        )),
    }
}

/// Parses a migration: a non-empty JSON array of steps. Errors name the JSON pointer of the
/// offending part, such as `/2/cast/to`.
pub fn parse_steps(v: &Value) -> Result<Vec<Step>, CoreError> {
    let items = match v {
        Value::Array(items) if !items.is_empty() => items,
        Value::Array(_) => return Err(CoreError::def("/", "a migration needs at least one step")),
        _ => {
            return Err(CoreError::def(
                "/",
                "a migration must be a JSON array of steps",
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_step(&format!("/{i}"), item))
        .collect()
}

/// The steps as a JSON array; [`parse_steps`] reads it back to the same steps.
pub fn steps_to_json(steps: &[Step]) -> Value {
    Value::Array(steps.iter().map(Step::to_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all_kinds() -> Value {
        json!([
            {"rename": {"from": "Old Name", "to": "new_name"}},
            {"add": {"key": "k", "default": null}},
            {"add": {"key": "k2", "default": {"a": [1, 2]}}},
            {"drop": {"key": "weird-key!"}},
            {"cast": {"key": "mag", "to": "number"}},
            {"nest": {"keys": ["lat", "lon"], "into": "geo"}},
            {"unnest": {"key": "geo", "prefix": "geo_"}},
            {"unnest": {"key": "geo"}},
            {"function": "myschema.fix_payload"},
            {"function": "Fix_It"}
        ])
    }

    #[test]
    fn parse_and_round_trip() {
        let doc = all_kinds();
        let steps = parse_steps(&doc).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Rename {
                    from: "Old Name".into(),
                    to: "new_name".into()
                },
                Step::Add {
                    key: "k".into(),
                    default: Value::Null
                },
                Step::Add {
                    key: "k2".into(),
                    default: json!({"a": [1, 2]})
                },
                Step::Drop {
                    key: "weird-key!".into()
                },
                Step::Cast {
                    key: "mag".into(),
                    to: CastTarget::Number
                },
                Step::Nest {
                    keys: vec!["lat".into(), "lon".into()],
                    into: "geo".into()
                },
                Step::Unnest {
                    key: "geo".into(),
                    prefix: Some("geo_".into())
                },
                Step::Unnest {
                    key: "geo".into(),
                    prefix: None
                },
                Step::Function {
                    name: "myschema.fix_payload".into()
                },
                Step::Function {
                    name: "Fix_It".into()
                },
            ]
        );
        assert_eq!(steps_to_json(&steps), doc);
        assert_eq!(parse_steps(&steps_to_json(&steps)).unwrap(), steps);
        // A null prefix reads as no prefix.
        assert_eq!(
            parse_steps(&json!([{"unnest": {"key": "g", "prefix": null}}])).unwrap(),
            vec![Step::Unnest {
                key: "g".into(),
                prefix: None
            }]
        );
    }

    #[test]
    fn parse_errors() {
        let long = "a".repeat(64);
        let cases: Vec<(Value, &str)> = vec![
            (json!({}), "/"),
            (json!("rename"), "/"),
            (json!(null), "/"),
            (json!([]), "/"),
            (json!([{"drop": {"key": "a"}}, 5]), "/1"),
            (json!([{}]), "/0"),
            (
                json!([{"drop": {"key": "a"}, "add": {"key": "b", "default": 1}}]),
                "/0",
            ),
            (json!([{"move": {}}]), "/0/move"),
            (json!([{"a/b": {}}]), "/0/a~1b"),
            // rename
            (json!([{"rename": "x"}]), "/0/rename"),
            (json!([{"rename": {"to": "b"}}]), "/0/rename/from"),
            (
                json!([{"rename": {"from": "", "to": "b"}}]),
                "/0/rename/from",
            ),
            (
                json!([{"rename": {"from": 1, "to": "b"}}]),
                "/0/rename/from",
            ),
            (json!([{"rename": {"from": "a"}}]), "/0/rename/to"),
            (
                json!([{"rename": {"from": "a", "to": "b c"}}]),
                "/0/rename/to",
            ),
            (
                json!([{"rename": {"from": "a", "to": "a"}}]),
                "/0/rename/to",
            ),
            (
                json!([{"rename": {"from": "a", "to": "b", "x": 1}}]),
                "/0/rename/x",
            ),
            // add
            (json!([{"add": {"default": 1}}]), "/0/add/key"),
            (json!([{"add": {"key": "1x", "default": 1}}]), "/0/add/key"),
            (json!([{"add": {"key": "x"}}]), "/0/add/default"),
            (json!([{"add": []}]), "/0/add"),
            // drop
            (json!([{"drop": {}}]), "/0/drop/key"),
            (json!([{"drop": {"key": ""}}]), "/0/drop/key"),
            (json!([{"drop": {"key": ["a"]}}]), "/0/drop/key"),
            (json!([{"drop": {"key": "a", "keys": []}}]), "/0/drop/keys"),
            // cast
            (
                json!([{"drop": {"key": "a"}}, {"drop": {"key": "b"}}, {"cast": {"key": "x", "to": "date"}}]),
                "/2/cast/to",
            ),
            (json!([{"cast": {"key": "x"}}]), "/0/cast/to"),
            (json!([{"cast": {"key": "x", "to": 3}}]), "/0/cast/to"),
            (
                json!([{"cast": {"key": &long, "to": "string"}}]),
                "/0/cast/key",
            ),
            (json!([{"cast": {"to": "string"}}]), "/0/cast/key"),
            // nest
            (json!([{"nest": {"into": "g"}}]), "/0/nest/keys"),
            (json!([{"nest": {"keys": [], "into": "g"}}]), "/0/nest/keys"),
            (
                json!([{"nest": {"keys": "a", "into": "g"}}]),
                "/0/nest/keys",
            ),
            (
                json!([{"nest": {"keys": ["a", 1], "into": "g"}}]),
                "/0/nest/keys/1",
            ),
            (
                json!([{"nest": {"keys": ["a", "b-c"], "into": "g"}}]),
                "/0/nest/keys/1",
            ),
            (
                json!([{"nest": {"keys": ["a", "b", "a"], "into": "g"}}]),
                "/0/nest/keys/2",
            ),
            (json!([{"nest": {"keys": ["a"]}}]), "/0/nest/into"),
            (
                json!([{"nest": {"keys": ["a"], "into": "a"}}]),
                "/0/nest/into",
            ),
            (
                json!([{"nest": {"keys": ["a"], "into": "g h"}}]),
                "/0/nest/into",
            ),
            // unnest
            (json!([{"unnest": {}}]), "/0/unnest/key"),
            (json!([{"unnest": {"key": "g-h"}}]), "/0/unnest/key"),
            (
                json!([{"unnest": {"key": "g", "prefix": ""}}]),
                "/0/unnest/prefix",
            ),
            (
                json!([{"unnest": {"key": "g", "prefix": "1_"}}]),
                "/0/unnest/prefix",
            ),
            (
                json!([{"unnest": {"key": "g", "prefix": "a-"}}]),
                "/0/unnest/prefix",
            ),
            (
                json!([{"unnest": {"key": "g", "prefix": "a".repeat(63)}}]),
                "/0/unnest/prefix",
            ),
            (
                json!([{"unnest": {"key": "g", "prefix": 1}}]),
                "/0/unnest/prefix",
            ),
            // function
            (json!([{"function": {"name": "f"}}]), "/0/function"),
            (json!([{"function": ""}]), "/0/function"),
            (json!([{"function": "a.b.c"}]), "/0/function"),
            (json!([{"function": "a."}]), "/0/function"),
            (json!([{"function": ".f"}]), "/0/function"),
            (json!([{"function": "f(); drop table x"}]), "/0/function"),
            (json!([{"function": "s.\"f\""}]), "/0/function"),
        ];
        for (doc, want_path) in cases {
            match parse_steps(&doc) {
                Err(CoreError::InvalidDefinition { path, message }) => {
                    assert_eq!(path, want_path, "{doc}: {message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{doc}: expected an error at {want_path}, got {other:?}"),
            }
        }
        // Names at the limits are accepted.
        let ok = json!([
            {"cast": {"key": "a".repeat(63), "to": "string"}},
            {"unnest": {"key": "g", "prefix": "p".repeat(62)}},
            {"function": "_s1.F_2"},
        ]);
        assert_eq!(parse_steps(&ok).unwrap().len(), 3);
    }
}
