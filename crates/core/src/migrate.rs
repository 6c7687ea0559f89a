//! Migration of payloads written against an older schema version to the current one.
//!
//! A migration between two versions is a list of [`Step`]s, registered by the user as JSON (see
//! [`parse_steps`]) or derived from the definitions (see [`derive_steps`]). Registered
//! migrations are the directed edges of a version graph; a payload of version `a` reaches
//! version `b` along the [`shortest_path`], applying the steps of each edge in turn with
//! [`apply_steps`]. The "auto" strategy finally [`coerce`]s values that still do not fit their
//! declared types.
//!
//! # Step JSON
//!
//! Each step is an object with exactly one key:
//!
//! | Step | Effect |
//! |------|--------|
//! | `{"rename": {"from": "old", "to": "new"}}` | moves `old` to `new`; no-op when `old` is absent; error when `new` already exists |
//! | `{"add": {"key": "k", "default": v}}` | sets `k` to `v` (any JSON, `null` included) unless `k` is present |
//! | `{"drop": {"key": "k"}}` | removes `k`; no-op when absent |
//! | `{"cast": {"key": "k", "to": "number"}}` | converts `k` by the [cast rules](#cast-rules); no-op when absent |
//! | `{"nest": {"keys": ["lat", "lon"], "into": "geo"}}` | moves the present keys into the object `geo`, creating it, or merging into it when it is an object; error when `geo` exists and is not an object (`null` included) or already holds one of the moved keys; no-op when no key is present |
//! | `{"unnest": {"key": "geo", "prefix": "geo_"}}` | replaces the object `geo` by its members, named with the optional prefix; no-op when absent; error when `geo` is not an object (`null` included) or a lifted name already exists |
//! | `{"function": "schema.fn"}` | calls a user SQL function `jsonb → jsonb` with the whole payload; it must return an object |
//!
//! Key names must be valid schema names ([`is_valid_name`]), except `rename.from` and
//! `drop.key`, which may be any non-empty string since old data may hold odd keys. A function
//! name is `name` or `schema.name`, each part a valid name, kept verbatim (the SQL layer quotes
//! each part, so the case matters).
//!
//! # Cast rules
//!
//! `null` stays `null` for every target. Strings are trimmed of surrounding white space before
//! they are read as numbers, booleans or timestamps.
//!
//! | Target | Accepted | Result | Errors |
//! |--------|----------|--------|--------|
//! | `number` | integer, number | unchanged | boolean, object, array |
//! | `number` | string holding a finite number (Rust `f64` syntax: `12`, `-1.5`, `1e3`, `.5`, `+2`) | an integer when the text is an integer that fits i64, else the float | other strings, `NaN`, `inf`, overflow such as `1e400` |
//! | `integer` | integer that fits i64 | unchanged | integers beyond i64 |
//! | `integer` | number with a zero fraction within i64 (`2.0`, `1e3`) | the integer | a fraction, out of range |
//! | `integer` | string holding an i64, or a finite number with a zero fraction within i64 (`"2.0"`) | the integer | other strings |
//! | `integer` | — | — | boolean, object, array |
//! | `string` | string | unchanged (not trimmed) | — |
//! | `string` | number, integer | its JSON text (`1.5` → `"1.5"`, `2.0` → `"2.0"`) | — |
//! | `string` | boolean | `"true"` / `"false"` | — |
//! | `string` | — | — | object, array |
//! | `boolean` | boolean | unchanged | — |
//! | `boolean` | string `true`/`false`/`yes`/`no`/`1`/`0`, any case | `true` / `false` | other strings |
//! | `boolean` | integer `0` / `1` | `false` / `true` | other integers, numbers (`1.0` too), object, array |
//! | `timestamp` | ISO timestamp string ([`is_timestamp`]) | the trimmed string | — |
//! | `timestamp` | ISO date string ([`is_date`]) | `YYYY-MM-DDT00:00:00Z` | — |
//! | `timestamp` | integer (i64) | unchanged: epoch milliseconds, which a timestamp attribute accepts | numbers with a fraction, other strings, boolean, object, array |

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde_json::{Map, Number, Value};

use crate::error::CoreError;
use crate::ident::{is_valid_name, MAX_IDENT_LEN};
use crate::infer::{conforms, is_date, is_timestamp, value_type};
use crate::schema::{AttrType, Definition};
use crate::validate::{check_name, escape, reject_unknown, required_name, required_string};

