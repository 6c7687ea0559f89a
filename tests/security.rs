//! Privileges and tenant isolation: roles, grants, row-level security by
//! `evolve.current_user_id`, and SECURITY DEFINER functions that a hostile search_path cannot
//! redirect.

use postgres::Client;

use crate::common::{count, state, Cluster};

/// Global schema, two tenants with their own extension, data, fragments and proposals, and
/// every entity embedded.
fn two_tenants(cluster: &Cluster, db: &str) {
    let mut su = cluster.connect_to(db);
    su.batch_execute(
        r#"
        CREATE ROLE app_a LOGIN; CREATE ROLE app_b LOGIN; CREATE ROLE viewer LOGIN; CREATE ROLE nobody LOGIN;
        GRANT evolve_writer TO app_a, app_b;
        GRANT evolve_reader TO viewer;
        SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
        SELECT evolve.ingest('quake', '{"mag": 1.5, "shared_key": 1}', entity_key => 'g1');
        "#,
    )
    .unwrap();
    for (role, tenant) in [("app_a", "A"), ("app_b", "B")] {
        let mut c = cluster.connect_as(db, role);
        c.batch_execute(&format!(
            r#"
            SET evolve.current_user_id = '{tenant}';
            SELECT evolve.register_schema('{{"entity_type": "quake", "attributes": {{"felt_{tenant}": {{"type": "integer"}}}}}}', '{tenant}');
            SELECT evolve.ingest('quake', '{{"mag": 2, "felt_{tenant}": 3, "secret_{tenant}": "x"}}', '{tenant}', entity_key => 'k1');
            SELECT evolve.ingest('quake', '{{"mag": 3, "secret_{tenant}": "y"}}', '{tenant}', entity_key => 'k2');
            INSERT INTO evolve.inbox (entity_type, payload, user_id) VALUES ('no_such_type', '{{"mag": 1}}', '{tenant}');
            SELECT count(*) FROM evolve.propose_schema('quake', '{tenant}');
            "#
        ))
        .unwrap();
    }
    su.batch_execute(
        r#"SELECT evolve.set_quota('B', 5, 50);
           SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "seismic"}');"#,
    )
    .unwrap();
    su.batch_execute("CALL evolve.run_reembedding()").unwrap();
}

