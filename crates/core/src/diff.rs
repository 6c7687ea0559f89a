//! The difference between two versions of a schema definition.
//!
//! [`diff`] compares an old definition (or none, for the first version) with a new one and
//! reports what was added, removed and changed, field by field. [`SchemaDiff::to_json`] renders
//! the result in a stable JSON shape for the SQL layer.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::schema::{AttrType, Attribute, Definition, MergePolicy, Relationship};

/// An old and a new value of one field.
pub type Change<T> = (T, T);

/// What changed in one attribute present in both versions. Each field is `Some((old, new))`
/// only when that part of the attribute changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttrChange {
    pub attr_type: Option<Change<AttrType>>,
    pub description: Option<Change<Option<String>>>,
    pub required: Option<Change<bool>>,
    pub default: Option<Change<Option<Value>>>,
    pub merge_policy: Option<Change<MergePolicy>>,
    pub source_priority: Option<Change<Vec<String>>>,
    pub aliases: Option<Change<Vec<String>>>,
}

impl AttrChange {
    /// Compares two versions of an attribute; `None` when they are identical.
    fn between(old: &Attribute, new: &Attribute) -> Option<AttrChange> {
        let change = AttrChange {
            attr_type: changed(&old.attr_type, &new.attr_type),
            description: changed(&old.description, &new.description),
            required: changed(&old.required, &new.required),
            default: changed(&old.default, &new.default),
            merge_policy: changed(&old.merge_policy, &new.merge_policy),
            source_priority: changed(&old.source_priority, &new.source_priority),
            aliases: changed(&old.aliases, &new.aliases),
        };
        (!change.is_empty()).then_some(change)
    }

    /// True when no field changed.
    pub fn is_empty(&self) -> bool {
        self == &AttrChange::default()
    }

    /// `{"type": {"from": .., "to": ..}, ...}` with one key per changed field, in the order
    /// type, description, required, default, merge_policy, source_priority, aliases.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some((from, to)) = &self.attr_type {
            m.insert("type".into(), from_to(from.as_str(), to.as_str()));
        }
        if let Some((from, to)) = &self.description {
            m.insert("description".into(), from_to(from, to));
        }
        if let Some((from, to)) = &self.required {
            m.insert("required".into(), from_to(from, to));
        }
        if let Some((from, to)) = &self.default {
            m.insert("default".into(), from_to(from, to));
        }
        if let Some((from, to)) = &self.merge_policy {
            m.insert("merge_policy".into(), from_to(from.as_str(), to.as_str()));
        }
        if let Some((from, to)) = &self.source_priority {
            m.insert("source_priority".into(), from_to(from, to));
        }
        if let Some((from, to)) = &self.aliases {
            m.insert("aliases".into(), from_to(from, to));
        }
        Value::Object(m)
    }
}

/// What changed in one relationship present in both versions. Each field is `Some((old, new))`
/// only when that part of the relationship changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelChange {
    pub target: Option<Change<String>>,
    pub description: Option<Change<Option<String>>>,
}

impl RelChange {
    /// Compares two versions of a relationship; `None` when they are identical.
    fn between(old: &Relationship, new: &Relationship) -> Option<RelChange> {
        let change = RelChange {
            target: changed(&old.target, &new.target),
            description: changed(&old.description, &new.description),
        };
        (!change.is_empty()).then_some(change)
    }

    /// True when no field changed.
    pub fn is_empty(&self) -> bool {
        self == &RelChange::default()
    }

    /// `{"target": {"from": .., "to": ..}, "description": {...}}` with one key per changed
    /// field.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some((from, to)) = &self.target {
            m.insert("target".into(), from_to(from, to));
        }
        if let Some((from, to)) = &self.description {
            m.insert("description".into(), from_to(from, to));
        }
        Value::Object(m)
    }
}

/// The difference between two versions of one entity type's definition.
///
/// All name lists are sorted; the maps are ordered by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaDiff {
    /// The entity description, old and new, when it changed.
    pub description: Option<Change<Option<String>>>,
    /// Attributes are named by the text form of their paths: `geo`, `geo.lat`, `tags[]`.
    pub attributes_added: Vec<String>,
    pub attributes_removed: Vec<String>,
    pub attributes_changed: BTreeMap<String, AttrChange>,
    pub relationships_added: Vec<String>,
    pub relationships_removed: Vec<String>,
    pub relationships_changed: BTreeMap<String, RelChange>,
}

