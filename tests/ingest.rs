//! Ingestion under concurrency, and pg_cron maintenance in a preloaded cluster.

use std::sync::{Arc, Barrier};

use crate::common::{count, Cluster};

/// 8 sessions insert, update, delete and roll back fragments and inbox rows, and fold the
/// aggregate parts, at random; the aggregates still equal a recompute afterwards.
#[test]
fn aggregates_stay_exact_under_8_concurrent_writers() {
    let cluster = Arc::new(Cluster::start("aggregates-race", &[]));
    let db = cluster.fresh_db("aggregates_race");
    let mut admin = cluster.connect_to(&db);
    admin
        .batch_execute(
            r#"SELECT evolve.register_schema('{"entity_type":"quake","attributes":{"mag":{"type":"number"}}}');
               INSERT INTO evolve.inbox (entity_type, payload, entity_key, source)
               SELECT 'quake', jsonb_build_object('mag', i, 'k' || (i % 7), i, 'felt', i % 3), 'e' || (i % 50), 's' || (i % 4)
               FROM generate_series(1, 500) i;"#,
        )
        .unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8u64)
        .map(|s| {
            let cluster = Arc::clone(&cluster);
            let barrier = Arc::clone(&barrier);
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = cluster.connect_to(&db);
                c.batch_execute("SET client_min_messages = error").unwrap();
                barrier.wait();
                let mut x = s.wrapping_mul(7919) + 1;
                let mut next = |n: u64| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 33) % n
                };
                for _ in 0..60 {
                    let statement = match next(6) {
                        0 => format!(
                            "INSERT INTO evolve.inbox (entity_type, payload, entity_key, source) \
                             SELECT 'quake', jsonb_build_object('k' || (i % 7), i, 'felt', 'x' || i), 'e' || ((i * {s}) % 60), 's{s}' \
                             FROM generate_series(1, {}) i",
                            1 + next(40)
                        ),
                        // Writers of base rows lock them in the canonical order (entity, key), as
                        // ingestion does; the aggregate upserts then can never deadlock.
                        1 => format!(
                            "UPDATE evolve.raw_fragments SET value = to_jsonb({}), value_type = 'integer', frequency = frequency + 1, \
                             last_seen_at = now() - interval '1 day' * {} WHERE fragment_id IN (SELECT fragment_id \
                             FROM evolve.raw_fragments WHERE fragment_id % 13 = {} ORDER BY entity_id, fragment_key FOR UPDATE)",
                            next(100),
                            next(5),
                            next(13)
                        ),
                        2 => format!(
                            "DELETE FROM evolve.raw_fragments WHERE fragment_id IN (SELECT fragment_id \
                             FROM evolve.raw_fragments WHERE fragment_id % 29 = {} ORDER BY entity_id, fragment_key FOR UPDATE)",
                            next(29)
                        ),
                        // Folding merges the parts while the others write and settle them.
                        5 => "SELECT evolve.fold_aggregates()".to_string(),
                        3 => "UPDATE evolve.raw_fragments SET source = NULL WHERE fragment_id IN (SELECT fragment_id \
                              FROM evolve.raw_fragments WHERE fragment_id % 17 = 3 ORDER BY entity_id, fragment_key FOR UPDATE)"
                            .to_string(),
                        _ => format!(
                            "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
                             SELECT 'quake', jsonb_build_object('k' || (i % 5), NULL), 'e' || (i % 70) FROM generate_series(1, {}) i",
                            1 + next(20)
                        ),
                    };
                    let rollback = next(4) == 0;
                    let mut tx = c.transaction().unwrap();
                    match tx.batch_execute(&statement) {
                        Ok(()) => {
                            if rollback {
                                tx.rollback().unwrap();
                            } else {
                                tx.commit().unwrap();
                            }
                        }
                        Err(e) => {
                            // Deadlocks must not happen; serialization conflicts cannot in READ COMMITTED.
                            panic!("statement failed: {:?}\n{statement}", e.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string(), d.detail().map(str::to_string))));
                        }
                    }
                }
            })
        })
        .collect();
    let failed = handles
        .into_iter()
        .map(|h| h.join())
        .filter(Result::is_err)
        .count();
    if failed > 0 {
        let log = cluster.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Process") || l.contains("deadlock") || l.contains("CONTEXT"))
            .collect();
        panic!("{failed} writers failed; server log:\n{}", lines.join("\n"));
    }
    let mismatches = admin
        .query("SELECT * FROM evolve.verify_aggregates()", &[])
        .unwrap();
    assert!(
        mismatches.is_empty(),
        "{} mismatching aggregate fields",
        mismatches.len()
    );
    let keys: i64 = admin
        .query_one("SELECT count(*) FROM evolve.raw_fragment_aggregates", &[])
        .unwrap()
        .get(0);
    assert!(keys > 0);
}

