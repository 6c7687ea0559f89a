//! The audit trail names the calling role, not the extension owner; a role bound to a tenant
//! (evolve.bind_tenant) cannot act as another, whatever it sets evolve.current_user_id to.
//! Every role here is an ordinary LOGIN role; only the fixture is set up by the superuser.

use postgres::Client;

use crate::common::{count, state, text, Cluster};

/// The error of a statement that must fail: (SQLSTATE, message, hint).
fn error(c: &mut Client, sql: &str) -> (String, String, String) {
    let e = c.batch_execute(sql).expect_err(&format!("{sql} must fail"));
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {e}"));
    (
        db.code().code().to_string(),
        db.message().to_string(),
        db.hint().unwrap_or_default().to_string(),
    )
}

#[test]
fn audit_columns_name_the_calling_role() {
    let cluster = Cluster::start("audit", &[]);
    let db = cluster.fresh_db("audit");
    let mut su = cluster.connect_to(&db);
    su.batch_execute(
        "CREATE ROLE boss LOGIN; CREATE ROLE deputy NOLOGIN; CREATE ROLE feeder LOGIN;
         GRANT evolve_admin TO boss, deputy; GRANT deputy TO boss; GRANT evolve_writer TO feeder;",
    )
    .unwrap();
    let owner = text(
        &mut su,
        "SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'pg_evolve'",
    )
    .unwrap();
    assert_eq!(owner, "postgres");

    let mut boss = cluster.connect_as(&db, "boss");
    assert_eq!(
        text(&mut boss, "SELECT evolve._calling_role()").as_deref(),
        Some("boss")
    );
    boss.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
           SELECT evolve.update_schema_incremental('quake', '{"attributes": {"depth": {"type": "number", "default": 0}}}');
           SELECT evolve.register_migration('quake', 1, 2, '[{"add": {"key": "depth", "default": 1}}]');"#,
    )
    .unwrap();
    // Versions and migrations: written inside SECURITY DEFINER functions, recorded as boss.
    let history: Vec<(i32, String)> = boss
        .query(
            "SELECT version, created_by FROM evolve.schema_history WHERE entity_type = 'quake' ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(history, vec![(1, "boss".into()), (2, "boss".into())]);
    assert_eq!(
        text(
            &mut boss,
            "SELECT created_by FROM evolve.migrations WHERE entity_type = 'quake' AND from_version = 1 AND to_version = 2"
        )
        .as_deref(),
        Some("boss")
    );

    // After SET ROLE the role in effect is the one recorded, not the login role.
    boss.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "volcano_event"}');
           SET ROLE deputy;
           SELECT evolve.register_schema('{"entity_type": "volcano_events"}');
           SELECT evolve.resolve_conflict(id, 'keep') FROM evolve.entity_conflicts WHERE new_name = 'volcano_events';"#,
    )
    .unwrap();
    let conflict: (String, String, String) = {
        let r = boss
            .query_one(
                "SELECT status, resolved_by, (SELECT created_by FROM evolve.schema_history WHERE entity_type = 'volcano_events') \
                 FROM evolve.entity_conflicts WHERE new_name = 'volcano_events'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        conflict,
        ("kept".into(), "deputy".into(), "deputy".into()),
        "a conflict resolved after SET ROLE deputy"
    );
    boss.batch_execute("RESET ROLE").unwrap();

    // Proposals: a writer's data, reviewed by the admin; the reviewer argument is a label only.
    let mut feeder = cluster.connect_as(&db, "feeder");
    for i in 0..4 {
        feeder
            .batch_execute(&format!(
                r#"SELECT evolve.ingest('quake', '{{"mag": {i}, "felt": {i}, "tsunami": true}}', entity_key => 'q{i}')"#
            ))
            .unwrap();
    }
    let proposed = count(
        &mut boss,
        "SELECT count(DISTINCT name) FROM evolve.propose_schema('quake') WHERE kind = 'attribute' AND name IN ('felt', 'tsunami')",
    );
    assert_eq!(proposed, 2, "felt and tsunami are proposed");
    let approved: (bool, String) = {
        let r = boss
            .query_one(
                "SELECT success, performed_by FROM evolve.approve_proposal(
                     (SELECT id FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'felt' AND status = 'pending'),
                     reviewer => 'postgres')",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(approved, (true, "boss".into()));
    boss.batch_execute("SET ROLE deputy").unwrap();
    let rejected: String = boss
        .query_one(
            "SELECT performed_by FROM evolve.reject_proposal(
                 (SELECT id FROM evolve.schema_proposals WHERE kind = 'attribute' AND name = 'tsunami' AND status = 'pending'))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rejected, "deputy");
    boss.batch_execute("RESET ROLE").unwrap();
    let reviews: Vec<(String, String, Option<String>)> = su
        .query(
            "SELECT h.action, h.performed_by, p.reviewed_by FROM evolve.schema_evolution_history h \
             JOIN evolve.schema_proposals p ON p.id = h.proposal_id \
             WHERE h.action IN ('approve', 'reject') ORDER BY h.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        reviews,
        vec![
            ("approve".into(), "boss".into(), Some("postgres".into())),
            ("reject".into(), "deputy".into(), Some("deputy".into())),
        ]
    );
    // The approval registered a version: by the approving role too.
    assert_eq!(
        text(
            &mut su,
            "SELECT created_by FROM evolve.schema_history WHERE entity_type = 'quake' ORDER BY version DESC LIMIT 1"
        )
        .as_deref(),
        Some("boss")
    );
    // Nothing of the audit trail names the owner.
    let by_owner = count(
        &mut su,
        "SELECT (SELECT count(*) FROM evolve.schema_history WHERE created_by = 'postgres')
              + (SELECT count(*) FROM evolve.migrations WHERE created_by = 'postgres')
              + (SELECT count(*) FROM evolve.schema_evolution_history WHERE performed_by = 'postgres')
              + (SELECT count(*) FROM evolve.entity_conflicts WHERE resolved_by = 'postgres')",
    );
    assert_eq!(by_owner, 0);
}

