//! What approving a proposal does: the `action` column of `evolve.schema_proposals`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::schema::AttrType;

/// What approving a proposal does, stored as a JSON object naming its kind under `"op"`:
///
/// | `op` | other keys |
/// |------|------------|
/// | `patch` | `patch` (a schema patch), `field` (the attribute or relationship it adds), `key` (the key as seen in the data) |
/// | `patch_and_index` | those of `patch`, and `attr_type`: the type the index of `field` is built for |
/// | `index` | `field`, `attr_type` |
/// | `table` | `columns`: `[[attribute, type], …]` |
/// | `register` | `definition`, `auto` (approved at once: its name conflicts with no type) |
///
/// Reading is as lenient as the SQL layer always was with stored rows: a missing `patch` or
/// `definition` is `null`; a missing or non-string `field` or `key` is `None` (the proposal's
/// name stands in); a missing or unknown type is `string`; a malformed column is an empty
/// name of type `string`; `auto` holds only when it is `true`. An unknown `op` is an error.
///
/// Actions are read from a JSON value by hand rather than by serde's tagged-enum derive, which
/// would pass the numbers of `patch` and `definition` through a buffer that loses their exact
/// text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Action {
    Patch {
        patch: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    PatchAndIndex {
        patch: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        attr_type: AttrType,
    },
    Index {
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        attr_type: AttrType,
    },
    Table {
        columns: Vec<Column>,
    },
    Register {
        definition: Value,
        auto: bool,
    },
    /// Registers `definition` (type `target`) unless the type exists, relates the proposal's
    /// type to it through `relationship` (payloads embed it under that key, its key in member
    /// `key`), and ingests the embedded objects already kept as fragments as its entities.
    ExtractEntity {
        definition: Value,
        target: String,
        relationship: String,
        key: String,
    },
}

/// One column of a projection table: the attribute and its type, written `[attribute, type]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column(pub String, pub AttrType);

impl Action {
    /// A `patch` action adding `field`, which maps the data key `key`.
    pub fn patch(patch: Value, field: impl Into<String>, key: impl Into<String>) -> Action {
        Action::Patch {
            patch,
            field: Some(field.into()),
            key: Some(key.into()),
        }
    }

