//! L4: re-embedding. Jobs and their queue (`evolve.schema_migration_jobs`,
//! `evolve.embedding_queue`), the batch the worker and `run_reembedding` call, the vector
//! indexes set aside during large jobs, and retries.

use std::cell::RefCell;
use std::collections::HashMap;

use evolve_core::fair;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::error::OrRaise;
use crate::gucs;
use crate::plans::Row;
use crate::store::effective_definition;
use crate::vectors::vector_array;

/// Locks job rows in id order (the one order every writer of jobs uses).
pub fn lock_jobs(client: &mut pgrx::spi::SpiClient<'_>, jobs: &[i64]) {
    crate::plans::execute(
        client,
        "SELECT 1 FROM evolve.schema_migration_jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[jobs.to_vec().into()],
    );
}

/// Marks the given jobs with no queued entities left: completed, or failed when some are parked.
/// Every entity of a job is processed, parked or still queued, so the counters tell it without
/// looking at the queue.
pub fn finish_jobs(client: &mut pgrx::spi::SpiClient<'_>, jobs: &[i64]) {
    crate::plans::execute(
        client,
        "UPDATE evolve.schema_migration_jobs j SET \
             status = CASE WHEN j.parked_entities > 0 THEN 'failed' ELSE 'completed' END, \
             completed_at = now(), updated_at = now(), started_at = least(j.started_at, now()) \
         WHERE j.id = ANY($1) AND j.status IN ('queued', 'running') \
           AND j.processed_entities + j.parked_entities >= j.total_entities",
        &[jobs.to_vec().into()],
    );
}

/// When the queue has nothing to hand out: completes the jobs whose counters cannot tell it,
/// those that lost queued entities to a delete (the queue row goes with its entity); the
/// entities gone leave the job's total.
/// On a distributed database the jobs with queued rows are read first (across shards), since
/// the jobs are a reference table that Citus does not update from a subquery over shards.
fn sweep_jobs(sharded: bool) {
    macro_rules! sweep {
        ($cond:literal) => {
            concat!(
                "UPDATE evolve.schema_migration_jobs j SET \
                     total_entities = j.processed_entities + j.parked_entities, \
                     status = CASE WHEN j.parked_entities > 0 THEN 'failed' ELSE 'completed' END, \
                     completed_at = now(), updated_at = now(), started_at = least(j.started_at, now()) \
                 WHERE j.status IN ('queued', 'running') AND ",
                $cond
            )
        };
    }
    if sharded {
        // The open jobs first: a job created after this read is not swept, though its queue
        // rows may be visible to the next (a job and its rows commit together).
        let open = crate::plans::i64_rows(
            "SELECT id FROM evolve.schema_migration_jobs WHERE status IN ('queued', 'running')",
            &[],
        );
        if open.is_empty() {
            return;
        }
        let busy = crate::plans::i64_rows(
            "SELECT DISTINCT job_id FROM evolve.embedding_queue WHERE state = 'queued' AND job_id = ANY($1)",
            &[open.clone().into()],
        );
        let idle: Vec<i64> = open.into_iter().filter(|j| !busy.contains(j)).collect();
        if !idle.is_empty() {
            Spi::connect_mut(|client| {
                crate::plans::execute(client, sweep!("j.id = ANY($1)"), &[idle.into()]);
            });
        }
    } else {
        Spi::connect_mut(|client| {
            crate::plans::execute(
                client,
                sweep!("NOT EXISTS (SELECT 1 FROM evolve.embedding_queue q WHERE q.job_id = j.id AND q.state = 'queued')"),
                &[],
            );
        });
    }
}

struct Item {
    entity_id: i64,
    /// The job that queued it; None when a change of its data did.
    job_id: Option<i64>,
    /// The generation its embedding goes to: its type's generation being built, else the
    /// current one.
    generation: i64,
    /// Its type's current generation, and the content hash of its embedding there when the
    /// target is another (a generation being built).
    current: i64,
    current_hash: Option<i64>,
    /// The profile of its target generation.
    profile: String,
    attempts: i32,
    entity_type: String,
    user_id: Option<String>,
    snapshot: Value,
    /// Content hash of the entity's current embedding, if it has one.
    stored_hash: Option<i64>,
    /// Where its queue row is (locked by the batch, so it cannot move).
    queue_tid: pg_sys::ItemPointerData,
    cursor: PickCursor,
}

/// Where the last batch of this backend stopped in the queue's order. The next batch resumes
/// there with an index range scan instead of walking again over the index entries of the rows
/// already taken (dead until vacuumed). It is only a shortcut: when the resumed scan finds
/// nothing, or a job was created since (it may rank higher), the scan starts from the top, so
/// rows left behind (retries, rows locked by another worker, a rolled-back batch) are taken then.
#[derive(Clone)]
struct PickCursor {
    rank: i32,
    tenant: String,
    job_id: Option<i64>,
    entity_id: i64,
    newest_job: i64,
}

