//! Re-embedding by the background worker: end to end, crash recovery, poison entities,
//! priorities. Each test runs its own preloaded cluster.

use std::time::{Duration, Instant};

use postgres::Client;

use crate::common::Cluster;

const SCHEMA: &str = r#"{"entity_type": "earthquake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"},
                 "time": {"type": "integer"}, "felt": {"type": "integer"}}}"#;

/// Loads the USGS feed shipped in data/ (1,707 earthquakes) through the inbox.
fn load_usgs(c: &mut Client) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/usgs-earthquakes-week.geojson"
    ))
    .expect("the USGS feed is in data/");
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    c.execute(
        "INSERT INTO evolve.inbox (entity_type, payload, entity_key, source) \
         SELECT 'earthquake', f->'properties', f->>'id', f->'properties'->>'net' \
         FROM jsonb_array_elements($1::text::jsonb->'features') AS f",
        &[&text],
    )
    .unwrap();
}

fn worker_cluster(name: &str, extra: &[&str]) -> (Cluster, String) {
    let mut conf = vec![
        "evolve.worker_database = 'worker_db'",
        "evolve.worker_naptime = 100ms",
    ];
    conf.extend_from_slice(extra);
    let cluster = Cluster::start(name, &conf);
    let db = cluster.fresh_db("worker_db");
    (cluster, db)
}

fn wait_for(c: &mut Client, sql: &str, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(row) = c.query_one(sql, &[]) {
            if row.get::<_, bool>(0) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many of 5 nearest earthquakes to "Alaska" semantic_search returns.
fn alaska_hits(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM evolve.semantic_search('earthquake', 'Alaska', 5)",
        &[],
    )
    .unwrap()
    .get(0)
}

/// apply_change on the USGS data; the worker drains the queue; every affected entity's
/// embedding carries the new version; progress reaches 100 %.
#[test]
fn worker_reembeds_usgs_after_a_change() {
    let (cluster, db) = worker_cluster("worker-e2e", &[]);
    let mut c = cluster.connect_to(&db);
    load_usgs(&mut c);
    let job: i64 = c
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake",
                                            "description": "A seismic event reported by the USGS"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    wait_for(
        &mut c,
        &format!("SELECT status = 'completed' FROM evolve.schema_migration_jobs WHERE id = {job}"),
        "the job to complete",
        Duration::from_secs(120),
    );
    let row = c
        .query_one(
            &format!(
                "SELECT p.percent::float8, p.processed_entities, p.total_entities, \
                        (SELECT count(*) FROM evolve.entity_embeddings x WHERE x.schema_version = j.schema_version), \
                        (SELECT count(*) FROM evolve.embedding_queue) \
                 FROM evolve.migration_progress p JOIN evolve.schema_migration_jobs j ON j.id = p.job_id WHERE p.job_id = {job}"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 100.0);
    assert_eq!(row.get::<_, i64>(1), 1707);
    assert_eq!(row.get::<_, i64>(2), 1707);
    assert_eq!(
        row.get::<_, i64>(3),
        1707,
        "every embedding at the new version"
    );
    assert_eq!(row.get::<_, i64>(4), 0);
    let hits = alaska_hits(&mut c);
    assert_eq!(hits, 5);
}

/// Immediate shutdowns and a kill -9 of the worker in the middle of a job that builds a
/// generation: after restarts the job completes, each entity embedded exactly once at the latest
/// version into the generation that became current, nothing lost, the others dropped.
#[test]
fn worker_survives_crashes_mid_job() {
    // A slow embedder, so the job is still running when we crash it.
    let (cluster, db) = worker_cluster(
        "worker-crash",
        &[
            "evolve.embed_batch_size = 20",
            "evolve.embedding_function = 'public.slow_embed'",
        ],
    );
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        "CREATE FUNCTION public.slow_embed(t text) RETURNS vector LANGUAGE sql AS \
         $$ SELECT evolve.embed(t) FROM (SELECT pg_sleep(0.002)) s $$;",
    )
    .unwrap();
    load_usgs(&mut c);
    let mut job = 0i64;
    for round in 0..3 {
        let mut c = cluster.connect_to(&db);
        job = c
            .query_one(
                &format!(
                    r#"SELECT evolve.apply_change('{{"kind": "entity_type_description_changed", "entity_type": "earthquake",
                                                     "description": "round {round}"}}')"#
                ),
                &[],
            )
            .unwrap()
            .get(0);
        wait_for(
            &mut c,
            &format!("SELECT processed_entities > 100 FROM evolve.schema_migration_jobs WHERE id = {job}"),
            "some progress",
            Duration::from_secs(60),
        );
        if round == 1 {
            // kill -9 of the worker: the postmaster restarts every backend (crash recovery).
            let pid: i32 = c
                .query_one(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_evolve re-embedding worker'",
                    &[],
                )
                .unwrap()
                .get(0);
            drop(c);
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(3));
        } else {
            drop(c);
            cluster.pg_ctl_stop("immediate");
            cluster.pg_ctl_start();
        }
    }
    let mut c = cluster.connect_to(&db);
    wait_for(
        &mut c,
        "SELECT bool_and(status = 'completed') FROM evolve.schema_migration_jobs WHERE total_entities > 0 OR status <> 'completed'",
        "every job to complete",
        Duration::from_secs(180),
    );
    let row = c
        .query_one(
            &format!(
                "SELECT j.processed_entities, j.total_entities, \
                        (SELECT count(*) FROM evolve.entity_embeddings x WHERE x.schema_version = j.schema_version AND x.job_id = j.id), \
                        (SELECT count(*) FROM evolve.embedding_queue) \
                 FROM evolve.schema_migration_jobs j WHERE j.id = {job}"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        row.get::<_, i64>(1),
        "processed == total"
    );
    assert_eq!(
        row.get::<_, i64>(2),
        1707,
        "every entity at the latest version, by the latest job"
    );
    assert_eq!(row.get::<_, i64>(3), 0, "queue drained");
    // One generation left, current, indexed; the replaced ones dropped (by the batch after
    // the last one, which finds the queue empty).
    wait_for(
        &mut c,
        "SELECT count(*) = 1 AND bool_and(state = 'current') FROM evolve.embedding_generations",
        "the replaced generations to be dropped",
        Duration::from_secs(60),
    );
    let row = c
        .query_one(
            "SELECT g.job_id, (SELECT count(*) FROM evolve.entity_embeddings x WHERE x.generation = g.generation), \
                    (SELECT count(*) FROM evolve.entity_embeddings), \
                    (SELECT count(*) FROM pg_indexes WHERE schemaname = 'evolve' \
                       AND tablename = 'entity_embeddings_g' || g.generation AND indexdef LIKE '%USING hnsw%') \
             FROM evolve.embedding_generations g",
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, Option<i64>>(0),
        Some(job),
        "built by the latest job"
    );
    assert_eq!(row.get::<_, i64>(1), 1707);
    assert_eq!(
        row.get::<_, i64>(2),
        1707,
        "nothing left in other generations"
    );
    assert_eq!(row.get::<_, i64>(3), 1, "its vector index built");
    assert_eq!(alaska_hits(&mut c), 5);
}

