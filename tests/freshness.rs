//! Embeddings follow the data: every snapshot change queues the entities whose enriched text
//! changed, the worker is woken on commit, searches during a whole-type job see one generation,
//! and the status view and health check tell each state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::common::{count, text, Cluster};

const SCHEMA: &str = r#"{"entity_type": "quake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"}}}"#;

fn queued(c: &mut Client) -> i64 {
    count(c, "SELECT count(*) FROM evolve.embedding_queue")
}

fn hash_of(c: &mut Client, key: &str) -> Option<i64> {
    c.query_one(
        "SELECT x.content_hash FROM evolve.entity_embeddings x JOIN evolve.entities e USING (entity_id) \
         WHERE e.entity_key = $1",
        &[&key],
    )
    .unwrap()
    .get(0)
}

/// A value a migration's cast step makes (`"1e3"` → the number 1e3) is stored as jsonb stores
/// it (1000); the content hash computed when it is ingested is the one the worker computes from
/// the stored snapshot, so the same payload again queues nothing.
#[test]
fn values_made_by_migrations_hash_as_stored() {
    let cluster = Cluster::start("fresh-cast", &[]);
    let db = cluster.fresh_db("fresh_cast");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}, "place": {"type": "string"}, "geo": {"type": "object"}}}');
           SELECT evolve.register_schema('{"entity_type": "quake", "description": "v2", "attributes": {"mag": {"type": "number"}, "place": {"type": "string"}, "geo": {"type": "object"}}}');
           SELECT evolve.register_migration('quake', 1, 2, '[{"cast": {"key": "mag", "to": "number"}}]');"#,
    )
    .unwrap();
    let ingest = |c: &mut Client| {
        c.batch_execute(
            r#"SELECT evolve.ingest('quake', '{"mag": "1.50e1", "place": "x", "geo": {"lon": 1E+2, "lat": -0}}', entity_key => 'k', schema_version => 1)"#,
        )
        .unwrap();
    };
    ingest(&mut c);
    assert_eq!(
        text(&mut c, "SELECT snapshot::text FROM evolve.entities").as_deref(),
        Some(r#"{"geo": {"lat": 0, "lon": 100}, "mag": 15.0, "place": "x"}"#)
    );
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(queued(&mut c), 0);
    ingest(&mut c);
    assert_eq!(queued(&mut c), 0, "the same values again queue nothing");
}

