//! Impact analysis of schema changes and re-embedding of the affected entities into pgvector.

use std::collections::HashMap;

use evolve_core::embed::{self, DEFAULT_DIM};
use evolve_core::impact::{self, Affected, Change, Priority};
use evolve_core::schema::Definition;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::error::{in_subtransaction, raise, OrRaise};
use crate::gucs::{self, SearchDuringReembed};
use crate::registry::{effective_definition, read_head, write_version};

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

/// `WHERE` condition (on `evolve.entities e`, `$1` = entity type, `$2` = name) selecting the
/// entities a change affects.
fn affected_predicate(affected: &Affected) -> Option<&'static str> {
    match affected {
        Affected::AllOfType => Some("e.entity_type = $1 AND $2::text IS NULL"),
        Affected::NonNullAttribute(_) | Affected::HasRelationship(_) => {
            Some("e.entity_type = $1 AND jsonb_typeof(e.snapshot -> $2) NOT IN ('null')")
        }
        Affected::None => None,
    }
}

fn affected_name(affected: &Affected) -> Option<String> {
    match affected {
        Affected::NonNullAttribute(n) | Affected::HasRelationship(n) => Some(n.clone()),
        _ => None,
    }
}

/// The measured re-embedding rate (entities per second over completed jobs), if any.
fn measured_rate() -> Option<f64> {
    Spi::get_one::<f64>(
        "SELECT sum(processed_entities)::float8 / nullif(sum(extract(epoch FROM completed_at - started_at)), 0)::float8 \
         FROM evolve.schema_migration_jobs WHERE status = 'completed' AND processed_entities > 0 \
           AND completed_at > started_at",
    )
    .ok()
    .flatten()
    .filter(|r| r.is_finite() && *r > 0.0)
}

