//! L2: observations and snapshots. Observations are recorded set-based and merged into their
//! entities' snapshots (`evolve.entities.snapshot`): incrementally when the snapshot was
//! reduced with the current effective schema, by a full recompute otherwise or on
//! `refresh_snapshot`. Ingestion (L3) and fragment promotion (L2) both record through here.

use std::collections::{BTreeMap, HashMap};

use crate::store::Effective;

use evolve_core::reduce::{self, Observation, Snapshot};
use evolve_core::schema::Definition;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::error::{raise, OrRaise};
use crate::freshness::empty_definition;
use crate::plans::Row;
use crate::store::effective_definition;

/// An observation to record for an existing entity.
pub struct NewObservation {
    pub entity_id: i64,
    pub attribute: String,
    pub value: Value,
    pub source: Option<String>,
    pub schema_version: Option<i32>,
}

/// What incremental reduction needs of a locked entity: read from its columns
/// `entity_id, entity_type, user_id, snapshot_cells, snapshot_schema_hash,
/// last_computed_observation_id` (in that order, from column 1) by [`EntityState::from_row`].
pub struct EntityState {
    entity_type: String,
    user_id: Option<String>,
    cells: Snapshot,
    schema_hash: i64,
    last_computed: i64,
    /// Inserted by the statement writing it: nothing refers to it yet (no embedding, no queue
    /// row).
    pub created: bool,
}

impl EntityState {
    /// The entity's type and user scope.
    pub fn scope(&self) -> (&str, Option<&str>) {
        (&self.entity_type, self.user_id.as_deref())
    }

    /// The entity id and state from a row whose first six columns are the ones listed above.
    pub fn from_row(r: &pgrx::spi::SpiHeapTupleData<'_>) -> (i64, EntityState) {
        let cells: Snapshot = r
            .value::<JsonB>(4)
            .and_then(|j| serde_json::from_value(j.0).ok())
            .unwrap_or_default();
        (
            r.required::<i64>(1),
            EntityState {
                entity_type: r.required::<String>(2),
                user_id: r.value::<String>(3),
                cells,
                schema_hash: r.required::<i64>(5),
                last_computed: r.required::<i64>(6),
                created: false,
            },
        )
    }
}

/// Records observations and merges them into their entities' snapshots: incrementally when the
/// entity's snapshot was reduced with the current schema, by a full recompute otherwise.
/// `locked`: the states of the observations' entities when the caller already holds their row
/// locks (read in the statement that took them); otherwise they are locked and read here.
pub fn record_observations(
    mut observations: Vec<NewObservation>,
    locked: Option<BTreeMap<i64, EntityState>>,
) {
    // The snapshots and their content hashes are computed from these values, in the form the
    // stored jsonb has (a cast step's `1e3` is stored as 1000), so that a hash computed later
    // from the stored snapshot is the same.
    for o in &mut observations {
        evolve_core::number::canonicalize(&mut o.value);
    }
    record_canonical(observations, locked);
}

