//! Applying steps to a payload.

use std::fmt;

use serde_json::{Map, Value};

use super::cast::cast;
use super::step::{member_path, nest_prefix, parent_segments, rename_paths, Step};
use crate::infer::value_type;
use crate::path::{lenient, Path, Segment};

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

/// What a step does in one object its path reaches.
type OnObject<'a> = dyn FnMut(&mut Map<String, Value>) -> Result<(), String> + 'a;

/// Calls `f` on every object that `segments` reach from `root`: a key descends into a member
/// that is an object, `[]` into every element of an array. Absent members and values of
/// another kind are skipped; the first error stops the walk.
fn for_each_object(
    root: &mut Map<String, Value>,
    segments: &[Segment],
    f: &mut OnObject,
) -> Result<(), String> {
    match segments.split_first() {
        None => f(root),
        Some((Segment::Key(k), rest)) => match root.get_mut(k) {
            Some(v) => for_each_object_in(v, rest, f),
            None => Ok(()),
        },
        // An object has no elements.
        Some((Segment::Items, _)) => Ok(()),
    }
}

fn for_each_object_in(v: &mut Value, segments: &[Segment], f: &mut OnObject) -> Result<(), String> {
    match (v, segments.split_first()) {
        (Value::Object(m), _) => for_each_object(m, segments, f),
        (Value::Array(items), Some((Segment::Items, rest))) => items
            .iter_mut()
            .try_for_each(|item| for_each_object_in(item, rest, f)),
        _ => Ok(()),
    }
}

/// Calls `f` on every value that `segments` reach from `root` (as [`for_each_object`] walks).
fn for_each_value(
    root: &mut Map<String, Value>,
    segments: &[Segment],
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    fn walk(
        v: &mut Value,
        segments: &[Segment],
        f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
    ) -> Result<(), String> {
        match (v, segments.split_first()) {
            (v, None) => f(v),
            (Value::Object(m), Some((Segment::Key(k), rest))) => match m.get_mut(k) {
                Some(v) => walk(v, rest, f),
                None => Ok(()),
            },
            (Value::Array(items), Some((Segment::Items, rest))) => {
                items.iter_mut().try_for_each(|item| walk(item, rest, f))
            }
            _ => Ok(()),
        }
    }
    match segments.split_first() {
        Some((Segment::Key(k), rest)) => match root.get_mut(k) {
            Some(v) => walk(v, rest, f),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The object at the keys `segments` below `m`; `None` when a member is absent or not an
/// object (or a segment is `[]`).
fn object_at<'a>(
    m: &'a mut Map<String, Value>,
    segments: &[Segment],
) -> Option<&'a mut Map<String, Value>> {
    let mut at = m;
    for s in segments {
        let Segment::Key(k) = s else { return None };
        match at.get_mut(k) {
            Some(Value::Object(o)) => at = o,
            _ => return None,
        }
    }
    Some(at)
}

/// The object at the keys `segments` below `m`, creating absent members as empty objects.
/// The error is the number of segments up to the member that holds something else, and what
/// it holds.
fn object_at_or_create<'a>(
    m: &'a mut Map<String, Value>,
    segments: &[Segment],
) -> Result<&'a mut Map<String, Value>, (usize, &'static str)> {
    let mut at = m;
    for (i, s) in segments.iter().enumerate() {
        let Segment::Key(k) = s else {
            return Err((i + 1, "array elements"));
        };
        match at
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(o) => at = o,
            other => return Err((i + 1, value_type(other))),
        }
    }
    Ok(at)
}

/// What the keys `segments` below `m` lead to, without changing anything.
enum Lookup<'a> {
    Absent,
    Found(&'a Value),
    /// The member after this many segments holds this kind of value, not an object.
    Blocked(usize, &'static str),
}

fn lookup<'a>(m: &'a Map<String, Value>, segments: &[Segment]) -> Lookup<'a> {
    let mut at = m;
    for (i, s) in segments.iter().enumerate() {
        let Segment::Key(k) = s else {
            return Lookup::Blocked(i, "array elements");
        };
        match at.get(k) {
            None => return Lookup::Absent,
            Some(v) if i + 1 == segments.len() => return Lookup::Found(v),
            Some(Value::Object(o)) => at = o,
            Some(other) => return Lookup::Blocked(i + 1, value_type(other)),
        }
    }
    Lookup::Absent
}