/// An embedding function that fails for some entities: they are retried, then parked; the rest
/// of the job finishes.
#[test]
fn poison_entities_are_parked() {
    let (cluster, db) = worker_cluster(
        "worker-poison",
        &[
            "evolve.embedding_function = 'public.picky'",
            "evolve.max_embed_attempts = 2",
            "evolve.embed_retry_backoff = 50ms",
        ],
    );
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        "CREATE FUNCTION public.picky(t text) RETURNS vector LANGUAGE plpgsql AS $$ \
         BEGIN IF t LIKE '%Alaska%' THEN RAISE EXCEPTION 'cannot embed Alaska'; END IF; \
         RETURN evolve.embed(t); END $$;",
    )
    .unwrap();
    load_usgs(&mut c);
    let poison: i64 = c
        .query_one(
            "SELECT count(*) FROM evolve.entities WHERE snapshot->>'place' LIKE '%Alaska%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(poison > 0);
    let job: i64 = c
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "attribute_description_changed", "entity_type": "earthquake",
                                            "attribute": "mag", "description": "Richter magnitude"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    wait_for(
        &mut c,
        &format!("SELECT status = 'failed' FROM evolve.schema_migration_jobs WHERE id = {job}"),
        "the job to end with parked entities",
        Duration::from_secs(120),
    );
    let row = c
        .query_one(
            &format!(
                "SELECT processed_entities, total_entities, error_count, \
                        (SELECT count(*) FROM evolve.failed_embeddings WHERE job_id = {job}) \
                 FROM evolve.schema_migration_jobs WHERE id = {job}"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(3),
        poison,
        "the poison entities are parked"
    );
    assert_eq!(
        row.get::<_, i64>(0),
        row.get::<_, i64>(1) - poison,
        "the rest finished"
    );
    assert_eq!(row.get::<_, i64>(2), 2 * poison, "two attempts each");
    let parked: i64 = c
        .query_one(
            &format!("SELECT parked FROM evolve.migration_progress WHERE job_id = {job}"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        parked, poison,
        "the progress view counts the parked entities"
    );
    // Fixed embedder: the retried entities complete the job.
    c.batch_execute(
        "CREATE OR REPLACE FUNCTION public.picky(t text) RETURNS vector LANGUAGE sql AS $$ SELECT evolve.embed(t) $$",
    )
    .unwrap();
    let requeued: i64 = c
        .query_one(&format!("SELECT evolve.retry_failed({job})"), &[])
        .unwrap()
        .get(0);
    assert_eq!(requeued, poison);
    wait_for(
        &mut c,
        &format!("SELECT status = 'completed' FROM evolve.schema_migration_jobs WHERE id = {job}"),
        "the retried entities to complete the job",
        Duration::from_secs(120),
    );
    let row = c
        .query_one(
            &format!(
                "SELECT processed_entities = total_entities, parked_entities \
                 FROM evolve.schema_migration_jobs WHERE id = {job}"
            ),
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0), "every entity processed");
    assert_eq!(row.get::<_, i64>(1), 0, "nothing parked any more");
}

/// Entities deleted while queued (their queue rows go with them) do not leave a job running
/// forever: when the queue has nothing to hand out, the job completes without them.
#[test]
fn deleted_queued_entities_do_not_strand_a_job() {
    let cluster = Cluster::start("worker-deleted", &[]);
    let db = cluster.fresh_db("deleted");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           INSERT INTO evolve.inbox (entity_type, payload, entity_key)
           SELECT 'quake', jsonb_build_object('mag', i), 'q' || i FROM generate_series(1, 30) i;"#,
    )
    .unwrap();
    let job: i64 = c
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "x"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    c.batch_execute("DELETE FROM evolve.entities WHERE entity_key IN ('q1', 'q2', 'q3')")
        .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let row = c
        .query_one(
            &format!(
                "SELECT status, processed_entities, total_entities FROM evolve.schema_migration_jobs WHERE id = {job}"
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, i64>(1), 27);
    assert_eq!(
        row.get::<_, i64>(2),
        27,
        "the deleted entities left the job"
    );
}

/// A high-priority job enqueued after a low one is served first.
#[test]
fn high_priority_is_served_first() {
    let cluster = Cluster::start("worker-priority", &[]);
    let db = cluster.fresh_db("priority");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "station", "attributes": {"name": {"type": "string"}},
                                           "relationships": {"near": {"target": "place"}}}');
           SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           INSERT INTO evolve.inbox (entity_type, payload, entity_key)
           SELECT 'station', jsonb_build_object('name', 's' || i, 'near', 'p' || i), 's' || i FROM generate_series(1, 50) i;
           INSERT INTO evolve.inbox (entity_type, payload, entity_key)
           SELECT 'quake', jsonb_build_object('mag', i), 'q' || i FROM generate_series(1, 50) i;"#,
    )
    .unwrap();
    // The new data first (it ranks above every job).
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let low: i64 = c
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "relationship_deleted", "entity_type": "station", "relationship": "near"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    let high: i64 = c
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "x"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    c.batch_execute("SET evolve.embed_batch_size = 30").unwrap();
    let taken: i32 = c
        .query_one("SELECT evolve._reembed_batch()", &[])
        .unwrap()
        .get(0);
    assert_eq!(taken, 30);
    let rows = c
        .query(
            &format!("SELECT id, priority, processed_entities FROM evolve.schema_migration_jobs WHERE id IN ({low}, {high}) ORDER BY id"),
            &[],
        )
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(1), "low");
    assert_eq!(rows[0].get::<_, i64>(2), 0, "the low job waits");
    assert_eq!(rows[1].get::<_, String>(1), "high");
    assert_eq!(rows[1].get::<_, i64>(2), 30, "the high job is served first");
    // Without the worker, CALL run_reembedding() does the rest.
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let left: i64 = c
        .query_one("SELECT count(*) FROM evolve.embedding_queue", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// A job that re-embeds a whole type fills a generation of its own while searches answer from
/// the current one (k results, its generation); the new one becomes current when complete,
/// with the vector index of the shared generation's definition (parameters kept); the
/// replaced one is dropped once no search holds the table.
#[test]
fn whole_type_jobs_build_a_generation() {
    let cluster = Cluster::start("worker-generation", &[]);
    let db = cluster.fresh_db("generation_db");
    let mut c = cluster.connect_to(&db);
    load_usgs(&mut c);
    // A customised index: the generation's index must keep its parameters.
    c.batch_execute(
        "DROP INDEX evolve.entity_embeddings_hnsw; \
         CREATE INDEX entity_embeddings_hnsw ON evolve.entity_embeddings_shared \
             USING hnsw ((embedding::vector(256)) vector_cosine_ops) WITH (m = 8, ef_construction = 32);",
    )
    .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let search = |c: &mut Client| -> Vec<i64> {
        c.query(
            "SELECT generation FROM evolve.semantic_search('earthquake', 'Alaska', 5)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
    };
    assert_eq!(
        search(&mut c),
        vec![0; 5],
        "fresh data embedded into generation 0"
    );
    let change = |c: &mut Client, d: &str| {
        c.query_one(
            &format!(
                r#"SELECT evolve.apply_change('{{"kind": "entity_type_description_changed",
                                                  "entity_type": "earthquake", "description": "{d}"}}')"#
            ),
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
    };
    let building = |c: &mut Client| -> Option<i64> {
        c.query_one(
            "SELECT building_generation FROM evolve.embedding_status WHERE entity_type = 'earthquake'",
            &[],
        )
        .unwrap()
        .get(0)
    };

    change(&mut c, "first");
    let first = building(&mut c).expect("a generation is being built");
    c.batch_execute("CALL evolve.run_reembedding(3)").unwrap();
    // Half-built: search answers from generation 0, whole, without a warning.
    assert_eq!(search(&mut c), vec![0; 5]);
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(search(&mut c), vec![first; 5]);
    let definition: String = c
        .query_one(
            &format!(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'evolve' \
                 AND tablename = 'entity_embeddings_g{first}' AND indexdef LIKE '%hnsw%'"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        definition.contains("m='8'") && definition.contains("ef_construction='32'"),
        "{definition}"
    );
    assert_eq!(
        crate::common::count(
            &mut c,
            "SELECT count(*) FROM evolve.entity_embeddings WHERE generation = 0"
        ),
        0,
        "the type's rows left generation 0"
    );
    // The planner reads the generation's index for a search of its partition.
    let plan: String = c
        .query(
            &format!(
                "EXPLAIN SELECT entity_id FROM evolve.entity_embeddings WHERE generation = {first} \
                 ORDER BY embedding::vector(256) <=> evolve.embed('Alaska') LIMIT 5"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        plan.contains(&format!("entity_embeddings_g{first}_embedding_idx")),
        "{plan}"
    );

    // A search in progress in another session: the switch does not wait for it, the drop
    // of the replaced generation does (it happens in a later batch).
    let mut reader = cluster.connect_to(&db);
    reader
        .batch_execute(
            "BEGIN; SELECT count(*) FROM evolve.semantic_search('earthquake', 'Alaska', 5);",
        )
        .unwrap();
    change(&mut c, "second");
    let second = building(&mut c).expect("a second generation");
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let states = |c: &mut Client| {
        crate::common::text(
            c,
            "SELECT string_agg(generation || ':' || state, ',' ORDER BY generation) FROM evolve.embedding_generations",
        )
        .unwrap_or_default()
    };
    assert_eq!(states(&mut c), format!("{first}:retired,{second}:current"));
    reader.batch_execute("COMMIT").unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(states(&mut c), format!("{second}:current"));
    assert_eq!(
        crate::common::count(
            &mut c,
            &format!("SELECT count(*) FROM pg_class WHERE relname = 'entity_embeddings_g{first}'")
        ),
        0,
        "the replaced partition is dropped"
    );
    assert_eq!(search(&mut c), vec![second; 5]);
}

/// A committed apply_change wakes the sleeping worker: with a naptime of ten minutes the job
/// still completes within seconds. A rolled-back one wakes nobody and queues nothing.
#[test]
fn committed_work_wakes_the_worker() {
    let (cluster, db) = worker_cluster("worker-wake", &["evolve.worker_naptime = 600s"]);
    let mut c = cluster.connect_to(&db);
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    c.batch_execute(
        "SELECT evolve.ingest('earthquake', jsonb_build_object('mag', i / 10.0, 'place', 'p' || i), \
                              entity_key => 'k' || i) FROM generate_series(1, 50) i",
    )
    .unwrap();
    // The worker's first pass (at start) is over: it sleeps its ten minutes now.
    std::thread::sleep(Duration::from_millis(1500));
    c.batch_execute(
        r#"BEGIN;
           SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "never"}');
           ROLLBACK;"#,
    )
    .unwrap();
    let started = Instant::now();
    let job: i64 = c
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake",
                                            "description": "A seismic event, woken for"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    wait_for(
        &mut c,
        &format!("SELECT status = 'completed' FROM evolve.schema_migration_jobs WHERE id = {job}"),
        "the woken worker to complete the job",
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    eprintln!("job of 50 entities completed {took:?} after its commit (naptime 600 s)");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let embedded: i64 = c
        .query_one("SELECT count(*) FROM evolve.entity_embeddings", &[])
        .unwrap()
        .get(0);
    assert_eq!(embedded, 50);
}