/// The target type of a [`Step::Cast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CastTarget {
    Number,
    Integer,
    String,
    Boolean,
    Timestamp,
}

impl CastTarget {
    pub const ALL: [CastTarget; 5] = [
        CastTarget::Number,
        CastTarget::Integer,
        CastTarget::String,
        CastTarget::Boolean,
        CastTarget::Timestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CastTarget::Number => "number",
            CastTarget::Integer => "integer",
            CastTarget::String => "string",
            CastTarget::Boolean => "boolean",
            CastTarget::Timestamp => "timestamp",
        }
    }

    pub fn parse(s: &str) -> Option<CastTarget> {
        CastTarget::ALL.into_iter().find(|t| t.as_str() == s)
    }

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

/// One migration step; see the [module documentation](self) for the JSON shapes and effects.
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
/// [table](self#cast-rules). The error is a message naming the value and the target.
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

/// A step that failed on a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// The position of the step in its list, from 0.
    pub index: usize,
    /// The step as JSON text.
    pub step: String,
    pub message: String,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "migration step {} {} failed: {}",
            self.index, self.step, self.message
        )
    }
}

impl std::error::Error for StepError {}

/// Applies one step. On error the payload is unchanged.
fn apply_step(
    payload: &mut Map<String, Value>,
    step: &Step,
    call_function: &mut dyn FnMut(&str, Value) -> Result<Value, String>,
) -> Result<(), String> {
    match step {
        Step::Rename { from, to } => {
            if from == to || !payload.contains_key(from) {
                return Ok(());
            }
            if payload.contains_key(to) {
                return Err(format!(
                    "cannot rename \"{from}\" to \"{to}\": \"{to}\" already exists"
                ));
            }
            if let Some(v) = payload.shift_remove(from) {
                payload.insert(to.clone(), v);
            }
        }
        Step::Add { key, default } => {
            if !payload.contains_key(key) {
                payload.insert(key.clone(), default.clone());
            }
        }
        Step::Drop { key } => {
            payload.shift_remove(key);
        }
        Step::Cast { key, to } => {
            if let Some(v) = payload.get_mut(key) {
                *v = cast(v, *to).map_err(|e| format!("\"{key}\": {e}"))?;
            }
        }
        Step::Nest { keys, into } => {
            let present: Vec<&String> = keys.iter().filter(|k| payload.contains_key(*k)).collect();
            match payload.get(into) {
                Some(Value::Object(target)) => {
                    if let Some(k) = present.iter().find(|k| target.contains_key(k.as_str())) {
                        return Err(format!(
                            "cannot nest \"{k}\" into \"{into}\": \"{into}\" already holds \"{k}\""
                        ));
                    }
                }
                Some(other) => {
                    return Err(format!(
                        "cannot nest into \"{into}\": it holds {}, not an object",
                        value_type(other)
                    ))
                }
                None => {}
            }
            if present.is_empty() {
                return Ok(());
            }
            let mut moved = Map::new();
            for k in present {
                if let Some(v) = payload.shift_remove(k) {
                    moved.insert(k.clone(), v);
                }
            }
            match payload.get_mut(into) {
                Some(Value::Object(target)) => target.extend(moved),
                _ => {
                    payload.insert(into.clone(), Value::Object(moved));
                }
            }
        }
        Step::Unnest { key, prefix } => {
            let members = match payload.get(key) {
                None => return Ok(()),
                Some(Value::Object(members)) => members,
                Some(other) => {
                    return Err(format!(
                        "cannot unnest \"{key}\": it holds {}, not an object",
                        value_type(other)
                    ))
                }
            };
            let prefix = prefix.as_deref().unwrap_or("");
            let lifted: Vec<String> = members.keys().map(|m| format!("{prefix}{m}")).collect();
            if let Some(clash) = lifted
                .iter()
                .find(|n| *n != key && payload.contains_key(*n))
            {
                return Err(format!(
                    "cannot unnest \"{key}\": \"{clash}\" already exists"
                ));
            }
            if let Some(Value::Object(members)) = payload.shift_remove(key) {
                for (name, v) in lifted.into_iter().zip(members.into_values()) {
                    payload.insert(name, v);
                }
            }
        }
        Step::Function { name } => {
            let result = call_function(name, Value::Object(payload.clone()))
                .map_err(|e| format!("function {name} failed: {e}"))?;
            match result {
                Value::Object(obj) => *payload = obj,
                _ => return Err("function must return a JSON object".into()),
            }
        }
    }
    Ok(())
}