/// 8 sessions ingest payloads with the same undeclared keys at once: each writes its own
/// aggregate parts (one per key and session, so none waited on another's row), the sums are
/// exact, and folding merges the parts without changing what the view reads.
#[test]
fn concurrent_ingests_write_their_own_parts_and_folding_keeps_the_sums() {
    let cluster = Arc::new(Cluster::start("aggregate-parts", &[]));
    let db = cluster.fresh_db("aggregate_parts");
    let mut admin = cluster.connect_to(&db);
    admin
        .batch_execute(
            r#"SELECT evolve.register_schema('{"entity_type":"ev","attributes":{"a":{"type":"integer"}}}');"#,
        )
        .unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|s| {
            let cluster = Arc::clone(&cluster);
            let barrier = Arc::clone(&barrier);
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = cluster.connect_to(&db);
                barrier.wait();
                for i in 0..150i32 {
                    // Half new entities, half updates of entities the others write too.
                    let key = if i % 2 == 0 { format!("w{s}-{i}") } else { format!("shared{}", i % 10) };
                    c.execute(
                        "SELECT evolve.ingest('ev', jsonb_build_object('a', $1::int, 'u1', $1::int, 'u2', 'x' || $1, 'u3', ($1 % 3) = 0),                                               source => $2, entity_key => $3)",
                        &[&i, &format!("s{}", s % 3), &key],
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no writer failed (no deadlock, no error)");
    }
    let mismatches: i64 = admin
        .query_one("SELECT count(*) FROM evolve.verify_aggregates()", &[])
        .unwrap()
        .get(0);
    assert_eq!(mismatches, 0);
    let parts: Vec<(String, i64)> = admin
        .query(
            "SELECT fragment_key, count(*) FROM evolve.raw_fragment_aggregate_parts GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        parts,
        vec![
            ("u1".to_string(), 8),
            ("u2".to_string(), 8),
            ("u3".to_string(), 8)
        ],
        "one part per key and writing session"
    );
    let view = "SELECT string_agg(concat_ws(' ', fragment_key, sample_count, frequency_total, type_counts, \
                source_counts, dominant_type, unique_sources, last_seen_at, jsonb_array_length(sample_values)), '; ' \
                ORDER BY fragment_key) FROM evolve.raw_fragment_aggregates";
    let before: String = admin.query_one(view, &[]).unwrap().get(0);
    let counted: i64 = admin
        .query_one(
            "SELECT entity_count FROM evolve.entity_counts WHERE entity_type = 'ev'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(counted, 8 * 75 + 5, "600 own entities and 5 shared ones");
    // Folding is an administrator's: a writer is refused, a (non-superuser) admin folds.
    admin
        .batch_execute(
            "CREATE ROLE parts_writer LOGIN IN ROLE evolve_writer; CREATE ROLE parts_admin LOGIN IN ROLE evolve_admin;",
        )
        .unwrap();
    let mut writer = cluster.connect_as(&db, "parts_writer");
    assert_eq!(
        crate::common::state(&mut writer, "SELECT evolve.fold_aggregates()"),
        "42501"
    );
    let mut folder = cluster.connect_as(&db, "parts_admin");
    let folded: i64 = folder
        .query_one("SELECT evolve.fold_aggregates()", &[])
        .unwrap()
        .get(0);
    assert!(folded >= 3 * 7, "parts merged: {folded}");
    let after: String = admin.query_one(view, &[]).unwrap().get(0);
    assert_eq!(before, after);
    // A writer reads the same sums through the views (with its own rights).
    let as_writer: String = writer.query_one(view, &[]).unwrap().get(0);
    assert_eq!(as_writer, after);
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM evolve.raw_fragment_aggregate_parts",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 3);
    let counted_after: i64 = admin
        .query_one(
            "SELECT entity_count FROM evolve.entity_counts WHERE entity_type = 'ev'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(counted_after, counted);
    let mismatches: i64 = admin
        .query_one("SELECT count(*) FROM evolve.verify_aggregates()", &[])
        .unwrap()
        .get(0);
    assert_eq!(mismatches, 0);
}

/// schedule_maintenance() creates the pg_cron jobs (idempotently); the job bodies can run twice
/// at the same time without error or double work.
#[test]
fn pg_cron_maintenance() {
    if crate::common::preload() == "pg_evolve" {
        eprintln!("skipped: pg_cron is not installed for this server (scripts/versions.sh)");
        return;
    }
    let cluster = Cluster::start("pg-cron", &[]);
    // cron.database_name is 'postgres' in test clusters: install there.
    let mut c = cluster.connect_to("postgres");
    c.batch_execute(
        "CREATE EXTENSION vector; CREATE EXTENSION pg_cron; CREATE EXTENSION pg_evolve;",
    )
    .unwrap();
    for _ in 0..2 {
        let rows = c
            .query(
                "SELECT jobname, schedule FROM evolve.schedule_maintenance()",
                &[],
            )
            .unwrap();
        assert_eq!(rows.len(), 4);
    }
    let jobs: Vec<(String, String, String)> = c
        .query(
            "SELECT jobname, schedule, command FROM cron.job ORDER BY jobname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        jobs,
        vec![
            (
                "evolve_archive_stale_fragments".to_string(),
                "27 4 * * 0".to_string(),
                "SELECT evolve.archive_stale_fragments()".to_string()
            ),
            (
                "evolve_cleanup_expired_fragments".to_string(),
                "17 3 * * *".to_string(),
                "SELECT evolve.cleanup_expired_fragments()".to_string()
            ),
            (
                "evolve_fold_aggregates".to_string(),
                "7 * * * *".to_string(),
                "SELECT evolve.fold_aggregates()".to_string()
            ),
            (
                "evolve_run_reembedding".to_string(),
                "* * * * *".to_string(),
                "CALL evolve.run_reembedding(50)".to_string()
            ),
        ]
    );
    // Another database (pg_cron lives in 'postgres' here): schedule_maintenance refuses with
    // the statement to run in pg_cron's database, which schedules that database's jobs there.
    let other = cluster.fresh_db("cron_elsewhere");
    let mut o = cluster.connect_to(&other);
    let e = o
        .batch_execute("SELECT * FROM evolve.schedule_maintenance()")
        .unwrap_err();
    let db_error = e.as_db_error().unwrap();
    assert_eq!(db_error.code().code(), "55000");
    let hint = db_error.hint().unwrap().to_string();
    let statement = &hint[hint.find("SELECT cron.schedule_in_database").expect(&hint)..];
    c.batch_execute(statement).unwrap();
    let elsewhere: i64 = c
        .query_one(
            r"SELECT count(*) FROM cron.job WHERE database = 'cron_elsewhere' AND jobname LIKE 'evolve\_%:cron_elsewhere'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(elsewhere, 4);
    // Unscheduling there refuses the same way, with the statement that removes them.
    let e = o
        .batch_execute("SELECT * FROM evolve.unschedule_maintenance()")
        .unwrap_err();
    let hint = e.as_db_error().unwrap().hint().unwrap().to_string();
    c.batch_execute(&hint[hint.find("SELECT cron.unschedule").expect(&hint)..])
        .unwrap();
    // In pg_cron's database, unschedule_maintenance removes this database's four jobs (and
    // schedule_maintenance puts them back).
    let removed = c
        .query("SELECT jobname FROM evolve.unschedule_maintenance()", &[])
        .unwrap()
        .len();
    assert_eq!(removed, 4);
    let left: i64 = c
        .query_one("SELECT count(*) FROM cron.job", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every job removed, the other database's included");
    c.batch_execute("SELECT * FROM evolve.schedule_maintenance()")
        .unwrap();

    // Expired promoted fragments to clean up, from two sessions at once.
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type":"quake","attributes":{"mag":{"type":"number"}}}');
           INSERT INTO evolve.inbox (entity_type, payload, entity_key)
           SELECT 'quake', jsonb_build_object('felt', i), 'e' || i FROM generate_series(1, 3000) i;
           SELECT evolve.update_schema_incremental('quake', '{"attributes":{"felt":{"type":"integer"}}}');
           UPDATE evolve.raw_fragments SET expires_at = now() - interval '1 minute';"#,
    )
    .unwrap();
    let cluster = Arc::new(cluster);
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let cluster = Arc::clone(&cluster);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut s = cluster.connect_to("postgres");
                barrier.wait();
                let mut total = 0i64;
                loop {
                    let n: i64 = s
                        .query_one("SELECT evolve.cleanup_expired_fragments(700)", &[])
                        .unwrap()
                        .get(0);
                    if n == 0 {
                        return total;
                    }
                    total += n;
                }
            })
        })
        .collect();
    let deleted: Vec<i64> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        deleted.iter().sum::<i64>(),
        3000,
        "each expired row deleted exactly once: {deleted:?}"
    );
    let left: i64 = c
        .query_one("SELECT count(*) FROM evolve.raw_fragments", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let archived: i64 = c
        .query_one("SELECT evolve.archive_stale_fragments()", &[])
        .unwrap()
        .get(0);
    assert_eq!(archived, 0);
    assert!(c
        .query("SELECT * FROM evolve.verify_aggregates()", &[])
        .unwrap()
        .is_empty());
}

/// Nested payloads from 8 sessions at once (inbox and ingest(), the same undeclared nested
/// paths, embedded related entities), while another session declares nested members and
/// approves an extraction: no statement fails or deadlocks, the aggregates equal a recompute,
/// every snapshot equals a full recompute, and every embedded object became its entity.
#[test]
fn nested_payloads_under_concurrent_writers_and_schema_changes() {
    let cluster = Arc::new(Cluster::start("nested-race", &["log_lock_waits = on"]));
    let db = cluster.fresh_db("nested_race");
    let mut admin = cluster.connect_to(&db);
    admin
        .batch_execute(
            r#"SELECT evolve.register_schema('{"entity_type": "push", "attributes": {
                   "actor": {"type": "object", "properties": {"login": {"type": "string"}}}}}');
               SELECT evolve.register_schema('{"entity_type": "org", "attributes": {"id": {"type": "integer"}, "name": {"type": "string"}}}');
               SELECT evolve.update_schema_incremental('push', '{"relationships": {"org": {"target": "org", "key": "id"}}}');"#,
        )
        .unwrap();
    // The payload as an SQL expression of `i` (a column, or a number).
    let payload = |i: &str, s: u64| {
        format!(
            r#"jsonb_build_object('actor', jsonb_build_object('login', 'u' || ({i} % 9), 'id', {i} % 9, 'site', jsonb_build_object('url', 'x' || {i})),
                 'repo', jsonb_build_object('name', 'r' || ({i} % 5), 'stars', {i} * {s}),
                 'org', jsonb_build_object('id', {i} % 4, 'name', 'org' || ({i} % 4)))"#
        )
    };
    let barrier = Arc::new(Barrier::new(9));
    let mut handles: Vec<_> = (0..8u64)
        .map(|s| {
            let cluster = Arc::clone(&cluster);
            let barrier = Arc::clone(&barrier);
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = cluster.connect_to(&db);
                c.batch_execute("SET client_min_messages = error").unwrap();
                barrier.wait();
                for round in 0..25u64 {
                    let statement = if (round + s) % 2 == 0 {
                        format!(
                            "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
                             SELECT 'push', {}, 'p' || ((i * 7 + {s}) % 120) FROM generate_series(1, 20) i",
                            payload("i", s)
                        )
                    } else {
                        format!(
                            "SELECT evolve.ingest('push', {}, entity_key => 'p' || {})",
                            payload(&(round * 13 + s).to_string(), s),
                            (round * 13 + s) % 120
                        )
                    };
                    if let Err(e) = c.batch_execute(&statement) {
                        panic!(
                            "statement failed: {:?}\n{statement}",
                            e.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string()))
                        );
                    }
                }
            })
        })
        .collect();
    {
        let cluster = Arc::clone(&cluster);
        let barrier = Arc::clone(&barrier);
        let db = db.clone();
        handles.push(std::thread::spawn(move || {
            let mut c = cluster.connect_to(&db);
            c.batch_execute("SET client_min_messages = error").unwrap();
            barrier.wait();
            std::thread::sleep(std::time::Duration::from_millis(200));
            c.batch_execute(
                r#"SELECT evolve.update_schema_incremental('push', '{"attributes": {"actor": {"type": "object", "properties": {"id": {"type": "integer"}}}}}');"#,
            )
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
            c.batch_execute(
                r#"SELECT evolve.update_schema_incremental('push', '{"attributes": {"repo": {"type": "object", "properties": {"name": {"type": "string"}}}}}');"#,
            )
            .unwrap();
        }));
    }
    let failed = handles
        .into_iter()
        .map(|h| h.join())
        .filter(Result::is_err)
        .count();
    if failed > 0 {
        let log = cluster.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("Process")
                    || l.contains("deadlock")
                    || l.contains("CONTEXT")
                    || l.contains("STATEMENT")
            })
            .collect();
        panic!(
            "{failed} sessions failed; server log:\n{}",
            lines.join("\n")
        );
    }
    let mismatches = admin
        .query("SELECT * FROM evolve.verify_aggregates()", &[])
        .unwrap();
    assert!(
        mismatches.is_empty(),
        "{} mismatching aggregate fields",
        mismatches.len()
    );
    let stale: i64 = admin
        .query_one(
            "SELECT count(*) FROM evolve.entities e WHERE e.snapshot IS DISTINCT FROM evolve.refresh_snapshot(e.entity_id)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stale, 0, "snapshots equal a full recompute");
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM evolve.entities WHERE entity_type = 'org'), \
                    (SELECT count(*) FROM evolve.entities WHERE entity_type = 'push' AND snapshot ? 'org'), \
                    (SELECT count(*) FROM evolve.entities WHERE entity_type = 'push'), \
                    (SELECT count(*) FROM evolve.observations WHERE attribute = 'actor.id'), \
                    (SELECT count(*) FROM evolve.raw_fragments WHERE fragment_key = 'actor.site.url')",
            &[],
        )
        .unwrap();
    let (orgs, linked, pushes, ids, urls): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(orgs, 4, "one entity per embedded org id");
    assert_eq!(linked, pushes, "every push is linked to its org");
    assert!(ids > 0, "actor.id is observed once declared");
    assert!(urls > 0, "undeclared nested leaves are fragments by path");
}

