//! The schema definition model: parsing with path-aware validation, canonical JSON, the merge of
//! a global schema with a user's extension, and JSON merge patches.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::named::named_enum;
use crate::path::{Path, Segment};
use crate::validate::{check_name, optional_string, reject_unknown, required_name};

/// Largest definition document accepted, in bytes of JSON text.
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;
/// Deepest nesting accepted in a definition (defaults may hold objects).
pub const MAX_DEFINITION_DEPTH: usize = 32;

named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum AttrType {
        String = "string",
        Number = "number",
        Integer = "integer",
        Boolean = "boolean",
        Timestamp = "timestamp",
        Date = "date",
        Object = "object",
        Array = "array",
    }
}

impl AttrType {
    /// The PostgreSQL column type a typed projection uses for this attribute.
    pub fn sql_type(self) -> &'static str {
        match self {
            AttrType::String => "text",
            AttrType::Number => "double precision",
            AttrType::Integer => "bigint",
            AttrType::Boolean => "boolean",
            AttrType::Timestamp => "timestamptz",
            AttrType::Date => "date",
            AttrType::Object | AttrType::Array => "jsonb",
        }
    }
}

named_enum! {
    /// How observations of one attribute reduce into the snapshot value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum MergePolicy {
        /// The most recent observation wins (by observation order).
        #[default]
        LastWriteWins = "last_write_wins",
        /// The observation from the highest-ranked source wins; ties go to the most recent.
        SourcePriority = "source_priority",
        /// The largest value wins.
        Max = "max",
        /// The smallest value wins.
        Min = "min",
        /// The set union of all values seen (arrays are unioned element-wise).
        Union = "union",
    }
}

/// Longest alias (a payload key) accepted, in bytes.
pub const MAX_ALIAS_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub attr_type: AttrType,
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<Value>,
    pub merge_policy: MergePolicy,
    /// For `source_priority`: sources from highest to lowest rank.
    pub source_priority: Vec<String>,
    /// Former names of this attribute (a rename keeps the old name here).
    pub aliases: Vec<String>,
    /// For an `object`: its declared members, each an attribute (recursively). Empty: the
    /// object is opaque and kept whole.
    pub properties: BTreeMap<String, Attribute>,
    /// For an `array`: what its elements are (a type, or an object with properties). `None`:
    /// any elements.
    pub items: Option<Box<Attribute>>,
    /// For an `object` used as a map (its keys are data: ids, dates, hashes): what every member
    /// is. A map is observed whole, never walked into.
    pub values: Option<Box<Attribute>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relationship {
    pub target: String,
    pub description: Option<String>,
    /// When payloads embed the related entity as an object (`"repo": {"id": 7, "name": …}`):
    /// the member holding its key. The object is ingested as an entity of `target` and the
    /// relationship observes its key.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub entity_type: String,
    pub description: Option<String>,
    pub attributes: BTreeMap<String, Attribute>,
    pub relationships: BTreeMap<String, Relationship>,
}

/// Keys the effective-schema output adds; accepted and ignored on input so that the output of
/// `active_schema` can be edited and registered again.
const INFORMATIONAL_KEYS: [&str; 3] = ["version", "user_id", "user_version"];

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn string_list(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<String>, CoreError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(CoreError::def(
                    format!("{path}/{key}/{i}"),
                    "must be a string",
                )),
            })
            .collect(),
        Some(_) => Err(CoreError::def(
            format!("{path}/{key}"),
            "must be an array of strings",
        )),
    }
}

/// Checks the size and nesting limits of any document pg_evolve accepts.
pub fn check_limits(what: &'static str, doc: &Value, text_len: usize) -> Result<(), CoreError> {
    if text_len > MAX_DEFINITION_BYTES {
        return Err(CoreError::TooLarge {
            what,
            size: text_len,
            limit: MAX_DEFINITION_BYTES,
        });
    }
    if depth(doc) > MAX_DEFINITION_DEPTH {
        return Err(CoreError::TooDeep {
            what,
            limit: MAX_DEFINITION_DEPTH,
        });
    }
    Ok(())
}

/// Whether a JSON number is an integer: exact integers (i64 or u64), and any number whose text
/// has no fraction or exponent, so that an integer too large for 64 bits still counts when
/// numbers keep their text (serde_json's `arbitrary_precision`).
///
/// Without `arbitrary_precision` a number that is neither i64 nor u64 is an f64, whose text
/// always has a '.' or an exponent; with it, `is_f64` is false for such a huge integer and its
/// text is the digits as written.
use crate::number::is_integer;

/// What a default of this type must be, for the error message.
fn default_expectation(t: AttrType) -> &'static str {
    match t {
        AttrType::String => "a string",
        AttrType::Number => "a number",
        AttrType::Integer => "an integer (a number without fraction or exponent)",
        AttrType::Boolean => "true or false",
        AttrType::Timestamp => {
            "an ISO-8601 timestamp string such as \"2024-01-31T12:00:00Z\" or an integer (epoch milliseconds)"
        }
        AttrType::Date => "an ISO-8601 date string such as \"2024-01-31\"",
        AttrType::Object => "a JSON object",
        AttrType::Array => "a JSON array",
    }
}

