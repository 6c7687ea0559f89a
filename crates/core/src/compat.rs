//! Schema compatibility between versions of a definition, with Avro's schema-resolution rules
//! as the reference.
//!
//! Compatibility is a question about reading: can a *reader* schema read data written with a
//! *writer* schema?
//!
//! * **BACKWARD**: the new schema reads data written with the old one.
//! * **FORWARD**: the old schema reads data written with the new one.
//! * **FULL**: both.
//! * The `_TRANSITIVE` variants check against every earlier version instead of only the latest.
//! * **NONE**: no check.
//!
//! A reader can read a writer's data when, for every attribute of the reader:
//!
//! * the writer has a matching attribute (same name or, as in Avro, one of the reader
//!   attribute's aliases) whose type is the same or *promotes* to the reader's type
//!   (`integer` → `number`, `date` → `timestamp`), and which the writer requires whenever the
//!   reader requires it without a default; or
//! * the writer has no matching attribute and the reader's attribute is optional or has a
//!   default.
//!
//! Relationships may be added or removed freely, but a relationship present in both versions
//! must keep its target. Descriptions never matter.

use std::fmt;

use std::collections::BTreeMap;

use crate::path::Path;
use crate::schema::{AttrType, Attribute, Definition};

/// The compatibility a new version of a schema must keep with earlier versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatMode {
    /// Any change is accepted.
    None,
    /// The new schema reads data written with the latest earlier version.
    #[default]
    Backward,
    /// The new schema reads data written with every earlier version.
    BackwardTransitive,
    /// The latest earlier version reads data written with the new schema.
    Forward,
    /// Every earlier version reads data written with the new schema.
    ForwardTransitive,
    /// Both [`CompatMode::Backward`] and [`CompatMode::Forward`].
    Full,
    /// Both [`CompatMode::BackwardTransitive`] and [`CompatMode::ForwardTransitive`].
    FullTransitive,
}

impl CompatMode {
    /// Every mode, in declaration order.
    pub const ALL: [CompatMode; 7] = [
        CompatMode::None,
        CompatMode::Backward,
        CompatMode::BackwardTransitive,
        CompatMode::Forward,
        CompatMode::ForwardTransitive,
        CompatMode::Full,
        CompatMode::FullTransitive,
    ];

    /// Parses a mode name, ignoring case and surrounding whitespace: `"backward"`,
    /// `"BACKWARD_TRANSITIVE"`, `"Full_Transitive"`. A hyphen or space may stand for the
    /// underscore (`"forward-transitive"`).
    pub fn parse(s: &str) -> Option<CompatMode> {
        let canonical: String = s
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        CompatMode::ALL
            .into_iter()
            .find(|m| m.as_str() == canonical)
    }

    /// The canonical upper-case name: `"NONE"`, `"BACKWARD"`, `"BACKWARD_TRANSITIVE"`,
    /// `"FORWARD"`, `"FORWARD_TRANSITIVE"`, `"FULL"` or `"FULL_TRANSITIVE"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatMode::None => "NONE",
            CompatMode::Backward => "BACKWARD",
            CompatMode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatMode::Forward => "FORWARD",
            CompatMode::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatMode::Full => "FULL",
            CompatMode::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// True for the modes that check against every earlier version.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatMode::BackwardTransitive
                | CompatMode::ForwardTransitive
                | CompatMode::FullTransitive
        )
    }

    /// Whether the new schema must read data written with earlier versions.
    fn checks_backward(self) -> bool {
        matches!(
            self,
            CompatMode::Backward
                | CompatMode::BackwardTransitive
                | CompatMode::Full
                | CompatMode::FullTransitive
        )
    }

    /// Whether earlier versions must read data written with the new schema.
    fn checks_forward(self) -> bool {
        matches!(
            self,
            CompatMode::Forward
                | CompatMode::ForwardTransitive
                | CompatMode::Full
                | CompatMode::FullTransitive
        )
    }
}