/// What the pipeline writes keeps every digit and character of the payload (values are built
/// as jsonb without a text round trip): fragments, observations and snapshots equal, as text,
/// what jsonb reads from the same payload, through the inbox and `ingest()`. An entity's
/// observations and fragments go with it, on DELETE and TRUNCATE, and the aggregates stay exact.
#[test]
fn values_are_exact_and_deleted_entities_take_their_rows() {
    use crate::common::count;
    let cluster = Cluster::start("ingest-exact", &[]);
    let db = cluster.fresh_db("ingest_exact");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "movie", "attributes": {
               "title": {"type": "string"}, "n": {"type": "number"}, "tags": {"type": "array"}}}');
           CREATE TABLE src (k text PRIMARY KEY, p jsonb NOT NULL);
           INSERT INTO src VALUES
             ('odd', '{"title": "é😀 \"q\" \\ \n\t", "n": 12345678901234567890.123456789012345678901234567890,
                      "tags": [1, 2.50, -0, 1e400, null, true, {}, [], {"b": {"c": [{"d": "e"}]}}],
                      "x": [0.1, 1E+2, -1.0E-5, 1e-300, ""], "s": "ü\u0001", "f": false, "z": null}');
           INSERT INTO src SELECT 'g' || i, jsonb_build_object('title', 't' || i, 'n', i * 1.10,
                                  'u' || (i % 5), repeat('é', i % 7), 'v', (i * 0.001)::numeric(10, 3))
           FROM generate_series(1, 300) i;
           INSERT INTO evolve.inbox (entity_type, payload, entity_key) SELECT 'movie', p, k FROM src;
           INSERT INTO src SELECT k || '_one', p FROM src WHERE k IN ('odd', 'g7');
           SELECT evolve.ingest('movie', p, entity_key => k) FROM src WHERE k LIKE '%\_one';"#,
    )
    .unwrap();
    let fragments = count(
        &mut c,
        "SELECT count(*) FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id) \
         JOIN src ON src.k = e.entity_key",
    );
    assert!(fragments > 600, "{fragments} fragments");
    let wrong = count(
        &mut c,
        "SELECT count(*) FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id) \
         JOIN src ON src.k = e.entity_key \
         WHERE f.value::text IS DISTINCT FROM (src.p #> string_to_array(f.fragment_key, '.'))::text",
    );
    assert_eq!(wrong, 0, "fragment values equal the payload's, as text");
    let wrong = count(
        &mut c,
        "SELECT count(*) FROM evolve.observations o JOIN evolve.entities e USING (entity_id) \
         JOIN src ON src.k = e.entity_key \
         WHERE o.value::text IS DISTINCT FROM (src.p -> o.attribute)::text",
    );
    assert_eq!(wrong, 0, "observation values equal the payload's, as text");
    let wrong = count(
        &mut c,
        "SELECT count(*) FROM evolve.entities e JOIN src ON src.k = e.entity_key \
         WHERE (e.snapshot -> 'title')::text IS DISTINCT FROM (src.p -> 'title')::text \
            OR (e.snapshot -> 'n')::text IS DISTINCT FROM (src.p -> 'n')::text \
            OR (e.snapshot -> 'tags')::text IS DISTINCT FROM (src.p -> 'tags')::text",
    );
    assert_eq!(
        wrong, 0,
        "snapshots equal the payload's declared values, as text"
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );

    // DELETE: the entities' observations, fragments and queue rows go with them, the
    // aggregates follow.
    let queued = count(
        &mut c,
        "SELECT count(*) FROM evolve.embedding_queue q JOIN evolve.entities e USING (entity_id) \
         WHERE e.entity_key LIKE 'g1%'",
    );
    assert!(queued > 0, "the new entities are queued for embedding");
    c.batch_execute("DELETE FROM evolve.entities WHERE entity_key LIKE 'g1%'")
        .unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT (SELECT count(*) FROM evolve.raw_fragments f WHERE NOT EXISTS \
                        (SELECT FROM evolve.entities e WHERE e.entity_id = f.entity_id)) \
                  + (SELECT count(*) FROM evolve.observations o WHERE NOT EXISTS \
                        (SELECT FROM evolve.entities e WHERE e.entity_id = o.entity_id)) \
                  + (SELECT count(*) FROM evolve.embedding_queue q WHERE NOT EXISTS \
                        (SELECT FROM evolve.entities e WHERE e.entity_id = q.entity_id))"
        ),
        0,
        "no observation, fragment or queue row outlives its entity"
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT entity_count FROM evolve.entity_counts WHERE entity_type = 'movie'"
        ),
        count(&mut c, "SELECT count(*) FROM evolve.entities")
    );
    // TRUNCATE (CASCADE: the embeddings refer to the entities) empties them all.
    c.batch_execute("TRUNCATE evolve.entities CASCADE").unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT (SELECT count(*) FROM evolve.raw_fragments) + (SELECT count(*) FROM evolve.observations) \
                  + (SELECT count(*) FROM evolve.raw_fragment_aggregates) \
                  + (SELECT count(*) FROM evolve.embedding_queue)"
        ),
        0
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );
}