/// Whether `v` is a valid default for an attribute of type `t`: the JSON kind of the type, with
/// timestamps and dates in the formats [`crate::infer::is_timestamp`] and
/// [`crate::infer::is_date`] accept (a timestamp may also be an integer of epoch milliseconds,
/// as in payloads). `null` means "no default" and is always accepted.
pub fn default_fits(t: AttrType, v: &Value) -> bool {
    use crate::infer::{is_date, is_timestamp};
    match (t, v) {
        (_, Value::Null) => true,
        (AttrType::String, Value::String(_)) => true,
        (AttrType::Number, Value::Number(_)) => true,
        (AttrType::Integer, Value::Number(n)) => is_integer(n),
        (AttrType::Boolean, Value::Bool(_)) => true,
        (AttrType::Timestamp, Value::String(s)) => is_timestamp(s),
        (AttrType::Timestamp, Value::Number(n)) => is_integer(n),
        (AttrType::Date, Value::String(s)) => is_date(s),
        (AttrType::Object, Value::Object(_)) => true,
        (AttrType::Array, Value::Array(_)) => true,
        _ => false,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if is_integer(n) => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
    }
}

impl Attribute {
    /// An optional attribute of type `t` with nothing else declared.
    pub fn of(attr_type: AttrType) -> Attribute {
        Attribute {
            attr_type,
            description: None,
            required: false,
            default: None,
            merge_policy: MergePolicy::LastWriteWins,
            source_priority: Vec::new(),
            aliases: Vec::new(),
            properties: BTreeMap::new(),
            items: None,
            values: None,
        }
    }

    /// Whether this is an object whose members are declared (ingestion walks into it).
    pub fn is_structured(&self) -> bool {
        self.attr_type == AttrType::Object && !self.properties.is_empty() && self.values.is_none()
    }