    /// The value of `"op"`.
    pub fn op(&self) -> &'static str {
        match self {
            Action::Patch { .. } => "patch",
            Action::PatchAndIndex { .. } => "patch_and_index",
            Action::Index { .. } => "index",
            Action::Table { .. } => "table",
            Action::Register { .. } => "register",
            Action::ExtractEntity { .. } => "extract_entity",
        }
    }

    /// The action as stored.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an action is always JSON")
    }

    /// Reads a stored action, leniently (see [`Action`]); the error is the `op` that is not
    /// known (empty when there is none).
    pub fn from_json(v: &Value) -> Result<Action, String> {
        let string = |key: &str| v[key].as_str().map(str::to_string);
        let type_of =
            |t: &Value| AttrType::parse(t.as_str().unwrap_or("")).unwrap_or(AttrType::String);
        let op = v["op"].as_str().unwrap_or("");
        Ok(match op {
            "patch" => Action::Patch {
                patch: v["patch"].clone(),
                field: string("field"),
                key: string("key"),
            },
            "patch_and_index" => Action::PatchAndIndex {
                patch: v["patch"].clone(),
                field: string("field"),
                key: string("key"),
                attr_type: type_of(&v["attr_type"]),
            },
            "index" => Action::Index {
                field: string("field"),
                attr_type: type_of(&v["attr_type"]),
            },
            "table" => Action::Table {
                columns: v["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| Column(c[0].as_str().unwrap_or("").to_string(), type_of(&c[1])))
                    .collect(),
            },
            "register" => Action::Register {
                definition: v["definition"].clone(),
                auto: v["auto"] == Value::Bool(true),
            },
            "extract_entity" => Action::ExtractEntity {
                definition: v["definition"].clone(),
                target: string("target").unwrap_or_default(),
                relationship: string("relationship").unwrap_or_default(),
                key: string("key").unwrap_or_default(),
            },
            other => return Err(other.to_string()),
        })
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Action, D::Error> {
        let v = Value::deserialize(deserializer)?;
        Action::from_json(&v).map_err(|op| D::Error::custom(format!("unknown action \"{op}\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_op_keeps_its_json() {
        let patch: Value = serde_json::from_str(
            r#"{"attributes": {"mag": {"type": "number", "default": 1.50, "big": 123456789012345678901234567890}}}"#,
        )
        .unwrap();
        let cases = [
            (
                Action::patch(patch.clone(), "mag", "Mag"),
                json!({"op": "patch", "patch": patch, "field": "mag", "key": "Mag"}),
            ),
            (
                Action::PatchAndIndex {
                    patch: patch.clone(),
                    field: Some("t".into()),
                    key: Some("t".into()),
                    attr_type: AttrType::Timestamp,
                },
                json!({"op": "patch_and_index", "patch": patch, "field": "t", "key": "t", "attr_type": "timestamp"}),
            ),
            (
                Action::Index {
                    field: Some("station".into()),
                    attr_type: AttrType::String,
                },
                json!({"op": "index", "field": "station", "attr_type": "string"}),
            ),
            (
                Action::Table {
                    columns: vec![
                        Column("mag".into(), AttrType::Number),
                        Column("time".into(), AttrType::Timestamp),
                    ],
                },
                json!({"op": "table", "columns": [["mag", "number"], ["time", "timestamp"]]}),
            ),
            (
                Action::Register {
                    definition: json!({"entity_type": "v", "attributes": {}}),
                    auto: true,
                },
                json!({"op": "register", "definition": {"entity_type": "v", "attributes": {}}, "auto": true}),
            ),
        ];
        for (action, want) in cases {
            let got = action.to_json();
            // Same keys in the same order, numbers with their text.
            assert_eq!(got.to_string(), want.to_string());
            assert_eq!(got["op"], action.op());
            assert_eq!(Action::from_json(&got), Ok(action.clone()));
            assert_eq!(serde_json::from_value::<Action>(got).unwrap(), action);
        }
    }

    #[test]
    fn stored_actions_are_read_leniently() {
        let cases = [
            (
                json!({"op": "patch", "patch": {"attributes": {"a": {"type": "string"}}}}),
                Action::Patch {
                    patch: json!({"attributes": {"a": {"type": "string"}}}),
                    field: None,
                    key: None,
                },
            ),
            (
                json!({"op": "patch", "field": 3, "key": "k"}),
                Action::Patch {
                    patch: Value::Null,
                    field: None,
                    key: Some("k".into()),
                },
            ),
            (
                json!({"op": "index", "field": "f", "attr_type": "weird"}),
                Action::Index {
                    field: Some("f".into()),
                    attr_type: AttrType::String,
                },
            ),
            (
                json!({"op": "patch_and_index"}),
                Action::PatchAndIndex {
                    patch: Value::Null,
                    field: None,
                    key: None,
                    attr_type: AttrType::String,
                },
            ),
            (
                json!({"op": "table", "columns": [["a", "integer"], [1], "x"]}),
                Action::Table {
                    columns: vec![
                        Column("a".into(), AttrType::Integer),
                        Column(String::new(), AttrType::String),
                        Column(String::new(), AttrType::String),
                    ],
                },
            ),
            (json!({"op": "table"}), Action::Table { columns: vec![] }),
            (
                json!({"op": "register", "auto": "yes"}),
                Action::Register {
                    definition: Value::Null,
                    auto: false,
                },
            ),
        ];
        for (stored, want) in cases {
            assert_eq!(Action::from_json(&stored), Ok(want), "{stored}");
        }
        for (stored, op) in [
            (json!({"op": "ignore"}), "ignore"),
            (json!({"patch": {}}), ""),
            (json!({"op": 1}), ""),
            (json!("patch"), ""),
            (Value::Null, ""),
        ] {
            assert_eq!(Action::from_json(&stored), Err(op.to_string()), "{stored}");
        }
    }
}
