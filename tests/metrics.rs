//! Cluster-wide metrics: evolve.metrics() counts committed work across sessions (a rollback
//! counts nothing), cache lookups of every backend, the worker's batches; monitoring roles may
//! read it, others may not; and the real prometheus-postgres-exporter, with the query file in
//! docs/, serves the values on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgres::Client;

use crate::common::{state, Cluster};

fn metric(c: &mut Client, name: &str) -> f64 {
    c.query_one(
        "SELECT value FROM evolve.metrics() WHERE name = $1",
        &[&format!("pg_evolve_{name}")],
    )
    .unwrap()
    .get(0)
}

const SCHEMA: &str = r#"{"entity_type": "quake", "description": "An earthquake",
  "attributes": {"mag": {"type": "number"}, "place": {"type": "string"}}}"#;

#[test]
fn metrics_count_committed_work_across_sessions() {
    let cluster = Cluster::start(
        "metrics",
        &[
            "evolve.worker_database = 'metrics'",
            "evolve.worker_naptime = 100ms",
        ],
    );
    let db = cluster.fresh_db("metrics");
    let mut c = cluster.connect_to(&db);
    let mut other = cluster.connect_to(&db);
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    let ingested = metric(&mut other, "payloads_ingested_total");
    let fragments = metric(&mut other, "fragments_written_total");

    // Committed work counts, in another session's view too; rolled-back work does not.
    c.batch_execute(
        "SELECT evolve.ingest('quake', jsonb_build_object('mag', i, 'place', 'p', 'sig', i), entity_key => 'q' || i) \
         FROM generate_series(1, 10) i",
    )
    .unwrap();
    c.batch_execute(r#"BEGIN; SELECT evolve.ingest('quake', '{"mag": 1, "sig": 2}'); ROLLBACK;"#)
        .unwrap();
    assert_eq!(
        metric(&mut other, "payloads_ingested_total") - ingested,
        10.0
    );
    assert_eq!(
        metric(&mut other, "fragments_written_total") - fragments,
        10.0
    );

    // The inbox's rejects.
    let rejected = metric(&mut other, "payloads_rejected_total");
    c.batch_execute(
        r#"SET client_min_messages = error;
           INSERT INTO evolve.inbox (entity_type, payload) VALUES ('nope', '{"a": 1}'), ('quake', '{"mag": 2}');"#,
    )
    .unwrap();
    assert_eq!(
        metric(&mut other, "payloads_rejected_total") - rejected,
        1.0
    );

    // Cache lookups of every backend: one miss, then hits, seen from another session.
    let (hits, misses) = (
        metric(&mut other, "schema_cache_hits_total"),
        metric(&mut other, "schema_cache_misses_total"),
    );
    let mut reader = cluster.connect_to(&db);
    reader
        .batch_execute(
            "SELECT evolve.active_schema('quake'); SELECT evolve.active_schema('quake'); \
             SELECT evolve.active_schema('quake')",
        )
        .unwrap();
    assert!(metric(&mut other, "schema_cache_misses_total") - misses >= 1.0);
    assert!(metric(&mut other, "schema_cache_hits_total") - hits >= 2.0);

    // Proposals, and the worker's embeddings and batches (gauges: the queue drains).
    let proposals = metric(&mut other, "proposals_created_total");
    c.batch_execute("SELECT count(*) FROM evolve.propose_schema('quake')")
        .unwrap();
    assert!(metric(&mut other, "proposals_created_total") - proposals >= 1.0);
    assert!(metric(&mut other, "proposals_pending") >= 1.0);
    let (embedded, batches) = (
        metric(&mut other, "embeddings_written_total"),
        metric(&mut other, "worker_batches_total"),
    );
    c.batch_execute(
        r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "A seismic event"}')"#,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&mut other, "embedding_queue_queued") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the worker did not drain the queue"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        metric(&mut other, "embeddings_written_total") - embedded,
        11.0
    );
    assert!(metric(&mut other, "worker_batches_total") - batches >= 1.0);
    assert!(metric(&mut other, "worker_busy_seconds_total") > 0.0);

    // Monitoring roles read it; other roles may not.
    c.batch_execute(
        "CREATE ROLE watcher LOGIN; GRANT pg_monitor TO watcher; CREATE ROLE nobody LOGIN; \
         GRANT evolve_reader TO nobody",
    )
    .unwrap();
    let mut watcher = cluster.connect_as(&db, "watcher");
    assert!(metric(&mut watcher, "payloads_ingested_total") >= 11.0);
    let mut nobody = cluster.connect_as(&db, "nobody");
    assert_eq!(
        state(&mut nobody, "SELECT * FROM evolve.metrics()"),
        "42501"
    );
}

/// Scrapes `/metrics` of the exporter on `port` (HTTP/1.0, one request).
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of `pg_evolve_counters_value{name="<name>", ...}` in a scrape.
fn scraped(body: &str, name: &str) -> Option<f64> {
    let label = format!("name=\"{name}\"");
    body.lines()
        .filter(|l| l.starts_with("pg_evolve_counters_value{") && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_prometheus_exporter_serves_the_metrics() {
    let bin = "/usr/bin/prometheus-postgres-exporter";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: scripts/setup.sh installs Debian's prometheus-postgres-exporter"
    );
    let cluster = Cluster::start("exporter", &[]);
    let db = cluster.fresh_db("exporter");
    let mut c = cluster.connect_to(&db);
    c.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let queries = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/prometheus-queries.yaml");
    let _exporter = Exporter(
        Command::new(bin)
            .args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                &format!("--extend.query-path={queries}"),
                "--disable-default-metrics",
                "--disable-settings-metrics",
            ])
            .env(
                "DATA_SOURCE_NAME",
                format!(
                    "postgresql://postgres@127.0.0.1:{}/{db}?sslmode=disable",
                    cluster.port
                ),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the exporter starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(v) = scrape(port).and_then(|b| scraped(&b, "pg_evolve_payloads_ingested_total"))
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no pg_evolve metrics on 127.0.0.1:{port}/metrics"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    c.batch_execute(
        "SELECT evolve.ingest('quake', jsonb_build_object('mag', i), entity_key => 'q' || i) \
         FROM generate_series(1, 7) i",
    )
    .unwrap();
    let body = scrape(port).expect("a second scrape");
    assert_eq!(
        scraped(&body, "pg_evolve_payloads_ingested_total"),
        Some(first + 7.0),
        "{body}"
    );
    assert!(
        body.contains("pg_evolve_gauges_value{"),
        "the gauges are served too"
    );
}
