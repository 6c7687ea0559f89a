//! Raw fragments: lifecycle, promotion into observations, cleanup and archival, and the helper
//! functions the aggregate triggers and columns use.

use std::collections::BTreeMap;

use crate::jsonb::Json;
use crate::plans::Row;
use evolve_core::aggregate;
use evolve_core::lifecycle::{can_transition, FragmentState};
use evolve_core::payload::conforms_to;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::access;
use crate::args::{check_entity_type, check_user_id};
use crate::error::{raise, OrRaise};
use crate::gucs;

fn as_map(j: &Json) -> Map<String, Value> {
    j.0.as_object().cloned().unwrap_or_default()
}

/// The slot of this backend's aggregate parts (`evolve.raw_fragment_aggregate_parts`): its
/// number among the running backends, so no two concurrent writers share a part.
#[pg_extern(volatile, parallel_restricted, name = "_backend_slot")]
fn backend_slot() -> i32 {
    // (PostgreSQL 17 renamed the backend id to the proc number; both are unique among the
    // backends running at one time.)
    // SAFETY: a process-global integer set once at backend start, read on the backend's thread.
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    let slot = unsafe { pgrx::pg_sys::MyBackendId };
    // SAFETY: as above.
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let slot = unsafe { pgrx::pg_sys::MyProcNumber };
    slot
}

thread_local! {
    static CALLER_AGGREGATES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While one is alive, the aggregate triggers of `evolve.raw_fragments` leave the statement's
/// rows to the caller, which adds their deltas to the parts itself (ingestion knows them
/// without reading transition tables). Only code of this library can hold one: nothing a user
/// runs can set it.
pub struct CallerAggregates(());

impl CallerAggregates {
    pub fn begin() -> Self {
        CALLER_AGGREGATES.with(|f| f.set(true));
        CallerAggregates(())
    }
}

impl Drop for CallerAggregates {
    fn drop(&mut self) {
        CALLER_AGGREGATES.with(|f| f.set(false));
    }
}

/// True while the statement running is one whose aggregate deltas its caller adds.
#[pg_extern(volatile, parallel_restricted, name = "_aggregates_by_caller")]
fn aggregates_by_caller() -> bool {
    CALLER_AGGREGATES.with(|f| f.get())
}

/// Merges every key's parts of `evolve.raw_fragment_aggregates` and `evolve.entity_counts`
/// into this backend's part, shard by shard (members of evolve_admin only); parts a writer
/// holds right now are skipped, for the next run (`evolve._fold_parts`). The sums read are the
/// same before and after. Returns the number of parts merged away.
#[pg_extern(volatile, parallel_unsafe)]
fn fold_aggregates() -> i64 {
    access::require_admin("fold aggregates");
    // Before `ALTER EXTENSION pg_evolve UPDATE` to 0.10.0 there is nothing to fold with: the
    // parts are left as they are (their sums are what they were).
    if !crate::plans::parts_by_shard() {
        return 0;
    }
    // The slot is this backend's, passed to statements that may run on a shard's node.
    let slot = backend_slot();
    Spi::connect_mut(|client| {
        let shards: Vec<i64> = client
            .select(
                "SELECT shard FROM evolve.raw_fragment_aggregate_parts \
                 UNION SELECT shard FROM evolve.entity_count_parts ORDER BY 1",
                None,
                &[],
            )
            .or_raise()
            .filter_map(|r| r.value::<i64>(1))
            .collect();
        shards
            .into_iter()
            .map(|shard| {
                client
                    .update(
                        "SELECT evolve._fold_parts($1, $2)",
                        None,
                        &[shard.into(), slot.into()],
                    )
                    .or_raise()
                    .first()
                    .get_one::<i64>()
                    .or_raise()
                    .unwrap_or(0)
            })
            .sum()
    })
}

#[pg_extern(immutable, strict, parallel_safe, name = "_dominant_type")]
fn dominant_type(type_counts: Json) -> String {
    aggregate::dominant(&as_map(&type_counts)).0
}

#[pg_extern(immutable, strict, parallel_safe, name = "_type_consistency")]
fn type_consistency(type_counts: Json) -> f64 {
    aggregate::dominant(&as_map(&type_counts)).1
}

#[pg_extern(immutable, strict, parallel_safe, name = "_count_keys")]
fn count_keys(counts: Json) -> i32 {
    as_map(&counts).len() as i32
}

#[pg_extern(immutable, strict, parallel_safe, name = "_count_object")]
fn count_object(labels: Vec<Option<String>>, counts: Vec<Option<i64>>) -> JsonB {
    let pairs = labels
        .iter()
        .zip(counts.iter())
        .map(|(l, n)| (l.as_deref(), n.unwrap_or(0)));
    JsonB(Value::Object(aggregate::count_object(pairs)))
}

#[pg_extern(immutable, strict, parallel_safe, name = "_add_counts")]
fn add_counts(a: Json, b: Json) -> JsonB {
    JsonB(Value::Object(aggregate::add_counts(
        &as_map(&a),
        &as_map(&b),
    )))
}

#[pg_extern(immutable, strict, parallel_safe, name = "_merge_samples")]
fn merge_samples(existing: Json, new: Json) -> JsonB {
    let list = |j: &Json| j.0.as_array().cloned().unwrap_or_default();
    JsonB(Value::Array(aggregate::merge_samples(
        &list(&existing),
        &list(&new),
    )))
}

#[pg_extern(
    immutable,
    strict,
    parallel_safe,
    name = "_fragment_transition_allowed"
)]
fn fragment_transition_allowed(from: &str, to: &str) -> bool {
    match (FragmentState::parse(from), FragmentState::parse(to)) {
        (Some(f), Some(t)) => can_transition(f, t),
        _ => false,
    }
}

