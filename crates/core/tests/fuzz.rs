//! Property-based fuzzing of everything pg_evolve parses from users: schema definitions and
//! patches, payloads, change documents and migration steps. Inputs are arbitrary JSON and
//! mutations of valid documents (a subtree replaced, a key dropped or renamed). Properties: no
//! panic, every rejection carries one of the documented SQLSTATEs, and what is accepted
//! round-trips. Bounded: `PROPTEST_CASES` (default 1000 per target) keeps it inside command 2.

use evolve_core::impact::{self, Change};
use evolve_core::migrate::{apply_steps, coerce, parse_steps, steps_to_json};
use evolve_core::payload::{check_payload, split};
use evolve_core::schema::{check_extension, effective, merge_patch, Definition};
use evolve_core::{CoreError, SqlState};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// The SQLSTATEs docs/reference.md lists for rejected input from the pure layer.
fn documented(e: &CoreError) -> bool {
    matches!(
        e.sqlstate(),
        SqlState::InvalidParameterValue
            | SqlState::ProgramLimitExceeded
            | SqlState::InvalidObjectDefinition
    ) && !e.to_string().is_empty()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Strings users send: names, hostile identifiers, unicode, control characters, long ones.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,10}",
        Just(String::new()),
        Just("mag".to_string()),
        Just("earthquake".to_string()),
        Just("number".to_string()),
        Just("string".to_string()),
        Just("max".to_string()),
        Just("\"; DROP TABLE evolve.schemas; --".to_string()),
        Just("a\u{0}b".to_string()),
        Just("ünï côdé ✓".to_string()),
        Just("x".repeat(300)),
        ".{0,20}",
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A mutation of a valid document: one subtree (chosen by a path of indexes) replaced by
/// arbitrary JSON, removed, or its key renamed.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Vec<usize>, Value),
    Remove(Vec<usize>),
    Rename(Vec<usize>, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let path = prop::collection::vec(0usize..8, 0..5);
    prop_oneof![
        (path.clone(), any_json()).prop_map(|(p, v)| Mutation::Replace(p, v)),
        path.clone().prop_map(Mutation::Remove),
        (path, any_string()).prop_map(|(p, s)| Mutation::Rename(p, s)),
    ]
}

fn mutate(doc: &Value, m: &Mutation) -> Value {
    fn walk(v: &mut Value, path: &[usize], m: &Mutation) {
        let (Some(&i), rest) = (path.first(), path.get(1..).unwrap_or(&[])) else {
            if let Mutation::Replace(_, new) = m {
                *v = new.clone();
            }
            return;
        };
        match v {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(i % map.len()).cloned().unwrap();
                if rest.is_empty() {
                    match m {
                        Mutation::Replace(_, new) => {
                            map.insert(key, new.clone());
                        }
                        Mutation::Remove(_) => {
                            map.remove(&key);
                        }
                        Mutation::Rename(_, name) => {
                            let val = map.remove(&key).unwrap();
                            map.insert(name.clone(), val);
                        }
                    }
                } else {
                    walk(map.get_mut(&key).unwrap(), rest, m);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let n = items.len();
                if rest.is_empty() && matches!(m, Mutation::Remove(_)) {
                    items.remove(i % n);
                } else {
                    walk(&mut items[i % n], rest, m);
                }
            }
            other => {
                if let Mutation::Replace(_, new) = m {
                    *other = new.clone();
                }
            }
        }
    }
    let mut out = doc.clone();
    let path = match m {
        Mutation::Replace(p, _) | Mutation::Remove(p) | Mutation::Rename(p, _) => p.clone(),
    };
    walk(&mut out, &path, m);
    out
}

fn valid_definition() -> Value {
    json!({
        "entity_type": "earthquake",
        "description": "A seismic event",
        "attributes": {
            "mag": {"type": "number", "description": "Magnitude", "merge_policy": "max", "required": true},
            "place": {"type": "string", "aliases": ["location"]},
            "time": {"type": "timestamp"},
            "tags": {"type": "array", "merge_policy": "union"},
            "felt": {"type": "integer", "default": 0, "merge_policy": "source_priority", "source_priority": ["usgs", "emsc"]}
        },
        "relationships": {"near": {"target": "place", "description": "Closest place"}}
    })
}

fn valid_payload() -> Value {
    json!({"mag": 4.5, "location": "Alaska", "time": "2024-01-01T00:00:00Z", "tags": ["a"],
           "felt": 3, "near": "anchorage", "sig": 12, "nested": {"a": [1, 2, {"b": null}]}})
}