thread_local! {
    static PICK_CURSOR: RefCell<Option<PickCursor>> = const { RefCell::new(None) };
    /// Whose turn it is among the tenants with queued work (see `evolve_core::fair`).
    static STRIDE: RefCell<fair::Stride> = RefCell::new(fair::Stride::new());
}

/// The batch query: queue rows picked alone (index order, LIMIT, SKIP LOCKED), then looked up
/// one by one (`LATERAL … OFFSET 0` keeps them per-row index probes), so the kept generic plan,
/// which cannot know the LIMIT, stays an index scan of the queue plus ~batch-size probes. Each
/// entity's target generation is its type's newest building or current one (0 without).
macro_rules! pick_sql {
    ($cond:literal) => {
        pick_sql!(fenced "OFFSET 0", $cond)
    };
    // On a distributed database, one shard's rows (ids `$2`): Citus plans the lookups into the
    // one-shard statement only as plain lateral joins, each naming the shard's ids itself.
    (sharded) => {
        pick_sql!(fenced "AND entity_id = ANY($2)", "AND entity_id = ANY($2)")
    };
    (fenced $fence:literal, $cond:literal) => {
        pick_sql!(
            $cond,
            "tenant",
            concat!(
                "CROSS JOIN LATERAL (SELECT coalesce(max(generation), 0) AS generation, \
                                            coalesce(max(generation) FILTER (WHERE state = 'current'), 0) AS current, \
                                            coalesce((array_agg(profile ORDER BY generation DESC))[1], 'hashing') AS profile \
                                     FROM evolve.embedding_generations \
                                     WHERE entity_type = e.entity_type AND state IN ('building', 'current')) g \
                 LEFT JOIN LATERAL (SELECT content_hash FROM evolve.entity_embeddings \
                                    WHERE entity_id = p.entity_id AND generation = g.generation ",
                $fence,
                ") x ON true \
                 LEFT JOIN LATERAL (SELECT content_hash FROM evolve.entity_embeddings \
                                    WHERE entity_id = p.entity_id AND generation = g.current \
                                      AND g.current <> g.generation ",
                $fence,
                ") y ON true"
            ),
            $fence
        )
    };
    // The objects of 0.6.0 and before: one embedding per entity, no generations, no tenants.
    (legacy $cond:literal) => {
        pick_sql!(
            $cond,
            "''::text AS tenant",
            "CROSS JOIN (SELECT 0::int8 AS generation, 0::int8 AS current, 'hashing'::text AS profile) g \
             LEFT JOIN LATERAL (SELECT content_hash FROM evolve.entity_embeddings \
                                WHERE entity_id = p.entity_id OFFSET 0) x ON true \
             CROSS JOIN (SELECT NULL::int8 AS content_hash) y",
            "OFFSET 0"
        )
    };
    ($cond:literal, $tenant:literal, $embeddings:expr, $fence:literal) => {
        concat!(
            "WITH picked AS ( \
                 SELECT entity_id, job_id, attempts, priority_rank, ctid, ",
            $tenant,
            " FROM evolve.embedding_queue \
                 WHERE state = 'queued' AND next_attempt_at <= now() ",
            $cond,
            " ORDER BY priority_rank DESC, tenant, job_id, entity_id \
                 LIMIT $1 FOR UPDATE SKIP LOCKED) \
             SELECT p.entity_id, p.job_id, p.attempts, e.entity_type, e.user_id, e.snapshot, x.content_hash, \
                    p.priority_rank, (SELECT max(id) FROM evolve.schema_migration_jobs), p.ctid, g.generation, \
                    g.current, y.content_hash, p.tenant, g.profile \
             FROM picked p \
             CROSS JOIN LATERAL (SELECT entity_type, user_id, snapshot FROM evolve.entities \
                                 WHERE entity_id = p.entity_id ",
            $fence,
            ") e ",
            $embeddings,
            " ORDER BY p.priority_rank DESC, p.tenant, p.job_id, p.entity_id"
        )
    };
}

