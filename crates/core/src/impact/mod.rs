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
//! it is optional. Entity type and relationship names must be valid schema names
//! ([`crate::ident::is_valid_name`]); a template name must be a non-empty string. Repeated
//! entity types in `entity_types` are kept once, in order of first appearance. Unknown keys
//! are refused.
//!
//! `attribute` is a [path] in text form: `depth` for a top-level attribute,
//! `actor.login` for a member of the object attribute `actor`, `payload.commits[].sha` for a
//! member of the objects in the array `payload.commits`. Every key of the path must be a valid
//! schema name and the path must end with a key (not `[]`); the change keeps the path's
//! canonical text form (`"\"actor\".login"` is stored as `actor.login`).
//!
//! [`impact`] says which entities of the affected types need re-embedding and with which
//! priority; [`apply`] computes the definition after the change.

mod change;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use change::{Change, KINDS};

use crate::error::CoreError;
use crate::named::named_enum;
use crate::path::{self, Path, Segment};
use crate::schema::{AttrType, Attribute, Definition};

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
    /// Entities whose snapshot has a non-null value for this attribute (a path in text form;
    /// see [`Affected::snapshot_keys`]).
    NonNullAttribute(String),
    /// Entities whose snapshot has a non-null value for this relationship. For a deleted
    /// relationship, evaluate this on the snapshots as they were before the deletion.
    HasRelationship(String),
    /// No entity.
    None,
}

impl Affected {
    /// The keys leading to the snapshot value whose presence decides [`Affected::matches`], for
    /// SQL's `snapshot #> keys`: the attribute path's keys up to its first `[]` (a path into
    /// array elements counts the entities having the array: `payload.commits[].sha` →
    /// `{payload,commits}`), or the relationship's name. `None` for `AllOfType` and `None`.
    pub fn snapshot_keys(&self) -> Option<Vec<String>> {
        match self {
            Affected::NonNullAttribute(text) => Some(
                path::lenient(text)
                    .segments()
                    .iter()
                    .map_while(|s| match s {
                        Segment::Key(k) => Some(k.clone()),
                        Segment::Items => None,
                    })
                    .collect(),
            ),
            Affected::HasRelationship(name) => Some(vec![name.clone()]),
            Affected::AllOfType | Affected::None => None,
        }
    }

    /// Whether an entity with this snapshot is affected: for an attribute or a relationship,
    /// whether the value at [`Affected::snapshot_keys`] is present and not null (as SQL's
    /// `jsonb_typeof(snapshot #> keys) <> 'null'`).
    pub fn matches(&self, snapshot: &Map<String, Value>) -> bool {
        match self {
            Affected::AllOfType => true,
            Affected::None => false,
            Affected::NonNullAttribute(_) | Affected::HasRelationship(_) => {
                let keys = self.snapshot_keys().unwrap_or_default();
                let Some((first, rest)) = keys.split_first() else {
                    return false;
                };
                let mut v = snapshot.get(first);
                for k in rest {
                    v = v.and_then(Value::as_object).and_then(|o| o.get(k));
                }
                v.is_some_and(|v| !v.is_null())
            }
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
/// | attribute description changed    | non-null value at the attribute's path | medium   |
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

/// The attribute at `path`, found by current names at every level (aliases are not resolved: a
/// change names attributes as the definition does).
fn attribute_mut<'a>(
    attributes: &'a mut BTreeMap<String, Attribute>,
    path: &Path,
) -> Option<&'a mut Attribute> {
    let (Segment::Key(first), rest) = path.segments().split_first()? else {
        return None;
    };
    let mut a = attributes.get_mut(first)?;
    for s in rest {
        a = match s {
            Segment::Key(k) => a.properties.get_mut(k)?,
            Segment::Items => a.items.as_deref_mut()?,
        };
    }
    Some(a)
}

/// The declared members holding the last key of `path`: the definition's attributes for a
/// top-level path, else the properties of the attribute at the parent path (`None` when that
/// is not declared).
fn members_mut<'a>(
    attributes: &'a mut BTreeMap<String, Attribute>,
    path: &Path,
) -> Option<&'a mut BTreeMap<String, Attribute>> {
    match path.parent() {
        None => Some(attributes),
        Some(parent) => attribute_mut(attributes, &parent).map(|a| &mut a.properties),
    }
}

