//! L4: generations of embeddings. A job that re-embeds a whole type fills a generation of its
//! own — a partition of `evolve.entity_embeddings` without a vector index — while search keeps
//! answering from the type's current generation with its index. When the job completes, the
//! batch that completed it builds the new partition's vector indexes in one pass (several
//! times faster than maintaining them row by row) and makes it current, in one commit; the
//! replaced generation is dropped as soon as no search holds the table. A crash before that
//! commit leaves the generation building and its job's queue rows in place: the next batches
//! go on from there.
//!
//! Generation 0 (`entity_embeddings_shared`) holds every type without a generation of its own;
//! when a type leaves it, its rows there are deleted afterwards, as a retired partition is
//! dropped.

use pgrx::prelude::*;

use crate::error::OrRaise;
use crate::plans::{evolve_relation, Row};

/// Whether this database has generations (0.7.0 on). Until `ALTER EXTENSION pg_evolve
/// UPDATE`, re-embedding writes the one embedding per entity of the earlier versions.
pub fn installed() -> bool {
    evolve_relation(c"embedding_generations") != pg_sys::InvalidOid
}

fn partition_name(generation: i64) -> String {
    format!("entity_embeddings_g{generation}")
}

/// Starts (or hands over to `job_id`) a building generation for each type: the job's entities
/// are then embedded into it. Called by `apply_change` for changes that re-embed whole types.
pub fn start(client: &mut pgrx::spi::SpiClient<'_>, job_id: i64, types: &[String]) {
    for t in types {
        // The type's profile (hashing unless set).
        let profile = client
            .select(
                "SELECT coalesce((SELECT profile FROM evolve.entity_type_profiles WHERE entity_type = $1), 'hashing')",
                Some(1),
                &[t.as_str().into()],
            )
            .or_raise()
            .first()
            .get::<String>(1)
            .or_raise()
            .unwrap_or_else(|| "hashing".into());
        // A generation already building for the type, of the same profile, is the new job's
        // now: its entities were queued again for the new job, and rows already written that
        // no longer match are embedded again (their content hash differs). One of another
        // profile is abandoned (retired, its partition dropped).
        // (Two statements: Citus evaluates no function inside a CASE.)
        client
            .update(
                "UPDATE evolve.embedding_generations SET state = 'retired', switched_at = now() \
                 WHERE entity_type = $1 AND state = 'building' AND profile <> $2",
                None,
                &[t.as_str().into(), profile.as_str().into()],
            )
            .or_raise();
        let handed = !client
            .update(
                "UPDATE evolve.embedding_generations SET job_id = $2 \
                 WHERE entity_type = $1 AND state = 'building' AND profile = $3 RETURNING 1",
                None,
                &[t.as_str().into(), job_id.into(), profile.as_str().into()],
            )
            .or_raise()
            .is_empty();
        if handed {
            continue;
        }
        let generation = client
            .update(
                "INSERT INTO evolve.embedding_generations (entity_type, state, job_id, profile) \
                 VALUES ($1, 'building', $2, $3) RETURNING generation",
                None,
                &[t.as_str().into(), job_id.into(), profile.as_str().into()],
            )
            .or_raise()
            .first()
            .get::<i64>(1)
            .or_raise()
            .expect("RETURNING generation");
        let name = partition_name(generation);
        // Created apart and attached (ATTACH takes SHARE UPDATE EXCLUSIVE on the table, so
        // searches and writers go on; CREATE … PARTITION OF would lock them out until commit).
        // The CHECK lets ATTACH skip scanning the (empty) table.
        for sql in [
            format!(
                "CREATE TABLE evolve.{name} (LIKE evolve.entity_embeddings INCLUDING DEFAULTS, \
                 CHECK (generation = {generation}))"
            ),
            format!(
                "ALTER TABLE evolve.entity_embeddings ATTACH PARTITION evolve.{name} \
                 FOR VALUES IN ({generation})"
            ),
        ] {
            client.update(&sql, None, &[]).or_raise();
        }
        // The type's name is data: quoted by format's %L, never spliced.
        let comment = client
            .select(
                "SELECT pg_catalog.format('COMMENT ON TABLE evolve.%I IS %L', $1, \
                     pg_catalog.format('Generation %s of the embeddings of entity type \"%s\".', $2, $3))",
                Some(1),
                &[name.as_str().into(), generation.into(), t.as_str().into()],
            )
            .or_raise()
            .first()
            .get::<String>(1)
            .or_raise()
            .unwrap_or_default();
        client.update(&comment, None, &[]).or_raise();
    }
}