/// Without a worker: what is queued by each path, and what is not.
#[test]
fn changed_text_is_queued_and_unchanged_text_is_not() {
    let cluster = Cluster::start("fresh-queue", &[]);
    let db = cluster.fresh_db("fresh_queue");
    let mut c = cluster.connect_to(&db);
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    let ingest = |c: &mut Client, payload: &str| {
        c.execute(
            "SELECT evolve.ingest('quake', $1::text::jsonb, entity_key => 'k1')",
            &[&payload],
        )
        .unwrap();
    };
    ingest(
        &mut c,
        r#"{"mag": 4.5, "place": "10 km SW of Anchorage, Alaska"}"#,
    );
    assert_eq!(queued(&mut c), 1, "a new entity is queued");
    let job: Option<i64> = c
        .query_one("SELECT job_id FROM evolve.embedding_queue", &[])
        .unwrap()
        .get(0);
    assert_eq!(job, None, "by no job");
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let first = hash_of(&mut c, "k1").expect("embedded");
    assert_eq!(queued(&mut c), 0);

    // The same values again, an undeclared key (a fragment: not in the snapshot), a refresh:
    // the enriched text is the same, nothing is queued.
    ingest(
        &mut c,
        r#"{"mag": 4.5, "place": "10 km SW of Anchorage, Alaska"}"#,
    );
    ingest(&mut c, r#"{"depth_km": 12}"#);
    c.batch_execute("SELECT evolve.refresh_snapshot(entity_id) FROM evolve.entities")
        .unwrap();
    assert_eq!(queued(&mut c), 0, "unchanged text is never queued");

    // A changed value: queued, embedded again with another hash.
    ingest(&mut c, r#"{"mag": 4.7}"#);
    assert_eq!(queued(&mut c), 1);
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_ne!(hash_of(&mut c, "k1"), Some(first));

    // The inbox, set-based: 200 new entities, 200 queued; the same rows again: none.
    let inbox = "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
                 SELECT 'quake', jsonb_build_object('mag', i / 10.0, 'place', 'p' || i), 'i' || i \
                 FROM generate_series(1, 200) i";
    c.batch_execute(inbox).unwrap();
    assert_eq!(queued(&mut c), 200);
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    c.batch_execute(inbox).unwrap();
    assert_eq!(queued(&mut c), 0);

    // A type whose policy is manual: nothing queued by data; back to on_change: queued.
    assert_eq!(
        text(
            &mut c,
            "SELECT evolve.set_embedding_policy('quake', 'manual')"
        )
        .as_deref(),
        Some("manual")
    );
    ingest(&mut c, r#"{"mag": 5.0}"#);
    assert_eq!(queued(&mut c), 0, "manual: not queued");
    let policy = text(
        &mut c,
        "SELECT policy FROM evolve.embedding_status WHERE entity_type = 'quake'",
    );
    assert_eq!(policy.as_deref(), Some("manual"));
    c.batch_execute("SELECT evolve.set_embedding_policy('quake', 'on_change')")
        .unwrap();
    ingest(&mut c, r#"{"mag": 5.1}"#);
    assert_eq!(queued(&mut c), 1);

    // A fresh entity that the embedder rejects is parked, and new data queues it again.
    c.batch_execute(
        "CREATE FUNCTION public.picky(t text) RETURNS vector LANGUAGE plpgsql AS $$ \
         BEGIN IF t LIKE '%5.1%' THEN RAISE EXCEPTION 'cannot embed 5.1'; END IF; \
         RETURN evolve.embed(t); END $$; \
         SET evolve.embedding_function = 'public.picky'; SET evolve.max_embed_attempts = 1;",
    )
    .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.embedding_queue WHERE state = 'failed'"
        ),
        1
    );
    ingest(&mut c, r#"{"mag": 5.2}"#);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.embedding_queue WHERE state = 'queued'"
        ),
        1,
        "new data queues a parked fresh entity again"
    );

    // Bad policies: clear errors.
    assert_eq!(
        crate::common::state(
            &mut c,
            "SELECT evolve.set_embedding_policy('quake', 'sometimes')"
        ),
        "22023"
    );
    c.batch_execute("CREATE ROLE w LOGIN; GRANT evolve_writer TO w; SET ROLE w;")
        .unwrap();
    assert_eq!(
        crate::common::state(
            &mut c,
            "SELECT evolve.set_embedding_policy('quake', 'manual')"
        ),
        "42501"
    );
    assert_eq!(
        crate::common::state(&mut c, "SELECT * FROM evolve.health_check()"),
        "42501"
    );
}

/// With the worker sleeping ten minutes between passes: an ingested entity is searchable within
/// a bound, because its commit wakes the worker.
#[test]
fn an_ingested_entity_is_searchable_quickly() {
    let cluster = Cluster::start(
        "fresh-wake",
        &[
            "evolve.worker_database = 'fresh_wake'",
            "evolve.worker_naptime = 600s",
        ],
    );
    let db = cluster.fresh_db("fresh_wake");
    let mut c = cluster.connect_to(&db);
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut samples = Vec::new();
    for i in 0..20 {
        let place = format!("{i} km N of Nowhere-{i}");
        let id: i64 = c
            .query_one(
                "SELECT evolve.ingest('quake', jsonb_build_object('mag', 3.0, 'place', $1::text), \
                                      entity_key => $1::text)",
                &[&place],
            )
            .unwrap()
            .get(0);
        let started = Instant::now();
        loop {
            let n = count(
                &mut c,
                &format!("SELECT count(*) FROM evolve.entity_embeddings WHERE entity_id = {id}"),
            );
            if n == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "entity {id} not embedded after 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(started.elapsed());
        let top: Option<String> = c
            .query_one(
                "SELECT entity_key FROM evolve.semantic_search('quake', $1::text, 1)",
                &[&place],
            )
            .unwrap()
            .get(0);
        assert_eq!(top.as_deref(), Some(place.as_str()), "searchable at once");
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    eprintln!(
        "ingest → searchable: median {median:?}, max {:?} (naptime 600 s)",
        samples[samples.len() - 1]
    );
    assert!(median < Duration::from_secs(5), "median {median:?}");
    // Nothing is queued twice: every sample embedded once.
    assert_eq!(queued(&mut c), 0);
}

/// Searches running during a whole-type job: every result set has k rows from one generation;
/// they move from the old generation to the new one when it is complete.
#[test]
fn searches_during_a_whole_type_job_see_one_generation() {
    let cluster = Cluster::start(
        "fresh-generation",
        &[
            "evolve.worker_database = 'fresh_gen'",
            "evolve.worker_naptime = 100ms",
            "evolve.embed_batch_size = 50",
            "evolve.embedding_function = 'public.slow_embed'",
            "evolve.search_during_reembed = 'block'",
        ],
    );
    let db = cluster.fresh_db("fresh_gen");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        "CREATE FUNCTION public.slow_embed(t text) RETURNS vector LANGUAGE sql AS \
         $$ SELECT evolve.embed(t) FROM (SELECT pg_sleep(0.001)) s $$;",
    )
    .unwrap();
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    c.batch_execute(
        "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
         SELECT 'quake', jsonb_build_object('mag', (i % 70) / 10.0, 'place', 'place ' || i), 'k' || i \
         FROM generate_series(1, 1500) i",
    )
    .unwrap();
    let drained = Instant::now();
    while queued(&mut c) > 0 {
        assert!(
            drained.elapsed() < Duration::from_secs(120),
            "fresh data not embedded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let stop = stop.clone();
        let mut s = cluster.connect_to(&db);
        std::thread::spawn(move || {
            let mut seen: Vec<(usize, Vec<i64>)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let rows = s
                    .query(
                        "SELECT generation FROM evolve.semantic_search('quake', 'place 42', 10)",
                        &[],
                    )
                    .expect("a search never fails during the job (search_during_reembed = block)");
                let mut gens: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                let n = gens.len();
                gens.dedup();
                seen.push((n, gens));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let job: i64 = c
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake",
                                            "description": "An earthquake, described again"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    let started = Instant::now();
    loop {
        let current = count(
            &mut c,
            "SELECT count(*) FROM evolve.embedding_generations WHERE state = 'current'",
        );
        if current == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "job {job} never switched"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = searcher.join().unwrap();
    let new: i64 = count(
        &mut c,
        "SELECT generation FROM evolve.embedding_generations WHERE state = 'current'",
    );
    let old_sets = seen.iter().filter(|(_, g)| g == &vec![0]).count();
    let new_sets = seen.iter().filter(|(_, g)| g == &vec![new]).count();
    eprintln!(
        "{} searches during the job: {old_sets} from generation 0, {new_sets} from generation {new}",
        seen.len()
    );
    for (n, gens) in &seen {
        assert_eq!(*n, 10, "k results every time");
        assert_eq!(gens.len(), 1, "one generation per result set: {gens:?}");
    }
    assert_eq!(old_sets + new_sets, seen.len());
    assert!(
        old_sets > 0 && new_sets > 0,
        "searches before and after the switch"
    );
}

/// embedding_status and health_check, state by state.
#[test]
fn status_and_health_tell_each_state() {
    let cluster = Cluster::start("fresh-status", &[]);
    let db = cluster.fresh_db("fresh_status");
    let mut c = cluster.connect_to(&db);
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    let status = |c: &mut Client| -> (i64, i64, i64, i64, i64, i64, Option<i64>, bool) {
        let r = c
            .query_one(
                "SELECT entities, embedded, stale, queued, failed, generation, building_generation, \
                        oldest_pending IS NOT NULL \
                 FROM evolve.embedding_status WHERE entity_type = 'quake'",
                &[],
            )
            .unwrap();
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
        )
    };
    let health = |c: &mut Client, check: &str| -> String {
        text(
            c,
            &format!("SELECT severity FROM evolve.health_check() WHERE check_name = '{check}'"),
        )
        .unwrap()
    };
    c.batch_execute(
        "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
         SELECT 'quake', jsonb_build_object('mag', i, 'place', 'p' || i), 'k' || i FROM generate_series(1, 10) i",
    )
    .unwrap();
    assert_eq!(status(&mut c), (10, 0, 0, 10, 0, 0, None, true));
    assert_eq!(health(&mut c, "preload"), "ok");
    // No worker configured, work queued: a warning that says how to drain it.
    assert_eq!(health(&mut c, "worker"), "warning");
    assert_eq!(health(&mut c, "queue_age"), "ok");
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(status(&mut c), (10, 10, 0, 0, 0, 0, None, false));
    assert_eq!(health(&mut c, "worker"), "ok");

    // Changed data of embedded entities: stale until embedded again.
    c.batch_execute(
        "SELECT evolve.ingest('quake', '{\"mag\": 99}', entity_key => 'k' || i) FROM generate_series(1, 3) i",
    )
    .unwrap();
    assert_eq!(status(&mut c), (10, 10, 3, 3, 0, 0, None, true));
    // An old queue row: the queue_age check warns.
    c.batch_execute(
        "UPDATE evolve.embedding_queue SET enqueued_at = now() - interval '10 minutes'",
    )
    .unwrap();
    assert_eq!(health(&mut c, "queue_age"), "warning");
    c.batch_execute(
        "CREATE FUNCTION public.never(t text) RETURNS vector LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'no'; END $$; \
         SET evolve.embedding_function = 'public.never'; SET evolve.max_embed_attempts = 1;",
    )
    .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(status(&mut c), (10, 10, 0, 0, 3, 0, None, false));
    assert_eq!(health(&mut c, "parked"), "warning");
    c.batch_execute("RESET evolve.embedding_function; DELETE FROM evolve.embedding_queue")
        .unwrap();
    assert_eq!(health(&mut c, "parked"), "ok");

    // A whole-type job: a generation being built, reported; then current.
    c.batch_execute(
        r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "x"}')"#,
    )
    .unwrap();
    let (_, _, _, q, _, g, building, _) = status(&mut c);
    assert_eq!((q, g), (10, 0));
    let building = building.expect("building");
    assert_eq!(health(&mut c, "generations"), "info");
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(status(&mut c), (10, 10, 0, 0, 0, building, None, false));
    assert_eq!(health(&mut c, "generations"), "ok");
    assert_eq!(health(&mut c, "retired_generations"), "ok");
    assert_eq!(health(&mut c, "settings"), "ok");
}

/// Tenants share the worker: tenant A's job of 50,000 entities is queued first, then tenant B's
/// job of 200 at the same priority; B's completes within a few batches while A's progresses.
#[test]
fn a_small_tenant_job_does_not_wait_behind_a_large_one() {
    let cluster = Cluster::start("fresh-fair", &[]);
    let db = cluster.fresh_db("fresh_fair");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "a_doc", "attributes": {"n": {"type": "integer"}}}');
           SELECT evolve.register_schema('{"entity_type": "b_doc", "attributes": {"n": {"type": "integer"}}}');
           SELECT evolve.set_embedding_policy('a_doc', 'manual');
           SELECT evolve.set_embedding_policy('b_doc', 'manual');
           INSERT INTO evolve.inbox (entity_type, payload, entity_key, user_id)
           SELECT 'a_doc', jsonb_build_object('n', i), 'a' || i, 'A' FROM generate_series(1, 50000) i;
           INSERT INTO evolve.inbox (entity_type, payload, entity_key, user_id)
           SELECT 'b_doc', jsonb_build_object('n', i), 'b' || i, 'B' FROM generate_series(1, 200) i;"#,
    )
    .unwrap();
    let job = |c: &mut Client, t: &str| -> i64 {
        count(
            c,
            &format!(
                r#"SELECT evolve.apply_change('{{"kind": "entity_type_description_changed", "entity_type": "{t}", "description": "x"}}')"#
            ),
        )
    };
    let a = job(&mut c, "a_doc");
    let b = job(&mut c, "b_doc");
    let tenants: Vec<String> = c
        .query(
            "SELECT tenant || ':' || count(*) FROM evolve.embedding_queue GROUP BY tenant ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tenants, ["A:50000", "B:200"]);
    let mut batches = 0;
    loop {
        batches += 1;
        assert_eq!(count(&mut c, "SELECT evolve._reembed_batch()::int8"), 100);
        let done = text(
            &mut c,
            &format!("SELECT status FROM evolve.schema_migration_jobs WHERE id = {b}"),
        );
        if done.as_deref() == Some("completed") {
            break;
        }
        assert!(batches < 50, "tenant B still waits after {batches} batches");
    }
    let a_done = count(
        &mut c,
        &format!("SELECT processed_entities FROM evolve.schema_migration_jobs WHERE id = {a}"),
    );
    eprintln!(
        "tenant B's job of 200 completed after {batches} batches; A's progressed by {a_done}"
    );
    assert!(batches <= 4, "{batches} batches");
    assert!(a_done >= 100, "A keeps progressing: {a_done}");

    // Weights: B three times A's share.
    assert_eq!(
        count(&mut c, "SELECT evolve.set_tenant_weight('B', 3)::int8"),
        3
    );
    c.batch_execute(
        r#"INSERT INTO evolve.inbox (entity_type, payload, entity_key, user_id)
           SELECT 'b_doc', jsonb_build_object('n', i), 'b' || i, 'B' FROM generate_series(201, 2000) i;"#,
    )
    .unwrap();
    job(&mut c, "b_doc");
    let before = count(
        &mut c,
        "SELECT count(*) FROM evolve.embedding_queue WHERE tenant = 'A'",
    );
    for _ in 0..8 {
        c.batch_execute("SELECT evolve._reembed_batch()").unwrap();
    }
    let a_served = before
        - count(
            &mut c,
            "SELECT count(*) FROM evolve.embedding_queue WHERE tenant = 'A'",
        );
    assert_eq!(a_served, 200, "2 of 8 batches for A at weights 1:3");
    assert_eq!(
        crate::common::state(&mut c, "SELECT evolve.set_tenant_weight('B', 0)"),
        "22023"
    );
}
