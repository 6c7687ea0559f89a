//! Schema interop: a [`Definition`] exported to and imported from JSON Schema (2020-12) and
//! Avro, so that schemas kept in pg_evolve can feed validators, code generators and data
//! pipelines, and schemas written elsewhere can be registered.
//!
//! Every function here is pure. The exports are lossless: whatever JSON Schema or Avro cannot
//! say (merge policies, source priorities, aliases, relationships…) goes into annotation
//! keywords prefixed `x-evolve-`, which validators ignore and the imports read back, so that
//! `from_json_schema(&to_json_schema(d), None) == Ok(d)` and
//! `from_avro(&to_avro(d, ns), None) == Ok(d)` for every valid definition `d` (both are
//! property-tested). The imports also read schemas written by hand or by other tools; see
//! [`from_json_schema`] and [`from_avro`] for what they understand.
//!
//! # JSON Schema
//!
//! The document is a 2020-12 object schema: `$schema`, `title` (the entity type),
//! `description`, `type: "object"`, `properties` (attributes and relationships) and `required`.
//!
//! | pg_evolve                  | JSON Schema                                                                  |
//! |----------------------------|------------------------------------------------------------------------------|
//! | `string`                   | `{"type": ["string", "null"]}`                                               |
//! | `number`                   | `{"type": ["number", "null"]}`                                               |
//! | `integer`                  | `{"type": ["integer", "null"]}`                                              |
//! | `boolean`                  | `{"type": ["boolean", "null"]}`                                              |
//! | `timestamp`                | `{"type": ["string", "integer", "null"], "format": "date-time", "pattern": …}` |
//! | `date`                     | `{"type": ["string", "null"], "format": "date", "pattern": …}`               |
//! | `object` with `properties` | `{"type": ["object", "null"], "properties": {…}, "required": […]}`           |
//! | `object` with `values`     | `{"type": ["object", "null"], "additionalProperties": {…}}`                  |
//! | `object` (opaque)          | `{"type": ["object", "null"]}`                                               |
//! | `array` with `items`       | `{"type": ["array", "null"], "items": {…}}`                                  |
//! | `array` (opaque)           | `{"type": ["array", "null"]}`                                                |
//! | `description`, `default`   | `description`, `default`                                                     |
//! | `required` (a member)      | listed in the parent's `required`                                            |
//! | `required` (items, values) | `x-evolve-required: true` (JSON Schema has no place for it)                  |
//! | `merge_policy`             | `x-evolve-merge-policy` (only when not `last_write_wins`)                    |
//! | `source_priority`          | `x-evolve-source-priority`                                                   |
//! | `aliases`                  | `x-evolve-aliases`                                                           |
//! | relationship               | a property accepting a key (below) with `x-evolve-relationship: {target, key}` |
//!
//! Decisions:
//!
//! - **`null` fits every attribute**, required or not, because pg_evolve takes `null` as a
//!   valid observation of any type ([`crate::infer::conforms`]); every attribute schema lists
//!   `"null"` among its types. `required` means the key must be present (possibly `null`).
//!   This is the one place where the exported schema is stricter than ingestion, which does
//!   not reject a payload lacking a required attribute: `required` states the definition's
//!   contract, and leaving it out would make it unreadable for other tools.
//! - **Timestamps** accept an ISO-8601 string or an integer (epoch milliseconds), as payloads
//!   do. `format: "date-time"` is an annotation in 2020-12 (validators do not assert it unless
//!   asked to, and RFC 3339 is stricter than pg_evolve: it needs seconds and an offset), so a
//!   `pattern` checks the shape pg_evolve accepts ([`crate::infer::is_timestamp`]: `T`, `t` or
//!   a space, optional seconds and fraction, optional `Z` or `±HH:MM`). The pattern does not
//!   check calendars (`2024-02-30T00:00` matches it, pg_evolve refuses it). Dates likewise:
//!   `format: "date"` and the pattern `^\d{4}-\d{2}-\d{2}$`.
//! - **Members not declared are free** (no `additionalProperties: false`), as in payloads.
//!   Aliases are annotations: a payload key that is an alias is not validated.
//! - JSON Schema's `integer` also accepts `1.0` and integers beyond 64 bits, which pg_evolve
//!   reads as `number`: the exported schema is laxer there.
//! - **Relationships** are properties accepting a key: `{"type": ["string", "number", "null"]}`,
//!   or, when the relationship has a `key`, also an object embedding the related entity whose
//!   `key` member is a string or a number (`anyOf`).
//!
//! # Avro
//!
//! The document is a record schema (`type: "record"`, `name` = entity type, `namespace`,
//! `doc`, `fields`). Every field is a union with `"null"`, because `null` fits every attribute:
//! `["null", T]` with `"default": null`, or `[T, "null"]` with the attribute's default when it
//! has one Avro can encode (a union's default must match its first branch). Fields hold the
//! attributes in name order, then the relationships in name order.
//!
//! | pg_evolve                  | Avro                                                                      |
//! |----------------------------|---------------------------------------------------------------------------|
//! | `string`                   | `"string"`                                                                |
//! | `number`                   | `"double"`                                                                |
//! | `integer`                  | `"long"`                                                                  |
//! | `boolean`                  | `"boolean"`                                                               |
//! | `timestamp`                | `{"type": "long", "logicalType": "timestamp-millis"}`                     |
//! | `date`                     | `{"type": "int", "logicalType": "date"}`                                  |
//! | `object` with `properties` | a nested record named `{Parent}_{field}` (suffixed `_2`, `_3`… if taken)  |
//! | `object` with `values`     | `{"type": "map", "values": ["null", T]}`                                  |
//! | `array` with `items`       | `{"type": "array", "items": ["null", T]}`                                 |
//! | `object`, `array` (opaque) | `{"type": "string", "x-evolve-json": "object"}` (resp. `"array"`): the value as JSON text |
//! | `description`              | the field's `doc` (the record's `doc` at the top)                         |
//! | `aliases`                  | `aliases` when all are Avro names; else also `x-evolve-aliases` (all)     |
//! | `required`                 | `x-evolve-required: true`                                                 |
//! | `merge_policy`, `source_priority` | `x-evolve-merge-policy`, `x-evolve-source-priority`                |
//! | `default`                  | `default` when Avro can encode it; `x-evolve-default` when that encoding does not read back as the same value |
//! | items / values facts       | `x-evolve-items` / `x-evolve-values` on the array / map: `{description, required, default, merge_policy, source_priority, aliases}` |
//! | relationship               | `["null", "string", "long", "double"]` with `x-evolve-relationship: {target, key}` |
//!
//! Decisions and losses:
//!
//! - Opaque objects and arrays (no declared members or items) are JSON text, marked
//!   `x-evolve-json` so that they read back as opaque; Avro has no "any" type.
//! - Defaults Avro encodes: strings, numbers, integers (64-bit), booleans, dates (days since
//!   1970-01-01) and timestamps (epoch milliseconds; a string without offset is read as UTC,
//!   fractions beyond milliseconds are cut). Defaults of objects, maps and arrays are kept
//!   only in `x-evolve-default` (their Avro encoding would have to match each nested union's
//!   first branch). A timestamp default written as a string reads back from
//!   `x-evolve-default`, its Avro `default` being the milliseconds.
//! - Data, not schema, loses precision: `number` is a `double` (pg_evolve keeps every digit),
//!   `integer` a 64-bit `long`; an embedded related entity is reduced to its key.
//!
//! # Imports
//!
//! Both imports take the entity type from their argument, else from the document (`title`,
//! or the record's `name`). A name that is not a valid schema name
//! ([`crate::ident::is_valid_name`]) becomes [`crate::ident::safe_name`] (suffixed `_2`, `_3`…
//! on a clash) with the original kept as an alias (relationships and the entity type have no
//! aliases: their original name is dropped). Errors are
//! [`CoreError::InvalidDefinition`] naming the JSON pointer of the offending part of the input;
//! the result is finally checked as [`Definition::parse_input`] checks a registration.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use crate::error::CoreError;
use crate::ident::{is_valid_name, safe_name, MAX_IDENT_LEN};
use crate::infer::{is_date, is_timestamp};
use crate::schema::{
    default_fits, AttrType, Attribute, Definition, MergePolicy, Relationship, MAX_ALIAS_LEN,
    MAX_DEFINITION_DEPTH,
};
use crate::validate::escape;

/// The dialect of exported JSON Schema documents.
pub const JSON_SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";
/// The namespace of Avro records exported by [`export`].
pub const DEFAULT_AVRO_NAMESPACE: &str = "pg_evolve";
/// The shape of a timestamp string pg_evolve accepts (calendars are not checked).
pub const TIMESTAMP_PATTERN: &str =
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$";
/// The shape of a date string pg_evolve accepts (calendars are not checked).
pub const DATE_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}$";
/// Most attributes an import creates (nested ones included), against `$ref` explosions.
pub const MAX_IMPORTED_ATTRIBUTES: usize = 10_000;

const X_MERGE_POLICY: &str = "x-evolve-merge-policy";
const X_SOURCE_PRIORITY: &str = "x-evolve-source-priority";
const X_ALIASES: &str = "x-evolve-aliases";
const X_REQUIRED: &str = "x-evolve-required";
const X_RELATIONSHIP: &str = "x-evolve-relationship";
const X_DEFAULT: &str = "x-evolve-default";
const X_JSON: &str = "x-evolve-json";
const X_ITEMS: &str = "x-evolve-items";
const X_VALUES: &str = "x-evolve-values";

// ---------------------------------------------------------------------------------------------
// Formats

/// The interchange formats [`export`] and [`import`] speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonSchema,
    Avro,
}

impl Format {
    /// The format named `name`, case-insensitive: `jsonschema` (or `json_schema`,
    /// `json-schema`) or `avro`.
    pub fn parse(name: &str) -> Result<Format, CoreError> {
        match name.to_ascii_lowercase().as_str() {
            "jsonschema" | "json_schema" | "json-schema" => Ok(Format::JsonSchema),
            "avro" => Ok(Format::Avro),
            _ => Err(CoreError::InvalidArgument {
                what: "format",
                message: format!(
                    "unknown format \"{name}\"; expected jsonschema (also json_schema, json-schema) or avro"
                ),
            }),
        }
    }
}

/// Exports a definition as a JSON Schema ([`to_json_schema`]) or an Avro record schema
/// ([`to_avro`], in namespace [`DEFAULT_AVRO_NAMESPACE`]).
pub fn export(def: &Definition, format: &str) -> Result<Value, CoreError> {
    Ok(match Format::parse(format)? {
        Format::JsonSchema => to_json_schema(def),
        Format::Avro => to_avro(def, DEFAULT_AVRO_NAMESPACE),
    })
}

/// Imports a JSON Schema ([`from_json_schema`]) or an Avro record schema ([`from_avro`]).
pub fn import(
    doc: &Value,
    format: &str,
    entity_type: Option<&str>,
) -> Result<Definition, CoreError> {
    match Format::parse(format)? {
        Format::JsonSchema => from_json_schema(doc, entity_type),
        Format::Avro => from_avro(doc, entity_type),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn child(ptr: &str, key: &str) -> String {
    format!("{ptr}/{}", escape(key))
}

/// An error at `ptr` (the document itself is `/`).
fn err(ptr: &str, message: impl Into<String>) -> CoreError {
    CoreError::def(if ptr.is_empty() { "/" } else { ptr }, message)
}

fn type_list(types: &[&str]) -> Value {
    Value::Array(types.iter().map(|t| Value::String((*t).into())).collect())
}

/// The entity type given as an argument, which must be a valid name.
fn argument_entity_type(entity_type: &str) -> Result<String, CoreError> {
    match crate::ident::name_problem(entity_type) {
        None => Ok(entity_type.to_string()),
        Some(problem) => Err(CoreError::InvalidArgument {
            what: "entity type",
            message: format!("\"{entity_type}\" {problem}"),
        }),
    }
}

/// Names of one level of an import: valid names are kept, others become safe names (unique at
/// the level) whose original is returned to be kept as an alias.
struct Names {
    taken: BTreeSet<String>,
}

impl Names {
    /// Reserves the valid names among `raw` first, so that a safe name never takes one.
    fn new<'a>(raw: impl Iterator<Item = &'a str>) -> Names {
        Names {
            taken: raw.filter(|n| is_valid_name(n)).map(String::from).collect(),
        }
    }

    /// The name of `raw`, and the alias to keep when it had to change.
    fn name(&mut self, raw: &str) -> (String, Option<String>) {
        if is_valid_name(raw) {
            return (raw.to_string(), None);
        }
        let base = safe_name(raw);
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            let suffix = format!("_{n}");
            let mut stem = base.clone();
            stem.truncate(MAX_IDENT_LEN - suffix.len());
            name = format!("{stem}{suffix}");
            n += 1;
        }
        self.taken.insert(name.clone());
        (name, Some(raw.to_string()))
    }
}

