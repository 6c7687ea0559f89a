//! Diagrams of the registered definitions.
//!
//! # Mermaid ([`mermaid`])
//!
//! An `erDiagram`: entities sorted by name, each `    name {`, one `        type name` line per
//! attribute (sorted by name), `    }`; then one line per link, sorted by source, then link
//! name, then target. A name that is not a valid schema name ([`is_valid_name`]) is replaced by
//! its [`safe_name`]; valid names are kept as they are.
//!
//! - A relationship is `    A }o--|| B : "rel"` (many entities of type A to one B).
//! - A nested record is a box of its own: an `object` attribute that declares `properties`
//!   becomes the entity `{parent}_{attribute}` (`earthquake_properties`), linked from its
//!   parent one-to-one as `    parent ||--|| parent_attr : "attr"`; an `array` whose items are
//!   (at any depth of arrays) such an object becomes the entity `{parent}_{attribute}` too,
//!   linked one-to-many as `    parent ||--o{ parent_attr : "attr"`. The box lists the
//!   record's members the same way, recursively (`earthquake_properties_products`). A nested
//!   box whose name is already taken (by an entity type or another box) gets the first free
//!   `_2`, `_3`, … suffix.
//! - Any other attribute is a line of its box: its type, or for an array whose items are
//!   declared, the items' type followed by `[]` (`number[]`, `object[]` for opaque objects,
//!   `string[][]`).
//!
//! Definitions without nested records draw exactly as before nested records existed.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::ident::{is_valid_name, safe_name};
use crate::schema::{AttrType, Attribute, Definition};

/// A name as Mermaid shows it: kept when valid, else its safe form.
fn mermaid_name(name: &str) -> String {
    if is_valid_name(name) {
        name.to_string()
    } else {
        safe_name(name)
    }
}

/// The link from an entity to the type of a relationship's target.
const MANY_TO_ONE: &str = "}o--||";
/// The link from a box to the box of its nested object.
const ONE_TO_ONE: &str = "||--||";
/// The link from a box to the box of the objects its array holds.
const ONE_TO_MANY: &str = "||--o{";

/// The record an attribute draws as a box of its own, and whether there are many of it: the
/// attribute itself when it is an object with declared properties (one), or the object with
/// declared properties its array holds, through any depth of arrays (many).
fn record(a: &Attribute) -> Option<(&Attribute, bool)> {
    if a.is_structured() {
        return Some((a, false));
    }
    let mut items = a.items.as_deref();
    while let Some(i) = items {
        if i.is_structured() {
            return Some((i, true));
        }
        items = i.items.as_deref();
    }
    None
}

/// The type shown on an attribute's line: its type, or `{items}[]` for an array with items.
fn type_label(a: &Attribute) -> String {
    match (a.attr_type, &a.items) {
        (AttrType::Array, Some(items)) => format!("{}[]", type_label(items)),
        (t, _) => t.as_str().to_string(),
    }
}