/// A global schema and two tenants' entities, written in trusted mode.
fn two_tenants(cluster: &Cluster, db: &str) {
    let mut su = cluster.connect_to(db);
    su.batch_execute(
        r#"CREATE ROLE boss LOGIN; GRANT evolve_admin TO boss;
           CREATE ROLE app_a LOGIN; CREATE ROLE app_b LOGIN; GRANT evolve_writer TO app_a, app_b;
           SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');"#,
    )
    .unwrap();
    for (role, tenant) in [("app_a", "A"), ("app_b", "B")] {
        let mut c = cluster.connect_as(db, role);
        c.batch_execute(&format!(
            r#"SET evolve.current_user_id = '{tenant}';
               SELECT evolve.register_schema('{{"entity_type": "quake", "attributes": {{"felt": {{"type": "integer"}}}}}}', '{tenant}');
               SELECT evolve.ingest('quake', '{{"mag": 2, "felt": 3}}', '{tenant}', entity_key => 'k1');"#
        ))
        .unwrap();
    }
}

#[test]
fn a_bound_role_cannot_act_as_another_tenant() {
    let cluster = Cluster::start("bound", &[]);
    let db = cluster.fresh_db("bound");
    two_tenants(&cluster, &db);
    let mut boss = cluster.connect_as(&db, "boss");
    // app_a's session is open in trusted mode before the binding: it can name B.
    let mut a = cluster.connect_as(&db, "app_a");
    a.batch_execute("SET evolve.current_user_id = 'B'").unwrap();
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'B'"
        ),
        1
    );

    boss.batch_execute("SELECT evolve.bind_tenant('app_a', 'A')")
        .unwrap();
    let binding: (String, String) = {
        let r = boss
            .query_one(
                "SELECT user_id, bound_by FROM evolve.tenant_roles WHERE role = 'app_a'::regrole",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(binding, ("A".into(), "boss".into()));

    // The open session follows the binding at its next statement: the setting is ignored by
    // row-level security and refused by every function.
    assert_eq!(
        text(&mut a, "SELECT evolve.current_user_id()").as_deref(),
        Some("A")
    );
    for table in ["entities", "schemas", "schema_history", "observations"] {
        assert_eq!(
            count(
                &mut a,
                &format!(
                    "SELECT count(*) FROM evolve.{table} t WHERE {}",
                    if table == "observations" {
                        "NOT EXISTS (SELECT FROM evolve.entities e WHERE e.entity_id = t.entity_id AND e.user_id = 'A')"
                    } else {
                        "user_id = 'B'"
                    }
                )
            ),
            0,
            "app_a sees none of B's rows in {table}"
        );
    }
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'A'"
        ),
        1
    );
    let (code, message, hint) = error(
        &mut a,
        r#"SELECT evolve.ingest('quake', '{"mag": 9}', 'B', entity_key => 'evil')"#,
    );
    assert_eq!(code, "42501");
    assert!(message.contains("bound to tenant \"A\""), "{message}");
    assert!(hint.contains("evolve.bind_tenant"), "{hint}");
    // Even its own scope and the global one are refused while the setting names another.
    for sql in [
        r#"SELECT evolve.ingest('quake', '{"mag": 9}', 'A', entity_key => 'k9')"#,
        "SELECT evolve.active_schema('quake')",
        "SELECT evolve.active_schema('quake', 'B')",
        r#"SELECT evolve.update_schema_incremental('quake', '{"description": "mine"}', 'B')"#,
        "SELECT evolve.propose_schema('quake', 'B')",
    ] {
        assert_eq!(state(&mut a, sql), "42501", "{sql}");
    }
    assert_eq!(
        state(
            &mut a,
            r#"INSERT INTO evolve.inbox (entity_type, payload, user_id) VALUES ('quake', '{"mag": 1}', 'B')"#
        ),
        "42501"
    );
    // SET ROLE to an unbound group role keeps the login's tenant.
    a.batch_execute("SET ROLE evolve_writer").unwrap();
    assert_eq!(
        text(&mut a, "SELECT evolve.current_user_id()").as_deref(),
        Some("A")
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'B'"
        ),
        0
    );
    assert_eq!(
        state(
            &mut a,
            r#"SELECT evolve.ingest('quake', '{"mag": 9}', 'B', entity_key => 'evil')"#
        ),
        "42501"
    );
    a.batch_execute("RESET ROLE").unwrap();
    // Unset, or set to its own tenant, the bound session works in its scope.
    a.batch_execute(
        r#"RESET evolve.current_user_id;
           SELECT evolve.ingest('quake', '{"mag": 4, "felt": 1}', 'A', entity_key => 'k2');
           SET evolve.current_user_id = 'A';
           SELECT evolve.ingest('quake', '{"mag": 5}', 'A', entity_key => 'k3');"#,
    )
    .unwrap();
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'A'"
        ),
        3
    );
    assert_eq!(
        state(
            &mut a,
            r#"SELECT evolve.ingest('quake', '{"mag": 9}', 'B', entity_key => 'evil')"#
        ),
        "42501"
    );
    // A new session of the bound role is bound from its first statement.
    let mut a2 = cluster.connect_as(&db, "app_a");
    a2.batch_execute("SET evolve.current_user_id = 'B'")
        .unwrap();
    assert_eq!(
        count(
            &mut a2,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'B'"
        ),
        0
    );
    // The unbound tenant B is unaffected.
    let mut b = cluster.connect_as(&db, "app_b");
    b.batch_execute(
        r#"SET evolve.current_user_id = 'B';
           SELECT evolve.ingest('quake', '{"mag": 6}', 'B', entity_key => 'k2');"#,
    )
    .unwrap();
    let mut su = cluster.connect_to(&db);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM evolve.entities WHERE entity_key = 'evil'"
        ),
        0
    );

    // Unbinding restores trusted mode, in the open session too.
    assert_eq!(
        text(&mut boss, "SELECT evolve.unbind_tenant('app_a')::text").as_deref(),
        Some("true")
    );
    a.batch_execute("SET evolve.current_user_id = 'B'").unwrap();
    assert_eq!(
        text(&mut a, "SELECT evolve.current_user_id()").as_deref(),
        Some("B")
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'B'"
        ),
        2
    );
    assert_eq!(
        state(
            &mut a,
            r#"SELECT evolve.ingest('quake', '{"mag": 7}', 'B', entity_key => 'k3')"#
        ),
        "ok"
    );
    assert_eq!(
        text(&mut boss, "SELECT evolve.unbind_tenant('app_a')::text").as_deref(),
        Some("false")
    );
}