impl fmt::Display for CompatMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a value written as `writer` can be read as `reader`: the same type, or one of the
/// promotions `integer` → `number` and `date` → `timestamp`.
pub fn promotes(writer: AttrType, reader: AttrType) -> bool {
    writer == reader
        || matches!(
            (writer, reader),
            (AttrType::Integer, AttrType::Number) | (AttrType::Date, AttrType::Timestamp)
        )
}

/// Checks `new` against the version history `previous` (oldest first) under `mode`.
///
/// Returns every reason the new version is incompatible, as human-readable sentences naming the
/// attribute or relationship and the rule (`BACKWARD` or `FORWARD`) it breaks; an empty vector
/// means compatible. An empty history is always compatible, and so is [`CompatMode::None`].
///
/// Non-transitive modes check against the last version of `previous` only. Transitive modes
/// check against every version and prefix each reason with the version it breaks against,
/// `against version N: `, where N is the 1-based position in `previous`. Under the `FULL` modes
/// the reasons of both directions are collected, without duplicates.
pub fn check(mode: CompatMode, previous: &[Definition], new: &Definition) -> Vec<String> {
    let against: Vec<(usize, &Definition)> = if mode.is_transitive() {
        previous
            .iter()
            .enumerate()
            .map(|(i, d)| (i + 1, d))
            .collect()
    } else {
        previous
            .last()
            .map(|d| vec![(previous.len(), d)])
            .unwrap_or_default()
    };
    let mut reasons: Vec<String> = Vec::new();
    for (version, old) in against {
        let mut found = Vec::new();
        if mode.checks_backward() {
            found.extend(read_problems(new, old, Direction::Backward));
        }
        if mode.checks_forward() {
            found.extend(read_problems(old, new, Direction::Forward));
        }
        for reason in found {
            let reason = if mode.is_transitive() {
                format!("against version {version}: {reason}")
            } else {
                reason
            };
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
    }
    reasons
}

/// Which of the two schemas reads: the new one (backward) or the old one (forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The reader is the new schema, the writer the old one.
    Backward,
    /// The reader is the old schema, the writer the new one.
    Forward,
}

impl Direction {
    /// The consequence of a problem, ending every reason.
    fn consequence(self) -> &'static str {
        match self {
            Direction::Backward => {
                "data written with the previous schema cannot be read by the new one (BACKWARD)"
            }
            Direction::Forward => {
                "data written with the new schema cannot be read by the previous one (FORWARD)"
            }
        }
    }
}

/// Why `reader` cannot read data written with `writer`, one sentence per problem, attributes
/// then relationships, in name order.
fn read_problems(reader: &Definition, writer: &Definition, dir: Direction) -> Vec<String> {
    let consequence = dir.consequence();
    let mut out = Vec::new();
    attribute_problems(&reader.attributes, &writer.attributes, None, dir, &mut out);
    for (name, r) in &reader.relationships {
        if let Some(w) = writer.relationships.get(name) {
            if w.target != r.target {
                let (from, to) = match dir {
                    Direction::Backward => (&w.target, &r.target),
                    Direction::Forward => (&r.target, &w.target),
                };
                out.push(format!(
                    "relationship \"{name}\" changed its target from \"{from}\" to \"{to}\": \
                     {consequence}"
                ));
            }
        }
    }
    out
}

