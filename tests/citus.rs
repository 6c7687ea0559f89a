//! The Citus tier: a coordinator and two workers on loopback, `evolve.distribute()`, and the
//! workload on the distributed layout. Skipped, with a message, where Citus is not installed
//! for the PostgreSQL under test (README, "Citus").

use postgres::Client;

use crate::common::{count, Cluster};

fn citus_installed() -> bool {
    std::path::Path::new(&crate::common::pg_config_dir("pkglibdir"))
        .join("citus.so")
        .exists()
}

const DB: &str = "citus_tier";

/// The coordinator (first) and two workers, each with the database and Citus in it.
fn citus_cluster() -> Vec<Cluster> {
    let nodes: Vec<Cluster> = (0..3)
        .map(|i| {
            Cluster::start(
                &format!("citus-{i}"),
                &[
                    "shared_preload_libraries = 'citus,pg_evolve'",
                    // Every node's worker looks at the database: the coordinator's drains the
                    // queue, the workers' stay idle (the shards are driven from the coordinator).
                    "evolve.worker_database = 'citus_tier'",
                    "evolve.worker_naptime = 200ms",
                    "citus.log_distributed_deadlock_detection = on",
                ],
            )
        })
        .collect();
    for node in &nodes {
        node.connect_to("postgres")
            .batch_execute(&format!("CREATE DATABASE {DB}"))
            .unwrap();
        node.connect_to(DB)
            .batch_execute("CREATE EXTENSION citus")
            .unwrap();
    }
    let mut coordinator = nodes[0].connect_to(DB);
    coordinator
        .batch_execute(&format!(
            "SELECT citus_set_coordinator_host('127.0.0.1', {}); \
             SELECT citus_add_node('127.0.0.1', {}); SELECT citus_add_node('127.0.0.1', {});",
            nodes[0].port, nodes[1].port, nodes[2].port
        ))
        .unwrap();
    nodes
}

/// How many multi-shard statements `sql` ran (Citus logs each one, with
/// `citus.multi_task_query_log_level`, to the coordinator's log).
fn multi_shard_statements(coordinator: &Cluster, c: &mut Client, sql: &str) -> usize {
    const LOGGED: &str = "multi-task query about to be executed";
    c.batch_execute("SET citus.multi_task_query_log_level = 'log'")
        .unwrap();
    let before = coordinator.log().matches(LOGGED).count();
    c.batch_execute(sql).unwrap_or_else(|e| {
        let log = coordinator.log();
        let detail: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains(LOGGED) && !l.contains("HINT:  Queries are split"))
            .collect();
        panic!(
            "{sql}: {}\n{}",
            code(e),
            detail[detail.len().saturating_sub(60)..].join("\n")
        )
    });
    let after = coordinator.log().matches(LOGGED).count();
    c.batch_execute("RESET citus.multi_task_query_log_level")
        .unwrap();
    after - before
}

/// Asserts that the aggregate and count parts are shard-local: a key's parts exist on exactly
/// the shards holding its fragments, a scope's counts on exactly those holding its entities.
fn shard_local(c: &mut Client, when: &str) {
    let set = |c: &mut Client, sql: &str| -> std::collections::BTreeSet<String> {
        c.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let shard = |column: &str| {
        format!("pg_catalog.get_shard_id_for_distribution_column('evolve.entities', {column})")
    };
    let parts = set(
        c,
        &format!(
            "SELECT DISTINCT concat_ws(' ', {}, entity_type, user_id, fragment_key) \
             FROM evolve.raw_fragment_aggregate_parts",
            shard("shard")
        ),
    );
    let fragments = set(
        c,
        &format!(
            "SELECT DISTINCT concat_ws(' ', {}, entity_type, user_id, fragment_key) FROM evolve.raw_fragments",
            shard("entity_id")
        ),
    );
    assert!(!parts.is_empty(), "{when}");
    assert_eq!(
        parts, fragments,
        "fragment parts on their rows' shards, {when}"
    );
    let counts = set(
        c,
        &format!(
            "SELECT DISTINCT concat_ws(' ', {}, entity_type, user_id) FROM evolve.entity_count_parts \
             WHERE entity_count <> 0",
            shard("shard")
        ),
    );
    let entities = set(
        c,
        &format!(
            "SELECT DISTINCT concat_ws(' ', {}, entity_type, user_id) FROM evolve.entities",
            shard("entity_id")
        ),
    );
    assert_eq!(
        counts, entities,
        "count parts on their entities' shards, {when}"
    );
}

/// Four writers, each in a session of its own on `coordinator`, running `sql(writer, round)` for
/// `rounds` rounds; a failed statement fails the test (through the thread's join).
fn spawn_writers(
    coordinator: &Cluster,
    rounds: usize,
    sql: impl Fn(usize, usize) -> String + Send + Copy + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|w| {
            let mut session = coordinator.connect_to(DB);
            std::thread::spawn(move || {
                for round in 0..rounds {
                    session
                        .batch_execute(&sql(w, round))
                        .unwrap_or_else(|e| panic!("writer {w}, round {round}: {}", code(e)));
                }
            })
        })
        .collect()
}

