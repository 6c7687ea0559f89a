//! Migration steps: the [`Step`] model and its JSON form, read by [`parse_steps`] with errors
//! naming JSON pointers, written by [`Step::to_json`]. The shapes are in the
//! [module documentation](super); how a step's texts name places in a payload (paths) is
//! decided here too, by [`member_path`], [`rename_paths`] and [`nest_prefix`], which both the
//! validation and [`apply_steps`](super::apply_steps) use.

use serde_json::{Map, Value};

use super::cast::CastTarget;
use crate::error::CoreError;
use crate::ident::{is_valid_function_name, is_valid_name, name_problem, MAX_IDENT_LEN};
use crate::path::{Path, Segment};
use crate::payload::MAX_PAYLOAD_DEPTH;
use crate::validate::{check_name, escape, reject_unknown, required_string};

/// One migration step; see the [module documentation](super) for the JSON shapes and effects.
///
/// Every key is kept as written: a key or a path in [text form](crate::path) (`actor.login`,
/// `payload.commits[].sha`), read when the step is applied.
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

/// Most segments in a path of a step: a payload is at most [`MAX_PAYLOAD_DEPTH`] levels deep.
pub const MAX_STEP_PATH_SEGMENTS: usize = MAX_PAYLOAD_DEPTH;

/// The path a step's text names where it names a member: the text's path, or the one key the
/// text is when it does not parse as a path or its path ends with `[]` (a key of old data, as
/// keys were written before paths existed).
pub(super) fn member_path(text: &str) -> Path {
    match Path::parse(text) {
        Ok(p) if p.last_key().is_some() => p,
        _ => Path::key(text),
    }
}

/// The segments of a path's parent (none for a top-level key).
pub(super) fn parent_segments(p: &Path) -> &[Segment] {
    &p.segments()[..p.len() - 1]
}

/// For paths that move values between each other: the length of the longest common prefix of
/// their parents (the objects, reached through the shared arrays, within which values move),
/// or the index of the first path whose parent goes through `[]` beyond that prefix (values
/// would move between different elements).
pub(super) fn shared_prefix(paths: &[&Path]) -> Result<usize, usize> {
    let parents: Vec<&[Segment]> = paths.iter().map(|p| parent_segments(p)).collect();
    let first = parents.first().copied().unwrap_or(&[]);
    let common = parents.iter().fold(first.len(), |n, p| {
        n.min(
            first
                .iter()
                .zip(p.iter())
                .take_while(|(a, b)| a == b)
                .count(),
        )
    });
    match parents
        .iter()
        .position(|p| p[common..].contains(&Segment::Items))
    {
        Some(i) => Err(i),
        None => Ok(common),
    }
}

/// How a rename reads its texts: the paths of `from` and `to` and the length of the prefix
/// they share (see [`shared_prefix`]). `from` names old data, so it is read leniently: as the
/// one top-level key it spells when `literal(from)` (the payload has that key: a flattened
/// `user.name` renamed before paths existed keeps its meaning), else as its [`member_path`], else
/// as one key when that path goes through `[]` where `to` does not. `None` when no reading fits
/// `to` (`to` goes through `[]` where `from` does not).
pub(super) fn rename_paths(
    from: &str,
    to: &str,
    literal: impl Fn(&str) -> bool,
) -> Option<(Path, Path, usize)> {
    let to = member_path(to);
    let as_key = Path::key(from);
    let mut readings = Vec::with_capacity(3);
    if literal(from) {
        readings.push(as_key.clone());
    }
    readings.push(member_path(from));
    readings.push(as_key);
    readings.into_iter().find_map(|from| {
        let prefix = shared_prefix(&[&from, &to]).ok()?;
        Some((from, to.clone(), prefix))
    })
}

/// How a nest reads its texts: the length of the prefix that the nested keys and `into`
/// share (see [`shared_prefix`]), or which of them goes through `[]` beyond it: `Some(i)` for
/// `keys[i]`, `None` for `into`.
pub(super) fn nest_prefix(keys: &[Path], into: &Path) -> Result<usize, Option<usize>> {
    let mut all: Vec<&Path> = keys.iter().collect();
    all.push(into);
    shared_prefix(&all).map_err(|i| (i < keys.len()).then_some(i))
}

