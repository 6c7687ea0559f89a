//! The red-team reproductions, run as ordinary roles: user-named functions never run with the
//! extension owner's rights, the inbox sets every bad row aside and takes COPY from writers,
//! numbers keep every digit, and bad arguments get documented SQLSTATEs.

use std::io::Write;

use postgres::Client;

use crate::common::{count, state, text, Cluster};

/// An admin (not a superuser) with the default TEMP privilege and a schema of its own, a
/// writer with a schema of its own, and a type with two versions.
fn setup(cluster: &Cluster, db: &str) -> Client {
    let mut su = cluster.connect_to(db);
    su.batch_execute(&format!(
        r#"
        CREATE ROLE boss LOGIN; GRANT evolve_admin TO boss;
        CREATE ROLE app LOGIN; GRANT evolve_writer TO app;
        GRANT CREATE ON DATABASE {db} TO boss, app;
        CREATE TABLE public.calls (fn text, ran_as text);
        GRANT INSERT, SELECT ON public.calls TO PUBLIC;
        "#
    ))
    .unwrap();
    let mut boss = cluster.connect_as(db, "boss");
    boss.batch_execute(
        r#"
        SET client_min_messages = error;
        SELECT evolve.register_schema('{"entity_type": "esc", "attributes": {"a": {"type": "integer"}}}');
        SELECT evolve.update_schema_incremental('esc', '{"attributes": {"b": {"type": "string"}}}');
        SELECT evolve.set_compatibility('esc', 'NONE');
        "#,
    )
    .unwrap();
    su
}

#[test]
fn an_admin_cannot_borrow_the_owner_through_a_migration_step() {
    let cluster = Cluster::start("trust-admin", &[]);
    let db = cluster.fresh_db("trust_admin");
    let mut su = setup(&cluster, &db);
    let mut boss = cluster.connect_as(&db, "boss");

    // The reproduction: a pg_temp function named by a step. Refused when registered.
    boss.batch_execute(
        r#"CREATE FUNCTION pg_temp.f(p jsonb) RETURNS jsonb LANGUAGE sql AS
           $$ SELECT p || jsonb_build_object('ran_as', current_user::text) $$"#,
    )
    .unwrap();
    assert_eq!(
        state(
            &mut boss,
            r#"SELECT evolve.register_migration('esc', 1, 2, '[{"function": "pg_temp.f"}]')"#
        ),
        "42501"
    );
    // The same through the schema name PostgreSQL gives the session's temporary schema.
    let temp_schema = text(
        &mut boss,
        "SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()",
    )
    .unwrap();
    assert_eq!(
        state(
            &mut boss,
            &format!(
                r#"SELECT evolve.register_migration('esc', 1, 2, '[{{"function": "{temp_schema}.f"}}]')"#
            )
        ),
        "42501"
    );

    // A function of the admin's own runs with the admin's rights, not the owner's.
    boss.batch_execute(
        r#"CREATE SCHEMA bossfns;
           CREATE FUNCTION bossfns.f(p jsonb) RETURNS jsonb LANGUAGE sql AS
           $$ SELECT p || jsonb_build_object('ran_as', current_user::text) $$;
           GRANT USAGE ON SCHEMA bossfns TO PUBLIC;
           SELECT evolve.register_migration('esc', 1, 2, '[{"function": "bossfns.f"}]');
           SELECT evolve.ingest('esc', '{"a": 1}', schema_version => 1, entity_key => 'e1');"#,
    )
    .unwrap();
    assert_eq!(
        text(
            &mut su,
            "SELECT value #>> '{}' FROM evolve.raw_fragments WHERE fragment_key = 'ran_as'"
        )
        .as_deref(),
        Some("boss")
    );
    assert_eq!(
        text(
            &mut su,
            "SELECT run_as::text FROM evolve.migrations WHERE NOT derived"
        )
        .as_deref(),
        Some("boss")
    );

    // A writer calling ingest does not change whose rights the step has.
    let mut app = cluster.connect_as(&db, "app");
    app.batch_execute(
        r#"SELECT evolve.ingest('esc', '{"a": 2}', schema_version => 1, entity_key => 'e2')"#,
    )
    .unwrap();
    assert_eq!(
        text(&mut su, "SELECT string_agg(DISTINCT value #>> '{}', ',') FROM evolve.raw_fragments WHERE fragment_key = 'ran_as'").as_deref(),
        Some("boss")
    );

    // A function whose owner does not hold the registering role's privileges is refused
    // when registered ...
    app.batch_execute(
        r#"CREATE SCHEMA appfns; GRANT USAGE ON SCHEMA appfns TO PUBLIC;
           CREATE FUNCTION appfns.g(p jsonb) RETURNS jsonb LANGUAGE sql AS
           $$ SELECT p || jsonb_build_object('g_ran_as', current_user::text) $$;"#,
    )
    .unwrap();
    assert_eq!(
        state(
            &mut boss,
            r#"SELECT evolve.register_migration('esc', 1, 2, '[{"function": "appfns.g"}]')"#
        ),
        "42501"
    );
    // ... and when ownership moves after registration, the step stops running.
    su.batch_execute(
        "ALTER FUNCTION bossfns.f(jsonb) OWNER TO app; GRANT CREATE ON SCHEMA bossfns TO app",
    )
    .unwrap();
    app.batch_execute(
        r#"CREATE OR REPLACE FUNCTION bossfns.f(p jsonb) RETURNS jsonb LANGUAGE sql AS
           $$ SELECT p || jsonb_build_object('ran_as', 'hijacked:' || current_user::text) $$;
           SET evolve.migration_strategy = 'fragment';
           SELECT evolve.ingest('esc', '{"a": 3}', schema_version => 1, entity_key => 'e3');"#,
    )
    .unwrap();
    assert_eq!(
        text(&mut su, "SELECT string_agg(DISTINCT value #>> '{}', ',') FROM evolve.raw_fragments WHERE fragment_key = 'ran_as'").as_deref(),
        Some("boss"),
        "the hijacked body never ran"
    );
    let error = text(
        &mut su,
        "SELECT error FROM evolve.migration_failures ORDER BY id DESC LIMIT 1",
    )
    .unwrap();
    assert!(error.contains("owner does not hold"), "{error}");
}

