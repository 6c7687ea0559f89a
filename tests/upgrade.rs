//! The upgrade path: 0.1.0 with data, `ALTER EXTENSION pg_evolve UPDATE`, data intact and the
//! catalog equal to a fresh 0.2.0 install.

use std::process::Command;

use postgres::Client;

use crate::common::Cluster;

/// The frozen 0.1.0 install script (`cargo pgrx schema` of the 0.1.0 tree). A database that
/// runs 0.1.0 has it installed; the test puts it next to the current version's files.
const V010: &str = include_str!("fixtures/pg_evolve--0.1.0.sql");

fn install_v010_script() {
    let out = Command::new("/usr/lib/postgresql/15/bin/pg_config")
        .arg("--sharedir")
        .output()
        .expect("pg_config runs");
    let dir = String::from_utf8(out.stdout).unwrap();
    let path = format!("{}/extension/pg_evolve--0.1.0.sql", dir.trim());
    std::fs::write(&path, V010).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}

fn version(c: &mut Client) -> String {
    c.query_one(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_evolve'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Every row of the extension's tables, ordered, as text (one line per table).
fn data_digest(c: &mut Client) -> Vec<String> {
    crate::common::extension_tables(c)
        .iter()
        .map(|t| {
            let row = c
                .query_one(
                    &format!(
                        "SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) \
                         FROM evolve.{t} x"
                    ),
                    &[],
                )
                .unwrap();
            format!("{t}: {} rows, {}", row.get::<_, i64>(0), row.get::<_, String>(1))
        })
        .collect()
}

/// What the extension put in the catalog: routines with their properties and privileges,
/// relations with columns, constraints, indexes, triggers, policies, options and privileges,
/// view definitions and comments.
const CATALOG: &str = r#"
WITH ext AS (SELECT objid, classid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
             WHERE e.extname = 'pg_evolve' AND d.deptype = 'e')
SELECT 'routine ' || p.oid::regprocedure::text || ' -> ' || coalesce(pg_get_function_result(p.oid), '')
       || ' kind=' || p.prokind::text || ' secdef=' || p.prosecdef || ' vol=' || p.provolatile::text
       || ' strict=' || p.proisstrict || ' par=' || p.proparallel::text || ' config=' || coalesce(p.proconfig::text, '')
       || ' lang=' || l.lanname || ' src=' || md5(p.prosrc) || ' acl=' || coalesce(p.proacl::text, '')
       || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid IN (SELECT objid FROM ext WHERE classid = 'pg_proc'::regclass)
UNION ALL
SELECT 'relation ' || c.relname || ' kind=' || c.relkind::text || ' rls=' || c.relrowsecurity
       || ' options=' || coalesce(c.reloptions::text, '') || ' acl=' || coalesce(c.relacl::text, '')
       || ' persistence=' || c.relpersistence::text || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c WHERE c.relnamespace = 'evolve'::regnamespace
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' identity=' || a.attidentity::text || ' #' || a.attnum
       || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
       || ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE c.relnamespace = 'evolve'::regnamespace AND c.relkind IN ('r', 'u', 'v', 'p')
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'evolve'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index
WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'evolve'::regnamespace)
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger
WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'evolve'::regnamespace)
UNION ALL
SELECT 'policy ' || tablename || ' ' || policyname || ' ' || cmd || ' ' || roles::text || ' '
       || coalesce(qual, '') || ' / ' || coalesce(with_check, '')
FROM pg_policies WHERE schemaname = 'evolve'
UNION ALL
SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid)
FROM pg_class c WHERE c.relnamespace = 'evolve'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT 'schema acl=' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'evolve'
ORDER BY 1
"#;

fn catalog(c: &mut Client) -> Vec<String> {
    c.query(CATALOG, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn upgrade_from_0_1_0_keeps_data_and_equals_a_fresh_install() {
    install_v010_script();
    let cluster = Cluster::start("upgrade", &[]);
    let mut admin = cluster.connect_to("postgres");
    for db in ["old_db", "new_db"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
    }

    let mut old = cluster.connect_to("old_db");
    old.batch_execute(
        r#"
        CREATE EXTENSION vector;
        CREATE EXTENSION pg_evolve VERSION '0.1.0';
        SELECT evolve.register_schema('{"entity_type": "earthquake", "description": "A seismic event",
            "attributes": {"mag": {"type": "number", "merge_policy": "max"}, "place": {"type": "string"}}}');
        SELECT evolve.register_schema('{"entity_type": "earthquake", "attributes": {"felt": {"type": "integer"}}}', 'ana');
        SELECT evolve.ingest('earthquake', jsonb_build_object('mag', i / 10.0, 'place', 'p' || i, 'sig', i, 'tsunami', i % 2),
                             entity_key => 'k' || (i % 40))
        FROM generate_series(1, 200) i;
        SELECT evolve.ingest('earthquake', '{"mag": 2, "felt": 4, "note": "x"}', 'ana', entity_key => 'a1');
        SELECT count(*) FROM evolve.propose_schema('earthquake');
        SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "quake"}');
        "#,
    )
    .unwrap();
    old.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(version(&mut old), "0.1.0");
    let before = data_digest(&mut old);
    assert!(
        before.iter().any(|l| l.starts_with("entities: 41 rows")),
        "{before:?}"
    );

    old.batch_execute("ALTER EXTENSION pg_evolve UPDATE")
        .unwrap();
    assert_eq!(version(&mut old), "0.2.0");
    // Every table of 0.1.0 holds the same rows; the tables 0.2.0 adds start empty.
    let after = data_digest(&mut old);
    let (kept, added): (Vec<String>, Vec<String>) =
        after.into_iter().partition(|l| before.contains(l));
    assert_eq!(kept, before, "data intact");
    assert!(added.iter().all(|l| l.contains(": 0 rows")), "{added:?}");
    assert!(!added.is_empty(), "0.2.0 adds deferred_indexes");

    let mut new = cluster.connect_to("new_db");
    new.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve")
        .unwrap();
    let (upgraded, fresh) = (catalog(&mut old), catalog(&mut new));
    assert!(
        fresh.len() > 200,
        "the catalog description covers the extension"
    );
    let only_upgraded: Vec<_> = upgraded.iter().filter(|l| !fresh.contains(l)).collect();
    let only_fresh: Vec<_> = fresh.iter().filter(|l| !upgraded.contains(l)).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "catalogs differ\nonly after upgrade: {only_upgraded:#?}\nonly in a fresh install: {only_fresh:#?}"
    );

    // The upgraded database works, with 0.2.0's rules.
    old.batch_execute(
        r#"CREATE ROLE late_writer LOGIN; GRANT evolve_writer TO late_writer;
           SELECT evolve.ingest('earthquake', '{"mag": 9.1, "place": "after"}', entity_key => 'after');"#,
    )
    .unwrap();
    let mut writer = cluster.connect_as("old_db", "late_writer");
    let denied = writer
        .batch_execute(r#"SELECT evolve.ingest('earthquake', '{"mag": 1}', 'ana')"#)
        .unwrap_err();
    assert_eq!(denied.code().map(|c| c.code()), Some("42501"));
    let mag: f64 = old
        .query_one(
            "SELECT (evolve.entity(entity_id)->>'mag')::float8 FROM evolve.entities WHERE entity_key = 'after'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mag, 9.1);
}