/// Tenant B's entity and proposal ids, as SQL array literals (read by the superuser).
fn b_ids(su: &mut Client) -> (String, String) {
    let row = su
        .query_one(
            "SELECT (SELECT coalesce(array_agg(entity_id), '{}')::text FROM evolve.entities WHERE user_id = 'B'), \
                    (SELECT coalesce(array_agg(id), '{}')::text FROM evolve.schema_proposals WHERE user_id = 'B')",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Rows of tenant B in every table of the extension, as the superuser sees them.
fn tenant_b_rows(su: &mut Client) -> Vec<(String, i64)> {
    let ids = b_ids(su);
    crate::common::extension_tables(su)
        .into_iter()
        .map(|t| {
            let n = count(su, &b_filter(&t, &ids));
            (t, n)
        })
        .collect()
}

/// A query counting tenant B's rows of a table: by its user_id, or through the entity or the
/// proposal it belongs to.
fn b_filter(table: &str, (entities, proposals): &(String, String)) -> String {
    match table {
        "observations" | "entity_embeddings" | "entity_embeddings_shared" | "embedding_queue" => {
            format!(
                "SELECT count(*) FROM evolve.{table} WHERE entity_id = ANY('{entities}'::bigint[])"
            )
        }
        "schema_evolution_history" | "dynamic_tables" => format!(
            "SELECT count(*) FROM evolve.{table} WHERE proposal_id = ANY('{proposals}'::bigint[])"
        ),
        "migrations"
        | "entity_type_aliases"
        | "schema_migration_jobs"
        | "deferred_indexes"
        | "embedding_policies"
        | "embedding_generations"
        | "embedding_profiles"
        | "entity_type_profiles"
        | "inbox" => {
            // Global tables (and the always-empty inbox): nothing of B's.
            format!("SELECT count(*) FROM evolve.{table} WHERE false")
        }
        _ => format!("SELECT count(*) FROM evolve.{table} WHERE user_id = 'B'"),
    }
}

#[test]
fn tenant_a_can_neither_read_nor_change_tenant_b() {
    let cluster = Cluster::start("tenants", &[]);
    let db = cluster.fresh_db("tenants");
    two_tenants(&cluster, &db);
    let mut su = cluster.connect_to(&db);
    let before = tenant_b_rows(&mut su);
    let ids = b_ids(&mut su);
    for t in [
        "schemas",
        "schema_history",
        "entities",
        "observations",
        "raw_fragments",
        "raw_fragment_aggregate_parts",
        "entity_count_parts",
        "schema_proposals",
        "inbox_rejects",
        "user_schema_quotas",
        "entity_embeddings",
    ] {
        let n = before.iter().find(|(n, _)| n == t).map(|(_, c)| *c);
        assert!(
            n.unwrap_or(0) > 0,
            "fixture gives B rows in {t}: {before:?}"
        );
    }
    let b_entity: i64 = su
        .query_one(
            "SELECT entity_id FROM evolve.entities WHERE user_id = 'B' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let b_proposal: i64 = su
        .query_one(
            "SELECT id FROM evolve.schema_proposals WHERE user_id = 'B' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);

    let mut a = cluster.connect_as(&db, "app_a");
    a.batch_execute("SET evolve.current_user_id = 'A'; SET client_min_messages = error")
        .unwrap();
    // Through the tables: B's rows are invisible; A's and the global ones are there.
    for (t, _) in &before {
        assert_eq!(
            count(&mut a, &b_filter(t, &ids)),
            0,
            "A sees B's rows in {t}"
        );
    }
    assert!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'A'"
        ) == 2
    );
    assert!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.entities WHERE user_id IS NULL"
        ) == 1
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.schema_versions WHERE user_id = 'B'"
        ),
        0
    );
    // Through the reading functions: 42501, or nothing.
    for sql in [
        "SELECT evolve.active_schema('quake', 'B')",
        "SELECT evolve.schema_at('quake', now(), 'B')",
        "SELECT evolve.schema_diff('quake', 1, 1, 'B')",
        "SELECT evolve.field_confidence('quake', 'secret_B', 'B')",
        r#"SELECT * FROM evolve.check_compatibility('{"entity_type": "quake"}', 'B')"#,
        "SELECT evolve.schema_diagram('mermaid', 'B')",
    ] {
        assert_eq!(state(&mut a, sql), "42501", "{sql}");
    }
    let hidden: Option<String> = a
        .query_one(&format!("SELECT evolve.entity({b_entity})::text"), &[])
        .unwrap()
        .get(0);
    assert!(hidden.is_none());
    let text: Option<String> = a
        .query_one(&format!("SELECT evolve.enriched_text({b_entity})"), &[])
        .unwrap()
        .get(0);
    assert!(text.is_none());
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.semantic_search('quake', 'secret y', 100) s \
             WHERE s.entity_id NOT IN (SELECT entity_id FROM evolve.entities)"
        ),
        0,
        "semantic_search returns only visible entities"
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM evolve.semantic_search('quake', 'secret', 100)"
        ),
        3,
        "A finds its own two entities and the global one"
    );
    // Through the writing functions and the tables: refused, nothing changed.
    for sql in [
        r#"SELECT evolve.ingest('quake', '{"mag": 9}', 'B')"#,
        r#"SELECT evolve.ingest('quake', '{"mag": 9}')"#,
        r#"SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"x": {"type": "string"}}}', 'B')"#,
        r#"SELECT evolve.register_schema('{"entity_type": "other", "attributes": {"x": {"type": "string"}}}')"#,
        r#"SELECT evolve.update_schema_incremental('quake', '{"attributes": {"y": {"type": "string"}}}', 'B')"#,
        "SELECT evolve.deactivate_schema('quake', 'B')",
        "SELECT evolve.activate_schema('quake', 'B')",
        "SELECT evolve.promote_fragments('quake', 'secret_B', 'B')",
        "SELECT evolve.promote_fragments('quake', 'shared_key')",
        "SELECT evolve.propose_schema('quake', 'B')",
        "UPDATE evolve.entities SET snapshot = '{}' WHERE user_id = 'B'",
        "DELETE FROM evolve.raw_fragments",
        "UPDATE evolve.raw_fragment_aggregate_parts SET sample_count = 0",
        "DELETE FROM evolve.schema_proposals",
        &format!("SELECT evolve.approve_proposal({b_proposal})"),
        &format!("SELECT evolve.reject_proposal({b_proposal})"),
        "SELECT evolve.set_quota('A', 100, 100)",
        r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "x"}')"#,
        "SELECT evolve.cleanup_expired_fragments()",
        "SELECT evolve._reembed_batch()",
    ] {
        assert_eq!(state(&mut a, sql), "42501", "{sql}");
    }
    assert_eq!(
        state(
            &mut a,
            &format!("SELECT evolve.refresh_snapshot({b_entity})")
        ),
        "42704",
        "another tenant's entity does not exist for A"
    );
    // An inbox row for B is set aside (42501), filed under A's own scope.
    assert_eq!(
        state(
            &mut a,
            r#"SET client_min_messages = error; INSERT INTO evolve.inbox (entity_type, payload, user_id) VALUES ('quake', '{"mag": 1}', 'B')"#
        ),
        "ok"
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM evolve.inbox_rejects WHERE sqlstate = '42501' AND user_id = 'A'"
        ),
        1
    );
    assert_eq!(tenant_b_rows(&mut su), before, "B's rows are unchanged");

    // A reader without a tenant sees the global rows only and writes nothing.
    let mut viewer = cluster.connect_as(&db, "viewer");
    assert_eq!(
        count(
            &mut viewer,
            "SELECT count(*) FROM evolve.entities WHERE user_id IS NOT NULL"
        ),
        0
    );
    assert_eq!(
        count(&mut viewer, "SELECT count(*) FROM evolve.entities"),
        1
    );
    assert_eq!(
        state(
            &mut viewer,
            r#"SELECT evolve.ingest('quake', '{"mag": 1}')"#
        ),
        "42501"
    );
    // PUBLIC gets nothing.
    let mut nobody = cluster.connect_as(&db, "nobody");
    assert_eq!(
        state(&mut nobody, "SELECT evolve.active_schema('quake')"),
        "42501"
    );
    assert_eq!(
        state(&mut nobody, "SELECT count(*) FROM evolve.schemas"),
        "42501"
    );
}

