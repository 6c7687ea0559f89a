//! Tenants and proposals: what one tenant's `propose_schema` (a SECURITY DEFINER function)
//! and the progress of re-embedding jobs let it see or change of another tenant. Every attack
//! runs as an ordinary LOGIN role (evolve_writer, evolve_reader, or evolve_admin without
//! superuser); the superuser only builds fixtures and simulates what an attacker could have
//! found (a fingerprint collision).

use postgres::Client;

use crate::common::{count, state, Cluster};

fn texts(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Creates LOGIN roles: writers with their tenants, and `boss`, an admin that is no superuser.
fn roles(su: &mut Client, writers: &[&str]) {
    for w in writers {
        su.batch_execute(&format!(
            "CREATE ROLE {w} LOGIN; GRANT evolve_writer TO {w};"
        ))
        .unwrap();
    }
    su.batch_execute("CREATE ROLE boss LOGIN; GRANT evolve_admin TO boss;")
        .unwrap();
}

/// A session of `role` with tenant `tenant` (none: the global scope).
fn session(cluster: &Cluster, db: &str, role: &str, tenant: Option<&str>) -> Client {
    let mut c = cluster.connect_as(db, role);
    c.batch_execute("SET client_min_messages = error").unwrap();
    if let Some(t) = tenant {
        c.batch_execute(&format!("SET evolve.current_user_id = '{t}'"))
            .unwrap();
    }
    c
}

/// Tenant A holds a pending proposal whose fingerprint equals one tenant B's run computes (as
/// an attacker searching keys would arrange). B's run neither returns nor rewrites A's row, B
/// gets its own, and approving B's changes only B's schema.
#[test]
fn a_fingerprint_collision_never_crosses_tenants() {
    let cluster = Cluster::start("tenant-fp", &[]);
    let db = cluster.fresh_db("tenant_fp");
    let mut su = cluster.connect_to(&db);
    roles(&mut su, &["app_a", "app_b"]);
    su.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}')"#,
    )
    .unwrap();
    let mut b = session(&cluster, &db, "app_b", Some("B"));
    b.batch_execute(
        r#"SELECT evolve.ingest('quake', '{"mag": 1, "color": "red"}', 'B', entity_key => 'b1');
           SELECT evolve.ingest('quake', '{"mag": 2, "color": "blue"}', 'B', entity_key => 'b2');
           SELECT count(*) FROM evolve.propose_schema('quake', 'B');"#,
    )
    .unwrap();
    // The collision: B's proposals are replaced by rows of tenant A with the very fingerprints
    // B's run computes, and A's own action and evidence.
    let planted = su
        .execute(
            r#"WITH b AS (DELETE FROM evolve.schema_proposals WHERE user_id = 'B' RETURNING *)
               INSERT INTO evolve.schema_proposals (kind, entity_type, user_id, name, safe_name, priority,
                   title, rationale, impact, sql_preview, action, fingerprint, evidence, measure)
               SELECT kind, entity_type, 'A', name, safe_name, priority, 'A private', 'A private', impact,
                      'A private', '{"op": "patch", "patch": {"attributes": {"a_private": {"type": "string"}}}}',
                      fingerprint, '{"planted": "A"}', measure
               FROM b"#,
            &[],
        )
        .unwrap();
    assert!(planted > 0, "B's first run proposed something");
    let a_rows = "SELECT coalesce(string_agg(p::text, ',' ORDER BY id), '') FROM evolve.schema_proposals p WHERE user_id = 'A'";
    let before: String = su.query_one(a_rows, &[]).unwrap().get(0);

    let returned = texts(
        &mut b,
        "SELECT coalesce(user_id, '<global>') FROM evolve.propose_schema('quake', 'B')",
    );
    assert!(!returned.is_empty(), "B's run returns its proposals");
    assert!(
        returned.iter().all(|u| u == "B"),
        "B's run returned rows of other scopes: {returned:?}"
    );
    let after: String = su.query_one(a_rows, &[]).unwrap().get(0);
    assert_eq!(after, before, "A's rows are unchanged by B's run");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM evolve.schema_proposals b JOIN evolve.schema_proposals a \
             ON a.fingerprint = b.fingerprint AND a.user_id = 'A' WHERE b.user_id = 'B'"
        ),
        planted as i64,
        "B has its own row for every fingerprint A's rows share"
    );
    // B cannot see A's rows either.
    assert_eq!(
        count(
            &mut b,
            "SELECT count(*) FROM evolve.schema_proposals WHERE user_id = 'A'"
        ),
        0
    );

    // An admin approving B's proposal changes B's schema, not A's.
    let mut boss = session(&cluster, &db, "boss", None);
    let ok: bool = boss
        .query_one(
            "SELECT success FROM evolve.approve_proposal((SELECT id FROM evolve.schema_proposals \
             WHERE user_id = 'B' AND kind = 'attribute' AND name = 'color'))",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ok);
    let (a_schema, b_schema): (String, String) = {
        let r = su
            .query_one(
                "SELECT evolve.active_schema('quake', 'A')::text, evolve.active_schema('quake', 'B')::text",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(
        !a_schema.contains("color") && !a_schema.contains("a_private"),
        "{a_schema}"
    );
    assert!(b_schema.contains("color"), "{b_schema}");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM evolve.schema_proposals WHERE user_id = 'A' AND status <> 'pending'"
        ),
        0
    );
}