#[test]
fn a_writer_cannot_redirect_a_step_or_a_setting() {
    let cluster = Cluster::start("trust-writer", &[]);
    let db = cluster.fresh_db("trust_writer");
    let mut su = setup(&cluster, &db);
    let mut boss = cluster.connect_as(&db, "boss");
    // An unqualified name means pg_catalog's function, resolved once, now. (PostgreSQL 18 gave
    // jsonb_strip_nulls a second, defaulted parameter: there pg_catalog has no jsonb -> jsonb
    // function of that name, the name is refused, and neither of the writer's runs either.)
    let pg18 = count(
        &mut su,
        "SELECT current_setting('server_version_num')::bigint",
    ) >= 180000;
    let register =
        r#"SELECT evolve.register_migration('esc', 1, 2, '[{"function": "jsonb_strip_nulls"}]')"#;
    if pg18 {
        assert_eq!(state(&mut boss, register), "42883");
    } else {
        boss.batch_execute(register).unwrap();
    }

    let mut app = cluster.connect_as(&db, "app");
    app.batch_execute(
        r#"
        CREATE SCHEMA w;
        CREATE FUNCTION w.jsonb_strip_nulls(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO public.calls VALUES ('jsonb_strip_nulls', current_user); RETURN p; END $$;
        CREATE FUNCTION pg_temp.jsonb_strip_nulls(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO public.calls VALUES ('pg_temp', current_user); RETURN p; END $$;
        CREATE FUNCTION w.my_embed(t text) RETURNS real[] LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO public.calls VALUES ('my_embed', current_user); RETURN array_fill(0.1::real, ARRAY[256]); END $$;
        SET search_path = w, pg_temp, pg_catalog, public;
        SELECT evolve.migrate_payload('esc', '{"a": 1, "n": null}', 1);
        SELECT evolve.ingest('esc', '{"a": 1, "n": null}', schema_version => 1, entity_key => 'e1');
        "#,
    )
    .unwrap();
    let calls: i64 = su
        .query_one("SELECT count(*) FROM public.calls", &[])
        .unwrap()
        .get(0);
    assert_eq!(calls, 0, "the writer's functions never ran");
    // pg_catalog's function ran: the null is gone, no fragment kept it (on 18 no step ran).
    assert_eq!(
        text(
            &mut su,
            "SELECT (snapshot ? 'n')::text FROM evolve.entities WHERE entity_key = 'e1'"
        )
        .as_deref(),
        Some("false")
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id) \
             WHERE e.entity_key = 'e1' AND f.fragment_key = 'n'"
        ),
        i64::from(pg18)
    );

    // A superuser names an embedding function without a schema: it means pg_catalog's, so the
    // writer's w.my_embed first in its search_path is never called (the call fails instead,
    // and the entity is parked for a retry).
    su.batch_execute(&format!(
        "ALTER DATABASE {db} SET evolve.embedding_function = 'my_embed'"
    ))
    .unwrap();
    let mut app = cluster.connect_as(&db, "app");
    app.batch_execute(
        r#"SET search_path = w, pg_catalog, public;
           SELECT evolve.ingest('esc', '{"a": 5}', entity_key => 'e5');"#,
    )
    .unwrap();
    let mut boss = cluster.connect_as(&db, "boss");
    boss.batch_execute(
        r#"SET search_path = w, pg_catalog, public;
           SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "esc", "description": "x"}');
           SELECT evolve._reembed_batch();"#,
    )
    .unwrap();
    let calls: i64 = su
        .query_one("SELECT count(*) FROM public.calls", &[])
        .unwrap()
        .get(0);
    assert_eq!(calls, 0, "the writer's embedding function never ran");
}