fn code(e: postgres::Error) -> String {
    e.as_db_error()
        .map(|d| format!("{}: {}", d.code().code(), d.message()))
        .unwrap_or_else(|| e.to_string())
}

#[test]
fn a_distributed_database_runs_the_workload_on_single_shard_statements() {
    if !citus_installed() {
        eprintln!(
            "citus tier skipped: Citus is not installed for this PostgreSQL (no citus.so in its \
             pkglibdir; README, \"Citus\", says how to install it)"
        );
        return;
    }
    let nodes = citus_cluster();
    let mut c = nodes[0].connect_to(DB);
    c.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve")
        .unwrap();
    // The extension reached the workers with it.
    for worker in &nodes[1..] {
        let v = count(
            &mut worker.connect_to(DB),
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_evolve'",
        );
        assert_eq!(v, 1);
    }

    // Distribution: the registry as reference tables, the data by entity_id, colocated;
    // idempotent.
    c.batch_execute("SET client_min_messages = warning")
        .unwrap();
    let made: Vec<(String, String, bool)> = c
        .query("SELECT * FROM evolve.distribute(shard_count => 8)", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(made.len(), 26);
    assert!(made.iter().all(|m| m.2), "{made:?}");
    assert_eq!(
        made.iter().filter(|m| m.1 == "distributed").count(),
        7,
        "{made:?}"
    );
    let again = count(
        &mut c,
        "SELECT count(*) FROM evolve.distribute() WHERE created",
    );
    assert_eq!(again, 0, "a second call changes nothing");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid IN \
             ('evolve.entities'::regclass, 'evolve.observations'::regclass, 'evolve.raw_fragments'::regclass, \
              'evolve.embedding_queue'::regclass, 'evolve.entity_embeddings'::regclass, \
              'evolve.raw_fragment_aggregate_parts'::regclass, 'evolve.entity_count_parts'::regclass)"
        ),
        1,
        "colocated"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'evolve.entities'::regclass"
        ),
        8
    );
    // The profiles the install wrote moved into the reference table.
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.embedding_profiles"),
        2
    );

    // Every statement of a single ingest targets one shard: Citus refuses any other here.
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "description": "A seismic event",
               "attributes": {"mag": {"type": "number", "merge_policy": "max"}, "place": {"type": "string"}}}');
           SET citus.multi_task_query_log_level = 'error';"#,
    )
    .unwrap_or_else(|e| panic!("register: {}\n{}", code(e), nodes[0].log()));
    for i in 0..20 {
        c.batch_execute(&format!(
            r#"SELECT evolve.ingest('quake', '{{"mag": {i}, "place": "p{i}", "depth": {i}, "n{}": 1}}', entity_key => 'k{}')"#,
            i % 3,
            i % 7
        ))
        .unwrap_or_else(|e| panic!("ingest {i}: {}", code(e)));
    }
    c.batch_execute(
        r#"SELECT evolve.ingest('quake', '{"mag": 2, "felt": 4}', 'ana', entity_key => 'k1');
           SELECT evolve.ingest('quake', '{"mag": 5, "felt": 1}', 'bob', entity_key => 'k1');"#,
    )
    .unwrap();
    // An inbox batch: its locks and reads one shard at a time too.
    c.batch_execute(
        "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
         SELECT 'quake', jsonb_build_object('mag', i, 'depth', i, 'tsunami', i % 2), 'k' || (i % 50) \
         FROM generate_series(1, 500) i",
    )
    .unwrap_or_else(|e| panic!("inbox: {}", code(e)));
    c.batch_execute("RESET citus.multi_task_query_log_level")
        .unwrap();

    // Ids derive from the keys (SHA-256, computed here independently), counts and aggregates
    // are exact, nothing was rejected.
    c.batch_execute(
        r#"CREATE FUNCTION public.part(x text) RETURNS bytea LANGUAGE sql IMMUTABLE AS
               $$ SELECT CASE WHEN x IS NULL THEN '\x00'::bytea
                              ELSE '\x01'::bytea || int8send(octet_length(x)::bigint) || convert_to(x, 'UTF8') END $$;
           CREATE FUNCTION public.derived(t text, u text, k text) RETURNS bigint LANGUAGE sql IMMUTABLE AS
               $$ SELECT greatest(1, (('x' || left(encode(sha256(part(t) || part(u) || part(k)), 'hex'), 16))::bit(64) >> 1)::bigint) $$;"#,
    )
    .unwrap();
    let ids: Vec<(i64, i64)> = c
        .query(
            "SELECT entity_id, derived(entity_type, user_id, entity_key) FROM evolve.entities",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ids.len(), 52, "50 global keys, k1 of ana and of bob");
    assert!(ids.iter().all(|(id, d)| id == d));
    assert_eq!(
        count(
            &mut c,
            "SELECT sum(entity_count)::bigint FROM evolve.entity_counts WHERE entity_type = 'quake'"
        ),
        52
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.inbox_rejects"),
        0
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT (snapshot->>'mag')::bigint FROM evolve.entities WHERE entity_key = 'k6' AND user_id IS NULL"
        ),
        456,
        "the max over single and batch ingests"
    );
    shard_local(&mut c, "after ingest");

    // Parts of another session (another slot), folded shard by shard: the sums stay exact.
    let mut other = nodes[0].connect_to(DB);
    other
        .batch_execute(
            "SET citus.multi_task_query_log_level = 'error'; \
             INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
             SELECT 'quake', jsonb_build_object('mag', i, 'depth', -i, 'tsunami', i % 3), 'k' || (i % 50) \
             FROM generate_series(1, 100) i",
        )
        .unwrap_or_else(|e| panic!("inbox of another session: {}", code(e)));
    let parts = |c: &mut Client| {
        count(
            c,
            "SELECT count(*) FROM evolve.raw_fragment_aggregate_parts",
        )
    };
    let before = parts(&mut c);
    let merged = count(&mut c, "SELECT evolve.fold_aggregates()");
    assert!(
        merged > 0,
        "two slots' parts of a key on a shard fold into one"
    );
    assert_eq!(parts(&mut c), before - merged);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );
    shard_local(&mut c, "after folding");

    // Writers of one set of keys in four sessions, each adding to parts of its own on every
    // shard, while the parts are folded: no deadlock (Citus detects distributed ones), and the
    // sums stay exact.
    let writers = spawn_writers(&nodes[0], 8, |w, round| {
        format!(
            "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
             SELECT 'quake', jsonb_build_object('mag', i, 'depth', i + {round}, 'tsunami', i % 2, \
                                                'w{w}', true), 'k' || ((i * {} + {round}) % 50) \
             FROM generate_series(1, 40) i",
            w + 1
        )
    });
    let mut folded = 0;
    for _ in 0..6 {
        folded += count(&mut c, "SELECT evolve.fold_aggregates()");
    }
    for w in writers {
        w.join().unwrap();
    }
    folded += count(&mut c, "SELECT evolve.fold_aggregates()");
    assert!(folded > 0);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0,
        "concurrent writers and folding"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT sum(entity_count)::bigint FROM evolve.entity_counts WHERE entity_type = 'quake'"
        ),
        52,
        "the writers' keys existed"
    );
    shard_local(&mut c, "after concurrent writers");

    // Promotion of a key declared later; proposals reviewed, applied and rolled back.
    c.batch_execute(
        r#"SELECT evolve.update_schema_incremental('quake', '{"attributes": {"depth": {"type": "number"}}}')"#,
    )
    .unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.entities WHERE user_id IS NULL AND snapshot ? 'depth'"
        ),
        50
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.raw_fragments WHERE fragment_key = 'depth' AND lifecycle_state = 'promoted'"
        ),
        50
    );
    let proposed = count(
        &mut c,
        "SELECT count(*) FROM evolve.propose_schema('quake') WHERE kind = 'attribute' AND name = 'tsunami'",
    );
    assert_eq!(proposed, 1);
    c.batch_execute(
        "SELECT evolve.approve_proposal(id) FROM evolve.schema_proposals WHERE name = 'tsunami' AND kind = 'attribute'",
    )
    .unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.entities WHERE snapshot ? 'tsunami'"
        ),
        50
    );
    c.batch_execute(
        "SELECT evolve.rollback_proposal(id) FROM evolve.schema_proposals WHERE name = 'tsunami' AND kind = 'attribute'",
    )
    .unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.entities WHERE snapshot ? 'tsunami'"
        ),
        0
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );

    // A change queues the type's entities; the coordinator's worker drains the queue, shard by
    // shard, into a new generation; search finds them.
    let job = count(
        &mut c,
        r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "quake!"}')"#,
    );
    assert!(job > 0);
    let started = std::time::Instant::now();
    while count(
        &mut c,
        &format!("SELECT count(*) FROM evolve.schema_migration_jobs WHERE id = {job} AND status <> 'completed'"),
    ) > 0
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the worker did not drain the queue: {}",
            nodes[0].log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.embedding_queue"),
        0
    );
    assert_eq!(
        count(
            &mut c,
            &format!(
                "SELECT count(*) FROM evolve.entity_embeddings e JOIN evolve.embedding_generations g \
                 USING (generation) WHERE g.state = 'current' AND e.job_id = {job}"
            )
        ),
        52
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.semantic_search('quake', 'p7', 5)"
        ),
        5
    );
    // A batch reads its candidates across shards once, unlocked; every lock and write after
    // that is one shard's. Promotion finds its entities once across shards.
    c.batch_execute(
        r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "quake!!"}')"#,
    )
    .unwrap();
    assert!(multi_shard_statements(&nodes[0], &mut c, "CALL evolve.run_reembedding()") <= 2 * 2);
    assert_eq!(
        multi_shard_statements(
            &nodes[0],
            &mut c,
            r#"SELECT evolve.update_schema_incremental('quake', '{"attributes": {"felt": {"type": "number"}}}')"#
        ),
        1
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );

    // Maintenance: expired fragments deleted shard by shard, their aggregates kept exact;
    // stale ones archived.
    c.batch_execute(
        "UPDATE evolve.raw_fragments SET expires_at = now() - interval '1 day' WHERE lifecycle_state = 'promoted'",
    )
    .unwrap();
    let promoted = count(
        &mut c,
        "SELECT count(*) FROM evolve.raw_fragments WHERE lifecycle_state = 'promoted'",
    );
    assert!(promoted >= 50);
    assert_eq!(
        count(&mut c, "SELECT evolve.cleanup_expired_fragments(10)"),
        10
    );
    // Its candidates and the latest sightings left, each read once across shards; every
    // delete and every write of parts is one shard's.
    assert_eq!(
        multi_shard_statements(
            &nodes[0],
            &mut c,
            "CREATE TEMP TABLE cleaned AS SELECT evolve.cleanup_expired_fragments() AS n"
        ),
        2
    );
    assert_eq!(count(&mut c, "SELECT n FROM cleaned"), promoted - 10);
    let drift: Vec<String> = c
        .query("SELECT concat_ws(' ', user_id, fragment_key, field, expected, actual) FROM evolve.verify_aggregates()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(drift.is_empty(), "{drift:?}");
    let active = count(
        &mut c,
        "SELECT count(*) FROM evolve.raw_fragments WHERE lifecycle_state = 'active'",
    );
    assert!(active > 0);
    assert_eq!(
        multi_shard_statements(
            &nodes[0],
            &mut c,
            "CREATE TEMP TABLE archived AS SELECT evolve.archive_stale_fragments('0 days', 1000) AS n"
        ),
        1
    );
    assert_eq!(count(&mut c, "SELECT n FROM archived"), active);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.raw_fragments WHERE lifecycle_state = 'active'"
        ),
        0
    );

    // Cleanup shard by shard while writers sight the keys it removes rows of, on every shard:
    // no deadlock (the parts are locked in one order), and the sums stay exact.
    c.batch_execute(
        "UPDATE evolve.raw_fragments SET lifecycle_state = 'pending_deletion', expires_at = now() - interval '1 day' \
         WHERE fragment_key IN ('w0', 'w1', 'w2', 'w3')",
    )
    .unwrap();
    let writers = spawn_writers(&nodes[0], 6, |w, round| {
        format!(
            "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
             SELECT 'quake', jsonb_build_object('mag', i, 'w{w}', round(i / 3.0, 2), 'w{}', i), \
                    'k' || ((i * 7 + {round}) % 50) \
             FROM generate_series(1, 30) i",
            (w + 1) % 4
        )
    });
    let mut cleaned = 0;
    loop {
        let n = count(&mut c, "SELECT evolve.cleanup_expired_fragments(20)");
        cleaned += n;
        if n == 0 && writers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(cleaned > 0);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0,
        "cleanup beside writers"
    );
    shard_local(&mut c, "after cleanup beside writers");

    // Tenants: a bound role sees its own rows and global ones on every node; SET LOCAL reaches
    // the workers with citus.propagate_set_commands.
    c.batch_execute(
        "CREATE ROLE ana_writer LOGIN; GRANT evolve_writer TO ana_writer; \
         SELECT evolve.bind_tenant('ana_writer', 'ana'); \
         CREATE ROLE any_reader LOGIN; GRANT evolve_reader TO any_reader;",
    )
    .unwrap();
    let seen = |c: &mut Client| -> (i64, i64, i64) {
        let r = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE user_id = 'ana'), count(*) FILTER (WHERE user_id = 'bob') \
                 FROM evolve.entities",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let mut ana = nodes[0].connect_as(DB, "ana_writer");
    assert_eq!(seen(&mut ana), (51, 1, 0));
    assert_eq!(
        count(
            &mut ana,
            "SELECT count(*) FROM evolve.observations WHERE user_id = 'bob'"
        ),
        0
    );
    let mut reader = nodes[0].connect_as(DB, "any_reader");
    reader
        .batch_execute(
            "BEGIN; SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL evolve.current_user_id = 'bob'",
        )
        .unwrap();
    assert_eq!(seen(&mut reader), (51, 0, 1));
    reader.batch_execute("COMMIT").unwrap();

    // An entity's delete takes its rows with it, on its shard; the aggregates, which no
    // trigger kept there, are rebuilt.
    c.batch_execute("DELETE FROM evolve.entities WHERE entity_key = 'k3' AND user_id IS NULL")
        .unwrap();
    assert!(count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()") > 0);
    c.batch_execute("CALL evolve.rebuild_aggregates()").unwrap();
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM evolve.verify_aggregates()"),
        0
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT sum(entity_count)::bigint FROM evolve.entity_counts WHERE entity_type = 'quake'"
        ),
        51,
        "k3 out"
    );
    shard_local(&mut c, "after the rebuild");
    assert_eq!(
        count(
            &mut c,
            "SELECT (SELECT count(*) FROM evolve.observations o WHERE NOT EXISTS \
                       (SELECT FROM evolve.entities e WHERE e.entity_id = o.entity_id)) \
                  + (SELECT count(*) FROM evolve.raw_fragments f WHERE entity_id = derived('quake', NULL, 'k3')) \
                  + (SELECT count(*) FROM evolve.embedding_queue q WHERE entity_id = derived('quake', NULL, 'k3'))"
        ),
        0
    );
}