fn valid_change() -> Value {
    json!({"kind": "attribute_description_changed", "entity_type": "earthquake",
           "attribute": "mag", "description": "Moment magnitude"})
}

fn valid_steps() -> Value {
    json!([
        {"rename": {"from": "magnitude", "to": "mag"}},
        {"add": {"key": "felt", "default": 0}},
        {"drop": {"key": "legacy"}},
        {"cast": {"key": "mag", "to": "number"}},
        {"function": "public.fix_quake"}
    ])
}

/// A definition input: arbitrary JSON half of the time, a mutated valid one otherwise.
fn definition_input() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_json(),
        mutation().prop_map(|m| mutate(&valid_definition(), &m)),
    ]
}

fn check_definition(doc: &Value) -> Option<Definition> {
    match Definition::parse(doc) {
        Ok(d) => {
            // What is accepted round-trips through its stored form.
            let again = Definition::parse(&d.to_json()).expect("a stored definition parses");
            assert_eq!(again.to_json(), d.to_json());
            Some(d)
        }
        Err(e) => {
            assert!(documented(&e), "undocumented rejection: {e:?}");
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn schema_definitions(doc in definition_input(), patch in any_json()) {
        let valid = Definition::parse(&valid_definition()).unwrap();
        if let Some(d) = check_definition(&doc) {
            // As a user extension of the valid global schema, and merged with it.
            match check_extension(&valid, &d) {
                Ok(()) => { effective(Some(&valid), Some(&d)); }
                Err(e) => prop_assert!(documented(&e), "{e:?}"),
            }
        }
        // As a patch of the valid definition (update_schema_incremental).
        check_definition(&merge_patch(&valid_definition(), &patch));
    }

    #[test]
    fn payloads(doc in prop_oneof![any_json(), mutation().prop_map(|m| mutate(&valid_payload(), &m))],
                def in definition_input()) {
        let text = doc.to_string();
        match check_payload(&doc, text.len()) {
            Ok(map) => {
                let def = Definition::parse(&def).unwrap_or_else(|_| Definition::parse(&valid_definition()).unwrap());
                let s = split(&def, map);
                // Every value lands somewhere, exactly once: the leaves of all parts are the
                // leaves of the payload.
                fn leaves(v: &Value) -> usize {
                    match v {
                        Value::Object(m) if !m.is_empty() => m.values().map(leaves).sum(),
                        _ => 1,
                    }
                }
                let parts: usize = s.observations.iter().map(|(_, v)| leaves(v))
                    .chain(s.fragments.iter().map(|(_, v)| leaves(v)))
                    .chain(s.mismatches.iter().map(|(_, v, _)| leaves(v)))
                    .chain(s.embedded.iter().map(|(_, _, _, v)| leaves(v) - 1))
                    .sum();
                prop_assert_eq!(parts, map.values().map(leaves).sum::<usize>());
                prop_assert!(s.observations.len() + s.fragments.len() + s.mismatches.len() >= map.len());
                let mut coerced = map.clone();
                coerce(&def, &mut coerced);
            }
            Err(e) => prop_assert!(documented(&e), "{e:?}"),
        }
    }

    #[test]
    fn change_documents(doc in prop_oneof![any_json(), mutation().prop_map(|m| mutate(&valid_change(), &m))]) {
        match Change::parse(&doc) {
            Ok(c) => {
                let again = Change::parse(&c.to_json()).expect("a stored change parses");
                prop_assert_eq!(again.to_json(), c.to_json());
                impact::impact(&c);
                let def = Definition::parse(&valid_definition()).unwrap();
                if let Err(e) = impact::apply(&def, &c) {
                    prop_assert!(documented(&e), "{e:?}");
                }
            }
            Err(e) => prop_assert!(documented(&e), "{e:?}"),
        }
    }

    #[test]
    fn migration_steps(doc in prop_oneof![any_json(), mutation().prop_map(|m| mutate(&valid_steps(), &m))],
                       payload in prop_oneof![any_json(), Just(valid_payload())]) {
        match parse_steps(&doc) {
            Ok(steps) => {
                let again = parse_steps(&steps_to_json(&steps)).expect("stored steps parse");
                prop_assert_eq!(steps_to_json(&again), steps_to_json(&steps));
                if let Value::Object(mut map) = payload {
                    // A step may fail (reported with its index); it must not panic.
                    let mut call = |_: &str, v: Value| Ok(v);
                    if let Err(e) = apply_steps(&mut map, &steps, &mut call) {
                        prop_assert!(e.index < steps.len());
                    }
                }
            }
            Err(e) => prop_assert!(documented(&e), "{e:?}"),
        }
    }
}
