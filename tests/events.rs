//! Change events: NOTIFY evolve_schema, evolve_proposal and evolve_job, delivered at commit
//! (never for a rollback), user scopes only when evolve.notify_user_scopes is on, and the
//! opt-in NOTIFY pgrst after an approval that creates a table.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::Value;

use crate::common::Cluster;

/// The notifications the listening session has received so far: (channel, JSON payload).
fn received(listener: &mut Client) -> Vec<(String, Value)> {
    // Notifications arrive with the next round trip.
    listener.batch_execute("SELECT 1").unwrap();
    let mut out = Vec::new();
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_millis(300));
    while let Ok(Some(note)) = it.next() {
        let payload =
            serde_json::from_str(note.payload()).unwrap_or(Value::String(note.payload().into()));
        out.push((note.channel().to_string(), payload));
    }
    out
}

fn on(events: &[(String, Value)], channel: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|(c, _)| c == channel)
        .map(|(_, p)| p.clone())
        .collect()
}

#[test]
fn changes_are_announced_at_commit() {
    let cluster = Cluster::start("events", &[]);
    let db = cluster.fresh_db("events");
    let mut listener = cluster.connect_to(&db);
    listener
        .batch_execute(
            "LISTEN evolve_schema; LISTEN evolve_proposal; LISTEN evolve_job; LISTEN pgrst",
        )
        .unwrap();
    let mut c = cluster.connect_to(&db);

    // A version registered in a transaction that rolls back announces nothing; one that
    // commits announces its scope and version.
    c.batch_execute(
        r#"BEGIN;
           SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           ROLLBACK;"#,
    )
    .unwrap();
    assert!(on(&received(&mut listener), "evolve_schema").is_empty());
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}')"#,
    )
    .unwrap();
    let schema = on(&received(&mut listener), "evolve_schema");
    assert_eq!(schema.len(), 1, "{schema:?}");
    assert_eq!(schema[0]["entity_type"], "quake");
    assert_eq!(schema[0]["version"], 1);
    assert!(schema[0]["user_id"].is_null());

    // A user scope's version is not announced unless the superuser says so.
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"felt": {"type": "integer"}}}', 'ana')"#,
    )
    .unwrap();
    assert!(on(&received(&mut listener), "evolve_schema").is_empty());
    c.batch_execute(
        r#"SET evolve.notify_user_scopes = on;
           SELECT evolve.update_schema_incremental('quake', '{"attributes": {"depth": {"type": "number"}}}', 'ana');
           RESET evolve.notify_user_scopes;"#,
    )
    .unwrap();
    let schema = on(&received(&mut listener), "evolve_schema");
    assert_eq!(schema.len(), 1, "{schema:?}");
    assert_eq!(schema[0]["user_id"], "ana");
    assert_eq!(schema[0]["version"], 2);

    // Proposals: created, then approved; a job: created, then its progress and completion.
    c.batch_execute(
        r#"SELECT evolve.ingest('quake', jsonb_build_object('mag', i, 'sig', i * 10), entity_key => 'q' || i)
           FROM generate_series(1, 30) i;
           SELECT count(*) FROM evolve.propose_schema('quake');"#,
    )
    .unwrap();
    let proposals = on(&received(&mut listener), "evolve_proposal");
    assert!(
        proposals
            .iter()
            .any(|p| p["event"] == "created" && p["name"] == "sig" && p["kind"] == "attribute"),
        "{proposals:?}"
    );
    c.batch_execute(
        "SELECT evolve.approve_proposal(id) FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'sig'",
    )
    .unwrap();
    let events = received(&mut listener);
    let approved = on(&events, "evolve_proposal");
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["event"], "approved");
    assert_eq!(
        on(&events, "evolve_schema").len(),
        1,
        "the version approval wrote"
    );

    c.batch_execute(
        r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "An earthquake"}')"#,
    )
    .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let jobs = on(&received(&mut listener), "evolve_job");
    assert!(
        jobs.iter().any(|j| j["status"] == "queued"),
        "created: {jobs:?}"
    );
    let done: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "completed").collect();
    assert_eq!(done.len(), 1, "completed once: {jobs:?}");
    assert_eq!(done[0]["processed_entities"], 30);
    // Throttled: at most one event per tenth of progress, plus the status changes.
    assert!(jobs.len() <= 14, "{} job events", jobs.len());

    // PostgREST's reload, opt-in, after an approval that creates a table.
    c.batch_execute(
        r#"SELECT count(*) FROM evolve.propose_schema('quake');
           SET evolve.notify_pgrst = on;
           SELECT evolve.approve_proposal(id) FROM evolve.schema_proposals WHERE kind = 'table' AND entity_type = 'quake';
           RESET evolve.notify_pgrst;"#,
    )
    .unwrap();
    let pgrst = on(&received(&mut listener), "pgrst");
    assert_eq!(pgrst, vec![Value::String("reload schema".into())]);
}
