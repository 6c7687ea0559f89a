//! Drafting proposals: from the evidence of one scope (aggregates, effective definition,
//! catalog facts gathered by the caller) to the rows of `evolve.schema_proposals`.
//!
//! # Kinds and when they are drafted
//!
//! - `attribute`: an undeclared key (not an attribute, alias or relationship of the effective
//!   definition) with at least one non-null value. Its attribute name is the key's
//!   [`column_name`] (a safe identifier), suffixed `_2`, `_3`… when that name is already
//!   declared; when it differs from the key, the key becomes the attribute's alias, so payloads
//!   keep mapping to it (the mapping is kept in the registry).
//! - `relationship` instead of `attribute` when the key is a valid name and its values are
//!   keys of entities of another type ([`references`]).
//! - `relationship` also when two types co-occur: at least half of a sample of the scope's entity
//!   keys ([`COOCCURRENCE_SAMPLE`]) are also keys of another type's entities (the same
//!   real-world things seen as both types). The relationship is named after the other type.
//! - `temporal`, in addition to `attribute`, when the key [`is_temporal`]: approving it declares
//!   the attribute and creates its index (event tracking sorts and filters on time).
//! - `index`: a declared relationship, or a declared `timestamp`/`date` attribute, without its
//!   index ([`index_name`]).
//! - `table`: a type with at least two declared attributes and no projection table yet.
//! - `entity_type`: a type the inbox rejected because it has no schema; the definition is
//!   inferred from the rejected payloads. Approved at once unless its name is close to an
//!   existing type's ([`similar_names`]), which is a conflict for review.
//! - `promote_to_global`: a field declared by at least `min_users` users' own schemas of a type
//!   and absent from the global schema. Its evidence names users and fields of several tenants:
//!   the SQL layer drafts it only in an admin's run and shows it to admins only.
//!
//! # Priorities
//!
//! - `attribute`, `temporal`, `relationship`: [`priority`] of the key's presence and
//!   confidence (high: presence ≥ threshold and confidence ≥ 0.8; medium: presence ≥
//!   threshold, or ≥ half of it with confidence ≥ 0.8; low otherwise).
//! - `index`: medium. `table`: low (a convenience).
//! - `entity_type`: high (its data is being rejected).
//! - `promote_to_global`: high when at least twice `min_users` users declare the field, else
//!   medium.
//!
//! # Measure
//!
//! What a rejection is compared against ([`should_repropose`](super::evidence::should_repropose)): the presence
//! for key-based kinds, else the number of entities, rows or users concerned.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::action::{Action, Column};
use super::ddl::{column_name, index_name, index_sql, projection_table_name, quote_literal};
use super::evidence::{
    attribute_evidence, fingerprint, is_temporal, priority, references, KeyStats, Priority,
};
use super::extract::{candidates, definition as extract_definition, Candidate, Identity};
use super::maps::{detect_maps, MapCandidate};
use crate::ident::is_valid_name;
#[cfg(test)]
use crate::infer::MAX_ELEMENTS_SAMPLED;
use crate::infer::{infer_attribute, TypeHistogram};
use crate::path::{lenient, Path};
use crate::schema::{AttrType, Definition};
use crate::similarity::similar_names;

/// Entity keys of a type sampled to find the types it co-occurs with.
pub const COOCCURRENCE_SAMPLE: usize = 100;

/// Levels below a proposed array or object whose elements and members are inferred.
pub const MAX_INFERRED_DEPTH: usize = 4;

/// Payloads of a rejected type looked at to infer its definition.
pub const MAX_PAYLOAD_SAMPLES: usize = 200;

/// One proposal, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub kind: &'static str,
    pub entity_type: String,
    pub user_id: Option<String>,
    /// The attribute, relationship, table or type as seen in the data.
    pub name: String,
    /// The identifier it maps to.
    pub safe_name: String,
    pub priority: Priority,
    pub title: String,
    pub rationale: String,
    /// Entities (or rows, or users) concerned.
    pub impact: i64,
    pub sql_preview: String,
    /// What approval does; read back by the SQL layer.
    pub action: Action,
    pub evidence: Value,
    pub measure: f64,
}

impl Draft {
    /// The array form of the path a key-based proposal is about (`None` for the other kinds).
    pub fn path(&self) -> Option<Vec<String>> {
        matches!(self.kind, "attribute" | "relationship" | "temporal")
            .then(|| lenient(&self.name).to_array())
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(
            self.kind,
            &self.entity_type,
            self.user_id.as_deref(),
            &self.name,
        )
    }
}

/// One entity type in one scope (global when `user_id` is `None`).
pub struct Scope<'a> {
    pub entity_type: &'a str,
    pub user_id: Option<&'a str>,
    pub entity_count: i64,
    /// The effective definition the scope's payloads are validated against.
    pub definition: &'a Definition,
    pub min_presence: f64,
    /// Elements of each sampled array looked at to infer what arrays hold.
    pub array_sample: usize,
}

impl Scope<'_> {
    fn declares(&self, key: &str) -> bool {
        let d = self.definition;
        d.relationships.contains_key(key) || d.attribute_named(key).is_some()
    }

    fn draft(
        &self,
        kind: &'static str,
        name: &str,
        safe_name: &str,
        priority: Priority,
        action: Action,
    ) -> Draft {
        Draft {
            kind,
            entity_type: self.entity_type.to_string(),
            user_id: self.user_id.map(str::to_string),
            name: name.to_string(),
            safe_name: safe_name.to_string(),
            priority,
            title: String::new(),
            rationale: String::new(),
            impact: 0,
            sql_preview: String::new(),
            action,
            evidence: Value::Null,
            measure: 0.0,
        }
    }
}

