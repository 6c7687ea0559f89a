//! L4: impact analysis of schema changes (`analyze_impact`, the dry run) and applying them
//! (`apply_change`): the new definition goes through the registry, the affected entities into
//! a re-embedding job and the queue (`reembed`).

use evolve_core::impact::{self, Affected, Change, Priority};
use evolve_core::schema::Definition;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::error::{raise, OrRaise};
use crate::jsonb::Json;
use crate::plans::Row;
use crate::reembed::{finish_jobs, lock_jobs};
use crate::registry::write_version;
use crate::store::read_head;

/// Entities per second assumed by `analyze_impact` before any job has been measured.
const DEFAULT_RATE: f64 = 200.0;

fn parse_change(change: &Value) -> Change {
    Change::parse(change).unwrap_or_else(|e| match e {
        evolve_core::CoreError::InvalidDefinition { path, message } => raise(
            SqlState::InvalidParameterValue,
            format!("invalid change at {path}: {message}"),
            None,
            Some(format!(
                "A change is {{\"kind\": one of {}, ...}}; see docs/reference.md.",
                impact::KINDS.join(", ")
            )),
        ),
        other => crate::error::raise_core(other),
    })
}

/// `WHERE` condition (on `evolve.entities e`, `$1` = entity type, `$2` = the keys of
/// [`Affected::snapshot_keys`] as `text[]`, `NULL` for every entity) selecting the entities a
/// change affects. An attribute is a path: its value is looked up in the nested snapshot with
/// `#>` (a path into array elements counts the entities having the array), never as one
/// top-level key.
fn affected_predicate(affected: &Affected) -> Option<&'static str> {
    match affected {
        Affected::AllOfType => Some("e.entity_type = $1 AND $2::text[] IS NULL"),
        Affected::NonNullAttribute(_) | Affected::HasRelationship(_) => {
            Some("e.entity_type = $1 AND jsonb_typeof(e.snapshot #> $2::text[]) NOT IN ('null')")
        }
        Affected::None => None,
    }
}

/// The measured re-embedding rate (entities per second over completed jobs), if any. Read
/// through `evolve.migration_progress`, which counts only the entities the caller may see (the
/// jobs' own counters are not granted outside evolve_admin): a non-admin's estimate is its
/// entities over the jobs' durations.
fn measured_rate() -> Option<f64> {
    crate::plans::one::<f64>(
        "SELECT sum(processed_entities)::float8 / nullif(sum(extract(epoch FROM completed_at - started_at)), 0)::float8 \
         FROM evolve.migration_progress WHERE status = 'completed' AND processed_entities > 0 \
           AND completed_at > started_at",
        &[],
    )
    .filter(|r| r.is_finite() && *r > 0.0)
}

/// Dry run of a change: per entity type, how many entities it affects, at what priority, how
/// long re-embedding them should take (at the measured rate of completed jobs, or 200/s before
/// any job completed), and up to 5 of them.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn analyze_impact(
    change: Json,
) -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(entity_type, String),
        name!(affected_entities, i64),
        name!(priority, Option<String>),
        name!(estimated_seconds, f64),
        name!(sample_entity_ids, Vec<i64>),
    ),