/// The attribute problems of one object level (the top level, or an object's `properties`),
/// recursively: a reader attribute matched in the writer (by name or, as in Avro, by one of the
/// reader's aliases) must read the writer's type, its members must read the writer's members
/// and its array elements the writer's elements. Reasons name the attribute's full path.
fn attribute_problems(
    reader: &BTreeMap<String, Attribute>,
    writer: &BTreeMap<String, Attribute>,
    parent: Option<(&Path, &Path)>,
    dir: Direction,
    out: &mut Vec<String>,
) {
    let consequence = dir.consequence();
    let at = |base: Option<&Path>, name: &str| match base {
        Some(p) => p.child(name),
        None => Path::key(name),
    };
    for (name, r) in reader {
        let needed = r.required && r.default.is_none();
        let matched = writer.get_key_value(name).or_else(|| {
            r.aliases
                .iter()
                .find_map(|alias| writer.get_key_value(alias))
        });
        let reader_path = at(parent.map(|p| p.0), name);
        let Some((writer_name, w)) = matched else {
            if needed {
                out.push(match dir {
                    Direction::Backward => format!(
                        "attribute \"{reader_path}\" is required and has no default: {consequence}"
                    ),
                    Direction::Forward => format!(
                        "attribute \"{reader_path}\" was removed but is required without a default in \
                         the previous schema: {consequence}"
                    ),
                });
            }
            continue;
        };
        let writer_path = at(parent.map(|p| p.1), writer_name);
        // Name the attribute as the new schema does, mentioning its other name on a rename.
        let (old_path, new_path) = match dir {
            Direction::Backward => (&writer_path, &reader_path),
            Direction::Forward => (&reader_path, &writer_path),
        };
        let label = if old_path == new_path {
            format!("attribute \"{new_path}\"")
        } else {
            format!("attribute \"{new_path}\" (formerly \"{old_path}\")")
        };
        type_problems(r, w, &label, dir, out);
        if needed && !w.required {
            out.push(match dir {
                Direction::Backward => format!(
                    "{label} became required and has no default, but was optional in the \
                     previous schema: {consequence}"
                ),
                Direction::Forward => format!(
                    "{label} became optional, but is required without a default in the \
                     previous schema: {consequence}"
                ),
            });
        }
        members_problems(r, w, (&reader_path, &writer_path), dir, out);
    }
}

/// Whether the reader attribute `r` reads the writer's type, and its elements the writer's.
fn type_problems(r: &Attribute, w: &Attribute, label: &str, dir: Direction, out: &mut Vec<String>) {
    if !promotes(w.attr_type, r.attr_type) {
        let (from, to) = match dir {
            Direction::Backward => (w.attr_type, r.attr_type),
            Direction::Forward => (r.attr_type, w.attr_type),
        };
        out.push(format!(
            "{label} changed type from {} to {} and {} values cannot be read as {}: {}",
            from.as_str(),
            to.as_str(),
            w.attr_type.as_str(),
            r.attr_type.as_str(),
            dir.consequence(),
        ));
    }
}