/// The SQL a schema patch runs, as text for review (the SQL layer runs it with arguments).
pub fn patch_sql(entity_type: &str, user_id: Option<&str>, patch: &Value) -> String {
    let user = user_id.map_or("NULL".to_string(), quote_literal);
    format!(
        "SELECT evolve.update_schema_incremental({}, {}::jsonb, {user})",
        quote_literal(entity_type),
        quote_literal(&patch.to_string()),
    )
}

/// The patch undoing a patch that added fields to `before` (the definition it was applied
/// to): each attribute or relationship it added is removed. A nested attribute is removed at
/// the first level `before` did not have, so members added to an existing object go and the
/// object stays.
pub fn removal_patch(patch: &Value, before: Option<&Definition>) -> Value {
    fn attributes(
        patch: &Map<String, Value>,
        parent: Option<&Path>,
        before: Option<&Definition>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, a) in patch {
            let path = parent.map_or_else(|| Path::key(name.clone()), |p| p.child(name.clone()));
            if before.and_then(|d| d.attribute_at(&path)).is_none() {
                out.insert(name.clone(), Value::Null);
                continue;
            }
            let mut inner = Map::new();
            if let Some(props) = a.get("properties").and_then(Value::as_object) {
                let removed = attributes(props, Some(&path), before);
                if !removed.is_empty() {
                    inner.insert("properties".into(), Value::Object(removed));
                }
            }
            if let Some(props) = a.pointer("/items/properties").and_then(Value::as_object) {
                let removed = attributes(props, Some(&path.items()), before);
                if !removed.is_empty() {
                    inner.insert("items".into(), json!({"properties": removed}));
                }
            }
            if !inner.is_empty() {
                out.insert(name.clone(), Value::Object(inner));
            }
        }
        out
    }
    let mut out = Map::new();
    if let Some(fields) = patch.get("attributes").and_then(Value::as_object) {
        out.insert(
            "attributes".into(),
            Value::Object(attributes(fields, None, before)),
        );
    }
    if let Some(fields) = patch.get("relationships").and_then(Value::as_object) {
        let nulls: Map<String, Value> = fields.keys().map(|k| (k.clone(), Value::Null)).collect();
        out.insert("relationships".into(), Value::Object(nulls));
    }
    Value::Object(out)
}

/// Where a nested key's attribute goes: the patch declaring it (every undeclared object on the
/// way declared too) and its path under safe names. Declared levels keep their names;
/// undeclared ones get a [`column_name`] unique among their siblings, with the raw key as an
/// alias when it differs. `None` when the way passes through something that is not an object.
struct Placement {
    patch: Value,
    path: Path,
}

fn place(
    def: &Definition,
    key: &Path,
    attr: Value,
    taken: &mut BTreeMap<String, BTreeSet<String>>,
    renamed: &mut BTreeMap<String, String>,
) -> Option<Placement> {
    let segments: Vec<&str> = key.keys()?;
    let mut members = Some(&def.attributes);
    let mut raw = Path::key(segments[0]);
    let mut safe: Option<Path> = None;
    // (safe name, raw key) of each level, outermost first.
    let mut levels: Vec<(String, String)> = Vec::new();
    for (i, raw_key) in segments.iter().enumerate() {
        if i > 0 {
            raw = raw.child(*raw_key);
        }
        let parent_text = safe.as_ref().map(Path::to_string).unwrap_or_default();
        let declared = members.and_then(|m| crate::schema::Attribute::member(m, raw_key));
        let name = match declared {
            Some((name, a)) => {
                let last = i + 1 == segments.len();
                if !last && a.attr_type != AttrType::Object {
                    return None;
                }
                members = Some(&a.properties);
                name.clone()
            }
            None => {
                members = None;
                match renamed.get(&raw.to_string()) {
                    Some(n) => n.clone(),
                    None => {
                        let siblings = taken.entry(parent_text.clone()).or_insert_with(|| {
                            let declared: Option<&BTreeMap<_, _>> = match &safe {
                                None => Some(&def.attributes),
                                Some(p) => def.attribute_at(p).map(|(_, a)| &a.properties),
                            };
                            let mut names: BTreeSet<String> = declared
                                .into_iter()
                                .flat_map(|m| m.keys().cloned())
                                .collect();
                            if safe.is_none() {
                                names.extend(def.relationships.keys().cloned());
                            }
                            names
                        });
                        let n = unique_name(&column_name(raw_key), siblings);
                        siblings.insert(n.clone());
                        renamed.insert(raw.to_string(), n.clone());
                        n
                    }
                }
            }
        };
        safe = Some(safe.map_or_else(|| Path::key(name.clone()), |p| p.child(name.clone())));
        levels.push((name, raw_key.to_string()));
    }
    let safe = safe?;
    let mut value = attr;
    let mut child: Option<&str> = None;
    for (depth, (name, raw_key)) in levels.iter().enumerate().rev() {
        if let Some(child) = child {
            value = json!({"type": "object", "properties": {child: value}});
        }
        let prefix = Path::from_segments(safe.segments()[..=depth].to_vec()).ok()?;
        if def.attribute_at(&prefix).is_none() && name != raw_key {
            value["aliases"] = json!([raw_key]);
        }
        child = Some(name);
    }
    let top = levels.first()?.0.clone();
    Some(Placement {
        patch: json!({"attributes": {top: value}}),
        path: safe,
    })
}