/// Dry run of a change: per entity type, how many entities it affects, at what priority, how
/// long re-embedding them should take (at the measured rate of completed jobs, or 200/s before
/// any job completed), and up to 5 of them.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn analyze_impact(
    change: JsonB,
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
    let c = parse_change(&change.0);
    let (affected, priority) = impact::impact(&c);
    let rate = measured_rate().unwrap_or(DEFAULT_RATE);
    let rows: Vec<_> = c
        .entity_types()
        .into_iter()
        .map(|t| {
            let (count, sample) = match affected_predicate(&affected) {
                None => (0, Vec::new()),
                Some(pred) => Spi::connect(|client| {
                    let args = [t.as_str().into(), affected_name(&affected).into()];
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
                        .map(|r| r.get::<i64>(1).or_raise().unwrap_or(0))
                        .collect();
                    (count, sample)
                }),
            };
            (
                c.kind_str().to_string(),
                t,
                count,
                priority.map(|p| p.as_str().to_string()),
                count as f64 / rate,
                sample,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Applies a change: a new registry version where the definition changes, a
/// `schema_migration_jobs` row, and the affected entities enqueued (each entity once, for the
/// latest job), all in the caller's transaction. Returns the job id.
#[pg_extern(volatile, parallel_unsafe)]
fn apply_change(change: JsonB) -> i64 {
    let c = parse_change(&change.0);
    let (affected, priority) = impact::impact(&c);
    let types = c.entity_types();
    crate::registry::writable_transaction();
    // Who is affected is decided before the change (a deleted relationship is still in the
    // snapshots then).
    let mut targets: Vec<i64> = Vec::new();
    if let Some(pred) = affected_predicate(&affected) {
        for t in &types {
            let ids: Vec<i64> = Spi::connect(|client| {
                client
                    .select(
                        &format!("SELECT e.entity_id FROM evolve.entities e WHERE {pred} ORDER BY e.entity_id"),
                        None,
                        &[t.as_str().into(), affected_name(&affected).into()],
                    )
                    .or_raise()
                    .map(|r| r.get::<i64>(1).or_raise().unwrap_or(0))
                    .collect()
            });
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
    let priority = priority.unwrap_or(Priority::Low);
    let status = if targets.is_empty() {
        "completed"
    } else {
        "queued"
    };
    let job_id = Spi::get_one_with_args::<i64>(
        "INSERT INTO evolve.schema_migration_jobs \
             (status, kind, entity_types, change, priority, priority_rank, schema_version, completed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $1 = 'completed' THEN now() END) RETURNING id",
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
    job_id
}

/// Enqueues entities for a job. An entity already queued by another job moves to this one (it is
/// embedded once, at the latest version); the other job's total shrinks accordingly.
///
/// Lock order, here and in a batch: queue rows (by entity), then job rows (by id).
fn enqueue(job_id: i64, rank: i32, ids: &[i64]) {
    Spi::connect_mut(|client| {
        let previous: Vec<i64> = client
            .update(
                "SELECT job_id FROM evolve.embedding_queue WHERE entity_id = ANY($1) ORDER BY entity_id FOR UPDATE",
                None,
                &[ids.to_vec().into()],
            )
            .or_raise()
            .map(|r| r.get::<i64>(1).or_raise().unwrap_or(0))
            .collect();
        let n = client
            .update(
                "INSERT INTO evolve.embedding_queue (entity_id, job_id, priority_rank) \
                 SELECT id, $2, $3 FROM unnest($1::bigint[]) AS id ORDER BY id \
                 ON CONFLICT (entity_id) DO UPDATE SET job_id = EXCLUDED.job_id, \
                     priority_rank = greatest(evolve.embedding_queue.priority_rank, EXCLUDED.priority_rank), \
                     state = 'queued', attempts = 0, next_attempt_at = now(), last_error = NULL, enqueued_at = now()",
                None,
                &[ids.to_vec().into(), job_id.into(), rank.into()],
            )
            .or_raise()
            .len() as i64;
        let mut jobs: Vec<i64> = previous.iter().copied().filter(|j| *j != job_id).collect();
        jobs.push(job_id);
        jobs.sort_unstable();
        jobs.dedup();
        lock_jobs(client, &jobs);
        client
            .update(
                "UPDATE evolve.schema_migration_jobs j SET total_entities = j.total_entities - m.n, updated_at = now() \
                 FROM (SELECT job, count(*) AS n FROM unnest($1::bigint[]) AS job WHERE job <> $2 GROUP BY job) m \
                 WHERE j.id = m.job",
                None,
                &[previous.into(), job_id.into()],
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

/// Locks job rows in id order (the one order every writer of jobs uses).
fn lock_jobs(client: &mut pgrx::spi::SpiClient<'_>, jobs: &[i64]) {
    client
        .update(
            "SELECT 1 FROM evolve.schema_migration_jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            None,
            &[jobs.to_vec().into()],
        )
        .or_raise();
}

/// Marks the given jobs with no queued entities left: completed, or failed when some are parked.
/// A job whose processed count reached its total is complete without looking at the queue.
fn finish_jobs(client: &mut pgrx::spi::SpiClient<'_>, jobs: &[i64]) {
    client
        .update(
            "UPDATE evolve.schema_migration_jobs j SET \
                 status = CASE WHEN j.processed_entities < j.total_entities THEN 'failed' ELSE 'completed' END, \
                 completed_at = now(), updated_at = now(), started_at = coalesce(j.started_at, now()) \
             WHERE j.id = ANY($1) AND j.status IN ('queued', 'running') \
               AND (j.processed_entities >= j.total_entities \
                    OR NOT EXISTS (SELECT 1 FROM evolve.embedding_queue q WHERE q.job_id = j.id AND q.state = 'queued'))",
            None,
            &[jobs.to_vec().into()],
        )
        .or_raise();
}

/// The text an entity is embedded from (see docs: snapshot + semantic descriptions).
#[pg_extern(stable, parallel_safe)]
fn enriched_text(entity_id: i64) -> Option<String> {
    let row = Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT entity_type, user_id, snapshot FROM evolve.entities WHERE entity_id = $1",
                Some(1),
                &[entity_id.into()],
            )
            .or_raise();
        if rows.is_empty() {
            return None;
        }
        let r = rows.first();
        Some((
            r.get::<String>(1).or_raise().unwrap_or_default(),
            r.get::<String>(2).or_raise(),
            r.get::<JsonB>(3)
                .or_raise()
                .map(|j| j.0)
                .unwrap_or(Value::Null),
        ))
    })?;
    let def = effective_definition(&row.0, row.1.as_deref())
        .map(|d| d.0)
        .unwrap_or_else(|| {
            Definition::parse(&serde_json::json!({"entity_type": row.0})).expect("valid")
        });
    Some(embed::enriched_text(
        &def,
        row.2.as_object().unwrap_or(&Map::new()),
    ))
}

fn vector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

/// The built-in deterministic embedder: feature hashing of words, word pairs and character
/// trigrams, L2-normalized, 256 dimensions (as text in pgvector's input format; `evolve.embed`
/// returns it as a vector).
#[pg_extern(immutable, strict, parallel_safe, name = "_embed_builtin")]
fn embed_builtin(text: &str) -> String {
    vector_literal(&embed::embed(text, DEFAULT_DIM))
}

/// Embeds one text with the configured embedder: the built-in one, or the function named by
/// `evolve.embedding_function` (its result as vector text).
fn embed_text(text: &str) -> Result<String, String> {
    match gucs::embedding_function() {
        None => Ok(vector_literal(&embed::embed(text, DEFAULT_DIM))),
        Some(f) => crate::userfn::call::<&str, String>(&f, "text", "::text", text),
    }
}

/// The identity of the embedder, part of every content hash: changing the embedder changes
/// every hash, so nothing is skipped as unchanged.
fn embedder_id() -> String {
    gucs::embedding_function().unwrap_or_else(|| format!("builtin-fh-{DEFAULT_DIM}"))
}

struct Item {
    entity_id: i64,
    job_id: i64,
    attempts: i32,
    entity_type: String,
    user_id: Option<String>,
    snapshot: Value,
    /// Content hash of the entity's current embedding, if it has one.
    stored_hash: Option<i64>,
}

/// One batch of re-embedding, in the caller's transaction: takes up to `evolve.embed_batch_size`
/// queued entities (highest priority first, `FOR UPDATE SKIP LOCKED`), embeds those whose
/// enriched text changed, writes the embeddings, removes the queue rows and advances the jobs.
/// Failed entities are retried with backoff and parked after `evolve.max_embed_attempts`.
/// Returns the number of entities taken (0: nothing to do).
#[pg_extern(volatile, parallel_unsafe, name = "_reembed_batch")]
pub fn reembed_batch() -> i32 {
    crate::registry::writable_transaction();
    let items: Vec<Item> = Spi::connect_mut(|client| {
        client
            .update(
                // Pick the queue rows alone (index order, LIMIT, SKIP LOCKED), then join: the
                // plan stays an index scan of the queue whatever the statistics say.
                "WITH picked AS ( \
                     SELECT entity_id, job_id, attempts, priority_rank FROM evolve.embedding_queue \
                     WHERE state = 'queued' AND next_attempt_at <= now() \
                     ORDER BY priority_rank DESC, job_id, entity_id \
                     LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 SELECT p.entity_id, p.job_id, p.attempts, e.entity_type, e.user_id, e.snapshot, x.content_hash \
                 FROM picked p JOIN evolve.entities e USING (entity_id) \
                 LEFT JOIN evolve.entity_embeddings x USING (entity_id) \
                 ORDER BY p.priority_rank DESC, p.job_id, p.entity_id",
                None,
                &[gucs::embed_batch_size().into()],
            )
            .or_raise()
            .map(|r| Item {
                entity_id: r.get::<i64>(1).or_raise().unwrap_or(0),
                job_id: r.get::<i64>(2).or_raise().unwrap_or(0),
                attempts: r.get::<i32>(3).or_raise().unwrap_or(0),
                entity_type: r.get::<String>(4).or_raise().unwrap_or_default(),
                user_id: r.get::<String>(5).or_raise(),
                snapshot: r
                    .get::<JsonB>(6)
                    .or_raise()
                    .map(|j| j.0)
                    .unwrap_or(Value::Null),
                stored_hash: r.get::<i64>(7).or_raise(),
            })
            .collect()
    });
    if items.is_empty() {
        return 0;
    }
    let embedder = embedder_id();
    let mut schemas: HashMap<(String, Option<String>), Option<crate::registry::Effective>> =
        HashMap::new();
    // (entity, job, vector text or None when unchanged, version, hash)
    let mut done: Vec<(i64, i64, Option<String>, i32, i64)> = Vec::new();
    let mut failed: Vec<(i64, i64, i32, String)> = Vec::new();
    let user_function = gucs::embedding_function().is_some();
    for item in &items {
        let schema = schemas
            .entry((item.entity_type.clone(), item.user_id.clone()))
            .or_insert_with(|| effective_definition(&item.entity_type, item.user_id.as_deref()));
        let (def, version) = match schema {
            Some((d, v, _)) => (d.clone(), *v),
            None => (
                Definition::parse(&serde_json::json!({"entity_type": item.entity_type}))
                    .expect("valid"),
                0,
            ),
        };
        let text = embed::enriched_text(&def, item.snapshot.as_object().unwrap_or(&Map::new()));
        let hash = embed::content_hash(&format!("{embedder}\n{text}"));
        if item.stored_hash == Some(hash) {
            done.push((item.entity_id, item.job_id, None, version, hash));
            continue;
        }
        let result = if user_function {
            // A user function may fail or have side effects: isolate each call.
            match in_subtransaction(move || embed_text(&text)) {
                Ok(r) => r,
                Err((_, message)) => Err(message),
            }
        } else {
            embed_text(&text)
        };
        match result {
            Ok(v) => done.push((item.entity_id, item.job_id, Some(v), version, hash)),
            Err(e) => failed.push((item.entity_id, item.job_id, item.attempts, e)),
        }
    }
    write_batch(&done, &failed);
    items.len() as i32
}

fn write_batch(done: &[(i64, i64, Option<String>, i32, i64)], failed: &[(i64, i64, i32, String)]) {
    let mut jobs: Vec<i64> = done
        .iter()
        .map(|d| d.1)
        .chain(failed.iter().map(|f| f.1))
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    Spi::connect_mut(|client| {
        // The batch's queue rows are locked (taken FOR UPDATE); now its jobs, in id order.
        lock_jobs(client, &jobs);
        let embedded: Vec<&(i64, i64, Option<String>, i32, i64)> =
            done.iter().filter(|d| d.2.is_some()).collect();
        if !embedded.is_empty() {
            client
                .update(
                    "INSERT INTO evolve.entity_embeddings AS x (entity_id, embedding, schema_version, content_hash, job_id) \
                     SELECT id, v::vector, ver, h, j FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[], $5::bigint[]) \
                          AS u(id, v, ver, h, j) ORDER BY id \
                     ON CONFLICT (entity_id) DO UPDATE SET embedding = EXCLUDED.embedding, \
                         schema_version = EXCLUDED.schema_version, content_hash = EXCLUDED.content_hash, \
                         job_id = EXCLUDED.job_id, embedded_at = now()",
                    None,
                    &[
                        embedded.iter().map(|d| d.0).collect::<Vec<_>>().into(),
                        embedded.iter().map(|d| d.2.clone().unwrap_or_default()).collect::<Vec<_>>().into(),
                        embedded.iter().map(|d| d.3).collect::<Vec<_>>().into(),
                        embedded.iter().map(|d| d.4).collect::<Vec<_>>().into(),
                        embedded.iter().map(|d| d.1).collect::<Vec<_>>().into(),
                    ],
                )
                .or_raise();
        }
        let unchanged: Vec<&(i64, i64, Option<String>, i32, i64)> =
            done.iter().filter(|d| d.2.is_none()).collect();
        if !unchanged.is_empty() {
            client
                .update(
                    "UPDATE evolve.entity_embeddings x SET schema_version = u.ver, job_id = u.j \
                     FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS u(id, ver, j) WHERE x.entity_id = u.id",
                    None,
                    &[
                        unchanged.iter().map(|d| d.0).collect::<Vec<_>>().into(),
                        unchanged.iter().map(|d| d.3).collect::<Vec<_>>().into(),
                        unchanged.iter().map(|d| d.1).collect::<Vec<_>>().into(),
                    ],
                )
                .or_raise();
        }
        if !done.is_empty() {
            client
                .update(
                    "WITH gone AS (DELETE FROM evolve.embedding_queue WHERE entity_id = ANY($1) RETURNING job_id), \
                     per_job AS (SELECT job_id, count(*) AS n FROM gone GROUP BY job_id) \
                     UPDATE evolve.schema_migration_jobs j SET processed_entities = j.processed_entities + p.n, \
                         status = 'running', started_at = coalesce(j.started_at, now()), updated_at = now() \
                     FROM per_job p WHERE j.id = p.job_id",
                    None,
                    &[done.iter().map(|d| d.0).collect::<Vec<_>>().into()],
                )
                .or_raise();
            client
                .update(
                    "UPDATE evolve.schema_migration_jobs j SET unchanged_entities = j.unchanged_entities + u.n \
                     FROM (SELECT job, count(*) AS n FROM unnest($1::bigint[]) AS job GROUP BY job) u WHERE j.id = u.job",
                    None,
                    &[unchanged.iter().map(|d| d.1).collect::<Vec<_>>().into()],
                )
                .or_raise();
        }
        if !failed.is_empty() {
            client
                .update(
                    "WITH f AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS f(id, err)) \
                     UPDATE evolve.embedding_queue q SET attempts = q.attempts + 1, last_error = f.err, \
                         next_attempt_at = now() + make_interval(secs => $3::float8 / 1000 * power(2, q.attempts)), \
                         state = CASE WHEN q.attempts + 1 >= $4 THEN 'failed' ELSE 'queued' END \
                     FROM f WHERE q.entity_id = f.id",
                    None,
                    &[
                        failed.iter().map(|f| f.0).collect::<Vec<_>>().into(),
                        failed.iter().map(|f| f.3.clone()).collect::<Vec<_>>().into(),
                        (gucs::embed_retry_backoff_ms() as f64).into(),
                        gucs::max_embed_attempts().into(),
                    ],
                )
                .or_raise();
            client
                .update(
                    "UPDATE evolve.schema_migration_jobs j SET error_count = j.error_count + u.n, status = 'running', \
                         started_at = coalesce(j.started_at, now()), updated_at = now() \
                     FROM (SELECT job, count(*) AS n FROM unnest($1::bigint[]) AS job GROUP BY job) u WHERE j.id = u.job",
                    None,
                    &[failed.iter().map(|f| f.1).collect::<Vec<_>>().into()],
                )
                .or_raise();
        }
        finish_jobs(client, &jobs);
    });
}

/// Queues a job's parked entities again (attempts reset). Returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn retry_failed(job_id: i64) -> i64 {
    Spi::connect_mut(|client| {
        let n = client
            .update(
                "UPDATE evolve.embedding_queue SET state = 'queued', attempts = 0, next_attempt_at = now() \
                 WHERE job_id = $1 AND state = 'failed'",
                None,
                &[job_id.into()],
            )
            .or_raise()
            .len() as i64;
        if n > 0 {
            client
                .update(
                    "UPDATE evolve.schema_migration_jobs SET status = 'running', completed_at = NULL, updated_at = now() \
                     WHERE id = $1",
                    None,
                    &[job_id.into()],
                )
                .or_raise();
        }
        n
    })
}

/// Nearest entities of a type to a query text, by cosine distance of their embeddings. While the
/// type has an active re-embedding job, `evolve.search_during_reembed` decides: allow, warn
/// (default) or block (SQLSTATE 55000).
#[pg_extern(volatile, parallel_unsafe)]
fn semantic_search(
    entity_type: &str,
    query: &str,
    k: default!(i32, 10),
) -> TableIterator<
    'static,
    (
        name!(entity_id, i64),
        name!(entity_key, String),
        name!(distance, f64),
        name!(snapshot, JsonB),
    ),
> {
    if k < 1 {
        raise(
            SqlState::InvalidParameterValue,
            "k must be positive",
            None,
            None,
        );
    }
    let active = Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM evolve.schema_migration_jobs WHERE $1 = ANY(entity_types) AND status IN ('queued', 'running')",
        &[entity_type.into()],
    )
    .or_raise()
    .unwrap_or(0);
    if active > 0 {
        match gucs::search_during_reembed() {
            SearchDuringReembed::Allow => {}
            SearchDuringReembed::Warn => pgrx::warning!(
                "\"{entity_type}\" is being re-embedded ({active} active job(s)): results may mix old and new embeddings"
            ),
            SearchDuringReembed::Block => raise(
                SqlState::ObjectNotInPrerequisiteState,
                format!("\"{entity_type}\" is being re-embedded ({active} active job(s))"),
                None,
                Some("Wait for evolve.migration_progress to reach 100 %, or SET evolve.search_during_reembed = 'warn'.".into()),
            ),
        }
    }
    let q = match embed_text(query) {
        Ok(v) => v,
        Err(e) => raise(
            SqlState::DataException,
            format!("cannot embed the query: {e}"),
            None,
            None,
        ),
    };
    let rows: Vec<(i64, String, f64, JsonB)> = Spi::connect(|client| {
        client
            .select(
                "SELECT e.entity_id, e.entity_key, (x.embedding <=> $1::vector)::float8, e.snapshot \
                 FROM evolve.entity_embeddings x JOIN evolve.entities e USING (entity_id) \
                 WHERE e.entity_type = $2 ORDER BY x.embedding <=> $1::vector LIMIT $3",
                None,
                &[q.as_str().into(), entity_type.into(), (k as i64).into()],
            )
            .or_raise()
            .map(|r| {
                (
                    r.get::<i64>(1).or_raise().unwrap_or(0),
                    r.get::<String>(2).or_raise().unwrap_or_default(),
                    r.get::<f64>(3).or_raise().unwrap_or(0.0),
                    r.get::<JsonB>(4).or_raise().unwrap_or(JsonB(Value::Null)),
                )
            })
            .collect()
    });
    TableIterator::new(rows)
}
