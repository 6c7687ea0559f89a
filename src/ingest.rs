//! Ingestion: payloads become entities, observations (declared fields) and raw fragments
//! (everything else); snapshots are reduced incrementally.
//!
//! One batch is handled set-based, with a fixed number of statements whatever its size:
//! entity upsert (keys sorted, so concurrent batches lock in the same order), observation
//! insert, snapshot update, fragment upsert (sorted by entity and key).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::fragments::CallerAggregates;
use crate::jsonb::Json;
use evolve_core::aggregate::{FragmentRow, KeyDelta};
use evolve_core::hash::derived_entity_id;
use evolve_core::infer::value_type;
use evolve_core::payload::{check_payload, split_with, Split, MAX_KEY_BYTES};
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::error::{raise, OrRaise};
use crate::freshness::empty_definition;
use crate::gucs::{self, MigrationStrategy};
use crate::migration;
use crate::plans::Row;
use crate::snapshots::{record_canonical, Born, EntityState, NewObservation};
use crate::store::effective_definition;
use evolve_core::migrate;
use evolve_core::reduce::{self, Observation, Snapshot};
use evolve_core::schema::Definition;

/// One payload to ingest.
#[derive(Default)]
pub struct Input {
    pub entity_type: Option<String>,
    pub payload: Option<Value>,
    /// Set when the row is already known to be bad (unreadable payload, foreign tenant).
    pub rejected: Option<Reject>,
    pub user_id: Option<String>,
    pub source: Option<String>,
    pub entity_key: Option<String>,
    pub schema_version: Option<i32>,
}

/// Why a payload was not ingested.
#[derive(Clone)]
pub struct Reject {
    pub state: SqlState,
    pub message: String,
}

fn reject<T>(state: SqlState, message: impl Into<String>) -> Result<T, Reject> {
    Err(Reject {
        state,
        message: message.into(),
    })
}

struct Fragment {
    entity_id: i64,
    entity_type: String,
    user_id: Option<String>,
    key: String,
    value: Value,
    source: Option<String>,
    frequency: i32,
}

type Scope = (String, Option<String>);
/// (entity_type, user_id, entity_key): what identifies an entity.
type EntityKey = (String, Option<String>, String);
/// An input that passed validation: its canonical scope and payload object.
type Checked<'a> = Result<(Scope, &'a serde_json::Map<String, Value>), Reject>;
/// (definition, version, schema hash) of an effective schema.
type Schema = crate::store::Effective;

/// Validates one input against its schema; returns the canonical scope and the payload object.
fn validate<'a>(input: &'a Input, schemas: &mut HashMap<Scope, Option<Schema>>) -> Checked<'a> {
    if let Some(r) = &input.rejected {
        return Err(r.clone());
    }
    let Some(entity_type) = input.entity_type.as_deref() else {
        return reject(
            SqlState::InvalidParameterValue,
            "entity_type must not be NULL",
        );
    };
    if let Some(u) = input.user_id.as_deref() {
        if !evolve_core::ident::is_valid_user_id(u) {
            return reject(
                SqlState::InvalidParameterValue,
                format!("invalid user_id {u:?}"),
            );
        }
    }
    let Some(payload) = input.payload.as_ref() else {
        return reject(SqlState::InvalidParameterValue, "payload must not be NULL");
    };
    if let Some(k) = input.entity_key.as_deref() {
        if k.len() > MAX_KEY_BYTES {
            return reject(
                SqlState::ProgramLimitExceeded,
                format!(
                    "entity_key is too large: {} bytes, the limit is {MAX_KEY_BYTES}",
                    k.len()
                ),
            );
        }
    }
    let text_len = serde_json::to_string(payload)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    let obj = check_payload(payload, text_len).map_err(|e| Reject {
        state: e.sqlstate(),
        message: e.to_string(),
    })?;
    let scope = (entity_type.to_string(), input.user_id.clone());
    let schema = schemas
        .entry(scope.clone())
        .or_insert_with(|| effective_definition(entity_type, input.user_id.as_deref()));
    let Some(Schema {
        definition: def,
        version,
        ..
    }) = schema
    else {
        return reject(
            SqlState::UndefinedObject,
            format!("entity type \"{entity_type}\" has no active schema"),
        );
    };
    if let Some(v) = input.schema_version {
        if v < 1 || v > *version {
            return reject(
                SqlState::InvalidParameterValue,
                format!(
                    "schema_version {v} of \"{entity_type}\" does not exist (current: {version})"
                ),
            );
        }
    }
    Ok(((def.entity_type.clone(), input.user_id.clone()), obj))
}