> {
    let rows: Vec<_> = estimate(&parse_change(&change.0))
        .into_iter()
        .map(|e| {
            (
                e.kind.to_string(),
                e.entity_type,
                e.affected_entities,
                e.priority,
                e.estimated_seconds,
                e.sample_entity_ids,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// What a change would re-embed, per entity type (the rows of `analyze_impact`).
pub struct Estimate {
    pub kind: &'static str,
    pub entity_type: String,
    pub affected_entities: i64,
    pub priority: Option<String>,
    pub estimated_seconds: f64,
    pub sample_entity_ids: Vec<i64>,
}

/// The dry run behind `analyze_impact`, also shown with every pending proposal.
pub fn estimate(c: &Change) -> Vec<Estimate> {
    let (affected, priority) = impact::impact(c);
    // Read only when some entity is affected (an added attribute affects none).
    let mut rate = None;
    c.entity_types()
        .into_iter()
        .map(|t| {
            let (count, sample) = match affected_predicate(&affected) {
                None => (0, Vec::new()),
                Some(pred) => Spi::connect(|client| {
                    let args = [t.as_str().into(), affected.snapshot_keys().into()];
                    let count = client
                        .select(&format!("SELECT count(*) FROM evolve.entities e WHERE {pred}"), None, &args)
                        .or_raise()
                        .first()
                        .get_one::<i64>()
                        .or_raise()
                        .unwrap_or(0);
                    let sample: Vec<i64> = client
                        .select(
                            &format!("SELECT e.entity_id FROM evolve.entities e WHERE {pred} ORDER BY e.entity_id LIMIT 5"),
                            None,
                            &args,
                        )
                        .or_raise()
                        .map(|r| r.required::<i64>(1))
                        .collect();
                    (count, sample)
                }),
            };
            Estimate {
                kind: c.kind_str(),
                entity_type: t,
                affected_entities: count,
                priority: priority.map(|p| p.as_str().to_string()),
                estimated_seconds: if count == 0 {
                    0.0
                } else {
                    count as f64 / *rate.get_or_insert_with(|| measured_rate().unwrap_or(DEFAULT_RATE))
                },
                sample_entity_ids: sample,
            }
        })
        .collect()
}

/// Applies a change: a new registry version where the definition changes, a
/// `schema_migration_jobs` row, and the affected entities enqueued (each entity once, for the
/// latest job), all in the caller's transaction. Returns the job id.
#[pg_extern(volatile, parallel_unsafe)]
fn apply_change(change: Json) -> i64 {
    crate::access::require_admin("apply a schema change");
    let c = parse_change(&change.0);
    let (affected, priority) = impact::impact(&c);
    let types = c.entity_types();
    crate::args::writable_transaction();
    // Who is affected is decided before the change (a deleted relationship is still in the
    // snapshots then).
    let mut targets: Vec<i64> = Vec::new();
    // Types re-embedded whole, with entities: each gets a generation of its own.
    let mut whole: Vec<String> = Vec::new();
    if let Some(pred) = affected_predicate(&affected) {
        for t in &types {
            let ids: Vec<i64> = Spi::connect(|client| {
                client
                    .select(
                        &format!("SELECT e.entity_id FROM evolve.entities e WHERE {pred} ORDER BY e.entity_id"),
                        None,
                        &[t.as_str().into(), affected.snapshot_keys().into()],
                    )
                    .or_raise()
                    .map(|r| r.required::<i64>(1))
                    .collect()
            });
            if matches!(affected, impact::Affected::AllOfType) && !ids.is_empty() {
                whole.push(t.clone());
            }
            targets.extend(ids);
        }
    }
    let mut version = None;
    Spi::connect_mut(|client| {
        for t in &types {
            let Some(head) = read_head(client, t, None, "FOR UPDATE").filter(|h| h.version > 0)
            else {
                raise(
                    SqlState::UndefinedObject,
                    format!("global schema \"{t}\" does not exist"),
                    None,
                    None,
                );
            };
            let def = Definition::parse(&head.definition).or_raise();
            match impact::apply(&def, &c).or_raise() {
                Some(new_def) => version = Some(write_version(client, &head, &new_def, None)),
                None => version = Some(head.version),
            }
        }
    });
    // Distributed, the job row is written under a lock Citus holds on the jobs table to the
    // end of the transaction (its writes to a reference table are serialized), which a batch
    // holding queue rows takes too: the queue rows are locked first, as everywhere else.
    if !targets.is_empty() && crate::shards::distributed() {
        lock_queued(&targets);
    }
    let priority = priority.unwrap_or(Priority::Low);
    let status = if targets.is_empty() {
        "completed"
    } else {
        "queued"
    };
    // (now() outside a CASE: Citus evaluates no function inside one.)
    let job_id = Spi::get_one_with_args::<i64>(
        if targets.is_empty() {
            "INSERT INTO evolve.schema_migration_jobs \
                 (status, kind, entity_types, change, priority, priority_rank, schema_version, completed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now()) RETURNING id"
        } else {
            "INSERT INTO evolve.schema_migration_jobs \
                 (status, kind, entity_types, change, priority, priority_rank, schema_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
        },
        &[
            status.into(),
            c.kind_str().into(),
            types.clone().into(),
            JsonB(c.to_json()).into(),
            priority.as_str().into(),
            priority.rank().into(),
            version.into(),
        ],
    )
    .or_raise()
    .expect("RETURNING id");
    if !targets.is_empty() {
        enqueue(job_id, priority.rank(), &targets);
    }
    // (Before ALTER EXTENSION pg_evolve UPDATE to 0.7.0, in place, as those versions did.)
    if !whole.is_empty() && crate::generations::installed() {
        Spi::connect_mut(|client| crate::generations::start(client, job_id, &whole));
    }
    job_id
}

/// Locks the queue rows of `ids` there are, shard by shard (the queue's lock order).
fn lock_queued(ids: &[i64]) {
    Spi::connect_mut(|client| {
        for ids in crate::shards::groups_in(client, ids.to_vec()) {
            crate::plans::execute(
                client,
                "SELECT 1 FROM evolve.embedding_queue WHERE entity_id = ANY($1) ORDER BY entity_id FOR UPDATE",
                &[ids.into()],
            );
        }
    });
}

/// Enqueues entities for a job. An entity already queued by another job moves to this one (it is
/// embedded once, at the latest version); the other job's total shrinks accordingly.
///
/// Lock order, here and in a batch: queue rows (by entity), then job rows (by id).
fn enqueue(job_id: i64, rank: i32, ids: &[i64]) {
    // Shard by shard where entities are distributed (one group on a single node).
    let distributed = crate::shards::distributed();
    let groups = crate::shards::groups(ids.to_vec());
    Spi::connect_mut(|client| {
        let mut previous: Vec<(i64, bool)> = Vec::new();
        let mut n = 0;
        for ids in &groups {
            // (job, was parked) of the entities already queued by a job, which move to this one
            // (entities queued by a change of their data join it too).
            previous.extend(
                client
                    .update(
                        "SELECT job_id, state = 'failed' FROM evolve.embedding_queue \
                 WHERE entity_id = ANY($1) ORDER BY entity_id FOR UPDATE",
                        None,
                        &[ids.clone().into()],
                    )
                    .or_raise()
                    .filter_map(|r| {
                        Some((r.value::<i64>(1)?, r.value::<bool>(2).unwrap_or(false)))
                    }),
            );
            // Each row with its entity's tenant (since 0.7.0; the queue had no tenant before). The
            // entities are locked against a concurrent delete (the queue has no foreign key to
            // them since 0.9.0: a row queued for an entity deleted meanwhile would stay behind).
            // (Distributed, the queue's key to entities does it: evolve.distribute() adds one.)
            let sql = if distributed {
                "INSERT INTO evolve.embedding_queue (entity_id, job_id, priority_rank, tenant) \
             SELECT e.entity_id, $2, $3, coalesce(e.user_id, '') \
             FROM evolve.entities e WHERE e.entity_id = ANY ($1) ORDER BY e.entity_id \
             ON CONFLICT (entity_id) DO UPDATE SET job_id = EXCLUDED.job_id, \
                 priority_rank = greatest(evolve.embedding_queue.priority_rank, EXCLUDED.priority_rank), \
                 state = 'queued', attempts = 0, next_attempt_at = EXCLUDED.next_attempt_at, last_error = NULL, \
                 enqueued_at = EXCLUDED.enqueued_at"
            } else if crate::generations::installed() {
                "INSERT INTO evolve.embedding_queue (entity_id, job_id, priority_rank, tenant) \
             SELECT e.entity_id, $2, $3, coalesce(e.user_id, '') \
             FROM unnest($1::bigint[]) AS id JOIN evolve.entities e ON e.entity_id = id ORDER BY id \
             FOR KEY SHARE OF e \
             ON CONFLICT (entity_id) DO UPDATE SET job_id = EXCLUDED.job_id, \
                 priority_rank = greatest(evolve.embedding_queue.priority_rank, EXCLUDED.priority_rank), \
                 state = 'queued', attempts = 0, next_attempt_at = EXCLUDED.next_attempt_at, last_error = NULL, \
                 enqueued_at = EXCLUDED.enqueued_at"
            } else {
                "INSERT INTO evolve.embedding_queue (entity_id, job_id, priority_rank) \
             SELECT id, $2, $3 FROM unnest($1::bigint[]) AS id ORDER BY id \
             ON CONFLICT (entity_id) DO UPDATE SET job_id = EXCLUDED.job_id, \
                 priority_rank = greatest(evolve.embedding_queue.priority_rank, EXCLUDED.priority_rank), \
                 state = 'queued', attempts = 0, next_attempt_at = EXCLUDED.next_attempt_at, last_error = NULL, \
                 enqueued_at = EXCLUDED.enqueued_at"
            };
            n += client
                .update(sql, None, &[ids.clone().into(), job_id.into(), rank.into()])
                .or_raise()
                .len() as i64;
        }
        if n > 0 {
            crate::wakeup::wake_at_commit();
        }
        let mut jobs: Vec<i64> = previous
            .iter()
            .map(|p| p.0)
            .filter(|j| *j != job_id)
            .collect();
        jobs.push(job_id);
        jobs.sort_unstable();
        jobs.dedup();
        lock_jobs(client, &jobs);
        client
            .update(
                "UPDATE evolve.schema_migration_jobs j SET total_entities = j.total_entities - m.n, \
                     parked_entities = j.parked_entities - m.parked, updated_at = now() \
                 FROM (SELECT job, count(*) AS n, count(*) FILTER (WHERE parked) AS parked \
                       FROM unnest($1::bigint[], $2::bool[]) AS u(job, parked) WHERE job <> $3 GROUP BY job) m \
                 WHERE j.id = m.job",
                None,
                &[
                    previous.iter().map(|p| p.0).collect::<Vec<_>>().into(),
                    previous.iter().map(|p| p.1).collect::<Vec<_>>().into(),
                    job_id.into(),
                ],
            )
            .or_raise();
        client
            .update(
                "UPDATE evolve.schema_migration_jobs SET total_entities = total_entities + $2 WHERE id = $1",
                None,
                &[job_id.into(), n.into()],
            )
            .or_raise();
        // Jobs left with nothing to do are complete.
        finish_jobs(client, &jobs);
    });
}
