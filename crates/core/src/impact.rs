//! Schema changes and their impact on stored entities.
//!
//! A [`Change`] is one JSON document with a `"kind"` key and the kind's fields:
//!
//! | kind                               | fields                                                 |
//! |------------------------------------|--------------------------------------------------------|
//! | `entity_type_description_changed`  | `entity_type`, `description`                           |
//! | `attribute_description_changed`    | `entity_type`, `attribute`, `description`              |
//! | `attribute_deleted`                | `entity_type`, `attribute`                             |
//! | `attribute_added`                  | `entity_type`, `attribute`, `type`, `description`?     |
//! | `relationship_description_changed` | `entity_type`, `relationship`, `description`           |
//! | `relationship_deleted`             | `entity_type`, `relationship`                          |
//! | `template_applied`                 | `template`, `entity_types` (non-empty array)           |
//! | `embedding_function_changed`       | `entity_types` (non-empty array)                       |
//!
//! For the three `*_description_changed` kinds, `description` is required and is either a
//! string (the new description) or `null` (the description is removed). For `attribute_added`
//! it is optional. Entity type, attribute and relationship names must be valid schema names
//! ([`crate::ident::is_valid_name`]); a template name must be a non-empty string. Repeated
//! entity types in `entity_types` are kept once, in order of first appearance. Unknown keys
//! are refused.
//!
//! [`impact`] says which entities of the affected types need re-embedding and with which
//! priority; [`apply`] computes the definition after the change.

use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::named::named_enum;
use crate::schema::{AttrType, Attribute, Definition, MergePolicy};
use crate::validate::{check_name, optional_string, reject_unknown, required_name};

/// Every change kind, as spelled in the `"kind"` key.
pub const KINDS: [&str; 8] = [
    "entity_type_description_changed",
    "attribute_description_changed",
    "attribute_deleted",
    "attribute_added",
    "relationship_description_changed",
    "relationship_deleted",
    "template_applied",
    "embedding_function_changed",
];

/// One schema change. See the module documentation for the JSON form.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    EntityTypeDescriptionChanged {
        entity_type: String,
        /// The new description; `None` removes it.
        description: Option<String>,
    },
    AttributeDescriptionChanged {
        entity_type: String,
        attribute: String,
        /// The new description; `None` removes it.
        description: Option<String>,
    },
    AttributeDeleted {
        entity_type: String,
        attribute: String,
    },
    AttributeAdded {
        entity_type: String,
        attribute: String,
        attr_type: AttrType,
        description: Option<String>,
    },
    RelationshipDescriptionChanged {
        entity_type: String,
        relationship: String,
        /// The new description; `None` removes it.
        description: Option<String>,
    },
    RelationshipDeleted {
        entity_type: String,
        relationship: String,
    },
    /// A named template touched several entity types; the definitions are unchanged.
    TemplateApplied {
        template: String,
        entity_types: Vec<String>,
    },
    /// The embedding function changed: everything of these types must be embedded again.
    EmbeddingFunctionChanged { entity_types: Vec<String> },
}

named_enum! {
    /// How urgently affected entities should be re-embedded.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Priority {
        High = "high",
        Medium = "medium",
        Low = "low",
    }
}

impl Priority {
    /// The queue rank: higher is more urgent (High = 3, Medium = 2, Low = 1).
    pub fn rank(self) -> i32 {
        match self {
            Priority::High => 3,
            Priority::Medium => 2,
            Priority::Low => 1,
        }
    }
}

/// Which entities of each type named by [`Change::entity_types`] a change affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    /// Every entity of the type.
    AllOfType,
    /// Entities whose snapshot has a non-null value for this attribute.
    NonNullAttribute(String),
    /// Entities whose snapshot has a non-null value for this relationship. For a deleted
    /// relationship, evaluate this on the snapshots as they were before the deletion.
    HasRelationship(String),
    /// No entity.
    None,
}