/// The definition after `change`, or `None` when the change does not alter definitions
/// (`template_applied`, `embedding_function_changed`).
///
/// An attribute change acts at its path, found by current names (not aliases) at every level:
/// `actor.login` is the member `login` of the `properties` of the attribute `actor`, and
/// `payload.commits[].sha` the member `sha` of the `properties` of `payload.commits`' `items`.
///
/// Fails with [`CoreError::InvalidArgument`] when `def` is not of (one of) the change's entity
/// types, when a changed or deleted attribute or relationship does not exist, when an added
/// attribute's name is already taken at its level by an attribute, an attribute alias or (at the
/// top level) a relationship, or when an added nested attribute's parent is not a declared
/// `object` (an array's `items` for a parent ending with `[]`) or is a map (`values`). Messages
/// name attributes by their full paths.
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
            let path = path::lenient(attribute);
            let a = path
                .last_key()
                .and_then(|last| members_mut(&mut out.attributes, &path)?.get_mut(last))
                .ok_or_else(|| no_attr(attribute))?;
            a.description = description.clone();
        }
        Change::AttributeDeleted { attribute, .. } => {
            let path = path::lenient(attribute);
            path.last_key()
                .and_then(|last| members_mut(&mut out.attributes, &path)?.remove(last))
                .ok_or_else(|| no_attr(attribute))?;
        }
        Change::AttributeAdded {
            attribute,
            attr_type,
            description,
            ..
        } => {
            let path = path::lenient(attribute);
            let parent = path.parent();
            let Some(last) = path.last_key() else {
                // Only a change built in code may end with `[]`; `Change::parse` refuses it.
                return Err(arg_err(format!(
                    "\"{attribute}\" does not name an attribute: it ends with []"
                )));
            };
            let members = match &parent {
                None => &mut out.attributes,
                Some(parent) => {
                    let holder = attribute_mut(&mut out.attributes, parent)
                        .filter(|a| a.attr_type == AttrType::Object)
                        .ok_or_else(|| {
                            arg_err(format!(
                                "entity type \"{et}\" has no object attribute \"{parent}\" (for \"{attribute}\")"
                            ))
                        })?;
                    if holder.values.is_some() {
                        return Err(arg_err(format!(
                            "attribute \"{parent}\" of entity type \"{et}\" is a map (its members are data, \
                             described by \"values\"); \"{attribute}\" cannot be declared in it"
                        )));
                    }
                    &mut holder.properties
                }
            };
            if members.contains_key(last) {
                return Err(arg_err(format!(
                    "entity type \"{et}\" already has an attribute \"{attribute}\""
                )));
            }
            if parent.is_none() && out.relationships.contains_key(last) {
                return Err(arg_err(format!(
                    "entity type \"{et}\" already has a relationship \"{attribute}\""
                )));
            }
            if let Some((owner, _)) = members
                .iter()
                .find(|(_, a)| a.aliases.iter().any(|alias| alias == last))
            {
                let owner = match &parent {
                    None => owner.clone(),
                    Some(parent) => parent.child(owner.clone()).to_string(),
                };
                return Err(arg_err(format!(
                    "\"{attribute}\" is an alias of attribute \"{owner}\" of entity type \"{et}\""
                )));
            }
            members.insert(
                last.to_string(),
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

    /// A definition with nested attributes: objects, an array of objects, a map, an opaque object.
    fn event() -> Definition {
        Definition::parse(&json!({
            "entity_type": "event",
            "attributes": {
                "kind": {"type": "string"},
                "actor": {"type": "object", "properties": {
                    "id": {"type": "integer"},
                    "user": {"type": "string", "description": "Who", "aliases": ["login_name"]}
                }},
                "payload": {"type": "object", "properties": {
                    "commits": {"type": "array", "items": {"type": "object", "properties": {
                        "sha": {"type": "string", "description": "Hash"},
                        "author": {"type": "object", "properties": {"email": {"type": "string"}}}
                    }}},
                    "tags": {"type": "array", "items": "string"},
                    "any": {"type": "array"},
                    "labels": {"type": "object", "values": "string"},
                    "raw": {"type": "object"}
                }},
                "meta": {"type": "object"}
            },
            "relationships": {"repo": {"target": "repo"}}
        }))
        .unwrap()
    }

    fn change(kind: &str, attribute: &str) -> Change {
        parse(match kind {
            "add" => {
                json!({"kind": "attribute_added", "entity_type": "event", "attribute": attribute, "type": "string", "description": "New"})
            }
            "delete" => {
                json!({"kind": "attribute_deleted", "entity_type": "event", "attribute": attribute})
            }
            "describe" => {
                json!({"kind": "attribute_description_changed", "entity_type": "event", "attribute": attribute, "description": "Changed"})
            }
            other => panic!("{other}"),
        })
    }

    #[test]
    fn apply_at_paths() {
        let d = event();
        // (kind, path): after the change, the attribute at the path is added, gone or described;
        // nothing else changed.
        let cases = [
            ("add", "depth"),
            ("add", "actor.login"),
            ("add", "payload.commits[].url"),
            ("add", "payload.commits[].author.name"),
            ("add", "payload.raw.first"),
            ("add", "meta.source"),
            ("delete", "kind"),
            ("delete", "actor.id"),
            ("delete", "payload.commits[].sha"),
            ("delete", "payload.commits[].author.email"),
            ("delete", "payload.commits"),
            ("describe", "actor"),
            ("describe", "actor.user"),
            ("describe", "payload.commits[].sha"),
            ("describe", "payload.commits[].author.email"),
        ];
        for (kind, text) in cases {
            let c = change(kind, text);
            let out = apply(&d, &c)
                .unwrap_or_else(|e| panic!("{kind} {text}: {e}"))
                .unwrap();
            let path = Path::parse(text).unwrap();
            let before: Vec<_> = d.walk().into_iter().map(|(p, _)| p).collect();
            let after: Vec<_> = out.walk().into_iter().map(|(p, _)| p).collect();
            match kind {
                "add" => {
                    let (at, a) = out.attribute_at(&path).expect(text);
                    assert_eq!(at, path);
                    assert_eq!(
                        a,
                        &Attribute {
                            description: Some("New".into()),
                            ..Attribute::of(AttrType::String)
                        }
                    );
                    assert!(d.attribute_at(&path).is_none(), "{text}");
                    let mut want = before.clone();
                    want.push(path.clone());
                    want.sort();
                    let mut got = after.clone();
                    got.sort();
                    assert_eq!(got, want, "{kind} {text}");
                }
                "delete" => {
                    assert!(d.attribute_at(&path).is_some(), "{text}");
                    assert!(out.attribute_at(&path).is_none(), "{text}");
                    let want: Vec<_> = before
                        .iter()
                        .filter(|p| !p.starts_with(&path))
                        .cloned()
                        .collect();
                    assert_eq!(after, want, "{kind} {text}");
                }
                _ => {
                    assert_eq!(after, before);
                    let (_, a) = out.attribute_at(&path).unwrap();
                    assert_eq!(a.description.as_deref(), Some("Changed"), "{text}");
                    let (_, old) = d.attribute_at(&path).unwrap();
                    assert_eq!(
                        a,
                        &Attribute {
                            description: Some("Changed".into()),
                            ..old.clone()
                        }
                    );
                    // Other attributes keep their descriptions.
                    for ((p, x), (_, y)) in d.walk().into_iter().zip(out.walk()) {
                        if p != path {
                            assert_eq!(x.description, y.description, "{p}");
                        }
                    }
                }
            }
            assert_eq!(out.relationships, d.relationships);
            // The result is a valid definition.
            assert_eq!(
                Definition::parse(&out.to_json()).unwrap(),
                out,
                "{kind} {text}"
            );
        }
        // Where the added members go.
        let out = apply(&d, &change("add", "payload.commits[].url"))
            .unwrap()
            .unwrap();
        let items = out.attributes["payload"].properties["commits"]
            .items
            .as_deref()
            .unwrap();
        assert_eq!(
            items.properties.keys().collect::<Vec<_>>(),
            ["author", "sha", "url"]
        );
        let out = apply(&d, &change("add", "meta.source")).unwrap().unwrap();
        assert!(out.attributes["meta"].is_structured());
        // The input is untouched.
        assert_eq!(d, event());
    }

    #[test]
    fn apply_errors_name_the_path() {
        let d = event();
        let cases = [
            ("add", "kind", "entity type \"event\" already has an attribute \"kind\""),
            ("add", "repo", "entity type \"event\" already has a relationship \"repo\""),
            ("add", "actor.id", "entity type \"event\" already has an attribute \"actor.id\""),
            (
                "add",
                "payload.commits[].sha",
                "entity type \"event\" already has an attribute \"payload.commits[].sha\"",
            ),
            (
                "add",
                "actor.login_name",
                "\"actor.login_name\" is an alias of attribute \"actor.user\" of entity type \"event\"",
            ),
            (
                "add",
                "kind.x",
                "entity type \"event\" has no object attribute \"kind\" (for \"kind.x\")",
            ),
            (
                "add",
                "nope.x",
                "entity type \"event\" has no object attribute \"nope\" (for \"nope.x\")",
            ),
            (
                "add",
                "actor.nope.x",
                "entity type \"event\" has no object attribute \"actor.nope\" (for \"actor.nope.x\")",
            ),
            (
                "add",
                "payload.commits.x",
                "entity type \"event\" has no object attribute \"payload.commits\" (for \"payload.commits.x\")",
            ),
            (
                "add",
                "payload.tags[].x",
                "entity type \"event\" has no object attribute \"payload.tags[]\" (for \"payload.tags[].x\")",
            ),
            (
                "add",
                "payload.any[].x",
                "entity type \"event\" has no object attribute \"payload.any[]\" (for \"payload.any[].x\")",
            ),
            (
                "add",
                "actor[].x",
                "entity type \"event\" has no object attribute \"actor[]\" (for \"actor[].x\")",
            ),
            (
                "add",
                "payload.labels.x",
                "attribute \"payload.labels\" of entity type \"event\" is a map",
            ),
            ("add", "repo.x", "entity type \"event\" has no object attribute \"repo\""),
            ("delete", "actor.login", "entity type \"event\" has no attribute \"actor.login\""),
            ("delete", "nope.x", "entity type \"event\" has no attribute \"nope.x\""),
            ("delete", "actor[].id", "entity type \"event\" has no attribute \"actor[].id\""),
            ("delete", "payload.commits.sha", "entity type \"event\" has no attribute \"payload.commits.sha\""),
            ("delete", "payload.labels.x", "entity type \"event\" has no attribute \"payload.labels.x\""),
            ("delete", "repo", "entity type \"event\" has no attribute \"repo\""),
            // Aliases are not resolved: a change names the current names.
            ("describe", "actor.login_name", "entity type \"event\" has no attribute \"actor.login_name\""),
            (
                "describe",
                "payload.commits[].nope",
                "entity type \"event\" has no attribute \"payload.commits[].nope\"",
            ),
            ("describe", "kind.x", "entity type \"event\" has no attribute \"kind.x\""),
        ];
        for (kind, text, want) in cases {
            match apply(&d, &change(kind, text)) {
                Err(e @ CoreError::InvalidArgument { .. }) => {
                    assert_eq!(e.sqlstate().code(), "22023");
                    let message = e.to_string();
                    let message = message.strip_prefix("invalid change: ").expect(&message);
                    assert!(message.starts_with(want), "{kind} {text}: {message}");
                }
                other => panic!("{kind} {text}: expected an error, got {other:?}"),
            }
        }
        // A change built in code naming `[]` last is refused too.
        let c = Change::AttributeAdded {
            entity_type: "event".into(),
            attribute: "payload.tags[]".into(),
            attr_type: AttrType::String,
            description: None,
        };
        assert!(apply(&d, &c).is_err());
        let c = Change::AttributeDeleted {
            entity_type: "event".into(),
            attribute: "payload.tags[]".into(),
        };
        assert!(apply(&d, &c).is_err());
    }

    #[test]
    fn affected_at_paths() {
        let snap = json!({
            "kind": "push",
            "actor": {"id": 1, "user": null},
            "payload": {"commits": [{"sha": "a"}], "tags": null, "raw": 5},
            "repo": 7
        });
        let snap = snap.as_object().unwrap();
        // (path, snapshot keys, matches)
        let cases: &[(&str, &[&str], bool)] = &[
            ("kind", &["kind"], true),
            ("actor", &["actor"], true),
            ("actor.id", &["actor", "id"], true),
            ("actor.user", &["actor", "user"], false),
            ("actor.login", &["actor", "login"], false),
            ("actor.id.x", &["actor", "id", "x"], false),
            ("payload.commits[].sha", &["payload", "commits"], true),
            ("payload.commits[].url", &["payload", "commits"], true),
            ("payload.tags[].x", &["payload", "tags"], false),
            ("payload.raw.x", &["payload", "raw", "x"], false),
            ("nope.x", &["nope", "x"], false),
        ];
        for (text, keys, matches) in cases {
            let c = change("describe", text);
            let (affected, priority) = impact(&c);
            assert_eq!(affected, Affected::NonNullAttribute(text.to_string()));
            assert_eq!(priority, Some(Priority::Medium));
            assert_eq!(affected.snapshot_keys().unwrap(), *keys, "{text}");
            assert_eq!(affected.matches(snap), *matches, "{text}");
        }
        assert_eq!(
            Affected::HasRelationship("repo".into())
                .snapshot_keys()
                .unwrap(),
            ["repo"]
        );
        assert_eq!(Affected::AllOfType.snapshot_keys(), None);
        assert_eq!(Affected::None.snapshot_keys(), None);
        // Deleting or adding a nested attribute affects as at the top level.
        assert_eq!(
            impact(&change("delete", "actor.id")),
            (Affected::AllOfType, Some(Priority::Medium))
        );
        assert_eq!(
            impact(&change("add", "actor.login")),
            (Affected::None, None)
        );
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