/// Applies the steps to a payload in order. `call_function` runs a [`Step::Function`]: it gets
/// the function name and the whole payload as an object, and returns the new payload or an
/// error message.
///
/// On error the payload holds the result of the steps before the failing one; the failing step
/// itself changed nothing.
pub fn apply_steps(
    payload: &mut Map<String, Value>,
    steps: &[Step],
    call_function: &mut dyn FnMut(&str, Value) -> Result<Value, String>,
) -> Result<(), StepError> {
    for (index, step) in steps.iter().enumerate() {
        apply_step(payload, step, call_function).map_err(|message| StepError {
            index,
            step: step.to_json().to_string(),
            message,
        })?;
    }
    Ok(())
}

/// The shortest path from version `from` to version `to` along the directed `edges`
/// (`(from_version, to_version)` pairs): the fewest edges; among paths of equal length the
/// lexicographically smallest sequence of edges. `Some` of no edges when `from == to`; `None`
/// when `to` cannot be reached. Duplicate edges and cycles are harmless.
pub fn shortest_path(edges: &[(i32, i32)], from: i32, to: i32) -> Option<Vec<(i32, i32)>> {
    if from == to {
        return Some(Vec::new());
    }
    let mut forward: BTreeMap<i32, BTreeSet<i32>> = BTreeMap::new();
    let mut backward: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for &(a, b) in edges {
        if forward.entry(a).or_default().insert(b) {
            backward.entry(b).or_default().push(a);
        }
    }
    // Distances to `to`, by a breadth-first search along reversed edges.
    let mut dist: BTreeMap<i32, usize> = BTreeMap::new();
    dist.insert(to, 0);
    let mut queue = VecDeque::from([to]);
    while let Some(v) = queue.pop_front() {
        if v == from {
            break;
        }
        let d = dist[&v];
        for &u in backward.get(&v).into_iter().flatten() {
            if let Entry::Vacant(slot) = dist.entry(u) {
                slot.insert(d + 1);
                queue.push_back(u);
            }
        }
    }
    let mut remaining = *dist.get(&from)?;
    // Walk forward, always to the smallest successor one step closer to `to`. Every edge
    // starts where the previous one ended, so this gives the smallest sequence of edges.
    let mut path = Vec::with_capacity(remaining);
    let mut at = from;
    while remaining > 0 {
        let next = forward
            .get(&at)?
            .iter()
            .copied()
            .find(|n| dist.get(n) == Some(&(remaining - 1)))?;
        path.push((at, next));
        at = next;
        remaining -= 1;
    }
    Some(path)
}

