//! Steps derived from two consecutive definitions.

use std::collections::BTreeMap;

use super::cast::CastTarget;
use super::step::Step;
use crate::path::{Path, Segment};
use crate::schema::{AttrType, Attribute, Definition};

/// The steps that follow from the definitions of two consecutive versions, for the declared
/// attributes at every depth ([`Definition::walk`]):
///
/// 1. renames: for each attribute of `new` at path `P` absent from `old` (among the members of
///    `P`'s parent as `old` declares it) that has an alias which is a member there in `old` and
///    not in `new`, `Rename { P.parent + alias → P }` (the first such alias). `P.parent` is named
///    as in `new`: the renames run in walk order, a parent's before its members', so a renamed
///    parent already carries its new name (`user → actor`, then `actor.login → actor.handle`);
/// 2. casts: for each attribute in both (a renamed one, or one below a renamed parent, counts
///    under its old path in `old`; array elements `P[]` count when both declare them) whose
///    type widened, integer → number gives `Cast number` and date → timestamp gives
///    `Cast timestamp`, keyed by the new path; other type changes give no step;
/// 3. adds: for each attribute new in `new` (and not renamed) with a `default`,
///    `Add { key, default }` keyed by its path. A nested one is added in every object its
///    parent path reaches; old payloads without the parent get nothing (whether to create the
///    parent is not the definitions' to say).
///
/// Each group is in walk order: top-level attributes by (new) name, each parent before its
/// members. Removed attributes give no step.
pub fn derive_steps(old: &Definition, new: &Definition) -> Vec<Step> {
    let mut renames = Vec::new();
    let mut casts = Vec::new();
    let mut adds = Vec::new();
    // By the new path of each attribute walked so far: the attribute in `new` and the one it
    // continues in `old`.
    let mut seen: BTreeMap<Path, (&Attribute, Option<&Attribute>)> = BTreeMap::new();
    for (path, attr) in new.walk() {
        let parent = path.parent();
        let (new_parent, old_parent) = match &parent {
            None => (None, None),
            Some(p) => match seen.get(p) {
                Some(&(n, o)) => (Some(n), o),
                None => continue,
            },
        };
        let old_attr = match path.segments().last() {
            Some(Segment::Items) => old_parent.and_then(|o| o.items.as_deref()),
            Some(Segment::Key(name)) => {
                let (old_siblings, new_siblings) = match (&parent, new_parent) {
                    (None, _) => (Some(&old.attributes), &new.attributes),
                    (Some(_), Some(n)) => (old_parent.map(|o| &o.properties), &n.properties),
                    (Some(_), None) => continue,
                };
                match old_siblings {
                    None => None,
                    Some(siblings) => match siblings.get(name) {
                        Some(o) => Some(o),
                        None => {
                            let alias = attr.aliases.iter().find(|a| {
                                *a != name
                                    && siblings.contains_key(*a)
                                    && !new_siblings.contains_key(*a)
                            });
                            if let Some(alias) = alias {
                                let from = match &parent {
                                    None => alias.clone(),
                                    Some(p) => p.child(alias.clone()).to_string(),
                                };
                                renames.push(Step::Rename {
                                    from,
                                    to: key_text(&path),
                                });
                            }
                            alias.and_then(|a| siblings.get(a))
                        }
                    },
                }
            }
            None => None,
        };
        seen.insert(path.clone(), (attr, old_attr));
        match old_attr {
            Some(old_attr) => {
                let to = match (old_attr.attr_type, attr.attr_type) {
                    (AttrType::Integer, AttrType::Number) => Some(CastTarget::Number),
                    (AttrType::Date, AttrType::Timestamp) => Some(CastTarget::Timestamp),
                    _ => None,
                };
                if let Some(to) = to {
                    casts.push(Step::Cast {
                        key: key_text(&path),
                        to,
                    });
                }
            }
            None => {
                // A new attribute with a default: old payloads get it (a nested one in every
                // object its parent path reaches; where the parent is absent, nothing is added).
                if let Some(default) = &attr.default {
                    adds.push(Step::Add {
                        key: key_text(&path),
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

/// A path as a step names it: a top-level key as written (as before paths existed), a deeper
/// path in its text form.
fn key_text(path: &Path) -> String {
    match path.segments() {
        [Segment::Key(k)] => k.clone(),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::test_support::{def, no_function, obj, rename};
    use crate::migrate::{apply_steps, parse_steps, steps_to_json};
    use serde_json::json;
    use serde_json::Value;

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
    fn derived_nested_steps() {
        let v1 = def(json!({
            "entity_type": "push",
            "attributes": {
                "actor": {"type": "object", "properties": {
                    "login": {"type": "string"},
                    "id": {"type": "integer"}
                }},
                "payload": {"type": "object", "properties": {
                    "size": {"type": "integer"},
                    "commits": {"type": "array", "items": {"type": "object", "properties": {
                        "sha": {"type": "string"},
                        "when": {"type": "date"}
                    }}}
                }},
                "tags": {"type": "array", "items": "integer"},
                "user": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "born": {"type": "date"}
                }},
                "kept": {"type": "object", "properties": {"n": {"type": "integer"}}}
            }
        }));
        let v2 = def(json!({
            "entity_type": "push",
            "attributes": {
                "actor": {"type": "object", "properties": {
                    "handle": {"type": "string", "aliases": ["login"]},
                    "id": {"type": "number"}
                }},
                "payload": {"type": "object", "properties": {
                    "size": {"type": "number"},
                    "commits": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string", "aliases": ["sha"]},
                        "when": {"type": "timestamp"}
                    }}}
                }},
                "tags": {"type": "array", "items": "number"},
                "person": {"type": "object", "aliases": ["user"], "properties": {
                    "full_name": {"type": "string", "aliases": ["name"]},
                    "born": {"type": "timestamp"},
                    "age": {"type": "integer", "default": 0}
                }},
                "kept": {"type": "string"},
                "fresh": {"type": "object", "properties": {
                    "x": {"type": "number", "aliases": ["y"]}
                }}
            }
        }));
        let cast = |key: &str, to| Step::Cast {
            key: key.into(),
            to,
        };
        let steps = derive_steps(&v1, &v2);
        assert_eq!(
            steps,
            vec![
                rename("actor.login", "actor.handle"),
                rename("payload.commits[].sha", "payload.commits[].id"),
                rename("user", "person"),
                // After the parent's rename, under its new name.
                rename("person.name", "person.full_name"),
                cast("actor.id", CastTarget::Number),
                cast("payload.commits[].when", CastTarget::Timestamp),
                cast("payload.size", CastTarget::Number),
                cast("person.born", CastTarget::Timestamp),
                cast("tags[]", CastTarget::Number),
                // A new member with a default, in the (renamed) object that holds it.
                Step::Add {
                    key: "person.age".into(),
                    default: json!(0),
                },
            ]
        );
        // Derived steps are stored and read back.
        assert_eq!(parse_steps(&steps_to_json(&steps)).unwrap(), steps);

        let mut payload = obj(json!({
            "actor": {"login": "octo", "id": 1},
            "payload": {"size": 2, "commits": [{"sha": "s1", "when": "2024-01-02"}, {"sha": "s2"}]},
            "tags": [1, 2],
            "user": {"name": "Ann", "born": "1990-05-06"},
            "kept": {"n": 1}
        }));
        apply_steps(&mut payload, &steps, &mut no_function).unwrap();
        assert_eq!(
            Value::Object(payload),
            json!({
                "actor": {"id": 1, "handle": "octo"},
                "payload": {"size": 2, "commits": [
                    {"when": "2024-01-02T00:00:00Z", "id": "s1"}, {"id": "s2"}
                ]},
                "tags": [1, 2],
                "person": {"born": "1990-05-06T00:00:00Z", "full_name": "Ann", "age": 0},
                "kept": {"n": 1}
            })
        );

        // Back from v2 to v1: the old names carry no aliases; no nested step either.
        assert_eq!(derive_steps(&v2, &v1), vec![]);
        assert_eq!(derive_steps(&v2, &v2), vec![]);
    }
}