/// The message of a path's parse error.
fn path_problem(e: CoreError) -> String {
    match e {
        CoreError::InvalidArgument { message, .. } => message,
        other => other.to_string(),
    }
}

/// A required member naming a place by a schema name or a path of schema names (the keys of
/// nested attributes are schema names): one key is checked exactly as a name always was; a
/// path must parse, hold at most [`MAX_STEP_PATH_SEGMENTS`] segments, have valid names as keys
/// and, unless `may_end_with_items`, end with a key. Returns the text and its path.
fn required_path(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    may_end_with_items: bool,
) -> Result<(String, Path), CoreError> {
    let text = required_string(obj, key, path)?;
    let pointer = format!("{path}/{key}");
    let parsed = check_path(&pointer, &text, may_end_with_items)?;
    Ok((text, parsed))
}

fn check_path(pointer: &str, text: &str, may_end_with_items: bool) -> Result<Path, CoreError> {
    if !text.contains(['.', '[', ']', '"']) {
        check_name(pointer, text)?;
        return Ok(Path::key(text));
    }
    let p = Path::parse(text).map_err(|e| {
        CoreError::def(pointer, format!("is not a valid path: {}", path_problem(e)))
    })?;
    if p.len() > MAX_STEP_PATH_SEGMENTS {
        return Err(CoreError::def(
            pointer,
            format!(
                "path \"{text}\" has {} segments; at most {MAX_STEP_PATH_SEGMENTS}",
                p.len()
            ),
        ));
    }
    for s in p.segments() {
        if let Segment::Key(k) = s {
            if let Some(problem) = name_problem(k) {
                return Err(CoreError::def(
                    pointer,
                    format!("name \"{k}\" in path \"{text}\" {problem}"),
                ));
            }
        }
    }
    if !may_end_with_items && p.last_key().is_none() {
        return Err(CoreError::def(
            pointer,
            format!("path \"{text}\" must end with a key, not []"),
        ));
    }
    Ok(p)
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
            let (to, _) = required_path(b, "to", path, false)?;
            if from == to {
                return Err(CoreError::def(
                    format!("{path}/to"),
                    "must differ from \"from\"",
                ));
            }
            if rename_paths(&from, &to, |_| false).is_none() {
                return Err(CoreError::def(
                    format!("{path}/to"),
                    format!("\"{to}\" goes through [] where \"from\" does not; a rename moves values within each element of the arrays both paths go through"),
                ));
            }
            Ok(Step::Rename { from, to })
        }
        "add" => {
            let b = step_body(body, path, &["key", "default"])?;
            let (key, _) = required_path(b, "key", path, false)?;
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
            let (key, _) = required_path(b, "key", path, true)?;
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
            let mut keys: Vec<String> = Vec::with_capacity(items.len());
            let mut key_paths: Vec<Path> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}/keys/{i}");
                let Value::String(k) = item else {
                    return Err(CoreError::def(item_path, "must be a string"));
                };
                let kp = check_path(&item_path, k, false)?;
                for (other, op) in keys.iter().zip(&key_paths) {
                    let message = if *op == kp {
                        format!("duplicate key \"{k}\"")
                    } else if kp.starts_with(op) {
                        format!("\"{k}\" lies inside the nested key \"{other}\"")
                    } else if op.starts_with(&kp) {
                        format!("the nested key \"{other}\" lies inside \"{k}\"")
                    } else if op.last_key() == kp.last_key() {
                        format!(
                            "\"{k}\" would be nested under the same name as \"{other}\": \"{}\"",
                            kp.last_key().unwrap_or_default()
                        )
                    } else {
                        continue;
                    };
                    return Err(CoreError::def(item_path, message));
                }
                keys.push(k.clone());
                key_paths.push(kp);
            }
            let (into, into_path) = required_path(b, "into", path, false)?;
            let into_pointer = format!("{path}/into");
            if key_paths.contains(&into_path) {
                return Err(CoreError::def(
                    into_pointer,
                    "must not be one of the nested keys",
                ));
            }
            for (k, kp) in keys.iter().zip(&key_paths) {
                if into_path.starts_with(kp) {
                    return Err(CoreError::def(
                        into_pointer,
                        format!("must not lie inside the nested key \"{k}\""),
                    ));
                }
                if kp.starts_with(&into_path) {
                    return Err(CoreError::def(
                        into_pointer,
                        format!("the nested key \"{k}\" already lies inside \"{into}\""),
                    ));
                }
            }
            if let Err(at) = nest_prefix(&key_paths, &into_path) {
                let (pointer, text) = match at {
                    Some(i) => (format!("{path}/keys/{i}"), keys[i].as_str()),
                    None => (into_pointer, into.as_str()),
                };
                return Err(CoreError::def(
                    pointer,
                    format!("\"{text}\" goes through [] where the other paths of the nest do not; a nest moves values within each element of the arrays all its paths go through"),
                ));
            }
            Ok(Step::Nest { keys, into })
        }
        "unnest" => {
            let b = step_body(body, path, &["key", "prefix"])?;
            let (key, _) = required_path(b, "key", path, false)?;
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
    fn paths_parse_and_round_trip() {
        let doc = json!([
            {"rename": {"from": "actor.login", "to": "actor.handle"}},
            {"rename": {"from": "payload.commits[].sha", "to": "payload.commits[].id"}},
            {"rename": {"from": "labels.\"app.kubernetes.io/name\"", "to": "labels.app_name"}},
            {"rename": {"from": "user_login", "to": "actor.login"}},
            {"rename": {"from": "a[].b", "to": "x"}},
            {"add": {"key": "actor.type", "default": "User"}},
            {"add": {"key": "payload.commits[].verified", "default": false}},
            {"drop": {"key": "payload.size"}},
            {"drop": {"key": "payload.commits[].url"}},
            {"drop": {"key": "tags[]"}},
            {"drop": {"key": "a["}},
            {"cast": {"key": "properties.mag", "to": "number"}},
            {"cast": {"key": "payload.commits[].size", "to": "integer"}},
            {"cast": {"key": "tags[]", "to": "string"}},
            {"cast": {"key": "\"quoted\"", "to": "string"}},
            {"nest": {"keys": ["geo.lat", "geo.lon"], "into": "geo.pos"}},
            {"nest": {"keys": ["lat", "meta.lon"], "into": "loc"}},
            {"nest": {"keys": ["pts[].lat", "pts[].lon"], "into": "pts[].pos"}},
            {"unnest": {"key": "a.geo", "prefix": "geo_"}},
            {"unnest": {"key": "features[].properties"}}
        ]);
        let steps = parse_steps(&doc).unwrap();
        assert_eq!(steps.len(), 20);
        assert_eq!(
            steps[0],
            Step::Rename {
                from: "actor.login".into(),
                to: "actor.handle".into()
            }
        );
        assert_eq!(
            steps[15],
            Step::Nest {
                keys: vec!["geo.lat".into(), "geo.lon".into()],
                into: "geo.pos".into()
            }
        );
        // Texts are kept as written.
        assert_eq!(steps_to_json(&steps), doc);
        assert_eq!(parse_steps(&steps_to_json(&steps)).unwrap(), steps);

        // How the texts read: a key of old data that is no path of a member is one key.
        assert_eq!(member_path("a.b").to_array(), ["a", "b"]);
        assert_eq!(member_path("tags[]").to_array(), ["tags[]"]);
        assert_eq!(member_path("a[").to_array(), ["a["]);
        assert_eq!(member_path("\"a.b\"").to_array(), ["a.b"]);
        let read = |from: &str, to: &str, literal: bool| {
            rename_paths(from, to, |_| literal).map(|(f, t, n)| (f.to_array(), t.to_array(), n))
        };
        assert_eq!(
            read("a[].b", "a[].c", false),
            Some((
                vec!["a".into(), "[]".into(), "b".into()],
                vec!["a".into(), "[]".into(), "c".into()],
                2
            ))
        );
        assert_eq!(
            read("a[].b", "x", false),
            Some((vec!["a[].b".into()], vec!["x".into()], 0))
        );
        assert_eq!(
            read("u.n", "un", true),
            Some((vec!["u.n".into()], vec!["un".into()], 0))
        );
        assert_eq!(
            read("u.n", "un", false),
            Some((vec!["u".into(), "n".into()], vec!["un".into()], 0))
        );
        assert_eq!(read("x", "a[].c", false), None);
        // Literal only where that reading fits `to`.
        assert_eq!(read("a[].b", "a[].c", true).map(|r| r.2), Some(2));
    }

    #[test]
    fn path_parse_errors() {
        let deep = vec!["a"; MAX_STEP_PATH_SEGMENTS + 1].join(".");
        let cases: Vec<(Value, &str, &str)> = vec![
            // (doc, pointer, fragment of the message)
            (
                json!([{"rename": {"from": "a", "to": "x..y"}}]),
                "/0/rename/to",
                "is not a valid path",
            ),
            (
                json!([{"rename": {"from": "a", "to": "x.1y"}}]),
                "/0/rename/to",
                "name \"1y\" in path \"x.1y\" must start with a letter",
            ),
            (
                json!([{"rename": {"from": "a", "to": "x.\"b c\""}}]),
                "/0/rename/to",
                "name \"b c\"",
            ),
            (
                json!([{"rename": {"from": "a", "to": "x[]"}}]),
                "/0/rename/to",
                "must end with a key",
            ),
            (
                json!([{"rename": {"from": "a[].x", "to": "b[].y"}}]),
                "/0/rename/to",
                "goes through []",
            ),
            (
                json!([{"rename": {"from": "x", "to": "a[].y"}}]),
                "/0/rename/to",
                "goes through []",
            ),
            (
                json!([{"add": {"key": "a.b c", "default": 1}}]),
                "/0/add/key",
                "name \"b c\"",
            ),
            (
                json!([{"add": {"key": "a[]", "default": 1}}]),
                "/0/add/key",
                "must end with a key",
            ),
            (
                json!([{"cast": {"key": "a[", "to": "string"}}]),
                "/0/cast/key",
                "is not a valid path",
            ),
            (
                json!([{"cast": {"key": deep, "to": "string"}}]),
                "/0/cast/key",
                "at most 64",
            ),
            (
                json!([{"nest": {"keys": ["a.x", "b.x"], "into": "g"}}]),
                "/0/nest/keys/1",
                "same name",
            ),
            (
                json!([{"nest": {"keys": ["a", "a.x"], "into": "g"}}]),
                "/0/nest/keys/1",
                "lies inside the nested key \"a\"",
            ),
            (
                json!([{"nest": {"keys": ["a.x", "a"], "into": "g"}}]),
                "/0/nest/keys/1",
                "lies inside",
            ),
            (
                json!([{"nest": {"keys": ["a.x", "\"a\".x"], "into": "g"}}]),
                "/0/nest/keys/1",
                "duplicate key",
            ),
            (
                json!([{"nest": {"keys": ["a[]"], "into": "g"}}]),
                "/0/nest/keys/0",
                "must end with a key",
            ),
            (
                json!([{"nest": {"keys": ["a.x"], "into": "a"}}]),
                "/0/nest/into",
                "already lies inside",
            ),
            (
                json!([{"nest": {"keys": ["a"], "into": "a.b"}}]),
                "/0/nest/into",
                "must not lie inside the nested key",
            ),
            (
                json!([{"nest": {"keys": ["p[].x", "y"], "into": "g"}}]),
                "/0/nest/keys/0",
                "goes through []",
            ),
            (
                json!([{"nest": {"keys": ["x"], "into": "p[].g"}}]),
                "/0/nest/into",
                "goes through []",
            ),
            (
                json!([{"unnest": {"key": "a.\"b"}}]),
                "/0/unnest/key",
                "is not a valid path",
            ),
            (
                json!([{"unnest": {"key": "g[]"}}]),
                "/0/unnest/key",
                "must end with a key",
            ),
        ];
        for (doc, want_path, fragment) in cases {
            match parse_steps(&doc) {
                Err(CoreError::InvalidDefinition { path, message }) => {
                    assert_eq!(path, want_path, "{doc}: {message}");
                    assert!(message.contains(fragment), "{doc}: {message}");
                }
                other => panic!("{doc}: expected an error at {want_path}, got {other:?}"),
            }
        }
        // One key is checked as a name always was: the same messages.
        for (doc, pointer, name) in [
            (
                json!([{"add": {"key": "1x", "default": 1}}]),
                "/0/add/key",
                "1x",
            ),
            (
                json!([{"rename": {"from": "a", "to": "b c"}}]),
                "/0/rename/to",
                "b c",
            ),
            (json!([{"unnest": {"key": ""}}]), "/0/unnest/key", ""),
        ] {
            let want = check_name(pointer, name).unwrap_err();
            assert_eq!(parse_steps(&doc).unwrap_err(), want, "{doc}");
        }
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