    /// The member named `key` (or listing `key` as an alias) among `properties`, with its name.
    pub fn member<'a>(
        properties: &'a BTreeMap<String, Attribute>,
        key: &str,
    ) -> Option<(&'a String, &'a Attribute)> {
        properties.get_key_value(key).or_else(|| {
            properties
                .iter()
                .find(|(_, a)| a.aliases.iter().any(|alias| alias == key))
        })
    }

    /// Checks that the default, if any, fits the attribute's type; the error names
    /// `{path}/default`.
    pub fn check_default(&self, path: &str) -> Result<(), CoreError> {
        match &self.default {
            Some(v) if !default_fits(self.attr_type, v) => Err(CoreError::def(
                format!("{path}/default"),
                format!(
                    "a default of type {} must be {}, not {}",
                    self.attr_type.as_str(),
                    default_expectation(self.attr_type),
                    match v {
                        Value::String(s) if s.chars().count() <= 40 => format!("{v}"),
                        other => json_kind(other).to_string(),
                    }
                ),
            )),
            _ => Ok(()),
        }?;
        for (name, a) in &self.properties {
            a.check_default(&format!(
                "{path}/properties/{}",
                crate::validate::escape(name)
            ))?;
        }
        if let Some(values) = &self.values {
            values.check_default(&format!("{path}/values"))?;
        }
        match &self.items {
            Some(items) => items.check_default(&format!("{path}/items")),
            None => Ok(()),
        }
    }

    fn parse(path: &str, v: &Value) -> Result<Attribute, CoreError> {
        if let Value::String(_) = v {
            // `"items": "string"` is short for `"items": {"type": "string"}` (`values` too).
            if path.ends_with("/items") || path.ends_with("/values") {
                return Attribute::parse(path, &serde_json::json!({"type": v}));
            }
        }
        let obj = v.as_object().ok_or_else(|| {
            CoreError::def(
                path,
                "an attribute must be an object such as {\"type\": \"string\"}",
            )
        })?;
        reject_unknown(
            obj,
            &[
                "type",
                "description",
                "required",
                "default",
                "merge_policy",
                "source_priority",
                "aliases",
                "properties",
                "items",
                "values",
            ],
            |key| format!("{path}/{key}"),
        )?;
        let attr_type = match obj.get("type") {
            None => return Err(CoreError::def(format!("{path}/type"), "is required")),
            Some(Value::String(s)) => AttrType::parse(s).ok_or_else(|| {
                CoreError::def(
                    format!("{path}/type"),
                    format!(
                        "unknown type \"{s}\"; expected one of {}",
                        AttrType::ALL.map(|t| t.as_str()).join(", ")
                    ),
                )
            })?,
            Some(_) => return Err(CoreError::def(format!("{path}/type"), "must be a string")),
        };
        let required = match obj.get("required") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(CoreError::def(
                    format!("{path}/required"),
                    "must be a boolean",
                ))
            }
        };
        let merge_policy = match obj.get("merge_policy") {
            None | Some(Value::Null) => MergePolicy::LastWriteWins,
            Some(Value::String(s)) => MergePolicy::parse(s).ok_or_else(|| {
                CoreError::def(
                    format!("{path}/merge_policy"),
                    format!("unknown merge policy \"{s}\"; expected last_write_wins, source_priority, max, min or union"),
                )
            })?,
            Some(_) => return Err(CoreError::def(format!("{path}/merge_policy"), "must be a string")),
        };
        let source_priority = string_list(obj, "source_priority", path)?;
        if merge_policy == MergePolicy::SourcePriority && source_priority.is_empty() {
            return Err(CoreError::def(
                format!("{path}/source_priority"),
                "merge policy source_priority needs a non-empty list of sources, highest rank first",
            ));
        }
        let aliases = string_list(obj, "aliases", path)?;
        // Aliases are payload keys, not identifiers: any key seen in data (`Beak Length (mm)`)
        // may map to a declared attribute, which is how a proposal keeps a raw key's mapping.
        for (i, a) in aliases.iter().enumerate() {
            if a.is_empty() || a.len() > MAX_ALIAS_LEN || a.chars().any(char::is_control) {
                return Err(CoreError::def(
                    format!("{path}/aliases/{i}"),
                    format!("alias must be 1 to {MAX_ALIAS_LEN} bytes without control characters"),
                ));
            }
        }
        let default = match obj.get("default") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.clone()),
        };
        let properties = match obj.get("properties") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(_) if attr_type != AttrType::Object => {
                return Err(CoreError::def(
                    format!("{path}/properties"),
                    "only an attribute of type object has properties",
                ))
            }
            Some(Value::Object(members)) => {
                parse_attributes(&format!("{path}/properties"), members)?
            }
            Some(_) => {
                return Err(CoreError::def(
                    format!("{path}/properties"),
                    "must be an object of attributes",
                ))
            }
        };
        let items = match obj.get("items") {
            None | Some(Value::Null) => None,
            Some(_) if attr_type != AttrType::Array => {
                return Err(CoreError::def(
                    format!("{path}/items"),
                    "only an attribute of type array has items",
                ))
            }
            Some(v) => Some(Box::new(Attribute::parse(&format!("{path}/items"), v)?)),
        };
        let values =
            match obj.get("values") {
                None | Some(Value::Null) => None,
                Some(_) if attr_type != AttrType::Object => {
                    return Err(CoreError::def(
                        format!("{path}/values"),
                        "only an attribute of type object is a map with values",
                    ))
                }
                Some(_) if !properties.is_empty() => return Err(CoreError::def(
                    format!("{path}/values"),
                    "an object declares either properties (a record) or values (a map), not both",
                )),
                Some(v) => Some(Box::new(Attribute::parse(&format!("{path}/values"), v)?)),
            };
        Ok(Attribute {
            attr_type,
            description: optional_string(obj, "description", path)?,
            required,
            default,
            merge_policy,
            source_priority,
            aliases,
            properties,
            items,
            values,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.attr_type.as_str().into()));
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        if self.required {
            m.insert("required".into(), Value::Bool(true));
        }
        if let Some(d) = &self.default {
            m.insert("default".into(), d.clone());
        }
        if self.merge_policy != MergePolicy::LastWriteWins {
            m.insert(
                "merge_policy".into(),
                Value::String(self.merge_policy.as_str().into()),
            );
        }
        if !self.source_priority.is_empty() {
            m.insert(
                "source_priority".into(),
                self.source_priority.clone().into(),
            );
        }
        if !self.aliases.is_empty() {
            m.insert("aliases".into(), self.aliases.clone().into());
        }
        if !self.properties.is_empty() {
            m.insert(
                "properties".into(),
                Value::Object(
                    self.properties
                        .iter()
                        .map(|(k, a)| (k.clone(), a.to_json()))
                        .collect(),
                ),
            );
        }
        if let Some(items) = &self.items {
            m.insert("items".into(), items.to_json());
        }
        if let Some(values) = &self.values {
            m.insert("values".into(), values.to_json());
        }
        Value::Object(m)
    }
}

/// Parses the attributes of one object level (`/attributes`, or an object's `properties`):
/// names must be valid, and no alias may shadow a member name.
fn parse_attributes(
    path: &str,
    members: &Map<String, Value>,
) -> Result<BTreeMap<String, Attribute>, CoreError> {
    let mut attributes = BTreeMap::new();
    for (name, v) in members {
        let p = format!("{path}/{}", crate::validate::escape(name));
        check_name(&p, name)?;
        attributes.insert(name.clone(), Attribute::parse(&p, v)?);
    }
    for (name, a) in &attributes {
        for alias in &a.aliases {
            if alias == name || attributes.contains_key(alias) {
                return Err(CoreError::def(
                    format!("{path}/{}/aliases", crate::validate::escape(name)),
                    format!("alias \"{alias}\" is already an attribute name"),
                ));
            }
        }
    }
    Ok(attributes)
}