#[test]
fn the_inbox_sets_every_bad_row_aside_and_takes_copy() {
    let cluster = Cluster::start("trust-inbox", &[]);
    let db = cluster.fresh_db("trust_inbox");
    let mut su = setup(&cluster, &db);
    su.batch_execute("CREATE ROLE app2 LOGIN; GRANT evolve_writer TO app2")
        .unwrap();
    let mut app = cluster.connect_as(&db, "app");
    let mut app2 = cluster.connect_as(&db, "app2");
    for c in [&mut app, &mut app2] {
        c.batch_execute("SET client_min_messages = error").unwrap();
    }
    let long = "k".repeat(3000);
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    // A writer chooses the ids the next statement's rejected rows would get.
    let next: i64 = su
        .query_one(
            "SELECT coalesce(pg_sequence_last_value('evolve.inbox_inbox_id_seq'), 0)",
            &[],
        )
        .unwrap()
        .get(0);
    app.batch_execute(&format!(
        r#"SET evolve.current_user_id = 'A';
           INSERT INTO evolve.inbox (inbox_id, entity_type, payload, user_id) OVERRIDING SYSTEM VALUE
           VALUES ({}, 'nope', '{{"a": 1}}', 'A'), ({}, 'nope', '{{"a": 1}}', 'A');"#,
        next + 1,
        next + 2
    ))
    .unwrap();
    // The other writer's statement: good rows and every kind of bad one, none of which may
    // fail the statement.
    app2.batch_execute(&format!(
        r#"INSERT INTO evolve.inbox (entity_type, payload, entity_key, user_id) VALUES
             ('esc', '{{"a": 1, "big": 123456789012345678901234567890}}', 'ok1', NULL),
             ('nope', '{{"a": 1}}', 'r1', NULL),
             ('esc', '{{"a": 2}}', '{long}', NULL),
             ('esc', '{{"{long}": 1}}', 'r3', NULL),
             ('esc', '{{"a": 3, "d": {deep}}}', 'r4', NULL),
             ('esc', '{{"a": 4, "n": 1e400}}', 'ok2', NULL),
             ('esc', '{{"a": 5}}', 'r5', 'B')"#
    ))
    .unwrap();
    let rejects: Vec<(Option<String>, String, Option<String>)> = su
        .query(
            "SELECT entity_key, sqlstate, user_id FROM evolve.inbox_rejects ORDER BY reject_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let states: Vec<&str> = rejects.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        states,
        ["42704", "42704", "42704", "54000", "54000", "54000", "42501"],
        "{rejects:?}"
    );
    // The foreign-tenant row is filed under the writer's own scope, not the victim's.
    assert_eq!(rejects[6].2, None);
    let ingested: Vec<String> = su
        .query(
            "SELECT entity_key FROM evolve.entities WHERE entity_type = 'esc' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ingested, ["ok1", "ok2"]);

    // COPY works for an ordinary writer.
    let mut writer = app2
        .copy_in("COPY evolve.inbox (entity_type, payload, entity_key) FROM STDIN")
        .unwrap();
    writer
        .write_all(b"esc\t{\"a\": 7, \"pi\": 3.14159265358979323846}\tc1\nesc\t{\"a\": 8}\tc2\n")
        .unwrap();
    writer.finish().unwrap();
    assert_eq!(
        text(
            &mut su,
            "SELECT count(*)::text FROM evolve.entities WHERE entity_key IN ('c1', 'c2')"
        )
        .as_deref(),
        Some("2")
    );
    assert_eq!(
        text(
            &mut su,
            "SELECT value::text FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id) \
             WHERE e.entity_key = 'c1' AND fragment_key = 'pi'"
        )
        .as_deref(),
        Some("3.14159265358979323846")
    );
}

#[test]
fn numbers_keep_every_digit() {
    let cluster = Cluster::start("trust-numbers", &[]);
    let db = cluster.fresh_db("trust_numbers");
    let mut su = setup(&cluster, &db);
    let mut boss = cluster.connect_as(&db, "boss");
    boss.batch_execute(
        r#"
        SELECT evolve.register_schema('{"entity_type": "num", "attributes": {
            "hi": {"type": "number", "merge_policy": "max"}, "lo": {"type": "number", "merge_policy": "min"},
            "big": {"type": "number"}}}');
        SELECT evolve.ingest('num', '{"hi": 0.1, "lo": 0.1000000000000000000000000001, "big": 123456789012345678901234567890,
                                      "pi": 3.14159265358979323846, "tiny": 1e-400, "huge": 1e400}', entity_key => 'n');
        SELECT evolve.ingest('num', '{"hi": 0.1000000000000000000000000001, "lo": 0.1}', entity_key => 'n');
        "#,
    )
    .unwrap();
    let snapshot = |su: &mut Client, key: &str| {
        text(
            su,
            &format!(
                "SELECT (snapshot->'{key}')::text FROM evolve.entities WHERE entity_key = 'n'"
            ),
        )
        .unwrap()
    };
    assert_eq!(snapshot(&mut su, "hi"), "0.1000000000000000000000000001");
    assert_eq!(snapshot(&mut su, "lo"), "0.1");
    assert_eq!(snapshot(&mut su, "big"), "123456789012345678901234567890");
    let fragment = |su: &mut Client, key: &str| {
        text(
            su,
            &format!(
                "SELECT (value = '{key}'::jsonb)::text FROM evolve.raw_fragments WHERE fragment_key = '{}'",
                match key {
                    "3.14159265358979323846" => "pi",
                    "1e-400" => "tiny",
                    _ => "huge",
                }
            ),
        )
        .unwrap()
    };
    for v in ["3.14159265358979323846", "1e-400", "1e400"] {
        assert_eq!(fragment(&mut su, v), "true", "{v}");
    }
    // The observations hold the digits too.
    assert_eq!(
        text(
            &mut su,
            "SELECT string_agg(value::text, ',' ORDER BY observation_id) FROM evolve.observations WHERE attribute = 'lo'"
        )
        .as_deref(),
        Some("0.1000000000000000000000000001,0.1")
    );
}

