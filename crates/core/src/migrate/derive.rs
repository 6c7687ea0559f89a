//! Steps derived from two consecutive definitions.

use super::cast::CastTarget;
use super::step::Step;
use crate::schema::{AttrType, Definition};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::apply_steps;
    use crate::migrate::test_support::{def, no_function, obj, rename};
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
}