/// The problems below two matched attributes: their members (objects) and their elements
/// (arrays). A writer that declared no members or elements may have written anything there,
/// which a reader only needs when it requires a member without a default.
fn members_problems(
    r: &Attribute,
    w: &Attribute,
    paths: (&Path, &Path),
    dir: Direction,
    out: &mut Vec<String>,
) {
    if r.attr_type == AttrType::Object && w.attr_type == AttrType::Object {
        attribute_problems(&r.properties, &w.properties, Some(paths), dir, out);
    }
    if let (Some(rv), Some(wv)) = (r.values.as_deref(), w.values.as_deref()) {
        let new_path = match dir {
            Direction::Backward => paths.0,
            Direction::Forward => paths.1,
        };
        type_problems(
            rv,
            wv,
            &format!("the values of map \"{new_path}\""),
            dir,
            out,
        );
    }
    if let (Some(ri), Some(wi)) = (r.items.as_deref(), w.items.as_deref()) {
        let (reader_items, writer_items) = (paths.0.items(), paths.1.items());
        let new_path = match dir {
            Direction::Backward => &reader_items,
            Direction::Forward => &writer_items,
        };
        type_problems(ri, wi, &format!("the elements of \"{new_path}\""), dir, out);
        members_problems(ri, wi, (&reader_items, &writer_items), dir, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A definition of entity type `e` from a document that may leave out `entity_type`.
    fn def(mut doc: Value) -> Definition {
        if let Value::Object(m) = &mut doc {
            m.entry("entity_type").or_insert_with(|| json!("e"));
        }
        Definition::parse(&doc).unwrap()
    }

    fn attrs(a: Value) -> Definition {
        def(json!({"attributes": a}))
    }

    fn rels(r: Value) -> Definition {
        def(json!({"relationships": r}))
    }

    #[test]
    fn mode_names() {
        for m in CompatMode::ALL {
            assert_eq!(CompatMode::parse(m.as_str()), Some(m));
            assert_eq!(CompatMode::parse(&m.as_str().to_lowercase()), Some(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!(
            CompatMode::parse("BACKWARD_TRANSITIVE"),
            Some(CompatMode::BackwardTransitive)
        );
        assert_eq!(
            CompatMode::parse(" Forward_Transitive "),
            Some(CompatMode::ForwardTransitive)
        );
        assert_eq!(
            CompatMode::parse("full-transitive"),
            Some(CompatMode::FullTransitive)
        );
        assert_eq!(CompatMode::parse("none"), Some(CompatMode::None));
        assert_eq!(CompatMode::parse("backwards"), None);
        assert_eq!(CompatMode::parse(""), None);
        assert_eq!(CompatMode::default(), CompatMode::Backward);
        let transitive: Vec<_> = CompatMode::ALL
            .into_iter()
            .filter(|m| m.is_transitive())
            .collect();
        assert_eq!(
            transitive,
            vec![
                CompatMode::BackwardTransitive,
                CompatMode::ForwardTransitive,
                CompatMode::FullTransitive
            ]
        );
    }

    /// Nested compatibility: each row is (old attributes, new attributes, mode, expected reason
    /// fragments; empty = compatible). Reasons must name the full path.
    #[test]
    fn nested_compatibility_table() {
        let actor = |props: Value| json!({"actor": {"type": "object", "properties": props}});
        let commits = |items: Value| json!({"commits": {"type": "array", "items": items}});
        let rows: Vec<(Value, Value, CompatMode, Vec<&str>)> = vec![
            // Adding an optional member anywhere is compatible both ways.
            (actor(json!({"id": {"type": "integer"}})),
             actor(json!({"id": {"type": "integer"}, "login": {"type": "string"}})),
             CompatMode::Full, vec![]),
            // An opaque object gaining declared members: compatible.
            (json!({"actor": {"type": "object"}}), actor(json!({"login": {"type": "string"}})),
             CompatMode::Full, vec![]),
            // Widening a nested integer to number: backward yes, forward no.
            (actor(json!({"id": {"type": "integer"}})), actor(json!({"id": {"type": "number"}})),
             CompatMode::Backward, vec![]),
            (actor(json!({"id": {"type": "integer"}})), actor(json!({"id": {"type": "number"}})),
             CompatMode::Forward, vec!["attribute \"actor.id\" changed type from integer to number"]),
            // A nested type change that does not promote.
            (actor(json!({"id": {"type": "integer"}})), actor(json!({"id": {"type": "string"}})),
             CompatMode::Backward, vec!["attribute \"actor.id\" changed type from integer to string"]),
            // A new required nested member without default breaks backward, with a default not.
            (actor(json!({})), actor(json!({"login": {"type": "string", "required": true}})),
             CompatMode::Backward, vec!["attribute \"actor.login\" is required and has no default"]),
            (actor(json!({})), actor(json!({"login": {"type": "string", "required": true, "default": "?"}})),
             CompatMode::Backward, vec![]),
            // Removing a required nested member breaks forward.
            (actor(json!({"login": {"type": "string", "required": true}})), actor(json!({"id": {"type": "integer"}})),
             CompatMode::Forward, vec!["attribute \"actor.login\" was removed"]),
            // A nested rename through an alias is compatible and named with both paths.
            (actor(json!({"login": {"type": "integer"}})),
             actor(json!({"handle": {"type": "string", "aliases": ["login"]}})),
             CompatMode::Backward,
             vec!["attribute \"actor.handle\" (formerly \"actor.login\") changed type from integer to string"]),
            // Array elements: promotion and change, also inside objects in arrays.
            (commits(json!("integer")), commits(json!("number")), CompatMode::Backward, vec![]),
            (commits(json!("integer")), commits(json!("string")), CompatMode::Backward,
             vec!["the elements of \"commits[]\" changed type from integer to string"]),
            (commits(json!({"type": "object", "properties": {"sha": {"type": "string"}}})),
             commits(json!({"type": "object", "properties": {"sha": {"type": "integer"}}})),
             CompatMode::Backward,
             vec!["attribute \"commits[].sha\" changed type from string to integer"]),
            (commits(json!({"type": "object"})),
             commits(json!({"type": "object", "properties": {"sha": {"type": "string", "required": true}}})),
             CompatMode::Backward, vec!["attribute \"commits[].sha\" is required and has no default"]),
            // Elements declared where none were: compatible.
            (json!({"commits": {"type": "array"}}), commits(json!("string")), CompatMode::Full, vec![]),
            // Three levels down.
            (json!({"a": {"type": "object", "properties": {"b": {"type": "object", "properties": {"c": {"type": "date"}}}}}}),
             json!({"a": {"type": "object", "properties": {"b": {"type": "object", "properties": {"c": {"type": "boolean"}}}}}}),
             CompatMode::Backward, vec!["attribute \"a.b.c\" changed type from date to boolean"]),
        ];
        for (i, (old, new, mode, expected)) in rows.into_iter().enumerate() {
            let reasons = check(mode, &[attrs(old)], &attrs(new));
            assert_eq!(reasons.len(), expected.len(), "row {i}: {reasons:?}");
            for (r, e) in reasons.iter().zip(&expected) {
                assert!(r.contains(e), "row {i}: {r:?} should contain {e:?}");
            }
        }
    }

    #[test]
    fn promotions() {
        assert!(promotes(AttrType::Integer, AttrType::Number));
        assert!(promotes(AttrType::Date, AttrType::Timestamp));
        assert!(!promotes(AttrType::Number, AttrType::Integer));
        assert!(!promotes(AttrType::Timestamp, AttrType::Date));
        for t in AttrType::ALL {
            assert!(promotes(t, t));
        }
    }

    #[test]
    fn compatibility_table() {
        use CompatMode::*;
        // (mode, old, new, compatible?, substring of a reason when incompatible)
        #[rustfmt::skip]
        let cases: Vec<(CompatMode, Value, Value, bool, &str)> = vec![
            // --- BACKWARD: the new schema reads old data.
            (Backward, json!({"a": {"type": "string"}}), json!({"a": {"type": "string"}}), true, ""),
            (Backward, json!({"a": {"type": "string"}}), json!({"a": {"type": "string"}, "b": {"type": "integer"}}), true, ""),
            (Backward, json!({}), json!({"depth": {"type": "number", "required": true}}), false, "attribute \"depth\" is required and has no default"),
            (Backward, json!({}), json!({"depth": {"type": "number", "required": true, "default": 0}}), true, ""),
            (Backward, json!({"a": {"type": "string"}, "b": {"type": "string"}}), json!({"a": {"type": "string"}}), true, ""),
            (Backward, json!({"a": {"type": "string", "required": true}}), json!({}), true, ""),
            (Backward, json!({"a": {"type": "string"}}), json!({"a": {"type": "string", "required": true}}), false, "became required and has no default"),
            (Backward, json!({"a": {"type": "string"}}), json!({"a": {"type": "string", "required": true, "default": "x"}}), true, ""),
            (Backward, json!({"a": {"type": "string", "required": true}}), json!({"a": {"type": "string"}}), true, ""),
            (Backward, json!({"mag": {"type": "integer"}}), json!({"mag": {"type": "number"}}), true, ""),
            (Backward, json!({"mag": {"type": "number"}}), json!({"mag": {"type": "integer"}}), false, "attribute \"mag\" changed type from number to integer"),
            (Backward, json!({"t": {"type": "date"}}), json!({"t": {"type": "timestamp"}}), true, ""),
            (Backward, json!({"t": {"type": "timestamp"}}), json!({"t": {"type": "date"}}), false, "changed type from timestamp to date"),
            (Backward, json!({"a": {"type": "string"}}), json!({"a": {"type": "integer"}}), false, "(BACKWARD)"),
            (Backward, json!({"a": {"type": "integer"}}), json!({"a": {"type": "string"}}), false, "integer values cannot be read as string"),
            (Backward, json!({"a": {"type": "object"}}), json!({"a": {"type": "array"}}), false, "changed type from object to array"),
            (Backward, json!({"a": {"type": "string", "description": "old"}}), json!({"a": {"type": "string", "description": "new"}}), true, ""),
            (Backward, json!({"a": {"type": "integer"}}), json!({"a": {"type": "integer", "merge_policy": "max"}}), true, ""),
            // A rename that keeps the old name as an alias reads the old field.
            (Backward, json!({"depth": {"type": "integer", "required": true}}), json!({"depth_km": {"type": "number", "required": true, "aliases": ["depth"]}}), true, ""),
            (Backward, json!({"depth": {"type": "string", "required": true}}), json!({"depth_km": {"type": "number", "aliases": ["depth"]}}), false, "attribute \"depth_km\" (formerly \"depth\") changed type from string to number"),
            (Backward, json!({"depth": {"type": "integer"}}), json!({"depth_km": {"type": "integer", "required": true, "aliases": ["depth"]}}), false, "became required"),
            // --- FORWARD: the old schema reads new data.
            (Forward, json!({"a": {"type": "string"}}), json!({"a": {"type": "string"}, "depth": {"type": "number", "required": true}}), true, ""),
            (Forward, json!({"a": {"type": "string", "required": true}, "b": {"type": "string"}}), json!({"a": {"type": "string", "required": true}}), true, ""),
            (Forward, json!({"a": {"type": "string", "required": true}}), json!({}), false, "attribute \"a\" was removed but is required without a default in the previous schema"),
            (Forward, json!({"a": {"type": "string", "required": true, "default": "x"}}), json!({}), true, ""),
            (Forward, json!({"mag": {"type": "number"}}), json!({"mag": {"type": "integer"}}), true, ""),
            (Forward, json!({"mag": {"type": "integer"}}), json!({"mag": {"type": "number"}}), false, "number values cannot be read as integer: data written with the new schema cannot be read by the previous one (FORWARD)"),
            (Forward, json!({"t": {"type": "timestamp"}}), json!({"t": {"type": "date"}}), true, ""),
            (Forward, json!({"t": {"type": "date"}}), json!({"t": {"type": "timestamp"}}), false, "changed type from date to timestamp"),
            (Forward, json!({"a": {"type": "string", "required": true}}), json!({"a": {"type": "string"}}), false, "attribute \"a\" became optional"),
            (Forward, json!({"a": {"type": "string", "required": true, "default": "x"}}), json!({"a": {"type": "string"}}), true, ""),
            (Forward, json!({"a": {"type": "string"}}), json!({"a": {"type": "string", "required": true}}), true, ""),
            (Forward, json!({"a": {"type": "boolean"}}), json!({"a": {"type": "string"}}), false, "(FORWARD)"),
            // --- FULL: both directions.
            (Full, json!({"a": {"type": "string"}}), json!({"a": {"type": "string"}, "b": {"type": "integer"}}), true, ""),
            (Full, json!({"a": {"type": "string"}, "b": {"type": "integer"}}), json!({"a": {"type": "string"}}), true, ""),
            (Full, json!({"mag": {"type": "integer"}}), json!({"mag": {"type": "number"}}), false, "(FORWARD)"),
            (Full, json!({"mag": {"type": "number"}}), json!({"mag": {"type": "integer"}}), false, "(BACKWARD)"),
            (Full, json!({}), json!({"a": {"type": "string", "required": true}}), false, "is required and has no default"),
            (Full, json!({"a": {"type": "string", "required": true}}), json!({}), false, "was removed"),
            (Full, json!({}), json!({"a": {"type": "string", "required": true, "default": "x"}}), true, ""),
            // --- NONE: anything goes.
            (None, json!({"a": {"type": "string", "required": true}}), json!({"a": {"type": "integer"}, "b": {"type": "string", "required": true}}), true, ""),
            (None, json!({}), json!({"depth": {"type": "number", "required": true}}), true, ""),
            // --- Transitive modes against a one-version history behave as their base mode.
            (BackwardTransitive, json!({}), json!({"depth": {"type": "number", "required": true}}), false, "against version 1: attribute \"depth\" is required"),
            (ForwardTransitive, json!({"a": {"type": "string", "required": true}}), json!({}), false, "against version 1: attribute \"a\" was removed"),
            (FullTransitive, json!({"mag": {"type": "integer"}}), json!({"mag": {"type": "number"}}), false, "against version 1: attribute \"mag\""),
            (FullTransitive, json!({"a": {"type": "string"}}), json!({"a": {"type": "string"}, "b": {"type": "string"}}), true, ""),
        ];
        #[rustfmt::skip]
        let rel_cases: Vec<(CompatMode, Value, Value, bool, &str)> = vec![
            (Backward, json!({"near": {"target": "place"}}), json!({"near": {"target": "place"}, "felt_by": {"target": "person"}}), true, ""),
            (Backward, json!({"near": {"target": "place"}}), json!({}), true, ""),
            (Forward, json!({"near": {"target": "place"}}), json!({}), true, ""),
            (Forward, json!({}), json!({"near": {"target": "place"}}), true, ""),
            (Backward, json!({"near": {"target": "place"}}), json!({"near": {"target": "city"}}), false, "relationship \"near\" changed its target from \"place\" to \"city\""),
            (Forward, json!({"near": {"target": "place"}}), json!({"near": {"target": "city"}}), false, "(FORWARD)"),
            (Full, json!({"near": {"target": "place", "description": "a"}}), json!({"near": {"target": "place", "description": "b"}}), true, ""),
            (None, json!({"near": {"target": "place"}}), json!({"near": {"target": "city"}}), true, ""),
        ];
        let all = cases
            .into_iter()
            .map(|(m, o, n, ok, s)| (m, attrs(o), attrs(n), ok, s))
            .chain(
                rel_cases
                    .into_iter()
                    .map(|(m, o, n, ok, s)| (m, rels(o), rels(n), ok, s)),
            )
            .collect::<Vec<_>>();
        assert!(all.len() >= 35);
        for (i, (mode, old, new, compatible, needle)) in all.iter().enumerate() {
            let reasons = check(*mode, std::slice::from_ref(old), new);
            let ctx = format!(
                "case {i} ({mode}): old {} new {} -> {reasons:?}",
                old.to_json(),
                new.to_json()
            );
            assert_eq!(reasons.is_empty(), *compatible, "{ctx}");
            if !compatible {
                assert!(
                    reasons.iter().any(|r| r.contains(needle)),
                    "{ctx}: no reason contains {needle:?}"
                );
            }
        }
    }

    #[test]
    fn the_example_reason_reads_well() {
        let reasons = check(
            CompatMode::Backward,
            &[attrs(json!({}))],
            &attrs(json!({"depth": {"type": "number", "required": true}})),
        );
        assert_eq!(
            reasons,
            vec![
                "attribute \"depth\" is required and has no default: data written with the \
                 previous schema cannot be read by the new one (BACKWARD)"
            ]
        );
    }

    #[test]
    fn empty_history_is_always_compatible() {
        let new = attrs(json!({"a": {"type": "string", "required": true}}));
        for mode in CompatMode::ALL {
            assert!(check(mode, &[], &new).is_empty(), "{mode}");
        }
    }

    #[test]
    fn transitive_modes_catch_breaks_against_older_versions() {
        let v1 = attrs(json!({"a": {"type": "integer", "required": true}}));
        let v2 = attrs(json!({}));
        let v3 = attrs(json!({"a": {"type": "string"}}));
        let history = [v1, v2];

        assert!(check(CompatMode::Backward, &history, &v3).is_empty());
        let reasons = check(CompatMode::BackwardTransitive, &history, &v3);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0]
            .starts_with("against version 1: attribute \"a\" changed type from integer to string"));

        // FORWARD: v1 required `a` without a default, and v3 may omit it.
        assert!(check(CompatMode::Forward, &history, &v3).is_empty());
        let reasons = check(CompatMode::ForwardTransitive, &history, &v3);
        assert!(
            reasons.iter().all(|r| r.starts_with("against version 1: ")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("became optional")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("cannot be read as integer")),
            "{reasons:?}"
        );

        assert!(check(CompatMode::Full, &history, &v3).is_empty());
        let full = check(CompatMode::FullTransitive, &history, &v3);
        assert_eq!(full.len(), 3, "{full:?}");

        // Non-transitive reasons carry no version prefix.
        let reasons = check(CompatMode::Backward, &history[..1], &v3);
        assert_eq!(reasons.len(), 1);
        assert!(!reasons[0].starts_with("against"));
    }

    #[test]
    fn transitive_reasons_name_each_version() {
        let v1 = attrs(json!({"a": {"type": "number"}}));
        let v2 = attrs(json!({"a": {"type": "number"}, "b": {"type": "string"}}));
        let v3 = attrs(json!({"a": {"type": "integer"}, "b": {"type": "string"}}));
        let reasons = check(CompatMode::BackwardTransitive, &[v1, v2], &v3);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("against version 1: "));
        assert!(reasons[1].starts_with("against version 2: "));
    }

    #[test]
    fn every_problem_is_reported() {
        let old = def(json!({
            "attributes": {
                "a": {"type": "string", "required": true},
                "b": {"type": "number"},
                "c": {"type": "string"}
            },
            "relationships": {"near": {"target": "place"}}
        }));
        let new = def(json!({
            "attributes": {
                "b": {"type": "integer"},
                "c": {"type": "string", "required": true},
                "d": {"type": "boolean", "required": true}
            },
            "relationships": {"near": {"target": "city"}}
        }));
        let backward = check(CompatMode::Backward, std::slice::from_ref(&old), &new);
        assert_eq!(backward.len(), 4, "{backward:?}");
        for needle in [
            "\"b\" changed type",
            "\"c\" became required",
            "\"d\" is required",
            "\"near\"",
        ] {
            assert!(
                backward.iter().any(|r| r.contains(needle)),
                "{needle}: {backward:?}"
            );
        }
        let forward = check(CompatMode::Forward, std::slice::from_ref(&old), &new);
        assert_eq!(forward.len(), 2, "{forward:?}");
        assert!(forward.iter().any(|r| r.contains("\"a\" was removed")));
        assert!(forward.iter().any(|r| r.contains("\"near\"")));

        let full = check(CompatMode::Full, std::slice::from_ref(&old), &new);
        assert_eq!(full.len(), backward.len() + forward.len(), "{full:?}");
        let mut unique = full.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), full.len());
    }

    #[test]
    fn non_transitive_modes_check_only_the_latest_version() {
        let v1 = attrs(json!({}));
        let v2 = attrs(json!({"a": {"type": "string", "required": true}}));
        let v3 = attrs(json!({"a": {"type": "string", "required": true}}));
        // v3 is fine against v2; against v1 `a` would be a new required attribute.
        assert!(check(CompatMode::Backward, &[v1.clone(), v2.clone()], &v3).is_empty());
        let reasons = check(CompatMode::BackwardTransitive, &[v1, v2], &v3);
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].starts_with("against version 1: "));
    }
}
