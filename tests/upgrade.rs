//! The upgrade paths: 0.1.0, 0.2.0, 0.3.0 and 0.4.0 with data, `ALTER EXTENSION pg_evolve UPDATE`, data
//! intact and the catalog equal to a fresh install of the version reached.

use postgres::Client;

use crate::common::Cluster;

/// The frozen install scripts of earlier versions (`cargo pgrx schema` of their trees). A
/// database that runs one has it installed; the tests put them next to the current files.
const V010: &str = include_str!("fixtures/pg_evolve--0.1.0.sql");
const V020: &str = include_str!("fixtures/pg_evolve--0.2.0.sql");
const V030: &str = include_str!("fixtures/pg_evolve--0.3.0.sql");
const V040: &str = include_str!("fixtures/pg_evolve--0.4.0.sql");
const V050: &str = include_str!("fixtures/pg_evolve--0.5.0.sql");
const V060: &str = include_str!("fixtures/pg_evolve--0.6.0.sql");
const V070: &str = include_str!("fixtures/pg_evolve--0.7.0.sql");
const V080: &str = include_str!("fixtures/pg_evolve--0.8.0.sql");
const V090: &str = include_str!("fixtures/pg_evolve--0.9.0.sql");

fn install_old_scripts() {
    let dir = crate::common::pg_config_dir("sharedir");
    for (version, script) in [
        ("0.1.0", V010),
        ("0.2.0", V020),
        ("0.3.0", V030),
        ("0.4.0", V040),
        ("0.5.0", V050),
        ("0.6.0", V060),
        ("0.7.0", V070),
        ("0.8.0", V080),
        ("0.9.0", V090),
    ] {
        let path = format!("{}/extension/pg_evolve--{version}.sql", dir.trim());
        std::fs::write(&path, script).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}

fn version(c: &mut Client) -> String {
    c.query_one(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_evolve'",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The columns of each of the extension's tables.
fn columns(c: &mut Client) -> Vec<(String, Vec<String>)> {
    crate::common::extension_tables(c)
        .into_iter()
        .map(|t| {
            let cols = c
                .query(
                    "SELECT quote_ident(attname) FROM pg_attribute \
                     WHERE attrelid = ('evolve.' || quote_ident($1))::regclass AND attnum > 0 AND NOT attisdropped \
                     ORDER BY attnum",
                    &[&t],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (t, cols)
        })
        .collect()
}

/// Every row of the given tables, ordered, as text over the given columns (one line per
/// table): columns an upgrade adds do not hide whether the old ones kept their values.
fn data_digest(c: &mut Client, tables: &[(String, Vec<String>)]) -> Vec<String> {
    tables
        .iter()
        .map(|(t, cols)| {
            let row = c
                .query_one(
                    &format!(
                        "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) \
                         FROM (SELECT {} FROM evolve.{t}) r",
                        cols.join(", ")
                    ),
                    &[],
                )
                .unwrap();
            format!("{t}: {} rows, {}", row.get::<_, i64>(0), row.get::<_, String>(1))
        })
        .collect()
}

/// Upgraded and fresh catalogs are equal.
fn assert_same_catalog(upgraded: &mut Client, fresh: &mut Client) {
    // Partitions of generations are data, created by jobs (entity_embeddings_g<n>).
    let generation = |l: &String| {
        l.match_indices("entity_embeddings_g")
            .any(|(i, m)| l[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
    };
    let (mut upgraded, mut fresh) = (catalog(upgraded), catalog(fresh));
    upgraded.retain(|l| !generation(l));
    fresh.retain(|l| !generation(l));
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

const DATA_010: &str = r#"
    SELECT evolve.register_schema('{"entity_type": "earthquake", "description": "A seismic event",
        "attributes": {"mag": {"type": "number", "merge_policy": "max"}, "place": {"type": "string"}}}');
    SELECT evolve.register_schema('{"entity_type": "earthquake", "attributes": {"felt": {"type": "integer"}}}', 'ana');
    SELECT evolve.ingest('earthquake', jsonb_build_object('mag', i / 10.0, 'place', 'p' || i, 'sig', i, 'tsunami', i % 2),
                         entity_key => 'k' || (i % 40))
    FROM generate_series(1, 200) i;
    SELECT evolve.ingest('earthquake', '{"mag": 2, "felt": 4, "note": "x"}', 'ana', entity_key => 'a1');
    SELECT count(*) FROM evolve.propose_schema('earthquake');
    SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "quake"}');
"#;

/// Rows only 0.2.0 had reasons to hold: a migration with a function step (as 0.2.0's
/// register_migration stored it, by name only) and inbox rejects. Written directly: the library
/// installed is the new one, whose functions expect 0.3.0's tables.
const DATA_020: &str = r#"
    SET client_min_messages = error;
    CREATE FUNCTION public.shout(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p || '{"shouted": true}' $$;
    SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"depth": {"type": "number"}}}');
    INSERT INTO evolve.migrations (entity_type, from_version, to_version, steps, derived)
    VALUES ('earthquake', 1, 2, '[{"function": "public.shout"}]', false)
    ON CONFLICT (entity_type, from_version, to_version) DO UPDATE SET steps = EXCLUDED.steps, derived = false;
    INSERT INTO evolve.inbox_rejects (inbox_id, entity_type, payload, sqlstate, error)
    VALUES (1, 'nope', '{"a": 1}', '42704', 'entity type "nope" has no active schema'),
           (2, 'nope', '{"a": 2}', '42704', 'entity type "nope" has no active schema');
"#;

fn create_dbs(cluster: &Cluster, names: &[&str]) {
    let mut admin = cluster.connect_to("postgres");
    for db in names {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
    }
}

/// Updates to `to` and checks that every old column of every old table holds the same rows
/// and that the tables the update adds start empty.
fn update_keeps_data(c: &mut Client, to: Option<&str>, reached: &str) {
    let shape = columns(c);
    let before = data_digest(c, &shape);
    match to {
        Some(v) => c.batch_execute(&format!("ALTER EXTENSION pg_evolve UPDATE TO '{v}'")),
        None => c.batch_execute("ALTER EXTENSION pg_evolve UPDATE"),
    }
    .unwrap();
    assert_eq!(version(c), reached);
    assert_eq!(data_digest(c, &shape), before, "data intact");
    let added: Vec<(String, Vec<String>)> = columns(c)
        .into_iter()
        .filter(|(t, _)| !shape.iter().any(|(o, _)| o == t))
        .collect();
    // (0.4.0's aggregate parts hold the rows of the tables they replace, now views; 0.7.0's
    // entity_embeddings_shared is the table of embeddings before, now the partition of
    // generation 0 of the one of that name.)
    let added = data_digest(c, &added);
    assert!(
        added.iter().all(|l| {
            let table = l.split(':').next().unwrap();
            l.contains(": 0 rows")
                || table.ends_with("_parts")
                || table == "entity_embeddings_shared"
                || table == "embedding_profiles"
        }),
        "{added:?}"
    );
}

#[test]
fn upgrades_keep_data_and_equal_a_fresh_install() {
    install_old_scripts();
    let cluster = Cluster::start("upgrade", &[]);
    create_dbs(
        &cluster,
        &[
            "from_010", "from_020", "from_030", "from_040", "from_050", "from_060", "from_070",
            "from_080", "from_090", "fresh",
        ],
    );

    // 0.1.0 → 0.2.0 → 0.3.0 → 0.4.0 → 0.5.0 → 0.6.0 → 0.7.0 → 0.8.0 → 0.9.0 → 0.10.0.
    let mut old = cluster.connect_to("from_010");
    old.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.1.0';")
        .unwrap();
    old.batch_execute(DATA_010).unwrap();
    old.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(version(&mut old), "0.1.0");
    let entities: i64 = old
        .query_one("SELECT count(*) FROM evolve.entities", &[])
        .unwrap()
        .get(0);
    assert_eq!(entities, 41);
    update_keeps_data(&mut old, Some("0.2.0"), "0.2.0");
    update_keeps_data(&mut old, Some("0.3.0"), "0.3.0");
    update_keeps_data(&mut old, Some("0.4.0"), "0.4.0");
    update_keeps_data(&mut old, Some("0.5.0"), "0.5.0");
    update_keeps_data(&mut old, Some("0.6.0"), "0.6.0");
    update_keeps_data(&mut old, Some("0.7.0"), "0.7.0");
    update_keeps_data(&mut old, Some("0.8.0"), "0.8.0");
    update_keeps_data(&mut old, None, "0.10.0");

    // 0.2.0 with its own data → 0.3.0.
    let mut old2 = cluster.connect_to("from_020");
    old2.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.2.0';")
        .unwrap();
    old2.batch_execute(DATA_010).unwrap();
    old2.batch_execute(DATA_020).unwrap();
    old2.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(version(&mut old2), "0.2.0");
    update_keeps_data(&mut old2, None, "0.10.0");

    // 0.3.0 with data → 0.4.0: the aggregate tables become parts summed by views of the same
    // name and columns, which read back the same rows (update_keeps_data) and stay exact.
    let mut old3 = cluster.connect_to("from_030");
    old3.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.3.0';")
        .unwrap();
    old3.batch_execute(DATA_010).unwrap();
    assert_eq!(version(&mut old3), "0.3.0");
    update_keeps_data(&mut old3, None, "0.10.0");
    old3.batch_execute(DATA_010).unwrap();
    let mismatches: i64 = old3
        .query_one("SELECT count(*) FROM evolve.verify_aggregates()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        mismatches, 0,
        "aggregates exact after the update and more ingestion"
    );

    // 0.4.0 with data and pending proposals → 0.6.0: approve_proposal gains `force`, and the
    // next propose_schema run gives the pending proposals their verdict.
    let mut old4 = cluster.connect_to("from_040");
    old4.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.4.0';")
        .unwrap();
    old4.batch_execute(DATA_010).unwrap();
    assert_eq!(version(&mut old4), "0.4.0");
    update_keeps_data(&mut old4, None, "0.10.0");
    let verdicts: i64 = old4
        .query_one(
            "SELECT count(*) FROM evolve.propose_schema('earthquake') p \
             WHERE p.evidence->'compatibility' ? 'compatible' AND p.evidence->'impact' ? 'entities'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(verdicts > 0, "pending proposals carry their verdict");

    // 0.5.0 with data and pending proposals → 0.6.0: proposals gain the path they are about
    // (a key's path of one segment), and nested payloads ingested after the update are seen
    // by path.
    let mut old5 = cluster.connect_to("from_050");
    old5.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.5.0';")
        .unwrap();
    old5.batch_execute(DATA_010).unwrap();
    assert_eq!(version(&mut old5), "0.5.0");
    update_keeps_data(&mut old5, None, "0.10.0");
    let unpathed: i64 = old5
        .query_one(
            "SELECT count(*) FROM evolve.schema_proposals \
             WHERE kind = 'attribute' AND path IS DISTINCT FROM ARRAY[name]",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        unpathed, 0,
        "existing key proposals carry their one-segment path"
    );
    old5.batch_execute(
        r#"SELECT evolve.ingest('earthquake', '{"mag": 2.5, "origin": {"network": "us", "code": "x1"}}', entity_key => 'nested');"#,
    )
    .unwrap();
    let nested: Vec<String> = old5
        .query(
            "SELECT fragment_key FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id) \
             WHERE e.entity_key = 'nested' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(nested, ["origin.code", "origin.network"]);

    // 0.6.0 with embeddings → 0.7.0: they become generation 0 and answer searches; data that
    // changes is queued; a whole-type job builds a generation of its own.
    let mut old6 = cluster.connect_to("from_060");
    old6.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.6.0';")
        .unwrap();
    old6.batch_execute(DATA_010).unwrap();
    old6.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(version(&mut old6), "0.6.0");
    let embedded = crate::common::count(&mut old6, "SELECT count(*) FROM evolve.entity_embeddings");
    assert_eq!(embedded, 41);
    update_keeps_data(&mut old6, Some("0.7.0"), "0.7.0");
    let found = crate::common::count(
        &mut old6,
        "SELECT count(*) FROM evolve.semantic_search('earthquake', 'p7', 5) WHERE generation = 0",
    );
    assert_eq!(found, 5, "0.6.0's embeddings answer as generation 0");
    old6.batch_execute(
        r#"SELECT evolve.ingest('earthquake', '{"mag": 9.9}', entity_key => 'new after 0.7.0');"#,
    )
    .unwrap();
    let queued = crate::common::count(&mut old6, "SELECT count(*) FROM evolve.embedding_queue");
    assert_eq!(queued, 1, "new data is queued");
    old6.batch_execute(
        r#"SELECT evolve.apply_change('{"kind": "entity_type_description_changed", "entity_type": "earthquake", "description": "after 0.7.0"}');"#,
    )
    .unwrap();
    old6.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let current = crate::common::count(
        &mut old6,
        "SELECT count(DISTINCT generation) FILTER (WHERE generation > 0) * 1000 + count(*) \
         FROM evolve.semantic_search('earthquake', 'p7', 5)",
    );
    assert_eq!(current, 1005, "answered from the new generation");
    update_keeps_data(&mut old6, None, "0.10.0");

    // 0.7.0 with a type on a profile of its own → 0.8.0: the profile keeps working, and
    // profiles may now name a batched function.
    let mut old7 = cluster.connect_to("from_070");
    old7.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.7.0';")
        .unwrap();
    old7.batch_execute(DATA_010).unwrap();
    old7.batch_execute(
        "SELECT evolve.create_embedding_profile('hashing_small', 256, 'hashing', 10); \
         SELECT evolve.set_embedding_profile('earthquake', 'hashing_small');",
    )
    .unwrap();
    old7.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(version(&mut old7), "0.7.0");
    update_keeps_data(&mut old7, None, "0.10.0");
    let found = crate::common::count(
        &mut old7,
        "SELECT count(*) FROM evolve.semantic_search('earthquake', 'p7', 5) WHERE generation > 0",
    );
    assert_eq!(found, 5, "0.7.0's generation answers");
    old7.batch_execute(
        "CREATE FUNCTION public.embed_all(texts text[]) RETURNS vector[] LANGUAGE sql AS \
             $$ SELECT array_agg(evolve.embed(t) ORDER BY o) FROM unnest(texts) WITH ORDINALITY u(t, o) $$; \
         SELECT evolve.create_embedding_profile('batched', 256, function => 'public.embed_all'); \
         SELECT evolve.set_embedding_profile('earthquake', 'batched');",
    )
    .unwrap();
    old7.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let found = crate::common::count(
        &mut old7,
        "SELECT count(*) FROM evolve.semantic_search('earthquake', 'p7', 5) s \
         JOIN evolve.embedding_generations g USING (generation) WHERE g.profile = 'batched'",
    );
    assert_eq!(found, 5, "a function profile after the update");

    // 0.8.0 with fragments → 0.9.0: observations and fragments are keyed by entity first;
    // promotion, expiry, archiving and ingestion work on the new keys.
    let mut old8 = cluster.connect_to("from_080");
    old8.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.8.0';")
        .unwrap();
    old8.batch_execute(DATA_010).unwrap();
    assert_eq!(version(&mut old8), "0.8.0");
    update_keeps_data(&mut old8, None, "0.10.0");
    old8.batch_execute(
        r#"SET evolve.promoted_fragment_retention = 0;
           SELECT evolve.update_schema_incremental('earthquake', '{"attributes": {"sig": {"type": "integer"}}}');
           SELECT evolve.ingest('earthquake', '{"mag": 7, "tsunami": 1, "fresh": true}', entity_key => 'k1');"#,
    )
    .unwrap();
    let states = |c: &mut Client| -> Vec<(String, String, i64)> {
        c.query(
            "SELECT fragment_key, lifecycle_state, count(*) FROM evolve.raw_fragments \
             WHERE user_id IS NULL GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    let row = |k: &str, s: &str, n: i64| (k.to_string(), s.to_string(), n);
    assert_eq!(
        states(&mut old8),
        [
            row("fresh", "active", 1),
            row("sig", "promoted", 40),
            row("tsunami", "active", 40)
        ]
    );
    let observed = crate::common::count(
        &mut old8,
        "SELECT count(*) FROM evolve.entities WHERE user_id IS NULL AND snapshot ? 'sig'",
    );
    assert_eq!(observed, 40, "the promoted fragments became observations");
    let deleted = crate::common::count(&mut old8, "SELECT evolve.cleanup_expired_fragments()");
    assert_eq!(deleted, 40);
    let active = crate::common::count(
        &mut old8,
        "SELECT count(*) FROM evolve.raw_fragments WHERE lifecycle_state = 'active'",
    );
    let archived = crate::common::count(
        &mut old8,
        "SELECT evolve.archive_stale_fragments('0 seconds', 100)",
    );
    assert_eq!(
        archived, active,
        "every active fragment was seen fewer than 100 times"
    );
    assert!(archived >= 41);
    assert_eq!(
        states(&mut old8),
        [row("fresh", "archived", 1), row("tsunami", "archived", 40)]
    );
    let mismatches =
        crate::common::count(&mut old8, "SELECT count(*) FROM evolve.verify_aggregates()");
    assert_eq!(mismatches, 0);

    // 0.9.0 with a tenant's data → 0.10.0: observations, embeddings and proposal history carry
    // their scope, and the policies read it instead of joining.
    let mut old9 = cluster.connect_to("from_090");
    old9.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve VERSION '0.9.0';")
        .unwrap();
    old9.batch_execute(DATA_010).unwrap();
    old9.batch_execute(
        r#"SELECT evolve.ingest('earthquake', '{"mag": 3, "felt": 9}', 'ana', entity_key => 'a2')"#,
    )
    .unwrap();
    old9.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(version(&mut old9), "0.9.0");
    update_keeps_data(&mut old9, None, "0.10.0");
    let unscoped = crate::common::count(
        &mut old9,
        "SELECT (SELECT count(*) FROM evolve.observations o JOIN evolve.entities e USING (entity_id) \
                 WHERE o.user_id IS DISTINCT FROM e.user_id) \
              + (SELECT count(*) FROM evolve.entity_embeddings x JOIN evolve.entities e USING (entity_id) \
                 WHERE x.user_id IS DISTINCT FROM e.user_id) \
              + (SELECT count(*) FROM evolve.schema_evolution_history h JOIN evolve.schema_proposals p \
                 ON p.id = h.proposal_id WHERE h.user_id IS DISTINCT FROM p.user_id OR h.proposal_kind <> p.kind)",
    );
    assert_eq!(
        unscoped, 0,
        "every row has its entity's or proposal's scope"
    );
    let scoped = crate::common::count(
        &mut old9,
        "SELECT (SELECT count(*) FROM evolve.observations WHERE user_id = 'ana') \
              * (SELECT count(*) FROM evolve.entity_embeddings WHERE user_id = 'ana')",
    );
    assert!(scoped > 0, "ana's observations and embeddings are hers");
    old9.batch_execute(
        r#"SELECT evolve.ingest('earthquake', '{"mag": 4, "felt": 1}', 'ana', entity_key => 'a3')"#,
    )
    .unwrap();
    old9.batch_execute("CALL evolve.run_reembedding()").unwrap();
    old9.batch_execute(
        r#"SELECT evolve.ingest('earthquake', '{"mag": 5}', 'ana', entity_key => 'a4');
           CREATE ROLE reader_090 LOGIN; GRANT evolve_reader TO reader_090;"#,
    )
    .unwrap();
    let mut reader = cluster.connect_as("from_090", "reader_090");
    let seen = |r: &mut Client, tenant: &str| -> (i64, i64, i64) {
        r.batch_execute(&format!("SET evolve.current_user_id = '{tenant}'"))
            .unwrap();
        let row = r
            .query_one(
                "SELECT (SELECT count(*) FROM evolve.observations WHERE user_id = 'ana'), \
                        (SELECT count(*) FROM evolve.entity_embeddings WHERE user_id = 'ana'), \
                        (SELECT count(*) FROM evolve.embedding_queue WHERE tenant = 'ana')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let (observations, embeddings, queued) = seen(&mut reader, "ana");
    assert!(
        observations >= 7 && embeddings >= 3 && queued == 1,
        "{observations} {embeddings} {queued}"
    );
    assert_eq!(
        seen(&mut reader, "bob"),
        (0, 0, 0),
        "another tenant sees none of it"
    );

    let mut new = cluster.connect_to("fresh");
    new.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION pg_evolve")
        .unwrap();
    assert_same_catalog(&mut old, &mut new);
    assert_same_catalog(&mut old2, &mut new);
    assert_same_catalog(&mut old3, &mut new);
    assert_same_catalog(&mut old4, &mut new);
    assert_same_catalog(&mut old5, &mut new);
    assert_same_catalog(&mut old6, &mut new);
    assert_same_catalog(&mut old7, &mut new);
    assert_same_catalog(&mut old8, &mut new);
    assert_same_catalog(&mut old9, &mut new);

    // The upgraded databases work, with 0.3.0's rules (and 0.4.0's aggregates).
    for (db, c) in [
        ("from_010", &mut old),
        ("from_020", &mut old2),
        ("from_030", &mut old3),
    ] {
        c.batch_execute(&format!(
            r#"CREATE ROLE late_writer_{db} LOGIN; GRANT evolve_writer TO late_writer_{db};
               SELECT evolve.ingest('earthquake', '{{"mag": 9.1, "place": "after", "exact": 0.1000000000000000000000000001}}', entity_key => 'after');"#,
        ))
        .unwrap();
        let mut writer = cluster.connect_as(db, &format!("late_writer_{db}"));
        let denied = writer
            .batch_execute(r#"SELECT evolve.ingest('earthquake', '{"mag": 1}', 'ana')"#)
            .unwrap_err();
        assert_eq!(denied.code().map(|c| c.code()), Some("42501"));
        // COPY-able inbox, no row-level security left on it.
        writer
            .batch_execute(r#"INSERT INTO evolve.inbox (entity_type, payload) VALUES ('earthquake', '{"mag": 3}')"#)
            .unwrap();
        let exact: String = c
            .query_one(
                "SELECT value::text FROM evolve.raw_fragments WHERE fragment_key = 'exact'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(exact, "0.1000000000000000000000000001");
    }

    // A function step registered under 0.2.0 was resolved at call time: after the update it
    // refuses to run until the migration is registered again, which resolves it once.
    old2.batch_execute("SET evolve.migration_strategy = 'reject'")
        .unwrap();
    let e = old2
        .batch_execute(r#"SELECT evolve.ingest('earthquake', '{"mag": 1}', schema_version => 1)"#)
        .unwrap_err();
    let message = e.as_db_error().unwrap().message().to_string();
    assert!(
        message.contains("register the migration again"),
        "{message}"
    );
    old2.batch_execute(
        r#"SELECT evolve.register_migration('earthquake', 1, 2, '[{"function": "public.shout"}]');
           SELECT evolve.ingest('earthquake', '{"mag": 1}', schema_version => 1, entity_key => 'shouted');"#,
    )
    .unwrap();
    let shouted: i64 = old2
        .query_one(
            "SELECT count(*) FROM evolve.raw_fragments f JOIN evolve.entities e USING (entity_id) \
             WHERE e.entity_key = 'shouted' AND f.fragment_key = 'shouted'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(shouted, 1);
}