fn percent(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// Drafts for the undeclared keys of one scope. `known_keys_by_type` holds, for each known
/// entity type, those of its entity keys that appear among the keys' sample values.
pub fn key_drafts(
    scope: &Scope<'_>,
    keys: &[KeyStats],
    known_keys_by_type: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Draft> {
    let mut taken: BTreeSet<String> = scope
        .definition
        .attributes
        .keys()
        .chain(scope.definition.relationships.keys())
        .cloned()
        .collect();
    let others: BTreeMap<String, BTreeSet<String>> = known_keys_by_type
        .iter()
        .filter(|(t, _)| t.as_str() != scope.entity_type)
        .map(|(t, k)| (t.clone(), k.clone()))
        .collect();
    let mut sorted: Vec<&KeyStats> = keys.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Vec::new();
    let mut nested_taken = BTreeMap::new();
    let mut renamed = BTreeMap::new();
    // Objects whose keys are data: one map attribute each, not one attribute per key.
    let maps: Vec<MapCandidate> = detect_maps(keys, scope.entity_count)
        .into_iter()
        .filter(|m| scope.definition.attribute_at(&m.path).is_none())
        .collect();
    let in_maps: BTreeSet<&str> = maps
        .iter()
        .flat_map(|m| m.fragment_keys.iter().map(String::as_str))
        .collect();
    let map_names: BTreeSet<String> = maps.iter().map(|m| m.path.to_string()).collect();
    for m in &maps {
        let Some(placed) = place(
            scope.definition,
            &m.path,
            m.attribute.clone(),
            &mut nested_taken,
            &mut renamed,
        ) else {
            continue;
        };
        let name = m.path.to_string();
        let safe = placed.path.to_string();
        let value_type = m.attribute["values"]["type"]
            .as_str()
            .unwrap_or("any value")
            .to_string();
        let presence = m.entities as f64 / scope.entity_count.max(1) as f64;
        let action = Action::patch(placed.patch.clone(), &safe, &name);
        let mut d = scope.draft("attribute", &name, &safe, Priority::Medium, action);
        d.title = format!(
            "Declare {safe} as a map of {value_type} in {}",
            scope.entity_type
        );
        d.rationale = format!(
            "\"{name}\" holds {} distinct keys, each in few {} entities ({} of them look like data: ids, dates, hashes, e.g. {}): its keys are data, not fields. One object attribute whose values are {value_type} keeps them together.",
            m.distinct_keys,
            scope.entity_type,
            percent(m.data_like_share),
            m.sample_keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", "),
        );
        d.impact = m.entities;
        d.sql_preview = patch_sql(scope.entity_type, scope.user_id, &placed.patch);
        d.evidence = json!({
            "attribute": safe,
            "path": placed.path.to_array(),
            "map": {"distinct_keys": m.distinct_keys, "sample_keys": m.sample_keys,
                    "data_like_share": m.data_like_share, "values": m.attribute["values"]},
            "presence": presence,
            "entity_count": scope.entity_count,
        });
        d.measure = presence;
        out.push(d);
    }
    for stats in sorted {
        if scope.declares(&stats.key)
            || in_maps.contains(stats.key.as_str())
            || map_names.contains(&stats.key)
        {
            continue;
        }
        let Some(ev) = attribute_evidence(stats, scope.entity_count) else {
            continue;
        };
        let prio = priority(ev.presence, ev.confidence, scope.min_presence);
        let path = lenient(&stats.key);
        // An array's elements (and an object's members) as its sampled values show them.
        let inferred = match ev.inferred_type {
            AttrType::Array | AttrType::Object => {
                infer_attribute(&stats.sample_values, MAX_INFERRED_DEPTH, scope.array_sample)
                    .filter(|a| a["type"] == ev.inferred_type.as_str())
            }
            _ => None,
        }
        .unwrap_or_else(|| json!({"type": ev.inferred_type.as_str()}));
        if path.len() > 1 {
            let attr = inferred.clone();
            let Some(placed) = place(
                scope.definition,
                &path,
                attr,
                &mut nested_taken,
                &mut renamed,
            ) else {
                continue;
            };
            let safe = placed.path.to_string();
            let mut evidence = ev.to_json();
            evidence["attribute"] = Value::from(safe.clone());
            evidence["path"] = json!(placed.path.to_array());
            let action = Action::patch(placed.patch.clone(), &safe, &stats.key);
            let mut d = scope.draft("attribute", &stats.key, &safe, prio, action);
            d.title = format!(
                "Add attribute {safe} ({}) to {}",
                ev.inferred_type.as_str(),
                scope.entity_type
            );
            d.rationale = format!(
                "\"{}\" is present in {} of the {} {} entities ({} with a value); {} of its values are {} (confidence {:.2}).{}",
                stats.key,
                percent(ev.presence),
                ev.entity_count,
                scope.entity_type,
                ev.entities_with_value,
                percent(ev.type_consistency),
                ev.inferred_type.as_str(),
                ev.confidence,
                if safe == stats.key { String::new() } else { format!(" The path maps to {safe}.") },
            );
            d.impact = ev.entities_with_value;
            d.sql_preview = patch_sql(scope.entity_type, scope.user_id, &placed.patch);
            d.evidence = evidence;
            d.measure = ev.presence;
            out.push(d);
            continue;
        }
        // The payload key itself (a fragment key is its path's text form, quoted when the key
        // holds '.', '[', ']' or '"'): the alias payloads are matched by.
        let raw = path.last_key().unwrap_or(&stats.key).to_string();
        let safe = unique_name(&column_name(&raw), &taken);
        taken.insert(safe.clone());
        let mut evidence = ev.to_json();
        evidence["attribute"] = Value::from(safe.clone());
        let basis = format!(
            "\"{}\" is present in {} of the {} {} entities ({} with a value); {} of its values are {} (confidence {:.2}).",
            stats.key,
            percent(ev.presence),
            ev.entity_count,
            scope.entity_type,
            ev.entities_with_value,
            percent(ev.type_consistency),
            ev.inferred_type.as_str(),
            ev.confidence,
        );
        let target = if is_valid_name(&raw) && safe == raw {
            references(&stats.key, &ev.samples, &others)
        } else {
            None
        };
        if let Some((target, share)) = target {
            let patch = json!({"relationships": {safe.clone(): {"target": target}}});
            let action = Action::patch(patch.clone(), &safe, &stats.key);
            let mut d = scope.draft("relationship", &stats.key, &safe, prio, action);
            d.title = format!(
                "Relate {} to {target} through \"{}\"",
                scope.entity_type, stats.key
            );
            d.rationale = format!(
                "{basis} {} of its sampled values are keys of {target} entities.",
                percent(share)
            );
            d.impact = ev.entities_with_value;
            d.sql_preview = patch_sql(scope.entity_type, scope.user_id, &patch);
            evidence["target"] = Value::from(target);
            evidence["reference_share"] = Value::from(share);
            d.evidence = evidence;
            d.measure = ev.presence;
            out.push(d);
            continue;
        }
        let mut attr = inferred;
        if safe != raw {
            attr["aliases"] = json!([raw]);
        }
        let patch = json!({"attributes": {safe.clone(): attr.clone()}});
        let action = Action::patch(patch.clone(), &safe, &stats.key);
        let mut d = scope.draft("attribute", &stats.key, &safe, prio, action);
        d.title = format!(
            "Add attribute {safe} ({}) to {}",
            ev.inferred_type.as_str(),
            scope.entity_type
        );
        d.rationale = if safe == raw {
            basis.clone()
        } else {
            format!("{basis} The key maps to the identifier {safe}.")
        };
        d.impact = ev.entities_with_value;
        d.sql_preview = patch_sql(scope.entity_type, scope.user_id, &patch);
        d.evidence = evidence.clone();
        d.measure = ev.presence;
        out.push(d);
        if is_temporal(&stats.key, &ev) {
            let mut attr = attr;
            attr["description"] = Value::from(format!(
                "Event time of the {} (temporal field)",
                scope.entity_type
            ));
            let patch = json!({"attributes": {safe.clone(): attr}});
            let (index, _) = index_sql("evolve", scope.entity_type, &safe, ev.inferred_type);
            let action = Action::PatchAndIndex {
                patch: patch.clone(),
                field: Some(safe.clone()),
                key: Some(stats.key.clone()),
                attr_type: ev.inferred_type,
            };
            let mut d = scope.draft("temporal", &stats.key, &safe, prio, action);
            d.title = format!("Track {} events by {safe}", scope.entity_type);
            d.rationale = format!(
                "{basis} Its values are points in time: declaring it as the event time and indexing it lets queries follow {} over time.",
                scope.entity_type
            );
            d.impact = ev.entities_with_value;
            d.sql_preview = format!(
                "{};\n{index}",
                patch_sql(scope.entity_type, scope.user_id, &patch)
            );
            d.evidence = evidence;
            d.measure = ev.presence;
            out.push(d);
        }
    }
    out
}

/// The objects of a scope that may be entities of their own ([`super::extract::candidates`]):
/// undeclared top-level objects with an id-like member.
pub fn extract_candidates(scope: &Scope<'_>, keys: &[KeyStats]) -> Vec<Candidate> {
    candidates(keys, scope.entity_count, |name| {
        scope.definition.attributes.contains_key(name)
            || scope.definition.relationships.contains_key(name)
            || scope.definition.attribute_named(name).is_some()
    })
}

/// `extract_entity` drafts for the candidates whose measured identity makes them entities: the
/// object becomes a type of its own (named after its key) related to the scope's type.
pub fn extract_drafts(scope: &Scope<'_>, found: &[(Candidate, Identity)]) -> Vec<Draft> {
    let mut out = Vec::new();
    for (c, identity) in found {
        if !identity.is_entity() {
            continue;
        }
        let name = c.path.to_string();
        let target = column_name(&name);
        if target == scope.entity_type {
            continue;
        }
        let definition = extract_definition(&target, c, scope.entity_count);
        let action = Action::ExtractEntity {
            definition: definition.clone(),
            target: target.clone(),
            relationship: name.clone(),
            key: c.id_key.clone(),
        };
        let presence = identity.occurrences as f64 / scope.entity_count.max(1) as f64;
        let priority = if identity.occurrences as f64 >= 3.0 * identity.distinct as f64 {
            Priority::High
        } else {
            Priority::Medium
        };
        let mut d = scope.draft("extract_entity", &name, &target, priority, action);
        d.title = format!(
            "Extract {name} as entity type {target}, related to {}",
            scope.entity_type
        );
        d.rationale = format!(
            "\"{name}\" is an object identified by \"{}\": {} of the {} {} entities hold one, with {} distinct ids (each seen {:.1} times on average), and one id comes with the same other values in {} of the cases. It describes something of its own, which {} entities share.",
            c.id_key,
            identity.occurrences,
            scope.entity_count,
            scope.entity_type,
            identity.distinct,
            identity.occurrences as f64 / identity.distinct.max(1) as f64,
            percent(identity.consistency),
            scope.entity_type,
        );
        d.impact = identity.occurrences;
        d.sql_preview = format!(
            "SELECT evolve.register_schema({}::jsonb, {});\n{}",
            quote_literal(&definition.to_string()),
            scope.user_id.map_or("NULL".to_string(), quote_literal),
            patch_sql(
                scope.entity_type,
                scope.user_id,
                &json!({"relationships": {name.clone(): {"target": target, "key": c.id_key}}})
            )
        );
        d.evidence = json!({
            "path": c.path.to_array(),
            "id_key": c.id_key,
            "occurrences": identity.occurrences,
            "distinct_ids": identity.distinct,
            "repeats": identity.occurrences - identity.distinct,
            "consistency": identity.consistency,
            "presence": presence,
            "definition": definition,
        });
        d.measure = presence;
        out.push(d);
    }
    out
}

/// Relationship drafts for the types a scope co-occurs with: `shared` counts, per other type,
/// how many of the `sampled` entity keys of the scope are also its entity keys. Types already
/// related to the scope, or proposed through a key in `drafted`, are skipped.
pub fn cooccurrence_drafts(
    scope: &Scope<'_>,
    sampled: usize,
    shared: &BTreeMap<String, usize>,
    drafted: &[Draft],
) -> Vec<Draft> {
    let d = scope.definition;
    let mut taken: BTreeSet<String> = d
        .attributes
        .keys()
        .chain(d.relationships.keys())
        .cloned()
        .collect();
    taken.extend(drafted.iter().map(|x| x.safe_name.clone()));
    let mut out = Vec::new();
    for (target, &n) in shared {
        let share = if sampled == 0 {
            0.0
        } else {
            n as f64 / sampled as f64
        };
        let related = d.relationships.values().any(|r| &r.target == target)
            || drafted
                .iter()
                .any(|x| x.kind == "relationship" && x.evidence["target"] == json!(target));
        if target == scope.entity_type || share < 0.5 || related {
            continue;
        }
        let safe = unique_name(&column_name(target), &taken);
        taken.insert(safe.clone());
        let patch = json!({"relationships": {safe.clone(): {"target": target,
            "description": format!("The {target} with the same key")}}});
        let action = Action::patch(patch.clone(), &safe, &safe);
        let mut p = scope.draft(
            "relationship",
            target,
            &safe,
            if share >= 0.8 {
                Priority::Medium
            } else {
                Priority::Low
            },
            action,
        );
        p.title = format!(
            "Relate {} to {target}: they share entity keys",
            scope.entity_type
        );
        p.rationale = format!(
            "{} of {sampled} sampled {} keys are also {target} keys: the two types describe the same things.",
            n, scope.entity_type
        );
        p.impact = scope.entity_count;
        p.sql_preview = patch_sql(scope.entity_type, scope.user_id, &patch);
        p.evidence = json!({"target": target, "cooccurrence_share": share, "sampled_keys": sampled, "shared_keys": n});
        p.measure = share;
        out.push(p);
    }
    out
}

/// `base`, or `base_2`, `base_3`… when taken.
fn unique_name(base: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let cut = base
                .char_indices()
                .take_while(|(i, _)| *i + suffix.len() < 64)
                .map(|(_, c)| c)
                .collect::<String>();
            format!("{cut}{suffix}")
        })
        .find(|c| !taken.contains(c))
        .expect("some suffix is free")
}