/// The text of the first `n` segments of `p`.
fn prefix_text(p: &Path, n: usize) -> String {
    Path::from_segments(p.segments()[..n.clamp(1, p.len())].to_vec())
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// The last key of a path that [`member_path`] gave (it always ends with a key).
fn last_key(p: &Path) -> &str {
    p.last_key().unwrap_or_default()
}

/// Runs `f` on the payload; when `f` fails after changing some of it (a step on paths may
/// change several places before one fails), puts the payload back as it was. `atomic`: `f`
/// fails before changing anything, so no copy is needed.
fn all_or_nothing(
    payload: &mut Map<String, Value>,
    atomic: bool,
    f: impl FnOnce(&mut Map<String, Value>) -> Result<(), String>,
) -> Result<(), String> {
    if atomic {
        return f(payload);
    }
    let before = payload.clone();
    let result = f(payload);
    if result.is_err() {
        *payload = before;
    }
    result
}

/// Moves the member at `from` (keys, below the object `o`) to `to`, creating the objects on the
/// way to `to`; no-op when `from` is absent. `to_path` and `prefix` locate `to` in the payload
/// for messages; `from_text` and `to_text` are the step's texts.
fn move_member(
    o: &mut Map<String, Value>,
    from: &[Segment],
    to: &[Segment],
    (from_text, to_text): (&str, &str),
    (to_path, prefix): (&Path, usize),
) -> Result<(), String> {
    let (Some((Segment::Key(fk), from_parent)), Some((Segment::Key(tk), to_parent))) =
        (from.split_last(), to.split_last())
    else {
        return Ok(());
    };
    let exists =
        || format!("cannot rename \"{from_text}\" to \"{to_text}\": \"{to_text}\" already exists");
    let Some(source) = object_at(o, from_parent) else {
        return Ok(());
    };
    if !source.contains_key(fk) {
        return Ok(());
    }
    if from_parent == to_parent {
        // Within one object: checked before anything changes.
        if source.contains_key(tk) {
            return Err(exists());
        }
        if let Some(v) = source.shift_remove(fk) {
            source.insert(tk.clone(), v);
        }
        return Ok(());
    }
    // Across objects the value leaves first, so that `to` may lie where it was (`a` → `a.b`
    // wraps it); a failure is undone by the caller.
    let Some(v) = source.shift_remove(fk) else {
        return Ok(());
    };
    let target = object_at_or_create(o, to_parent).map_err(|(n, kind)| {
        format!(
            "cannot rename \"{from_text}\" to \"{to_text}\": \"{}\" holds {kind}, not an object",
            prefix_text(to_path, prefix + n)
        )
    })?;
    if target.contains_key(tk) {
        return Err(exists());
    }
    target.insert(tk.clone(), v);
    Ok(())
}

/// A nest within the object `o`: `keys` and `into` are below `o` (keys only); `texts` are the
/// step's texts of the keys, `into_text` that of `into`, `into_path` and `prefix` locate `into`
/// in the payload for messages.
fn nest_in(
    o: &mut Map<String, Value>,
    keys: &[(&str, &[Segment])],
    into: &[Segment],
    into_text: &str,
    (into_path, prefix): (&Path, usize),
) -> Result<(), String> {
    let last = |segments: &[Segment]| match segments.last() {
        Some(Segment::Key(k)) => k.clone(),
        _ => String::new(),
    };
    let present: Vec<&(&str, &[Segment])> = keys
        .iter()
        .filter(|(_, k)| matches!(lookup(o, k), Lookup::Found(_)))
        .collect();
    match lookup(o, into) {
        Lookup::Absent => {}
        Lookup::Found(Value::Object(target)) => {
            if let Some((k, segments)) = present
                .iter()
                .find(|(_, segments)| target.contains_key(&last(segments)))
            {
                return Err(format!(
                    "cannot nest \"{k}\" into \"{into_text}\": \"{into_text}\" already holds \"{}\"",
                    last(segments)
                ));
            }
        }
        Lookup::Found(other) => {
            return Err(format!(
                "cannot nest into \"{into_text}\": it holds {}, not an object",
                value_type(other)
            ))
        }
        Lookup::Blocked(n, kind) => {
            return Err(format!(
                "cannot nest into \"{into_text}\": \"{}\" holds {kind}, not an object",
                prefix_text(into_path, prefix + n)
            ))
        }
    }
    if present.is_empty() {
        return Ok(());
    }
    let mut moved = Map::new();
    for (_, segments) in present {
        let Some((Segment::Key(k), parent)) = segments.split_last() else {
            continue;
        };
        if let Some(v) = object_at(o, parent).and_then(|p| p.shift_remove(k)) {
            moved.insert(k.clone(), v);
        }
    }
    let Some((Segment::Key(ik), into_parent)) = into.split_last() else {
        return Ok(());
    };
    let blocked = |n: usize, kind: &str| {
        format!(
            "cannot nest into \"{into_text}\": \"{}\" holds {kind}, not an object",
            prefix_text(into_path, prefix + n)
        )
    };
    let parent = object_at_or_create(o, into_parent).map_err(|(n, kind)| blocked(n, kind))?;
    match parent.get_mut(ik) {
        Some(Value::Object(target)) => target.extend(moved),
        None => {
            parent.insert(ik.clone(), Value::Object(moved));
        }
        // Only when a moved key held what was in the way (the caller undoes the move).
        Some(other) => return Err(blocked(into_parent.len() + 1, value_type(other))),
    }
    Ok(())
}

/// An unnest of the member `key` of the object `o`; `key_text` is the step's text, `parent` the
/// path of `o` (`None` for the payload itself), for messages.
fn unnest_in(
    o: &mut Map<String, Value>,
    key: &str,
    prefix: Option<&str>,
    key_text: &str,
    parent: Option<&Path>,
) -> Result<(), String> {
    let members = match o.get(key) {
        None => return Ok(()),
        Some(Value::Object(members)) => members,
        Some(other) => {
            return Err(format!(
                "cannot unnest \"{key_text}\": it holds {}, not an object",
                value_type(other)
            ))
        }
    };
    let prefix = prefix.unwrap_or("");
    let lifted: Vec<String> = members.keys().map(|m| format!("{prefix}{m}")).collect();
    if let Some(clash) = lifted.iter().find(|n| *n != key && o.contains_key(*n)) {
        let clash = match parent {
            Some(p) => p.child(clash.clone()).to_string(),
            None => clash.clone(),
        };
        return Err(format!(
            "cannot unnest \"{key_text}\": \"{clash}\" already exists"
        ));
    }
    if let Some(Value::Object(members)) = o.shift_remove(key) {
        for (name, v) in lifted.into_iter().zip(members.into_values()) {
            o.insert(name, v);
        }
    }
    Ok(())
}

/// Applies one step. On error the payload is unchanged.
fn apply_step(
    payload: &mut Map<String, Value>,
    step: &Step,
    call_function: &mut dyn FnMut(&str, Value) -> Result<Value, String>,
) -> Result<(), String> {
    match step {
        Step::Rename { from, to } => {
            let Some((from_path, to_path, prefix)) =
                rename_paths(from, to, |k| payload.contains_key(k))
            else {
                return Err(format!(
                    "cannot rename \"{from}\" to \"{to}\": \"{to}\" goes through [] where \"{from}\" does not"
                ));
            };
            if from_path == to_path {
                return Ok(());
            }
            // One object, checked before it changes: no `[]`, and the same parent.
            let atomic = !from_path.has_items()
                && !to_path.has_items()
                && parent_segments(&from_path) == parent_segments(&to_path);
            all_or_nothing(payload, atomic, |p| {
                for_each_object(p, &from_path.segments()[..prefix], &mut |o| {
                    move_member(
                        o,
                        &from_path.segments()[prefix..],
                        &to_path.segments()[prefix..],
                        (from, to),
                        (&to_path, prefix),
                    )
                })
            })?;
        }
        Step::Add { key, default } => {
            let path = member_path(key);
            let k = last_key(&path);
            for_each_object(payload, parent_segments(&path), &mut |o| {
                if !o.contains_key(k) {
                    o.insert(k.to_string(), default.clone());
                }
                Ok(())
            })?;
        }
        Step::Drop { key } => {
            // A top-level key spelled as the text is that key (a flattened `user.name`).
            let path = if payload.contains_key(key) {
                Path::key(key.clone())
            } else {
                member_path(key)
            };
            let k = last_key(&path);
            for_each_object(payload, parent_segments(&path), &mut |o| {
                o.shift_remove(k);
                Ok(())
            })?;
        }
        Step::Cast { key, to } => {
            let path = lenient(key);
            all_or_nothing(payload, !path.has_items(), |p| {
                for_each_value(p, path.segments(), &mut |v| {
                    *v = cast(v, *to).map_err(|e| format!("\"{key}\": {e}"))?;
                    Ok(())
                })
            })?;
        }
        Step::Nest { keys, into } => {
            let key_paths: Vec<Path> = keys.iter().map(|k| member_path(k)).collect();
            let into_path = member_path(into);
            let prefix = nest_prefix(&key_paths, &into_path).map_err(|at| {
                let text = at.map_or(into, |i| &keys[i]);
                format!("cannot nest into \"{into}\": \"{text}\" goes through [] where the other paths of the nest do not")
            })?;
            let relative: Vec<(&str, &[Segment])> = keys
                .iter()
                .zip(&key_paths)
                .map(|(k, p)| (k.as_str(), &p.segments()[prefix..]))
                .collect();
            let atomic = into_path.len() == 1 && key_paths.iter().all(|p| p.len() == 1);
            all_or_nothing(payload, atomic, |p| {
                for_each_object(p, &into_path.segments()[..prefix], &mut |o| {
                    nest_in(
                        o,
                        &relative,
                        &into_path.segments()[prefix..],
                        into,
                        (&into_path, prefix),
                    )
                })
            })?;
        }
        Step::Unnest { key, prefix } => {
            let path = member_path(key);
            let parent = path.parent();
            let k = last_key(&path);
            all_or_nothing(payload, !path.has_items(), |p| {
                for_each_object(p, parent_segments(&path), &mut |o| {
                    unnest_in(o, k, prefix.as_deref(), key, parent.as_ref())
                })
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::test_support::{no_function, obj, rename};
    use crate::migrate::CastTarget;
    use crate::migrate::{parse_steps, steps_to_json};
    use proptest::prelude::*;
    use serde_json::json;

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

    fn add(key: &str, default: Value) -> Step {
        Step::Add {
            key: key.into(),
            default,
        }
    }

    fn drop(key: &str) -> Step {
        Step::Drop { key: key.into() }
    }

    fn cast(key: &str, to: CastTarget) -> Step {
        Step::Cast {
            key: key.into(),
            to,
        }
    }

    /// Applies each case's step, checks the result (or that the error holds the fragment and
    /// left the payload unchanged), and that the step parses back from its JSON.
    fn check_cases(cases: Vec<(Value, Step, Result<Value, &'static str>)>) {
        for (input, step, want) in cases {
            assert_eq!(
                parse_steps(&json!([step.to_json()])).map_err(|e| e.to_string()),
                Ok(vec![step.clone()]),
                "{step:?} parses back"
            );
            let mut payload = obj(input.clone());
            let got = apply_steps(&mut payload, std::slice::from_ref(&step), &mut no_function);
            match (got, want) {
                (Ok(()), Ok(expected)) => {
                    assert_eq!(Value::Object(payload), expected, "{step:?} on {input}")
                }
                (Err(e), Err(fragment)) => {
                    assert!(
                        e.message.contains(fragment),
                        "{step:?} on {input}: {}",
                        e.message
                    );
                    assert_eq!(Value::Object(payload), input, "{step:?} left it unchanged");
                }
                (got, want) => panic!("{step:?} on {input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn path_step_effects() {
        use CastTarget::{Integer, Number, String as Str};
        // (payload, step, Ok(expected payload) | Err(substring of the message)), each step at
        // depth 2 (or 3), through [], and on missing paths.
        type Case = (Value, Step, Result<Value, &'static str>);
        let cases: Vec<Case> = vec![
            // rename within one object
            (
                json!({"actor": {"login": "o", "id": 1}}),
                rename("actor.login", "actor.handle"),
                Ok(json!({"actor": {"id": 1, "handle": "o"}})),
            ),
            (
                json!({"a": {"b": {"c": 1}}}),
                rename("a.b.c", "a.b.d"),
                Ok(json!({"a": {"b": {"d": 1}}})),
            ),
            (
                json!({"actor": {"id": 1}}),
                rename("actor.login", "actor.handle"),
                Ok(json!({"actor": {"id": 1}})),
            ),
            (
                json!({"x": 1}),
                rename("actor.login", "actor.handle"),
                Ok(json!({"x": 1})),
            ),
            (
                json!({"actor": "o", "list": [{"login": 1}]}),
                rename("actor.login", "actor.handle"),
                Ok(json!({"actor": "o", "list": [{"login": 1}]})),
            ),
            (
                json!({"actor": [{"login": 1}]}),
                rename("actor.login", "actor.handle"),
                Ok(json!({"actor": [{"login": 1}]})),
            ),
            (
                json!({"actor": {"login": 1, "handle": 2}}),
                rename("actor.login", "actor.handle"),
                Err("cannot rename \"actor.login\" to \"actor.handle\": \"actor.handle\" already exists"),
            ),
            // rename across objects
            (
                json!({"user_login": "o"}),
                rename("user_login", "actor.login"),
                Ok(json!({"actor": {"login": "o"}})),
            ),
            (
                json!({"login": "o", "actor": {"id": 1}}),
                rename("login", "actor.login"),
                Ok(json!({"actor": {"id": 1, "login": "o"}})),
            ),
            (
                json!({"actor": {"login": "o"}}),
                rename("actor.login", "login"),
                Ok(json!({"actor": {}, "login": "o"})),
            ),
            (
                json!({"a": {"x": 1}}),
                rename("a.x", "b.c.d"),
                Ok(json!({"a": {}, "b": {"c": {"d": 1}}})),
            ),
            (json!({"a": 1}), rename("a", "a.b"), Ok(json!({"a": {"b": 1}}))),
            (
                json!({"a": {"b": 1}}),
                rename("a.b", "a"),
                Err("\"a\" already exists"),
            ),
            (
                json!({"login": "o", "actor": "bob"}),
                rename("login", "actor.login"),
                Err("\"actor\" holds string, not an object"),
            ),
            (
                json!({"login": "o", "actor": {"login": "p"}}),
                rename("login", "actor.login"),
                Err("\"actor.login\" already exists"),
            ),
            (
                json!({"x": 1, "actor": null}),
                rename("login", "actor.login"),
                Ok(json!({"x": 1, "actor": null})),
            ),
            // rename through []
            (
                json!({"commits": [{"sha": 1}, {"sha": 2, "x": 0}, {"x": 1}, 5]}),
                rename("commits[].sha", "commits[].id"),
                Ok(json!({"commits": [{"id": 1}, {"x": 0, "id": 2}, {"x": 1}, 5]})),
            ),
            (
                json!({"p": {"commits": [{"author": {"name": "a"}}, {"author": 1}]}}),
                rename("p.commits[].author.name", "p.commits[].author_name"),
                Ok(json!({"p": {"commits": [{"author": {}, "author_name": "a"}, {"author": 1}]}})),
            ),
            (
                json!({"m": [[{"a": 1}], [{"a": 2}, {}]]}),
                rename("m[][].a", "m[][].b"),
                Ok(json!({"m": [[{"b": 1}], [{"b": 2}, {}]]})),
            ),
            (
                json!({"commits": [{"sha": 1}, {"sha": 2, "id": 3}]}),
                rename("commits[].sha", "commits[].id"),
                Err("\"commits[].id\" already exists"),
            ),
            (
                json!({"commits": {"sha": 1}}),
                rename("commits[].sha", "commits[].id"),
                Ok(json!({"commits": {"sha": 1}})),
            ),
            (
                json!({"x": []}),
                rename("commits[].sha", "commits[].id"),
                Ok(json!({"x": []})),
            ),
            // add
            (
                json!({"actor": {"id": 1}}),
                add("actor.type", json!("User")),
                Ok(json!({"actor": {"id": 1, "type": "User"}})),
            ),
            (
                json!({"actor": {"type": null}}),
                add("actor.type", json!("User")),
                Ok(json!({"actor": {"type": null}})),
            ),
            (json!({}), add("actor.type", json!("User")), Ok(json!({}))),
            (
                json!({"actor": 5}),
                add("actor.type", json!("User")),
                Ok(json!({"actor": 5})),
            ),
            (
                json!({"c": [{"a": 1}, {"v": true}, 3]}),
                add("c[].v", json!(false)),
                Ok(json!({"c": [{"a": 1, "v": false}, {"v": true}, 3]})),
            ),
            (
                json!({"c": {"v": 1}}),
                add("c[].v", json!(false)),
                Ok(json!({"c": {"v": 1}})),
            ),
            // drop
            (
                json!({"payload": {"size": 1, "x": 2}}),
                drop("payload.size"),
                Ok(json!({"payload": {"x": 2}})),
            ),
            (
                json!({"payload": {"x": 2}}),
                drop("payload.size"),
                Ok(json!({"payload": {"x": 2}})),
            ),
            (
                json!({"payload": 3}),
                drop("payload.size"),
                Ok(json!({"payload": 3})),
            ),
            (
                json!({"p": {"commits": [{"url": 1, "sha": 2}, {"sha": 3}, null]}}),
                drop("p.commits[].url"),
                Ok(json!({"p": {"commits": [{"sha": 2}, {"sha": 3}, null]}})),
            ),
            (
                json!({"labels": {"app.kubernetes.io/name": "x", "tier": 1}}),
                drop("labels.\"app.kubernetes.io/name\""),
                Ok(json!({"labels": {"tier": 1}})),
            ),
            // cast
            (
                json!({"properties": {"mag": "4.5"}}),
                cast("properties.mag", Number),
                Ok(json!({"properties": {"mag": 4.5}})),
            ),
            (
                json!({"properties": {}}),
                cast("properties.mag", Number),
                Ok(json!({"properties": {}})),
            ),
            (
                json!({"properties": ["4.5"]}),
                cast("properties.mag", Number),
                Ok(json!({"properties": ["4.5"]})),
            ),
            (
                json!({"properties": {"mag": "abc"}}),
                cast("properties.mag", Number),
                Err("\"properties.mag\": cannot cast string \"abc\" to number"),
            ),
            (
                json!({"p": {"commits": [{"size": "1"}, {"size": 2.0}, {}, "x"]}}),
                cast("p.commits[].size", Integer),
                Ok(json!({"p": {"commits": [{"size": 1}, {"size": 2}, {}, "x"]}})),
            ),
            (
                json!({"p": {"commits": [{"size": "1"}, {"size": "big"}]}}),
                cast("p.commits[].size", Integer),
                Err("\"p.commits[].size\": cannot cast string \"big\" to integer"),
            ),
            (
                json!({"tags": ["1", 2, true]}),
                cast("tags[]", Str),
                Ok(json!({"tags": ["1", "2", "true"]})),
            ),
            (
                json!({"m": [[1, "2"], [], [" 3 "]]}),
                cast("m[][]", Number),
                Ok(json!({"m": [[1, 2], [], [3]]})),
            ),
            (
                json!({"tags": "1"}),
                cast("tags[]", Str),
                Ok(json!({"tags": "1"})),
            ),
            // nest
            (
                json!({"geo": {"lat": 1, "lon": 2, "x": 3}}),
                nest(&["geo.lat", "geo.lon"], "geo.pos"),
                Ok(json!({"geo": {"x": 3, "pos": {"lat": 1, "lon": 2}}})),
            ),
            (
                json!({"lat": 1, "meta": {"lon": 2}}),
                nest(&["lat", "meta.lon"], "loc"),
                Ok(json!({"meta": {}, "loc": {"lat": 1, "lon": 2}})),
            ),
            (
                json!({"lat": 1}),
                nest(&["lat"], "a.b"),
                Ok(json!({"a": {"b": {"lat": 1}}})),
            ),
            (
                json!({"lat": 1, "a": 5}),
                nest(&["lat"], "a.b"),
                Err("cannot nest into \"a.b\": \"a\" holds integer, not an object"),
            ),
            (
                json!({"lat": 1, "a": {"b": [1]}}),
                nest(&["lat"], "a.b"),
                Err("cannot nest into \"a.b\": it holds array, not an object"),
            ),
            (
                json!({"geo": {"lat": 1, "pos": {"lat": 0}}}),
                nest(&["geo.lat"], "geo.pos"),
                Err("cannot nest \"geo.lat\" into \"geo.pos\": \"geo.pos\" already holds \"lat\""),
            ),
            (
                json!({"geo": {"x": 1}}),
                nest(&["geo.lat", "geo.lon"], "geo.pos"),
                Ok(json!({"geo": {"x": 1}})),
            ),
            (
                json!({"pts": [{"lat": 1, "lon": 2}, {"x": 0}, {"lat": 3, "pos": {"alt": 1}}, 7]}),
                nest(&["pts[].lat", "pts[].lon"], "pts[].pos"),
                Ok(json!({"pts": [{"pos": {"lat": 1, "lon": 2}}, {"x": 0}, {"pos": {"alt": 1, "lat": 3}}, 7]})),
            ),
            (
                json!({"pts": [{"lat": 1}, {"lat": 2, "pos": "here"}]}),
                nest(&["pts[].lat"], "pts[].pos"),
                Err("it holds string, not an object"),
            ),
            (
                json!({"pts": 5}),
                nest(&["pts[].lat"], "pts[].pos"),
                Ok(json!({"pts": 5})),
            ),
            // unnest
            (
                json!({"a": {"geo": {"lat": 1}, "x": 0}}),
                unnest("a.geo", Some("geo_")),
                Ok(json!({"a": {"x": 0, "geo_lat": 1}})),
            ),
            (
                json!({"a": {"geo": {"lat": 1}, "lat": 0}}),
                unnest("a.geo", None),
                Err("cannot unnest \"a.geo\": \"a.lat\" already exists"),
            ),
            (
                json!({"a": {"geo": 1}}),
                unnest("a.geo", None),
                Err("cannot unnest \"a.geo\": it holds integer, not an object"),
            ),
            (json!({"a": 1}), unnest("a.geo", None), Ok(json!({"a": 1}))),
            (json!({"a": {}}), unnest("a.geo", None), Ok(json!({"a": {}}))),
            (
                json!({"f": [{"geo": {"lat": 1}}, {"x": 1}, {"geo": {}}]}),
                unnest("f[].geo", None),
                Ok(json!({"f": [{"lat": 1}, {"x": 1}, {}]})),
            ),
            (
                json!({"f": [{"geo": {"lat": 1}}, {"geo": 3}]}),
                unnest("f[].geo", None),
                Err("cannot unnest \"f[].geo\": it holds integer"),
            ),
            (
                json!({"f": [{"geo": {"lat": 1}, "lat": 2}]}),
                unnest("f[].geo", None),
                Err("\"f[].lat\" already exists"),
            ),
        ];
        check_cases(cases);
    }

    #[test]
    fn keys_of_old_data_keep_their_meaning() {
        // `rename.from` and `drop.key` stored before paths existed named top-level keys.
        type Case = (Value, Step, Result<Value, &'static str>);
        let cases: Vec<Case> = vec![
            // A top-level key spelled as the text is that key…
            (
                json!({"user.name": "x"}),
                rename("user.name", "user_name"),
                Ok(json!({"user_name": "x"})),
            ),
            (
                json!({"user.name": 1, "user": {"name": 2}}),
                drop("user.name"),
                Ok(json!({"user": {"name": 2}})),
            ),
            // …otherwise the text is a path.
            (
                json!({"user": {"name": "x"}}),
                rename("user.name", "user_name"),
                Ok(json!({"user": {}, "user_name": "x"})),
            ),
            (
                json!({"user": {"name": 2}}),
                drop("user.name"),
                Ok(json!({"user": {}})),
            ),
            // A quoted key is one key.
            (
                json!({"a.b": 1, "a": {"b": 2}}),
                rename("\"a.b\"", "c"),
                Ok(json!({"c": 1, "a": {"b": 2}})),
            ),
            // Texts that are no path of a member are one key.
            (
                json!({"tags[]": 1, "tags": [1]}),
                drop("tags[]"),
                Ok(json!({"tags": [1]})),
            ),
            (json!({"a[": 1}), drop("a["), Ok(json!({}))),
            (
                json!({"Old Name": 1}),
                rename("Old Name", "new_name"),
                Ok(json!({"new_name": 1})),
            ),
            (
                json!({"a[].b": 1, "a": [{"b": 2}]}),
                rename("a[].b", "x"),
                Ok(json!({"x": 1, "a": [{"b": 2}]})),
            ),
            (
                json!({"a": [{"b": 2}]}),
                rename("a[].b", "x"),
                Ok(json!({"a": [{"b": 2}]})),
            ),
        ];
        check_cases(cases);
    }

    /// Payload values whose object keys come from a few names, so that paths over them meet.
    fn small_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[abcx]", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Path texts over the same few names: one to three keys, some through `[]`.
    fn path_text() -> impl Strategy<Value = String> {
        prop::collection::vec(("[abcx]", any::<bool>()), 1..4).prop_map(|segments| {
            let parts: Vec<String> = segments
                .into_iter()
                .map(|(k, items)| if items { format!("{k}[]") } else { k })
                .collect();
            parts.join(".")
        })
    }

    fn small_payload() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::vec(("[abcx]", small_json()), 0..4)
            .prop_map(|kv| kv.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn rename_there_and_back(payload in small_payload()) {
            // `rename a.b → a.c` then `a.c → a.b` gives the payload back when `a.c` is absent,
            // and so does the same through the elements of an array `a[]`.
            let holds_c = |v: &Value| v.as_object().is_some_and(|m| m.contains_key("c"));
            let cases = [
                (("a.b", "a.c"), payload.get("a").is_some_and(holds_c)),
                (
                    ("a[].b", "a[].c"),
                    payload
                        .get("a")
                        .and_then(Value::as_array)
                        .is_some_and(|items| items.iter().any(holds_c)),
                ),
            ];
            for ((b, c), c_present) in cases {
                if c_present {
                    continue;
                }
                let steps = [rename(b, c), rename(c, b)];
                let mut p = payload.clone();
                prop_assert!(apply_steps(&mut p, &steps[..1], &mut no_function).is_ok());
                // Each value at a.b is at a.c now.
                if let (false, Some(Value::Object(a))) = (b.contains("[]"), payload.get("a")) {
                    if let Some(v) = a.get("b") {
                        prop_assert_eq!(p["a"].get("c"), Some(v));
                        prop_assert_eq!(p["a"].get("b"), None);
                    }
                }
                prop_assert!(apply_steps(&mut p, &steps[1..], &mut no_function).is_ok());
                prop_assert_eq!(&p, &payload);
            }
        }

        #[test]
        fn any_path_step_applies_or_changes_nothing(
            payload in small_payload(),
            kind in 0usize..6,
            texts in prop::collection::vec(path_text(), 3),
            target in prop_oneof![Just("number"), Just("integer"), Just("string")],
        ) {
            let (a, b, c) = (&texts[0], &texts[1], &texts[2]);
            let doc = match kind {
                0 => json!({"rename": {"from": a, "to": b}}),
                1 => json!({"add": {"key": a, "default": {"n": 1}}}),
                2 => json!({"drop": {"key": a}}),
                3 => json!({"cast": {"key": a, "to": target}}),
                4 => json!({"nest": {"keys": [a, b], "into": c}}),
                _ => json!({"unnest": {"key": a, "prefix": "p_"}}),
            };
            // Whatever parses round-trips, and applies or fails without a trace.
            if let Ok(steps) = parse_steps(&json!([doc])) {
                prop_assert_eq!(parse_steps(&steps_to_json(&steps)).unwrap(), steps.clone());
                let mut p = payload.clone();
                if apply_steps(&mut p, &steps, &mut no_function).is_err() {
                    prop_assert_eq!(&p, &payload);
                }
            }
        }

        #[test]
        fn failing_path_steps_change_nothing(payload in small_payload(), which in 0usize..6) {
            let step = [
                rename("a[].b", "a[].c"),
                cast("a[].b", CastTarget::Integer),
                nest(&["a[].b"], "a[].c"),
                unnest("a[].b", Some("p")),
                rename("b", "a.c.b"),
                nest(&["b", "x.b"], "a.c.d"),
            ][which].clone();
            let mut p = payload.clone();
            if apply_steps(&mut p, std::slice::from_ref(&step), &mut no_function).is_err() {
                prop_assert_eq!(&p, &payload);
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
}