#[test]
fn a_binding_made_in_a_transaction_is_undone_by_its_rollback() {
    let cluster = Cluster::start("bindtx", &[]);
    let db = cluster.fresh_db("bindtx");
    two_tenants(&cluster, &db);
    let mut su = cluster.connect_to(&db);
    su.batch_execute("GRANT app_a TO boss").unwrap();
    let mut boss = cluster.connect_as(&db, "boss");
    boss.batch_execute(
        "BEGIN; SELECT evolve.bind_tenant('app_a', 'A'); \
         SET LOCAL ROLE app_a; SET LOCAL evolve.current_user_id = 'B';",
    )
    .unwrap();
    // Inside the binding transaction, after SET ROLE, the bound role is A at once.
    assert_eq!(
        text(&mut boss, "SELECT evolve.current_user_id()").as_deref(),
        Some("A")
    );
    assert_eq!(
        count(
            &mut boss,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'B'"
        ),
        0
    );
    boss.batch_execute("ROLLBACK").unwrap();
    // Rolled back: app_a is unbound again, in this backend's cache too.
    boss.batch_execute("SET ROLE app_a; SET evolve.current_user_id = 'B'")
        .unwrap();
    assert_eq!(
        text(&mut boss, "SELECT evolve.current_user_id()").as_deref(),
        Some("B")
    );
    assert_eq!(
        count(
            &mut boss,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'B'"
        ),
        1
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM evolve.tenant_roles"),
        0
    );
}

