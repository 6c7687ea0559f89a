//! Cross-backend, transactional invalidation of the schema cache.

use postgres::Client;

use crate::common::Cluster;

fn description(c: &mut Client, entity_type: &str) -> Option<String> {
    c.query_one(
        "SELECT evolve.active_schema($1)->>'description'",
        &[&entity_type],
    )
    .unwrap()
    .get(0)
}

fn hits(c: &mut Client) -> i64 {
    c.query_one("SELECT hits FROM evolve.cache_stats()", &[])
        .unwrap()
        .get(0)
}

fn set_description(c: &mut Client, entity_type: &str, text: &str) {
    let patch = serde_json::json!({ "description": text }).to_string();
    c.execute(
        "SELECT evolve.update_schema_incremental($1, $2::text::jsonb)",
        &[&entity_type, &patch],
    )
    .unwrap();
}

/// Session B caches; session A commits a change → B's next call sees it. A changes and rolls
/// back → B still sees the committed schema. 1,000 alternations, 0 stale reads.
#[test]
fn two_sessions_never_read_stale() {
    let cluster = Cluster::start("cache-two-sessions", &[]);
    let db = cluster.fresh_db("two_sessions");
    let mut a = cluster.connect_to(&db);
    let mut b = cluster.connect_to(&db);
    a.execute(
        r#"SELECT evolve.register_schema('{"entity_type":"quake","description":"v0","attributes":{"mag":{"type":"number"}}}')"#,
        &[],
    )
    .unwrap();

    let mut committed = "v0".to_string();
    let mut stale = 0;
    for i in 1..=1000 {
        // B reads twice: the second read must be a cache hit, so the cache is really in play.
        assert_eq!(
            description(&mut b, "quake").as_deref(),
            Some(committed.as_str())
        );
        let before = hits(&mut b);
        if description(&mut b, "quake").as_deref() != Some(committed.as_str()) {
            stale += 1;
        }
        assert_eq!(
            hits(&mut b),
            before + 1,
            "round {i}: the second read was not a hit"
        );

        if i % 2 == 0 {
            committed = format!("v{i}");
            set_description(&mut a, "quake", &committed);
        } else {
            let mut tx = a.transaction().unwrap();
            let patch = serde_json::json!({ "description": format!("aborted {i}") }).to_string();
            tx.execute(
                "SELECT evolve.update_schema_incremental('quake', $1::text::jsonb)",
                &[&patch],
            )
            .unwrap();
            // Uncommitted: B must not see it, even though A's backend already changed.
            if description(&mut b, "quake").as_deref() != Some(committed.as_str()) {
                stale += 1;
            }
            tx.rollback().unwrap();
        }
        // A's own cache is correct too.
        if description(&mut a, "quake").as_deref() != Some(committed.as_str()) {
            stale += 1;
        }
        if description(&mut b, "quake").as_deref() != Some(committed.as_str()) {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "stale reads");
    let invalidations: i64 = b
        .query_one("SELECT invalidations FROM evolve.cache_stats()", &[])
        .unwrap()
        .get(0);
    assert!(invalidations >= 500, "B saw {invalidations} invalidations");
}

/// B holds cached schemas and sits idle while A commits a change and then floods the shared
/// invalidation queue with thousands of catalog changes, so B must catch up or be reset.
#[test]
fn invalidation_survives_a_flooded_queue() {
    let cluster = Cluster::start("cache-flood", &[]);
    let db = cluster.fresh_db("flood");
    let mut a = cluster.connect_to(&db);
    let mut b = cluster.connect_to(&db);
    for t in ["quake", "place", "network"] {
        a.execute(
            "SELECT evolve.register_schema(jsonb_build_object('entity_type', $1::text, 'description', 'v0'))",
            &[&t],
        )
        .unwrap();
        assert_eq!(description(&mut b, t).as_deref(), Some("v0"));
    }
    let before: i64 = b
        .query_one("SELECT invalidations FROM evolve.cache_stats()", &[])
        .unwrap()
        .get(0);
    for round in 1..=3 {
        let text = format!("v{round}");
        set_description(&mut a, "quake", &text);
        // Thousands of catalog invalidations, far more than the queue holds (4,096 messages).
        a.batch_execute(
            "DO $$ BEGIN FOR i IN 1..3000 LOOP \
               EXECUTE format('CREATE TABLE flood_%s (a int)', i); \
               EXECUTE format('DROP TABLE flood_%s', i); \
             END LOOP; END $$",
        )
        .unwrap();
        assert_eq!(
            description(&mut b, "quake").as_deref(),
            Some(text.as_str()),
            "round {round}"
        );
        assert_eq!(description(&mut b, "place").as_deref(), Some("v0"));
    }
    let after: i64 = b
        .query_one("SELECT invalidations FROM evolve.cache_stats()", &[])
        .unwrap()
        .get(0);
    assert!(after > before, "B's cache was never invalidated");
}