/// Compares `old` with `new`. With no old definition (the first version), every attribute and
/// relationship of `new` is reported as added, and its description (if any) as changed from
/// nothing.
///
/// The entity type name itself is not compared: both definitions are taken to describe the same
/// entity type.
pub fn diff(old: Option<&Definition>, new: &Definition) -> SchemaDiff {
    let empty_rels = BTreeMap::new();
    let (old_description, old_attrs, old_rels) = match old {
        Some(o) => (&o.description, by_path(o), &o.relationships),
        None => (&None, BTreeMap::new(), &empty_rels),
    };

    let (attributes_added, attributes_removed, attributes_changed) = diff_maps(
        &old_attrs,
        &by_path(new),
        |o: &&Attribute, n: &&Attribute| AttrChange::between(o, n),
    );
    let (relationships_added, relationships_removed, relationships_changed) =
        diff_maps(old_rels, &new.relationships, RelChange::between);

    SchemaDiff {
        description: changed(old_description, &new.description),
        attributes_added,
        attributes_removed,
        attributes_changed,
        relationships_added,
        relationships_removed,
        relationships_changed,
    }
}

impl SchemaDiff {
    /// True when the two definitions are identical (apart from the entity type name).
    pub fn is_empty(&self) -> bool {
        self.description.is_none()
            && self.attributes_added.is_empty()
            && self.attributes_removed.is_empty()
            && self.attributes_changed.is_empty()
            && self.relationships_added.is_empty()
            && self.relationships_removed.is_empty()
            && self.relationships_changed.is_empty()
    }