/// A box: its name and its `(name, type)` lines.
type Entity = (String, Vec<(String, String)>);
/// A link: source, name, target, connector.
type Link = (String, String, String, &'static str);

/// The boxes and links being drawn.
struct Drawing {
    entities: Vec<Entity>,
    links: Vec<Link>,
    taken: BTreeSet<String>,
}

impl Drawing {
    /// `base`, or the first of `base_2`, `base_3`, … not taken yet; marks it taken.
    fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// Adds the box `name` holding `members`, and the boxes of its nested records.
    fn add(&mut self, name: String, members: &std::collections::BTreeMap<String, Attribute>) {
        let mut attrs = Vec::new();
        for (key, a) in members {
            match record(a) {
                Some((inner, many)) => {
                    let child = self.unique(mermaid_name(&format!("{name}_{key}")));
                    let connector = if many { ONE_TO_MANY } else { ONE_TO_ONE };
                    self.links
                        .push((name.clone(), mermaid_name(key), child.clone(), connector));
                    self.add(child, &inner.properties);
                }
                None => attrs.push((mermaid_name(key), type_label(a))),
            }
        }
        attrs.sort();
        self.entities.push((name, attrs));
    }
}

/// A Mermaid `erDiagram` of the definitions; see the module documentation.
pub fn mermaid(defs: &[Definition]) -> String {
    // Entity types first, in a fixed order, so that nested boxes yield to them and take
    // their suffixes the same way whatever order the definitions come in.
    let mut sorted: Vec<(String, &Definition)> = defs
        .iter()
        .map(|d| (mermaid_name(&d.entity_type), d))
        .collect();
    sorted.sort_by(|a, b| (&a.0, &a.1.entity_type).cmp(&(&b.0, &b.1.entity_type)));
    let mut drawing = Drawing {
        entities: Vec::new(),
        links: Vec::new(),
        taken: sorted.iter().map(|(name, _)| name.clone()).collect(),
    };
    for (name, d) in &sorted {
        drawing.add(name.clone(), &d.attributes);
        for (rel, r) in &d.relationships {
            drawing.links.push((
                name.clone(),
                mermaid_name(rel),
                mermaid_name(&r.target),
                MANY_TO_ONE,
            ));
        }
    }
    let Drawing {
        mut entities,
        mut links,
        ..
    } = drawing;
    entities.sort();
    links.sort();
    let mut out = String::from("erDiagram\n");
    for (entity, attrs) in &entities {
        let _ = writeln!(out, "    {entity} {{");
        for (name, t) in attrs {
            let _ = writeln!(out, "        {t} {name}");
        }
        out.push_str("    }\n");
    }
    for (source, name, target, connector) in &links {
        let _ = writeln!(out, "    {source} {connector} {target} : \"{name}\"");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mermaid_diagram() {
        let quake = Definition::parse(&json!({
            "entity_type": "earthquake",
            "attributes": {
                "time": {"type": "timestamp"},
                "mag": {"type": "number"},
                "felt": {"type": "integer"}
            },
            "relationships": {
                "near": {"target": "place"},
                "recorded_by": {"target": "station"}
            }
        }))
        .unwrap();
        let place = Definition::parse(&json!({
            "entity_type": "place",
            "attributes": {"name": {"type": "string"}}
        }))
        .unwrap();
        let station = Definition::parse(&json!({
            "entity_type": "station",
            "relationships": {"in": {"target": "place"}}
        }))
        .unwrap();
        let want = "erDiagram
    earthquake {
        integer felt
        number mag
        timestamp time
    }
    place {
        string name
    }
    station {
    }
    earthquake }o--|| place : \"near\"
    earthquake }o--|| station : \"recorded_by\"
    station }o--|| place : \"in\"
";
        let defs = [station.clone(), place.clone(), quake.clone()];
        assert_eq!(mermaid(&defs), want);
        assert_eq!(mermaid(&[quake, place, station]), want);
        assert_eq!(mermaid(&[]), "erDiagram\n");

        // Names Mermaid would choke on are made safe.
        let mut odd = Definition::parse(&json!({"entity_type": "odd"})).unwrap();
        odd.entity_type = "Odd Type {x}".into();
        let attr = Definition::parse(&json!({
            "entity_type": "t", "attributes": {"a": {"type": "string"}}
        }))
        .unwrap()
        .attributes["a"]
            .clone();
        odd.attributes.insert("Beak Length (mm)".into(), attr);
        assert_eq!(
            mermaid(&[odd]),
            "erDiagram\n    odd_type_x {\n        string beak_length_mm\n    }\n"
        );
    }

    #[test]
    fn nested_objects_are_boxes() {
        // Two levels: properties -> products, each a box linked one-to-one.
        let quake = Definition::parse(&json!({
            "entity_type": "earthquake",
            "attributes": {
                "id": {"type": "string"},
                "properties": {"type": "object", "properties": {
                    "mag": {"type": "number"},
                    "place": {"type": "string"},
                    "products": {"type": "object", "properties": {
                        "origin": {"type": "string"},
                        "shakemap": {"type": "object"}
                    }}
                }},
                "geometry": {"type": "object"}
            },
            "relationships": {"near": {"target": "place"}}
        }))
        .unwrap();
        let want = "erDiagram
    earthquake {
        object geometry
        string id
    }
    earthquake_properties {
        number mag
        string place
    }
    earthquake_properties_products {
        string origin
        object shakemap
    }
    earthquake }o--|| place : \"near\"
    earthquake ||--|| earthquake_properties : \"properties\"
    earthquake_properties ||--|| earthquake_properties_products : \"products\"
";
        assert_eq!(mermaid(std::slice::from_ref(&quake)), want);
    }

    #[test]
    fn arrays_of_objects_are_boxes() {
        let event = Definition::parse(&json!({
            "entity_type": "github_event",
            "attributes": {
                "type": {"type": "string"},
                "actor": {"type": "object", "properties": {"login": {"type": "string"}}},
                "payload": {"type": "object", "properties": {
                    "size": {"type": "integer"},
                    "commits": {"type": "array", "items": {"type": "object", "properties": {
                        "sha": {"type": "string"},
                        "files": {"type": "array", "items": "string"}
                    }}},
                    "pages": {"type": "array", "items": {"type": "array", "items": {
                        "type": "object", "properties": {"title": {"type": "string"}}
                    }}}
                }},
                "scores": {"type": "array", "items": "number"},
                "grid": {"type": "array", "items": {"type": "array", "items": "integer"}},
                "blobs": {"type": "array", "items": {"type": "object"}},
                "raw": {"type": "array"}
            }
        }))
        .unwrap();
        let want = "erDiagram
    github_event {
        object[] blobs
        integer[][] grid
        array raw
        number[] scores
        string type
    }
    github_event_actor {
        string login
    }
    github_event_payload {
        integer size
    }
    github_event_payload_commits {
        string[] files
        string sha
    }
    github_event_payload_pages {
        string title
    }
    github_event ||--|| github_event_actor : \"actor\"
    github_event ||--|| github_event_payload : \"payload\"
    github_event_payload ||--o{ github_event_payload_commits : \"commits\"
    github_event_payload ||--o{ github_event_payload_pages : \"pages\"
";
        assert_eq!(mermaid(std::slice::from_ref(&event)), want);
    }

    #[test]
    fn nested_box_names_do_not_collide() {
        // An entity type already named like the nested box: the box takes a suffix, whatever
        // the order of the definitions.
        let quake = Definition::parse(&json!({
            "entity_type": "earthquake",
            "attributes": {
                "properties": {"type": "object", "properties": {"mag": {"type": "number"}}}
            }
        }))
        .unwrap();
        let taken = Definition::parse(&json!({
            "entity_type": "earthquake_properties",
            "attributes": {"x": {"type": "string"}}
        }))
        .unwrap();
        let want = "erDiagram
    earthquake {
    }
    earthquake_properties {
        string x
    }
    earthquake_properties_2 {
        number mag
    }
    earthquake ||--|| earthquake_properties_2 : \"properties\"
";
        assert_eq!(mermaid(&[quake.clone(), taken.clone()]), want);
        assert_eq!(mermaid(&[taken, quake]), want);
    }
}