impl Relationship {
    fn parse(path: &str, v: &Value) -> Result<Relationship, CoreError> {
        let obj = v.as_object().ok_or_else(|| {
            CoreError::def(
                path,
                "a relationship must be an object such as {\"target\": \"place\"}",
            )
        })?;
        reject_unknown(obj, &["target", "description", "key"], |key| {
            format!("{path}/{key}")
        })?;
        let target = match obj.get("target") {
            Some(Value::String(s)) => s.clone(),
            None => return Err(CoreError::def(format!("{path}/target"), "is required")),
            Some(_) => return Err(CoreError::def(format!("{path}/target"), "must be a string")),
        };
        check_name(&format!("{path}/target"), &target)?;
        let key = optional_string(obj, "key", path)?;
        if key
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_ALIAS_LEN)
        {
            return Err(CoreError::def(
                format!("{path}/key"),
                format!("must be 1 to {MAX_ALIAS_LEN} bytes"),
            ));
        }
        Ok(Relationship {
            target,
            description: optional_string(obj, "description", path)?,
            key,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("target".into(), Value::String(self.target.clone()));
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        if let Some(k) = &self.key {
            m.insert("key".into(), Value::String(k.clone()));
        }
        Value::Object(m)
    }
}

impl Definition {
    /// Parses and validates a definition document. Errors name the offending JSON pointer path.
    pub fn parse(doc: &Value) -> Result<Definition, CoreError> {
        let obj = doc
            .as_object()
            .ok_or_else(|| CoreError::def("/", "a schema definition must be a JSON object"))?;
        let mut allowed = vec!["entity_type", "description", "attributes", "relationships"];
        allowed.extend(INFORMATIONAL_KEYS);
        reject_unknown(obj, &allowed, |key| format!("/{key}"))?;
        let entity_type = required_name(obj, "entity_type", "")?;
        let attributes = match obj.get("attributes") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(attrs)) => parse_attributes("/attributes", attrs)?,
            Some(_) => {
                return Err(CoreError::def(
                    "/attributes",
                    "must be an object of attributes",
                ))
            }
        };
        let mut relationships = BTreeMap::new();
        match obj.get("relationships") {
            None | Some(Value::Null) => {}
            Some(Value::Object(rels)) => {
                for (name, v) in rels {
                    let path = format!("/relationships/{name}");
                    check_name(&path, name)?;
                    if attributes.contains_key(name) {
                        return Err(CoreError::def(
                            &path,
                            "a relationship may not share its name with an attribute",
                        ));
                    }
                    relationships.insert(name.clone(), Relationship::parse(&path, v)?);
                }
            }
            Some(_) => {
                return Err(CoreError::def(
                    "/relationships",
                    "must be an object of relationships",
                ))
            }
        }
        Ok(Definition {
            entity_type,
            description: optional_string(obj, "description", "")?,
            attributes,
            relationships,
        })
    }

    /// Parses a definition given as input (registration, patch, compatibility check): as
    /// [`Definition::parse`], and every default must fit its attribute's type. Definitions
    /// already stored are read with `parse`, which does not check defaults, so that versions
    /// registered before defaults were checked stay readable.
    pub fn parse_input(doc: &Value) -> Result<Definition, CoreError> {
        let def = Definition::parse(doc)?;
        def.check_defaults()?;
        Ok(def)
    }

    /// Checks every attribute's default against its type; the error names the first
    /// offending `/attributes/{name}/default` (attributes in name order).
    pub fn check_defaults(&self) -> Result<(), CoreError> {
        self.attributes
            .iter()
            .try_for_each(|(name, a)| a.check_default(&format!("/attributes/{name}")))
    }

    /// Canonical JSON: keys sorted, defaults omitted.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "entity_type".into(),
            Value::String(self.entity_type.clone()),
        );
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        m.insert(
            "attributes".into(),
            Value::Object(
                self.attributes
                    .iter()
                    .map(|(k, a)| (k.clone(), a.to_json()))
                    .collect(),
            ),
        );
        m.insert(
            "relationships".into(),
            Value::Object(
                self.relationships
                    .iter()
                    .map(|(k, r)| (k.clone(), r.to_json()))
                    .collect(),
            ),
        );
        Value::Object(m)
    }

    /// Every declared attribute at any depth with its path, each parent before its members
    /// (members in name order); an array's elements appear as `name[]` when declared.
    pub fn walk(&self) -> Vec<(Path, &Attribute)> {
        fn visit<'a>(path: Path, a: &'a Attribute, out: &mut Vec<(Path, &'a Attribute)>) {
            out.push((path.clone(), a));
            for (name, m) in &a.properties {
                visit(path.child(name.clone()), m, out);
            }
            if let Some(items) = &a.items {
                visit(path.items(), items, out);
            }
        }
        let mut out = Vec::new();
        for (name, a) in &self.attributes {
            visit(Path::key(name.clone()), a, &mut out);
        }
        out
    }

    /// The attribute a path names, resolving aliases at every level, with its path under the
    /// current names. `None` when some segment is not declared.
    pub fn attribute_at(&self, path: &Path) -> Option<(Path, &Attribute)> {
        let mut segments = path.segments().iter();
        let Some(Segment::Key(first)) = segments.next() else {
            return None;
        };
        let (name, mut attr) = Attribute::member(&self.attributes, first)?;
        let mut canonical = Path::key(name.clone());
        for s in segments {
            match s {
                Segment::Key(k) => {
                    let (name, m) = Attribute::member(&attr.properties, k)?;
                    canonical = canonical.child(name.clone());
                    attr = m;
                }
                Segment::Items => {
                    attr = attr.items.as_deref()?;
                    canonical = canonical.items();
                }
            }
        }
        Some((canonical, attr))
    }

    /// [`Definition::attribute_at`] for a path in text form (a text that is not a valid path
    /// names one top-level key).
    pub fn attribute_named(&self, text: &str) -> Option<(Path, &Attribute)> {
        if !text.contains(['.', '[', ']', '"']) {
            // A top-level name (the common case): no path to read.
            return Attribute::member(&self.attributes, text)
                .map(|(n, a)| (Path::key(n.as_str()), a));
        }
        self.attribute_at(&crate::path::lenient(text))
    }

    /// Number of fields (attributes + relationships), as counted by quotas.
    pub fn field_count(&self) -> usize {
        self.attributes.len() + self.relationships.len()
    }
}