/// Makes current the building generations whose job has completed (or failed with parked
/// entities, which keep no embedding in the new generation until retried), after building
/// their vector indexes; abandons those whose job is gone or cancelled. Whether any changed.
pub fn switch_completed() -> bool {
    Spi::connect_mut(|client| {
        let ready: Vec<(i64, String, bool)> = crate::plans::execute(
            client,
            "SELECT g.generation, g.entity_type, j.status IN ('completed', 'failed') \
             FROM evolve.embedding_generations g \
             LEFT JOIN evolve.schema_migration_jobs j ON j.id = g.job_id \
             WHERE g.state = 'building' AND (j.id IS NULL OR j.status NOT IN ('queued', 'running')) \
             ORDER BY g.generation FOR UPDATE OF g SKIP LOCKED",
            &[],
        )
        .map(|r| {
            (
                r.required::<i64>(1),
                r.required::<String>(2),
                r.value::<bool>(3).unwrap_or(false),
            )
        })
        .collect();
        let changed = !ready.is_empty();
        for (generation, entity_type, complete) in ready {
            if !complete {
                client
                    .update(
                        "UPDATE evolve.embedding_generations SET state = 'retired', switched_at = now() \
                         WHERE generation = $1",
                        None,
                        &[generation.into()],
                    )
                    .or_raise();
                continue;
            }
            build_indexes(client, generation);
            let previous: Option<i64> = client
                .update(
                    "UPDATE evolve.embedding_generations SET state = 'retired', switched_at = now() \
                     WHERE entity_type = $1 AND state = 'current' RETURNING generation",
                    None,
                    &[entity_type.as_str().into()],
                )
                .or_raise()
                .filter_map(|r| r.value::<i64>(1))
                .next();
            // A type leaving the shared generation leaves its rows there, deleted with the
            // retired partitions (when no search can still be reading them).
            client
                .update(
                    "UPDATE evolve.embedding_generations SET state = 'current', switched_at = now(), \
                         shared_leftover = $2 \
                     WHERE generation = $1",
                    None,
                    &[generation.into(), previous.is_none().into()],
                )
                .or_raise();
        }
        changed
    })
}

/// Builds on a generation's partition the vector indexes the shared generation has (same
/// method, operator class and options).
fn build_indexes(client: &mut pgrx::spi::SpiClient<'_>, generation: i64) {
    let name = partition_name(generation);
    // On the column cast to the generation's dimensions (generation 0's are 256).
    let dims = client
        .select(
            "SELECT p.dims FROM evolve.embedding_generations g \
             JOIN evolve.embedding_profiles p ON p.name = g.profile WHERE g.generation = $1",
            Some(1),
            &[generation.into()],
        )
        .or_raise()
        .first()
        .get::<i32>(1)
        .or_raise()
        .unwrap_or(256);
    let methods: Vec<String> = client
        .select(
            // (Printed under this function's search_path, the type is schema-qualified.)
            "SELECT regexp_replace(substr(d, strpos(d, ' USING ') + 7), 'vector\\(256\\)', 'vector(' || $1 || ')', 'g') FROM ( \
                 SELECT pg_catalog.pg_get_indexdef(c.oid) AS d FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_catalog.pg_am a ON a.oid = c.relam \
                 WHERE i.indrelid = 'evolve.entity_embeddings_shared'::pg_catalog.regclass \
                   AND a.amname IN ('hnsw', 'ivfflat') ORDER BY c.relname) s",
            None,
            &[dims.into()],
        )
        .or_raise()
        .filter_map(|r| r.value::<String>(1))
        .collect();
    for method in methods {
        // `method` is pg_get_indexdef's text after USING (of an index only the extension's
        // owner can create on its table): never text from a caller.
        client
            .update(
                &format!("CREATE INDEX ON evolve.{name} USING {method}"),
                None,
                &[],
            )
            .or_raise();
    }
    // Statistics from the start, so the planner sees the partition's size.
    client
        .update(&format!("ANALYZE evolve.{name}"), None, &[])
        .or_raise();
}