    /// The diff as JSON:
    ///
    /// ```json
    /// {
    ///   "description": {"from": "old text", "to": "new text"},
    ///   "attributes": {
    ///     "added": ["depth"],
    ///     "removed": [],
    ///     "changed": {"mag": {"type": {"from": "integer", "to": "number"}}}
    ///   },
    ///   "relationships": {"added": [], "removed": [], "changed": {}}
    /// }
    /// ```
    ///
    /// `"description"` is present only when the entity description changed (`null` stands for
    /// no description). `"attributes"` and `"relationships"` are always present with all three
    /// keys, so consumers can rely on the shape. Within a change, only the changed fields appear:
    /// for attributes `type`, `description`, `required`, `default`, `merge_policy`,
    /// `source_priority` and `aliases`; for relationships `target` and `description`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some((from, to)) = &self.description {
            m.insert("description".into(), from_to(from, to));
        }
        m.insert(
            "attributes".into(),
            section(
                &self.attributes_added,
                &self.attributes_removed,
                self.attributes_changed
                    .iter()
                    .map(|(k, c)| (k.clone(), c.to_json()))
                    .collect(),
            ),
        );
        m.insert(
            "relationships".into(),
            section(
                &self.relationships_added,
                &self.relationships_removed,
                self.relationships_changed
                    .iter()
                    .map(|(k, c)| (k.clone(), c.to_json()))
                    .collect(),
            ),
        );
        Value::Object(m)
    }

    /// Attributes present in both versions whose description changed, sorted by name.
    /// Added and removed attributes are not included (see `attributes_added` and
    /// `attributes_removed`).
    pub fn description_changed_attributes(&self) -> Vec<&str> {
        self.attributes_changed
            .iter()
            .filter(|(_, c)| c.description.is_some())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Relationships present in both versions whose description changed, sorted by name.
    /// Added and removed relationships are not included.
    pub fn description_changed_relationships(&self) -> Vec<&str> {
        self.relationships_changed
            .iter()
            .filter(|(_, c)| c.description.is_some())
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// `Some((old, new))` when the two differ.
fn changed<T: PartialEq + Clone>(old: &T, new: &T) -> Option<Change<T>> {
    (old != new).then(|| (old.clone(), new.clone()))
}

fn from_to(from: impl serde::Serialize, to: impl serde::Serialize) -> Value {
    json!({"from": from, "to": to})
}

fn section(added: &[String], removed: &[String], changed: Map<String, Value>) -> Value {
    json!({"added": added, "removed": removed, "changed": Value::Object(changed)})
}

/// Added names, removed names and per-name changes between two name-ordered maps.
/// Every attribute of a definition at any depth, by the text form of its path (a member of an
/// object is `parent.member`, an array's elements `parent[]`): a nested attribute is added,
/// removed or changed on its own.
fn by_path(d: &Definition) -> BTreeMap<String, &Attribute> {
    d.walk()
        .into_iter()
        .map(|(path, a)| (path.to_string(), a))
        .collect()
}

fn diff_maps<T, C>(
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    between: impl Fn(&T, &T) -> Option<C>,
) -> (Vec<String>, Vec<String>, BTreeMap<String, C>) {
    let added = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .cloned()
        .collect();
    let removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    let changes = new
        .iter()
        .filter_map(|(k, n)| {
            let o = old.get(k)?;
            between(o, n).map(|c| (k.clone(), c))
        })
        .collect();
    (added, removed, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(doc: Value) -> Definition {
        Definition::parse(&doc).unwrap()
    }

    #[test]
    fn nested_paths() {
        let old = def(json!({"entity_type": "e", "attributes": {
            "actor": {"type": "object", "properties": {"id": {"type": "integer"}, "gone": {"type": "string"}}},
            "tags": {"type": "array"}
        }}));
        let new = def(json!({"entity_type": "e", "attributes": {
            "actor": {"type": "object", "properties": {"id": {"type": "number"}, "login": {"type": "string"}}},
            "tags": {"type": "array", "items": "string"}
        }}));
        let d = diff(Some(&old), &new);
        assert_eq!(d.attributes_added, ["actor.login", "tags[]"]);
        assert_eq!(d.attributes_removed, ["actor.gone"]);
        assert_eq!(
            d.attributes_changed.keys().collect::<Vec<_>>(),
            ["actor.id"]
        );
        assert_eq!(
            d.to_json()["attributes"]["changed"]["actor.id"]["type"],
            json!({"from": "integer", "to": "number"})
        );
    }

    fn quake_v1() -> Definition {
        def(json!({
            "entity_type": "earthquake",
            "description": "A seismic event",
            "attributes": {
                "mag": {"type": "integer", "description": "Magnitude"},
                "place": {"type": "string"},
                "time": {"type": "timestamp", "required": true}
            },
            "relationships": {
                "near": {"target": "place", "description": "closest named place"},
                "felt_by": {"target": "person"}
            }
        }))
    }

    #[test]
    fn identical_definitions_give_an_empty_diff() {
        let d = diff(Some(&quake_v1()), &quake_v1());
        assert!(d.is_empty());
        assert_eq!(d, SchemaDiff::default());
        assert_eq!(
            d.to_json(),
            json!({
                "attributes": {"added": [], "removed": [], "changed": {}},
                "relationships": {"added": [], "removed": [], "changed": {}}
            })
        );
        assert!(d.description_changed_attributes().is_empty());
        assert!(d.description_changed_relationships().is_empty());
    }

    #[test]
    fn no_old_definition_means_everything_added() {
        let d = diff(None, &quake_v1());
        assert!(!d.is_empty());
        assert_eq!(d.attributes_added, vec!["mag", "place", "time"]);
        assert_eq!(d.relationships_added, vec!["felt_by", "near"]);
        assert!(d.attributes_removed.is_empty() && d.attributes_changed.is_empty());
        assert!(d.relationships_removed.is_empty() && d.relationships_changed.is_empty());
        assert_eq!(
            d.description,
            Some((None, Some("A seismic event".to_string())))
        );
        // Added fields are not "description changed".
        assert!(d.description_changed_attributes().is_empty());

        let bare = def(json!({"entity_type": "e"}));
        let d = diff(None, &bare);
        assert!(d.is_empty());
    }

    #[test]
    fn added_removed_and_changed_attributes() {
        let new = def(json!({
            "entity_type": "earthquake",
            "description": "A seismic event",
            "attributes": {
                "mag": {"type": "number", "description": "Moment magnitude", "merge_policy": "max"},
                "time": {"type": "timestamp", "required": true, "aliases": ["origin_time"]},
                "depth": {"type": "number"},
                "alert": {"type": "string", "default": "green"}
            },
            "relationships": {
                "near": {"target": "place", "description": "closest named place"},
                "felt_by": {"target": "person"}
            }
        }));
        let d = diff(Some(&quake_v1()), &new);
        assert_eq!(d.description, None);
        assert_eq!(d.attributes_added, vec!["alert", "depth"]);
        assert_eq!(d.attributes_removed, vec!["place"]);
        assert_eq!(
            d.attributes_changed.keys().collect::<Vec<_>>(),
            vec!["mag", "time"]
        );
        let mag = &d.attributes_changed["mag"];
        assert_eq!(mag.attr_type, Some((AttrType::Integer, AttrType::Number)));
        assert_eq!(
            mag.description,
            Some((
                Some("Magnitude".to_string()),
                Some("Moment magnitude".to_string())
            ))
        );
        assert_eq!(
            mag.merge_policy,
            Some((MergePolicy::LastWriteWins, MergePolicy::Max))
        );
        assert_eq!(mag.required, None);
        assert_eq!(mag.default, None);
        let time = &d.attributes_changed["time"];
        assert_eq!(
            time.aliases,
            Some((vec![], vec!["origin_time".to_string()]))
        );
        assert_eq!(time.attr_type, None);
        assert!(d.relationships_added.is_empty());
        assert!(d.relationships_removed.is_empty());
        assert!(d.relationships_changed.is_empty());
        assert_eq!(d.description_changed_attributes(), vec!["mag"]);
    }

    #[test]
    fn required_default_and_source_priority_changes() {
        let old = def(json!({
            "entity_type": "e",
            "attributes": {
                "a": {"type": "string"},
                "b": {"type": "integer", "default": 1},
                "c": {"type": "string", "merge_policy": "source_priority", "source_priority": ["x", "y"]}
            }
        }));
        let new = def(json!({
            "entity_type": "e",
            "attributes": {
                "a": {"type": "string", "required": true},
                "b": {"type": "integer"},
                "c": {"type": "string", "merge_policy": "source_priority", "source_priority": ["y", "x"]}
            }
        }));
        let d = diff(Some(&old), &new);
        assert_eq!(d.attributes_changed["a"].required, Some((false, true)));
        assert_eq!(
            d.attributes_changed["b"].default,
            Some((Some(json!(1)), None))
        );
        assert_eq!(
            d.attributes_changed["c"].source_priority,
            Some((
                vec!["x".to_string(), "y".to_string()],
                vec!["y".to_string(), "x".to_string()]
            ))
        );
        let j = d.to_json();
        assert_eq!(
            j["attributes"]["changed"],
            json!({
                "a": {"required": {"from": false, "to": true}},
                "b": {"default": {"from": 1, "to": null}},
                "c": {"source_priority": {"from": ["x", "y"], "to": ["y", "x"]}}
            })
        );
    }

    #[test]
    fn added_removed_and_changed_relationships() {
        let new = def(json!({
            "entity_type": "earthquake",
            "description": "A seismic event",
            "attributes": {
                "mag": {"type": "integer", "description": "Magnitude"},
                "place": {"type": "string"},
                "time": {"type": "timestamp", "required": true}
            },
            "relationships": {
                "near": {"target": "city", "description": "closest city"},
                "felt_by": {"target": "person", "description": "people who reported it"},
                "caused": {"target": "tsunami"}
            }
        }));
        let d = diff(Some(&quake_v1()), &new);
        assert!(d.attributes_added.is_empty());
        assert!(d.attributes_removed.is_empty());
        assert!(d.attributes_changed.is_empty());
        assert_eq!(d.relationships_added, vec!["caused"]);
        assert!(d.relationships_removed.is_empty());
        let near = &d.relationships_changed["near"];
        assert_eq!(near.target, Some(("place".to_string(), "city".to_string())));
        assert_eq!(
            near.description,
            Some((
                Some("closest named place".to_string()),
                Some("closest city".to_string())
            ))
        );
        let felt = &d.relationships_changed["felt_by"];
        assert_eq!(felt.target, None);
        assert_eq!(
            felt.description,
            Some((None, Some("people who reported it".to_string())))
        );
        assert_eq!(
            d.description_changed_relationships(),
            vec!["felt_by", "near"]
        );

        let d = diff(Some(&new), &quake_v1());
        assert_eq!(d.relationships_removed, vec!["caused"]);
        assert!(d.relationships_added.is_empty());
    }

    #[test]
    fn entity_description_changes() {
        let mut new = quake_v1();
        new.description = Some("An earthquake".into());
        let d = diff(Some(&quake_v1()), &new);
        assert_eq!(
            d.description,
            Some((
                Some("A seismic event".to_string()),
                Some("An earthquake".to_string())
            ))
        );
        assert!(!d.is_empty());
        assert_eq!(
            d.to_json()["description"],
            json!({"from": "A seismic event", "to": "An earthquake"})
        );

        new.description = None;
        let d = diff(Some(&quake_v1()), &new);
        assert_eq!(
            d.to_json()["description"],
            json!({"from": "A seismic event", "to": null})
        );
    }

    #[test]
    fn json_shape() {
        let old = def(json!({
            "entity_type": "earthquake",
            "attributes": {
                "mag": {"type": "integer"},
                "place": {"type": "string"}
            },
            "relationships": {"near": {"target": "place"}}
        }));
        let new = def(json!({
            "entity_type": "earthquake",
            "description": "A seismic event",
            "attributes": {
                "mag": {"type": "number", "description": "Magnitude"},
                "depth": {"type": "number"}
            },
            "relationships": {"near": {"target": "city"}, "felt_by": {"target": "person"}}
        }));
        let j = diff(Some(&old), &new).to_json();
        assert_eq!(
            j,
            json!({
                "description": {"from": null, "to": "A seismic event"},
                "attributes": {
                    "added": ["depth"],
                    "removed": ["place"],
                    "changed": {
                        "mag": {
                            "type": {"from": "integer", "to": "number"},
                            "description": {"from": null, "to": "Magnitude"}
                        }
                    }
                },
                "relationships": {
                    "added": ["felt_by"],
                    "removed": [],
                    "changed": {"near": {"target": {"from": "place", "to": "city"}}}
                }
            })
        );
        // The top-level keys come in a stable order.
        let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["description", "attributes", "relationships"]);
    }
}