/// Confidence in [0, 1] that an undeclared key is a real field, from its aggregates only:
/// `type_consistency × (0.7 × (1 − e^(−frequency_total/10)) + 0.3 × min(unique_sources, 3)/3)`.
/// NULL when the key has no aggregate.
#[pg_extern(stable, parallel_safe)]
fn field_confidence(
    entity_type: Option<&str>,
    fragment_key: Option<&str>,
    user_id: default!(Option<String>, "NULL"),
) -> Option<f64> {
    let entity_type = crate::error::required(entity_type, "entity_type");
    let fragment_key = crate::error::required(fragment_key, "fragment_key");
    access::require_read(user_id.as_deref());
    let row = Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT frequency_total, type_consistency, unique_sources FROM evolve.raw_fragment_aggregates \
                 WHERE entity_type = $1 AND fragment_key = $2 AND user_id IS NOT DISTINCT FROM $3",
                Some(1),
                &[entity_type.into(), fragment_key.into(), user_id.into()],
            )
            .or_raise();
        if rows.is_empty() {
            return None;
        }
        let r = rows.first();
        Some((
            r.value::<i64>(1).unwrap_or(0),
            r.value::<f64>(2).unwrap_or(0.0),
            r.value::<i32>(3).unwrap_or(0) as i64,
        ))
    })?;
    Some(aggregate::field_confidence(row.0, row.1, row.2))
}

/// Turns the active fragments of a key into observations of the (now declared) attribute,
/// updating the snapshots, and marks them promoted, to expire after
/// `evolve.promoted_fragment_retention`. `user_id` NULL promotes every user's fragments (a global
/// attribute is in every user's schema). Returns the number of fragments promoted.
#[pg_extern(volatile, parallel_unsafe)]
fn promote_fragments(
    entity_type: Option<&str>,
    fragment_key: Option<&str>,
    user_id: default!(Option<String>, "NULL"),
) -> i64 {
    let entity_type = crate::error::required(entity_type, "entity_type");
    let fragment_key = crate::error::required(fragment_key, "fragment_key");
    check_entity_type(entity_type);
    check_user_id(user_id.as_deref());
    access::require_schema_owner(user_id.as_deref(), "promote fragments of");
    let declared = crate::store::effective_definition(entity_type, user_id.as_deref())
        .map(|e| {
            e.definition.attribute_named(fragment_key).is_some()
                || e.definition.relationships.contains_key(fragment_key)
        })
        .unwrap_or(false);
    if !declared {
        raise(
            SqlState::ObjectNotInPrerequisiteState,
            format!("\"{fragment_key}\" is not declared in the active schema of \"{entity_type}\""),
            None,
            Some("Register the attribute first; registering it promotes its fragments automatically.".into()),
        );
    }
    promote(entity_type, fragment_key, fragment_key, user_id.as_deref())
}

