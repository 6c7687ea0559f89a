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

mod change;

use serde_json::{Map, Value};

pub use change::{Change, KINDS};

use crate::error::CoreError;
use crate::named::named_enum;
use crate::schema::{Attribute, Definition};

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

fn arg_err(message: String) -> CoreError {
    CoreError::InvalidArgument {
        what: "change",
        message,
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
                    description: description.clone(),
                    ..Attribute::of(*attr_type)
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
    use super::change::tests::{all_kinds, bad_attr, parse};
    use super::*;
    use crate::schema::AttrType;
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
}