/// Alice's private type and its keys are never named or confirmed by what another scope's run
/// proposes: neither by a relationship through a key's values, nor by shared entity keys, nor
/// as the name a new type conflicts with; and a global proposal (readable by every reader)
/// draws on global rows only, even in an admin's run.
#[test]
fn proposals_never_name_or_confirm_another_tenants_data() {
    let cluster = Cluster::start("tenant-evidence", &[]);
    let db = cluster.fresh_db("tenant_evidence");
    let mut su = cluster.connect_to(&db);
    roles(&mut su, &["alice", "bob"]);
    su.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "shipment", "attributes": {"weight": {"type": "number"}}}');
           SELECT evolve.ingest('shipment', jsonb_build_object('weight', i, 'ref', 'zk-' || i), entity_key => 'zk-' || i)
           FROM generate_series(1, 4) i;"#,
    )
    .unwrap();
    let mut alice = session(&cluster, &db, "alice", Some("A"));
    alice
        .batch_execute(
            r#"SELECT evolve.register_schema('{"entity_type": "zebra_secrets", "attributes": {"codename": {"type": "string"}}}', 'A');
               SELECT evolve.ingest('zebra_secrets', '{"codename": "x"}', 'A', entity_key => 'zk-' || i)
               FROM generate_series(1, 4) i;"#,
        )
        .unwrap();
    // Bob's shipments refer to (and share the keys of) Alice's entities; the inbox rejects his
    // rows of a type whose name is close to hers.
    let mut bob = session(&cluster, &db, "bob", Some("B"));
    bob.batch_execute(
        r#"SELECT evolve.ingest('shipment', jsonb_build_object('weight', i, 'ref', 'zk-' || i), 'B', entity_key => 'zk-' || i)
           FROM generate_series(1, 4) i;
           INSERT INTO evolve.inbox (entity_type, payload, user_id) VALUES ('zebra_secret', '{"codename": "y"}', 'B');"#,
    )
    .unwrap();
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM evolve.inbox_rejects WHERE user_id = 'B' AND sqlstate = '42704'"
        ),
        1,
        "the fixture rejects Bob's unknown type"
    );

    let rows = texts(
        &mut bob,
        "SELECT row_to_json(p)::text FROM evolve.propose_schema(NULL, 'B') p",
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(r#""kind":"attribute""#) && r.contains(r#""name":"ref""#)),
        "Bob's key ref is proposed as a plain attribute: {rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(r#""kind":"entity_type""#) && r.contains("zebra_secret")),
        "Bob's rejected type is proposed: {rows:#?}"
    );
    for r in &rows {
        assert!(
            !r.contains("zebra_secrets"),
            "Bob's run names Alice's type: {r}"
        );
        assert!(
            !r.contains(r#""kind":"relationship""#),
            "Bob's run relates his data to another scope's: {r}"
        );
    }
    // Nothing Bob can read afterwards names it either (proposals, their history, conflicts).
    for sql in [
        "SELECT count(*) FROM evolve.schema_proposals p WHERE p::text LIKE '%zebra_secrets%'",
        "SELECT count(*) FROM evolve.schema_evolution_history h WHERE h::text LIKE '%zebra_secrets%'",
        "SELECT count(*) FROM evolve.entity_conflicts c WHERE c::text LIKE '%zebra_secrets%'",
    ] {
        assert_eq!(count(&mut bob, sql), 0, "{sql}");
    }

    // A global proposal is readable by every reader: even an admin's run builds it from global
    // rows only.
    let mut boss = session(&cluster, &db, "boss", None);
    let global = texts(
        &mut boss,
        "SELECT row_to_json(p)::text FROM evolve.propose_schema('shipment') p",
    );
    assert!(
        global.iter().any(|r| r.contains(r#""name":"ref""#)),
        "the global run proposes ref: {global:#?}"
    );
    for r in &global {
        assert!(
            !r.contains("zebra_secrets"),
            "a global proposal names Alice's type: {r}"
        );
        assert!(
            !r.contains(r#""kind":"relationship""#),
            "a global proposal relates global data to a tenant's: {r}"
        );
    }
}

/// The settings that shape what everybody's proposals contain are not a writer's (nor an
/// admin's unless a superuser grants it).
#[test]
fn writers_cannot_set_proposal_shaping_settings() {
    let cluster = Cluster::start("tenant-gucs", &[]);
    let db = cluster.fresh_db("tenant_gucs");
    let mut su = cluster.connect_to(&db);
    roles(&mut su, &["app_a"]);
    let mut a = session(&cluster, &db, "app_a", Some("A"));
    let mut boss = session(&cluster, &db, "boss", None);
    for (name, value) in [
        ("evolve.promotion_min_users", "1"),
        ("evolve.min_attribute_presence", "0"),
        ("evolve.similarity_threshold", "1"),
    ] {
        for c in [&mut a, &mut boss] {
            assert_eq!(
                state(c, &format!("SET {name} = {value}")),
                "42501",
                "{name}"
            );
            assert_eq!(
                state(c, &format!("BEGIN; SET LOCAL {name} = {value}; COMMIT")),
                "42501",
                "SET LOCAL {name}"
            );
            c.batch_execute("ROLLBACK").unwrap();
            assert_eq!(
                state(c, &format!("SELECT set_config('{name}', '{value}', false)")),
                "42501",
                "set_config {name}"
            );
        }
        assert_eq!(state(&mut su, &format!("SET {name} = {value}")), "ok");
    }
    // A superuser may hand one to the admins.
    su.batch_execute("GRANT SET ON PARAMETER evolve.promotion_min_users TO evolve_admin")
        .unwrap();
    assert_eq!(state(&mut boss, "SET evolve.promotion_min_users = 2"), "ok");
    assert_eq!(state(&mut a, "SET evolve.promotion_min_users = 2"), "42501");
    su.batch_execute("REVOKE SET ON PARAMETER evolve.promotion_min_users FROM evolve_admin")
        .unwrap();
}

/// promote_to_global proposals gather several tenants' own schemas: users and field names.
/// Only an admin's run computes them, and only admins read them (rows, stats, history).
#[test]
fn promotion_evidence_reaches_admins_only() {
    let cluster = Cluster::start("tenant-promote", &[]);
    let db = cluster.fresh_db("tenant_promote");
    let mut su = cluster.connect_to(&db);
    roles(&mut su, &["app_a", "app_b", "app_c", "glob"]);
    su.batch_execute(
        r#"CREATE ROLE viewer LOGIN; GRANT evolve_reader TO viewer;
           SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           GRANT SET ON PARAMETER evolve.promotion_min_users TO boss;"#,
    )
    .unwrap();
    for (role, t) in [("app_a", "A"), ("app_b", "B"), ("app_c", "C")] {
        let mut c = session(&cluster, &db, role, Some(t));
        c.batch_execute(&format!(
            r#"SELECT evolve.register_schema('{{"entity_type": "quake", "attributes": {{"shared_field": {{"type": "integer"}}, "private_{t}": {{"type": "string"}}}}}}', '{t}')"#
        ))
        .unwrap();
    }
    let mut boss = session(&cluster, &db, "boss", None);
    boss.batch_execute("SET evolve.promotion_min_users = 2")
        .unwrap();
    let promoted = texts(
        &mut boss,
        "SELECT row_to_json(p)::text FROM evolve.propose_schema('quake') p WHERE kind = 'promote_to_global'",
    );
    assert_eq!(promoted.len(), 1, "{promoted:#?}");
    assert!(promoted[0].contains("shared_field") && promoted[0].contains("sample_users"));
    let id: i64 = boss
        .query_one(
            "SELECT id FROM evolve.schema_proposals WHERE kind = 'promote_to_global'",
            &[],
        )
        .unwrap()
        .get(0);

    // Every non-admin: a tenant, a writer of the global scope, a reader.
    let mut others = vec![
        ("app_a", session(&cluster, &db, "app_a", Some("A"))),
        ("glob", session(&cluster, &db, "glob", None)),
        ("viewer", session(&cluster, &db, "viewer", None)),
    ];
    for (who, c) in &mut others {
        for sql in [
            "SELECT count(*) FROM evolve.schema_proposals WHERE kind = 'promote_to_global'".to_string(),
            "SELECT count(*) FROM evolve.schema_proposals p WHERE p::text LIKE '%sample_users%' OR p::text LIKE '%shared_field%'".to_string(),
            "SELECT count(*) FROM evolve.proposal_stats WHERE kind = 'promote_to_global'".to_string(),
            "SELECT count(*) FROM evolve.knowledge_patterns WHERE kind = 'promote_to_global'".to_string(),
            format!("SELECT count(*) FROM evolve.schema_proposals WHERE id = {id}"),
        ] {
            assert_eq!(count(c, &sql), 0, "{who}: {sql}");
        }
        assert_eq!(
            state(c, "SET evolve.promotion_min_users = 1"),
            "42501",
            "{who}"
        );
    }
    // The global scope's writer runs the detection itself: nothing of the tenants comes back.
    let glob = &mut others[1].1;
    let rows = texts(
        glob,
        "SELECT row_to_json(p)::text FROM evolve.propose_schema('quake') p",
    );
    for r in &rows {
        assert!(
            !r.contains("promote_to_global")
                && !r.contains("shared_field")
                && !r.contains("private_"),
            "{r}"
        );
    }
    // The admin's row is untouched by that run.
    assert_eq!(
        count(
            &mut su,
            &format!("SELECT count(*) FROM evolve.schema_proposals WHERE id = {id} AND status = 'pending'")
        ),
        1
    );

    // Approved, its history follows it.
    let ok: bool = boss
        .query_one(
            &format!("SELECT success FROM evolve.approve_proposal({id})"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ok);
    let history =
        format!("SELECT count(*) FROM evolve.schema_evolution_history WHERE proposal_id = {id}");
    assert_eq!(count(&mut boss, &history), 1);
    for (who, c) in &mut others {
        assert_eq!(count(c, &history), 0, "{who} reads the promotion's history");
    }
}

/// Job progress counts only the entities the session may see: its tenant's and the global
/// ones. The jobs' own counters are not readable outside evolve_admin.
#[test]
fn migration_progress_counts_only_visible_entities() {
    let cluster = Cluster::start("tenant-progress", &[]);
    let db = cluster.fresh_db("tenant_progress");
    let mut su = cluster.connect_to(&db);
    roles(&mut su, &["app_a", "app_b"]);
    su.batch_execute(
        r#"CREATE ROLE viewer LOGIN; GRANT evolve_reader TO viewer;
           SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           SELECT evolve.ingest('quake', '{"mag": 1}', entity_key => 'g1');"#,
    )
    .unwrap();
    for (role, t, n) in [("app_a", "A", 2), ("app_b", "B", 3)] {
        let mut c = session(&cluster, &db, role, Some(t));
        c.batch_execute(&format!(
            r#"SELECT evolve.ingest('quake', jsonb_build_object('mag', i), '{t}', entity_key => '{t}' || i)
               FROM generate_series(1, {n}) i"#
        ))
        .unwrap();
    }
    let mut boss = session(&cluster, &db, "boss", None);
    let job: i64 = boss
        .query_one(
            r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "seismic"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    let progress = format!(
        "SELECT processed_entities, total_entities, parked, error_count, unchanged_entities \
         FROM evolve.migration_progress WHERE job_id = {job}"
    );
    let read = |c: &mut Client| -> (i64, i64, i64, i64, Option<i64>) {
        let r = c.query_one(&progress, &[]).unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
    };
    let mut a = session(&cluster, &db, "app_a", Some("A"));
    let mut viewer = session(&cluster, &db, "viewer", None);
    assert_eq!(read(&mut boss), (0, 6, 0, 0, Some(0)));
    assert_eq!(
        read(&mut a),
        (0, 3, 0, 0, None),
        "A: its 2 and the global one"
    );
    assert_eq!(read(&mut viewer), (0, 1, 0, 0, None), "the global one");
    boss.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(read(&mut boss), (6, 6, 0, 0, Some(0)));
    assert_eq!(read(&mut a), (3, 3, 0, 0, None));
    assert_eq!(read(&mut viewer), (1, 1, 0, 0, None));
    let percent: String = a
        .query_one(
            &format!("SELECT percent::text FROM evolve.migration_progress WHERE job_id = {job}"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(percent, "100.0");

    // The counters themselves are the admins'; the rest of a job is readable.
    for c in [&mut a, &mut viewer] {
        for col in [
            "total_entities",
            "processed_entities",
            "unchanged_entities",
            "error_count",
            "parked_entities",
        ] {
            assert_eq!(
                state(
                    c,
                    &format!("SELECT {col} FROM evolve.schema_migration_jobs")
                ),
                "42501",
                "{col}"
            );
        }
        assert_eq!(
            state(
                c,
                "SELECT id, status, kind, entity_types, priority FROM evolve.schema_migration_jobs"
            ),
            "ok"
        );
    }
    assert_eq!(
        count(
            &mut boss,
            "SELECT total_entities FROM evolve.schema_migration_jobs"
        ),
        6
    );
    // The dry run counts visible entities too, and its estimate reads the progress view.
    let impact = r#"SELECT affected_entities FROM evolve.analyze_impact('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "x"}')"#;
    assert_eq!(count(&mut a, impact), 3);
    assert_eq!(count(&mut boss, impact), 6);
    // Search reads only the jobs' status columns: it works for a reader.
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.semantic_search('quake', 'seismic', 100)"
        ),
        3
    );
}

/// The 0.6.0 surfaces as ordinary roles: a tenant's writer imports schemas only into its own
/// scope and reads only its own effective schema through `export_schema`; projections are
/// created by admins only, and a tenant's reader sees its own rows and the global ones there,
/// never another tenant's.
#[test]
fn interop_and_projections_respect_tenants() {
    let cluster = Cluster::start("tenants-060", &[]);
    let db = cluster.fresh_db("tenants_060");
    let mut su = cluster.connect_to(&db);
    roles(&mut su, &["ann_w", "ben_w"]);
    su.batch_execute(
        r#"CREATE ROLE ann_r LOGIN; GRANT evolve_reader TO ann_r;
           SELECT evolve.bind_tenant('ann_w', 'ann'); SELECT evolve.bind_tenant('ben_w', 'ben');
           SELECT evolve.bind_tenant('ann_r', 'ann');
           SELECT evolve.register_schema('{"entity_type": "shop", "attributes": {"name": {"type": "string"}}}');"#,
    )
    .unwrap();
    let doc = r#"'{"title": "shop", "type": "object", "properties": {"name": {"type": "string"}, "secret_ben": {"type": "string"}}}'"#;
    let mut ben = session(&cluster, &db, "ben_w", Some("ben"));
    let mut ann = session(&cluster, &db, "ann_w", Some("ann"));
    // Ben imports into his own scope; not into Ann's, not globally.
    assert_eq!(
        state(
            &mut ben,
            &format!("SELECT evolve.import_schema({doc}, 'jsonschema', NULL, 'ben')")
        ),
        "ok"
    );
    assert_eq!(
        state(
            &mut ben,
            &format!("SELECT evolve.import_schema({doc}, 'jsonschema', NULL, 'ann')")
        ),
        "42501"
    );
    assert_eq!(
        state(&mut ben, &format!("SELECT evolve.import_schema({doc})")),
        "42501"
    );
    // Ann's export never shows Ben's field; asking for Ben's scope is refused.
    let exported = texts(
        &mut ann,
        "SELECT evolve.export_schema('shop', 'jsonschema', 'ann')::text",
    );
    assert!(!exported[0].contains("secret_ben"), "{exported:?}");
    assert_eq!(
        state(
            &mut ann,
            "SELECT evolve.export_schema('shop', 'avro', 'ben')"
        ),
        "42501"
    );
    // Projections: admins only.
    assert_eq!(
        state(&mut ann, "SELECT evolve.create_projection('shop')"),
        "42501"
    );
    su.batch_execute(
        r#"SELECT evolve.ingest('shop', '{"name": "global"}', entity_key => 'g');
           SELECT evolve.ingest('shop', '{"name": "ann shop"}', 'ann', entity_key => 'a');
           SELECT evolve.ingest('shop', '{"name": "ben shop"}', 'ben', entity_key => 'b');
           SELECT evolve.create_projection('shop');"#,
    )
    .unwrap();
    let mut reader = session(&cluster, &db, "ann_r", Some("ann"));
    assert_eq!(
        texts(
            &mut reader,
            "SELECT name FROM evolve_data.shop ORDER BY name"
        ),
        ["ann shop", "global"]
    );
    // A writer cannot drop it, nor write into it.
    assert_eq!(
        state(&mut ben, "SELECT evolve.drop_projection('shop')"),
        "42501"
    );
    assert_eq!(state(&mut ben, "DELETE FROM evolve_data.shop"), "42501");
    assert_eq!(count(&mut su, "SELECT count(*) FROM evolve_data.shop"), 3);
}

/// The 0.7.0 surfaces as ordinary roles: a tenant's view of embedding status counts its own and
/// global entities only and its weight row only; policies, weights, profiles and the health
/// check are for admins (an admin that is no superuser sets them).
#[test]
fn embedding_status_is_tenant_scoped_and_its_settings_are_for_admins() {
    let cluster = Cluster::start("tenant-embeddings", &[]);
    let db = cluster.fresh_db("tenant_embeddings");
    let mut su = cluster.connect_to(&db);
    roles(&mut su, &["app_a", "app_b"]);
    su.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           SELECT evolve.ingest('quake', jsonb_build_object('mag', i), 'A', entity_key => 'a' || i) FROM generate_series(1, 3) i;
           SELECT evolve.ingest('quake', jsonb_build_object('mag', i), 'B', entity_key => 'b' || i) FROM generate_series(1, 5) i;
           SELECT evolve.ingest('quake', '{"mag": 1}', entity_key => 'g1');"#,
    )
    .unwrap();
    let mut boss = session(&cluster, &db, "boss", None);
    assert_eq!(
        count(&mut boss, "SELECT evolve.set_tenant_weight('B', 4)::int8"),
        4
    );
    boss.batch_execute("SELECT evolve.set_embedding_policy('quake', 'on_change')")
        .unwrap();
    let mut a = session(&cluster, &db, "app_a", Some("A"));
    assert_eq!(
        count(
            &mut a,
            "SELECT entities + queued FROM evolve.embedding_status WHERE entity_type = 'quake'"
        ),
        8,
        "A's 3 entities and the global one, each queued"
    );
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM evolve.tenant_weights"),
        0,
        "B's weight is not A's to see"
    );
    for sql in [
        "SELECT evolve.set_tenant_weight('A', 1000)",
        "SELECT evolve.set_embedding_policy('quake', 'manual')",
        "SELECT evolve.set_embedding_profile('quake', 'minilm')",
        "SELECT evolve.create_embedding_profile('mine', 384, 'minilm')",
        "SELECT * FROM evolve.health_check()",
    ] {
        assert_eq!(state(&mut a, sql), "42501", "{sql}");
    }
    assert_eq!(
        count(&mut boss, "SELECT count(*) FROM evolve.health_check()"),
        8
    );
}