fn pick(sql: &'static str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Vec<Item> {
    Spi::connect_mut(|client| {
        crate::plans::execute(client, sql, args)
            .map(|r| {
                let entity_id = r.required::<i64>(1);
                let job_id = r.value::<i64>(2);
                Item {
                    entity_id,
                    job_id,
                    attempts: r.required::<i32>(3),
                    entity_type: r.required::<String>(4),
                    user_id: r.value::<String>(5),
                    snapshot: r.value::<JsonB>(6).map(|j| j.0).unwrap_or(Value::Null),
                    stored_hash: r.value::<i64>(7),
                    queue_tid: r.value::<pg_sys::ItemPointerData>(10).unwrap_or_default(),
                    generation: r.value::<i64>(11).unwrap_or(0),
                    current: r.value::<i64>(12).unwrap_or(0),
                    current_hash: r.value::<i64>(13),
                    profile: r.value::<String>(15).unwrap_or_else(|| "hashing".into()),
                    cursor: PickCursor {
                        rank: r.required::<i32>(8),
                        tenant: r.value::<String>(14).unwrap_or_default(),
                        job_id,
                        entity_id,
                        newest_job: r.value::<i64>(9).unwrap_or(0),
                    },
                }
            })
            .collect()
    })
}

/// The batch's queue rows: the top priority's rows of the tenant whose turn it is (the only one,
/// usually: then this is the plain index-order scan it always was), resuming where the
/// tenant's last batch stopped; rows of any tenant when that tenant's are all waiting for a
/// retry.
fn take(limit: i64) -> Vec<Item> {
    // The usual case first: the tenant the last batch served is still the only one with work
    // at the top priority. Its own taken rows (index entries dead until vacuumed) lie between
    // the cursor and the other tenants' ranges, so these probes never walk over them, where a
    // scan from the top of the index would, at every batch.
    if let Some(c) = PICK_CURSOR.with(|c| c.borrow().clone()) {
        let alone = Spi::connect_mut(|client| {
            crate::plans::execute(
                client,
                "SELECT NOT EXISTS (SELECT FROM evolve.embedding_queue WHERE state = 'queued' AND priority_rank > $1) \
                    AND NOT EXISTS (SELECT FROM evolve.embedding_queue \
                                    WHERE state = 'queued' AND priority_rank = $1 AND tenant < $2) \
                    AND NOT EXISTS (SELECT FROM evolve.embedding_queue \
                                    WHERE state = 'queued' AND priority_rank = $1 AND tenant > $2)",
                &[c.rank.into(), c.tenant.as_str().into()],
            )
            .next()
            .and_then(|r| r.value::<bool>(1))
            .unwrap_or(false)
        });
        if alone {
            let items = resume(limit, &c);
            if !items.is_empty() {
                PICK_CURSOR.set(items.last().map(|i| i.cursor.clone()));
                return items;
            }
        }
    }
    let active: Vec<(i32, String)> = Spi::connect_mut(|client| {
        crate::plans::execute(
            client,
            // The tenants with queued work at the top priority, by a skip scan of the queue's
            // index (a probe per tenant, at most 1,000).
            "WITH RECURSIVE top AS ( \
                 SELECT priority_rank AS r FROM evolve.embedding_queue WHERE state = 'queued' \
                 ORDER BY priority_rank DESC LIMIT 1), \
             t(tenant, n) AS ( \
                 SELECT (SELECT q.tenant FROM evolve.embedding_queue q \
                         WHERE q.state = 'queued' AND q.priority_rank = (SELECT r FROM top) \
                         ORDER BY q.priority_rank DESC, q.tenant LIMIT 1), 1 \
                 UNION ALL \
                 SELECT (SELECT q.tenant FROM evolve.embedding_queue q \
                         WHERE q.state = 'queued' AND q.priority_rank = (SELECT r FROM top) AND q.tenant > t.tenant \
                         ORDER BY q.priority_rank DESC, q.tenant LIMIT 1), t.n + 1 \
                 FROM t WHERE t.tenant IS NOT NULL AND t.n < 1000) \
             SELECT (SELECT r FROM top), tenant FROM t WHERE tenant IS NOT NULL",
            &[],
        )
        .map(|r| (r.required::<i32>(1), r.required::<String>(2)))
        .collect()
    });
    let Some(rank) = active.first().map(|a| a.0) else {
        return Vec::new();
    };
    let shared = active.len() > 1;
    let (tenant, weight) = if !shared {
        (active[0].1.clone(), 1)
    } else {
        let tenants: Vec<String> = active.into_iter().map(|a| a.1).collect();
        let weights: HashMap<String, i32> = Spi::connect_mut(|client| {
            crate::plans::execute(
                client,
                "SELECT user_id, weight FROM evolve.tenant_weights WHERE user_id = ANY($1)",
                &[tenants.clone().into()],
            )
            .map(|r| (r.required::<String>(1), r.required::<i32>(2)))
            .collect()
        });
        let weighted: Vec<(String, u32)> = tenants
            .into_iter()
            .map(|t| {
                let w = weights.get(&t).copied().unwrap_or(1).max(1) as u32;
                (t, w)
            })
            .collect();
        let i = STRIDE
            .with(|s| s.borrow_mut().choose(&weighted))
            .unwrap_or(0);
        weighted[i].clone()
    };
    let cursor = PICK_CURSOR
        .take()
        .filter(|c| c.rank == rank && c.tenant == tenant);
    let mut items = match cursor {
        Some(c) => resume(limit, &c),
        None => Vec::new(),
    };
    if items.is_empty() {
        items = pick(
            pick_sql!("AND priority_rank = $2 AND tenant = $3"),
            &[limit.into(), rank.into(), tenant.as_str().into()],
        );
    }
    if items.is_empty() {
        items = pick(pick_sql!(""), &[limit.into()]);
    }
    if shared {
        STRIDE.with(|s| s.borrow_mut().charge(&tenant, items.len(), weight));
    }
    PICK_CURSOR.set(items.last().map(|i| i.cursor.clone()));
    items
}