/// Promotion without the declaration check (the caller just declared `attribute`, whose name
/// or alias is `fragment_key`). Only values that fit the declared type are promoted; the others
/// stay active fragments (a mismatch stays visible).
pub fn promote(
    entity_type: &str,
    fragment_key: &str,
    attribute: &str,
    user_id: Option<&str>,
) -> i64 {
    let declared = crate::store::effective_definition(entity_type, user_id).and_then(|e| {
        e.definition
            .attribute_named(attribute)
            .map(|(_, a)| a.clone())
    });
    crate::args::writable_transaction();
    // The entities holding the key's active fragments, by shard (one group on a single node).
    let groups = crate::shards::groups(crate::plans::i64_rows(
        "SELECT DISTINCT entity_id FROM evolve.raw_fragments \
         WHERE entity_type = $1 AND fragment_key = $2 AND ($3::text IS NULL OR user_id = $3) \
           AND lifecycle_state = 'active'",
        &[entity_type.into(), fragment_key.into(), user_id.into()],
    ));
    let rows: Vec<(i64, i64, Value, Option<String>)> = Spi::connect_mut(|client| {
        let mut candidates = Vec::new();
        for group in groups {
            // Lock order as in ingestion: entities (by id), then their fragments (by entity,
            // key). Only the fragments of the entities locked here: the next statement sees a
            // newer snapshot, in which another session may have committed fragments of entities
            // not locked here, and locking those later (after the fragments and their aggregate
            // parts) would invert the order.
            let locked: Vec<i64> = client
                .update(
                    "SELECT entity_id FROM evolve.entities WHERE entity_id = ANY ($1) \
                     ORDER BY entity_id FOR NO KEY UPDATE",
                    None,
                    &[group.into()],
                )
                .or_raise()
                .filter_map(|r| r.value::<i64>(1))
                .collect();
            candidates.extend(
                client
                    .update(
                        "SELECT fragment_id, entity_id, value, source FROM evolve.raw_fragments \
                         WHERE entity_type = $1 AND fragment_key = $2 AND ($3::text IS NULL OR user_id = $3) \
                           AND lifecycle_state = 'active' AND entity_id = ANY ($4) ORDER BY entity_id FOR UPDATE",
                        None,
                        &[entity_type.into(), fragment_key.into(), user_id.into(), locked.into()],
                    )
                    .or_raise()
                    .map(|r| {
                        (
                            r.value::<i64>(1).unwrap_or(0),
                            r.value::<i64>(2).unwrap_or(0),
                            r.value::<JsonB>(3).map(|j| j.0).unwrap_or(Value::Null),
                            r.value::<String>(4),
                        )
                    })
                    .filter(|(_, _, value, _)| {
                        declared.as_ref().is_none_or(|a| conforms_to(a, value))
                    }),
            );
        }
        candidates
    });
    mark_promoted(rows.iter().map(|r| (r.1, r.0)).collect());
    let n = rows.len() as i64;
    let observations = rows
        .into_iter()
        .map(
            |(_, entity_id, value, source)| crate::snapshots::NewObservation {
                entity_id,
                attribute: attribute.to_string(),
                value,
                source,
                schema_version: None,
            },
        )
        .collect();
    crate::snapshots::record_observations(observations, None);
    n
}

/// The active fragments below `parent_key` of one entity, gathered into the object they make
/// (keys below the parent, nested as in the payload).
pub struct Members {
    pub entity_id: i64,
    pub user_id: Option<String>,
    pub fragment_ids: Vec<i64>,
    pub object: Map<String, Value>,
    pub source: Option<String>,
}

/// Locks (entities first, in id order, as ingestion does) and gathers the active fragments below
/// `parent_key`, per entity. `user_id` NULL gathers every user's.
pub fn gather_members(entity_type: &str, parent_key: &str, user_id: Option<&str>) -> Vec<Members> {
    gather(entity_type, parent_key, user_id, true)
}

/// [`gather_members`] without taking any lock (a plain read of the committed fragments).
pub fn peek_members(entity_type: &str, parent_key: &str, user_id: Option<&str>) -> Vec<Members> {
    gather(entity_type, parent_key, user_id, false)
}