/// The steps that follow from the definitions of two consecutive versions:
///
/// 1. renames: for each attribute of `new` absent from `old` that has an alias which is an
///    attribute of `old` and not of `new`, `Rename { alias → name }` (the first such alias);
/// 2. casts: for each attribute in both (a renamed one counts under its old name in `old`)
///    whose type widened, integer → number gives `Cast number` and date → timestamp gives
///    `Cast timestamp`; other type changes give no step;
/// 3. adds: for each attribute new in `new` (and not renamed) with a `default`,
///    `Add { key, default }`.
///
/// Each group is sorted by the attribute's (new) name. Removed attributes give no step.
pub fn derive_steps(old: &Definition, new: &Definition) -> Vec<Step> {
    let mut renames = Vec::new();
    let mut casts = Vec::new();
    let mut adds = Vec::new();
    for (name, attr) in &new.attributes {
        let old_name = if old.attributes.contains_key(name) {
            Some(name.as_str())
        } else {
            let alias = attr.aliases.iter().find(|a| {
                *a != name && old.attributes.contains_key(*a) && !new.attributes.contains_key(*a)
            });
            if let Some(alias) = alias {
                renames.push(Step::Rename {
                    from: alias.clone(),
                    to: name.clone(),
                });
            }
            alias.map(String::as_str)
        };
        match old_name.and_then(|n| old.attributes.get(n)) {
            Some(old_attr) => {
                let to = match (old_attr.attr_type, attr.attr_type) {
                    (AttrType::Integer, AttrType::Number) => Some(CastTarget::Number),
                    (AttrType::Date, AttrType::Timestamp) => Some(CastTarget::Timestamp),
                    _ => None,
                };
                if let Some(to) = to {
                    casts.push(Step::Cast {
                        key: name.clone(),
                        to,
                    });
                }
            }
            None => {
                if let Some(default) = &attr.default {
                    adds.push(Step::Add {
                        key: name.clone(),
                        default: default.clone(),
                    });
                }
            }
        }
    }
    renames.extend(casts);
    renames.extend(adds);
    renames
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
    use serde_json::json;

    fn no_function(_: &str, _: Value) -> Result<Value, String> {
        Err("no functions here".into())
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn def(v: Value) -> Definition {
        Definition::parse(&v).expect("valid definition")
    }

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

    fn rename(from: &str, to: &str) -> Step {
        Step::Rename {
            from: from.into(),
            to: to.into(),
        }
    }

    fn nest(keys: &[&str], into: &str) -> Step {
        Step::Nest {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            into: into.into(),
        }
    }

    fn unnest(key: &str, prefix: Option<&str>) -> Step {
        Step::Unnest {
            key: key.into(),
            prefix: prefix.map(String::from),
        }
    }

    #[test]
    fn step_effects() {
        // (payload, step, Ok(expected payload) | Err(substring of the message))
        type Case = (Value, Step, Result<Value, &'static str>);
        let cases: Vec<Case> = vec![
            // rename
            (json!({"a": 1}), rename("a", "b"), Ok(json!({"b": 1}))),
            (json!({"x": 1}), rename("a", "b"), Ok(json!({"x": 1}))),
            (json!({"b": 2}), rename("a", "b"), Ok(json!({"b": 2}))),
            (
                json!({"a": 1, "b": 2}),
                rename("a", "b"),
                Err("already exists"),
            ),
            (json!({"a": 1}), rename("a", "a"), Ok(json!({"a": 1}))),
            (
                json!({"Odd Key": null}),
                rename("Odd Key", "odd"),
                Ok(json!({"odd": null})),
            ),
            // add
            (
                json!({}),
                Step::Add {
                    key: "k".into(),
                    default: json!([1]),
                },
                Ok(json!({"k": [1]})),
            ),
            (
                json!({"k": 5}),
                Step::Add {
                    key: "k".into(),
                    default: json!(1),
                },
                Ok(json!({"k": 5})),
            ),
            (
                json!({"k": null}),
                Step::Add {
                    key: "k".into(),
                    default: json!(1),
                },
                Ok(json!({"k": null})),
            ),
            (
                json!({}),
                Step::Add {
                    key: "k".into(),
                    default: Value::Null,
                },
                Ok(json!({"k": null})),
            ),
            // drop
            (
                json!({"a": 1, "b": 2}),
                Step::Drop { key: "a".into() },
                Ok(json!({"b": 2})),
            ),
            (
                json!({"b": 2}),
                Step::Drop { key: "a".into() },
                Ok(json!({"b": 2})),
            ),
            // cast
            (
                json!({"m": "4.5"}),
                Step::Cast {
                    key: "m".into(),
                    to: CastTarget::Number,
                },
                Ok(json!({"m": 4.5})),
            ),
            (
                json!({"x": 1}),
                Step::Cast {
                    key: "m".into(),
                    to: CastTarget::Number,
                },
                Ok(json!({"x": 1})),
            ),
            (
                json!({"m": "abc"}),
                Step::Cast {
                    key: "m".into(),
                    to: CastTarget::Number,
                },
                Err("\"m\": cannot cast string \"abc\" to number"),
            ),
            // nest
            (
                json!({"lat": 1, "lon": 2, "x": 3}),
                nest(&["lat", "lon"], "geo"),
                Ok(json!({"x": 3, "geo": {"lat": 1, "lon": 2}})),
            ),
            (
                json!({"lat": 1}),
                nest(&["lat", "lon"], "geo"),
                Ok(json!({"geo": {"lat": 1}})),
            ),
            (
                json!({"x": 3}),
                nest(&["lat", "lon"], "geo"),
                Ok(json!({"x": 3})),
            ),
            (
                json!({"lat": 1, "geo": {"alt": 9}}),
                nest(&["lat", "lon"], "geo"),
                Ok(json!({"geo": {"alt": 9, "lat": 1}})),
            ),
            (
                json!({"geo": {"lat": 1}}),
                nest(&["lat", "lon"], "geo"),
                Ok(json!({"geo": {"lat": 1}})),
            ),
            (
                json!({"lat": 1, "geo": "here"}),
                nest(&["lat"], "geo"),
                Err("not an object"),
            ),
            (
                json!({"geo": null}),
                nest(&["lat"], "geo"),
                Err("holds null, not an object"),
            ),
            (
                json!({"lat": 1, "geo": {"lat": 0}}),
                nest(&["lat"], "geo"),
                Err("already holds \"lat\""),
            ),
            // unnest
            (
                json!({"geo": {"lat": 1, "lon": 2}, "x": 3}),
                unnest("geo", Some("geo_")),
                Ok(json!({"x": 3, "geo_lat": 1, "geo_lon": 2})),
            ),
            (
                json!({"geo": {"lat": 1}}),
                unnest("geo", None),
                Ok(json!({"lat": 1})),
            ),
            (
                json!({"geo": {"geo": 1}}),
                unnest("geo", None),
                Ok(json!({"geo": 1})),
            ),
            (json!({"geo": {}}), unnest("geo", None), Ok(json!({}))),
            (json!({"x": 1}), unnest("geo", None), Ok(json!({"x": 1}))),
            (
                json!({"geo": [1, 2]}),
                unnest("geo", None),
                Err("holds array, not an object"),
            ),
            (
                json!({"geo": null}),
                unnest("geo", None),
                Err("not an object"),
            ),
            (
                json!({"geo": {"lat": 1}, "lat": 0}),
                unnest("geo", None),
                Err("\"lat\" already exists"),
            ),
            (
                json!({"geo": {"lat": 1}, "geo_lat": 0}),
                unnest("geo", Some("geo_")),
                Err("\"geo_lat\" already exists"),
            ),
            (
                json!({"geo": {"lat": 1}, "lat": 0}),
                unnest("geo", Some("geo_")),
                Ok(json!({"lat": 0, "geo_lat": 1})),
            ),
        ];
        for (input, step, want) in cases {
            let mut payload = obj(input.clone());
            let got = apply_steps(&mut payload, std::slice::from_ref(&step), &mut no_function);
            match (got, want) {
                (Ok(()), Ok(expected)) => {
                    assert_eq!(Value::Object(payload), expected, "{step:?} on {input}")
                }
                (Err(e), Err(fragment)) => {
                    assert_eq!(e.index, 0);
                    assert_eq!(e.step, step.to_json().to_string());
                    assert!(
                        e.message.contains(fragment),
                        "{step:?} on {input}: {}",
                        e.message
                    );
                    // A failing step leaves the payload as it was.
                    assert_eq!(Value::Object(payload), input, "{step:?}");
                }
                (got, want) => panic!("{step:?} on {input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn function_steps() {
        let steps = vec![
            rename("a", "b"),
            Step::Function { name: "s.f".into() },
            Step::Drop { key: "c".into() },
        ];
        let mut calls = Vec::new();
        let mut payload = obj(json!({"a": 1}));
        let mut f = |name: &str, v: Value| -> Result<Value, String> {
            calls.push((name.to_string(), v.clone()));
            let mut m = obj(v);
            m.insert("c".into(), json!(2));
            m.insert("d".into(), json!(3));
            Ok(Value::Object(m))
        };
        apply_steps(&mut payload, &steps, &mut f).unwrap();
        assert_eq!(Value::Object(payload), json!({"b": 1, "d": 3}));
        assert_eq!(calls, vec![("s.f".to_string(), json!({"b": 1}))]);

        for ret in [json!([1]), json!(null), json!("x"), json!(1)] {
            let mut payload = obj(json!({"a": 1}));
            let e = apply_steps(&mut payload, &steps, &mut |_: &str, _: Value| {
                Ok(ret.clone())
            })
            .unwrap_err();
            assert_eq!(e.index, 1);
            assert_eq!(e.message, "function must return a JSON object");
            assert_eq!(e.step, r#"{"function":"s.f"}"#);
            // The first step was applied; the failing one changed nothing.
            assert_eq!(Value::Object(payload), json!({"b": 1}));
        }

        let mut payload = obj(json!({"a": 1}));
        let e = apply_steps(&mut payload, &steps, &mut no_function).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.message.contains("no functions here"), "{}", e.message);
        assert!(e.to_string().contains("migration step 1"), "{e}");
    }

    #[test]
    fn steps_apply_in_order() {
        let steps = parse_steps(&json!([
            {"rename": {"from": "Latitude", "to": "lat"}},
            {"cast": {"key": "lat", "to": "number"}},
            {"nest": {"keys": ["lat", "lon"], "into": "geo"}},
            {"add": {"key": "source", "default": "legacy"}},
            {"drop": {"key": "junk"}},
        ]))
        .unwrap();
        let mut payload = obj(json!({"Latitude": "51.5", "lon": -0.1, "junk": true}));
        apply_steps(&mut payload, &steps, &mut no_function).unwrap();
        assert_eq!(
            Value::Object(payload),
            json!({"geo": {"lat": 51.5, "lon": -0.1}, "source": "legacy"})
        );

        let mut payload = obj(json!({"Latitude": "north"}));
        let e = apply_steps(&mut payload, &steps, &mut no_function).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(e.step, r#"{"cast":{"key":"lat","to":"number"}}"#);
        assert_eq!(Value::Object(payload), json!({"lat": "north"}));
    }

    #[test]
    fn paths() {
        type Case = (Vec<(i32, i32)>, i32, i32, Option<Vec<(i32, i32)>>);
        let cases: Vec<Case> = vec![
            // from == to, even outside the graph or with a self-loop
            (vec![], 1, 1, Some(vec![])),
            (vec![(1, 1)], 1, 1, Some(vec![])),
            (vec![(1, 2), (2, 3)], 2, 2, Some(vec![])),
            // linear chain
            (
                vec![(1, 2), (2, 3), (3, 4)],
                1,
                4,
                Some(vec![(1, 2), (2, 3), (3, 4)]),
            ),
            (
                vec![(3, 4), (1, 2), (2, 3)],
                2,
                4,
                Some(vec![(2, 3), (3, 4)]),
            ),
            (vec![(1, 2)], 1, 2, Some(vec![(1, 2)])),
            // directed: no way back
            (vec![(1, 2), (2, 3)], 3, 1, None),
            // missing link
            (vec![(1, 2), (3, 4)], 1, 4, None),
            (vec![], 1, 2, None),
            (vec![(1, 2)], 5, 6, None),
            // a shortcut wins
            (
                vec![(1, 2), (2, 3), (3, 4), (1, 4)],
                1,
                4,
                Some(vec![(1, 4)]),
            ),
            (
                vec![(1, 2), (2, 3), (3, 4), (4, 5), (2, 5)],
                1,
                5,
                Some(vec![(1, 2), (2, 5)]),
            ),
            // downgrades and upgrades together (cycles)
            (
                vec![(1, 2), (2, 1), (2, 3), (3, 2), (3, 1)],
                1,
                3,
                Some(vec![(1, 2), (2, 3)]),
            ),
            (
                vec![(1, 2), (2, 1), (2, 3), (3, 2), (3, 1)],
                3,
                1,
                Some(vec![(3, 1)]),
            ),
            (
                vec![(1, 2), (2, 3), (3, 1), (3, 4)],
                2,
                4,
                Some(vec![(2, 3), (3, 4)]),
            ),
            (vec![(1, 2), (2, 3), (3, 1)], 1, 4, None),
            // ties: the smallest sequence of edges
            (
                vec![(1, 3), (3, 4), (1, 2), (2, 4)],
                1,
                4,
                Some(vec![(1, 2), (2, 4)]),
            ),
            (
                vec![(1, 5), (5, 9), (1, 7), (7, 9), (1, 6), (6, 9)],
                1,
                9,
                Some(vec![(1, 5), (5, 9)]),
            ),
            (
                vec![
                    (1, 2),
                    (2, 9),
                    (2, 8),
                    (8, 10),
                    (9, 10),
                    (1, 3),
                    (3, 4),
                    (4, 10),
                ],
                1,
                10,
                Some(vec![(1, 2), (2, 8), (8, 10)]),
            ),
            // the smallest first edge wins even when a later edge is larger
            (
                vec![(1, 2), (2, 100), (100, 5), (1, 3), (3, 4), (4, 5)],
                1,
                5,
                Some(vec![(1, 2), (2, 100), (100, 5)]),
            ),
            // a branch that looks smaller but is a dead end
            (
                vec![(1, 2), (2, 3), (1, 4), (4, 5)],
                1,
                5,
                Some(vec![(1, 4), (4, 5)]),
            ),
            // duplicates and negative versions
            (
                vec![(1, 2), (1, 2), (2, 3), (2, 3)],
                1,
                3,
                Some(vec![(1, 2), (2, 3)]),
            ),
            (vec![(-1, 0), (0, 1)], -1, 1, Some(vec![(-1, 0), (0, 1)])),
        ];
        for (edges, from, to, want) in cases {
            assert_eq!(
                shortest_path(&edges, from, to),
                want,
                "{edges:?} {from}→{to}"
            );
        }
    }

    #[test]
    fn path_order_independent_of_edge_order() {
        let edges = vec![(1, 3), (3, 4), (1, 2), (2, 4), (2, 5), (4, 5), (3, 5)];
        let want = shortest_path(&edges, 1, 5);
        let mut reversed = edges.clone();
        reversed.reverse();
        assert_eq!(shortest_path(&reversed, 1, 5), want);
        assert_eq!(want, Some(vec![(1, 2), (2, 5)]));
    }

    #[test]
    fn derived_steps() {
        let v1 = def(json!({
            "entity_type": "quake",
            "attributes": {
                "magnitude": {"type": "integer"},
                "depth": {"type": "integer"},
                "day": {"type": "date"},
                "when": {"type": "date"},
                "place": {"type": "string"},
                "gone": {"type": "string"},
                "count": {"type": "number"}
            }
        }));
        let v2 = def(json!({
            "entity_type": "quake",
            "attributes": {
                "mag": {"type": "number", "aliases": ["magnitude"]},
                "depth": {"type": "number"},
                "day": {"type": "timestamp"},
                "at": {"type": "timestamp", "aliases": ["nothing", "when"]},
                "place": {"type": "string", "default": "ignored: not new"},
                "status": {"type": "string", "default": "reviewed"},
                "net": {"type": "string", "default": {"code": 1}},
                "note": {"type": "string"},
                "count": {"type": "integer"}
            }
        }));
        assert_eq!(
            derive_steps(&v1, &v2),
            vec![
                rename("when", "at"),
                rename("magnitude", "mag"),
                Step::Cast {
                    key: "at".into(),
                    to: CastTarget::Timestamp
                },
                Step::Cast {
                    key: "day".into(),
                    to: CastTarget::Timestamp
                },
                Step::Cast {
                    key: "depth".into(),
                    to: CastTarget::Number
                },
                Step::Cast {
                    key: "mag".into(),
                    to: CastTarget::Number
                },
                Step::Add {
                    key: "net".into(),
                    default: json!({"code": 1})
                },
                Step::Add {
                    key: "status".into(),
                    default: json!("reviewed")
                },
            ]
        );
        // Identical definitions give nothing. Going back, the old names carry no aliases, so
        // there is no rename; only the widening of count remains.
        assert_eq!(derive_steps(&v1, &v1), vec![]);
        assert_eq!(
            derive_steps(&v2, &v1),
            vec![Step::Cast {
                key: "count".into(),
                to: CastTarget::Number
            }]
        );

        // An alias still present in the new version, or a name already in the old one, is not
        // a rename. (The parser rejects such aliases; a definition built in code may hold them.)
        let a = def(json!({"entity_type": "t", "attributes": {
            "x": {"type": "string"}, "y": {"type": "string"}
        }}));
        let mut b = def(json!({"entity_type": "t", "attributes": {
            "x": {"type": "string"},
            "y": {"type": "string"},
            "z": {"type": "string", "default": "d"}
        }}));
        for name in ["y", "z"] {
            b.attributes.get_mut(name).unwrap().aliases = vec!["x".into()];
        }
        assert_eq!(
            derive_steps(&a, &b),
            vec![Step::Add {
                key: "z".into(),
                default: json!("d")
            }]
        );

        // The derived steps carry an old payload to the new shape.
        let mut payload = obj(json!({"magnitude": 5, "when": "2024-01-02", "place": "x"}));
        apply_steps(&mut payload, &derive_steps(&v1, &v2), &mut no_function).unwrap();
        assert_eq!(
            Value::Object(payload),
            json!({"place": "x", "at": "2024-01-02T00:00:00Z", "mag": 5,
                   "net": {"code": 1}, "status": "reviewed"})
        );
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
