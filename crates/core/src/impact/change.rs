//! The [`Change`] document: its model, its reader with errors naming JSON pointers, and its
//! JSON form (see the [module documentation](super)).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::ident::name_problem;
use crate::path::{self, Path, Segment};
use crate::schema::AttrType;
use crate::validate::{
    check_name, optional_string, reject_unknown, required_name, required_string,
};

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
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    EntityTypeDescriptionChanged {
        entity_type: String,
        /// The new description; `None` removes it.
        description: Option<String>,
    },
    AttributeDescriptionChanged {
        entity_type: String,
        /// The attribute's path in text form (a top-level attribute: its name).
        attribute: String,
        /// The new description; `None` removes it.
        description: Option<String>,
    },
    AttributeDeleted {
        entity_type: String,
        /// The attribute's path in text form (a top-level attribute: its name).
        attribute: String,
    },
    AttributeAdded {
        entity_type: String,
        /// The new attribute's path in text form (a top-level attribute: its name).
        attribute: String,
        #[serde(rename = "type")]
        attr_type: AttrType,
        #[serde(skip_serializing_if = "Option::is_none")]
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

/// The pointer of a member of the change document.
fn member(key: &str) -> String {
    format!("/{key}")
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

/// The pointer of the `attribute` member.
const ATTRIBUTE: &str = "/attribute";

/// Reads an attribute path in text form (`depth`, `actor.login`, `payload.commits[].sha`): every
/// key must be a valid schema name and the last segment a key. A text without `.`, `[`, `]` or
/// `"` is one name, checked (and refused) exactly as before paths existed. Errors name
/// `/attribute`.
pub(crate) fn attribute_path(text: &str) -> Result<Path, CoreError> {
    if !text.contains(['.', '[', ']', '"']) {
        check_name(ATTRIBUTE, text)?;
        return Ok(Path::key(text));
    }
    let path = Path::parse(text).map_err(|e| match e {
        CoreError::InvalidArgument { message, .. } => CoreError::def(
            ATTRIBUTE,
            format!("is not a valid attribute path: {message}"),
        ),
        other => other,
    })?;
    for s in path.segments() {
        if let Segment::Key(k) = s {
            if path.len() == 1 {
                check_name(ATTRIBUTE, k)?;
            } else if let Some(problem) = name_problem(k) {
                return Err(CoreError::def(
                    ATTRIBUTE,
                    format!("name \"{k}\" in path \"{text}\" {problem}"),
                ));
            }
        }
    }
    if path.last_key().is_none() {
        return Err(CoreError::def(
            ATTRIBUTE,
            format!(
                "path \"{text}\" ends with []; an attribute path ends with a key, as in \"{text}.name\""
            ),
        ));
    }
    Ok(path)
}

/// The required `attribute` member: a path (see [`attribute_path`]), kept in its canonical text
/// form.
fn required_attribute(obj: &Map<String, Value>) -> Result<String, CoreError> {
    let text = required_string(obj, "attribute", "")?;
    Ok(attribute_path(&text)?.to_string())
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
                    attribute: required_attribute(obj)?,
                    description: required_description(obj)?,
                }
            }
            "attribute_deleted" => {
                reject_unknown(obj, &["kind", "entity_type", "attribute"], member)?;
                Change::AttributeDeleted {
                    entity_type: required_name(obj, "entity_type", "")?,
                    attribute: required_attribute(obj)?,
                }
            }
            "attribute_added" => {
                reject_unknown(
                    obj,
                    &["kind", "entity_type", "attribute", "type", "description"],
                    member,
                )?;
                let entity_type = required_name(obj, "entity_type", "")?;
                let attribute = required_attribute(obj)?;
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

    /// The path of the attribute an `attribute_*` change concerns (`None` for the other
    /// kinds). A text that is not a valid path (possible only for a change built in code) is
    /// one key.
    pub fn attribute_path(&self) -> Option<Path> {
        match self {
            Change::AttributeDescriptionChanged { attribute, .. }
            | Change::AttributeDeleted { attribute, .. }
            | Change::AttributeAdded { attribute, .. } => Some(path::lenient(attribute)),
            _ => None,
        }
    }

    /// The change as JSON, `"kind"` first; [`Change::parse`] reads it back unchanged.
    /// A removed description is written as `"description": null`; an `attribute_added` without
    /// a description omits the key.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a change is always JSON")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn parse(v: Value) -> Change {
        Change::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    pub(crate) fn all_kinds() -> Vec<(Value, Change)> {
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
    fn attribute_paths_parse_and_round_trip() {
        // (attribute as written, canonical text form, array form)
        let cases: &[(&str, &str, &[&str])] = &[
            ("depth", "depth", &["depth"]),
            ("_x1", "_x1", &["_x1"]),
            ("actor.login", "actor.login", &["actor", "login"]),
            ("\"actor\".login", "actor.login", &["actor", "login"]),
            ("\"mag\"", "mag", &["mag"]),
            ("a.b.c", "a.b.c", &["a", "b", "c"]),
            (
                "payload.commits[].sha",
                "payload.commits[].sha",
                &["payload", "commits", "[]", "sha"],
            ),
            ("m[][].x", "m[][].x", &["m", "[]", "[]", "x"]),
        ];
        for (text, canonical, array) in cases {
            let docs = [
                json!({"kind": "attribute_added", "entity_type": "e", "attribute": text, "type": "string", "description": "d"}),
                json!({"kind": "attribute_deleted", "entity_type": "e", "attribute": text}),
                json!({"kind": "attribute_description_changed", "entity_type": "e", "attribute": text, "description": null}),
            ];
            for doc in docs {
                let c = parse(doc.clone());
                let (Change::AttributeAdded { attribute, .. }
                | Change::AttributeDeleted { attribute, .. }
                | Change::AttributeDescriptionChanged { attribute, .. }) = &c
                else {
                    panic!("{doc}: {c:?}")
                };
                assert_eq!(attribute, canonical, "{doc}");
                assert_eq!(c.attribute_path().unwrap().to_array(), *array, "{doc}");
                // The stored form names the canonical path and reads back unchanged.
                let stored = c.to_json();
                assert_eq!(stored["attribute"], json!(canonical), "{doc}");
                assert_eq!(Change::parse(&stored).unwrap(), c, "{doc}");
                assert_eq!(c.entity_types(), ["e"]);
            }
        }
        let mut stored = json!({"kind": "attribute_added", "entity_type": "e", "attribute": "payload.commits[].sha", "type": "string"});
        assert_eq!(parse(stored.clone()).to_json(), stored);
        stored["description"] = json!("The commit hash");
        assert_eq!(parse(stored.clone()).to_json(), stored);
        // Other kinds have no attribute path.
        for (_, c) in all_kinds() {
            assert_eq!(
                c.attribute_path().is_some(),
                c.kind_str().starts_with("attribute_"),
                "{}",
                c.kind_str()
            );
        }
    }

    #[test]
    fn attribute_path_errors_name_the_member() {
        let cases: &[(&str, &str)] = &[
            // One name: exactly the errors of names.
            ("", "name \"\" must not be empty"),
            ("a b", "name \"a b\" must start with a letter"),
            ("1x", "name \"1x\" must start with a letter"),
            ("\"a b\"", "name \"a b\" must start with a letter"),
            ("\"\"", "name \"\" must not be empty"),
            // A path: each key must be a name.
            (
                "actor.login name",
                "name \"login name\" in path \"actor.login name\" must start with a letter",
            ),
            ("actor.1x", "name \"1x\" in path \"actor.1x\""),
            ("a b.c", "name \"a b\" in path \"a b.c\""),
            ("a.\"\"", "name \"\" in path \"a.\"\"\" must not be empty"),
            (
                "payload.commits[].sha-1",
                "name \"sha-1\" in path \"payload.commits[].sha-1\"",
            ),
            ("a.\"b.c\"", "name \"b.c\" in path"),
            // Unparseable paths.
            ("a..b", "is not a valid attribute path: \"a..b\" has an empty key"),
            ("a.", "is not a valid attribute path"),
            (".a", "is not a valid attribute path"),
            ("[].a", "is not a valid attribute path"),
            ("a[x]", "is not a valid attribute path"),
            ("a.\"b", "is not a valid attribute path"),
            // A path ends with a key.
            (
                "tags[]",
                "path \"tags[]\" ends with []; an attribute path ends with a key, as in \"tags[].name\"",
            ),
            ("a.b[][]", "path \"a.b[][]\" ends with []"),
        ];
        for (text, needle) in cases {
            let docs = [
                json!({"kind": "attribute_added", "entity_type": "e", "attribute": text, "type": "string"}),
                json!({"kind": "attribute_deleted", "entity_type": "e", "attribute": text}),
                json!({"kind": "attribute_description_changed", "entity_type": "e", "attribute": text, "description": "x"}),
            ];
            for doc in docs {
                match Change::parse(&doc) {
                    Err(e @ CoreError::InvalidDefinition { .. }) => {
                        let CoreError::InvalidDefinition { path, message } = &e else {
                            unreachable!()
                        };
                        assert_eq!(path, "/attribute", "{doc}: {e}");
                        assert!(message.contains(needle), "{doc}: {message}");
                        assert_eq!(e.sqlstate().code(), "22023");
                    }
                    other => panic!("{doc}: expected an error at /attribute, got {other:?}"),
                }
            }
        }
        // The entity type is still checked first, the type after the attribute.
        let e = Change::parse(
            &json!({"kind": "attribute_added", "entity_type": "1", "attribute": "a..b"}),
        )
        .unwrap_err();
        assert!(
            matches!(e, CoreError::InvalidDefinition { ref path, .. } if path == "/entity_type"),
            "{e}"
        );
        let e = Change::parse(
            &json!({"kind": "attribute_added", "entity_type": "e", "attribute": "a..b"}),
        )
        .unwrap_err();
        assert!(
            matches!(e, CoreError::InvalidDefinition { ref path, .. } if path == "/attribute"),
            "{e}"
        );
        // Relationships stay plain names.
        let e = Change::parse(
            &json!({"kind": "relationship_deleted", "entity_type": "e", "relationship": "a.b"}),
        )
        .unwrap_err();
        assert!(
            matches!(e, CoreError::InvalidDefinition { ref path, .. } if path == "/relationship"),
            "{e}"
        );
    }

    pub(crate) fn bad_attr() -> Value {
        json!({"kind": "attribute_deleted", "entity_type": "earthquake", "attribute": "depth"})
    }
}