fn gather(entity_type: &str, parent_key: &str, user_id: Option<&str>, lock: bool) -> Vec<Members> {
    let parent = evolve_core::path::lenient(parent_key);
    let prefix = parent.member_prefix();
    let prefix = prefix.as_str();
    crate::args::writable_transaction();
    // (fragment_id, entity_id, fragment_key, value, source, user_id)
    type Fetched = (i64, i64, String, Value, Option<String>, Option<String>);
    let fetch = |client: &mut pgrx::spi::SpiClient<'_>, locked: Option<Vec<i64>>| -> Vec<Fetched> {
        let for_update = if lock { " FOR UPDATE" } else { "" };
        let sql = format!(
                    "SELECT fragment_id, entity_id, fragment_key, value, source, user_id FROM evolve.raw_fragments \
                     WHERE entity_type = $1 AND starts_with(fragment_key, $2) \
                       AND ($3::text IS NULL OR user_id = $3) AND lifecycle_state = 'active' \
                       AND ($4::bigint[] IS NULL OR entity_id = ANY ($4)) \
                     ORDER BY entity_id, fragment_id{for_update}"
        );
        let args = [
            entity_type.into(),
            prefix.into(),
            user_id.into(),
            locked.into(),
        ];
        // (A plain read stays read-only: peek_members is called by read-only functions.)
        if lock {
            client.update(&sql, None, &args)
        } else {
            client.select(&sql, None, &args)
        }
        .or_raise()
        .map(|r| {
            (
                r.value::<i64>(1).unwrap_or(0),
                r.value::<i64>(2).unwrap_or(0),
                r.value::<String>(3).unwrap_or_default(),
                r.value::<JsonB>(4).map(|j| j.0).unwrap_or(Value::Null),
                r.value::<String>(5),
                r.value::<String>(6),
            )
        })
        .collect()
    };
    let rows: Vec<Fetched> = if lock {
        // The entities holding active fragments below the parent, by shard, each group locked
        // and then only its fragments read (see `promote`).
        let groups = crate::shards::groups(crate::plans::i64_rows(
            "SELECT DISTINCT entity_id FROM evolve.raw_fragments \
             WHERE entity_type = $1 AND starts_with(fragment_key, $2) \
               AND ($3::text IS NULL OR user_id = $3) AND lifecycle_state = 'active'",
            &[entity_type.into(), prefix.into(), user_id.into()],
        ));
        Spi::connect_mut(|client| {
            let mut rows = Vec::new();
            for group in groups {
                let locked: Vec<i64> = client
                    .update(
                        "SELECT entity_id FROM evolve.entities WHERE entity_id = ANY ($1) \
                         ORDER BY entity_id FOR NO KEY UPDATE",
                        None,
                        &[group.into()],
                    )
                    .or_raise()
                    .filter_map(|r| r.value::<i64>(1))
                    .collect();
                rows.extend(fetch(client, Some(locked)));
            }
            rows
        })
    } else {
        Spi::connect_mut(|client| fetch(client, None))
    };
    let mut by_entity: BTreeMap<i64, Members> = BTreeMap::new();
    for (fragment_id, entity_id, key, value, source, user) in rows {
        let path = evolve_core::path::lenient(&key);
        if path.len() <= parent.len() || !path.starts_with(&parent) {
            continue;
        }
        let Some(keys) = path.keys() else { continue };
        let rest = &keys[parent.len()..];
        let m = by_entity.entry(entity_id).or_insert_with(|| Members {
            entity_id,
            user_id: user,
            fragment_ids: Vec::new(),
            object: Map::new(),
            source: None,
        });
        m.fragment_ids.push(fragment_id);
        m.source = m.source.take().or(source);
        evolve_core::path::insert_at(&mut m.object, rest, value);
    }
    by_entity.into_values().collect()
}

/// Marks fragments promoted (they expire after `evolve.promoted_fragment_retention`), given as
/// (entity id, fragment id): found by their entities' key, fragment ids being unique.
pub fn mark_promoted(ids: Vec<(i64, i64)>) {
    if ids.is_empty() {
        return;
    }
    // Shard by shard where entities are distributed (one group on a single node).
    let groups = crate::shards::groups(ids.iter().map(|p| p.0).collect());
    Spi::connect_mut(|client| {
        for entities in groups {
            let fragments: Vec<i64> = ids
                .iter()
                .filter(|p| entities.binary_search(&p.0).is_ok())
                .map(|p| p.1)
                .collect();
            client
                .update(
                    "UPDATE evolve.raw_fragments SET lifecycle_state = 'promoted', promoted_at = now(), \
                         expires_at = now() + make_interval(secs => $3) \
                     WHERE entity_id = ANY($1) AND fragment_id = ANY($2)",
                    None,
                    &[
                        entities.into(),
                        fragments.into(),
                        (gucs::promoted_fragment_retention_secs() as f64).into(),
                    ],
                )
                .or_raise();
        }
    });
}

