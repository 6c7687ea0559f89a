//! L4: entity extraction. A nested object with an identity of its own (`extract_entity`
//! proposals, drafted by evolve_core::proposal::extract) becomes an entity type: measuring its
//! identity in the fragments, and approving it (register the type, relate the parent to it,
//! ingest the embedded objects already kept as fragments as its entities, link them).

use evolve_core::proposal::extract::{Candidate, Identity};
use pgrx::prelude::*;
use serde_json::{json, Value};

use crate::error::OrRaise;
use crate::ingest::{ingest_batch, Input};
use crate::snapshots::{record_observations, NewObservation};

/// Objects looked at to measure an identity.
const IDENTITY_SAMPLE: i64 = 10_000;

/// How often a candidate's ids repeat in the scope's active fragments, and whether the other
/// members agree for one id (on the first [`IDENTITY_SAMPLE`] objects by entity).
pub fn identity(entity_type: &str, user_id: Option<&str>, c: &Candidate) -> Identity {
    let others: Vec<String> = c
        .members
        .values()
        .map(|s| s.key.clone())
        .filter(|k| *k != c.id_fragment)
        .collect();
    Spi::connect(|client| {
        let row = client
            .select(
                "WITH ids AS ( \
                     SELECT entity_id, value AS id FROM evolve.raw_fragments \
                     WHERE entity_type = $1 AND user_id IS NOT DISTINCT FROM $2 AND fragment_key = $3 \
                       AND lifecycle_state = 'active' \
                     ORDER BY entity_id LIMIT $5), \
                 pairs AS ( \
                     SELECT i.id, f.fragment_key, count(DISTINCT f.value) AS variants \
                     FROM ids i JOIN evolve.raw_fragments f ON f.entity_id = i.entity_id \
                     WHERE f.fragment_key = ANY ($4) AND f.lifecycle_state = 'active' \
                     GROUP BY 1, 2) \
                 SELECT (SELECT count(*) FROM ids), (SELECT count(DISTINCT id) FROM ids), \
                        coalesce((SELECT avg((variants = 1)::int)::float8 FROM pairs), 1.0)",
                None,
                &[
                    entity_type.into(),
                    user_id.into(),
                    c.id_fragment.as_str().into(),
                    others.into(),
                    IDENTITY_SAMPLE.into(),
                ],
            )
            .or_raise()
            .first();
        Identity {
            occurrences: row.get::<i64>(1).or_raise().unwrap_or(0),
            distinct: row.get::<i64>(2).or_raise().unwrap_or(0),
            consistency: row.get::<f64>(3).or_raise().unwrap_or(1.0),
        }
    })
}

/// Approves an extraction: registers `definition` unless `target` has a schema in the scope,
/// relates `entity_type` to it through `relationship` (embedded objects, key in member `key`),
/// then ingests the objects kept as fragments below `parent_key` as `target` entities and
/// observes the relationship on their parents. Returns the details the history keeps (those of
/// a patch, so that a rollback removes the relationship and makes the fragments active again;
/// the extracted type and its entities stay).
pub fn approve(
    entity_type: &str,
    user_id: Option<&str>,
    parent_key: &str,
    definition: &Value,
    target: &str,
    relationship: &str,
    key: &str,
) -> Value {
    let registered = crate::store::effective_definition(target, user_id).is_some();
    let target_version = if registered {
        None
    } else {
        Some(crate::registry::register(definition, user_id))
    };
    let patch = json!({"relationships": {relationship: {"target": target, "key": key}}});
    let version = crate::registry::update_incremental(entity_type, &patch, user_id);
    let key_of = |object: &serde_json::Map<String, Value>| match object.get(key) {
        Some(v @ (Value::String(_) | Value::Number(_))) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((v.clone(), text))
        }
        _ => None,
    };
    // The embedded objects become entities first, before their parents are locked: related
    // entities are always locked before the entities embedding them (as ingestion does).
    let mut inputs = Vec::new();
    for m in crate::fragments::peek_members(entity_type, parent_key, user_id) {
        let Some((_, key_text)) = key_of(&m.object) else {
            continue;
        };
        inputs.push(Input {
            entity_type: Some(target.to_string()),
            payload: Some(Value::Object(m.object)),
            user_id: m.user_id,
            source: m.source,
            entity_key: Some(key_text),
            ..Input::default()
        });
    }
    let mut extracted = std::collections::BTreeSet::new();
    let mut accepted = std::collections::HashSet::new();
    for (input, outcome) in inputs.iter().zip(ingest_batch(&inputs)) {
        // An object its type refuses keeps its fragments.
        if let Ok(child) = outcome {
            extracted.insert(child);
            accepted.insert((
                input.user_id.clone(),
                input.entity_key.clone().unwrap_or_default(),
            ));
        }
    }
    // Then the parents, locked: their fragments promoted and the relationship observed.
    let mut promoted = Vec::new();
    let mut observations = Vec::new();
    for m in crate::fragments::gather_members(entity_type, parent_key, user_id) {
        let Some((key_value, key_text)) = key_of(&m.object) else {
            continue;
        };
        if !accepted.contains(&(m.user_id.clone(), key_text)) {
            continue;
        }
        promoted.extend(m.fragment_ids.iter().map(|&f| (m.entity_id, f)));
        observations.push(NewObservation {
            entity_id: m.entity_id,
            attribute: relationship.to_string(),
            value: key_value,
            source: m.source,
            schema_version: None,
        });
    }
    let linked = observations.len();
    crate::fragments::mark_promoted(promoted);
    record_observations(observations, None);
    let at = crate::plans::one::<String>("SELECT now()::text", &[]).unwrap_or_default();
    json!({
        "version": version,
        "target_version": target_version,
        "field": relationship,
        "key": parent_key,
        "promoted_at": at,
        "members_prefix": evolve_core::path::lenient(parent_key).member_prefix(),
        "removal": {"relationships": {relationship: null}},
        "entities_extracted": extracted.len(),
        "entities_linked": linked,
    })
}
