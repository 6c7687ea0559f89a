//! Read replicas: a real hot standby (pg_basebackup + streaming on loopback) serves the reads —
//! the schema cache following invalidations replayed from WAL, entities, semantic search, the
//! views — and refuses every write with 25006 and a hint, while its worker idles.

use std::time::{Duration, Instant};

use postgres::Client;

use crate::common::Cluster;

const SCHEMA: &str = r#"{"entity_type": "earthquake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number", "description": "Magnitude"}, "place": {"type": "string"}}}"#;

/// Waits until the standby has replayed everything the primary has written so far.
fn wait_replayed(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: bool = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .unwrap()
            .get(0);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not replay {lsn}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(c: &mut Client, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.query_one(sql, &[]).unwrap().get::<_, bool>(0) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The SQLSTATE and hint of a statement that must fail.
fn refusal(c: &mut Client, sql: &str) -> (String, String) {
    let e = c.batch_execute(sql).expect_err(sql);
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    (
        db.code().code().to_string(),
        db.hint().unwrap_or_default().to_string(),
    )
}

#[test]
fn a_hot_standby_serves_reads_and_refuses_writes() {
    let conf = [
        "evolve.worker_database = 'replica_db'",
        "evolve.worker_naptime = 100ms",
    ];
    let primary = Cluster::start("replica-primary", &conf);
    let db = primary.fresh_db("replica_db");
    let mut p = primary.connect_to(&db);
    p.execute("SELECT evolve.register_schema($1::text::jsonb)", &[&SCHEMA])
        .unwrap();
    p.batch_execute(
        "INSERT INTO evolve.inbox (entity_type, payload, entity_key) \
         SELECT 'earthquake', jsonb_build_object('mag', 2 + i / 10.0, 'place', \
                CASE WHEN i % 2 = 0 THEN 'near Anchorage, Alaska' ELSE 'off the coast of Chile' END, \
                'depth', i), 'q' || i \
         FROM generate_series(1, 40) i",
    )
    .unwrap();
    // The primary's worker embeds them after a change of the type's description.
    let job: i64 = p
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake",
                                            "description": "A seismic event with its place"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    wait_for(
        &mut p,
        &format!("SELECT status = 'completed' FROM evolve.schema_migration_jobs WHERE id = {job}"),
        "the primary's worker to complete the job",
    );

    let standby = primary.standby("replica-standby");
    let mut s = standby.connect_to(&db);
    assert!(s
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get::<_, bool>(0));
    wait_replayed(&mut p, &mut s);

    // Reads: the schema (cached in this standby session), entities, search, the views.
    let has_depth = |c: &mut Client| -> bool {
        c.query_one(
            "SELECT evolve.active_schema('earthquake')->'attributes' ? 'depth'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert!(!has_depth(&mut s));
    assert!(!has_depth(&mut s), "served from the cache");
    let hits_before: i64 = s
        .query_one("SELECT hits FROM evolve.cache_stats()", &[])
        .unwrap()
        .get(0);
    assert!(hits_before >= 1, "the second lookup was a cache hit");
    let place: String = s
        .query_one(
            "SELECT evolve.entity(entity_id)->>'place' FROM evolve.entities WHERE entity_key = 'q7'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(place, "off the coast of Chile");
    let hits: i64 = s
        .query_one(
            "SELECT count(*) FROM evolve.semantic_search('earthquake', 'Alaska', 5)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(hits, 5);
    let (entities, fragments): (i64, i64) = {
        let r = s
            .query_one(
                "SELECT (SELECT sum(entity_count)::bigint FROM evolve.entity_counts), \
                        (SELECT sum(sample_count)::bigint FROM evolve.raw_fragment_aggregates)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((entities, fragments), (40, 40), "the views on the standby");

    // A new version on the primary reaches the standby session's cache through the replayed
    // invalidation (the TTL backstop is five minutes away).
    p.batch_execute(
        r#"SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"depth": {"type": "integer"}}}')"#,
    )
    .unwrap();
    wait_replayed(&mut p, &mut s);
    assert!(
        has_depth(&mut s),
        "the cache followed the replayed invalidation"
    );

    // Every other reader function works on the standby too (no transaction id is taken).
    let mut failures = Vec::new();
    for sql in [
        "SELECT evolve.schema_at('earthquake', now())",
        "SELECT evolve.schema_diff('earthquake', 1, 2)",
        r#"SELECT * FROM evolve.check_compatibility('{"entity_type": "earthquake", "attributes": {"mag": {"type": "number"}}}')"#,
        "SELECT evolve.schema_diagram()",
        "SELECT evolve.field_confidence('earthquake', 'depth')",
        r#"SELECT evolve.migrate_payload('earthquake', '{"mag": 1}', 1)"#,
        "SELECT evolve.enriched_text(min(entity_id)) FROM evolve.entities",
        "SELECT evolve.embed('a strong earthquake near Anchorage')",
        r#"SELECT * FROM evolve.analyze_impact('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "x"}')"#,
        "SELECT * FROM evolve.cache_stats()",
        "SELECT * FROM evolve.verify_aggregates()",
        "SELECT evolve.current_user_id()",
        "SELECT count(*) FROM evolve.migration_progress",
        "SELECT count(*) FROM evolve.proposal_stats",
        "SELECT count(*) FROM evolve.schema_versions",
    ] {
        if let Err(e) = s.batch_execute(sql) {
            failures.push(format!("{sql}: {e:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "reads failing on a standby:\n{}",
        failures.join("\n")
    );

    // The standby's worker idles (several naps by now) instead of failing on the read-only
    // queue: no error in the standby's log so far.
    let log = standby.log();
    assert!(
        !log.contains("ERROR"),
        "the standby's log shows an error:\n{log}"
    );

    // Writes: refused up front with 25006 and a hint naming the primary.
    for sql in [
        "SELECT evolve.propose_schema('earthquake')",
        r#"SELECT evolve.ingest('earthquake', '{"mag": 1.0}')"#,
        r#"SELECT evolve.register_schema('{"entity_type": "other", "attributes": {"a": {"type": "string"}}}')"#,
        "SELECT evolve.approve_proposal(1)",
        "CALL evolve.run_reembedding()",
    ] {
        let (state, hint) = refusal(&mut s, sql);
        assert_eq!(state, "25006", "{sql}");
        assert!(hint.contains("primary"), "{sql}: hint {hint:?}");
    }
    // PostgreSQL itself refuses a write to a table (the inbox is unlogged: not even readable).
    let (state, _) = refusal(
        &mut s,
        "INSERT INTO evolve.inbox (entity_type, payload) VALUES ('earthquake', '{}')",
    );
    assert!(
        state == "25006" || state == "0A000",
        "inbox on a standby: {state}"
    );
}
