//! Governance under concurrency, and time travel against what was really served.

use std::sync::{Arc, Barrier};

use crate::common::Cluster;

/// 16 sessions × 200 registration attempts for one user at quota 10: exactly 10 schemas exist.
#[test]
fn quota_holds_under_16_concurrent_sessions() {
    let cluster = Arc::new(Cluster::start("quota-race", &[]));
    let db = cluster.fresh_db("quota_race");
    let mut admin = cluster.connect_to(&db);
    admin
        .execute("SELECT evolve.set_quota('racer', 10, 200)", &[])
        .unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|s| {
            let cluster = Arc::clone(&cluster);
            let barrier = Arc::clone(&barrier);
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = cluster.connect_to(&db);
                c.batch_execute("SET client_min_messages = error").unwrap();
                barrier.wait();
                let (mut ok, mut refused) = (0, 0);
                for i in 0..200 {
                    // Distinct type names: s{session}t{i}x — never near-duplicates of each other
                    // in a way that matters, since conflicts only delay activation.
                    let doc = format!(
                        r#"{{"entity_type":"s{s}t{i}x","attributes":{{"a":{{"type":"string"}}}}}}"#
                    );
                    match c.execute(
                        "SELECT evolve.register_schema($1::text::jsonb, 'racer')",
                        &[&doc],
                    ) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            let code = e.code().map(|c| c.code().to_string());
                            assert_eq!(code.as_deref(), Some("53400"), "unexpected error: {e}");
                            refused += 1;
                        }
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for h in handles {
        let (o, r) = h.join().unwrap();
        ok += o;
        refused += r;
    }
    assert_eq!(ok, 10);
    assert_eq!(refused, 16 * 200 - 10);
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM evolve.schemas WHERE user_id = 'racer'), \
                    (SELECT schema_count FROM evolve.user_schema_quotas WHERE user_id = 'racer')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 10);
    assert_eq!(row.get::<_, i32>(1), 10);
}

/// schema_at at each recorded instant equals what active_schema returned then.
#[test]
fn time_travel_matches_what_was_served() {
    let cluster = Cluster::start("time-travel", &[]);
    let db = cluster.fresh_db("time_travel");
    let mut a = cluster.connect_to(&db);
    a.execute(
        "SELECT evolve.register_schema('{\"entity_type\":\"quake\",\"attributes\":{\"mag\":{\"type\":\"number\"}}}')",
        &[],
    )
    .unwrap();
    a.execute("SELECT evolve.register_schema('{\"entity_type\":\"quake\",\"attributes\":{\"felt\":{\"type\":\"integer\"}}}', 'ana')", &[]).unwrap();
    let mut seen = Vec::new();
    for i in 0..25 {
        let patch = serde_json::json!({"description": format!("d{i}"), "attributes": {format!("a{i}"): {"type": "string"}}}).to_string();
        let user = if i % 3 == 0 { Some("ana") } else { None };
        a.execute(
            "SELECT evolve.update_schema_incremental('quake', $1::text::jsonb, $2)",
            &[&patch, &user],
        )
        .unwrap();
        for u in [None, Some("ana")] {
            let row = a
                .query_one(
                    "SELECT clock_timestamp()::text, evolve.active_schema('quake', $1)::text",
                    &[&u],
                )
                .unwrap();
            seen.push((u, row.get::<_, String>(0), row.get::<_, String>(1)));
        }
    }
    for (u, at, served) in seen {
        let then: String = a
            .query_one(
                "SELECT evolve.schema_at('quake', $1::text::timestamptz, $2)::text",
                &[&at, &u],
            )
            .unwrap()
            .get(0);
        assert_eq!(then, served, "at {at} for {u:?}");
    }
}