/// Promotion of a map (an object attribute declared with `values`): the fragments below
/// `parent_key` (its members, opened into paths by ingestion) become, per entity, one
/// observation of `attribute` holding the object they make together. An entity whose members
/// do not all fit the map's values keeps its fragments (a mismatch stays visible).
pub fn promote_members(
    entity_type: &str,
    parent_key: &str,
    attribute: &str,
    user_id: Option<&str>,
) -> i64 {
    let Some(map) = crate::store::effective_definition(entity_type, user_id).and_then(|e| {
        e.definition
            .attribute_named(attribute)
            .map(|(_, a)| a.clone())
    }) else {
        return 0;
    };
    let mut ids = Vec::new();
    let mut observations = Vec::new();
    for m in gather_members(entity_type, parent_key, user_id) {
        let value = Value::Object(m.object);
        if !conforms_to(&map, &value) {
            continue;
        }
        ids.extend(m.fragment_ids.iter().map(|&f| (m.entity_id, f)));
        observations.push(crate::snapshots::NewObservation {
            entity_id: m.entity_id,
            attribute: attribute.to_string(),
            value,
            source: m.source,
            schema_version: None,
        });
    }
    mark_promoted(ids);
    let n = observations.len() as i64;
    crate::snapshots::record_observations(observations, None);
    n
}

/// Deletes expired promoted and pending-deletion fragments, at most `batch_size` per call
/// (never an active or archived one). Rows locked by another session are skipped, so two
/// concurrent runs never wait on each other. Returns the number deleted.
#[pg_extern(volatile, parallel_unsafe)]
fn cleanup_expired_fragments(batch_size: default!(i32, 10000)) -> i64 {
    access::require_admin("clean up fragments");
    if batch_size <= 0 {
        raise(
            SqlState::InvalidParameterValue,
            "batch_size must be positive",
            None,
            None,
        );
    }
    if crate::shards::distributed() {
        return cleanup_sharded(batch_size);
    }
    Spi::connect_mut(|client| {
        client
            .update(
                "DELETE FROM evolve.raw_fragments WHERE ctid = ANY (ARRAY( \
                     SELECT ctid FROM evolve.raw_fragments \
                     WHERE lifecycle_state IN ('promoted', 'pending_deletion') AND expires_at <= now() \
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))",
                None,
                &[batch_size.into()],
            )
            .or_raise()
            .len() as i64
    })
}

/// Archives active fragments not seen for `inactive_for` and seen fewer than `min_frequency`
/// times. An archived fragment becomes active again when its key is seen again.
#[pg_extern(volatile, parallel_unsafe)]
fn archive_stale_fragments(
    inactive_for: default!(pgrx::datum::Interval, "'90 days'"),
    min_frequency: default!(i32, 3),
) -> i64 {
    access::require_admin("archive fragments");
    if crate::shards::distributed() {
        return archive_sharded(inactive_for, min_frequency);
    }
    Spi::connect_mut(|client| {
        client
            .update(
                "UPDATE evolve.raw_fragments SET lifecycle_state = 'archived', archived_at = now() \
                 WHERE ctid = ANY (ARRAY( \
                     SELECT ctid FROM evolve.raw_fragments \
                     WHERE lifecycle_state = 'active' AND last_seen_at < now() - $1 AND frequency < $2 \
                     ORDER BY entity_id, fragment_key FOR UPDATE SKIP LOCKED))",
                None,
                &[inactive_for.into(), min_frequency.into()],
            )
            .or_raise()
            .len() as i64
    })
}