/// Checks that a user's extension respects the global schema: an attribute the global schema
/// has keeps its type (a user may override descriptions only); a relationship keeps its target.
pub fn check_extension(global: &Definition, user: &Definition) -> Result<(), CoreError> {
    let violation = |message: String| CoreError::ExtensionViolation {
        entity_type: user.entity_type.clone(),
        message,
    };
    for (path, ua) in user.walk() {
        if let Some((_, ga)) = global.attribute_at(&path) {
            if ga.attr_type != ua.attr_type {
                return Err(violation(format!(
                    "may not change the type of global attribute \"{path}\" from {} to {}",
                    ga.attr_type.as_str(),
                    ua.attr_type.as_str()
                )));
            }
        }
    }
    for name in user.attributes.keys() {
        if global.relationships.contains_key(name) {
            return Err(violation(format!(
                "may not turn global relationship \"{name}\" into an attribute"
            )));
        }
    }
    for (name, ur) in &user.relationships {
        if let Some(gr) = global.relationships.get(name) {
            if gr.target != ur.target {
                return Err(violation(format!(
                    "may not change the target of global relationship \"{name}\""
                )));
            }
        }
        if global.attributes.contains_key(name) {
            return Err(violation(format!(
                "may not turn global attribute \"{name}\" into a relationship"
            )));
        }
    }
    Ok(())
}

/// Merges a user's attributes into the global ones of one level: a global attribute keeps its
/// definition (the user may override its description and add members at any depth); the
/// user's other attributes are added.
fn extend_attributes(out: &mut BTreeMap<String, Attribute>, user: &BTreeMap<String, Attribute>) {
    for (name, ua) in user {
        match out.get_mut(name) {
            Some(ga) => {
                if ua.description.is_some() {
                    ga.description = ua.description.clone();
                }
                extend_attributes(&mut ga.properties, &ua.properties);
                if let (Some(gi), Some(ui)) = (ga.items.as_deref_mut(), ua.items.as_deref()) {
                    extend_attributes(&mut gi.properties, &ui.properties);
                }
                if ga.items.is_none() {
                    ga.items = ua.items.clone();
                }
            }
            None => {
                out.insert(name.clone(), ua.clone());
            }
        }
    }
}

/// The effective schema a user sees: every global attribute and relationship, the user's own
/// additions, and the user's description overrides. Call [`check_extension`] first.
pub fn effective(global: Option<&Definition>, user: Option<&Definition>) -> Option<Definition> {
    match (global, user) {
        (None, None) => None,
        (Some(g), None) => Some(g.clone()),
        (None, Some(u)) => Some(u.clone()),
        (Some(g), Some(u)) => {
            let mut out = g.clone();
            if u.description.is_some() {
                out.description = u.description.clone();
            }
            extend_attributes(&mut out.attributes, &u.attributes);
            for (name, ur) in &u.relationships {
                match out.relationships.get_mut(name) {
                    Some(gr) => {
                        if ur.description.is_some() {
                            gr.description = ur.description.clone();
                        }
                    }
                    None => {
                        out.relationships.insert(name.clone(), ur.clone());
                    }
                }
            }
            Some(out)
        }
    }
}