/// Schema conflicts: a payload written against an older version is migrated along the version
/// graph; declared values of the wrong type are coerced (auto) or refused (reject). Returns the
/// payload to split for each input (None: the original); rejections replace their `checked` entry.
fn resolve_conflicts(
    inputs: &[Input],
    checked: &mut [Checked],
    schemas: &HashMap<Scope, Option<Schema>>,
) -> Vec<Option<serde_json::Map<String, Value>>> {
    let strategy = gucs::migration_strategy();
    let strategy_name = match strategy {
        MigrationStrategy::Reject => "reject",
        MigrationStrategy::Fragment => "fragment",
        MigrationStrategy::Auto => "auto",
    };
    let mut paths = migration::Paths::default();
    let mut out = Vec::with_capacity(inputs.len());
    for (input, c) in inputs.iter().zip(checked.iter_mut()) {
        let Ok(((t, u), obj)) = c else {
            out.push(None);
            continue;
        };
        let Schema {
            definition: def,
            version: current,
            ..
        } = schemas[&(input.entity_type.clone().unwrap_or_default(), u.clone())]
            .as_ref()
            .expect("validated");
        let mut payload: Option<serde_json::Map<String, Value>> = None;
        let mut rejection: Option<String> = None;
        if let Some(from) = input.schema_version.filter(|v| v < current) {
            let mut attempt_payload = (*obj).clone();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let result = match paths.get(t, from, *current) {
                    Ok(steps) => migration::apply(steps, &attempt_payload, from, *current),
                    Err(message) => Err(migration::Failure {
                        from_version: from,
                        to_version: *current,
                        failing_step: None,
                        step: None,
                        message: message.clone(),
                        sqlstate: "42704".into(),
                    }),
                };
                match result {
                    Ok(migrated) => {
                        payload = Some(migrated);
                        break;
                    }
                    Err(failure) => {
                        migration::record_failure(
                            t,
                            u.as_deref(),
                            input.entity_key.as_deref(),
                            &Value::Object((*obj).clone()),
                            &failure,
                            strategy_name,
                        );
                        let retry = strategy == MigrationStrategy::Auto
                            && attempts < gucs::max_migration_attempts()
                            && crate::store::version_definition(t, None, from).is_some_and(|old| {
                                let before = attempt_payload.clone();
                                migrate::coerce(&old, &mut attempt_payload);
                                attempt_payload != before
                            });
                        if !retry {
                            if strategy == MigrationStrategy::Reject {
                                rejection = Some(failure.describe(t));
                            }
                            break;
                        }
                    }
                }
            }
        }
        // Declared values of the wrong type at the current version: under fragment (the
        // default) they simply become fragments when the payload is split, so only the other
        // strategies look at them here.
        let current_payload = payload.as_ref().unwrap_or(obj);
        let mismatches = if strategy == MigrationStrategy::Fragment || rejection.is_some() {
            Vec::new()
        } else {
            split_with(def, current_payload, gucs::path_limits()).mismatches
        };
        if !mismatches.is_empty() {
            match strategy {
                MigrationStrategy::Reject => {
                    let names: Vec<String> = mismatches
                        .iter()
                        .map(|(k, v, ty)| {
                            format!("{k} (expected {}, got {})", ty.as_str(), value_type(v))
                        })
                        .collect();
                    rejection = Some(format!(
                        "payload for \"{t}\" does not match its schema: {}",
                        names.join(", ")
                    ));
                }
                MigrationStrategy::Auto => {
                    let mut coerced = current_payload.clone();
                    migrate::coerce(def, &mut coerced);
                    payload = Some(coerced);
                }
                MigrationStrategy::Fragment => {}
            }
        }
        if let Some(message) = rejection {
            *c = Err(Reject {
                state: SqlState::DataException,
                message,
            });
            out.push(None);
        } else {
            out.push(payload);
        }
    }
    out
}