/// Where the pg_evolve facts of an attribute are kept in one format.
struct FactKeys {
    description: &'static str,
    merge_policy: &'static str,
    source_priority: &'static str,
    aliases: &'static str,
    required: &'static str,
}

const JSON_SCHEMA_FACTS: FactKeys = FactKeys {
    description: "description",
    merge_policy: X_MERGE_POLICY,
    source_priority: X_SOURCE_PRIORITY,
    aliases: X_ALIASES,
    required: X_REQUIRED,
};

const AVRO_FIELD_FACTS: FactKeys = FactKeys {
    description: "doc",
    merge_policy: X_MERGE_POLICY,
    source_priority: X_SOURCE_PRIORITY,
    aliases: X_ALIASES,
    required: X_REQUIRED,
};

/// The facts of an Avro array's items or map's values, in pg_evolve's own spelling.
const NATIVE_FACTS: FactKeys = FactKeys {
    description: "description",
    merge_policy: "merge_policy",
    source_priority: "source_priority",
    aliases: "aliases",
    required: "required",
};

fn string_list(obj: &Map<String, Value>, key: &str, ptr: &str) -> Result<Vec<String>, CoreError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(err(&format!("{}/{i}", child(ptr, key)), "must be a string")),
            })
            .collect(),
        Some(_) => Err(err(&child(ptr, key), "must be an array of strings")),
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    ptr: &str,
) -> Result<Option<String>, CoreError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(&child(ptr, key), "must be a string")),
    }
}

fn optional_bool(
    obj: &Map<String, Value>,
    key: &str,
    ptr: &str,
) -> Result<Option<bool>, CoreError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(err(&child(ptr, key), "must be a boolean")),
    }
}

/// Reads the description, merge policy, source priority, aliases and `required` annotation of
/// the attribute whose schema is `obj` at `ptr` into `a`.
fn read_facts(
    a: &mut Attribute,
    obj: &Map<String, Value>,
    keys: &FactKeys,
    ptr: &str,
) -> Result<(), CoreError> {
    a.description = optional_string(obj, keys.description, ptr)?;
    if let Some(required) = optional_bool(obj, keys.required, ptr)? {
        a.required = required;
    }
    a.merge_policy = match optional_string(obj, keys.merge_policy, ptr)? {
        None => MergePolicy::LastWriteWins,
        Some(s) => MergePolicy::parse(&s).ok_or_else(|| {
            err(
                &child(ptr, keys.merge_policy),
                format!("unknown merge policy \"{s}\"; expected last_write_wins, source_priority, max, min or union"),
            )
        })?,
    };
    a.source_priority = string_list(obj, keys.source_priority, ptr)?;
    if a.merge_policy == MergePolicy::SourcePriority && a.source_priority.is_empty() {
        return Err(err(
            &child(ptr, keys.source_priority),
            "merge policy source_priority needs a non-empty list of sources, highest rank first",
        ));
    }
    let aliases = string_list(obj, keys.aliases, ptr)?;
    check_aliases(&aliases, &child(ptr, keys.aliases))?;
    a.aliases.extend(aliases);
    Ok(())
}

fn check_aliases(aliases: &[String], ptr: &str) -> Result<(), CoreError> {
    for (i, a) in aliases.iter().enumerate() {
        if a.is_empty() || a.len() > MAX_ALIAS_LEN || a.chars().any(char::is_control) {
            return Err(err(
                &format!("{ptr}/{i}"),
                format!("alias must be 1 to {MAX_ALIAS_LEN} bytes without control characters"),
            ));
        }
    }
    Ok(())
}

/// Sets `a.default` to `v` (`null`: no default) after checking that it fits; an error names
/// `ptr`.
fn set_default(a: &mut Attribute, v: Option<&Value>, ptr: &str) -> Result<(), CoreError> {
    match v {
        None | Some(Value::Null) => a.default = None,
        Some(v) if default_fits(a.attr_type, v) => a.default = Some(v.clone()),
        Some(_) => {
            return Err(err(
                ptr,
                format!(
                    "the default does not fit an attribute of type {}",
                    a.attr_type.as_str()
                ),
            ))
        }
    }
    Ok(())
}

/// Refuses an alias that names a sibling attribute (`ptrs`: each attribute's aliases pointer).
fn check_level(
    attributes: &BTreeMap<String, Attribute>,
    ptrs: &BTreeMap<String, String>,
) -> Result<(), CoreError> {
    for (name, a) in attributes {
        if let Some(alias) = a
            .aliases
            .iter()
            .find(|alias| *alias == name || attributes.contains_key(*alias))
        {
            return Err(err(
                &ptrs[name],
                format!("alias \"{alias}\" of \"{name}\" is already an attribute name"),
            ));
        }
    }
    Ok(())
}

/// Deepest document an import reads (Avro nests four levels per attribute level).
pub const MAX_IMPORT_DEPTH: usize = 4 * MAX_DEFINITION_DEPTH;

/// Whether `v` nests deeper than `limit` (recursion bounded by `limit`).
fn deeper_than(v: &Value, limit: usize) -> bool {
    match v {
        Value::Array(_) | Value::Object(_) if limit == 0 => true,
        Value::Array(a) => a.iter().any(|c| deeper_than(c, limit - 1)),
        Value::Object(o) => o.values().any(|c| deeper_than(c, limit - 1)),
        _ => false,
    }
}

fn check_depth(doc: &Value) -> Result<(), CoreError> {
    if deeper_than(doc, MAX_IMPORT_DEPTH) {
        return Err(CoreError::TooDeep {
            what: "imported schema",
            limit: MAX_IMPORT_DEPTH,
        });
    }
    Ok(())
}

/// Checks the import's result as a registration is checked.
fn finish(def: Definition) -> Result<Definition, CoreError> {
    let checked = Definition::parse_input(&def.to_json())?;
    debug_assert_eq!(checked, def);
    Ok(def)
}

/// Counts the attributes an import creates and bounds their nesting.
struct Budget {
    attributes: usize,
}

impl Budget {
    fn take(&mut self, ptr: &str, depth: usize) -> Result<(), CoreError> {
        self.attributes += 1;
        if self.attributes > MAX_IMPORTED_ATTRIBUTES {
            return Err(err(
                ptr,
                format!("the schema declares more than {MAX_IMPORTED_ATTRIBUTES} attributes"),
            ));
        }
        if depth > MAX_DEFINITION_DEPTH {
            return Err(CoreError::TooDeep {
                what: "imported schema",
                limit: MAX_DEFINITION_DEPTH,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// JSON Schema export

/// Exports a definition as a JSON Schema 2020-12 document validating its payloads; see the
/// [module documentation](self) for the mapping.
pub fn to_json_schema(def: &Definition) -> Value {
    let mut m = Map::new();
    m.insert("$schema".into(), JSON_SCHEMA_DIALECT.into());
    m.insert("title".into(), def.entity_type.clone().into());
    if let Some(d) = &def.description {
        m.insert("description".into(), d.clone().into());
    }
    m.insert("type".into(), "object".into());
    let mut properties: Map<String, Value> = def
        .attributes
        .iter()
        .map(|(name, a)| (name.clone(), attribute_schema(a, false)))
        .collect();
    for (name, r) in &def.relationships {
        properties.insert(name.clone(), relationship_schema(r));
    }
    m.insert("properties".into(), Value::Object(properties));
    m.insert("required".into(), required_list(&def.attributes));
    Value::Object(m)
}

fn required_list(attributes: &BTreeMap<String, Attribute>) -> Value {
    attributes
        .iter()
        .filter(|(_, a)| a.required)
        .map(|(name, _)| Value::String(name.clone()))
        .collect()
}

/// The schema of one attribute; `positional` for an array's items or a map's values, which
/// have no parent `required` list to be named in.
fn attribute_schema(a: &Attribute, positional: bool) -> Value {
    let mut m = Map::new();
    if let Some(d) = &a.description {
        m.insert("description".into(), d.clone().into());
    }
    match a.attr_type {
        AttrType::String => {
            m.insert("type".into(), type_list(&["string", "null"]));
        }
        AttrType::Number => {
            m.insert("type".into(), type_list(&["number", "null"]));
        }
        AttrType::Integer => {
            m.insert("type".into(), type_list(&["integer", "null"]));
        }
        AttrType::Boolean => {
            m.insert("type".into(), type_list(&["boolean", "null"]));
        }
        AttrType::Timestamp => {
            // `format` and `pattern` constrain strings only: integers (epoch ms) pass.
            m.insert("type".into(), type_list(&["string", "integer", "null"]));
            m.insert("format".into(), "date-time".into());
            m.insert("pattern".into(), TIMESTAMP_PATTERN.into());
        }
        AttrType::Date => {
            m.insert("type".into(), type_list(&["string", "null"]));
            m.insert("format".into(), "date".into());
            m.insert("pattern".into(), DATE_PATTERN.into());
        }
        AttrType::Object => {
            m.insert("type".into(), type_list(&["object", "null"]));
            if !a.properties.is_empty() {
                m.insert(
                    "properties".into(),
                    a.properties
                        .iter()
                        .map(|(name, p)| (name.clone(), attribute_schema(p, false)))
                        .collect(),
                );
                let required = required_list(&a.properties);
                if required.as_array().is_some_and(|r| !r.is_empty()) {
                    m.insert("required".into(), required);
                }
            } else if let Some(values) = &a.values {
                m.insert(
                    "additionalProperties".into(),
                    attribute_schema(values, true),
                );
            }
        }
        AttrType::Array => {
            m.insert("type".into(), type_list(&["array", "null"]));
            if let Some(items) = &a.items {
                m.insert("items".into(), attribute_schema(items, true));
            }
        }
    }
    if let Some(d) = &a.default {
        m.insert("default".into(), d.clone());
    }
    if positional && a.required {
        m.insert(X_REQUIRED.into(), true.into());
    }
    if a.merge_policy != MergePolicy::LastWriteWins {
        m.insert(X_MERGE_POLICY.into(), a.merge_policy.as_str().into());
    }
    if !a.source_priority.is_empty() {
        m.insert(X_SOURCE_PRIORITY.into(), a.source_priority.clone().into());
    }
    if !a.aliases.is_empty() {
        m.insert(X_ALIASES.into(), a.aliases.clone().into());
    }
    Value::Object(m)
}

fn relationship_annotation(r: &Relationship) -> Value {
    let mut x = Map::new();
    x.insert("target".into(), r.target.clone().into());
    if let Some(k) = &r.key {
        x.insert("key".into(), k.clone().into());
    }
    Value::Object(x)
}

fn relationship_schema(r: &Relationship) -> Value {
    let mut m = Map::new();
    if let Some(d) = &r.description {
        m.insert("description".into(), d.clone().into());
    }
    let scalar = type_list(&["string", "number", "null"]);
    match &r.key {
        None => {
            m.insert("type".into(), scalar);
        }
        Some(k) => {
            let mut key_props = Map::new();
            key_props.insert(k.clone(), json!({"type": ["string", "number"]}));
            m.insert(
                "anyOf".into(),
                json!([
                    {"type": scalar},
                    {"type": "object", "properties": key_props, "required": [k]}
                ]),
            );
        }
    }
    m.insert(X_RELATIONSHIP.into(), relationship_annotation(r));
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// JSON Schema import

/// Imports a JSON Schema document as a definition.
///
/// Reads exactly what [`to_json_schema`] writes, and reasonable schemas from elsewhere:
///
/// - `type` as a string or an array; `"null"` among the types, or a null branch of
///   `anyOf`/`oneOf` (`{"type": "null"}`), only makes the value nullable (every pg_evolve
///   attribute is);
/// - `anyOf`/`oneOf` with one non-null branch is that branch; with several, only
///   `string` (`format: date-time`) + `integer` (a timestamp) and `integer` + `number` (a
///   number) have a pg_evolve type; `allOf` with one branch is that branch;
/// - `format: "date-time"` makes a string a `timestamp`, `format: "date"` a `date`;
/// - an object's `properties` become members (its `required` their `required`), or else a
///   schema in `additionalProperties` makes it a map; neither: an opaque object;
/// - an array's `items` schema becomes its items (`true`, `{}` or a tuple array: any items);
/// - a schema without `type` takes it from `properties`/`additionalProperties` (object),
///   `items` (array), `format`, `enum` or `const`;
/// - `$ref` to a place in the same document (`#`, `#/$defs/…`, `#/definitions/…`, an
///   `$anchor`, or the document's own `$id` followed by a fragment), its sibling keywords
///   applying too; remote references and cyclic ones (recursive types, which a definition
///   cannot express) are refused;
/// - unknown keywords are ignored.
///
/// The entity type is `entity_type`, else the document's `title`.
pub fn from_json_schema(doc: &Value, entity_type: Option<&str>) -> Result<Definition, CoreError> {
    check_depth(doc)?;
    let root = doc
        .as_object()
        .ok_or_else(|| err("", "a JSON Schema document must be a JSON object"))?;
    let mut reader = JsonSchemaReader {
        doc,
        budget: Budget { attributes: 0 },
    };
    let entity_type = match entity_type {
        Some(e) => argument_entity_type(e)?,
        None => match root.get("title") {
            Some(Value::String(t)) if is_valid_name(t) => t.clone(),
            Some(Value::String(t)) => safe_name(t),
            Some(_) => return Err(err("/title", "must be a string")),
            None => {
                return Err(err(
                    "/title",
                    "is required when no entity type is given (it names the entity type)",
                ))
            }
        },
    };
    let mut refs = Vec::new();
    let (node, ptr) = reader.resolve(doc, "", &mut refs)?;
    let depth_refs = refs.len();
    let node = node.as_object().ok_or_else(|| {
        err(
            &ptr,
            "the document must describe an object (a schema object, not a boolean)",
        )
    })?;
    if reader.types(node, &ptr)? != ["object"] {
        return Err(err(
            &child(&ptr, "type"),
            "the document must describe an object (its payloads)",
        ));
    }
    let description = optional_string(node, "description", &ptr)?;
    let (members, required) = members(node, &ptr)?;
    let mut names = Names::new(members.iter().map(|(raw, _, _)| raw.as_str()));
    let mut attributes = BTreeMap::new();
    let mut relationships = BTreeMap::new();
    let mut alias_ptrs = BTreeMap::new();
    for (raw, schema, p) in members {
        let (name, alias) = names.name(&raw);
        let (resolved, rp) = reader.resolve(schema, &p, &mut refs)?;
        match resolved.get(X_RELATIONSHIP) {
            Some(Value::Object(rel)) => {
                let r = read_relationship(rel, &resolved, &rp)?;
                relationships.insert(name, r);
            }
            Some(_) => {
                return Err(err(
                    &child(&rp, X_RELATIONSHIP),
                    "must be an object {target, key}",
                ))
            }
            None => {
                let mut a = reader.attribute(&resolved, &rp, &mut refs, 1)?;
                if let Some(alias) = alias {
                    a.aliases.insert(0, alias);
                }
                a.required = a.required || required.contains(&raw);
                alias_ptrs.insert(name.clone(), child(&rp, X_ALIASES));
                attributes.insert(name, a);
            }
        }
        refs.truncate(depth_refs);
    }
    check_level(&attributes, &alias_ptrs)?;
    finish(Definition {
        entity_type,
        description,
        attributes,
        relationships,
    })
}

/// The members of an object schema: (raw name, schema, pointer), and its `required` names.
#[allow(clippy::type_complexity)]
fn members<'n>(
    node: &'n Map<String, Value>,
    ptr: &str,
) -> Result<(Vec<(String, &'n Value, String)>, Vec<String>), CoreError> {
    let pp = child(ptr, "properties");
    let members = match node.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(props)) => props
            .iter()
            .map(|(k, v)| (k.clone(), v, child(&pp, k)))
            .collect(),
        Some(_) => return Err(err(&pp, "must be an object of schemas")),
    };
    let required = string_list(node, "required", ptr)?;
    Ok((members, required))
}

fn read_relationship(
    rel: &Map<String, Value>,
    schema: &Value,
    ptr: &str,
) -> Result<Relationship, CoreError> {
    let p = child(ptr, X_RELATIONSHIP);
    let target = match rel.get("target") {
        Some(Value::String(t)) => t.clone(),
        None => return Err(err(&child(&p, "target"), "is required")),
        Some(_) => return Err(err(&child(&p, "target"), "must be a string")),
    };
    if let Some(problem) = crate::ident::name_problem(&target) {
        return Err(err(
            &child(&p, "target"),
            format!("name \"{target}\" {problem}"),
        ));
    }
    let key = optional_string(rel, "key", &p)?;
    if key
        .as_deref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_ALIAS_LEN)
    {
        return Err(err(
            &child(&p, "key"),
            format!("must be 1 to {MAX_ALIAS_LEN} bytes"),
        ));
    }
    let description = match schema {
        Value::Object(o) => optional_string(o, "description", ptr)?,
        _ => None,
    };
    Ok(Relationship {
        target,
        description,
        key,
    })
}

struct JsonSchemaReader<'a> {
    doc: &'a Value,
    budget: Budget,
}

/// Decodes the percent-escapes of a URI fragment.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The pointer of the object declaring `$anchor: anchor` in `v` (at `ptr`).
fn find_anchor(v: &Value, ptr: &str, anchor: &str) -> Option<String> {
    match v {
        Value::Object(o) => {
            if o.get("$anchor").and_then(Value::as_str) == Some(anchor) {
                return Some(ptr.to_string());
            }
            o.iter()
                .find_map(|(k, c)| find_anchor(c, &child(ptr, k), anchor))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, c)| find_anchor(c, &format!("{ptr}/{i}"), anchor)),
        _ => None,
    }
}

/// Whether a schema only admits `null`.
fn is_null_schema(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            o.get("type") == Some(&Value::String("null".into()))
                || o.get("type") == Some(&json!(["null"]))
                || o.get("const") == Some(&Value::Null)
                || o.get("enum") == Some(&json!([null]))
        }
        _ => false,
    }
}