/// [`cleanup_expired_fragments`] on a distributed database: the batch's entities read across
/// shards without a lock, then one delete per shard, each a one-shard statement skipping rows
/// locked by others. Fragment triggers do not run on shards (see the 0.10.0 script), so the
/// rows each delete returns leave that shard's aggregate parts here (`evolve._fragments_deleted`,
/// which also reads the keys' latest sightings left, once for every shard).
fn cleanup_sharded(batch_size: i32) -> i64 {
    let entities = crate::plans::i64_rows(
        "SELECT entity_id FROM evolve.raw_fragments \
         WHERE lifecycle_state IN ('promoted', 'pending_deletion') AND expires_at <= now() \
         ORDER BY expires_at LIMIT $1",
        &[batch_size.into()],
    );
    Spi::connect_mut(|client| {
        let (mut shards, mut deleted, mut n): (Vec<i64>, Vec<pgrx::JsonB>, i64) =
            (Vec::new(), Vec::new(), 0);
        for group in crate::shards::groups_in(client, entities) {
            let left = i64::from(batch_size) - n;
            if left <= 0 {
                break;
            }
            let shard = crate::shards::keys_in(client, &group[..1]).of(group[0]);
            // The delete is one shard's statement (Citus runs it there whole).
            let rows = crate::plans::execute(
                client,
                "WITH gone AS ( \
                     DELETE FROM evolve.raw_fragments \
                     WHERE entity_id = ANY($2) AND ctid = ANY (ARRAY( \
                         SELECT ctid FROM evolve.raw_fragments \
                         WHERE entity_id = ANY($2) AND lifecycle_state IN ('promoted', 'pending_deletion') \
                           AND expires_at <= now() \
                         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)) \
                     RETURNING entity_type, user_id, fragment_key, value_type, source, frequency, last_seen_at, value) \
                 SELECT count(*), jsonb_agg(jsonb_build_array(entity_type, user_id, fragment_key, value_type, \
                                                              source, frequency, last_seen_at, value)) \
                 FROM gone",
                &[left.into(), group.into()],
            )
            .next()
            .map(|r| (r.value::<i64>(1).unwrap_or(0), r.value::<pgrx::JsonB>(2)));
            if let Some((count, Some(rows))) = rows {
                n += count;
                shards.push(shard);
                deleted.push(rows);
            }
        }
        if shards.is_empty() {
            return 0;
        }
        // Their shards' parts, each written there, in the parts' lock order (by shard key, as
        // ingestion writes them); the latest sightings read once.
        let mut by_shard: Vec<(i64, pgrx::JsonB)> = shards.into_iter().zip(deleted).collect();
        by_shard.sort_by_key(|(shard, _)| *shard);
        let (shards, deleted): (Vec<i64>, Vec<pgrx::JsonB>) = by_shard.into_iter().unzip();
        crate::plans::execute(
            client,
            "SELECT evolve._fragments_deleted($1, $2)",
            &[shards.into(), deleted.into()],
        )
        .next()
        .and_then(|r| r.value::<i64>(1))
        .unwrap_or(0)
    })
}

/// [`archive_stale_fragments`] on a distributed database: the entities with stale fragments
/// read across shards, then one update per shard, each a one-shard statement skipping rows
/// locked by others (a lifecycle change moves no aggregate).
fn archive_sharded(inactive_for: pgrx::datum::Interval, min_frequency: i32) -> i64 {
    let entities = crate::plans::i64_rows(
        "SELECT DISTINCT entity_id FROM evolve.raw_fragments \
         WHERE lifecycle_state = 'active' AND last_seen_at < now() - $1 AND frequency < $2",
        &[inactive_for.into(), min_frequency.into()],
    );
    let mut archived = 0;
    Spi::connect_mut(|client| {
        for group in crate::shards::groups_in(client, entities) {
            archived += crate::plans::execute(
                client,
                "UPDATE evolve.raw_fragments SET lifecycle_state = 'archived', archived_at = now() \
                 WHERE entity_id = ANY($3) AND ctid = ANY (ARRAY( \
                     SELECT ctid FROM evolve.raw_fragments \
                     WHERE entity_id = ANY($3) AND lifecycle_state = 'active' \
                       AND last_seen_at < now() - $1 AND frequency < $2 \
                     ORDER BY entity_id, fragment_key FOR UPDATE SKIP LOCKED))",
                &[inactive_for.into(), min_frequency.into(), group.into()],
            )
            .len() as i64;
        }
    });
    archived
}