/// Applies an RFC 7396 JSON merge patch: objects merge recursively, `null` removes a key, any
/// other value replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Map::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The fields a patch removes (members set to `null`): relationship names, and attribute paths
/// in text form at any depth (`actor.login` for `{"attributes": {"actor": {"properties":
/// {"login": null}}}}`).
pub fn patch_removals(patch: &Value) -> Vec<String> {
    fn attributes(m: &Map<String, Value>, parent: Option<&Path>, out: &mut Vec<String>) {
        for (k, v) in m {
            let path = parent.map_or_else(|| Path::key(k.clone()), |p| p.child(k.clone()));
            if v.is_null() {
                out.push(path.to_string());
                continue;
            }
            if let Some(Value::Object(props)) = v.get("properties") {
                attributes(props, Some(&path), out);
            }
            if let Some(Value::Object(props)) = v.pointer("/items/properties") {
                attributes(props, Some(&path.items()), out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(Value::Object(m)) = patch.get("attributes") {
        attributes(m, None, &mut out);
    }
    if let Some(Value::Object(m)) = patch.get("relationships") {
        out.extend(
            m.iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quake() -> Value {
        json!({
            "entity_type": "earthquake",
            "description": "A seismic event",
            "attributes": {
                "mag": {"type": "number", "description": "Magnitude", "merge_policy": "max"},
                "place": {"type": "string"},
                "time": {"type": "timestamp", "required": true}
            },
            "relationships": {"near": {"target": "place", "description": "closest named place"}}
        })
    }

    fn nested() -> Value {
        json!({
            "entity_type": "event",
            "attributes": {
                "actor": {"type": "object", "properties": {
                    "id": {"type": "integer"},
                    "login": {"type": "string", "aliases": ["user"]}
                }},
                "payload": {"type": "object", "properties": {
                    "commits": {"type": "array", "items": {"type": "object", "properties": {
                        "sha": {"type": "string", "required": true}
                    }}},
                    "size": {"type": "integer", "default": 0}
                }},
                "tags": {"type": "array", "items": "string"}
            }
        })
    }

    #[test]
    fn nested_definitions() {
        let d = Definition::parse_input(&nested()).unwrap();
        // Canonical JSON spells the items shorthand out and round-trips.
        let j = d.to_json();
        assert_eq!(j["attributes"]["tags"]["items"], json!({"type": "string"}));
        assert_eq!(Definition::parse(&j).unwrap(), d);
        let paths: Vec<String> = d.walk().iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            paths,
            [
                "actor",
                "actor.id",
                "actor.login",
                "payload",
                "payload.commits",
                "payload.commits[]",
                "payload.commits[].sha",
                "payload.size",
                "tags",
                "tags[]"
            ]
        );
        let (p, a) = d.attribute_named("actor.user").unwrap();
        assert_eq!(
            (p.to_string(), a.attr_type),
            ("actor.login".into(), AttrType::String)
        );
        let (_, a) = d.attribute_named("payload.commits[].sha").unwrap();
        assert!(a.required);
        assert!(d.attribute_named("actor.email").is_none());
        assert!(d.attribute_named("tags.x").is_none());
        assert!(d.attribute_named("actor[]").is_none());
    }

    #[test]
    fn nested_errors_name_the_path() {
        let cases = [
            (
                json!({"a": {"type": "string", "properties": {}}}),
                "/attributes/a/properties",
            ),
            (
                json!({"a": {"type": "object", "items": "string"}}),
                "/attributes/a/items",
            ),
            (
                json!({"a": {"type": "object", "properties": {"b c": {"type": "string"}}}}),
                "/attributes/a/properties/b c",
            ),
            (
                json!({"a": {"type": "object", "properties": {"b": {"type": "nope"}}}}),
                "/attributes/a/properties/b/type",
            ),
            (
                json!({"a": {"type": "array", "items": {"type": "object", "properties": {"x": 1}}}}),
                "/attributes/a/items/properties/x",
            ),
            (
                json!({"a": {"type": "object", "properties": {"b": {"type": "integer", "default": "x"}}}}),
                "/attributes/a/properties/b/default",
            ),
            (
                json!({"a": {"type": "object", "properties": {"b": {"type": "integer"}, "c": {"type": "integer", "aliases": ["b"]}}}}),
                "/attributes/a/properties/c/aliases",
            ),
        ];
        for (attrs, path) in cases {
            let doc = json!({"entity_type": "e", "attributes": attrs});
            match Definition::parse_input(&doc) {
                Err(CoreError::InvalidDefinition { path: p, .. }) => assert_eq!(p, path, "{doc}"),
                other => panic!("{doc}: {other:?}"),
            }
        }
    }

    #[test]
    fn nested_extensions() {
        let global = Definition::parse(&nested()).unwrap();
        let user = Definition::parse(&json!({"entity_type": "event", "attributes": {
            "actor": {"type": "object", "description": "who", "properties": {
                "email": {"type": "string"},
                "login": {"type": "string", "description": "handle"}
            }}
        }}))
        .unwrap();
        check_extension(&global, &user).unwrap();
        let e = effective(Some(&global), Some(&user)).unwrap();
        let actor = &e.attributes["actor"];
        assert_eq!(actor.description.as_deref(), Some("who"));
        assert_eq!(
            actor.properties.keys().collect::<Vec<_>>(),
            ["email", "id", "login"]
        );
        assert_eq!(
            actor.properties["login"].description.as_deref(),
            Some("handle")
        );
        assert_eq!(actor.properties["login"].aliases, ["user"]);
        let bad = Definition::parse(&json!({"entity_type": "event", "attributes": {
            "actor": {"type": "object", "properties": {"id": {"type": "string"}}}
        }}))
        .unwrap();
        let err = check_extension(&global, &bad).unwrap_err().to_string();
        assert!(err.contains("\"actor.id\" from integer to string"), "{err}");
    }

    #[test]
    fn parses_and_round_trips() {
        let d = Definition::parse(&quake()).unwrap();
        assert_eq!(d.entity_type, "earthquake");
        assert_eq!(d.attributes["mag"].merge_policy, MergePolicy::Max);
        assert!(d.attributes["time"].required);
        assert_eq!(d.field_count(), 4);
        let again = Definition::parse(&d.to_json()).unwrap();
        assert_eq!(d, again);
    }

    #[test]
    fn errors_name_the_path() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "/"),
            (json!({"attributes": {}}), "/entity_type"),
            (json!({"entity_type": 3}), "/entity_type"),
            (json!({"entity_type": "bad name"}), "/entity_type"),
            (json!({"entity_type": "e", "attributes": []}), "/attributes"),
            (
                json!({"entity_type": "e", "attributes": {"a": "string"}}),
                "/attributes/a",
            ),
            (
                json!({"entity_type": "e", "attributes": {"a": {}}}),
                "/attributes/a/type",
            ),
            (
                json!({"entity_type": "e", "attributes": {"a": {"type": "float"}}}),
                "/attributes/a/type",
            ),
            (
                json!({"entity_type": "e", "attributes": {"a b": {"type": "string"}}}),
                "/attributes/a b",
            ),
            (
                json!({"entity_type": "e", "attributes": {"a": {"type": "string", "required": "yes"}}}),
                "/attributes/a/required",
            ),
            (
                json!({"entity_type": "e", "attributes": {"a": {"type": "string", "merge_policy": "sum"}}}),
                "/attributes/a/merge_policy",
            ),
            (
                json!({"entity_type": "e", "attributes": {"a": {"type": "string", "merge_policy": "source_priority"}}}),
                "/attributes/a/source_priority",
            ),
            (
                json!({"entity_type": "e", "relationships": {"r": {}}}),
                "/relationships/r/target",
            ),
            (
                json!({"entity_type": "e", "relationships": {"r": {"target": "x y"}}}),
                "/relationships/r/target",
            ),
            (json!({"entity_type": "e", "color": 1}), "/color"),
        ];
        for (doc, path) in cases {
            match Definition::parse(&doc) {
                Err(CoreError::InvalidDefinition { path: p, .. }) => assert_eq!(p, path, "{doc}"),
                other => panic!("{doc}: expected an error at {path}, got {other:?}"),
            }
        }
    }

    fn with_default(t: &str, default: Value) -> Value {
        json!({"entity_type": "e", "attributes": {"a": {"type": t, "default": default}}})
    }

    #[test]
    fn defaults_are_type_checked() {
        // (type, default, fits)
        let cases: Vec<(&str, Value, bool)> = vec![
            ("string", json!("x"), true),
            ("string", json!(""), true),
            ("string", json!("2024-01-31"), true),
            ("string", json!(5), false),
            ("string", json!(true), false),
            ("string", json!(["x"]), false),
            ("string", json!({"x": 1}), false),
            ("number", json!(1.5), true),
            ("number", json!(2), true),
            ("number", json!(-3e10), true),
            ("number", json!(u64::MAX), true),
            ("number", json!("1.5"), false),
            ("number", json!(false), false),
            ("integer", json!(2), true),
            ("integer", json!(-2), true),
            ("integer", json!(u64::MAX), true),
            ("integer", json!(2.0), false),
            ("integer", json!(1.5), false),
            ("integer", json!(1e3), false),
            ("integer", json!("2"), false),
            ("boolean", json!(true), true),
            ("boolean", json!(false), true),
            ("boolean", json!(0), false),
            ("boolean", json!("true"), false),
            ("timestamp", json!("2024-01-31T12:00:00Z"), true),
            ("timestamp", json!("2024-01-31 12:00"), true),
            ("timestamp", json!("2024-01-31T12:00:00.123+02:00"), true),
            ("timestamp", json!(1_706_702_400_000_i64), true),
            ("timestamp", json!("2024-01-31"), false),
            ("timestamp", json!("2024-02-30T12:00:00Z"), false),
            ("timestamp", json!("yesterday"), false),
            ("timestamp", json!(1.5), false),
            ("timestamp", json!(true), false),
            ("date", json!("2024-01-31"), true),
            ("date", json!("2024-02-29"), true),
            ("date", json!("2023-02-29"), false),
            ("date", json!("2024-01-31T00:00:00Z"), false),
            ("date", json!("31/01/2024"), false),
            ("date", json!(20240131), false),
            ("object", json!({}), true),
            ("object", json!({"a": [1]}), true),
            ("object", json!([]), false),
            ("object", json!("{}"), false),
            ("array", json!([]), true),
            ("array", json!([1, "a"]), true),
            ("array", json!({}), false),
            ("array", json!("[]"), false),
        ];
        // Every type is covered, with a default that fits and one that does not.
        for t in AttrType::ALL {
            for want in [true, false] {
                assert!(
                    cases.iter().any(|(n, _, f)| *n == t.as_str() && *f == want),
                    "no case of a {} default with fits={want}",
                    t.as_str()
                );
            }
        }
        for (t, default, fits) in cases {
            let doc = with_default(t, default.clone());
            // Stored definitions stay readable whatever their default.
            Definition::parse(&doc).unwrap();
            match (Definition::parse_input(&doc), fits) {
                (Ok(d), true) => assert_eq!(d.attributes["a"].default, Some(default)),
                (Err(CoreError::InvalidDefinition { path, message }), false) => {
                    assert_eq!(path, "/attributes/a/default", "{t} {default}");
                    assert!(
                        message.contains(&format!("of type {t} must be")),
                        "{message}"
                    );
                }
                (other, _) => {
                    panic!("{t} with default {default}: expected fits={fits}, got {other:?}")
                }
            }
        }
    }

    #[test]
    fn null_default_is_no_default() {
        for t in AttrType::ALL {
            let d = Definition::parse_input(&with_default(t.as_str(), Value::Null)).unwrap();
            assert_eq!(d.attributes["a"].default, None, "{}", t.as_str());
        }
    }

    #[test]
    fn huge_integers_are_integers() {
        // With serde_json's arbitrary_precision a huge integer keeps its digits and must count
        // as an integer; without it, it is read as an f64 and is a number only.
        let text = "123456789012345678901234567890";
        let n: serde_json::Number = serde_json::from_str(text).unwrap();
        let v = Value::Number(n.clone());
        assert!(default_fits(AttrType::Number, &v));
        assert_eq!(default_fits(AttrType::Integer, &v), n.to_string() == text);
        let f: serde_json::Number = serde_json::from_str("1.0e3").unwrap();
        assert!(!default_fits(AttrType::Integer, &Value::Number(f)));
    }

    #[test]
    fn first_bad_default_is_reported() {
        let doc = json!({"entity_type": "e", "attributes": {
            "b": {"type": "integer", "default": "x"},
            "a": {"type": "string", "default": "fine"},
            "c": {"type": "date", "default": 1}
        }});
        match Definition::parse_input(&doc) {
            Err(e @ CoreError::InvalidDefinition { .. }) => {
                assert_eq!(e.sqlstate().code(), "22023");
                assert!(e.to_string().contains("/attributes/b/default"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits() {
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        assert!(matches!(
            check_limits("definition", &deep, 10),
            Err(CoreError::TooDeep { .. })
        ));
        assert!(matches!(
            check_limits("definition", &json!({}), MAX_DEFINITION_BYTES + 1),
            Err(CoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn extension_merges_and_guards() {
        let g = Definition::parse(&quake()).unwrap();
        let u = Definition::parse(&json!({
            "entity_type": "earthquake",
            "attributes": {
                "mag": {"type": "number", "description": "Richter magnitude"},
                "felt": {"type": "integer"}
            }
        }))
        .unwrap();
        check_extension(&g, &u).unwrap();
        let e = effective(Some(&g), Some(&u)).unwrap();
        assert_eq!(
            e.attributes["mag"].description.as_deref(),
            Some("Richter magnitude")
        );
        assert_eq!(e.attributes["mag"].merge_policy, MergePolicy::Max);
        assert!(e.attributes.contains_key("felt"));
        assert!(e.attributes.contains_key("place"));
        assert_eq!(e.description.as_deref(), Some("A seismic event"));

        let retype = Definition::parse(&json!({
            "entity_type": "earthquake",
            "attributes": {"mag": {"type": "string"}}
        }))
        .unwrap();
        let err = check_extension(&g, &retype).unwrap_err();
        assert_eq!(err.sqlstate().code(), "42P17");
    }

    #[test]
    fn merge_patch_rfc7396() {
        let base = json!({"a": 1, "b": {"c": 2, "d": 3}});
        let patch = json!({"a": null, "b": {"c": 4}, "e": [1]});
        assert_eq!(
            merge_patch(&base, &patch),
            json!({"b": {"c": 4, "d": 3}, "e": [1]})
        );
        assert_eq!(
            patch_removals(
                &json!({"attributes": {"x": null, "y": {}, "o": {"properties": {"p": null, "q": {"properties": {"r": null}}}}}})
            ),
            vec!["x".to_string(), "o.p".to_string(), "o.q.r".to_string()]
        );
    }
}