/// Ingests a batch. Each input either yields its entity id or is rejected; the accepted ones are
/// written in a fixed number of statements.
pub fn ingest_batch(inputs: &[Input]) -> Vec<Result<i64, Reject>> {
    let mut schemas: HashMap<Scope, Option<Schema>> = HashMap::new();
    let mut checked: Vec<Checked> = inputs.iter().map(|i| validate(i, &mut schemas)).collect();
    let transformed = resolve_conflicts(inputs, &mut checked, &schemas);

    // Keys: the given one, or a fresh `_n`.
    let missing = checked
        .iter()
        .zip(inputs)
        .filter(|(c, i)| c.is_ok() && i.entity_key.is_none())
        .count();
    let mut fresh = if missing > 0 {
        Spi::connect(|c| {
            c.select(
                "SELECT '_' || nextval('evolve.entity_key_seq') FROM generate_series(1, $1)",
                None,
                &[(missing as i64).into()],
            )
            .or_raise()
            .map(|r| r.value::<String>(1).unwrap_or_default())
            .collect::<Vec<_>>()
        })
        .into_iter()
    } else {
        Vec::new().into_iter()
    };
    let keys: Vec<Option<String>> = checked
        .iter()
        .zip(inputs)
        .map(|(c, i)| {
            c.as_ref().ok().map(|_| {
                i.entity_key
                    .clone()
                    .or_else(|| fresh.next())
                    .unwrap_or_default()
            })
        })
        .collect();

    // Each accepted payload is split once, here. Related entities embedded as objects are
    // ingested first, as one batch of their own types: before this batch locks its entities,
    // so that the locks of related entities are always taken before those of the entities
    // embedding them, by every session. An object its type refuses stays with its parent, as
    // a fragment under the relationship's name.
    let limits = gucs::path_limits();
    let mut splits: Vec<Option<Split>> = Vec::with_capacity(inputs.len());
    let mut refused_embedded: HashMap<(usize, String), Value> = HashMap::new();
    {
        let mut tags: Vec<(usize, String)> = Vec::new();
        let mut children: Vec<Input> = Vec::new();
        for (i, ((c, input), transformed)) in
            checked.iter().zip(inputs).zip(&transformed).enumerate()
        {
            let (u, obj) = match c {
                Ok(((_, u), obj)) => (u, obj),
                Err(_) => {
                    splits.push(None);
                    continue;
                }
            };
            let def = &schemas[&(input.entity_type.clone().unwrap_or_default(), u.clone())]
                .as_ref()
                .expect("validated")
                .definition;
            let parts = split_with(def, transformed.as_ref().unwrap_or(obj), limits);
            for (relationship, target, key, object) in &parts.embedded {
                tags.push((i, relationship.clone()));
                children.push(Input {
                    entity_type: Some(target.clone()),
                    payload: Some(object.clone()),
                    user_id: u.clone(),
                    source: input.source.clone(),
                    entity_key: Some(key.clone()),
                    ..Input::default()
                });
            }
            splits.push(Some(parts));
        }
        if !children.is_empty() {
            let outcomes = ingest_batch(&children);
            for ((tag, child), outcome) in tags.into_iter().zip(children).zip(outcomes) {
                if outcome.is_err() {
                    refused_embedded.insert(tag, child.payload.unwrap_or(Value::Null));
                }
            }
        }
    }

    // The distinct entity keys, sorted; each has an ordinal (its rank) until its entity's id is
    // known.
    let mut distinct: BTreeMap<EntityKey, usize> = BTreeMap::new();
    for (c, k) in checked.iter().zip(&keys) {
        if let (Ok(((t, u), _)), Some(k)) = (c, k) {
            distinct.insert((t.clone(), u.clone(), k.clone()), 0);
        }
    }
    for (n, ordinal) in distinct.values_mut().enumerate() {
        *ordinal = n;
    }

    // Each accepted payload split into observations and fragments, by entity ordinal.
    let mut observations: Vec<(usize, NewObservation)> = Vec::new();
    let mut fragments: BTreeMap<(usize, String), Fragment> = BTreeMap::new();
    let mut results: Vec<Result<usize, Reject>> = Vec::with_capacity(inputs.len());
    for (index, (((c, k), input), transformed)) in checked
        .iter_mut()
        .zip(&keys)
        .zip(inputs)
        .zip(&transformed)
        .enumerate()
    {
        let result = match c {
            Err(r) => Err(std::mem::replace(
                r,
                Reject {
                    state: SqlState::InvalidParameterValue,
                    message: String::new(),
                },
            )),
            Ok(((t, u), _)) => {
                let k = k.clone().unwrap_or_default();
                let ordinal = distinct[&(t.clone(), u.clone(), k)];
                let version = schemas[&(input.entity_type.clone().unwrap_or_default(), u.clone())]
                    .as_ref()
                    .expect("validated")
                    .version;
                let parts = splits[index].take().expect("split above");
                for (attribute, mut value) in parts.observations {
                    // In the form the stored jsonb has (a cast step's `1e3` is stored as 1000):
                    // snapshots and content hashes are computed from these values.
                    evolve_core::number::canonicalize(&mut value);
                    observations.push((
                        ordinal,
                        NewObservation {
                            entity_id: 0,
                            attribute,
                            value,
                            source: input.source.clone(),
                            schema_version: Some(if transformed.is_some() {
                                version
                            } else {
                                input.schema_version.unwrap_or(version)
                            }),
                        },
                    ));
                }
                // Embedded related entities were ingested first (above); one their type refused
                // stays with this entity as a fragment under the relationship's name.
                let refused = parts.embedded.into_iter().filter_map(|(relationship, ..)| {
                    refused_embedded
                        .remove(&(index, relationship.clone()))
                        .map(|object| (relationship, object))
                });
                // Undeclared keys, and declared ones whose value does not fit, become fragments:
                // nothing is lost, and the mismatch stays visible in the aggregates.
                let extra = parts
                    .fragments
                    .into_iter()
                    .chain(parts.mismatches.into_iter().map(|(k, v, _)| (k, v)))
                    .chain(refused);
                for (key, value) in extra {
                    let f = fragments.entry((ordinal, key.clone())).or_insert(Fragment {
                        entity_id: 0,
                        entity_type: t.clone(),
                        user_id: u.clone(),
                        key,
                        value: Value::Null,
                        source: None,
                        frequency: 0,
                    });
                    f.value = value;
                    f.source = input.source.clone();
                    f.frequency += 1;
                }
                Ok(ordinal)
            }
        };
        results.push(result);
    }

    // The entities: ids by ordinal, the states of those that existed (locked), and the ones
    // this batch created, written whole.
    let mut ids: Vec<i64> = vec![0; distinct.len()];
    let derived = crate::shards::derived_ids();
    let mut states: BTreeMap<i64, EntityState> = BTreeMap::new();
    let mut created: HashSet<i64> = HashSet::new();
    let (mut born, mut drawn, mut definitions) = (Vec::new(), Vec::new(), Vec::new());
    if distinct.len() == 1 {
        // One entity needs no order: one upsert, its snapshot merged afterwards. (`EXCLUDED.
        // updated_at` is the insert's default, now(): no function call is evaluated in the
        // conflict action.)
        let (t, u, k) = distinct.keys().next().expect("one").clone();
        Spi::connect_mut(|c| {
            let rows = if derived {
                // One row by its id: a single-shard statement where entities are distributed.
                let id = derived_entity_id(&t, u.as_deref(), &k);
                crate::plans::execute(
                    c,
                    "INSERT INTO evolve.entities AS e (entity_id, entity_type, user_id, entity_key) \
                     OVERRIDING SYSTEM VALUE VALUES ($4, $1, $2, $3) \
                     ON CONFLICT (entity_id) DO UPDATE SET updated_at = EXCLUDED.updated_at \
                     RETURNING entity_id, entity_type, user_id, snapshot_cells, snapshot_schema_hash, \
                               last_computed_observation_id, entity_key, xmax = 0",
                    &[t.as_str().into(), u.as_deref().into(), k.as_str().into(), id.into()],
                )
            } else {
                crate::plans::execute(
                    c,
                    "INSERT INTO evolve.entities AS e (entity_type, user_id, entity_key) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) \
                     ON CONFLICT ON CONSTRAINT entities_key DO UPDATE SET updated_at = EXCLUDED.updated_at \
                     RETURNING entity_id, entity_type, user_id, snapshot_cells, snapshot_schema_hash, \
                               last_computed_observation_id, entity_key, xmax = 0",
                    &[vec![t.clone()].into(), vec![u.clone()].into(), vec![k.clone()].into()],
                )
            };
            for r in rows {
                let key = r.required::<String>(7);
                let (id, mut state) = EntityState::from_row(&r);
                if state.scope() != (t.as_str(), u.as_deref()) || key != k {
                    collision(&t, &k);
                }
                if r.required::<bool>(8) {
                    created.insert(id);
                    state.created = true;
                }
                ids[0] = id;
                states.insert(id, state);
            }
        });
    } else if !distinct.is_empty() {
        (born, drawn, definitions) =
            create_entities(&distinct, &mut observations, &mut ids, derived);
        created.extend(born.iter().map(|b| b.entity_id));
        lock_existing(&distinct, &mut ids, &mut states, derived);
    }
    // An entity deleted by another session between its insert and its lock has no row to write
    // to (nothing references entities by constraint: the writers lock them first).
    if ids.contains(&0) {
        raise(
            SqlState::SerializationFailure,
            "an entity of this batch was deleted by another transaction while it was ingested",
            None,
            Some("Retry the statement.".into()),
        );
    }

    // The shards of the batch's entities, looked up once (only where entities are distributed):
    // the parts of their counts and of their fragments' aggregates are those shards'.
    let shard_keys = if derived && (!created.is_empty() || !fragments.is_empty()) {
        Spi::connect_mut(|c| crate::shards::keys_in(c, &ids))
    } else {
        crate::shards::ShardKeys::default()
    };

    // Where entities are distributed, the count triggers do nothing on the shards: the
    // entities this statement created are counted here, in the parts of their shards.
    if derived && !created.is_empty() {
        let scopes: Vec<(i64, &str, Option<&str>)> = born
            .iter()
            .map(|b| (b.entity_id, b.entity_type.as_str(), b.user_id.as_deref()))
            .chain(
                states
                    .iter()
                    .filter(|(_, s)| s.created)
                    .map(|(&id, s)| (id, s.scope().0, s.scope().1)),
            )
            .collect();
        Spi::connect_mut(|c| {
            let mut counts: BTreeMap<i64, BTreeMap<(&str, Option<&str>), i64>> = BTreeMap::new();
            for &(id, t, u) in &scopes {
                *counts
                    .entry(shard_keys.of(id))
                    .or_default()
                    .entry((t, u))
                    .or_default() += 1;
            }
            for (shard, counts) in counts {
                let (types, users): (Vec<&str>, Vec<Option<&str>>) = counts.keys().copied().unzip();
                let counts: Vec<i64> = counts.into_values().collect();
                crate::plans::execute(
                    c,
                    "SELECT evolve._add_count_parts($1, $2, $3, $4)",
                    &[shard.into(), types.into(), users.into(), counts.into()],
                );
            }
        });
    }

    // Observations: those of the entities created whole have their ids (drawn for them); the
    // others get theirs now, merged into their entities' snapshots.
    let mut is_born = vec![false; ids.len()];
    for b in &born {
        is_born[b.ordinal] = true;
    }
    let mut first: Vec<(i64, NewObservation)> = Vec::new();
    let mut later = Vec::with_capacity(observations.len());
    for (n, (ordinal, mut o)) in observations.into_iter().enumerate() {
        o.entity_id = ids[ordinal];
        if is_born[ordinal] {
            first.push((drawn[n], o));
        } else {
            later.push(o);
        }
    }
    crate::snapshots::record_born(first, &born, &definitions);
    let observed: std::collections::BTreeSet<i64> = later.iter().map(|o| o.entity_id).collect();
    states.retain(|id, _| observed.contains(id));
    record_canonical(later, Some(states));

    let mut fragments: Vec<Fragment> = fragments
        .into_iter()
        .map(|((ordinal, _), mut f)| {
            f.entity_id = ids[ordinal];
            f
        })
        .collect();
    fragments.sort_by(|a, b| (a.entity_id, &a.key).cmp(&(b.entity_id, &b.key)));
    crate::metrics::add_at_commit(
        crate::metrics::Counter::FragmentsWritten,
        fragments.len() as u64,
    );
    upsert_fragments(fragments, &created, &shard_keys);
    let results: Vec<Result<i64, Reject>> = results
        .into_iter()
        .map(|r| r.map(|ordinal| ids[ordinal]))
        .collect();
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    crate::metrics::add_at_commit(crate::metrics::Counter::PayloadsIngested, accepted as u64);
    results
}