/// [`record_observations`] of values already in stored form
/// (`evolve_core::number::canonicalize`).
pub fn record_canonical(
    observations: Vec<NewObservation>,
    locked: Option<BTreeMap<i64, EntityState>>,
) {
    if observations.is_empty() {
        return;
    }
    crate::args::writable_transaction();
    // The entities to lock, by shard (one group on a single node).
    let groups = match locked {
        Some(_) => Vec::new(),
        None => crate::shards::groups(observations.iter().map(|o| o.entity_id).collect()),
    };
    Spi::connect_mut(|client| {
        // Lock the entities (in id order) before their observations get ids, so ids follow
        // the order in which snapshots absorb them.
        let mut states: BTreeMap<i64, EntityState> = match locked {
            Some(states) => states,
            None => {
                let mut locked: BTreeMap<i64, EntityState> = BTreeMap::new();
                for group in &groups {
                    locked.extend(
                        crate::plans::execute(
                            client,
                            "SELECT entity_id, entity_type, user_id, snapshot_cells, snapshot_schema_hash, \
                                    last_computed_observation_id \
                             FROM evolve.entities WHERE entity_id = ANY($1) ORDER BY entity_id FOR NO KEY UPDATE",
                            &[group.clone().into()],
                        )
                        .map(|r| EntityState::from_row(&r)),
                    );
                }
                // An entity deleted by another transaction meanwhile has no row to write to.
                if locked.len() != groups.iter().map(Vec::len).sum::<usize>() {
                    crate::error::raise(
                        SqlState::SerializationFailure,
                        "an entity was deleted by another transaction while observations were recorded for it",
                        None,
                        Some("Retry the statement.".into()),
                    );
                }
                locked
            }
        };

        // The rows are inserted in input order (ORDER BY ord), so their ids, drawn from the
        // sequence as they are, ascend in that order: only the ids come back, and the values
        // are the ones in hand rather than read back from jsonb.
        let columns = observation_columns(observations.iter(), |id| {
            states.get(&id).and_then(|s| s.user_id.as_deref())
        });
        let mut ids: Vec<i64> = if crate::shards::distributed() {
            // Citus runs this insert through the coordinator, and its RETURNING rows do not
            // reach SPI whole: the ids are drawn first, in order, and inserted with the rows.
            let ids = draw_observation_ids(client, observations.len());
            let mut args = vec![ids.clone().into()];
            args.extend(columns);
            crate::plans::execute(
                client,
                "INSERT INTO evolve.observations \
                     (observation_id, entity_id, attribute, value, source, schema_version, user_id) \
                 OVERRIDING SYSTEM VALUE \
                 SELECT unnest($1::bigint[]), unnest($2::bigint[]), unnest($3::text[]), unnest($4::jsonb[]), \
                        unnest($5::text[]), unnest($6::int[]), unnest($7::text[])",
                &args,
            );
            ids
        } else {
            crate::plans::execute(
            client,
            if columns.len() == 6 {
                "INSERT INTO evolve.observations (entity_id, attribute, value, source, schema_version, user_id) \
                 SELECT entity_id, attribute, value, source, schema_version, user_id \
                 FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::text[], $5::int[], $6::text[]) \
                      WITH ORDINALITY AS u(entity_id, attribute, value, source, schema_version, user_id, ord) \
                 ORDER BY ord \
                 RETURNING observation_id"
            } else {
                "INSERT INTO evolve.observations (entity_id, attribute, value, source, schema_version) \
                 SELECT entity_id, attribute, value, source, schema_version \
                 FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::text[], $5::int[]) WITH ORDINALITY \
                      AS u(entity_id, attribute, value, source, schema_version, ord) \
                 ORDER BY ord \
                 RETURNING observation_id"
            },
            &columns,
        )
        .map(|r| r.required::<i64>(1))
        .collect()
        };
        ids.sort_unstable();
        debug_assert_eq!(ids.len(), observations.len());
        let inserted: Vec<(i64, i64, String, Observation)> = ids
            .into_iter()
            .zip(observations)
            .map(|(id, o)| {
                (
                    id,
                    o.entity_id,
                    o.attribute,
                    Observation {
                        id,
                        value: o.value,
                        source: o.source,
                    },
                )
            })
            .collect();

        let mut schemas: HashMap<(String, Option<String>), Option<Effective>> = HashMap::new();
        let empty = empty_definition();
        let mut schema_of = |st: &EntityState| {
            schemas
                .entry((st.entity_type.clone(), st.user_id.clone()))
                .or_insert_with(|| effective_definition(&st.entity_type, st.user_id.as_deref()))
                .as_ref()
                .map(|e| (e.definition.clone(), e.hash))
        };
        // Entities whose snapshot was reduced with another schema: full recompute.
        let mut full: Vec<i64> = Vec::new();
        let mut defs: HashMap<i64, (Definition, i64)> = HashMap::new();
        for (id, st) in &states {
            let (def, hash) = schema_of(st).unwrap_or_else(|| (empty.clone(), 0));
            // An entity never reduced (a new one) has no earlier observations to read again.
            if hash != st.schema_hash && st.last_computed > 0 {
                full.push(*id);
            }
            defs.insert(*id, (def, hash));
        }
        if !full.is_empty() {
            for id in &full {
                if let Some(st) = states.get_mut(id) {
                    st.cells.clear();
                    st.last_computed = 0;
                }
            }
            // Shard by shard where entities are distributed (one group on a single node).
            for group in crate::shards::groups_in(client, full.clone()) {
                let history = client
                .select(
                    "SELECT entity_id, observation_id, attribute, value, source FROM evolve.observations \
                     WHERE entity_id = ANY($1) ORDER BY entity_id, observation_id",
                    None,
                    &[group.into()],
                )
                .or_raise();
                for r in history {
                    let entity_id = r.required::<i64>(1);
                    let obs = Observation {
                        id: r.required::<i64>(2),
                        value: r.value::<JsonB>(4).map(|j| j.0).unwrap_or(Value::Null),
                        source: r.value::<String>(5),
                    };
                    let attribute = r.required::<String>(3);
                    if let (Some(st), Some((def, _))) =
                        (states.get_mut(&entity_id), defs.get(&entity_id))
                    {
                        reduce::apply(def, &mut st.cells, &attribute, &obs);
                        st.last_computed = st.last_computed.max(obs.id);
                    }
                }
            }
        }
        for (_, entity_id, attribute, obs) in &inserted {
            if let (Some(st), Some((def, _))) = (states.get_mut(entity_id), defs.get(entity_id)) {
                if obs.id > st.last_computed {
                    reduce::apply(def, &mut st.cells, attribute, obs);
                    st.last_computed = obs.id;
                }
            }
        }
        write_snapshots(client, &states, &defs);
    });
}