/// Drops the partitions of retired generations, and deletes the rows of generation 0 of types
/// that left it, without waiting: both need the whole table to themselves (a search locks it
/// before reading which generation is current, so none can still be reading them), and while
/// a search or a writer holds it they are left to a later batch (`evolve.health_check()`
/// reports generations waiting long).
pub fn drop_retired() {
    Spi::connect_mut(|client| {
        let retired: Vec<(i64, String, bool)> = crate::plans::execute(
            client,
            "SELECT generation, entity_type, state = 'retired' FROM evolve.embedding_generations \
             WHERE state = 'retired' OR shared_leftover \
             ORDER BY generation FOR UPDATE SKIP LOCKED",
            &[],
        )
        .map(|r| {
            (
                r.required::<i64>(1),
                r.required::<String>(2),
                r.value::<bool>(3).unwrap_or(false),
            )
        })
        .collect();
        if retired.is_empty() {
            return;
        }
        // The table's lock first, as DROP TABLE of a partition would take it. Distributed, each
        // node drops the partition's shards under its own locks, taken after this one's, and
        // Citus locks the tables colocated with it: the entities (which the shards' foreign keys
        // name), the queue and the partitions are locked here the same way, so that the drop
        // waits on no transaction that could be waiting on this batch (every other one reaches
        // the shards through these tables).
        let mut tables = vec![evolve_relation(c"entity_embeddings")];
        if crate::shards::distributed() {
            tables.push(evolve_relation(c"entities"));
            tables.push(evolve_relation(c"embedding_queue"));
            for (generation, _, retired) in &retired {
                if *retired {
                    let name =
                        std::ffi::CString::new(partition_name(*generation)).unwrap_or_default();
                    let partition = evolve_relation(&name);
                    if partition != pg_sys::InvalidOid {
                        tables.push(partition);
                    }
                }
            }
        }
        for table in tables {
            // SAFETY: tries the table's lock without waiting; held to the end of the
            // transaction.
            let locked = unsafe {
                pg_sys::ConditionalLockRelationOid(
                    table,
                    pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
                )
            };
            if !locked {
                return;
            }
        }
        for (generation, entity_type, retired) in retired {
            if !retired {
                client
                    .update(
                        "DELETE FROM evolve.entity_embeddings_shared x USING evolve.entities e \
                         WHERE e.entity_id = x.entity_id AND e.entity_type = $1",
                        None,
                        &[entity_type.as_str().into()],
                    )
                    .or_raise();
                client
                    .update(
                        "UPDATE evolve.embedding_generations SET shared_leftover = false WHERE generation = $1",
                        None,
                        &[generation.into()],
                    )
                    .or_raise();
                continue;
            }
            let name = partition_name(generation);
            client
                .update(&format!("DROP TABLE IF EXISTS evolve.{name}"), None, &[])
                .or_raise();
            client
                .update(
                    "DELETE FROM evolve.embedding_generations WHERE generation = $1",
                    None,
                    &[generation.into()],
                )
                .or_raise();
        }
    });
}