/// Creates the batch's new entities, each written whole: with the snapshot its observations
/// make, computed first, with observation ids drawn for every observation of the batch (those
/// of entities that turn out to exist go unused: theirs are drawn once the entities are locked,
/// in the order their snapshots absorb them). The keys are inserted in their order (the one
/// every batch uses), without waiting on any existing row: an insert only waits for a
/// concurrent insert of the same key. Sets the ids of the entities created; returns them, the
/// ids drawn (by observation) and the definitions the snapshots were reduced with.
fn create_entities(
    distinct: &BTreeMap<EntityKey, usize>,
    observations: &mut [(usize, NewObservation)],
    ids: &mut [i64],
    derived: bool,
) -> (Vec<Born>, Vec<i64>, Vec<Definition>) {
    let drawn: Vec<i64> = if observations.is_empty() {
        Vec::new()
    } else {
        Spi::connect_mut(|c| crate::snapshots::draw_observation_ids(c, observations.len()))
    };
    let mut by_ordinal: Vec<Vec<usize>> = vec![Vec::new(); distinct.len()];
    for (n, (ordinal, _)) in observations.iter().enumerate() {
        by_ordinal[*ordinal].push(n);
    }
    // Each scope's effective definition and schema hash, resolved once: `definitions[d]` for
    // the index `d` a scope maps to.
    let mut scopes: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    let mut definitions: Vec<(Definition, i64)> = Vec::new();
    let mut definition_of = vec![None; distinct.len()];
    let n = distinct.len();
    let (mut types, mut users, mut keys) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut snapshots, mut cells, mut hashes, mut lasts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((t, u, k), &ordinal) in distinct {
        types.push(t.as_str());
        users.push(u.as_deref());
        keys.push(k.as_str());
        let mut snapshot = Snapshot::new();
        let (mut hash, mut last) = (0, 0);
        if !by_ordinal[ordinal].is_empty() {
            let d = *scopes.entry((t.as_str(), u.as_deref())).or_insert_with(|| {
                definitions.push(
                    effective_definition(t, u.as_deref())
                        .map_or_else(|| (empty_definition(), 0), |e| (e.definition, e.hash)),
                );
                definitions.len() - 1
            });
            definition_of[ordinal] = Some(d);
            let (def, h) = &definitions[d];
            hash = *h;
            for &i in &by_ordinal[ordinal] {
                // The value is lent to the reduction, not copied.
                let o = &mut observations[i].1;
                let obs = Observation {
                    id: drawn[i],
                    value: std::mem::take(&mut o.value),
                    source: o.source.take(),
                };
                reduce::apply(def, &mut snapshot, &o.attribute, &obs);
                (o.value, o.source) = (obs.value, obs.source);
                last = drawn[i];
            }
        }
        snapshots.push(reduce::snapshot_values(&snapshot));
        cells.push(serde_json::to_value(&snapshot).expect("cells serialize"));
        hashes.push(hash);
        lasts.push(last);
    }
    let derived_ids: Vec<i64> = if derived {
        distinct
            .keys()
            .map(|(t, u, k)| derived_entity_id(t, u.as_deref(), k))
            .collect()
    } else {
        Vec::new()
    };
    let created: Vec<(i64, String, Option<String>, String)> = Spi::connect_mut(|c| {
        crate::plans::execute(
            c,
            if derived {
                // A key whose id is taken (by itself, or by another key) is left to
                // lock_existing, which tells the two apart.
                // (In a CTE: Citus counts the rows its conflict clause skipped as processed,
                // more than it returns, which SPI refuses of a statement returning rows.)
                "WITH created AS ( \
                     INSERT INTO evolve.entities \
                         (entity_type, user_id, entity_key, snapshot, snapshot_cells, snapshot_schema_hash, \
                          last_computed_observation_id, entity_id) OVERRIDING SYSTEM VALUE \
                     SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::jsonb[]), \
                            unnest($5::jsonb[]), unnest($6::bigint[]), unnest($7::bigint[]), unnest($8::bigint[]) \
                     ON CONFLICT (entity_id) DO NOTHING \
                     RETURNING entity_id, entity_type, user_id, entity_key) \
                 SELECT * FROM created"
            } else {
                "INSERT INTO evolve.entities \
                     (entity_type, user_id, entity_key, snapshot, snapshot_cells, snapshot_schema_hash, \
                      last_computed_observation_id) \
                 SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::jsonb[]), \
                        unnest($5::jsonb[]), unnest($6::bigint[]), unnest($7::bigint[]) \
                 ON CONFLICT ON CONSTRAINT entities_key DO NOTHING \
                 RETURNING entity_id, entity_type, user_id, entity_key"
            },
            &[
                crate::arrays::text(&types),
                crate::arrays::text(&users),
                crate::arrays::text(&keys),
                crate::jsonb::array(snapshots.iter()),
                crate::jsonb::array(cells.iter()),
                hashes.into(),
                lasts.into(),
                derived_ids.into(),
            ],
        )
        .map(|r| {
            (
                r.required::<i64>(1),
                r.required::<String>(2),
                r.value::<String>(3),
                r.required::<String>(4),
            )
        })
        .collect()
    });
    let born = created
        .into_iter()
        .map(|(entity_id, entity_type, user_id, key)| {
            let ordinal = distinct[&(entity_type.clone(), user_id.clone(), key)];
            ids[ordinal] = entity_id;
            Born {
                ordinal,
                entity_id,
                entity_type,
                user_id,
                snapshot: std::mem::take(&mut snapshots[ordinal]),
                definition: definition_of[ordinal],
            }
        })
        .collect();
    (
        born,
        drawn,
        definitions.into_iter().map(|(d, _)| d).collect(),
    )
}

