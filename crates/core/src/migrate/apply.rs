//! Applying steps to a payload.

use std::fmt;

use serde_json::{Map, Value};

use super::cast::cast;
use super::step::Step;
use crate::infer::value_type;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::parse_steps;
    use crate::migrate::test_support::{no_function, obj, rename};
    use crate::migrate::CastTarget;
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