#[test]
fn only_admins_bind_tenants() {
    let cluster = Cluster::start("bindadmin", &[]);
    let db = cluster.fresh_db("bindadmin");
    two_tenants(&cluster, &db);
    let mut boss = cluster.connect_as(&db, "boss");
    boss.batch_execute("SELECT evolve.bind_tenant('app_a', 'A')")
        .unwrap();
    let mut b = cluster.connect_as(&db, "app_b");
    // No EXECUTE for writers; no direct writes to the table either.
    for sql in [
        "SELECT evolve.bind_tenant('app_b', 'A')",
        "SELECT evolve.unbind_tenant('app_a')",
        "INSERT INTO evolve.tenant_roles (role, user_id) VALUES ('app_b', 'A')",
        "DELETE FROM evolve.tenant_roles",
        "UPDATE evolve.tenant_roles SET user_id = 'B'",
    ] {
        assert_eq!(state(&mut b, sql), "42501", "{sql}");
    }
    // The function checks the caller itself even when EXECUTE is granted by mistake.
    let mut su = cluster.connect_to(&db);
    su.batch_execute("GRANT EXECUTE ON FUNCTION evolve.bind_tenant, evolve.unbind_tenant TO app_b")
        .unwrap();
    let (code, message, hint) = error(&mut b, "SELECT evolve.bind_tenant('app_b', 'A')");
    assert_eq!(code, "42501");
    assert!(message.contains("permission denied"), "{message}");
    assert!(hint.contains("evolve_admin"), "{hint}");
    assert_eq!(
        state(&mut b, "SELECT evolve.unbind_tenant('app_a')"),
        "42501"
    );
    // A session sees its own binding only; an unbound one sees none.
    assert_eq!(count(&mut b, "SELECT count(*) FROM evolve.tenant_roles"), 0);
    let mut a = cluster.connect_as(&db, "app_a");
    assert_eq!(
        text(
            &mut a,
            "SELECT string_agg(role::text || '=' || user_id, ',') FROM evolve.tenant_roles"
        )
        .as_deref(),
        Some("app_a=A")
    );
    // Bad arguments.
    for (sql, want) in [
        ("SELECT evolve.bind_tenant('evolve_writer', 'A')", "22023"),
        ("SELECT evolve.bind_tenant('app_b', '')", "22023"),
        ("SELECT evolve.bind_tenant('app_b', NULL)", "22023"),
        ("SELECT evolve.bind_tenant('app_b', E'a\\nb')", "22023"),
        ("SELECT evolve.bind_tenant('no_such_role', 'A')", "42704"),
    ] {
        assert_eq!(state(&mut boss, sql), want, "{sql}");
    }
    // Binding again moves the role.
    boss.batch_execute("SELECT evolve.bind_tenant('app_a', 'B')")
        .unwrap();
    assert_eq!(
        text(&mut a, "SELECT evolve.current_user_id()").as_deref(),
        Some("B")
    );
}