/// Locks the batch's entities that existed (those without an id yet), in id order, the order
/// promotion and snapshot refresh use, and reads their states. The rows this batch inserted
/// need no lock (no other transaction can lock them before it ends) and no second write.
fn lock_existing(
    distinct: &BTreeMap<EntityKey, usize>,
    ids: &mut [i64],
    states: &mut BTreeMap<i64, EntityState>,
    derived: bool,
) {
    let existing: Vec<&EntityKey> = distinct
        .iter()
        .filter(|(_, &ordinal)| ids[ordinal] == 0)
        .map(|(key, _)| key)
        .collect();
    if existing.is_empty() {
        return;
    }
    let types: Vec<&str> = existing.iter().map(|k| k.0.as_str()).collect();
    let users: Vec<Option<&str>> = existing.iter().map(|k| k.1.as_deref()).collect();
    let keys: Vec<&str> = existing.iter().map(|k| k.2.as_str()).collect();
    let derived_ids: Vec<i64> = if derived {
        existing
            .iter()
            .map(|(t, u, k)| derived_entity_id(t, u.as_deref(), k))
            .collect()
    } else {
        Vec::new()
    };
    // Derived ids are locked shard by shard (one group on a single node); keys, in one
    // statement.
    let groups = if derived {
        crate::shards::groups(derived_ids.clone())
    } else {
        vec![Vec::new()]
    };
    Spi::connect_mut(|c| {
        for group in groups {
            let rows = crate::plans::execute(
                c,
                if derived {
                    "WITH locked AS ( \
                     SELECT e.entity_id FROM evolve.entities e WHERE e.entity_id = ANY ($4::bigint[]) \
                     ORDER BY e.entity_id FOR NO KEY UPDATE OF e) \
                 UPDATE evolve.entities e SET updated_at = now() FROM locked \
                 WHERE e.entity_id = locked.entity_id AND e.entity_id = ANY ($4::bigint[]) \
                 RETURNING e.entity_id, e.entity_type, e.user_id, e.snapshot_cells, e.snapshot_schema_hash, \
                           e.last_computed_observation_id, e.entity_key"
                } else {
                    "WITH locked AS ( \
                     SELECT e.entity_id FROM evolve.entities e \
                     JOIN unnest($1::text[], $2::text[], $3::text[]) AS x(t, u, k) \
                       ON e.entity_type = x.t AND e.entity_key = x.k AND e.user_id IS NOT DISTINCT FROM x.u \
                     ORDER BY e.entity_id FOR NO KEY UPDATE OF e) \
                 UPDATE evolve.entities e SET updated_at = now() FROM locked WHERE e.entity_id = locked.entity_id \
                 RETURNING e.entity_id, e.entity_type, e.user_id, e.snapshot_cells, e.snapshot_schema_hash, \
                           e.last_computed_observation_id, e.entity_key"
                },
                &[
                    types.clone().into(),
                    users.clone().into(),
                    keys.clone().into(),
                    group.into(),
                ],
            );
            for r in rows {
                let key = r.required::<String>(7);
                let (id, state) = EntityState::from_row(&r);
                let (t, u) = state.scope();
                let scope = (t.to_string(), u.map(str::to_string), key);
                match distinct.get(&scope) {
                    Some(&ordinal) => ids[ordinal] = id,
                    // Derived ids only: the row holding a key's id has another key.
                    None => {
                        let (t, _, k) =
                            existing[derived_ids.iter().position(|&d| d == id).unwrap_or(0)];
                        collision(t, k)
                    }
                }
                states.insert(id, state);
            }
        }
    });
}