/// Index drafts for a scope's declared relationships and time attributes that have no index
/// (`existing` holds the names of the indexes on `evolve.entities`).
pub fn index_drafts(scope: &Scope<'_>, existing: &BTreeSet<String>) -> Vec<Draft> {
    let d = scope.definition;
    let mut fields: Vec<(String, AttrType, &'static str)> = d
        .relationships
        .keys()
        .map(|r| (r.clone(), AttrType::String, "joined on"))
        .collect();
    fields.extend(
        d.attributes
            .iter()
            .filter(|(_, a)| matches!(a.attr_type, AttrType::Timestamp | AttrType::Date))
            .map(|(n, a)| (n.clone(), a.attr_type, "filtered and sorted on")),
    );
    let mut out = Vec::new();
    for (field, t, why) in fields {
        let name = index_name(scope.entity_type, &field);
        if existing.contains(&name) {
            continue;
        }
        let (create, _) = index_sql("evolve", scope.entity_type, &field, t);
        let action = Action::Index {
            field: Some(field.clone()),
            attr_type: t,
        };
        let mut p = scope.draft("index", &field, &name, Priority::Medium, action);
        p.title = format!("Index {}.{field}", scope.entity_type);
        p.rationale = format!(
            "{field} is a declared {} of {} and is {why}; {} entities would be indexed.",
            if why == "joined on" {
                "relationship"
            } else {
                "time attribute"
            },
            scope.entity_type,
            scope.entity_count
        );
        p.impact = scope.entity_count;
        p.sql_preview = create;
        p.evidence = json!({"field": field, "attr_type": t.as_str(), "index": name, "entity_count": scope.entity_count});
        p.measure = scope.entity_count as f64;
        out.push(p);
    }
    out
}

/// The projection table draft of a scope, when it has at least two declared attributes and
/// its table does not exist yet.
pub fn table_draft(scope: &Scope<'_>, table_exists: bool) -> Option<Draft> {
    let columns: Vec<(String, AttrType)> = scope
        .definition
        .attributes
        .iter()
        .map(|(n, a)| (n.clone(), a.attr_type))
        .collect();
    if columns.len() < 2 || table_exists || scope.user_id.is_some() {
        return None;
    }
    // The proposal keeps its name of before projections (its fingerprint stays); approving it
    // creates the projection evolve_data.<type>.
    let table = projection_table_name(scope.entity_type);
    let action = Action::Table {
        columns: columns.iter().map(|(n, t)| Column(n.clone(), *t)).collect(),
    };
    let mut d = scope.draft("table", &table, &table, Priority::Low, action);
    d.title = format!(
        "Create the typed projection evolve_data.{}",
        scope.entity_type
    );
    d.rationale = format!(
        "{} has {} declared attributes over {} entities; a typed projection gives them real columns for reporting and joins, filled from the snapshots and kept current with them.",
        scope.entity_type,
        columns.len(),
        scope.entity_count
    );
    d.impact = scope.entity_count;
    d.sql_preview = format!(
        "SELECT evolve.create_projection({})",
        quote_literal(scope.entity_type)
    );
    d.evidence = json!({"columns": columns.iter().map(|(n, t)| json!({"attribute": n, "type": t.as_str()})).collect::<Vec<_>>(),
                        "entity_count": scope.entity_count});
    d.measure = scope.entity_count as f64;
    Some(d)
}

/// The draft registering a type the inbox rejected for lack of a schema, inferred from (up to
/// [`MAX_PAYLOAD_SAMPLES`] of) its rejected payloads; `existing` are the names of known types.
pub fn entity_type_draft(
    entity_type: &str,
    user_id: Option<&str>,
    rejected_rows: i64,
    payloads: &[Value],
    existing: &[String],
    similarity_threshold: f64,
) -> Option<Draft> {
    if !is_valid_name(entity_type) {
        return None;
    }
    let mut histograms: BTreeMap<String, TypeHistogram> = BTreeMap::new();
    for p in payloads.iter().take(MAX_PAYLOAD_SAMPLES) {
        if let Some(o) = p.as_object() {
            for (k, v) in o {
                histograms.entry(k.clone()).or_default().add_value(v);
            }
        }
    }
    let mut taken = BTreeSet::new();
    let mut attributes = Map::new();
    let mut inferred = Map::new();
    for (key, h) in &histograms {
        let Some((t, consistency)) = h.infer() else {
            continue;
        };
        let safe = unique_name(&column_name(key), &taken);
        taken.insert(safe.clone());
        let mut attr = json!({"type": t.as_str()});
        if &safe != key {
            attr["aliases"] = json!([key]);
        }
        attributes.insert(safe, attr);
        inferred.insert(
            key.clone(),
            json!({"inferred_type": t.as_str(), "type_consistency": consistency}),
        );
    }
    let conflicts = similar_names(
        entity_type,
        existing.iter().map(String::as_str),
        similarity_threshold,
    );
    let definition = json!({"entity_type": entity_type, "attributes": attributes});
    let scope_user = user_id.map_or("NULL".to_string(), quote_literal);
    Some(Draft {
        kind: "entity_type",
        entity_type: entity_type.to_string(),
        user_id: user_id.map(str::to_string),
        name: entity_type.to_string(),
        safe_name: entity_type.to_string(),
        priority: Priority::High,
        title: format!("Register entity type {entity_type}"),
        rationale: if conflicts.is_empty() {
            format!(
                "The inbox rejected {rejected_rows} rows of unregistered type {entity_type}; registering the inferred schema ingests them."
            )
        } else {
            format!(
                "The inbox rejected {rejected_rows} rows of unregistered type {entity_type}, whose name is close to {}: review before registering.",
                conflicts.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )
        },
        impact: rejected_rows,
        sql_preview: format!(
            "SELECT evolve.register_schema({}::jsonb, {scope_user})",
            quote_literal(&definition.to_string())
        ),
        action: Action::Register {
            definition,
            auto: conflicts.is_empty(),
        },
        evidence: json!({
            "rejected_rows": rejected_rows,
            "payloads_sampled": payloads.len().min(MAX_PAYLOAD_SAMPLES),
            "attributes": inferred,
            "conflicts": conflicts.iter().map(|(n, s)| json!({"existing": n, "score": s})).collect::<Vec<_>>(),
        }),
        measure: rejected_rows as f64,
    })
}

/// Drafts promoting fields that at least `min_users` users declare in their own schemas of a
/// type to its global schema. `user_defs` are the users' own definitions (not effective).
pub fn promote_drafts(
    entity_type: &str,
    global: Option<&Definition>,
    user_defs: &[(String, Definition)],
    min_users: i64,
) -> Vec<Draft> {
    // field → (type → users)
    let mut seen: BTreeMap<String, BTreeMap<&'static str, BTreeSet<&str>>> = BTreeMap::new();
    for (user, def) in user_defs {
        for (name, a) in &def.attributes {
            if global.is_some_and(|g| {
                g.attributes.contains_key(name) || g.relationships.contains_key(name)
            }) {
                continue;
            }
            seen.entry(name.clone())
                .or_default()
                .entry(a.attr_type.as_str())
                .or_default()
                .insert(user.as_str());
        }
    }
    let mut out = Vec::new();
    for (field, by_type) in seen {
        let users: BTreeSet<&str> = by_type.values().flatten().copied().collect();
        let n = users.len() as i64;
        if n < min_users.max(1) {
            continue;
        }
        // The type most users declare (ties: the first in name order).
        let (t, _) = by_type
            .iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)))
            .expect("non-empty");
        let patch = json!({"attributes": {field.clone(): {"type": t}}});
        out.push(Draft {
            kind: "promote_to_global",
            entity_type: entity_type.to_string(),
            user_id: None,
            name: field.clone(),
            safe_name: field.clone(),
            priority: if n >= 2 * min_users.max(1) { Priority::High } else { Priority::Medium },
            title: format!("Promote {field} ({t}) to the global {entity_type} schema"),
            rationale: format!(
                "{n} users declare {field} in their own {entity_type} schemas (threshold {min_users}); a global attribute serves them all."
            ),
            impact: n,
            sql_preview: patch_sql(entity_type, None, &patch),
            action: Action::patch(patch, &field, &field),
            evidence: json!({
                "users": n,
                "types": by_type.iter().map(|(t, u)| (t.to_string(), Value::from(u.len()))).collect::<Map<_, _>>(),
                "sample_users": users.iter().take(10).collect::<Vec<_>>(),
            }),
            measure: n as f64,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(doc: Value) -> Definition {
        Definition::parse(&doc).unwrap()
    }

    fn stats(key: &str, sample_count: i64, types: &[(&str, i64)], samples: Vec<Value>) -> KeyStats {
        KeyStats {
            key: key.into(),
            sample_count,
            frequency_total: sample_count,
            type_counts: types.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            unique_sources: 1,
            sample_values: samples,
        }
    }

    #[test]
    fn nested_keys_become_nested_attributes() {
        let d = def(json!({"entity_type": "event", "attributes": {
            "actor": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "geo": {"type": "string"}
        }}));
        let scope = Scope {
            entity_type: "event",
            user_id: None,
            entity_count: 10,
            definition: &d,
            min_presence: 0.5,
            array_sample: MAX_ELEMENTS_SAMPLED,
        };
        let keys = vec![
            stats("actor.id", 10, &[("integer", 10)], vec![json!(1)]),
            stats("actor.login", 10, &[("string", 10)], vec![json!("ada")]),
            stats(
                "repo.\"Full Name\"",
                9,
                &[("string", 9)],
                vec![json!("x/y")],
            ),
            stats("repo.stars", 9, &[("integer", 9)], vec![json!(3)]),
            stats("Repo Info.url", 5, &[("string", 5)], vec![json!("u")]),
            stats("geo.lat", 5, &[("number", 5)], vec![json!(1.5)]),
        ];
        let drafts = key_drafts(&scope, &keys, &BTreeMap::new());
        let by_name: BTreeMap<&str, &Draft> = drafts.iter().map(|d| (d.name.as_str(), d)).collect();
        assert_eq!(
            by_name.keys().copied().collect::<Vec<_>>(),
            [
                "Repo Info.url",
                "actor.login",
                "repo.\"Full Name\"",
                "repo.stars"
            ],
            "declared paths and paths through non-objects are skipped"
        );
        let login = by_name["actor.login"];
        assert_eq!(login.safe_name, "actor.login");
        assert_eq!(
            login.action.to_json()["patch"],
            json!({"attributes": {"actor": {"type": "object", "properties": {"login": {"type": "string"}}}}})
        );
        assert_eq!(login.evidence["path"], json!(["actor", "login"]));
        let full = by_name["repo.\"Full Name\""];
        assert_eq!(full.safe_name, "repo.full_name");
        assert_eq!(
            full.action.to_json()["patch"],
            json!({"attributes": {"repo": {"type": "object", "properties": {
                "full_name": {"type": "string", "aliases": ["Full Name"]}}}}})
        );
        let info = by_name["Repo Info.url"];
        assert_eq!(info.safe_name, "repo_info.url");
        assert_eq!(
            info.action.to_json()["patch"],
            json!({"attributes": {"repo_info": {"type": "object", "aliases": ["Repo Info"],
                "properties": {"url": {"type": "string"}}}}})
        );
        // Approving every draft builds one nested definition that declares every path.
        let mut doc = d.to_json();
        for dr in &drafts {
            doc = crate::schema::merge_patch(&doc, &dr.action.to_json()["patch"]);
        }
        let merged = Definition::parse_input(&doc).unwrap();
        for dr in &drafts {
            assert!(merged.attribute_named(&dr.name).is_some(), "{}", dr.name);
            assert!(
                merged.attribute_named(&dr.safe_name).is_some(),
                "{}",
                dr.safe_name
            );
        }
    }

    #[test]
    fn undeclared_keys_become_attributes_with_safe_names_and_aliases() {
        let d = def(json!({"entity_type": "bird", "attributes": {"mag": {"type": "number"}}}));
        let scope = Scope {
            entity_type: "bird",
            user_id: None,
            entity_count: 10,
            definition: &d,
            min_presence: 0.5,
            array_sample: MAX_ELEMENTS_SAMPLED,
        };
        let keys = vec![
            stats("Beak Length (mm)", 8, &[("number", 8)], vec![json!(1.5)]),
            stats("mag", 10, &[("number", 10)], vec![]),
            stats(
                "\"; DROP TABLE x; --",
                1,
                &[("string", 1)],
                vec![json!("x")],
            ),
        ];
        let drafts = key_drafts(&scope, &keys, &BTreeMap::new());
        assert_eq!(drafts.len(), 2, "the declared key is skipped");
        let beak = drafts
            .iter()
            .find(|d| d.name == "Beak Length (mm)")
            .unwrap();
        assert_eq!(beak.kind, "attribute");
        assert_eq!(beak.safe_name, "beak_length_mm");
        assert_eq!(beak.priority, Priority::Medium);
        assert_eq!(
            beak.action.to_json()["patch"],
            json!({"attributes": {"beak_length_mm": {"type": "number", "aliases": ["Beak Length (mm)"]}}})
        );
        let hostile = drafts.iter().find(|d| d.name.starts_with('"')).unwrap();
        assert_eq!(hostile.priority, Priority::Low);
        assert!(is_valid_name(&hostile.safe_name));
        // The preview holds the key only inside a quoted literal.
        // (the JSON escapes the key's quote with a backslash, hence an E'' literal).
        assert!(hostile
            .sql_preview
            .starts_with("SELECT evolve.update_schema_incremental('bird', E'"));
        assert!(hostile.sql_preview.ends_with("'::jsonb, NULL)"));
    }

    #[test]
    fn a_safe_name_taken_by_a_declared_attribute_gets_a_suffix() {
        let d = def(json!({"entity_type": "q", "attributes": {"mag": {"type": "number"}}}));
        let scope = Scope {
            entity_type: "q",
            user_id: None,
            entity_count: 4,
            definition: &d,
            min_presence: 0.5,
            array_sample: MAX_ELEMENTS_SAMPLED,
        };
        let drafts = key_drafts(
            &scope,
            &[stats("Mag", 4, &[("string", 4)], vec![])],
            &BTreeMap::new(),
        );
        assert_eq!(drafts[0].safe_name, "mag_2");
        assert_eq!(
            drafts[0].action.to_json()["patch"]["attributes"]["mag_2"]["aliases"],
            json!(["Mag"])
        );
    }

    #[test]
    fn references_become_relationships_and_times_temporal() {
        let d = def(json!({"entity_type": "quake"}));
        let scope = Scope {
            entity_type: "quake",
            user_id: Some("u1"),
            entity_count: 4,
            definition: &d,
            min_presence: 0.5,
            array_sample: MAX_ELEMENTS_SAMPLED,
        };
        let known = BTreeMap::from([(
            "station".to_string(),
            BTreeSet::from(["s1".to_string(), "s2".to_string()]),
        )]);
        let keys = vec![
            stats(
                "station",
                4,
                &[("string", 4)],
                vec![json!("s1"), json!("s2")],
            ),
            stats(
                "time",
                4,
                &[("integer", 4)],
                vec![json!(1_700_000_000_000i64)],
            ),
        ];
        let drafts = key_drafts(&scope, &keys, &known);
        let kinds: Vec<(&str, &str)> = drafts.iter().map(|d| (d.kind, d.name.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                ("relationship", "station"),
                ("attribute", "time"),
                ("temporal", "time")
            ]
        );
        assert_eq!(
            drafts[0].action.to_json()["patch"],
            json!({"relationships": {"station": {"target": "station"}}})
        );
        assert!(drafts[0].sql_preview.ends_with("'u1')"));
        assert!(drafts[2].sql_preview.contains("CREATE INDEX"));
        // Present everywhere, but one source only: confidence 0.8 minus rounding, medium.
        assert_eq!(drafts[1].priority, Priority::Medium);
        // Fingerprints differ by kind and are stable.
        assert_ne!(drafts[1].fingerprint(), drafts[2].fingerprint());
        assert_eq!(
            drafts[1].fingerprint(),
            fingerprint("attribute", "quake", Some("u1"), "time")
        );
    }

    #[test]
    fn indexes_and_tables_from_the_registry() {
        let d = def(json!({"entity_type": "quake", "attributes": {
            "mag": {"type": "number"}, "time": {"type": "timestamp"}},
            "relationships": {"station": {"target": "station"}}}));
        let scope = Scope {
            entity_type: "quake",
            user_id: None,
            entity_count: 7,
            definition: &d,
            min_presence: 0.5,
            array_sample: MAX_ELEMENTS_SAMPLED,
        };
        let idx = index_drafts(&scope, &BTreeSet::new());
        assert_eq!(
            idx.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            vec!["station", "time"]
        );
        let existing = BTreeSet::from([index_name("quake", "time")]);
        assert_eq!(index_drafts(&scope, &existing).len(), 1);
        let t = table_draft(&scope, false).unwrap();
        assert_eq!(t.name, "quake_details");
        assert_eq!(t.sql_preview, "SELECT evolve.create_projection('quake')");
        assert!(table_draft(&scope, true).is_none());
    }

    #[test]
    fn entity_types_are_inferred_and_conflicts_flagged() {
        let payloads = vec![
            json!({"name": "a", "Height (m)": 3}),
            json!({"name": "b", "Height (m)": 4.5}),
        ];
        let d = entity_type_draft("volcano", None, 2, &payloads, &["quake".into()], 0.85).unwrap();
        assert_eq!(d.action.to_json()["auto"], json!(true));
        assert_eq!(
            d.action.to_json()["definition"]["attributes"]["height_m"],
            json!({"type": "number", "aliases": ["Height (m)"]})
        );
        let d =
            entity_type_draft("volcanoes", None, 2, &payloads, &["volcano".into()], 0.85).unwrap();
        assert_eq!(d.action.to_json()["auto"], json!(false));
        assert!(entity_type_draft("bad name", None, 1, &payloads, &[], 0.85).is_none());
    }

    #[test]
    fn cooccurring_types_are_related() {
        let d = def(json!({"entity_type": "sensor"}));
        let scope = Scope {
            entity_type: "sensor",
            user_id: None,
            entity_count: 100,
            definition: &d,
            min_presence: 0.5,
            array_sample: MAX_ELEMENTS_SAMPLED,
        };
        let shared = BTreeMap::from([
            ("station".to_string(), 90),
            ("city".to_string(), 10),
            ("sensor".to_string(), 100),
        ]);
        let drafts = cooccurrence_drafts(&scope, 100, &shared, &[]);
        assert_eq!(drafts.len(), 1);
        assert_eq!(
            (drafts[0].kind, drafts[0].name.as_str()),
            ("relationship", "station")
        );
        assert_eq!(drafts[0].priority, Priority::Medium);
        // Already related through a key: not proposed twice.
        let mut keyed = drafts[0].clone();
        keyed.evidence = json!({"target": "station"});
        assert!(cooccurrence_drafts(&scope, 100, &shared, &[keyed]).is_empty());
    }

    #[test]
    fn removal_undoes_additions() {
        let patch = json!({"attributes": {"a": {"type": "string"}}, "relationships": {"r": {"target": "t"}}});
        assert_eq!(
            removal_patch(&patch, None),
            json!({"attributes": {"a": null}, "relationships": {"r": null}})
        );
        // Nested: members added to an existing object go, the object stays; a new object goes.
        let before = def(json!({"entity_type": "t", "attributes": {
            "actor": {"type": "object", "properties": {"id": {"type": "integer"}}}}}));
        let patch = json!({"attributes": {
            "actor": {"type": "object", "properties": {"login": {"type": "string"}, "id": {"type": "integer"}}},
            "repo": {"type": "object", "properties": {"name": {"type": "string"}}}}});
        assert_eq!(
            removal_patch(&patch, Some(&before)),
            json!({"attributes": {"actor": {"properties": {"login": null}}, "repo": null}})
        );
    }

    #[test]
    fn common_user_fields_are_promoted() {
        let g = def(json!({"entity_type": "t", "attributes": {"a": {"type": "string"}}}));
        let users: Vec<(String, Definition)> = (0..4)
            .map(|i| {
                (format!("u{i}"), def(json!({"entity_type": "t", "attributes": {
                    "a": {"type": "string"}, "shared": {"type": "integer"}, format!("own{i}"): {"type": "string"}}})))
            })
            .collect();
        let drafts = promote_drafts("t", Some(&g), &users, 2);
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].name, "shared");
        assert_eq!(drafts[0].priority, Priority::High);
        assert_eq!(drafts[0].impact, 4);
        assert!(promote_drafts("t", Some(&g), &users, 5).is_empty());
    }
}