/// An entity that another transaction deletes while a batch ingests into it: the batch finds
/// it existing, then waits for its lock; once the delete commits there is no row to write to,
/// and the batch fails with 40001 (retry), writing nothing: no observation or fragment without
/// its entity.
#[test]
fn a_batch_whose_entity_is_deleted_meanwhile_fails_with_40001() {
    use crate::common::count;
    let cluster = Cluster::start("ingest-deleted", &[]);
    let db = cluster.fresh_db("ingest_deleted");
    let mut a = cluster.connect_to(&db);
    a.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           SELECT evolve.ingest('quake', '{"mag": 1}', entity_key => 'old');"#,
    )
    .unwrap();
    // A holds the entity's row lock.
    a.batch_execute("BEGIN; SELECT FROM evolve.entities WHERE entity_key = 'old' FOR UPDATE")
        .unwrap();
    let batch = {
        let mut b = cluster.connect_to(&db);
        std::thread::spawn(move || {
            b.batch_execute(
                r#"INSERT INTO evolve.inbox (entity_type, payload, entity_key)
                   VALUES ('quake', '{"mag": 2, "extra": 1}', 'old'), ('quake', '{"mag": 3}', 'new')"#,
            )
            .map_err(|e| e.as_db_error().map(|d| d.code().code().to_string()))
        })
    };
    // B waits on A's lock.
    let mut waited = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if count(
            &mut cluster.connect_to(&db),
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO evolve.inbox%'",
        ) > 0
        {
            waited = true;
            break;
        }
    }
    assert!(waited, "the batch waits for the entity's lock");
    a.batch_execute("DELETE FROM evolve.entities WHERE entity_key = 'old'; COMMIT")
        .unwrap();
    let outcome = batch.join().unwrap();
    assert_eq!(outcome, Err(Some("40001".to_string())));
    let mut c = cluster.connect_to(&db);
    assert_eq!(
        count(
            &mut c,
            "SELECT (SELECT count(*) FROM evolve.entities) + (SELECT count(*) FROM evolve.observations) \
                  + (SELECT count(*) FROM evolve.raw_fragments)"
        ),
        0,
        "nothing written"
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );
}