/// Two keys with one derived id: the second is refused (its row would be another entity's).
fn collision(entity_type: &str, key: &str) -> ! {
    raise(
        SqlState::UniqueViolation,
        format!(
            "the entity id derived from key \"{key}\" of entity type \"{entity_type}\" belongs to another entity"
        ),
        None,
        Some(
            "Entity ids of a distributed database are hashes of (entity_type, user_id, entity_key), and these two \
             collide (odds of about n²/2⁶⁴ with n entities). Ingest the payload under another entity_key."
                .into(),
        ),
    )
}

/// The columns of fragment rows, as the arrays an `unnest` insert takes.
#[derive(Default)]
struct FragmentColumns {
    ids: Vec<i64>,
    types: Vec<String>,
    users: Vec<Option<String>>,
    keys: Vec<String>,
    values: Vec<Value>,
    value_types: Vec<&'static str>,
    sources: Vec<Option<String>>,
    frequencies: Vec<i32>,
}

impl FragmentColumns {
    fn push(&mut self, f: Fragment, value_type: &'static str) {
        self.ids.push(f.entity_id);
        self.types.push(f.entity_type);
        self.users.push(f.user_id);
        self.keys.push(f.key);
        self.values.push(f.value);
        self.value_types.push(value_type);
        self.sources.push(f.source);
        self.frequencies.push(f.frequency);
    }

    fn into_args(self) -> [pgrx::datum::DatumWithOid<'static>; 8] {
        [
            self.ids.into(),
            crate::arrays::text(&self.types),
            crate::arrays::text(&self.users),
            crate::arrays::text(&self.keys),
            crate::jsonb::array(self.values.iter()),
            crate::arrays::text(&self.value_types),
            crate::arrays::text(&self.sources),
            self.frequencies.into(),
        ]
    }
}

