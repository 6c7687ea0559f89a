//! L2: embeddings follow the data. Every statement that writes snapshots (ingestion, the
//! inbox, promotion, migration on read, proposal approval and rollback, refresh) hands the
//! entities it wrote here, in its own transaction: those whose enriched text changed — its
//! content hash differs from their newest embedding's — are queued for embedding, set-based,
//! and the worker is woken when the transaction commits. Unchanged text is never queued.
//!
//! Fresh rows belong to no job (`job_id` NULL) and rank [`FRESH_RANK`], above every job: an
//! entity nobody can find costs more than one found through a description a little out of
//! date, and fresh work is bounded by the ingest rate while a job may hold a whole type.
//!
//! Lock order: the entities (held by the caller), then their queue rows. A queue row being
//! embedded by a batch is locked until the batch commits; the insert waits for it
//! (`ON CONFLICT … DO UPDATE … WHERE`), so the change is queued again once the batch has
//! removed the row instead of being lost with it. The batch never waits on an entity row
//! (writers take `FOR NO KEY UPDATE`, which lets its foreign-key checks through).

use std::collections::HashMap;

use evolve_core::embed;
use evolve_core::schema::Definition;
use pgrx::prelude::*;
use serde_json::{Map, Value};

use crate::plans::{evolve_relation, Row};

/// The queue rank of entities queued because their data changed (jobs rank 1 to 3).
pub const FRESH_RANK: i32 = 4;

/// An entity whose snapshot a statement wrote.
pub struct Written<'a> {
    pub entity_id: i64,
    pub entity_type: &'a str,
    pub user_id: Option<&'a str>,
    pub definition: &'a Definition,
    pub snapshot: &'a Value,
    /// Inserted by the statement writing it (no embedding or queue row can exist).
    pub created: bool,
}

/// Whether this database has freshness (0.7.0 on): a database not yet updated keeps the
/// queue for jobs only until `ALTER EXTENSION pg_evolve UPDATE`.
fn installed() -> bool {
    evolve_relation(c"embedding_policies") != pg_sys::InvalidOid
}

/// An entity's enriched text and its content hash (embedder and text): what the re-embedding
/// batch embeds and compares, and what changes of data are compared by.
pub fn text_and_hash(embedder: &str, definition: &Definition, snapshot: &Value) -> (String, i64) {
    let text = embed::enriched_text(definition, snapshot.as_object().unwrap_or(&Map::new()));
    let hash = embed::content_hash(&format!("{embedder}\n{text}"));
    (text, hash)
}

/// The definition an entity of a type without a schema is embedded with.
pub fn bare_definition(entity_type: &str) -> Definition {
    Definition::parse(&serde_json::json!({ "entity_type": entity_type }))
        .unwrap_or_else(|_| empty_definition())
}

/// A definition declaring nothing: what entities of a scope without a schema are reduced and
/// embedded with.
pub fn empty_definition() -> Definition {
    Definition::parse(&serde_json::json!({"entity_type": "_"})).expect("valid")
}