#[test]
fn bad_arguments_get_documented_sqlstates() {
    let cluster = Cluster::start("trust-args", &[]);
    let db = cluster.fresh_db("trust_args");
    let _su = setup(&cluster, &db);
    let mut app = cluster.connect_as(&db, "app");
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for (sql, want) in [
        ("SELECT evolve.ingest('esc', NULL)", "22004"),
        ("SELECT evolve.ingest(NULL, '{}')", "22004"),
        ("SELECT evolve.active_schema(NULL)", "22004"),
        (
            &format!("SELECT evolve.ingest('esc', '{{\"a\": {deep}}}')") as &str,
            "54000",
        ),
        (
            &format!(
                "SELECT evolve.check_compatibility('{{\"entity_type\": \"esc\", \"x\": {deep}}}')"
            ),
            "54000",
        ),
        (
            r#"SELECT evolve.register_schema('{"entity_type": "esc", "attributes": {"a": {"type": "integer", "default": 1.5}}}', 'A')"#,
            "22023",
        ),
    ] {
        let mut tx = app.transaction().unwrap();
        tx.batch_execute("SET LOCAL evolve.current_user_id = 'A'")
            .unwrap();
        let e = tx.batch_execute(sql).expect_err(sql);
        let db_error = e.as_db_error().expect("a server error");
        assert_eq!(e.code().unwrap().code(), want, "{sql}: {e}");
        let shown = format!("{:?} {:?}", db_error.detail(), db_error.hint());
        assert!(
            !shown.contains("backtrace") && !shown.contains(".rs:"),
            "{shown}"
        );
        tx.rollback().unwrap();
    }
}