/// Writes the batch's fragments and adds their aggregate deltas to this backend's parts.
/// `created`: entities this batch inserted (no fragment of theirs can exist yet).
fn upsert_fragments(
    fragments: Vec<Fragment>,
    created: &HashSet<i64>,
    shard_keys: &crate::shards::ShardKeys,
) {
    if fragments.is_empty() {
        return;
    }
    // Before `ALTER EXTENSION pg_evolve UPDATE` to 0.4.0 there are no parts: the triggers of
    // the older version keep its aggregates.
    let parts =
        crate::plans::evolve_relation(c"raw_fragment_aggregate_parts") != pg_sys::InvalidOid;
    let groups = crate::shards::groups(
        fragments
            .iter()
            .filter(|f| parts && !created.contains(&f.entity_id))
            .map(|f| f.entity_id)
            .collect(),
    );
    Spi::connect_mut(|c| {
        // Lock order: entities (held since the entity upsert), then fragments in (entity, key)
        // order, then this backend's own aggregate parts: no two writers ever wait on one
        // aggregate row. The rows the upsert will rewrite are locked first, and read: their
        // old type, source and frequency leave the aggregates.
        let (old_ids, old_keys): (Vec<i64>, Vec<String>) = fragments
            .iter()
            .filter(|f| parts && !created.contains(&f.entity_id))
            .map(|f| (f.entity_id, f.key.clone()))
            .unzip();
        let mut old: HashMap<(i64, String), (String, Option<String>, i64)> = HashMap::new();
        // Shard by shard where entities are distributed (one group on a single node).
        for group in &groups {
            for r in crate::plans::execute(
                c,
                "SELECT entity_id, fragment_key, value_type, source, frequency FROM evolve.raw_fragments \
                 WHERE entity_id = ANY ($3) \
                   AND (entity_id, fragment_key) IN (SELECT * FROM unnest($1::bigint[], $2::text[])) \
                 ORDER BY entity_id, fragment_key FOR UPDATE",
                &[old_ids.clone().into(), old_keys.clone().into(), group.clone().into()],
            ) {
                old.insert(
                    (r.required::<i64>(1), r.required::<String>(2)),
                    (
                        r.required::<String>(3),
                        r.value::<String>(4),
                        i64::from(r.required::<i32>(5)),
                    ),
                );
            }
        }

        // The deltas, as the statement triggers would derive them: a rewritten row leaves with
        // its old values and comes back with the new ones. By shard: each goes to the parts of
        // the shard holding its row (one shard, 0, on a single node).
        let mut deltas: BTreeMap<i64, KeyDeltas> = BTreeMap::new();
        let value_types: Vec<&'static str> =
            fragments.iter().map(|f| value_type(&f.value)).collect();
        for (f, vt) in fragments.iter().zip(&value_types) {
            let d = deltas
                .entry(shard_keys.of(f.entity_id))
                .or_default()
                .entry((&f.entity_type, f.user_id.as_deref(), &f.key))
                .or_default();
            let mut frequency = i64::from(f.frequency);
            if let Some((old_type, old_source, old_frequency)) =
                old.get(&(f.entity_id, f.key.clone()))
            {
                d.add(&FragmentRow {
                    value_type: old_type,
                    source: old_source.as_deref(),
                    frequency: *old_frequency,
                    value: &Value::Null,
                    sign: -1,
                });
                frequency += old_frequency;
            }
            d.add(&FragmentRow {
                value_type: vt,
                source: f.source.as_deref(),
                frequency,
                value: &f.value,
                sign: 1,
            });
        }
        // Each shard's deltas, as the columns `evolve._add_parts` takes.
        let deltas: Vec<(i64, [pgrx::datum::DatumWithOid<'static>; 8])> = deltas
            .into_iter()
            .map(|(shard, deltas)| (shard, delta_args(deltas)))
            .collect();

        // Fragments of entities this batch created cannot exist yet: a plain insert, without
        // the speculative insertion of ON CONFLICT, in the order they come (by entity and key,
        // from the map they were gathered in), so no sort. The others are upserted. (The
        // arrays are unnested in the select list: a function in FROM is materialized first.)
        let (mut fresh, mut seen) = (FragmentColumns::default(), FragmentColumns::default());
        for (f, vt) in fragments.into_iter().zip(value_types) {
            if created.contains(&f.entity_id) {
                fresh.push(f, vt);
            } else {
                seen.push(f, vt);
            }
        }
        {
            let _deltas_added_here = parts.then(CallerAggregates::begin);
            if !fresh.ids.is_empty() {
                crate::plans::execute(
                    c,
                    "INSERT INTO evolve.raw_fragments \
                         (entity_id, entity_type, user_id, fragment_key, value, value_type, source, frequency) \
                     SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[]), \
                            unnest($5::jsonb[]), unnest($6::text[]), unnest($7::text[]), unnest($8::int[])",
                    &fresh.into_args(),
                );
            }
            // A sighting never moves last_seen_at back (a transaction that started earlier
            // may commit later), so no key needs its latest sighting read again.
            if !seen.ids.is_empty() {
                crate::plans::execute(
                    c,
                    "INSERT INTO evolve.raw_fragments AS f \
                         (entity_id, entity_type, user_id, fragment_key, value, value_type, source, frequency) \
                     SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[]), \
                            unnest($5::jsonb[]), unnest($6::text[]), unnest($7::text[]), unnest($8::int[]) \
                     ORDER BY 1, 4 \
                     ON CONFLICT ON CONSTRAINT raw_fragments_entity_key DO UPDATE SET \
                         value = EXCLUDED.value, value_type = EXCLUDED.value_type, source = EXCLUDED.source, \
                         frequency = f.frequency + EXCLUDED.frequency, \
                         last_seen_at = greatest(f.last_seen_at, EXCLUDED.last_seen_at), \
                         lifecycle_state = CASE WHEN f.lifecycle_state = 'archived' THEN 'active' ELSE f.lifecycle_state END, \
                         archived_at = CASE WHEN f.lifecycle_state = 'archived' THEN NULL ELSE f.archived_at END",
                    &seen.into_args(),
                );
            }
        }
        if !parts {
            return;
        }
        let by_shard = crate::plans::parts_by_shard();
        for (shard, args) in deltas {
            let [a1, a2, a3, a4, a5, a6, a7, a8] = args;
            if by_shard {
                crate::plans::execute(
                    c,
                    "SELECT evolve._add_parts($1, $2, $3, $4, $5, $6, $7, $8, \
                                              array_fill(now(), ARRAY[cardinality($2)]), $9)",
                    &[shard.into(), a1, a2, a3, a4, a5, a6, a7, a8],
                );
            } else {
                // (Before the update to 0.10.0: one shard, 0.)
                crate::plans::execute(
                    c,
                    "SELECT evolve._add_parts($1, $2, $3, $4, $5, $6, $7, \
                                              array_fill(now(), ARRAY[cardinality($1)]), $8)",
                    &[a1, a2, a3, a4, a5, a6, a7, a8],
                );
            }
        }
    });
}

/// One shard's aggregate deltas, by (entity_type, user_id, fragment_key).
type KeyDeltas<'a> = BTreeMap<(&'a str, Option<&'a str>, &'a str), KeyDelta>;

/// One shard's per-key deltas as the arrays `evolve._add_parts` takes after the shard (types,
/// users, keys, samples, frequencies, type counts, source counts, sample values).
fn delta_args(deltas: KeyDeltas) -> [pgrx::datum::DatumWithOid<'static>; 8] {
    let n = deltas.len();
    let mut d_types = Vec::with_capacity(n);
    let mut d_users = Vec::with_capacity(n);
    let mut d_keys = Vec::with_capacity(n);
    let mut d_samples = Vec::with_capacity(n);
    let mut d_frequencies = Vec::with_capacity(n);
    let mut d_type_counts = Vec::with_capacity(n);
    let mut d_source_counts = Vec::with_capacity(n);
    let mut d_values = Vec::with_capacity(n);
    for ((t, u, k), d) in deltas {
        d_types.push(t.to_string());
        d_users.push(u.map(str::to_string));
        d_keys.push(k.to_string());
        d_samples.push(d.sample_count);
        d_frequencies.push(d.frequency_total);
        d_type_counts.push(JsonB(Value::Object(d.type_counts)));
        d_source_counts.push(JsonB(Value::Object(d.source_counts)));
        d_values.push(JsonB(Value::Array(d.samples)));
    }
    [
        d_types.into(),
        d_users.into(),
        d_keys.into(),
        d_samples.into(),
        d_frequencies.into(),
        d_type_counts.into(),
        d_source_counts.into(),
        d_values.into(),
    ]
}

/// Ingests one payload and returns its entity's id. `entity_key` identifies the entity within
/// (entity_type, user_id); without one a new entity is created. Undeclared keys (and declared
/// ones whose value does not fit the declared type) become raw fragments.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest(
    entity_type: Option<&str>,
    payload: Json,
    user_id: default!(Option<String>, "NULL"),
    source: default!(Option<String>, "NULL"),
    entity_key: default!(Option<String>, "NULL"),
    schema_version: default!(Option<i32>, "NULL"),
) -> i64 {
    let entity_type = crate::error::required(entity_type, "entity_type");
    crate::access::require_write(user_id.as_deref(), "ingest");
    let input = Input {
        entity_type: Some(entity_type.to_string()),
        payload: Some(payload.0),
        user_id,
        source,
        entity_key,
        schema_version,
        ..Input::default()
    };
    match ingest_batch(std::slice::from_ref(&input)).pop() {
        Some(Ok(id)) => id,
        Some(Err(r)) => raise(
            r.state,
            r.message,
            None,
            Some("See docs/reference.md for the payload rules; INSERT into evolve.inbox sets bad rows aside instead.".into()),
        ),
        None => unreachable!("one input, one result"),
    }
}