/// Where `entities_key` is gone (`evolve.distribute()` drops it: no index keeps a key unique
/// across nodes), entity ids derive from the keys: single and batch ingests find an entity by
/// the id its key hashes to, and a key whose id another entity holds is refused (23505).
#[test]
fn entity_ids_derive_from_keys_where_entities_key_is_gone() {
    use crate::common::count;
    let cluster = Cluster::start("ingest-derived", &[]);
    let db = cluster.fresh_db("ingest_derived");
    let mut c = cluster.connect_to(&db);
    // The derivation computed independently: SHA-256 over the length-prefixed parts.
    c.batch_execute(
        r#"CREATE FUNCTION public.part(x text) RETURNS bytea LANGUAGE sql IMMUTABLE AS
               $$ SELECT CASE WHEN x IS NULL THEN '\x00'::bytea
                              ELSE '\x01'::bytea || int8send(octet_length(x)::bigint) || convert_to(x, 'UTF8') END $$;
           CREATE FUNCTION public.derived(t text, u text, k text) RETURNS bigint LANGUAGE sql IMMUTABLE AS
               $$ SELECT greatest(1, (('x' || left(encode(sha256(part(t) || part(u) || part(k)), 'hex'), 16))::bit(64) >> 1)::bigint) $$;
           SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number", "merge_policy": "max"}}}');
           ALTER TABLE evolve.entities DROP CONSTRAINT entities_key;"#,
    )
    .unwrap();
    let one =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    let a = one(
        &mut c,
        r#"SELECT evolve.ingest('quake', '{"mag": 1, "x": 1}', entity_key => 'a')"#,
    );
    assert_eq!(a, one(&mut c, "SELECT derived('quake', NULL, 'a')"));
    let again = one(
        &mut c,
        r#"SELECT evolve.ingest('quake', '{"mag": 4}', entity_key => 'a')"#,
    );
    assert_eq!(again, a, "the same key, the same entity");
    let ana = one(
        &mut c,
        r#"SELECT evolve.ingest('quake', '{"mag": 2}', 'ana', entity_key => 'a')"#,
    );
    assert_eq!(ana, one(&mut c, "SELECT derived('quake', 'ana', 'a')"));
    assert_ne!(ana, a);
    // A batch over existing and new keys of two scopes, with repeats.
    c.batch_execute(
        r#"INSERT INTO evolve.inbox (entity_type, payload, entity_key, user_id)
           SELECT 'quake', jsonb_build_object('mag', i, 'y', i), 'k' || (i % 7), CASE WHEN i % 2 = 0 THEN 'ana' END
           FROM generate_series(1, 40) i
           UNION ALL SELECT 'quake', '{"mag": 9}', 'a', NULL"#,
    )
    .unwrap();
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.entities WHERE entity_id <> derived(entity_type, user_id, entity_key)"),
        0,
        "every id is its key's"
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.entities"),
        2 + 14
    );
    assert_eq!(
        count(&mut c, "SELECT (snapshot->>'mag')::bigint FROM evolve.entities WHERE entity_key = 'a' AND user_id IS NULL"),
        9
    );
    assert_eq!(
        count(&mut c, "SELECT (snapshot->>'mag')::bigint FROM evolve.entities WHERE entity_key = 'k3' AND user_id = 'ana'"),
        38
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.inbox_rejects"),
        0
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );
    // Another entity holding the id of key 'victim' (as a hash collision would).
    c.batch_execute(
        "INSERT INTO evolve.entities (entity_id, entity_type, entity_key) OVERRIDING SYSTEM VALUE \
         VALUES (derived('quake', NULL, 'victim'), 'quake', 'squatter')",
    )
    .unwrap();
    for sql in [
        r#"SELECT evolve.ingest('quake', '{"mag": 1}', entity_key => 'victim')"#,
        r#"INSERT INTO evolve.inbox (entity_type, payload, entity_key)
           VALUES ('quake', '{"mag": 1}', 'victim'), ('quake', '{"mag": 1}', 'other')"#,
    ] {
        let e = c.batch_execute(sql).unwrap_err();
        let e = e.as_db_error().unwrap();
        assert_eq!(e.code().code(), "23505", "{}", e.message());
        assert!(e.message().contains("\"victim\""), "{}", e.message());
        assert!(
            !e.message().contains("squatter"),
            "the other key is not told"
        );
    }
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.entities WHERE entity_key IN ('victim', 'other')"
        ),
        0,
        "nothing of the refused statements stays"
    );
}