/// The rows after the cursor: the same priority and tenant, from where the last batch stopped
/// (nothing when a job was created since: it may rank higher).
fn resume(limit: i64, c: &PickCursor) -> Vec<Item> {
    let (rank, tenant) = (c.rank, c.tenant.as_str());
    match c {
        PickCursor {
            job_id: Some(job),
            entity_id,
            newest_job,
            ..
        } => pick(
            pick_sql!(
                "AND priority_rank = $2 AND tenant = $3 AND (job_id, entity_id) > ($4, $5) \
                       AND $6 = (SELECT max(id) FROM evolve.schema_migration_jobs)"
            ),
            &[
                limit.into(),
                rank.into(),
                tenant.into(),
                (*job).into(),
                (*entity_id).into(),
                (*newest_job).into(),
            ],
        ),
        // Fresh rows (no job) sort after a rank's jobs.
        PickCursor {
            entity_id,
            newest_job,
            ..
        } => pick(
            pick_sql!(
                "AND priority_rank = $2 AND tenant = $3 AND job_id IS NULL AND entity_id > $4 \
                       AND $5 = (SELECT max(id) FROM evolve.schema_migration_jobs)"
            ),
            &[
                limit.into(),
                rank.into(),
                tenant.into(),
                (*entity_id).into(),
                (*newest_job).into(),
            ],
        ),
    }
}

/// The batch's queue rows in a database whose objects predate 0.7.0 (no tenants, no fresh rows).
fn take_legacy(limit: i64) -> Vec<Item> {
    let mut items = match PICK_CURSOR.take() {
        Some(PickCursor {
            rank,
            job_id: Some(job),
            entity_id,
            newest_job,
            ..
        }) => pick(
            pick_sql!(legacy
                "AND priority_rank = $2 AND (job_id, entity_id) > ($3, $4) \
                       AND $5 = (SELECT max(id) FROM evolve.schema_migration_jobs)"
            ),
            &[
                limit.into(),
                rank.into(),
                job.into(),
                entity_id.into(),
                newest_job.into(),
            ],
        ),
        _ => Vec::new(),
    };
    if items.is_empty() {
        items = pick(pick_sql!(legacy ""), &[limit.into()]);
    }
    PICK_CURSOR.set(items.last().map(|i| i.cursor.clone()));
    items
}

/// The batch's queue rows on a distributed database: the first `limit` in the queue's order,
/// read across shards without a lock (Citus merges each shard's first rows), then taken shard
/// by shard, each a one-shard statement locking its rows `FOR UPDATE SKIP LOCKED` (Citus
/// refuses to lock rows of several shards in one). A row another batch took meanwhile is
/// skipped. Tenants take no turns here (docs/scaling.md).
fn take_sharded(limit: i64) -> Vec<Item> {
    let candidates = crate::plans::i64_rows(
        "SELECT entity_id FROM evolve.embedding_queue \
         WHERE state = 'queued' AND next_attempt_at <= now() \
         ORDER BY priority_rank DESC, tenant, job_id, entity_id LIMIT $1",
        &[limit.into()],
    );
    let mut items = Vec::new();
    for group in crate::shards::groups(candidates) {
        items.extend(pick(pick_sql!(sharded), &[limit.into(), group.into()]));
    }
    items
}