fn write_snapshots(
    client: &mut pgrx::spi::SpiClient<'_>,
    states: &BTreeMap<i64, EntityState>,
    defs: &HashMap<i64, (Definition, i64)>,
) {
    let mut ids = Vec::with_capacity(states.len());
    let mut snaps = Vec::with_capacity(states.len());
    let mut cells = Vec::with_capacity(states.len());
    let mut hashes = Vec::with_capacity(states.len());
    let mut lasts = Vec::with_capacity(states.len());
    for (id, st) in states {
        ids.push(*id);
        snaps.push(reduce::snapshot_values(&st.cells));
        cells.push(serde_json::to_value(&st.cells).expect("cells serialize"));
        hashes.push(defs.get(id).map(|d| d.1).unwrap_or(0));
        lasts.push(st.last_computed);
    }
    let empty = empty_definition();
    let written: Vec<crate::freshness::Written<'_>> = ids
        .iter()
        .zip(&snaps)
        .map(|(id, s)| crate::freshness::Written {
            entity_id: *id,
            entity_type: &states[id].entity_type,
            user_id: states[id].user_id.as_deref(),
            definition: defs.get(id).map(|d| &d.0).unwrap_or(&empty),
            snapshot: s,
            created: states[id].created,
        })
        .collect();
    follow(client, &written);
    drop(written);
    // One statement per shard where entities are distributed (the filter on the key lets Citus
    // route it to one); one group, the ids in order, on a single node.
    let at: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for group in crate::shards::groups_in(client, ids.clone()) {
        let pick =
            |f: &dyn Fn(usize) -> i64| group.iter().map(|id| f(at[id])).collect::<Vec<i64>>();
        crate::plans::execute(
            client,
            "UPDATE evolve.entities e SET snapshot = u.s, snapshot_cells = u.c, snapshot_schema_hash = u.h, \
                 last_computed_observation_id = u.l, updated_at = now() \
             FROM unnest($1::bigint[], $2::jsonb[], $3::jsonb[], $4::bigint[], $5::bigint[]) AS u(id, s, c, h, l) \
             WHERE e.entity_id = u.id AND e.entity_id = ANY ($1)",
            &[
                group.clone().into(),
                crate::jsonb::array(group.iter().map(|id| &snaps[at[id]])),
                crate::jsonb::array(group.iter().map(|id| &cells[at[id]])),
                pick(&|i| hashes[i]).into(),
                pick(&|i| lasts[i]).into(),
            ],
        );
    }
}