/// Whether a schema admits anything (`true`, `{}`, or annotations only).
fn is_any_schema(v: &Value) -> bool {
    match v {
        Value::Bool(true) => true,
        Value::Object(o) => o.keys().all(|k| {
            matches!(
                k.as_str(),
                "description" | "title" | "$comment" | "examples" | "default"
            )
        }),
        _ => false,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if crate::number::is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl JsonSchemaReader<'_> {
    /// Follows `$ref`s from `node` (at `ptr`): the schema to read and the pointer of the place
    /// defining it. A reference's sibling keywords apply too (2020-12) and win over the
    /// target's. `refs` holds the targets followed on the way down, to refuse cycles; the
    /// caller truncates it when done with the subtree.
    fn resolve(
        &self,
        node: &Value,
        ptr: &str,
        refs: &mut Vec<String>,
    ) -> Result<(Value, String), CoreError> {
        let mut current = node.clone();
        let mut ptr = ptr.to_string();
        loop {
            let Some(reference) = current.get("$ref") else {
                return Ok((current, ptr));
            };
            let ref_ptr = child(&ptr, "$ref");
            let Value::String(reference) = reference else {
                return Err(err(&ref_ptr, "must be a string"));
            };
            let target_ptr = self.reference(reference, &ref_ptr)?;
            if refs.contains(&target_ptr) {
                return Err(err(
                    &ref_ptr,
                    format!("\"{reference}\" refers back to a schema it is part of; a recursive type cannot be a pg_evolve definition"),
                ));
            }
            refs.push(target_ptr.clone());
            let target = self.doc.pointer(&target_ptr).ok_or_else(|| {
                err(
                    &ref_ptr,
                    format!("\"{reference}\" points at nothing in the document"),
                )
            })?;
            let mut siblings = current.as_object().cloned().unwrap_or_default();
            siblings.remove("$ref");
            current = match target {
                Value::Object(t) if !siblings.is_empty() => {
                    let mut merged = t.clone();
                    merged.extend(siblings);
                    Value::Object(merged)
                }
                other => other.clone(),
            };
            ptr = target_ptr;
        }
    }

    /// The JSON pointer a local reference designates.
    fn reference(&self, reference: &str, ptr: &str) -> Result<String, CoreError> {
        let id = self.doc.get("$id").and_then(Value::as_str).unwrap_or("");
        let fragment = match reference.split_once('#') {
            Some(("", fragment)) => fragment,
            Some((base, fragment)) if !id.is_empty() && base == id.trim_end_matches('#') => {
                fragment
            }
            _ => {
                return Err(err(
                    ptr,
                    format!("\"{reference}\" is not a reference within this document; only local references (\"#/$defs/…\") are resolved"),
                ))
            }
        };
        let fragment = percent_decode(fragment)
            .ok_or_else(|| err(ptr, format!("\"{reference}\" is not a valid URI fragment")))?;
        if fragment.is_empty() || fragment.starts_with('/') {
            Ok(fragment)
        } else {
            find_anchor(self.doc, "", &fragment).ok_or_else(|| {
                err(
                    ptr,
                    format!("no \"$anchor\": \"{fragment}\" in the document"),
                )
            })
        }
    }

    /// The non-null JSON types a schema admits (from `type`, else from other keywords).
    fn types(&self, node: &Map<String, Value>, ptr: &str) -> Result<Vec<&'static str>, CoreError> {
        const TYPES: [&str; 7] = [
            "string", "number", "integer", "boolean", "object", "array", "null",
        ];
        let known = |s: &str, p: &str| {
            TYPES
                .iter()
                .find(|t| **t == s)
                .copied()
                .ok_or_else(|| err(p, format!("unknown type \"{s}\"")))
        };
        let tp = child(ptr, "type");
        let mut types: Vec<&'static str> = match node.get("type") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![known(s, &tp)?],
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Value::String(s) => known(s, &format!("{tp}/{i}")),
                    _ => Err(err(&format!("{tp}/{i}"), "must be a string")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(&tp, "must be a string or an array of strings")),
        };
        let had_null = types.contains(&"null");
        types.retain(|t| *t != "null");
        if types.is_empty() && !had_null {
            // No type: infer it from the other keywords.
            let values: Option<Vec<&Value>> = match (node.get("enum"), node.get("const")) {
                (Some(Value::Array(e)), _) => Some(e.iter().collect()),
                (_, Some(c)) => Some(vec![c]),
                _ => None,
            };
            if node.contains_key("properties") || node.contains_key("additionalProperties") {
                types.push("object");
            } else if node.contains_key("items") || node.contains_key("prefixItems") {
                types.push("array");
            } else if node.contains_key("format") || node.contains_key("pattern") {
                types.push("string");
            } else if let Some(values) = values {
                types = values
                    .iter()
                    .map(|v| json_type(v))
                    .filter(|t| *t != "null")
                    .collect();
            }
        }
        types.sort_unstable();
        types.dedup();
        if types == ["integer", "number"] {
            types = vec!["number"];
        }
        if types.is_empty() {
            return Err(err(
                ptr,
                if had_null {
                    "a schema admitting only null has no pg_evolve type"
                } else {
                    "the schema does not say what type its values are; give it a \"type\""
                },
            ));
        }
        Ok(types)
    }

    /// The pg_evolve type of a (resolved, unwrapped) schema.
    fn attr_type(&self, node: &Map<String, Value>, ptr: &str) -> Result<AttrType, CoreError> {
        let types = self.types(node, ptr)?;
        let format = node.get("format").and_then(Value::as_str);
        Ok(match (types.as_slice(), format) {
            (["string"] | ["integer", "string"], Some("date-time")) => AttrType::Timestamp,
            (["string"], Some("date")) => AttrType::Date,
            (["string"], _) => AttrType::String,
            (["integer"], _) => AttrType::Integer,
            (["number"], _) => AttrType::Number,
            (["boolean"], _) => AttrType::Boolean,
            (["object"], _) => AttrType::Object,
            (["array"], _) => AttrType::Array,
            (several, _) => {
                return Err(err(
                    &child(ptr, "type"),
                    format!(
                        "values of several types ({}) have no pg_evolve type; choose one",
                        several.join(", ")
                    ),
                ))
            }
        })
    }

    /// Unwraps `anyOf`/`oneOf` (dropping null branches) and single-branch `allOf`: the schema
    /// whose type to read, with its pointer. One non-null branch is the schema, the outer
    /// keywords annotating it; several are combined into one schema listing their types (and
    /// the first `format` seen).
    fn unwrap(
        &self,
        node: Value,
        ptr: String,
        refs: &mut Vec<String>,
    ) -> Result<(Value, String), CoreError> {
        let Some(obj) = node.as_object() else {
            return Ok((node, ptr));
        };
        let Some(keyword) = ["anyOf", "oneOf", "allOf"]
            .into_iter()
            .find(|k| obj.contains_key(*k))
        else {
            return Ok((node, ptr));
        };
        let cp = child(&ptr, keyword);
        let Some(Value::Array(branches)) = obj.get(keyword) else {
            return Err(err(&cp, "must be an array of schemas"));
        };
        if keyword == "allOf" && branches.len() != 1 {
            return Err(err(
                &cp,
                "allOf with several schemas is not supported; merge them into one",
            ));
        }
        let mut outer = obj.clone();
        outer.remove(keyword);
        // Each kept branch, with its pointer and the references followed to reach it.
        let mut kept = Vec::new();
        for (i, b) in branches.iter().enumerate() {
            let before = refs.len();
            let (b, bp) = self.resolve(b, &format!("{cp}/{i}"), refs)?;
            let (b, bp) = self.unwrap(b, bp, refs)?;
            let followed = refs.split_off(before);
            if !is_null_schema(&b) {
                kept.push((b, bp, followed));
            }
        }
        match kept.len() {
            0 => Err(err(
                &cp,
                "a schema admitting only null has no pg_evolve type",
            )),
            1 => {
                let (b, bp, followed) = kept.pop().expect("one branch");
                refs.extend(followed);
                let Value::Object(mut merged) = b else {
                    return Err(err(&bp, "must be a schema object"));
                };
                for (k, v) in outer {
                    merged.entry(k).or_insert(v);
                }
                self.unwrap(Value::Object(merged), bp, refs)
            }
            _ => {
                let mut types = Vec::new();
                let mut format = None;
                for (b, bp, _) in &kept {
                    let bo = b
                        .as_object()
                        .ok_or_else(|| err(bp, "must be a schema object"))?;
                    types.extend(self.types(bo, bp)?);
                    if format.is_none() {
                        format = bo.get("format").cloned();
                    }
                }
                types.sort_unstable();
                types.dedup();
                let mut merged = outer;
                merged.insert("type".into(), type_list(&types));
                if let Some(f) = format {
                    merged.entry("format").or_insert(f);
                }
                Ok((Value::Object(merged), ptr))
            }
        }
    }

    /// Reads the attribute a schema at `ptr` describes; `refs` as for [`Self::resolve`].
    fn attribute(
        &mut self,
        node: &Value,
        ptr: &str,
        refs: &mut Vec<String>,
        depth: usize,
    ) -> Result<Attribute, CoreError> {
        self.budget.take(ptr, depth)?;
        let (node, ptr) = self.resolve(node, ptr, refs)?;
        let (node, ptr) = self.unwrap(node, ptr, refs)?;
        let obj =
            match &node {
                Value::Object(o) => o,
                Value::Bool(_) => return Err(err(
                    &ptr,
                    "a boolean schema does not say what type its values are; give it a \"type\"",
                )),
                _ => return Err(err(&ptr, "must be a schema object")),
            };
        if obj.contains_key(X_RELATIONSHIP) {
            return Err(err(
                &child(&ptr, X_RELATIONSHIP),
                "relationships are declared at the top level only",
            ));
        }
        let mut a = Attribute::of(self.attr_type(obj, &ptr)?);
        read_facts(&mut a, obj, &JSON_SCHEMA_FACTS, &ptr)?;
        match a.attr_type {
            AttrType::Object => {
                let (members, required) = members(obj, &ptr)?;
                let mut names = Names::new(members.iter().map(|(raw, _, _)| raw.as_str()));
                let mut alias_ptrs = BTreeMap::new();
                for (raw, schema, p) in members {
                    let (name, alias) = names.name(&raw);
                    let level = refs.len();
                    let mut m = self.attribute(schema, &p, refs, depth + 1)?;
                    refs.truncate(level);
                    if let Some(alias) = alias {
                        m.aliases.insert(0, alias);
                    }
                    m.required = m.required || required.contains(&raw);
                    alias_ptrs.insert(name.clone(), child(&p, X_ALIASES));
                    a.properties.insert(name, m);
                }
                check_level(&a.properties, &alias_ptrs)?;
                match obj.get("additionalProperties") {
                    Some(values)
                        if a.properties.is_empty()
                            && !is_any_schema(values)
                            && values != &Value::Bool(false) =>
                    {
                        let level = refs.len();
                        let v = self.attribute(
                            values,
                            &child(&ptr, "additionalProperties"),
                            refs,
                            depth + 1,
                        )?;
                        refs.truncate(level);
                        a.values = Some(Box::new(v));
                    }
                    _ => {}
                }
            }
            AttrType::Array => match obj.get("items") {
                Some(items)
                    if !is_any_schema(items)
                        && !items.is_array()
                        && items != &Value::Bool(false) =>
                {
                    let level = refs.len();
                    let i = self.attribute(items, &child(&ptr, "items"), refs, depth + 1)?;
                    refs.truncate(level);
                    a.items = Some(Box::new(i));
                }
                _ => {}
            },
            _ => {}
        }
        set_default(&mut a, obj.get("default"), &child(&ptr, "default"))?;
        Ok(a)
    }
}