/// One batch of re-embedding, in the caller's transaction: takes up to `evolve.embed_batch_size`
/// queued entities (highest priority first, `FOR UPDATE SKIP LOCKED`), embeds those whose
/// enriched text changed, writes the embeddings, removes the queue rows and advances the jobs.
/// Failed entities are retried with backoff and parked after `evolve.max_embed_attempts`.
/// Returns the number of entities taken (0: nothing to do).
#[pg_extern(volatile, parallel_unsafe, name = "_reembed_batch")]
pub fn reembed_batch() -> i32 {
    crate::access::require_admin("run re-embedding");
    crate::args::writable_transaction();
    let generations = crate::generations::installed();
    let limit = gucs::embed_batch_size();
    // The queue's lock first (what the pick takes anyway): evolve.distribute() takes it before
    // changing anything, so a batch runs wholly before a distribution or wholly after it.
    let queue = crate::plans::evolve_relation(c"embedding_queue");
    // SAFETY: a lock on an existing relation (the extension's queue), released at commit.
    unsafe { pg_sys::LockRelationOid(queue, pg_sys::RowShareLock as pg_sys::LOCKMODE) };
    let sharded = crate::shards::distributed();
    if sharded {
        // One batch at a time on a distributed database: a batch that completes a generation
        // builds and drops its partitions' shards, statements Citus runs under locks a
        // concurrent batch would be holding.
        Spi::run("SELECT pg_advisory_xact_lock(hashtext('evolve.reembed_batch'))").or_raise();
    }
    let items = if sharded {
        take_sharded(limit)
    } else if generations {
        take(limit)
    } else {
        take_legacy(limit)
    };
    if items.is_empty() {
        sweep_jobs(sharded);
        if generations {
            crate::generations::switch_completed();
            crate::generations::drop_retired();
        }
        return 0;
    }
    let mut profiles: HashMap<String, crate::embedders::Profile> = HashMap::new();
    let mut schemas: HashMap<(String, Option<String>), Option<crate::store::Effective>> =
        HashMap::new();
    let mut done: Vec<Done> = Vec::new();
    let mut failed: Vec<(i64, Option<i64>, i32, String)> = Vec::new();
    // Texts to embed, by profile: (item index, text, version, hash).
    let mut pending: HashMap<String, Vec<(usize, String, i32, i64)>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let profile = profiles
            .entry(item.profile.clone())
            .or_insert_with(|| crate::embedders::profile(&item.profile));
        let embedder = profile.embedder_id();
        let schema = schemas
            .entry((item.entity_type.clone(), item.user_id.clone()))
            .or_insert_with(|| effective_definition(&item.entity_type, item.user_id.as_deref()));
        let fallback;
        let (def, version) = match schema {
            Some(e) => (&e.definition, e.version),
            None => {
                fallback = crate::freshness::bare_definition(&item.entity_type);
                (&fallback, 0)
            }
        };
        let (text, hash) = crate::freshness::text_and_hash(&embedder, def, &item.snapshot);
        // Unchanged: kept in place, or copied from the current generation into the one being
        // built (a whole-type change that leaves this entity's text, and its embedder, as
        // they were).
        let copy_from = (item.current_hash == Some(hash)).then_some(item.current);
        if item.stored_hash == Some(hash) || copy_from.is_some() {
            done.push(Done {
                entity_id: item.entity_id,
                user_id: item.user_id.clone(),
                queue_tid: item.queue_tid,
                exists: item.stored_hash.is_some(),
                job_id: item.job_id,
                generation: item.generation,
                profile: item.profile.clone(),
                vector: None,
                copy_from: copy_from.filter(|_| item.stored_hash != Some(hash)),
                version,
                hash,
            });
            continue;
        }
        pending
            .entry(item.profile.clone())
            .or_default()
            .push((i, text, version, hash));
    }
    // Each profile's texts in batches of its own size (the model: one forward pass each).
    for (name, texts) in pending {
        let refs: Vec<&str> = texts.iter().map(|t| t.1.as_str()).collect();
        let results = crate::embedders::embed_with(&profiles[&name], &refs);
        for ((i, _, version, hash), result) in texts.into_iter().zip(results) {
            let item = &items[i];
            match result {
                Ok(v) => done.push(Done {
                    entity_id: item.entity_id,
                    user_id: item.user_id.clone(),
                    queue_tid: item.queue_tid,
                    exists: item.stored_hash.is_some(),
                    job_id: item.job_id,
                    generation: item.generation,
                    profile: item.profile.clone(),
                    vector: Some(v),
                    copy_from: None,
                    version,
                    hash,
                }),
                Err(e) => failed.push((item.entity_id, item.job_id, item.attempts, e)),
            }
        }
    }
    // Written shard by shard where entities are distributed, each statement one shard's
    // (Citus serializes a statement that changes rows of several shards with every other
    // writer of those shards); one group on a single node.
    let (mut done, mut failed) = (done, failed);
    for group in crate::shards::groups(items.iter().map(|i| i.entity_id).collect()) {
        let (d, rest): (Vec<Done>, Vec<Done>) = done
            .into_iter()
            .partition(|d| group.binary_search(&d.entity_id).is_ok());
        let (f, others): (Vec<_>, Vec<_>) = failed
            .into_iter()
            .partition(|f| group.binary_search(&f.0).is_ok());
        write_batch(&d, &f, generations);
        (done, failed) = (rest, others);
    }
    // A generation whose job this batch completed becomes current in this commit; the one it
    // replaced goes with a later batch.
    if generations && !crate::generations::switch_completed() {
        crate::generations::drop_retired();
    }
    items.len() as i32
}