/// Every SECURITY DEFINER function pins its search_path: hostile functions and operators in a
/// schema the caller puts first are never called. A negative control shows the trap works.
#[test]
fn hostile_search_path_is_never_followed() {
    let cluster = Cluster::start("search-path", &[]);
    let db = cluster.fresh_db("search_path");
    let mut su = cluster.connect_to(&db);
    su.batch_execute(
        r#"
        CREATE ROLE app LOGIN; GRANT evolve_writer TO app;
        CREATE ROLE boss LOGIN; GRANT evolve_admin TO boss;
        SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}');
        CREATE SCHEMA trap;
        GRANT USAGE, CREATE ON SCHEMA trap TO PUBLIC;
        CREATE TABLE trap.calls (fn text, by_role text);
        GRANT INSERT, SELECT, DELETE ON trap.calls TO PUBLIC;
        CREATE FUNCTION trap.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO trap.calls VALUES ('=', current_user); RETURN a OPERATOR(pg_catalog.=) b; END $$;
        CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.texteq);
        CREATE FUNCTION trap.int8eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO trap.calls VALUES ('=', current_user); RETURN a OPERATOR(pg_catalog.=) b; END $$;
        CREATE OPERATOR trap.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = trap.int8eq);
        CREATE FUNCTION trap.now() RETURNS timestamptz LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO trap.calls VALUES ('now', current_user); RETURN pg_catalog.now(); END $$;
        CREATE FUNCTION trap.lower(t text) RETURNS text LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO trap.calls VALUES ('lower', current_user); RETURN pg_catalog.lower(t); END $$;
        CREATE FUNCTION trap.jsonb_typeof(j jsonb) RETURNS text LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO trap.calls VALUES ('jsonb_typeof', current_user); RETURN pg_catalog.jsonb_typeof(j); END $$;
        CREATE FUNCTION trap.current_setting(t text, m boolean) RETURNS text LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO trap.calls VALUES ('current_setting', current_user); RETURN pg_catalog.current_setting(t, m); END $$;
        CREATE TABLE trap.schemas (LIKE evolve.schemas);
        CREATE TABLE trap.entities (LIKE evolve.entities);
        CREATE TABLE trap.raw_fragments (LIKE evolve.raw_fragments);
        GRANT ALL ON ALL TABLES IN SCHEMA trap TO PUBLIC;
        "#,
    )
    .unwrap();
    let hostile =
        "SET search_path = trap, pg_catalog, evolve, public; SET client_min_messages = error;";

    // The trap works: unpinned SQL in the hostile path calls it.
    let mut app = cluster.connect_as(&db, "app");
    app.batch_execute(hostile).unwrap();
    app.batch_execute("SELECT 'a'::text = 'b'::text, lower('X')")
        .unwrap();
    assert!(count(&mut su, "SELECT count(*) FROM trap.calls") >= 2);
    su.batch_execute("DELETE FROM trap.calls").unwrap();

    // A writer's calls.
    app.batch_execute(
        r#"
        SET evolve.current_user_id = 'u1';
        SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"felt": {"type": "integer"}}}', 'u1');
        SELECT evolve.update_schema_incremental('quake', '{"attributes": {"depth": {"type": "number"}}}', 'u1');
        SELECT evolve.ingest('quake', '{"mag": 2, "felt": 3, "extra": "x", "when": "2024-01-01T00:00:00Z"}', 'u1', 'src', 'k1');
        SELECT evolve.ingest('quake', '{"mag": 4, "extra": "y"}', 'u1', 'src', 'k2');
        INSERT INTO evolve.inbox (entity_type, payload, user_id) VALUES ('quake', '{"mag": 5, "extra": "z"}', 'u1'),
                                                                      ('quake', '{"mag": "bad"}', 'u1');
        SELECT count(*) FROM evolve.propose_schema('quake', 'u1');
        SELECT evolve.refresh_snapshot(entity_id) FROM evolve.entities WHERE user_id OPERATOR(pg_catalog.=) 'u1';
        SELECT evolve.deactivate_schema('quake', 'u1');
        SELECT evolve.activate_schema('quake', 'u1');
        SELECT evolve.update_schema_incremental('quake', '{"attributes": {"extra": {"type": "string"}}}', 'u1');
        SELECT evolve.promote_fragments('quake', 'extra', 'u1');
        "#,
    )
    .unwrap();
    // An admin's calls.
    let mut boss = cluster.connect_as(&db, "boss");
    boss.batch_execute(hostile).unwrap();
    boss.batch_execute(
        r#"
        SELECT evolve.ingest('quake', '{"mag": 1, "sig": 10}', entity_key => 'g1');
        SELECT evolve.ingest('quake', '{"mag": 2, "sig": 20}', entity_key => 'g2');
        SELECT count(*) FROM evolve.propose_schema('quake');
        SELECT evolve.approve_proposal(id) FROM evolve.schema_proposals
            WHERE kind OPERATOR(pg_catalog.=) 'attribute' AND name OPERATOR(pg_catalog.=) 'sig' AND user_id IS NULL;
        SELECT evolve.rollback_proposal(id) FROM evolve.schema_proposals
            WHERE kind OPERATOR(pg_catalog.=) 'attribute' AND name OPERATOR(pg_catalog.=) 'sig' AND user_id IS NULL;
        SELECT evolve.reject_proposal(id) FROM evolve.schema_proposals WHERE status OPERATOR(pg_catalog.=) 'pending' AND user_id IS NULL LIMIT 1;
        SELECT evolve.set_quota('u1', 10, 100);
        SELECT evolve.set_compatibility('quake', 'BACKWARD');
        SELECT evolve.register_schema('{"entity_type": "quake", "attributes": {"mag": {"type": "number"}, "depth": {"type": "number"}}}');
        SELECT evolve.register_migration('quake', 1, 2, '[{"rename": {"from": "magnitude", "to": "mag"}}]');
        SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "quake", "description": "x"}');
        SELECT evolve._reembed_batch();
        SELECT evolve.retry_failed(1);
        SELECT evolve.archive_stale_fragments();
        SELECT evolve.cleanup_expired_fragments();
        "#,
    )
    .unwrap();
    let calls: Vec<(String, String)> = su
        .query("SELECT fn, by_role FROM trap.calls", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(calls.is_empty(), "hostile objects were called: {calls:?}");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM evolve.entities WHERE user_id = 'u1'"
        ),
        4,
        "the calls did their work (two keyed entities, two from the inbox)"
    );

    // Negative control: without its pinned search_path, a function follows the hostile path
    // (a new session, so no plan kept from the pinned one is reused).
    su.batch_execute("ALTER FUNCTION evolve.ingest RESET search_path")
        .unwrap();
    let mut app = cluster.connect_as(&db, "app");
    app.batch_execute(hostile).unwrap();
    app.batch_execute(
        r#"SET evolve.current_user_id = 'u1'; SELECT evolve.ingest('quake', '{"mag": 7}', 'u1')"#,
    )
    .unwrap();
    assert!(count(&mut su, "SELECT count(*) FROM trap.calls") > 0);
    su.batch_execute("ALTER FUNCTION evolve.ingest SET search_path = pg_catalog, pg_temp")
        .unwrap();

    // Every SECURITY DEFINER function of the extension pins the search path.
    let unpinned: Vec<String> = su
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid \
             JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_evolve' \
             WHERE p.prosecdef AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY(p.proconfig), false)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unpinned.is_empty(), "unpinned: {unpinned:?}");
}
