//! Mixed load with pgbench: 8 clients ingest (directly and through the inbox), change user
//! schemas, propose, apply schema changes and read schemas checking they are never stale,
//! while the worker re-embeds. Afterwards the aggregates are exact and every job is complete.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Cluster;

const SECONDS: &str = "20";

#[test]
fn mixed_pgbench_load_keeps_aggregates_jobs_and_schemas_right() {
    let cluster = Cluster::start(
        "load",
        &[
            "evolve.worker_database = 'load_db'",
            "evolve.worker_naptime = 100ms",
        ],
    );
    let db = cluster.fresh_db("load_db");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "description": "A seismic event",
               "attributes": {"mag": {"type": "number", "merge_policy": "max"}}}');
           SELECT evolve.set_quota('u' || i, 10, 1000) FROM generate_series(1, 5) i;
           SELECT evolve.register_schema(jsonb_build_object('entity_type', 'quake', 'attributes',
               jsonb_build_object('f0', jsonb_build_object('type', 'number'))), 'u' || i)
           FROM generate_series(1, 5) i;"#,
    )
    .unwrap();

    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/load");
    let out = Command::new(format!(
        "{}/pgbench",
        crate::common::pg_config_dir("bindir")
    ))
    .args([
        "-n",
        "-c",
        "8",
        "-j",
        "2",
        "-T",
        SECONDS,
        "-h",
        "127.0.0.1",
        "-p",
        &cluster.port.to_string(),
        "-U",
        "postgres",
        "-f",
        &format!("{scripts}/ingest.sql@4"),
        "-f",
        &format!("{scripts}/register.sql@1"),
        "-f",
        &format!("{scripts}/propose.sql@1"),
        "-f",
        &format!("{scripts}/reembed.sql@1"),
        "-f",
        &format!("{scripts}/read.sql@3"),
        &db,
    ])
    .output()
    .expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("aborted"),
        "pgbench failed:\n{stdout}\n{stderr}"
    );
    let processed: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse().ok())
        .unwrap_or(0);
    assert!(processed > 100, "the load ran: {stdout}");
    eprintln!("{stdout}");

    // Aggregates equal a recompute.
    let broken: i64 = c
        .query_one("SELECT count(*) FROM evolve.verify_aggregates()", &[])
        .unwrap()
        .get(0);
    assert_eq!(broken, 0, "aggregates drifted under load");
    // Every job completes: nothing queued is lost, nothing parked.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let open: i64 = c
            .query_one(
                "SELECT count(*) FROM evolve.schema_migration_jobs WHERE status <> 'completed'",
                &[],
            )
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} jobs never completed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM evolve.schema_migration_jobs), \
                    (SELECT count(*) FROM evolve.schema_migration_jobs \
                     WHERE processed_entities + parked_entities <> total_entities OR parked_entities > 0), \
                    (SELECT count(*) FROM evolve.embedding_queue)",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, i64>(0) > 0, "the load applied changes");
    assert_eq!(row.get::<_, i64>(1), 0, "a job lost or parked entities");
    assert_eq!(row.get::<_, i64>(2), 0, "the queue drained");
    assert!(
        !cluster.log().contains("terminated by signal"),
        "a backend crashed"
    );
}
