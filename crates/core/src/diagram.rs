//! Diagrams of the registered definitions.
//!
//! # Mermaid ([`mermaid`])
//!
//! An `erDiagram`: entities sorted by name, each `    name {`, one `        type name` line per
//! attribute (sorted by name), `    }`; then one `    A }o--|| B : "rel"` line per relationship,
//! sorted by source then relationship name. A name that is not a valid schema name
//! ([`is_valid_name`]) is replaced by its [`safe_name`]; valid names are kept as they are.

use std::fmt::Write as _;

use crate::ident::{is_valid_name, safe_name};
use crate::schema::Definition;

/// A name as Mermaid shows it: kept when valid, else its safe form.
fn mermaid_name(name: &str) -> String {
    if is_valid_name(name) {
        name.to_string()
    } else {
        safe_name(name)
    }
}

/// A Mermaid `erDiagram` of the definitions; see the module documentation.
pub fn mermaid(defs: &[Definition]) -> String {
    let mut entities: Vec<(String, Vec<(String, String)>)> = defs
        .iter()
        .map(|d| {
            let mut attrs: Vec<(String, String)> = d
                .attributes
                .iter()
                .map(|(name, a)| (mermaid_name(name), a.attr_type.as_str().to_string()))
                .collect();
            attrs.sort();
            (mermaid_name(&d.entity_type), attrs)
        })
        .collect();
    entities.sort();
    let mut rels: Vec<(String, String, String)> = defs
        .iter()
        .flat_map(|d| {
            d.relationships.iter().map(|(name, r)| {
                (
                    mermaid_name(&d.entity_type),
                    mermaid_name(name),
                    mermaid_name(&r.target),
                )
            })
        })
        .collect();
    rels.sort();
    let mut out = String::from("erDiagram\n");
    for (entity, attrs) in &entities {
        let _ = writeln!(out, "    {entity} {{");
        for (name, t) in attrs {
            let _ = writeln!(out, "        {t} {name}");
        }
        out.push_str("    }\n");
    }
    for (source, name, target) in &rels {
        let _ = writeln!(out, "    {source} }}o--|| {target} : \"{name}\"");
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
}