impl Affected {
    /// Whether an entity with this snapshot is affected.
    pub fn matches(&self, snapshot: &Map<String, Value>) -> bool {
        match self {
            Affected::AllOfType => true,
            Affected::NonNullAttribute(name) | Affected::HasRelationship(name) => {
                snapshot.get(name).is_some_and(|v| !v.is_null())
            }
            Affected::None => false,
        }
    }
}

/// The pointer of a member of the change document.
fn member(key: &str) -> String {
    format!("/{key}")
}

fn arg_err(message: String) -> CoreError {
    CoreError::InvalidArgument {
        what: "change",
        message,
    }
}

/// `description` for the `*_description_changed` kinds: the key is required, the value a string
/// or `null`.
fn required_description(obj: &Map<String, Value>) -> Result<Option<String>, CoreError> {
    match obj.get("description") {
        None => Err(CoreError::def(
            "/description",
            "is required (a string, or null to remove the description)",
        )),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CoreError::def("/description", "must be a string or null")),
    }
}

fn entity_type_list(obj: &Map<String, Value>) -> Result<Vec<String>, CoreError> {
    let items = match obj.get("entity_types") {
        None | Some(Value::Null) => return Err(CoreError::def("/entity_types", "is required")),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(CoreError::def(
                "/entity_types",
                "must be an array of entity type names",
            ))
        }
    };
    if items.is_empty() {
        return Err(CoreError::def(
            "/entity_types",
            "must name at least one entity type",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let path = format!("/entity_types/{i}");
        let Value::String(s) = v else {
            return Err(CoreError::def(path, "must be a string"));
        };
        check_name(&path, s)?;
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

impl Change {
    /// Parses and validates a change document. Errors are [`CoreError::InvalidDefinition`]
    /// naming the offending JSON pointer path.
    pub fn parse(v: &Value) -> Result<Change, CoreError> {
        let obj = v.as_object().ok_or_else(|| {
            CoreError::def("/", "a change must be a JSON object with a \"kind\" key")
        })?;
        let kind = match obj.get("kind") {
            None | Some(Value::Null) => {
                return Err(CoreError::def(
                    "/kind",
                    format!("is required; expected one of {}", KINDS.join(", ")),
                ))
            }
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(CoreError::def("/kind", "must be a string")),
        };
        let change = match kind {
            "entity_type_description_changed" => {
                reject_unknown(obj, &["kind", "entity_type", "description"], member)?;
                Change::EntityTypeDescriptionChanged {
                    entity_type: required_name(obj, "entity_type", "")?,
                    description: required_description(obj)?,
                }
            }
            "attribute_description_changed" => {
                reject_unknown(
                    obj,
                    &["kind", "entity_type", "attribute", "description"],
                    member,
                )?;
                Change::AttributeDescriptionChanged {
                    entity_type: required_name(obj, "entity_type", "")?,
                    attribute: required_name(obj, "attribute", "")?,
                    description: required_description(obj)?,
                }
            }
            "attribute_deleted" => {
                reject_unknown(obj, &["kind", "entity_type", "attribute"], member)?;
                Change::AttributeDeleted {
                    entity_type: required_name(obj, "entity_type", "")?,
                    attribute: required_name(obj, "attribute", "")?,
                }
            }
            "attribute_added" => {
                reject_unknown(
                    obj,
                    &["kind", "entity_type", "attribute", "type", "description"],
                    member,
                )?;
                let entity_type = required_name(obj, "entity_type", "")?;
                let attribute = required_name(obj, "attribute", "")?;
                let attr_type = match obj.get("type") {
                    None | Some(Value::Null) => return Err(CoreError::def("/type", "is required")),
                    Some(Value::String(s)) => AttrType::parse(s).ok_or_else(|| {
                        CoreError::def(
                            "/type",
                            format!(
                                "unknown type \"{s}\"; expected one of {}",
                                AttrType::ALL.map(|t| t.as_str()).join(", ")
                            ),
                        )
                    })?,
                    Some(_) => return Err(CoreError::def("/type", "must be a string")),
                };
                Change::AttributeAdded {
                    entity_type,
                    attribute,
                    attr_type,
                    description: optional_string(obj, "description", "")?,
                }
            }
            "relationship_description_changed" => {
                reject_unknown(
                    obj,
                    &["kind", "entity_type", "relationship", "description"],
                    member,
                )?;
                Change::RelationshipDescriptionChanged {
                    entity_type: required_name(obj, "entity_type", "")?,
                    relationship: required_name(obj, "relationship", "")?,
                    description: required_description(obj)?,
                }
            }
            "relationship_deleted" => {
                reject_unknown(obj, &["kind", "entity_type", "relationship"], member)?;
                Change::RelationshipDeleted {
                    entity_type: required_name(obj, "entity_type", "")?,
                    relationship: required_name(obj, "relationship", "")?,
                }
            }
            "template_applied" => {
                reject_unknown(obj, &["kind", "template", "entity_types"], member)?;
                let template = match obj.get("template") {
                    None | Some(Value::Null) => {
                        return Err(CoreError::def("/template", "is required"))
                    }
                    Some(Value::String(s)) if s.is_empty() => {
                        return Err(CoreError::def("/template", "must not be empty"))
                    }
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err(CoreError::def("/template", "must be a string")),
                };
                Change::TemplateApplied {
                    template,
                    entity_types: entity_type_list(obj)?,
                }
            }
            "embedding_function_changed" => {
                reject_unknown(obj, &["kind", "entity_types"], member)?;
                Change::EmbeddingFunctionChanged {
                    entity_types: entity_type_list(obj)?,
                }
            }
            other => {
                return Err(CoreError::def(
                    "/kind",
                    format!(
                        "unknown change kind \"{other}\"; expected one of {}",
                        KINDS.join(", ")
                    ),
                ))
            }
        };
        Ok(change)
    }

    /// The `"kind"` of this change.
    pub fn kind_str(&self) -> &'static str {
        match self {
            Change::EntityTypeDescriptionChanged { .. } => KINDS[0],
            Change::AttributeDescriptionChanged { .. } => KINDS[1],
            Change::AttributeDeleted { .. } => KINDS[2],
            Change::AttributeAdded { .. } => KINDS[3],
            Change::RelationshipDescriptionChanged { .. } => KINDS[4],
            Change::RelationshipDeleted { .. } => KINDS[5],
            Change::TemplateApplied { .. } => KINDS[6],
            Change::EmbeddingFunctionChanged { .. } => KINDS[7],
        }
    }

    /// The entity types this change concerns: one for the definition changes, the listed ones
    /// for `template_applied` and `embedding_function_changed`.
    pub fn entity_types(&self) -> Vec<String> {
        match self {
            Change::EntityTypeDescriptionChanged { entity_type, .. }
            | Change::AttributeDescriptionChanged { entity_type, .. }
            | Change::AttributeDeleted { entity_type, .. }
            | Change::AttributeAdded { entity_type, .. }
            | Change::RelationshipDescriptionChanged { entity_type, .. }
            | Change::RelationshipDeleted { entity_type, .. } => vec![entity_type.clone()],
            Change::TemplateApplied { entity_types, .. }
            | Change::EmbeddingFunctionChanged { entity_types } => entity_types.clone(),
        }
    }

    /// The change as JSON, `"kind"` first; [`Change::parse`] reads it back unchanged.
    /// A removed description is written as `"description": null`; an `attribute_added` without
    /// a description omits the key.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), Value::String(self.kind_str().into()));
        let s = |s: &str| Value::String(s.to_owned());
        let opt = |d: &Option<String>| d.clone().map_or(Value::Null, Value::String);
        match self {
            Change::EntityTypeDescriptionChanged {
                entity_type,
                description,
            } => {
                m.insert("entity_type".into(), s(entity_type));
                m.insert("description".into(), opt(description));
            }
            Change::AttributeDescriptionChanged {
                entity_type,
                attribute,
                description,
            } => {
                m.insert("entity_type".into(), s(entity_type));
                m.insert("attribute".into(), s(attribute));
                m.insert("description".into(), opt(description));
            }
            Change::AttributeDeleted {
                entity_type,
                attribute,
            } => {
                m.insert("entity_type".into(), s(entity_type));
                m.insert("attribute".into(), s(attribute));
            }
            Change::AttributeAdded {
                entity_type,
                attribute,
                attr_type,
                description,
            } => {
                m.insert("entity_type".into(), s(entity_type));
                m.insert("attribute".into(), s(attribute));
                m.insert("type".into(), s(attr_type.as_str()));
                if let Some(d) = description {
                    m.insert("description".into(), s(d));
                }
            }
            Change::RelationshipDescriptionChanged {
                entity_type,
                relationship,
                description,
            } => {
                m.insert("entity_type".into(), s(entity_type));
                m.insert("relationship".into(), s(relationship));
                m.insert("description".into(), opt(description));
            }
            Change::RelationshipDeleted {
                entity_type,
                relationship,
            } => {
                m.insert("entity_type".into(), s(entity_type));
                m.insert("relationship".into(), s(relationship));
            }
            Change::TemplateApplied {
                template,
                entity_types,
            } => {
                m.insert("template".into(), s(template));
                m.insert("entity_types".into(), entity_types.clone().into());
            }
            Change::EmbeddingFunctionChanged { entity_types } => {
                m.insert("entity_types".into(), entity_types.clone().into());
            }
        }
        Value::Object(m)
    }
}

/// Which entities of the change's types ([`Change::entity_types`]) need re-embedding, and how
/// urgently. `None` as the priority means nothing needs re-embedding.
///
/// | change                           | affected                               | priority |
/// |----------------------------------|----------------------------------------|----------|
/// | entity type description changed  | all of the type                        | high     |
/// | attribute description changed    | non-null value for the attribute       | medium   |
/// | attribute deleted                | all of the type                        | medium   |
/// | attribute added                  | none                                   | —        |
/// | relationship description changed | having the relationship                | medium   |
/// | relationship deleted             | having had the relationship            | low      |
/// | template applied                 | all of each of the template's types    | high     |
/// | embedding function changed       | all of each of the types               | high     |
pub fn impact(change: &Change) -> (Affected, Option<Priority>) {
    match change {
        Change::EntityTypeDescriptionChanged { .. } => (Affected::AllOfType, Some(Priority::High)),
        Change::AttributeDescriptionChanged { attribute, .. } => (
            Affected::NonNullAttribute(attribute.clone()),
            Some(Priority::Medium),
        ),
        Change::AttributeDeleted { .. } => (Affected::AllOfType, Some(Priority::Medium)),
        Change::AttributeAdded { .. } => (Affected::None, None),
        Change::RelationshipDescriptionChanged { relationship, .. } => (
            Affected::HasRelationship(relationship.clone()),
            Some(Priority::Medium),
        ),
        Change::RelationshipDeleted { relationship, .. } => (
            Affected::HasRelationship(relationship.clone()),
            Some(Priority::Low),
        ),
        Change::TemplateApplied { .. } | Change::EmbeddingFunctionChanged { .. } => {
            (Affected::AllOfType, Some(Priority::High))
        }
    }
}

/// The definition after `change`, or `None` when the change does not alter definitions
/// (`template_applied`, `embedding_function_changed`).
///
/// Fails with [`CoreError::InvalidArgument`] when `def` is not of (one of) the change's entity
/// types, when a changed or deleted attribute or relationship does not exist, or when an added
/// attribute's name is already taken by an attribute, an attribute alias or a relationship.
pub fn apply(def: &Definition, change: &Change) -> Result<Option<Definition>, CoreError> {
    let types = change.entity_types();
    if !types.contains(&def.entity_type) {
        return Err(arg_err(format!(
            "the change \"{}\" concerns {}, not entity type \"{}\"",
            change.kind_str(),
            types
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", "),
            def.entity_type
        )));
    }
    let et = &def.entity_type;
    let no_attr = |a: &str| arg_err(format!("entity type \"{et}\" has no attribute \"{a}\""));
    let no_rel = |r: &str| arg_err(format!("entity type \"{et}\" has no relationship \"{r}\""));
    let mut out = def.clone();
    match change {
        Change::EntityTypeDescriptionChanged { description, .. } => {
            out.description = description.clone();
        }
        Change::AttributeDescriptionChanged {
            attribute,
            description,
            ..
        } => {
            let a = out
                .attributes
                .get_mut(attribute)
                .ok_or_else(|| no_attr(attribute))?;
            a.description = description.clone();
        }
        Change::AttributeDeleted { attribute, .. } => {
            out.attributes
                .remove(attribute)
                .ok_or_else(|| no_attr(attribute))?;
        }
        Change::AttributeAdded {
            attribute,
            attr_type,
            description,
            ..
        } => {
            if out.attributes.contains_key(attribute) {
                return Err(arg_err(format!(
                    "entity type \"{et}\" already has an attribute \"{attribute}\""
                )));
            }
            if out.relationships.contains_key(attribute) {
                return Err(arg_err(format!(
                    "entity type \"{et}\" already has a relationship \"{attribute}\""
                )));
            }
            if let Some((owner, _)) = out
                .attributes
                .iter()
                .find(|(_, a)| a.aliases.contains(attribute))
            {
                return Err(arg_err(format!(
                    "\"{attribute}\" is an alias of attribute \"{owner}\" of entity type \"{et}\""
                )));
            }
            out.attributes.insert(
                attribute.clone(),
                Attribute {
                    attr_type: *attr_type,
                    description: description.clone(),
                    required: false,
                    default: None,
                    merge_policy: MergePolicy::LastWriteWins,
                    source_priority: Vec::new(),
                    aliases: Vec::new(),
                },
            );
        }
        Change::RelationshipDescriptionChanged {
            relationship,
            description,
            ..
        } => {
            let r = out
                .relationships
                .get_mut(relationship)
                .ok_or_else(|| no_rel(relationship))?;
            r.description = description.clone();
        }
        Change::RelationshipDeleted { relationship, .. } => {
            out.relationships
                .remove(relationship)
                .ok_or_else(|| no_rel(relationship))?;
        }
        Change::TemplateApplied { .. } | Change::EmbeddingFunctionChanged { .. } => {
            return Ok(None)
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quake() -> Definition {
        Definition::parse(&json!({
            "entity_type": "earthquake",
            "description": "A seismic event",
            "attributes": {
                "mag": {"type": "number", "description": "Magnitude", "aliases": ["magnitude"]},
                "place": {"type": "string"}
            },
            "relationships": {"near": {"target": "place", "description": "closest named place"}}
        }))
        .unwrap()
    }

    fn parse(v: Value) -> Change {
        Change::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn all_kinds() -> Vec<(Value, Change)> {
        vec![
            (
                json!({"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "Shaking"}),
                Change::EntityTypeDescriptionChanged {
                    entity_type: "earthquake".into(),
                    description: Some("Shaking".into()),
                },
            ),
            (
                json!({"kind": "attribute_description_changed", "entity_type": "earthquake", "attribute": "mag", "description": null}),
                Change::AttributeDescriptionChanged {
                    entity_type: "earthquake".into(),
                    attribute: "mag".into(),
                    description: None,
                },
            ),
            (
                json!({"kind": "attribute_deleted", "entity_type": "earthquake", "attribute": "place"}),
                Change::AttributeDeleted {
                    entity_type: "earthquake".into(),
                    attribute: "place".into(),
                },
            ),
            (
                json!({"kind": "attribute_added", "entity_type": "earthquake", "attribute": "depth", "type": "number", "description": "Depth in km"}),
                Change::AttributeAdded {
                    entity_type: "earthquake".into(),
                    attribute: "depth".into(),
                    attr_type: AttrType::Number,
                    description: Some("Depth in km".into()),
                },
            ),
            (
                json!({"kind": "attribute_added", "entity_type": "earthquake", "attribute": "felt", "type": "integer"}),
                Change::AttributeAdded {
                    entity_type: "earthquake".into(),
                    attribute: "felt".into(),
                    attr_type: AttrType::Integer,
                    description: None,
                },
            ),
            (
                json!({"kind": "relationship_description_changed", "entity_type": "earthquake", "relationship": "near", "description": "Nearest"}),
                Change::RelationshipDescriptionChanged {
                    entity_type: "earthquake".into(),
                    relationship: "near".into(),
                    description: Some("Nearest".into()),
                },
            ),
            (
                json!({"kind": "relationship_deleted", "entity_type": "earthquake", "relationship": "near"}),
                Change::RelationshipDeleted {
                    entity_type: "earthquake".into(),
                    relationship: "near".into(),
                },
            ),
            (
                json!({"kind": "template_applied", "template": "geo.point v2", "entity_types": ["earthquake", "place"]}),
                Change::TemplateApplied {
                    template: "geo.point v2".into(),
                    entity_types: vec!["earthquake".into(), "place".into()],
                },
            ),
            (
                json!({"kind": "embedding_function_changed", "entity_types": ["place", "earthquake", "place"]}),
                Change::EmbeddingFunctionChanged {
                    entity_types: vec!["place".into(), "earthquake".into()],
                },
            ),
        ]
    }

    #[test]
    fn parses_every_kind_and_round_trips() {
        let mut kinds_seen = Vec::new();
        for (doc, want) in all_kinds() {
            let got = parse(doc.clone());
            assert_eq!(got, want, "{doc}");
            assert_eq!(got.kind_str(), doc["kind"].as_str().unwrap());
            assert_eq!(Change::parse(&got.to_json()).unwrap(), got);
            kinds_seen.push(got.kind_str());
        }
        for k in KINDS {
            assert!(kinds_seen.contains(&k), "{k} not tested");
        }
        // to_json writes kind first and the documented keys.
        let j = all_kinds()[0].1.to_json();
        assert_eq!(
            j.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["kind", "entity_type", "description"]
        );
        assert_eq!(
            all_kinds()[1].1.to_json(),
            json!({"kind": "attribute_description_changed", "entity_type": "earthquake", "attribute": "mag", "description": null})
        );
        assert_eq!(
            all_kinds()[4].1.to_json(),
            json!({"kind": "attribute_added", "entity_type": "earthquake", "attribute": "felt", "type": "integer"})
        );
    }

    #[test]
    fn entity_types_of_changes() {
        let kinds = all_kinds();
        for (_, c) in &kinds[..7] {
            assert_eq!(c.entity_types(), vec!["earthquake".to_string()]);
        }
        assert_eq!(kinds[7].1.entity_types(), ["earthquake", "place"]);
        assert_eq!(kinds[8].1.entity_types(), ["place", "earthquake"]);
    }

    #[test]
    fn parse_errors_name_the_path() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([]), "/", "JSON object"),
            (json!({"entity_type": "e"}), "/kind", "attribute_deleted"),
            (json!({"kind": 3}), "/kind", "string"),
            (
                json!({"kind": "attribute_renamed", "entity_type": "e"}),
                "/kind",
                "entity_type_description_changed, attribute_description_changed",
            ),
            (
                json!({"kind": "attribute_deleted", "entity_type": "e"}),
                "/attribute",
                "is required",
            ),
            (
                json!({"kind": "attribute_deleted", "attribute": "a"}),
                "/entity_type",
                "is required",
            ),
            (
                json!({"kind": "attribute_deleted", "entity_type": "e", "attribute": "a b"}),
                "/attribute",
                "must start with a letter",
            ),
            (
                json!({"kind": "attribute_deleted", "entity_type": "", "attribute": "a"}),
                "/entity_type",
                "must not be empty",
            ),
            (
                json!({"kind": "attribute_deleted", "entity_type": "e", "attribute": 1}),
                "/attribute",
                "must be a string",
            ),
            (
                json!({"kind": "attribute_deleted", "entity_type": "e", "attribute": "a", "force": true}),
                "/force",
                "unknown key",
            ),
            (
                json!({"kind": "attribute_description_changed", "entity_type": "e", "attribute": "a"}),
                "/description",
                "is required",
            ),
            (
                json!({"kind": "entity_type_description_changed", "entity_type": "e", "description": 5}),
                "/description",
                "string or null",
            ),
            (
                json!({"kind": "attribute_added", "entity_type": "e", "attribute": "a"}),
                "/type",
                "is required",
            ),
            (
                json!({"kind": "attribute_added", "entity_type": "e", "attribute": "a", "type": "float"}),
                "/type",
                "expected one of string, number",
            ),
            (
                json!({"kind": "attribute_added", "entity_type": "e", "attribute": "a", "type": "string", "description": []}),
                "/description",
                "must be a string",
            ),
            (
                json!({"kind": "attribute_added", "entity_type": "e", "attribute": "a", "type": "string", "required": true}),
                "/required",
                "unknown key",
            ),
            (
                json!({"kind": "relationship_deleted", "entity_type": "e"}),
                "/relationship",
                "is required",
            ),
            (
                json!({"kind": "relationship_description_changed", "entity_type": "e", "relationship": "r-1", "description": "x"}),
                "/relationship",
                "must start",
            ),
            (
                json!({"kind": "template_applied", "entity_types": ["e"]}),
                "/template",
                "is required",
            ),
            (
                json!({"kind": "template_applied", "template": "", "entity_types": ["e"]}),
                "/template",
                "must not be empty",
            ),
            (
                json!({"kind": "template_applied", "template": "t"}),
                "/entity_types",
                "is required",
            ),
            (
                json!({"kind": "embedding_function_changed", "entity_types": []}),
                "/entity_types",
                "at least one",
            ),
            (
                json!({"kind": "embedding_function_changed", "entity_types": "e"}),
                "/entity_types",
                "must be an array",
            ),
            (
                json!({"kind": "embedding_function_changed", "entity_types": ["e", 2]}),
                "/entity_types/1",
                "must be a string",
            ),
            (
                json!({"kind": "embedding_function_changed", "entity_types": ["e", "1x"]}),
                "/entity_types/1",
                "must start",
            ),
            (
                json!({"kind": "embedding_function_changed", "entity_types": ["e"], "entity_type": "e"}),
                "/entity_type",
                "unknown key; expected one of kind, entity_types",
            ),
        ];
        for (doc, path, needle) in cases {
            match Change::parse(&doc) {
                Err(e @ CoreError::InvalidDefinition { .. }) => {
                    let CoreError::InvalidDefinition { path: p, message } = &e else {
                        unreachable!()
                    };
                    assert_eq!(p, path, "{doc}: {e}");
                    assert!(message.contains(needle), "{doc}: {message}");
                    assert_eq!(e.sqlstate().code(), "22023");
                }
                other => panic!("{doc}: expected an error at {path}, got {other:?}"),
            }
        }
    }

    #[test]
    fn priorities() {
        assert_eq!(Priority::High.rank(), 3);
        assert_eq!(Priority::Medium.rank(), 2);
        assert_eq!(Priority::Low.rank(), 1);
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::High.as_str(), "high");
        assert_eq!(Priority::parse("urgent"), None);
    }

    #[test]
    fn impact_table() {
        let k = all_kinds();
        let want = [
            (Affected::AllOfType, Some(Priority::High)),
            (
                Affected::NonNullAttribute("mag".into()),
                Some(Priority::Medium),
            ),
            (Affected::AllOfType, Some(Priority::Medium)),
            (Affected::None, None),
            (Affected::None, None),
            (
                Affected::HasRelationship("near".into()),
                Some(Priority::Medium),
            ),
            (
                Affected::HasRelationship("near".into()),
                Some(Priority::Low),
            ),
            (Affected::AllOfType, Some(Priority::High)),
            (Affected::AllOfType, Some(Priority::High)),
        ];
        assert_eq!(k.len(), want.len());
        for ((_, change), want) in k.iter().zip(want) {
            assert_eq!(impact(change), want, "{}", change.kind_str());
        }
    }

    #[test]
    fn affected_matches() {
        let snap = json!({"mag": 2.5, "place": null, "near": "castaic"});
        let snap = snap.as_object().unwrap();
        assert!(Affected::AllOfType.matches(snap));
        assert!(!Affected::None.matches(snap));
        assert!(Affected::NonNullAttribute("mag".into()).matches(snap));
        assert!(!Affected::NonNullAttribute("place".into()).matches(snap));
        assert!(!Affected::NonNullAttribute("depth".into()).matches(snap));
        assert!(Affected::HasRelationship("near".into()).matches(snap));
        assert!(!Affected::HasRelationship("region".into()).matches(snap));
    }

    #[test]
    fn apply_each_kind() {
        let d = quake();
        let k = all_kinds();

        let out = apply(&d, &k[0].1).unwrap().unwrap();
        assert_eq!(out.description.as_deref(), Some("Shaking"));
        assert_eq!(out.attributes, d.attributes);

        let out = apply(&d, &k[1].1).unwrap().unwrap();
        assert_eq!(out.attributes["mag"].description, None);
        assert_eq!(out.attributes["mag"].aliases, ["magnitude"]);

        let out = apply(&d, &k[2].1).unwrap().unwrap();
        assert!(!out.attributes.contains_key("place"));
        assert!(out.attributes.contains_key("mag"));

        let out = apply(&d, &k[3].1).unwrap().unwrap();
        let depth = &out.attributes["depth"];
        assert_eq!(depth.attr_type, AttrType::Number);
        assert_eq!(depth.description.as_deref(), Some("Depth in km"));
        assert!(!depth.required);
        // The result is a valid definition.
        assert_eq!(Definition::parse(&out.to_json()).unwrap(), out);

        let out = apply(&d, &k[5].1).unwrap().unwrap();
        assert_eq!(
            out.relationships["near"].description.as_deref(),
            Some("Nearest")
        );
        assert_eq!(out.relationships["near"].target, "place");

        let out = apply(&d, &k[6].1).unwrap().unwrap();
        assert!(out.relationships.is_empty());

        assert_eq!(apply(&d, &k[7].1).unwrap(), None);
        assert_eq!(apply(&d, &k[8].1).unwrap(), None);
        // The input is untouched.
        assert_eq!(d, quake());
    }

    #[test]
    fn apply_errors() {
        let d = quake();
        let bad = [
            json!({"kind": "entity_type_description_changed", "entity_type": "place", "description": "x"}),
            json!({"kind": "attribute_description_changed", "entity_type": "earthquake", "attribute": "depth", "description": "x"}),
            json!({"kind": "attribute_description_changed", "entity_type": "earthquake", "attribute": "near", "description": "x"}),
            json!({"kind": "attribute_deleted", "entity_type": "earthquake", "attribute": "depth"}),
            json!({"kind": "attribute_added", "entity_type": "earthquake", "attribute": "mag", "type": "number"}),
            json!({"kind": "attribute_added", "entity_type": "earthquake", "attribute": "near", "type": "string"}),
            json!({"kind": "attribute_added", "entity_type": "earthquake", "attribute": "magnitude", "type": "number"}),
            json!({"kind": "relationship_description_changed", "entity_type": "earthquake", "relationship": "mag", "description": "x"}),
            json!({"kind": "relationship_deleted", "entity_type": "earthquake", "relationship": "region"}),
            json!({"kind": "attribute_deleted", "entity_type": "place", "attribute": "mag"}),
            json!({"kind": "template_applied", "template": "t", "entity_types": ["place"]}),
            json!({"kind": "embedding_function_changed", "entity_types": ["place", "region"]}),
        ];
        for doc in bad {
            let change = parse(doc.clone());
            match apply(&d, &change) {
                Err(e @ CoreError::InvalidArgument { .. }) => {
                    assert_eq!(e.sqlstate().code(), "22023");
                    assert!(e.to_string().starts_with("invalid change: "), "{e}");
                }
                other => panic!("{doc}: expected an error, got {other:?}"),
            }
        }
        let err = apply(&d, &parse(bad_attr())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid change: entity type \"earthquake\" has no attribute \"depth\""
        );
    }

    fn bad_attr() -> Value {
        json!({"kind": "attribute_deleted", "entity_type": "earthquake", "attribute": "depth"})
    }
}