/// What follows written snapshots, in the same transaction: typed projections, and the
/// embedding queue for the entities whose enriched text changed.
fn follow(client: &mut pgrx::spi::SpiClient<'_>, written: &[crate::freshness::Written<'_>]) {
    let rows: Vec<(i64, &str, Option<&str>, &Value)> = written
        .iter()
        .map(|w| (w.entity_id, w.entity_type, w.user_id, w.snapshot))
        .collect();
    crate::projections::upkeep(client, &rows);
    crate::freshness::queue_changed(client, written);
}

/// The columns of observation rows (entity, attribute, value, source, schema version, and
/// the entity's user scope where the rows carry it: `rows_carry_scope`), as the arrays an
/// `unnest` insert takes.
fn observation_columns<'a, 'u>(
    observations: impl ExactSizeIterator<Item = &'a NewObservation>,
    user_of: impl Fn(i64) -> Option<&'u str>,
) -> Vec<pgrx::datum::DatumWithOid<'static>> {
    let n = observations.len();
    let scoped = crate::plans::rows_carry_scope();
    let mut e = Vec::with_capacity(n);
    let mut a = Vec::with_capacity(n);
    let mut v = Vec::with_capacity(n);
    let mut s = Vec::with_capacity(n);
    let mut sv = Vec::with_capacity(n);
    let mut u = Vec::with_capacity(if scoped { n } else { 0 });
    for o in observations {
        e.push(o.entity_id);
        a.push(o.attribute.as_str());
        v.push(&o.value);
        s.push(o.source.as_deref());
        sv.push(o.schema_version);
        if scoped {
            u.push(user_of(o.entity_id));
        }
    }
    let mut columns = vec![
        e.into(),
        crate::arrays::text(&a),
        crate::jsonb::array(v.into_iter()),
        crate::arrays::text(&s),
        sv.into(),
    ];
    if scoped {
        columns.push(crate::arrays::text(&u));
    }
    columns
}

/// `n` observation ids drawn from the sequence, ascending.
pub fn draw_observation_ids(client: &mut pgrx::spi::SpiClient<'_>, n: usize) -> Vec<i64> {
    let mut drawn: Vec<i64> = crate::plans::execute(
        client,
        "WITH s AS MATERIALIZED ( \
             SELECT pg_catalog.pg_get_serial_sequence('evolve.observations', 'observation_id')::regclass AS seq) \
         SELECT pg_catalog.nextval(s.seq) FROM s, generate_series(1, $1)",
        &[(n as i64).into()],
    )
    .map(|r| r.required::<i64>(1))
    .collect();
    drawn.sort_unstable();
    drawn
}

/// An entity a batch created whole: inserted with the snapshot its observations make, their
/// ids drawn beforehand (src/ingest.rs).
pub struct Born {
    /// The entity's rank among the batch's keys.
    pub ordinal: usize,
    pub entity_id: i64,
    pub entity_type: String,
    pub user_id: Option<String>,
    pub snapshot: Value,
    /// The definition its observations were reduced with (an index into the batch's), or None
    /// when it has none (its snapshot is empty: nothing follows it).
    pub definition: Option<usize>,
}