// ---------------------------------------------------------------------------------------------
// Avro export

/// Exports a definition as an Avro record schema in `namespace` (left out when empty; else it
/// must be an Avro namespace, dot-separated names, which is not checked here); see the
/// [module documentation](self) for the mapping.
pub fn to_avro(def: &Definition, namespace: &str) -> Value {
    let mut names = BTreeSet::from([def.entity_type.clone()]);
    let mut m = Map::new();
    m.insert("type".into(), "record".into());
    m.insert("name".into(), def.entity_type.clone().into());
    if !namespace.is_empty() {
        m.insert("namespace".into(), namespace.into());
    }
    if let Some(d) = &def.description {
        m.insert("doc".into(), d.clone().into());
    }
    let mut fields: Vec<Value> = def
        .attributes
        .iter()
        .map(|(name, a)| avro_field(name, a, &def.entity_type, &mut names))
        .collect();
    for (name, r) in &def.relationships {
        let mut f = Map::new();
        f.insert("name".into(), name.clone().into());
        f.insert(
            "type".into(),
            type_list(&["null", "string", "long", "double"]),
        );
        if let Some(d) = &r.description {
            f.insert("doc".into(), d.clone().into());
        }
        f.insert("default".into(), Value::Null);
        f.insert(X_RELATIONSHIP.into(), relationship_annotation(r));
        fields.push(Value::Object(f));
    }
    m.insert("fields".into(), Value::Array(fields));
    Value::Object(m)
}

/// Whether `s` is an Avro name (`[A-Za-z_][A-Za-z0-9_]*`).
fn is_avro_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A record name from `hint` not yet used in the document.
fn unique_name(hint: String, names: &mut BTreeSet<String>) -> String {
    let mut name = hint.clone();
    let mut n = 2;
    while names.contains(&name) {
        name = format!("{hint}_{n}");
        n += 1;
    }
    names.insert(name.clone());
    name
}

fn avro_field(name: &str, a: &Attribute, parent: &str, names: &mut BTreeSet<String>) -> Value {
    let t = avro_type(a, &format!("{parent}_{name}"), names);
    let encoded = a
        .default
        .as_ref()
        .and_then(|d| avro_default(a.attr_type, d));
    let mut f = Map::new();
    f.insert("name".into(), name.into());
    match &encoded {
        Some(_) => f.insert("type".into(), json!([t, "null"])),
        None => f.insert("type".into(), json!(["null", t])),
    };
    if let Some(d) = &a.description {
        f.insert("doc".into(), d.clone().into());
    }
    f.insert("default".into(), encoded.clone().unwrap_or(Value::Null));
    if let Some(d) = &a.default {
        if encoded
            .and_then(|e| avro_decode_default(a.attr_type, &e))
            .as_ref()
            != Some(d)
        {
            f.insert(X_DEFAULT.into(), d.clone());
        }
    }
    let avro_aliases: Vec<&String> = a.aliases.iter().filter(|x| is_avro_name(x)).collect();
    if !avro_aliases.is_empty() {
        f.insert("aliases".into(), json!(avro_aliases));
    }
    if avro_aliases.len() != a.aliases.len() {
        f.insert(X_ALIASES.into(), a.aliases.clone().into());
    }
    if a.required {
        f.insert(X_REQUIRED.into(), true.into());
    }
    if a.merge_policy != MergePolicy::LastWriteWins {
        f.insert(X_MERGE_POLICY.into(), a.merge_policy.as_str().into());
    }
    if !a.source_priority.is_empty() {
        f.insert(X_SOURCE_PRIORITY.into(), a.source_priority.clone().into());
    }
    Value::Object(f)
}

/// The facts of an array's items or a map's values (everything but the type and structure),
/// in pg_evolve's spelling; `None` when there are none.
fn positional_facts(a: &Attribute) -> Option<Value> {
    let mut j = a.to_json();
    let o = j.as_object_mut()?;
    for k in ["type", "properties", "items", "values"] {
        o.remove(k);
    }
    (!o.is_empty()).then_some(j)
}