/// An entity of a batch that needs no retry: embedded (`vector`) or unchanged (`None`).
struct Done {
    entity_id: i64,
    /// Its scope, carried by its embedding rows (since 0.10.0).
    user_id: Option<String>,
    queue_tid: pg_sys::ItemPointerData,
    /// Whether the entity has an embedding row already.
    exists: bool,
    job_id: Option<i64>,
    generation: i64,
    profile: String,
    vector: Option<Vec<f32>>,
    /// Unchanged, with its embedding in this generation to copy (None: in place).
    copy_from: Option<i64>,
    version: i32,
    hash: i64,
}

fn write_batch(done: &[Done], failed: &[(i64, Option<i64>, i32, String)], generations: bool) {
    let scoped = generations && crate::plans::rows_carry_scope();
    use crate::metrics::{add_at_commit, Counter};
    add_at_commit(
        Counter::EmbeddingsWritten,
        done.iter().filter(|d| d.vector.is_some()).count() as u64,
    );
    add_at_commit(Counter::EmbeddingFailures, failed.len() as u64);
    let mut jobs: Vec<i64> = done
        .iter()
        .map(|d| d.job_id)
        .chain(failed.iter().map(|f| f.1))
        .flatten()
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    let (embedded, unchanged): (Vec<&Done>, Vec<&Done>) =
        done.iter().partition(|d| d.vector.is_some());
    Spi::connect_mut(|client| {
        // The batch's queue rows are locked (taken FOR UPDATE); now its jobs, in id order, and
        // before any embedding is written: the batch that completes a job builds the indexes of
        // its generation, which waits for every writer of that generation's partition, so none
        // may be waiting for that job's row then.
        if !jobs.is_empty() {
            lock_jobs(client, &jobs);
        }
        // Entities with an embedding get it updated in place; the others get one inserted (an
        // upsert would probe for the conflict and lock the row before updating it).
        let (replaced, added): (Vec<&Done>, Vec<&Done>) = embedded.iter().partition(|d| d.exists);
        // (The objects of 0.6.0 and before have one embedding per entity: no generation.)
        // (rows, statement, whether it takes their scopes as $8)
        for (rows, sql, with_scope) in [
            (
                replaced,
                if generations {
                    "UPDATE evolve.entity_embeddings x SET embedding = u.v, schema_version = u.ver, \
                         content_hash = u.h, job_id = u.j, embedded_at = now(), profile = u.p \
                     FROM unnest($1, $2, $3, $4, $5, $6, $7) AS u(id, v, ver, h, j, g, p) \
                     WHERE x.entity_id = u.id AND x.generation = u.g AND x.entity_id = ANY($1)"
                } else {
                    "UPDATE evolve.entity_embeddings x SET embedding = u.v, schema_version = u.ver, \
                         content_hash = u.h, job_id = u.j, embedded_at = now() \
                     FROM unnest($1, $2, $3, $4, $5, $6, $7) AS u(id, v, ver, h, j, g, p) \
                     WHERE x.entity_id = u.id AND x.entity_id = ANY($1)"
                },
                false,
            ),
            (
                added,
                // The row carries its entity's scope (since 0.10.0), for row-level security.
                if scoped {
                    "INSERT INTO evolve.entity_embeddings AS x \
                         (entity_id, embedding, schema_version, content_hash, job_id, generation, profile, user_id) \
                     SELECT u.id, u.v, u.ver, u.h, u.j, u.g, u.p, u.uid \
                     FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) AS u(id, v, ver, h, j, g, p, uid) ORDER BY u.id \
                     ON CONFLICT (entity_id, generation) DO UPDATE SET embedding = EXCLUDED.embedding, \
                         schema_version = EXCLUDED.schema_version, content_hash = EXCLUDED.content_hash, \
                         job_id = EXCLUDED.job_id, embedded_at = EXCLUDED.embedded_at, profile = EXCLUDED.profile"
                } else if generations {
                    "INSERT INTO evolve.entity_embeddings AS x (entity_id, embedding, schema_version, content_hash, job_id, generation, profile) \
                     SELECT u.id, u.v, u.ver, u.h, u.j, u.g, u.p \
                     FROM unnest($1, $2, $3, $4, $5, $6, $7) AS u(id, v, ver, h, j, g, p) ORDER BY u.id \
                     ON CONFLICT (entity_id, generation) DO UPDATE SET embedding = EXCLUDED.embedding, \
                         schema_version = EXCLUDED.schema_version, content_hash = EXCLUDED.content_hash, \
                         job_id = EXCLUDED.job_id, embedded_at = EXCLUDED.embedded_at, profile = EXCLUDED.profile"
                } else {
                    "INSERT INTO evolve.entity_embeddings AS x (entity_id, embedding, schema_version, content_hash, job_id) \
                     SELECT u.id, u.v, u.ver, u.h, u.j \
                     FROM unnest($1, $2, $3, $4, $5, $6, $7) AS u(id, v, ver, h, j, g, p) ORDER BY u.id \
                     ON CONFLICT (entity_id) DO UPDATE SET embedding = EXCLUDED.embedding, \
                         schema_version = EXCLUDED.schema_version, content_hash = EXCLUDED.content_hash, \
                         job_id = EXCLUDED.job_id, embedded_at = EXCLUDED.embedded_at"
                },
                scoped,
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            let vectors: Vec<&[f32]> = rows
                .iter()
                .map(|d| d.vector.as_deref().unwrap_or_default())
                .collect();
            let mut args = vec![
                rows.iter().map(|d| d.entity_id).collect::<Vec<_>>().into(),
                vector_array(&vectors),
                rows.iter().map(|d| d.version).collect::<Vec<_>>().into(),
                rows.iter().map(|d| d.hash).collect::<Vec<_>>().into(),
                rows.iter().map(|d| d.job_id).collect::<Vec<_>>().into(),
                rows.iter().map(|d| d.generation).collect::<Vec<_>>().into(),
                rows.iter()
                    .map(|d| d.profile.as_str())
                    .collect::<Vec<_>>()
                    .into(),
            ];
            if with_scope {
                args.push(
                    rows.iter()
                        .map(|d| d.user_id.as_deref())
                        .collect::<Vec<_>>()
                        .into(),
                );
            }
            crate::plans::execute(client, sql, &args);
        }
        let (copied, unchanged): (Vec<&Done>, Vec<&Done>) =
            unchanged.iter().partition(|d| d.copy_from.is_some());
        if !copied.is_empty() {
            crate::plans::execute(
                client,
                if scoped {
                    "INSERT INTO evolve.entity_embeddings AS x \
                         (entity_id, embedding, schema_version, content_hash, job_id, generation, profile, user_id) \
                     SELECT y.entity_id, y.embedding, u.ver, y.content_hash, u.j, u.g, y.profile, y.user_id \
                     FROM unnest($1, $2, $3, $4, $5) AS u(id, ver, j, g, src) \
                     JOIN evolve.entity_embeddings y ON y.entity_id = u.id AND y.generation = u.src \
                     WHERE y.entity_id = ANY($1) ORDER BY u.id \
                     ON CONFLICT (entity_id, generation) DO UPDATE SET embedding = EXCLUDED.embedding, \
                         schema_version = EXCLUDED.schema_version, content_hash = EXCLUDED.content_hash, \
                         job_id = EXCLUDED.job_id, embedded_at = EXCLUDED.embedded_at, profile = EXCLUDED.profile"
                } else {
                    "INSERT INTO evolve.entity_embeddings AS x \
                         (entity_id, embedding, schema_version, content_hash, job_id, generation, profile) \
                     SELECT y.entity_id, y.embedding, u.ver, y.content_hash, u.j, u.g, y.profile \
                     FROM unnest($1, $2, $3, $4, $5) AS u(id, ver, j, g, src) \
                     JOIN evolve.entity_embeddings y ON y.entity_id = u.id AND y.generation = u.src \
                     WHERE y.entity_id = ANY($1) ORDER BY u.id \
                     ON CONFLICT (entity_id, generation) DO UPDATE SET embedding = EXCLUDED.embedding, \
                         schema_version = EXCLUDED.schema_version, content_hash = EXCLUDED.content_hash, \
                         job_id = EXCLUDED.job_id, embedded_at = EXCLUDED.embedded_at, profile = EXCLUDED.profile"
                },
                &[
                    copied
                        .iter()
                        .map(|d| d.entity_id)
                        .collect::<Vec<_>>()
                        .into(),
                    copied.iter().map(|d| d.version).collect::<Vec<_>>().into(),
                    copied.iter().map(|d| d.job_id).collect::<Vec<_>>().into(),
                    copied
                        .iter()
                        .map(|d| d.generation)
                        .collect::<Vec<_>>()
                        .into(),
                    copied
                        .iter()
                        .map(|d| d.copy_from.unwrap_or_default())
                        .collect::<Vec<_>>()
                        .into(),
                ],
            );
        }
        if !unchanged.is_empty() {
            crate::plans::execute(
                client,
                if generations {
                    "UPDATE evolve.entity_embeddings x SET schema_version = u.ver, job_id = u.j \
                     FROM unnest($1, $2, $3, $4) AS u(id, ver, j, g) WHERE x.entity_id = u.id AND x.generation = u.g AND x.entity_id = ANY($1)"
                } else {
                    "UPDATE evolve.entity_embeddings x SET schema_version = u.ver, job_id = u.j \
                     FROM unnest($1, $2, $3, $4) AS u(id, ver, j, g) WHERE x.entity_id = u.id AND x.entity_id = ANY($1)"
                },
                &[
                    unchanged
                        .iter()
                        .map(|d| d.entity_id)
                        .collect::<Vec<_>>()
                        .into(),
                    unchanged
                        .iter()
                        .map(|d| d.version)
                        .collect::<Vec<_>>()
                        .into(),
                    unchanged
                        .iter()
                        .map(|d| d.job_id)
                        .collect::<Vec<_>>()
                        .into(),
                    unchanged
                        .iter()
                        .map(|d| d.generation)
                        .collect::<Vec<_>>()
                        .into(),
                ],
            );
        }
        if !done.is_empty() {
            // Queue rows removed and job counters advanced in one statement.
            // (On shards a row's place is its shard's: the entity's id names the shard.)
            crate::plans::execute(
                client,
                "WITH gone AS (DELETE FROM evolve.embedding_queue \
                               WHERE ctid = ANY($1) AND entity_id = ANY($3) RETURNING job_id), \
                 per_job AS (SELECT job_id, count(*) AS n FROM gone GROUP BY job_id), \
                 same AS (SELECT job, count(*) AS n FROM unnest($2) AS job GROUP BY job) \
                 UPDATE evolve.schema_migration_jobs j SET processed_entities = j.processed_entities + p.n, \
                     unchanged_entities = j.unchanged_entities + coalesce(s.n, 0), \
                     status = CASE WHEN j.processed_entities + p.n + j.parked_entities < j.total_entities THEN 'running' \
                                   WHEN j.parked_entities > 0 THEN 'failed' ELSE 'completed' END, \
                     completed_at = CASE WHEN j.processed_entities + p.n + j.parked_entities >= j.total_entities \
                                         THEN t.now END, \
                     started_at = least(j.started_at, t.now), updated_at = t.now \
                 FROM per_job p LEFT JOIN same s ON s.job = p.job_id CROSS JOIN (SELECT now()) AS t(now) \
                 WHERE j.id = p.job_id",
                &[
                    done.iter().map(|d| d.queue_tid).collect::<Vec<_>>().into(),
                    done.iter()
                        .filter(|d| d.vector.is_none())
                        .map(|d| d.job_id)
                        .collect::<Vec<_>>()
                        .into(),
                    done.iter().map(|d| d.entity_id).collect::<Vec<_>>().into(),
                ],
            );
        }
        if !failed.is_empty() {
            crate::plans::execute(
                client,
                "WITH f AS (SELECT * FROM unnest($1, $2) AS f(id, err)), \
                 retried AS ( \
                     UPDATE evolve.embedding_queue q SET attempts = q.attempts + 1, last_error = f.err, \
                         next_attempt_at = now() + make_interval(secs => $3 / 1000 * power(2, q.attempts)), \
                         state = CASE WHEN q.attempts + 1 >= $4 THEN 'failed' ELSE 'queued' END \
                     FROM f WHERE q.entity_id = f.id AND q.entity_id = ANY($1) \
                     RETURNING q.job_id, q.state = 'failed' AS parked) \
                 UPDATE evolve.schema_migration_jobs j SET error_count = j.error_count + u.n, \
                     parked_entities = j.parked_entities + u.parked, status = 'running', \
                     started_at = least(j.started_at, now()), updated_at = now() \
                 FROM (SELECT job_id, count(*) AS n, count(*) FILTER (WHERE parked) AS parked \
                       FROM retried GROUP BY job_id) u \
                 WHERE j.id = u.job_id",
                &[
                    failed.iter().map(|f| f.0).collect::<Vec<_>>().into(),
                    failed.iter().map(|f| f.3.clone()).collect::<Vec<_>>().into(),
                    (gucs::embed_retry_backoff_ms() as f64).into(),
                    gucs::max_embed_attempts().into(),
                ],
            );
            // The jobs whose last entities were parked just now are complete too.
            finish_jobs(client, &jobs);
        }
    });
}

/// Queues a job's parked entities again (attempts reset). Returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn retry_failed(job_id: i64) -> i64 {
    crate::access::require_admin("retry failed embeddings");
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
            crate::wakeup::wake_at_commit();
            client
                .update(
                    "UPDATE evolve.schema_migration_jobs SET status = 'running', completed_at = NULL, \
                         parked_entities = parked_entities - $2, updated_at = now() \
                     WHERE id = $1",
                    None,
                    &[job_id.into(), n.into()],
                )
                .or_raise();
        }
        n
    })
}