/// Records the observations of entities created whole, with the ids drawn for them (their
/// snapshots were written with the entities, reduced with `definitions`), and what follows
/// their snapshots. The values are in stored form already.
pub fn record_born(
    observations: Vec<(i64, NewObservation)>,
    born: &[Born],
    definitions: &[Definition],
) {
    if observations.is_empty() {
        return;
    }
    let ids: Vec<i64> = observations.iter().map(|(id, _)| *id).collect();
    let users: HashMap<i64, Option<&str>> = born
        .iter()
        .map(|b| (b.entity_id, b.user_id.as_deref()))
        .collect();
    let mut columns = vec![ids.into()];
    columns.extend(observation_columns(
        observations.iter().map(|(_, o)| o),
        |id| users.get(&id).copied().flatten(),
    ));
    Spi::connect_mut(|client| {
        crate::plans::execute(
            client,
            if columns.len() == 7 {
                "INSERT INTO evolve.observations \
                     (observation_id, entity_id, attribute, value, source, schema_version, user_id) \
                 OVERRIDING SYSTEM VALUE \
                 SELECT unnest($1::bigint[]), unnest($2::bigint[]), unnest($3::text[]), unnest($4::jsonb[]), \
                        unnest($5::text[]), unnest($6::int[]), unnest($7::text[])"
            } else {
                "INSERT INTO evolve.observations \
                     (observation_id, entity_id, attribute, value, source, schema_version) OVERRIDING SYSTEM VALUE \
                 SELECT unnest($1::bigint[]), unnest($2::bigint[]), unnest($3::text[]), unnest($4::jsonb[]), \
                        unnest($5::text[]), unnest($6::int[])"
            },
            &columns,
        );
        let written: Vec<crate::freshness::Written<'_>> = born
            .iter()
            .filter_map(|b| {
                Some(crate::freshness::Written {
                    entity_id: b.entity_id,
                    entity_type: &b.entity_type,
                    user_id: b.user_id.as_deref(),
                    definition: &definitions[b.definition?],
                    snapshot: &b.snapshot,
                    created: true,
                })
            })
            .collect();
        follow(client, &written);
    });
}

/// The entity's snapshot: its attributes' values reduced with their merge policies.
#[pg_extern(stable, parallel_safe)]
fn entity(entity_id: i64) -> Option<JsonB> {
    crate::plans::one::<JsonB>(
        "SELECT snapshot FROM evolve.entities WHERE entity_id = $1",
        &[entity_id.into()],
    )
}

/// Recomputes an entity's snapshot from all its observations and returns it.
#[pg_extern(volatile, parallel_unsafe)]
fn refresh_snapshot(entity_id: i64) -> JsonB {
    crate::args::writable_transaction();
    Spi::connect_mut(|client| {
        let st: Vec<(String, Option<String>)> = client
            .select(
                "SELECT entity_type, user_id FROM evolve.entities WHERE entity_id = $1 FOR NO KEY UPDATE",
                None,
                &[entity_id.into()],
            )
            .or_raise()
            .map(|r| (r.required::<String>(1), r.value::<String>(2)))
            .collect();
        let Some((t, u)) = st
            .into_iter()
            .next()
            .filter(|(_, u)| crate::access::may_write(u.as_deref()))
        else {
            raise(
                SqlState::UndefinedObject,
                format!("entity {entity_id} does not exist"),
                None,
                None,
            );
        };
        let (def, hash) = effective_definition(&t, u.as_deref())
            .map(|e| (e.definition, e.hash))
            .unwrap_or_else(|| (empty_definition(), 0));
        let mut cells = Snapshot::new();
        let mut last = 0;
        let history = client
            .select(
                "SELECT observation_id, attribute, value, source FROM evolve.observations \
                 WHERE entity_id = $1 ORDER BY observation_id",
                None,
                &[entity_id.into()],
            )
            .or_raise();
        for r in history {
            let obs = Observation {
                id: r.required::<i64>(1),
                value: r.value::<JsonB>(3).map(|j| j.0).unwrap_or(Value::Null),
                source: r.value::<String>(4),
            };
            reduce::apply(&def, &mut cells, &r.required::<String>(2), &obs);
            last = obs.id;
        }
        let mut states = BTreeMap::new();
        states.insert(
            entity_id,
            EntityState {
                entity_type: t,
                user_id: u,
                cells,
                schema_hash: hash,
                last_computed: last,
                created: false,
            },
        );
        let mut defs = HashMap::new();
        defs.insert(entity_id, (def, hash));
        write_snapshots(client, &states, &defs);
        JsonB(reduce::snapshot_values(&states[&entity_id].cells))
    })
}