/// Routes one statement's inbox rows (called by the inbox trigger, as the extension owner, for
/// the role that inserted them). Every bad row goes to `evolve.inbox_rejects` with its SQLSTATE
/// and message and the others are ingested: an unreadable payload (numbers are read exactly,
/// nesting is bounded), a key too large, a row for a tenant the inserting role may not write.
/// Payloads arrive as text so that reading each is this function's, row by row. (Its C symbol
/// differs from 0.2.0's jsonb[] version, so an old definition calling the new library fails
/// cleanly instead of reading jsonb as text.)
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe, name = "_ingest_inbox")]
fn route_inbox_rows(
    ids: Vec<Option<i64>>,
    entity_types: Vec<Option<String>>,
    payloads: Vec<Option<String>>,
    user_ids: Vec<Option<String>>,
    sources: Vec<Option<String>>,
    entity_keys: Vec<Option<String>>,
    schema_versions: Vec<Option<i32>>,
) {
    let tenant = crate::access::tenant();
    let mut inputs: Vec<Input> = Vec::with_capacity(ids.len());
    // The user scope each reject is filed under: a row claiming a scope its writer may not
    // write is filed under the writer's own tenant, so nothing lands in another tenant's view.
    let mut filed_under: Vec<Option<String>> = Vec::with_capacity(ids.len());
    // Whether the inserting role may write each scope, asked once per scope.
    let mut may_write: HashMap<Option<String>, bool> = HashMap::new();
    for i in 0..ids.len() {
        let mut rejected = None;
        let payload = match payloads[i].as_deref().map(evolve_core::number::parse_exact) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                rejected = Some(Reject {
                    state: e.sqlstate(),
                    message: e.to_string().replace("JSON value", "payload"),
                });
                None
            }
            None => None,
        };
        let user_id = user_ids[i].clone();
        let mut file_as = user_id.clone();
        let allowed = *may_write
            .entry(user_id.clone())
            .or_insert_with(|| crate::access::may_write(user_id.as_deref()));
        if rejected.is_none() && !allowed {
            rejected = Some(Reject {
                state: SqlState::InsufficientPrivilege,
                message: format!(
                    "permission denied to ingest into {} (this session writes {})",
                    scope_name(user_id.as_deref()),
                    scope_name(tenant.as_deref())
                ),
            });
            file_as = tenant.clone();
        }
        filed_under.push(file_as);
        inputs.push(Input {
            entity_type: entity_types[i].clone(),
            payload,
            rejected,
            user_id,
            source: sources[i].clone(),
            entity_key: entity_keys[i].clone(),
            schema_version: schema_versions[i],
        });
    }
    let results = ingest_batch(&inputs);
    let mut rejected: Vec<usize> = Vec::new();
    let mut states = Vec::new();
    let mut messages = Vec::new();
    for (i, r) in results.iter().enumerate() {
        if let Err(r) = r {
            rejected.push(i);
            states.push(r.state.code().to_string());
            messages.push(r.message.clone());
        }
    }
    if rejected.is_empty() {
        return;
    }
    let pick = |v: &Vec<Option<String>>| rejected.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
    let rejected_ids: Vec<Option<i64>> = rejected.iter().map(|&i| ids[i]).collect();
    let rejected_versions: Vec<Option<i32>> =
        rejected.iter().map(|&i| schema_versions[i]).collect();
    // The payload is kept as it arrived (its text is jsonb's own, so it reads back exactly).
    Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO evolve.inbox_rejects \
                 (inbox_id, entity_type, payload, user_id, source, entity_key, schema_version, sqlstate, error) \
             SELECT id, t, p::jsonb, u, s, k, v, st, e \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::int[], $8::text[], $9::text[]) AS r(id, t, p, u, s, k, v, st, e)",
            None,
            &[
                rejected_ids.into(),
                pick(&entity_types).into(),
                pick(&payloads).into(),
                pick(&filed_under).into(),
                pick(&sources).into(),
                pick(&entity_keys).into(),
                rejected_versions.into(),
                states.into(),
                messages.into(),
            ],
        )
        .or_raise();
    });
    crate::metrics::add_at_commit(
        crate::metrics::Counter::PayloadsRejected,
        rejected.len() as u64,
    );
    pgrx::warning!(
        "{} of {} inbox rows rejected; see evolve.inbox_rejects",
        rejected.len(),
        ids.len()
    );
}

/// 0.2.0's inbox routing (payloads as jsonb[]). Only its symbol is kept, so that 0.2.0's
/// definition still resolves against this library: it refuses until the update has run.
#[pg_extern(sql = false)]
fn ingest_inbox() {
    raise(
        SqlState::ObjectNotInPrerequisiteState,
        "the installed pg_evolve library is newer than the extension's SQL objects",
        None,
        Some("Run ALTER EXTENSION pg_evolve UPDATE.".into()),
    )
}

fn scope_name(user_id: Option<&str>) -> String {
    user_id.map_or_else(
        || "the global scope".into(),
        |u| format!("user scope {u:?}"),
    )
}