/// evolve.rebuild_aggregates() while writers ingest: they wait for it, or it for them, and the
/// aggregates and counts it leaves are exact; drift made by hand beforehand is gone.
#[test]
fn rebuilding_the_aggregates_under_concurrent_writers_keeps_them_exact() {
    let cluster = Arc::new(Cluster::start("aggregates-rebuild", &[]));
    let db = cluster.fresh_db("aggregates_rebuild");
    let mut admin = cluster.connect_to(&db);
    admin
        .batch_execute(
            r#"SELECT evolve.register_schema('{"entity_type":"ev","attributes":{"a":{"type":"integer"}}}');
               SELECT evolve.ingest('ev', '{"a": 1, "u1": 1}', entity_key => 'seed');
               UPDATE evolve.raw_fragment_aggregate_parts SET sample_count = sample_count + 7;
               UPDATE evolve.entity_count_parts SET entity_count = entity_count + 7;
               CREATE ROLE rebuild_admin LOGIN IN ROLE evolve_admin;"#,
        )
        .unwrap();
    assert!(
        count(
            &mut admin,
            "SELECT count(*) FROM evolve.verify_aggregates()"
        ) > 0
    );
    let barrier = Arc::new(Barrier::new(4));
    let writers: Vec<_> = (0..3)
        .map(|s| {
            let cluster = Arc::clone(&cluster);
            let barrier = Arc::clone(&barrier);
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = cluster.connect_to(&db);
                barrier.wait();
                for i in 0..120i32 {
                    let key = if i % 2 == 0 { format!("w{s}-{i}") } else { format!("shared{}", i % 10) };
                    c.execute(
                        "SELECT evolve.ingest('ev', jsonb_build_object('a', $1::int, 'u1', $1::int, 'u2', 'x' || $1), \
                                              entity_key => $2)",
                        &[&i, &key],
                    )
                    .unwrap();
                }
                // An inbox batch too, in one transaction with a single ingest.
                c.batch_execute(&format!(
                    "BEGIN; \
                     INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
                     SELECT 'ev', jsonb_build_object('a', i, 'u3', i), 'b{s}-' || i FROM generate_series(1, 50) i; \
                     SELECT evolve.ingest('ev', '{{\"a\": 2, \"u1\": 2}}', entity_key => 'seed'); \
                     COMMIT;"
                ))
                .unwrap();
            })
        })
        .collect();
    let mut rebuilder = cluster.connect_as(&db, "rebuild_admin");
    barrier.wait();
    for _ in 0..6 {
        rebuilder
            .batch_execute("CALL evolve.rebuild_aggregates()")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    for w in writers {
        w.join().expect("no writer failed (no deadlock, no error)");
    }
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM evolve.verify_aggregates()"
        ),
        0
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT entity_count FROM evolve.entity_counts WHERE entity_type = 'ev'"
        ),
        count(&mut admin, "SELECT count(*) FROM evolve.entities")
    );
    assert_eq!(
        count(&mut admin, "SELECT count(*) FROM evolve.entities"),
        1 + 3 * 60 + 5 + 3 * 50
    );
}