/// Queues the written entities whose enriched text changed, unless their type's policy is
/// `manual`. Returns how many were queued.
pub fn queue_changed(client: &mut pgrx::spi::SpiClient<'_>, written: &[Written<'_>]) -> usize {
    if written.is_empty() || !installed() {
        return 0;
    }
    let mut types: Vec<&str> = written.iter().map(|w| w.entity_type).collect();
    types.sort_unstable();
    types.dedup();
    // Per type: whether its policy is manual, and the profile of the generation its
    // embeddings go to (the one being built, else the current one; hashing without either).
    let per_type: HashMap<String, (bool, String)> = crate::plans::execute(
        client,
        "SELECT t, coalesce(p.mode = 'manual', false), \
                coalesce((SELECT g.profile FROM evolve.embedding_generations g \
                          WHERE g.entity_type = t AND g.state IN ('building', 'current') \
                          ORDER BY g.generation DESC LIMIT 1), 'hashing') \
         FROM unnest($1::text[]) AS t LEFT JOIN evolve.embedding_policies p ON p.entity_type = t",
        &[types.into()],
    )
    .map(|r| {
        (
            r.value::<String>(1).unwrap_or_default(),
            (
                r.value::<bool>(2).unwrap_or(false),
                r.value::<String>(3).unwrap_or_else(|| "hashing".into()),
            ),
        )
    })
    .collect();
    let mut embedders: HashMap<String, String> = HashMap::new();
    let mut hashes: HashMap<i64, (i64, &str, bool)> = HashMap::with_capacity(written.len());
    // Entities of a type without a schema are embedded with a definition naming only the type,
    // as the batch does.
    let mut bare: HashMap<&str, Definition> = HashMap::new();
    for w in written {
        let Some((false, profile)) = per_type.get(w.entity_type) else {
            continue;
        };
        let embedder = embedders
            .entry(profile.clone())
            .or_insert_with(|| crate::embedders::profile(profile).embedder_id());
        let def = if w.definition.entity_type == w.entity_type {
            w.definition
        } else {
            bare.entry(w.entity_type)
                .or_insert_with(|| bare_definition(w.entity_type))
        };
        // (An entity this statement inserted is queued whatever its text: no hash needed.)
        let hash = if w.created {
            0
        } else {
            text_and_hash(embedder, def, w.snapshot).1
        };
        hashes.insert(
            w.entity_id,
            (hash, w.user_id.unwrap_or_default(), w.created),
        );
    }
    if hashes.is_empty() {
        return 0;
    }
    // Entities this statement inserted are queued by a plain insert: no embedding or queue row
    // of theirs can exist. The others are compared with their newest embedding first.
    let (mut ids, mut tenants, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    let (mut new_ids, mut new_tenants) = (Vec::new(), Vec::new());
    for (id, (hash, tenant, created)) in hashes {
        if created {
            new_ids.push(id);
            new_tenants.push(tenant);
        } else {
            ids.push(id);
            tenants.push(tenant);
            sums.push(hash);
        }
    }
    let mut n = 0;
    if !new_ids.is_empty() {
        n += new_ids.len();
        crate::plans::execute(
            client,
            "INSERT INTO evolve.embedding_queue (entity_id, priority_rank, tenant) \
             SELECT unnest($1::bigint[]), $2, unnest($3::text[]) ORDER BY 1",
            &[
                new_ids.into(),
                FRESH_RANK.into(),
                crate::arrays::text(&new_tenants),
            ],
        );
    }
    // A parked fresh row (no job counts it) is queued again: new data may embed where the old
    // did not. A job's parked row stays parked for retry_failed, which keeps its counters.
    if !ids.is_empty() {
        if crate::shards::distributed() {
            // Citus cannot run the comparison of the single-node statement (a subquery per row
            // of an array): the newest hashes are read first, a statement per shard, and only
            // the entities whose text changed go on.
            let mut newest: HashMap<i64, i64> = HashMap::new();
            for group in crate::shards::groups_in(client, ids.clone()) {
                newest.extend(
                    crate::plans::execute(
                        client,
                        "SELECT DISTINCT ON (entity_id) entity_id, content_hash FROM evolve.entity_embeddings \
                         WHERE entity_id = ANY ($1) ORDER BY entity_id, generation DESC",
                        &[group.into()],
                    )
                    .filter_map(|r| Some((r.value::<i64>(1)?, r.value::<i64>(2)?))),
                );
            }
            let (mut changed_ids, mut changed_tenants) = (Vec::new(), Vec::new());
            for ((id, tenant), sum) in ids.iter().zip(&tenants).zip(&sums) {
                if newest.get(id) != Some(sum) {
                    changed_ids.push(*id);
                    changed_tenants.push(*tenant);
                }
            }
            // (Without RETURNING: Citus counts the rows its conflict clause skipped as processed,
            // which SPI refuses. The worker is woken for them all.)
            if !changed_ids.is_empty() {
                n += changed_ids.len();
                crate::plans::execute(
                    client,
                    "INSERT INTO evolve.embedding_queue AS q (entity_id, priority_rank, tenant) \
                     SELECT u.id, $2, u.t FROM unnest($1::bigint[], $3::text[]) AS u(id, t) ORDER BY u.id \
                     ON CONFLICT (entity_id) DO UPDATE SET state = 'queued', attempts = 0, \
                         next_attempt_at = EXCLUDED.next_attempt_at, last_error = NULL, \
                         enqueued_at = EXCLUDED.enqueued_at \
                     WHERE q.state = 'failed' AND q.job_id IS NULL",
                    &[changed_ids.into(), FRESH_RANK.into(), changed_tenants.into()],
                );
            }
        } else {
            n += crate::plans::execute(
                client,
                "INSERT INTO evolve.embedding_queue AS q (entity_id, priority_rank, tenant) \
                 SELECT u.id, $3, u.t FROM unnest($1::bigint[], $2::bigint[], $4::text[]) AS u(id, h, t) \
                 WHERE (SELECT x.content_hash FROM evolve.entity_embeddings x WHERE x.entity_id = u.id \
                        ORDER BY x.generation DESC LIMIT 1) IS DISTINCT FROM u.h \
                 ORDER BY u.id \
                 ON CONFLICT (entity_id) DO UPDATE SET state = 'queued', attempts = 0, next_attempt_at = EXCLUDED.next_attempt_at, \
                     last_error = NULL, enqueued_at = EXCLUDED.enqueued_at \
                 WHERE q.state = 'failed' AND q.job_id IS NULL \
                 RETURNING 1",
                &[ids.into(), sums.into(), FRESH_RANK.into(), tenants.into()],
            )
            .len();
        }
    }
    if n > 0 {
        crate::wakeup::wake_at_commit();
    }
    n
}