/// The Avro type of an attribute's non-null values; `hint` names a nested record.
fn avro_type(a: &Attribute, hint: &str, names: &mut BTreeSet<String>) -> Value {
    match a.attr_type {
        AttrType::String => "string".into(),
        AttrType::Number => "double".into(),
        AttrType::Integer => "long".into(),
        AttrType::Boolean => "boolean".into(),
        AttrType::Timestamp => json!({"type": "long", "logicalType": "timestamp-millis"}),
        AttrType::Date => json!({"type": "int", "logicalType": "date"}),
        AttrType::Object if !a.properties.is_empty() => {
            let name = unique_name(hint.to_string(), names);
            let fields: Vec<Value> = a
                .properties
                .iter()
                .map(|(n, p)| avro_field(n, p, &name, names))
                .collect();
            json!({"type": "record", "name": name, "fields": fields})
        }
        AttrType::Object => match &a.values {
            Some(values) => {
                let mut m = Map::new();
                m.insert("type".into(), "map".into());
                m.insert(
                    "values".into(),
                    json!(["null", avro_type(values, &format!("{hint}_value"), names)]),
                );
                if let Some(facts) = positional_facts(values) {
                    m.insert(X_VALUES.into(), facts);
                }
                Value::Object(m)
            }
            None => json!({"type": "string", X_JSON: "object"}),
        },
        AttrType::Array => match &a.items {
            Some(items) => {
                let mut m = Map::new();
                m.insert("type".into(), "array".into());
                m.insert(
                    "items".into(),
                    json!(["null", avro_type(items, &format!("{hint}_item"), names)]),
                );
                if let Some(facts) = positional_facts(items) {
                    m.insert(X_ITEMS.into(), facts);
                }
                Value::Object(m)
            }
            None => json!({"type": "string", X_JSON: "array"}),
        },
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01, as `YYYY-MM-DD` (years 1 to 9999).
fn civil_from_days(days: i64) -> Option<String> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (1..=9999)
        .contains(&y)
        .then(|| format!("{y:04}-{m:02}-{d:02}"))
}

fn digits(s: &str) -> Option<i64> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

/// Milliseconds since the epoch of a timestamp string pg_evolve accepts (no offset: UTC;
/// fractions beyond milliseconds are cut).
fn timestamp_millis(s: &str) -> Option<i64> {
    if !is_timestamp(s) {
        return None;
    }
    let days = days_from_civil(digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let (h, mi) = (digits(&s[11..13])?, digits(&s[14..16])?);
    let mut rest = &s[16..];
    let (mut sec, mut ms) = (0, 0);
    if let Some(r) = rest.strip_prefix(':') {
        sec = digits(&r[..2])?;
        rest = &r[2..];
        if let Some(f) = rest.strip_prefix('.') {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            let mut frac = f[..n.min(3)].to_string();
            while frac.len() < 3 {
                frac.push('0');
            }
            ms = digits(&frac)?;
            rest = &f[n..];
        }
    }
    let offset_min = match rest.as_bytes().first() {
        Some(sign @ (b'+' | b'-')) => {
            let o = digits(&rest[1..3])? * 60 + digits(&rest[4..6])?;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => 0,
    };
    let secs = days * 86_400 + h * 3600 + (mi - offset_min) * 60 + sec;
    Some(secs * 1000 + ms)
}

/// The Avro encoding of a default of type `t`, when Avro has one (scalars only).
fn avro_default(t: AttrType, d: &Value) -> Option<Value> {
    match (t, d) {
        (AttrType::String, Value::String(_)) | (AttrType::Boolean, Value::Bool(_)) => {
            Some(d.clone())
        }
        // A double: finite values only (`1e400` is kept in `x-evolve-default`).
        (AttrType::Number, Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {
            Some(d.clone())
        }
        (AttrType::Integer | AttrType::Timestamp, Value::Number(n)) if n.is_i64() => {
            Some(d.clone())
        }
        (AttrType::Timestamp, Value::String(s)) => timestamp_millis(s).map(Value::from),
        (AttrType::Date, Value::String(s)) if is_date(s) => {
            let days = days_from_civil(digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
            Some(Value::from(days))
        }
        _ => None,
    }
}

/// The pg_evolve default an Avro default of a field of type `t` stands for.
fn avro_decode_default(t: AttrType, v: &Value) -> Option<Value> {
    match (t, v) {
        (_, Value::Null) => None,
        (AttrType::Date, Value::Number(n)) => {
            n.as_i64().and_then(civil_from_days).map(Value::String)
        }
        (t, v) => default_fits(t, v).then(|| v.clone()),
    }
}

// ---------------------------------------------------------------------------------------------
// Avro import

/// Imports an Avro record schema as a definition.
///
/// Reads exactly what [`to_avro`] writes, and reasonable record schemas from elsewhere:
/// unions with `"null"` make a value nullable (a field that is neither nullable nor has a
/// `default` is `required`, unless `x-evolve-required` says otherwise); `int`/`long` are
/// integers, `float`/`double` (and a union of numeric types with one of them) numbers,
/// `bytes`, `fixed`, `enum` and `string` strings (`uuid` too), `decimal` a number,
/// `timestamp-*` and `local-timestamp-*` timestamps, `date` dates, other logical types their
/// underlying type; records nested objects, maps maps, arrays arrays; a type named after a
/// record, enum or fixed defined earlier in the document is that type (a recursive record is
/// refused). Avro `aliases` become aliases; `doc` descriptions; a field's `default` (unless
/// `null`) its default. Unknown attributes are ignored.
///
/// The entity type is `entity_type`, else the record's `name` (its last dotted part).
pub fn from_avro(doc: &Value, entity_type: Option<&str>) -> Result<Definition, CoreError> {
    check_depth(doc)?;
    let root = doc.as_object().ok_or_else(|| {
        err(
            "",
            "an Avro schema to import must be a record schema object",
        )
    })?;
    if root.get("type").and_then(Value::as_str) != Some("record") {
        return Err(err(
            "/type",
            "must be \"record\": only a record describes an entity",
        ));
    }
    let name = match root.get("name") {
        Some(Value::String(n)) => n.clone(),
        None => return Err(err("/name", "is required")),
        Some(_) => return Err(err("/name", "must be a string")),
    };
    let short = name.rsplit('.').next().unwrap_or(&name).to_string();
    let entity_type = match entity_type {
        Some(e) => argument_entity_type(e)?,
        None if is_valid_name(&short) => short,
        None => safe_name(&short),
    };
    let namespace = match (root.get("namespace"), name.rsplit_once('.')) {
        (_, Some((ns, _))) => ns.to_string(),
        (Some(Value::String(ns)), None) => ns.clone(),
        _ => String::new(),
    };
    let mut reader = AvroReader {
        named: HashMap::new(),
        building: vec![full_name(&namespace, &name)],
        budget: Budget { attributes: 0 },
    };
    reader
        .named
        .insert(full_name(&namespace, &name), (doc.clone(), String::new()));
    let fields = match root.get("fields") {
        Some(Value::Array(f)) => f,
        None => return Err(err("/fields", "is required")),
        Some(_) => return Err(err("/fields", "must be an array of fields")),
    };
    let mut names = Names::new(
        fields
            .iter()
            .filter_map(|f| f.get("name").and_then(Value::as_str)),
    );
    let mut attributes = BTreeMap::new();
    let mut relationships = BTreeMap::new();
    let mut alias_ptrs = BTreeMap::new();
    for (i, f) in fields.iter().enumerate() {
        let fp = format!("/fields/{i}");
        let fo = f
            .as_object()
            .ok_or_else(|| err(&fp, "a field must be an object {name, type}"))?;
        let raw = match fo.get("name") {
            Some(Value::String(n)) => n.clone(),
            None => return Err(err(&child(&fp, "name"), "is required")),
            Some(_) => return Err(err(&child(&fp, "name"), "must be a string")),
        };
        let (field_name, alias) = names.name(&raw);
        if attributes.contains_key(&field_name) || relationships.contains_key(&field_name) {
            return Err(err(
                &child(&fp, "name"),
                format!("a second field named \"{raw}\""),
            ));
        }
        if let Some(rel) = fo.get(X_RELATIONSHIP) {
            let Value::Object(rel) = rel else {
                return Err(err(
                    &child(&fp, X_RELATIONSHIP),
                    "must be an object {target, key}",
                ));
            };
            let mut r = read_relationship(rel, &Value::Null, &fp)?;
            r.description = optional_string(fo, "doc", &fp)?;
            relationships.insert(field_name, r);
            continue;
        }
        let mut a = reader.field(fo, &fp, &namespace, 1)?;
        if let Some(alias) = alias {
            a.aliases.insert(0, alias);
        }
        alias_ptrs.insert(field_name.clone(), child(&fp, "aliases"));
        attributes.insert(field_name, a);
    }
    check_level(&attributes, &alias_ptrs)?;
    finish(Definition {
        entity_type,
        description: optional_string(root, "doc", "")?,
        attributes,
        relationships,
    })
}

fn full_name(namespace: &str, name: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

struct AvroReader {
    /// Named types (records, enums, fixed) by full name: their schema and pointer.
    named: HashMap<String, (Value, String)>,
    /// Full names of the records being read, to refuse recursion.
    building: Vec<String>,
    budget: Budget,
}

/// An Avro type read: the attribute (type and structure), and whether `null` was allowed.
struct AvroType {
    attr: Attribute,
    nullable: bool,
    /// In a union, whether a non-null branch comes first (a field default then applies to it).
    non_null_first: bool,
}

impl AvroReader {
    /// Reads one record field at `ptr`.
    fn field(
        &mut self,
        fo: &Map<String, Value>,
        ptr: &str,
        namespace: &str,
        depth: usize,
    ) -> Result<Attribute, CoreError> {
        self.budget.take(ptr, depth)?;
        let tp = child(ptr, "type");
        let t = fo.get("type").ok_or_else(|| err(&tp, "is required"))?;
        let read = self.read_type(t, &tp, namespace, depth)?;
        let mut a = read.attr;
        read_facts(&mut a, fo, &AVRO_FIELD_FACTS, ptr)?;
        if !fo.contains_key(X_ALIASES) {
            let aliases = string_list(fo, "aliases", ptr)?;
            check_aliases(&aliases, &child(ptr, "aliases"))?;
            a.aliases = aliases;
        }
        if !fo.contains_key(X_REQUIRED) {
            a.required = !read.nullable && !fo.contains_key("default");
        }
        match fo.get(X_DEFAULT) {
            Some(d) if !d.is_null() => set_default(&mut a, Some(d), &child(ptr, X_DEFAULT))?,
            _ => {
                let avro = fo.get("default").filter(|_| read.non_null_first);
                let decoded = avro.and_then(|v| match v {
                    Value::Null => None,
                    v => Some(avro_decode_default(a.attr_type, v).unwrap_or_else(|| v.clone())),
                });
                set_default(&mut a, decoded.as_ref(), &child(ptr, "default"))?;
            }
        }
        Ok(a)
    }

    /// Registers the named type `t` (an object with `name`) defined at `ptr`; its full name.
    fn register(
        &mut self,
        t: &Map<String, Value>,
        ptr: &str,
        namespace: &str,
    ) -> Result<(String, String), CoreError> {
        let name = match t.get("name") {
            Some(Value::String(n)) => n.clone(),
            None => return Err(err(&child(ptr, "name"), "is required")),
            Some(_) => return Err(err(&child(ptr, "name"), "must be a string")),
        };
        let ns = match (t.get("namespace"), name.rsplit_once('.')) {
            (_, Some((ns, _))) => ns.to_string(),
            (Some(Value::String(ns)), None) => ns.clone(),
            _ => namespace.to_string(),
        };
        let full = full_name(&ns, &name);
        self.named
            .entry(full.clone())
            .or_insert_with(|| (Value::Object(t.clone()), ptr.to_string()));
        Ok((full, ns))
    }

    /// Reads a type (a name, a union or a type object) at `ptr`.
    fn read_type(
        &mut self,
        t: &Value,
        ptr: &str,
        namespace: &str,
        depth: usize,
    ) -> Result<AvroType, CoreError> {
        let plain = |attr_type| AvroType {
            attr: Attribute::of(attr_type),
            nullable: false,
            non_null_first: true,
        };
        match t {
            Value::Array(branches) => {
                let mut nullable = false;
                let mut kept = Vec::new();
                for (i, b) in branches.iter().enumerate() {
                    if b.as_str() == Some("null") {
                        nullable = true;
                    } else {
                        kept.push((i, b));
                    }
                }
                let non_null_first = branches.first().is_some_and(|b| b.as_str() != Some("null"));
                match kept.as_slice() {
                    [] => Err(err(ptr, "a union of only null has no pg_evolve type")),
                    [(i, b)] => {
                        let mut read =
                            self.read_type(b, &format!("{ptr}/{i}"), namespace, depth)?;
                        read.nullable = nullable || read.nullable;
                        read.non_null_first = non_null_first;
                        Ok(read)
                    }
                    several => {
                        let mut types = BTreeSet::new();
                        for (i, b) in several {
                            let read =
                                self.read_type(b, &format!("{ptr}/{i}"), namespace, depth)?;
                            let structured = !read.attr.properties.is_empty()
                                || read.attr.items.is_some()
                                || read.attr.values.is_some();
                            if structured {
                                types.insert("(complex)");
                            } else {
                                types.insert(read.attr.attr_type.as_str());
                            }
                        }
                        let attr_type = match types.iter().copied().collect::<Vec<_>>().as_slice() {
                            ["integer"] => AttrType::Integer,
                            ["integer", "number"] | ["number"] => AttrType::Number,
                            other => {
                                return Err(err(
                                    ptr,
                                    format!(
                                        "a union of several types ({}) has no pg_evolve type",
                                        other.join(", ")
                                    ),
                                ))
                            }
                        };
                        Ok(AvroType {
                            attr: Attribute::of(attr_type),
                            nullable,
                            non_null_first,
                        })
                    }
                }
            }
            Value::String(name) => match name.as_str() {
                "null" => Err(err(ptr, "the type null alone has no pg_evolve type")),
                "boolean" => Ok(plain(AttrType::Boolean)),
                "int" | "long" => Ok(plain(AttrType::Integer)),
                "float" | "double" => Ok(plain(AttrType::Number)),
                "bytes" | "string" => Ok(plain(AttrType::String)),
                other => {
                    let full = [full_name(namespace, other), other.to_string()]
                        .into_iter()
                        .find(|n| self.named.contains_key(n))
                        .ok_or_else(|| {
                            err(ptr, format!("unknown type \"{other}\" (named types must be defined before they are used)"))
                        })?;
                    if self.building.contains(&full) {
                        return Err(err(
                            ptr,
                            format!("record \"{full}\" contains itself; a recursive type cannot be a pg_evolve definition"),
                        ));
                    }
                    let (def, def_ptr) = self.named[&full].clone();
                    let ns = full
                        .rsplit_once('.')
                        .map(|(ns, _)| ns)
                        .unwrap_or("")
                        .to_string();
                    self.read_type(&def, &def_ptr, &ns, depth)
                }
            },
            Value::Object(o) => {
                let tp = child(ptr, "type");
                let kind = match o.get("type") {
                    Some(Value::String(k)) => k.as_str(),
                    Some(nested @ (Value::Array(_) | Value::Object(_))) => {
                        return self.read_type(nested, &tp, namespace, depth)
                    }
                    None => return Err(err(&tp, "is required")),
                    Some(_) => return Err(err(&tp, "must be a string, an array or an object")),
                };
                let logical = o.get("logicalType").and_then(Value::as_str);
                match (kind, logical) {
                    ("long", Some(l)) if l.contains("timestamp") => {
                        return Ok(plain(AttrType::Timestamp))
                    }
                    ("int", Some("date")) => return Ok(plain(AttrType::Date)),
                    ("bytes" | "fixed", Some("decimal")) => {
                        if kind == "fixed" {
                            self.register(o, ptr, namespace)?;
                        }
                        return Ok(plain(AttrType::Number));
                    }
                    _ => {}
                }
                match kind {
                    "string" => match o.get(X_JSON).and_then(Value::as_str) {
                        Some("object") => Ok(plain(AttrType::Object)),
                        Some("array") => Ok(plain(AttrType::Array)),
                        _ => Ok(plain(AttrType::String)),
                    },
                    "record" | "error" => {
                        let (full, ns) = self.register(o, ptr, namespace)?;
                        self.building.push(full);
                        let result = self.record(o, ptr, &ns, depth);
                        self.building.pop();
                        result
                    }
                    "enum" | "fixed" => {
                        self.register(o, ptr, namespace)?;
                        Ok(plain(AttrType::String))
                    }
                    "map" => {
                        let vp = child(ptr, "values");
                        let v = o.get("values").ok_or_else(|| err(&vp, "is required"))?;
                        let mut a = Attribute::of(AttrType::Object);
                        a.values = Some(Box::new(
                            self.positional(o, v, X_VALUES, &vp, ptr, namespace, depth)?,
                        ));
                        Ok(AvroType {
                            attr: a,
                            nullable: false,
                            non_null_first: true,
                        })
                    }
                    "array" => {
                        let ip = child(ptr, "items");
                        let v = o.get("items").ok_or_else(|| err(&ip, "is required"))?;
                        let mut a = Attribute::of(AttrType::Array);
                        a.items = Some(Box::new(
                            self.positional(o, v, X_ITEMS, &ip, ptr, namespace, depth)?,
                        ));
                        Ok(AvroType {
                            attr: a,
                            nullable: false,
                            non_null_first: true,
                        })
                    }
                    other => {
                        self.read_type(&Value::String(other.to_string()), &tp, namespace, depth)
                    }
                }
            }
            _ => Err(err(
                ptr,
                "an Avro type must be a name, a union (array) or an object",
            )),
        }
    }

    fn record(
        &mut self,
        o: &Map<String, Value>,
        ptr: &str,
        namespace: &str,
        depth: usize,
    ) -> Result<AvroType, CoreError> {
        let fp = child(ptr, "fields");
        let fields = match o.get("fields") {
            Some(Value::Array(f)) => f,
            None => return Err(err(&fp, "is required")),
            Some(_) => return Err(err(&fp, "must be an array of fields")),
        };
        let mut names = Names::new(
            fields
                .iter()
                .filter_map(|f| f.get("name").and_then(Value::as_str)),
        );
        let mut a = Attribute::of(AttrType::Object);
        let mut alias_ptrs = BTreeMap::new();
        for (i, f) in fields.iter().enumerate() {
            let p = format!("{fp}/{i}");
            let fo = f
                .as_object()
                .ok_or_else(|| err(&p, "a field must be an object {name, type}"))?;
            let raw = match fo.get("name") {
                Some(Value::String(n)) => n.clone(),
                None => return Err(err(&child(&p, "name"), "is required")),
                Some(_) => return Err(err(&child(&p, "name"), "must be a string")),
            };
            let (name, alias) = names.name(&raw);
            if a.properties.contains_key(&name) {
                return Err(err(
                    &child(&p, "name"),
                    format!("a second field named \"{raw}\""),
                ));
            }
            let mut m = self.field(fo, &p, namespace, depth + 1)?;
            if let Some(alias) = alias {
                m.aliases.insert(0, alias);
            }
            alias_ptrs.insert(name.clone(), child(&p, "aliases"));
            a.properties.insert(name, m);
        }
        check_level(&a.properties, &alias_ptrs)?;
        Ok(AvroType {
            attr: a,
            nullable: false,
            non_null_first: true,
        })
    }

    /// An array's items or a map's values (`t` at `ptr`), with their facts from
    /// `x-evolve-items`/`x-evolve-values` of the container `o` at `container_ptr`.
    #[allow(clippy::too_many_arguments)]
    fn positional(
        &mut self,
        o: &Map<String, Value>,
        t: &Value,
        facts_key: &str,
        ptr: &str,
        container_ptr: &str,
        namespace: &str,
        depth: usize,
    ) -> Result<Attribute, CoreError> {
        self.budget.take(ptr, depth + 1)?;
        let mut a = self.read_type(t, ptr, namespace, depth + 1)?.attr;
        let fp = child(container_ptr, facts_key);
        match o.get(facts_key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(facts)) => {
                read_facts(&mut a, facts, &NATIVE_FACTS, &fp)?;
                set_default(&mut a, facts.get("default"), &child(&fp, "default"))?;
            }
            Some(_) => return Err(err(&fp, "must be an object of attribute facts")),
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn def(v: Value) -> Definition {
        Definition::parse_input(&v).unwrap()
    }

    /// A definition using every feature: each type, nesting, maps, arrays of records, facts,
    /// defaults, relationships with and without key.
    fn everything() -> Definition {
        def(json!({
            "entity_type": "order",
            "description": "An order",
            "attributes": {
                "s": {"type": "string", "description": "text", "default": "x", "aliases": ["S", "Beak Length (mm)"]},
                "n": {"type": "number", "merge_policy": "max", "default": 1.5},
                "i": {"type": "integer", "required": true, "default": 0},
                "b": {"type": "boolean", "merge_policy": "source_priority", "source_priority": ["crm", "web"]},
                "t": {"type": "timestamp", "default": "2024-01-31T12:00:00Z"},
                "t2": {"type": "timestamp", "default": 1706702400000_i64},
                "d": {"type": "date", "default": "2024-02-29"},
                "o": {"type": "object", "default": {"k": 1}},
                "a": {"type": "array", "merge_policy": "union", "default": [1, "x"]},
                "customer": {"type": "object", "required": true, "properties": {
                    "name": {"type": "string", "required": true},
                    "address": {"type": "object", "properties": {
                        "city": {"type": "string"}, "zip": {"type": "string", "aliases": ["postcode"]}
                    }}
                }},
                "tags": {"type": "object", "values": {"type": "integer", "description": "a count", "required": true, "default": 1}},
                "lines": {"type": "array", "items": {"type": "object", "description": "a line", "properties": {
                    "sku": {"type": "string", "required": true}, "qty": {"type": "integer"}
                }}},
                "matrix": {"type": "array", "items": {"type": "array", "items": "number"}}
            },
            "relationships": {
                "shop": {"target": "shop", "description": "where"},
                "buyer": {"target": "person", "key": "id"}
            }
        }))
    }

    fn attr_schema(attr: Value) -> Value {
        let d = def(json!({"entity_type": "e", "attributes": {"a": attr}}));
        to_json_schema(&d)["properties"]["a"].clone()
    }

    #[test]
    fn json_schema_of_each_type() {
        let cases = [
            (
                json!({"type": "string"}),
                json!({"type": ["string", "null"]}),
            ),
            (
                json!({"type": "number"}),
                json!({"type": ["number", "null"]}),
            ),
            (
                json!({"type": "integer"}),
                json!({"type": ["integer", "null"]}),
            ),
            (
                json!({"type": "boolean"}),
                json!({"type": ["boolean", "null"]}),
            ),
            (
                json!({"type": "timestamp"}),
                json!({"type": ["string", "integer", "null"], "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
            ),
            (
                json!({"type": "date"}),
                json!({"type": ["string", "null"], "format": "date", "pattern": DATE_PATTERN}),
            ),
            (
                json!({"type": "object"}),
                json!({"type": ["object", "null"]}),
            ),
            (json!({"type": "array"}), json!({"type": ["array", "null"]})),
            (
                json!({"type": "object", "properties": {"x": {"type": "string", "required": true}, "y": {"type": "integer"}}}),
                json!({"type": ["object", "null"], "properties": {
                    "x": {"type": ["string", "null"]}, "y": {"type": ["integer", "null"]}
                }, "required": ["x"]}),
            ),
            (
                json!({"type": "object", "values": {"type": "number", "required": true}}),
                json!({"type": ["object", "null"], "additionalProperties": {"type": ["number", "null"], "x-evolve-required": true}}),
            ),
            (
                json!({"type": "array", "items": "string"}),
                json!({"type": ["array", "null"], "items": {"type": ["string", "null"]}}),
            ),
            (
                json!({"type": "string", "description": "d", "default": "x", "merge_policy": "source_priority",
                       "source_priority": ["a"], "aliases": ["b c"]}),
                json!({"description": "d", "type": ["string", "null"], "default": "x",
                       "x-evolve-merge-policy": "source_priority", "x-evolve-source-priority": ["a"],
                       "x-evolve-aliases": ["b c"]}),
            ),
        ];
        for (attr, want) in cases {
            assert_eq!(attr_schema(attr.clone()), want, "{attr}");
        }
    }

    #[test]
    fn json_schema_document() {
        let d = everything();
        let s = to_json_schema(&d);
        assert_eq!(s["$schema"], JSON_SCHEMA_DIALECT);
        assert_eq!(s["title"], "order");
        assert_eq!(s["description"], "An order");
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], json!(["customer", "i"]));
        assert_eq!(s["properties"]["customer"]["required"], json!(["name"]));
        assert_eq!(
            s["properties"]["shop"],
            json!({"description": "where", "type": ["string", "number", "null"],
                   "x-evolve-relationship": {"target": "shop"}})
        );
        assert_eq!(
            s["properties"]["buyer"],
            json!({"anyOf": [
                {"type": ["string", "number", "null"]},
                {"type": "object", "properties": {"id": {"type": ["string", "number"]}}, "required": ["id"]}
            ], "x-evolve-relationship": {"target": "person", "key": "id"}})
        );
        assert_eq!(
            s["properties"]["lines"]["items"]["properties"]["sku"],
            json!({"type": ["string", "null"]})
        );
        assert_eq!(
            s["properties"]["lines"]["items"]["required"],
            json!(["sku"])
        );
        assert_eq!(from_json_schema(&s, None), Ok(d.clone()));
        // Through text too (key order and numbers kept).
        let text = serde_json::to_string(&s).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(from_json_schema(&back, None), Ok(d));
    }

    #[test]
    fn json_schema_import_entity_type() {
        let s = to_json_schema(&everything());
        assert_eq!(
            from_json_schema(&s, Some("sale")).unwrap().entity_type,
            "sale"
        );
        let mut t = s.clone();
        t["title"] = json!("Purchase Order");
        assert_eq!(
            from_json_schema(&t, None).unwrap().entity_type,
            "purchase_order"
        );
        t.as_object_mut().unwrap().remove("title");
        assert_eq!(
            from_json_schema(&t, None),
            Err(CoreError::def(
                "/title",
                "is required when no entity type is given (it names the entity type)"
            ))
        );
        assert!(matches!(
            from_json_schema(&s, Some("bad name")),
            Err(CoreError::InvalidArgument {
                what: "entity type",
                ..
            })
        ));
    }

    /// Third-party JSON Schema and the definition each reads as.
    #[test]
    fn json_schema_third_party() {
        let cases = [
            (
                "type arrays and null branches",
                json!({"title": "e", "type": "object", "properties": {
                    "a": {"type": ["string", "null"]},
                    "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "bee"},
                    "c": {"oneOf": [{"type": "null"}, {"type": "number", "minimum": 0}]},
                    "d": {"type": ["integer", "number"]},
                    "e": {"type": "boolean", "examples": [true], "deprecated": true}
                }, "required": ["a"], "additionalProperties": false}),
                json!({"entity_type": "e", "attributes": {
                    "a": {"type": "string", "required": true},
                    "b": {"type": "integer", "description": "bee"},
                    "c": {"type": "number"},
                    "d": {"type": "number"},
                    "e": {"type": "boolean"}
                }}),
            ),
            (
                "formats and timestamps",
                json!({"title": "e", "properties": {
                    "t": {"type": "string", "format": "date-time"},
                    "t2": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}, {"type": "null"}]},
                    "d": {"type": "string", "format": "date"},
                    "u": {"type": "string", "format": "uri"},
                    "f": {"format": "date"}
                }}),
                json!({"entity_type": "e", "attributes": {
                    "t": {"type": "timestamp"}, "t2": {"type": "timestamp"},
                    "d": {"type": "date"}, "u": {"type": "string"}, "f": {"type": "date"}
                }}),
            ),
            (
                "refs to $defs, definitions, anchors and $id",
                json!({"$id": "https://example.com/e.json", "title": "e", "type": "object",
                "$defs": {
                    "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                    "when": {"$ref": "#/definitions/ts"},
                    "tag": {"$anchor": "tag", "type": "string"}
                },
                "definitions": {"ts": {"type": "string", "format": "date-time"}},
                "properties": {
                    "home": {"$ref": "#/$defs/address", "description": "home address"},
                    "work": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]},
                    "at": {"$ref": "#/$defs/when"},
                    "tags": {"type": "array", "items": {"$ref": "#tag"}},
                    "again": {"$ref": "https://example.com/e.json#/$defs/tag"},
                    "pct": {"$ref": "#/%24defs/tag"}
                }}),
                json!({"entity_type": "e", "attributes": {
                    "home": {"type": "object", "description": "home address", "properties": {"city": {"type": "string", "required": true}}},
                    "work": {"type": "object", "properties": {"city": {"type": "string", "required": true}}},
                    "at": {"type": "timestamp"},
                    "tags": {"type": "array", "items": "string"},
                    "again": {"type": "string"},
                    "pct": {"type": "string"}
                }}),
            ),
            (
                "maps, arrays, opaque values, inferred types",
                json!({"title": "e", "properties": {
                    "m": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "m2": {"additionalProperties": {"type": "string"}},
                    "o": {"type": "object", "additionalProperties": true},
                    "o2": {"type": "object", "properties": {}},
                    "l": {"type": "array", "items": true},
                    "l2": {"items": {"type": "array", "items": {"type": "number"}}},
                    "tuple": {"type": "array", "items": [{"type": "string"}]},
                    "color": {"enum": ["red", "green", null]},
                    "n": {"const": 3},
                    "mix": {"enum": [1, 2.5]}
                }}),
                json!({"entity_type": "e", "attributes": {
                    "m": {"type": "object", "values": "integer"},
                    "m2": {"type": "object", "values": "string"},
                    "o": {"type": "object"}, "o2": {"type": "object"},
                    "l": {"type": "array"},
                    "l2": {"type": "array", "items": {"type": "array", "items": "number"}},
                    "tuple": {"type": "array"},
                    "color": {"type": "string"}, "n": {"type": "integer"}, "mix": {"type": "number"}
                }}),
            ),
            (
                "names made safe, originals kept as aliases",
                json!({"title": "Sea Bird", "properties": {
                    "Beak Length (mm)": {"type": "number"},
                    "beak-length-mm": {"type": "number"},
                    "beak_length_mm": {"type": "integer"},
                    "nest": {"type": "object", "properties": {"1st egg": {"type": "string", "format": "date"}}, "required": ["1st egg"]}
                }}),
                json!({"entity_type": "sea_bird", "attributes": {
                    "beak_length_mm_2": {"type": "number", "aliases": ["Beak Length (mm)"]},
                    "beak_length_mm_3": {"type": "number", "aliases": ["beak-length-mm"]},
                    "beak_length_mm": {"type": "integer"},
                    "nest": {"type": "object", "properties": {"f_1st_egg": {"type": "date", "required": true, "aliases": ["1st egg"]}}}
                }}),
            ),
            (
                "defaults and descriptions",
                json!({"title": "e", "description": "E", "properties": {
                    "a": {"type": "integer", "default": 3, "description": "three", "title": "ignored"},
                    "b": {"type": "string", "default": null}
                }}),
                json!({"entity_type": "e", "description": "E", "attributes": {
                    "a": {"type": "integer", "default": 3, "description": "three"},
                    "b": {"type": "string"}
                }}),
            ),
            (
                "a root $ref",
                json!({"title": "e", "$ref": "#/$defs/root", "$defs": {"root": {"type": "object", "properties": {"x": {"type": "string"}}}}}),
                json!({"entity_type": "e", "attributes": {"x": {"type": "string"}}}),
            ),
        ];
        for (what, schema, want) in cases {
            assert_eq!(from_json_schema(&schema, None), Ok(def(want)), "{what}");
        }
    }

    fn error_path(r: Result<Definition, CoreError>) -> (String, String) {
        match r {
            Err(CoreError::InvalidDefinition { path, message }) => (path, message),
            other => panic!("expected an invalid definition, got {other:?}"),
        }
    }

    #[test]
    fn json_schema_errors_name_pointers() {
        let cases = [
            (json!([1]), "/", "must be a JSON object"),
            (
                json!({"title": "e", "type": "string"}),
                "/type",
                "must describe an object",
            ),
            (
                json!({"title": "e", "properties": {"a": {"$ref": "other.json#/x"}}}),
                "/properties/a/$ref",
                "not a reference within this document",
            ),
            (
                json!({"title": "e", "properties": {"a": {"$ref": "#/$defs/none"}}}),
                "/properties/a/$ref",
                "points at nothing",
            ),
            (
                json!({"title": "e", "properties": {"a": {"$ref": "#nowhere"}}}),
                "/properties/a/$ref",
                "no \"$anchor\"",
            ),
            (
                json!({"title": "e", "$defs": {"node": {"type": "object", "properties": {
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
                    "properties": {"tree": {"$ref": "#/$defs/node"}}}),
                "/$defs/node/properties/children/items/$ref",
                "recursive type",
            ),
            (
                json!({"title": "e", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                    "properties": {"x": {"$ref": "#/$defs/a"}}}),
                "/$defs/b/$ref",
                "refers back",
            ),
            (
                json!({"title": "e", "properties": {"a": {"type": ["string", "integer"]}}}),
                "/properties/a/type",
                "several types (integer, string)",
            ),
            (
                json!({"title": "e", "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 1}]}}}),
                "/properties/a/allOf",
                "allOf with several schemas",
            ),
            (
                json!({"title": "e", "properties": {"a": {"description": "no type"}}}),
                "/properties/a",
                "give it a \"type\"",
            ),
            (
                json!({"title": "e", "properties": {"a": true}}),
                "/properties/a",
                "boolean schema",
            ),
            (
                json!({"title": "e", "properties": {"a": {"type": "null"}}}),
                "/properties/a",
                "only null",
            ),
            (
                json!({"title": "e", "properties": {"a": {"type": "strng"}}}),
                "/properties/a/type",
                "unknown type \"strng\"",
            ),
            (
                json!({"title": "e", "properties": {"o": {"type": "object", "properties": {
                    "a": {"type": "integer", "default": "x"}}}}}),
                "/properties/o/properties/a/default",
                "does not fit an attribute of type integer",
            ),
            (
                json!({"title": "e", "properties": {"a": {"type": "string", "x-evolve-merge-policy": "best"}}}),
                "/properties/a/x-evolve-merge-policy",
                "unknown merge policy",
            ),
            (
                json!({"title": "e", "properties": {"a": {"type": "string", "x-evolve-merge-policy": "source_priority"}}}),
                "/properties/a/x-evolve-source-priority",
                "non-empty list",
            ),
            (
                json!({"title": "e", "properties": {"a": {"type": "string", "x-evolve-aliases": ["b"]}, "b": {"type": "string"}}}),
                "/properties/a/x-evolve-aliases",
                "already an attribute name",
            ),
            (
                json!({"title": "e", "properties": {"o": {"type": "object", "properties": {
                    "r": {"type": "string", "x-evolve-relationship": {"target": "x"}}}}}}),
                "/properties/o/properties/r/x-evolve-relationship",
                "top level only",
            ),
            (
                json!({"title": "e", "properties": {"r": {"x-evolve-relationship": {"target": "not valid"}}}}),
                "/properties/r/x-evolve-relationship/target",
                "must start with a letter",
            ),
            (
                json!({"title": "e", "properties": {"a": {"type": "string"}}, "required": [1]}),
                "/required/0",
                "must be a string",
            ),
        ];
        for (schema, path, message) in cases {
            let (p, m) = error_path(from_json_schema(&schema, None));
            assert_eq!(p, path, "{schema}: {m}");
            assert!(m.contains(message), "{schema}: {m}");
        }
        let mut deep = json!({"type": "string"});
        for _ in 0..200 {
            deep = json!({"type": "array", "items": deep});
        }
        assert!(matches!(
            from_json_schema(&json!({"title": "e", "properties": {"a": deep}}), None),
            Err(CoreError::TooDeep { .. })
        ));
        // Exponential references are bounded.
        let mut defs = Map::new();
        defs.insert("l0".into(), json!({"type": "string"}));
        for i in 1..20 {
            let r = json!({"$ref": format!("#/$defs/l{}", i - 1)});
            defs.insert(
                format!("l{i}"),
                json!({"type": "object", "properties": {"a": r, "b": r, "c": r}}),
            );
        }
        let bomb =
            json!({"title": "e", "$defs": defs, "properties": {"x": {"$ref": "#/$defs/l19"}}});
        let (_, m) = error_path(from_json_schema(&bomb, None));
        assert!(m.contains("more than 10000 attributes"), "{m}");
    }

    #[test]
    fn avro_of_each_type() {
        let cases = [
            (json!({"type": "string"}), json!("string")),
            (json!({"type": "number"}), json!("double")),
            (json!({"type": "integer"}), json!("long")),
            (json!({"type": "boolean"}), json!("boolean")),
            (
                json!({"type": "timestamp"}),
                json!({"type": "long", "logicalType": "timestamp-millis"}),
            ),
            (
                json!({"type": "date"}),
                json!({"type": "int", "logicalType": "date"}),
            ),
            (
                json!({"type": "object"}),
                json!({"type": "string", "x-evolve-json": "object"}),
            ),
            (
                json!({"type": "array"}),
                json!({"type": "string", "x-evolve-json": "array"}),
            ),
            (
                json!({"type": "object", "values": "integer"}),
                json!({"type": "map", "values": ["null", "long"]}),
            ),
            (
                json!({"type": "array", "items": {"type": "string", "description": "tag"}}),
                json!({"type": "array", "items": ["null", "string"], "x-evolve-items": {"description": "tag"}}),
            ),
            (
                json!({"type": "object", "properties": {"x": {"type": "integer"}}}),
                json!({"type": "record", "name": "e_a", "fields": [
                    {"name": "x", "type": ["null", "long"], "default": null}
                ]}),
            ),
        ];
        for (attr, want) in cases {
            let d = def(json!({"entity_type": "e", "attributes": {"a": attr}}));
            let avro = to_avro(&d, "ns");
            assert_eq!(avro["fields"][0]["type"], json!(["null", want]), "{attr}");
            assert_eq!(from_avro(&avro, None), Ok(d));
        }
    }

    #[test]
    fn avro_document() {
        let d = everything();
        let a = to_avro(&d, "shop.v1");
        assert_eq!(a["type"], "record");
        assert_eq!(a["name"], "order");
        assert_eq!(a["namespace"], "shop.v1");
        assert_eq!(a["doc"], "An order");
        let field = |name: &str| {
            a["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .unwrap()
                .clone()
        };
        // A default Avro encodes comes first in the union.
        assert_eq!(
            field("s"),
            json!({"name": "s", "type": ["string", "null"], "doc": "text", "default": "x",
                   "aliases": ["S"], "x-evolve-aliases": ["S", "Beak Length (mm)"]})
        );
        assert_eq!(field("d")["default"], json!(19782));
        assert!(field("d").get(X_DEFAULT).is_none());
        assert_eq!(field("t")["type"][1], "null");
        assert_eq!(field("t")["default"], json!(1_706_702_400_000_i64));
        assert_eq!(field("t")[X_DEFAULT], "2024-01-31T12:00:00Z");
        assert!(field("t2").get(X_DEFAULT).is_none());
        // Object and array defaults stay in x-evolve-default, the union null-first.
        assert_eq!(field("o")["type"][0], "null");
        assert_eq!(field("o")["default"], Value::Null);
        assert_eq!(field("o")[X_DEFAULT], json!({"k": 1}));
        assert_eq!(field("i")[X_REQUIRED], true);
        assert_eq!(field("b")[X_SOURCE_PRIORITY], json!(["crm", "web"]));
        assert_eq!(field("customer")["type"][1]["name"], "order_customer");
        assert_eq!(
            field("customer")["type"][1]["fields"][0]["type"][1]["name"],
            "order_customer_address"
        );
        assert_eq!(
            field("lines")["type"][1]["items"][1]["name"],
            "order_lines_item"
        );
        assert_eq!(
            field("tags")["type"][1],
            json!({"type": "map", "values": ["null", "long"], "x-evolve-values":
                {"description": "a count", "required": true, "default": 1}})
        );
        assert_eq!(
            field("buyer"),
            json!({"name": "buyer", "type": ["null", "string", "long", "double"], "default": null,
                   "x-evolve-relationship": {"target": "person", "key": "id"}})
        );
        assert_eq!(from_avro(&a, None), Ok(d.clone()));
        let no_ns = to_avro(&d, "");
        assert!(no_ns.get("namespace").is_none());
        assert_eq!(from_avro(&no_ns, None), Ok(d));
    }

    #[test]
    fn avro_record_names_are_unique() {
        let d = def(json!({"entity_type": "e", "attributes": {
            "a_b": {"type": "object", "properties": {"c": {"type": "object", "properties": {"x": {"type": "string"}}}}},
            "a": {"type": "object", "properties": {"b_c": {"type": "object", "properties": {"y": {"type": "string"}}}}}
        }}));
        let a = to_avro(&d, "");
        let mut names = Vec::new();
        fn collect(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if o.get("type") == Some(&json!("record")) {
                        out.push(o["name"].as_str().unwrap().to_string());
                    }
                    o.values().for_each(|c| collect(c, out));
                }
                Value::Array(a) => a.iter().for_each(|c| collect(c, out)),
                _ => {}
            }
        }
        collect(&a, &mut names);
        let unique: BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.contains(&"e_a_b_c_2".to_string()), "{names:?}");
        assert_eq!(from_avro(&a, None), Ok(d));
    }

    #[test]
    fn avro_third_party() {
        let schema = json!({
            "type": "record", "name": "com.example.User", "doc": "A user",
            "fields": [
                {"name": "id", "type": "long"},
                {"name": "name", "type": ["null", "string"], "default": null, "doc": "full name", "aliases": ["fullName"]},
                {"name": "score", "type": ["double", "null"], "default": 0.5},
                {"name": "age", "type": "int", "default": 0},
                {"name": "n", "type": ["int", "long", "null"]},
                {"name": "x", "type": ["null", "float", "long"]},
                {"name": "born", "type": {"type": "int", "logicalType": "date"}, "default": 0},
                {"name": "seen", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
                {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}, "default": 5},
                {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
                {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
                {"name": "raw", "type": "bytes"},
                {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
                {"name": "hash", "type": {"type": "fixed", "name": "Md5", "size": 16}},
                {"name": "home", "type": {"type": "record", "name": "Address", "namespace": "com.example.geo", "fields": [
                    {"name": "city", "type": "string"}
                ]}},
                {"name": "work", "type": ["null", "com.example.geo.Address"]},
                {"name": "kind2", "type": "Kind"},
                {"name": "labels", "type": {"type": "map", "values": "string"}},
                {"name": "friends", "type": {"type": "array", "items": "long"}, "default": []},
                {"name": "a_very_long_field_name_that_goes_on_and_on_beyond_sixty_three_bytes", "type": "string"}
            ]
        });
        let want = def(json!({
            "entity_type": "User", "description": "A user",
            "attributes": {
                "id": {"type": "integer", "required": true},
                "name": {"type": "string", "description": "full name", "aliases": ["fullName"]},
                "score": {"type": "number", "default": 0.5},
                "age": {"type": "integer", "default": 0},
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "born": {"type": "date", "default": "1970-01-01"},
                "seen": {"type": "timestamp"},
                "local": {"type": "timestamp", "default": 5},
                "price": {"type": "number", "required": true},
                "uid": {"type": "string", "required": true},
                "raw": {"type": "string", "required": true},
                "kind": {"type": "string", "required": true},
                "hash": {"type": "string", "required": true},
                "home": {"type": "object", "required": true, "properties": {"city": {"type": "string", "required": true}}},
                "work": {"type": "object", "properties": {"city": {"type": "string", "required": true}}},
                "kind2": {"type": "string", "required": true},
                "labels": {"type": "object", "required": true, "values": {"type": "string"}},
                "friends": {"type": "array", "items": "integer", "default": []},
                "a_very_long_field_name_that_goes_on_and_on_beyond_sixty_three_b": {"type": "string", "required": true,
                    "aliases": ["a_very_long_field_name_that_goes_on_and_on_beyond_sixty_three_bytes"]}
            }
        }));
        assert_eq!(from_avro(&schema, None), Ok(want));
        assert_eq!(
            from_avro(&schema, Some("member")).unwrap().entity_type,
            "member"
        );
    }

    #[test]
    fn avro_errors_name_pointers() {
        let rec = |fields: Value| json!({"type": "record", "name": "e", "fields": fields});
        let cases = [
            (json!("string"), "/", "record schema object"),
            (
                json!({"type": "enum", "name": "e", "symbols": []}),
                "/type",
                "must be \"record\"",
            ),
            (
                json!({"type": "record", "fields": []}),
                "/name",
                "is required",
            ),
            (
                json!({"type": "record", "name": "e"}),
                "/fields",
                "is required",
            ),
            (
                rec(json!([{"type": "string"}])),
                "/fields/0/name",
                "is required",
            ),
            (rec(json!([{"name": "a"}])), "/fields/0/type", "is required"),
            (
                rec(json!([{"name": "a", "type": "Nope"}])),
                "/fields/0/type",
                "unknown type \"Nope\"",
            ),
            (
                rec(json!([{"name": "a", "type": ["string", "int"]}])),
                "/fields/0/type",
                "several types",
            ),
            (
                rec(json!([{"name": "a", "type": "null"}])),
                "/fields/0/type",
                "null alone",
            ),
            (
                rec(json!([{"name": "a", "type": "string"}, {"name": "a", "type": "int"}])),
                "/fields/1/name",
                "a second field",
            ),
            (
                rec(json!([{"name": "me", "type": ["null", "e"]}])),
                "/fields/0/type/1",
                "contains itself",
            ),
            (
                rec(
                    json!([{"name": "n", "type": {"type": "record", "name": "Node", "fields": [
                    {"name": "next", "type": ["null", "Node"]}]}}]),
                ),
                "/fields/0/type/fields/0/type/1",
                "contains itself",
            ),
            (
                rec(json!([{"name": "a", "type": "int", "x-evolve-merge-policy": "most"}])),
                "/fields/0/x-evolve-merge-policy",
                "unknown merge policy",
            ),
            (
                rec(json!([{"name": "a", "type": "int", "default": "x"}])),
                "/fields/0/default",
                "does not fit",
            ),
            (
                rec(
                    json!([{"name": "a", "type": {"type": "array", "items": "int", "x-evolve-items": {"default": "x"}}}]),
                ),
                "/fields/0/type/x-evolve-items/default",
                "does not fit",
            ),
            (
                rec(json!([{"name": "r", "type": "string", "x-evolve-relationship": {}}])),
                "/fields/0/x-evolve-relationship/target",
                "is required",
            ),
        ];
        for (schema, path, message) in cases {
            let (p, m) = error_path(from_avro(&schema, None));
            assert_eq!(p, path, "{schema}: {m}");
            assert!(m.contains(message), "{schema}: {m}");
        }
    }

    #[test]
    fn formats_dispatch() {
        let d = everything();
        for name in [
            "jsonschema",
            "JSONSchema",
            "json_schema",
            "json-schema",
            "Json-Schema",
        ] {
            let doc = export(&d, name).unwrap();
            assert_eq!(doc["$schema"], JSON_SCHEMA_DIALECT);
            assert_eq!(import(&doc, name, None), Ok(d.clone()));
        }
        for name in ["avro", "AVRO"] {
            let doc = export(&d, name).unwrap();
            assert_eq!(doc["namespace"], DEFAULT_AVRO_NAMESPACE);
            assert_eq!(import(&doc, name, None), Ok(d.clone()));
        }
        for bad in ["xml", "", "proto"] {
            match export(&d, bad) {
                Err(e @ CoreError::InvalidArgument { what: "format", .. }) => {
                    let m = e.to_string();
                    assert!(m.contains("jsonschema") && m.contains("avro"), "{m}");
                    assert_eq!(e.sqlstate().code(), "22023");
                }
                other => panic!("{other:?}"),
            }
            assert!(import(&json!({}), bad, None).is_err());
        }
    }

    #[test]
    fn calendar_conversions() {
        for (date, days) in [
            ("1970-01-01", 0),
            ("1969-12-31", -1),
            ("2000-03-01", 11017),
            ("2024-02-29", 19782),
            ("0001-01-01", -719_162),
            ("9999-12-31", 2_932_896),
        ] {
            let (y, m, d) = (&date[0..4], &date[5..7], &date[8..10]);
            assert_eq!(
                days_from_civil(digits(y).unwrap(), digits(m).unwrap(), digits(d).unwrap()),
                days,
                "{date}"
            );
            assert_eq!(civil_from_days(days).as_deref(), Some(date));
        }
        assert_eq!(civil_from_days(-719_163), None);
        for (ts, ms) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2024-01-31T12:00:00Z", 1_706_702_400_000),
            ("2024-01-31 12:00", 1_706_702_400_000),
            ("2024-01-31T14:00:00.1234+02:00", 1_706_702_400_123),
            ("2024-01-31T11:30:00.5-00:30", 1_706_702_400_500),
        ] {
            assert_eq!(timestamp_millis(ts), Some(ms), "{ts}");
        }
        assert_eq!(timestamp_millis("2024-01-31"), None);
    }

    // -----------------------------------------------------------------------------------------
    // Round trips of generated definitions

    fn name() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_]{0,6}"
    }

    fn alias() -> impl Strategy<Value = String> {
        prop_oneof![name(), "[A-Za-z0-9 ()é/~.-]{1,10}"]
    }

    fn number() -> BoxedStrategy<Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            Just(serde_json::from_str("123456789012345678901234567890.5").unwrap()),
        ]
        .boxed()
    }

    fn date() -> impl Strategy<Value = String> {
        (1u32..=9999, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
    }

    fn default_for(t: AttrType) -> BoxedStrategy<Option<Value>> {
        let v: BoxedStrategy<Value> = match t {
            AttrType::String => ".{0,8}".prop_map(Value::String).boxed(),
            AttrType::Number => number(),
            AttrType::Integer => prop_oneof![
                any::<i64>().prop_map(Value::from),
                Just(serde_json::from_str("123456789012345678901234567890").unwrap()),
            ]
            .boxed(),
            AttrType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
            AttrType::Timestamp => prop_oneof![
                (0i64..4_000_000_000_000).prop_map(Value::from),
                (
                    date(),
                    0u32..24,
                    0u32..60,
                    prop::sample::select(vec!["Z", "", "+02:00", ":07.5-03:30", ":07"])
                )
                    .prop_map(|(d, h, m, z)| Value::String(format!("{d}T{h:02}:{m:02}{z}"))),
            ]
            .boxed(),
            AttrType::Date => date().prop_map(Value::String).boxed(),
            AttrType::Object => Just(json!({"k": [1, "x"], "n": null})).boxed(),
            AttrType::Array => Just(json!([1, "two", {"three": 3}])).boxed(),
        };
        prop::option::weighted(0.3, v).boxed()
    }

    /// Decorates a typed attribute with random facts.
    fn facts(a: Attribute) -> BoxedStrategy<Attribute> {
        let t = a.attr_type;
        (
            Just(a),
            prop::option::weighted(0.3, ".{0,12}"),
            prop::bool::weighted(0.3),
            prop::sample::select(MergePolicy::ALL.to_vec()),
            prop::collection::vec(name(), 0..3),
            prop::collection::vec(alias(), 0..3),
            default_for(t),
        )
            .prop_map(
                |(mut a, description, required, policy, sources, aliases, default)| {
                    a.description = description;
                    a.required = required;
                    a.merge_policy = policy;
                    a.source_priority = sources;
                    if policy == MergePolicy::SourcePriority && a.source_priority.is_empty() {
                        a.source_priority.push("primary".into());
                    }
                    a.aliases = aliases;
                    a.default = default;
                    a
                },
            )
            .boxed()
    }

    /// Drops aliases that name a sibling (or the attribute itself), as parsing requires.
    fn fix_level(mut level: BTreeMap<String, Attribute>) -> BTreeMap<String, Attribute> {
        let names: BTreeSet<String> = level.keys().cloned().collect();
        for a in level.values_mut() {
            a.aliases.retain(|x| !names.contains(x));
        }
        level
    }

    fn attribute() -> impl Strategy<Value = Attribute> {
        let leaf =
            prop::sample::select(AttrType::ALL.to_vec()).prop_flat_map(|t| facts(Attribute::of(t)));
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::btree_map(name(), inner.clone(), 1..4).prop_flat_map(|p| {
                    let mut a = Attribute::of(AttrType::Object);
                    a.properties = fix_level(p);
                    facts(a)
                }),
                inner.clone().prop_flat_map(|v| {
                    let mut a = Attribute::of(AttrType::Object);
                    a.values = Some(Box::new(v));
                    facts(a)
                }),
                inner.prop_flat_map(|i| {
                    let mut a = Attribute::of(AttrType::Array);
                    a.items = Some(Box::new(i));
                    facts(a)
                }),
            ]
        })
    }

    fn relationship() -> impl Strategy<Value = Relationship> {
        (
            name(),
            prop::option::of(".{0,8}"),
            prop::option::of("[a-z ./]{1,6}"),
        )
            .prop_map(|(target, description, key)| Relationship {
                target,
                description,
                key,
            })
    }

    fn definition() -> impl Strategy<Value = Definition> {
        (
            name(),
            prop::option::of(".{0,12}"),
            prop::collection::btree_map(name(), attribute(), 0..5),
            prop::collection::btree_map(name(), relationship(), 0..3),
        )
            .prop_map(
                |(entity_type, description, attributes, mut relationships)| {
                    relationships.retain(|n, _| !attributes.contains_key(n));
                    Definition {
                        entity_type,
                        description,
                        attributes: fix_level(attributes),
                        relationships,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn generated_definitions_are_valid(d in definition()) {
            prop_assert_eq!(Definition::parse_input(&d.to_json()), Ok(d));
        }

        #[test]
        fn json_schema_round_trip(d in definition()) {
            let doc = to_json_schema(&d);
            prop_assert_eq!(from_json_schema(&doc, None), Ok(d.clone()));
            let text = serde_json::to_string(&doc).unwrap();
            let reread: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(from_json_schema(&reread, None), Ok(d));
        }

        #[test]
        fn avro_round_trip(d in definition(), ns in prop_oneof![Just(String::new()), Just("a.b".to_string())]) {
            let doc = to_avro(&d, &ns);
            prop_assert_eq!(from_avro(&doc, None), Ok(d.clone()));
            let text = serde_json::to_string(&doc).unwrap();
            let reread: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(from_avro(&reread, None), Ok(d));
        }
    }
}
