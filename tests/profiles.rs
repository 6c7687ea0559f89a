//! Embedding profiles: all-MiniLM-L6-v2 in the backend against the reference vectors, a type
//! moved to it (a new generation, searched with the same model), and the errors.

use postgres::Client;

use crate::common::{count, state, text, Cluster};

fn cosine(a: &[f64], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Every text of the reference file, embedded by `evolve.embed(text, 'minilm')` in the backend,
/// has a cosine of at least 0.9999 with the reference vector (made outside the project).
#[test]
fn minilm_in_the_backend_matches_the_reference_vectors() {
    let cluster = Cluster::start("profiles-oracle", &[]);
    let db = cluster.fresh_db("profiles_oracle");
    let mut c = cluster.connect_to(&db);
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/minilm/tests/data/minilm-reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let items = reference["items"].as_array().unwrap();
    assert!(items.len() >= 40);
    let mut worst = 1.0f64;
    for item in items {
        let t = item["text"].as_str().unwrap();
        let expected: Vec<f64> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got: Vec<f32> = c
            .query_one("SELECT evolve._embed_profile($1, 'minilm')", &[&t])
            .unwrap()
            .get(0);
        assert_eq!(got.len(), 384);
        let cos = cosine(&expected, &got);
        worst = worst.min(cos);
        assert!(cos >= 0.9999, "cosine {cos} for {t:?}");
    }
    eprintln!(
        "minilm in the backend: lowest cosine {worst:.7} over {} texts",
        items.len()
    );
    // The SQL function gives a vector of 384 dimensions, of unit length.
    let row = c
        .query_one(
            "SELECT vector_dims(evolve.embed('a seismic event', 'minilm')), \
                    round(vector_norm(evolve.embed('a seismic event', 'minilm'))::numeric, 5)::float8",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 384);
    assert_eq!(row.get::<_, f64>(1), 1.0);
}

fn search(c: &mut Client, query: &str) -> (String, i64) {
    let r = c
        .query_one(
            "SELECT entity_key, generation FROM evolve.semantic_search('spot', $1, 1)",
            &[&query],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// A type moved to the minilm profile: re-embedded into a new generation of 384 dimensions
/// (search answers from the hashing one until then), searched with the same model, which
/// finds by meaning what hashing cannot; new data follows with the new profile.
#[test]
fn a_type_moves_to_minilm_and_search_follows() {
    let cluster = Cluster::start("profiles-move", &[]);
    let db = cluster.fresh_db("profiles_move");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "spot", "description": "A place to visit",
                                          "attributes": {"about": {"type": "string"}}}');
           SELECT evolve.ingest('spot', jsonb_build_object('about', t), entity_key => k)
           FROM (VALUES ('beach', 'sandy beach by the ocean with gentle waves'),
                        ('ski', 'ski resort high in the snowy mountains'),
                        ('office', 'busy downtown office district with tall towers'),
                        ('farm', 'quiet farm with cows and wheat fields')) v(k, t);"#,
    )
    .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let job = count(
        &mut c,
        "SELECT evolve.set_embedding_profile('spot', 'minilm')",
    );
    assert!(job > 0);
    // Until the job completes, search answers from the hashing generation.
    assert_eq!(search(&mut c, "sandy beach").1, 0);
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    let row = c
        .query_one(
            "SELECT g.generation, g.profile, (SELECT count(*) FROM evolve.entity_embeddings x \
                 WHERE x.generation = g.generation AND x.profile = 'minilm' AND vector_dims(x.embedding) = 384) \
             FROM evolve.embedding_generations g WHERE g.state = 'current'",
            &[],
        )
        .unwrap();
    let generation: i64 = row.get(0);
    assert_eq!(row.get::<_, String>(1), "minilm");
    assert_eq!(row.get::<_, i64>(2), 4);
    // By meaning: no word in common with the matching text.
    for (query, key) in [
        ("seaside holiday", "beach"),
        ("winter sports", "ski"),
        ("corporate skyscrapers", "office"),
        ("livestock and crops", "farm"),
    ] {
        assert_eq!(
            search(&mut c, query),
            (key.to_string(), generation),
            "{query}"
        );
    }
    // The generation's index is on the column at 384 dimensions, and the search uses it.
    let index = text(
        &mut c,
        &format!(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'entity_embeddings_g{generation}' AND indexdef LIKE '%hnsw%'"
        ),
    )
    .unwrap();
    assert!(index.contains("vector(384)"), "{index}");
    // New data follows with the type's profile.
    c.batch_execute(
        r#"SELECT evolve.ingest('spot', '{"about": "old castle on a hill with a museum"}', entity_key => 'castle');"#,
    )
    .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(
        search(&mut c, "medieval fortress"),
        ("castle".to_string(), generation)
    );
    // Back to hashing: another generation, 256 dimensions.
    c.batch_execute("SELECT evolve.set_embedding_profile('spot', 'hashing'); ")
        .unwrap();
    c.batch_execute("CALL evolve.run_reembedding()").unwrap();
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM evolve.entity_embeddings WHERE vector_dims(embedding) = 256 AND profile = 'hashing'"
        ),
        5
    );
}

/// Errors: a missing model, profiles that do not exist or are malformed, callers without the
/// right.
#[test]
fn profile_errors_are_clear() {
    let cluster = Cluster::start("profiles-errors", &[]);
    let db = cluster.fresh_db("profiles_errors");
    let mut c = cluster.connect_to(&db);
    c.batch_execute("SET evolve.model_dir = '/nonexistent/minilm'")
        .unwrap();
    let e = c
        .batch_execute("SELECT evolve.embed('x', 'minilm')")
        .unwrap_err();
    let db_error = e.as_db_error().unwrap();
    assert_eq!(db_error.code().code(), "58P01");
    assert!(
        db_error
            .hint()
            .unwrap_or_default()
            .contains("scripts/model.sh"),
        "{db_error:?}"
    );
    c.batch_execute("RESET evolve.model_dir").unwrap();
    assert_eq!(state(&mut c, "SELECT evolve.embed('x', 'nope')"), "42704");
    assert_eq!(
        state(
            &mut c,
            "SELECT evolve.set_embedding_profile('spot', 'nope')"
        ),
        "42704"
    );
    assert_eq!(
        state(
            &mut c,
            "SELECT evolve.create_embedding_profile('big', 1024, 'minilm')"
        ),
        "22023"
    );
    assert_eq!(
        state(
            &mut c,
            "SELECT evolve.create_embedding_profile('Bad Name', 384, 'minilm')"
        ),
        "22023"
    );
    assert_eq!(
        text(
            &mut c,
            "SELECT evolve.create_embedding_profile('minilm_small', 384, 'minilm', max_batch => 8)"
        )
        .as_deref(),
        Some("minilm_small")
    );
    assert_eq!(
        state(
            &mut c,
            "SELECT evolve.create_embedding_profile('minilm_small', 384, 'minilm')"
        ),
        "42710"
    );
    c.batch_execute("CREATE ROLE reader LOGIN; GRANT evolve_reader TO reader; SET ROLE reader")
        .unwrap();
    assert_eq!(
        state(
            &mut c,
            "SELECT evolve.create_embedding_profile('other', 384, 'minilm')"
        ),
        "42501"
    );
    // Readers embed with any profile.
    assert_eq!(
        count(
            &mut c,
            "SELECT vector_dims(evolve.embed('x', 'minilm_small'))::int8"
        ),
        384
    );
}

/// A profile that names a batched SQL function (`text[] → vector[]`): created by an admin that
/// is no superuser, it embeds a type in calls of up to `max_batch` texts, with the rights of
/// that admin (not the extension owner's, not the caller's); a failing call falls back to one
/// call per text, so only the bad text fails (and is parked); search embeds its query with the
/// same function; and functions that must not run are refused when the profile is created.
#[test]
fn a_function_profile_embeds_in_batches_as_its_creator() {
    let cluster = Cluster::start("profiles-function", &[]);
    let db = cluster.fresh_db("profiles_function");
    let mut su = cluster.connect_to(&db);
    su.batch_execute(
        "CREATE ROLE embed_admin LOGIN; GRANT evolve_admin TO embed_admin;
         CREATE ROLE searcher LOGIN; GRANT evolve_reader TO searcher;
         CREATE SCHEMA app AUTHORIZATION embed_admin;",
    )
    .unwrap();
    su.batch_execute(
        r#"SELECT evolve.register_schema('{"entity_type": "spot", "attributes": {"about": {"type": "string"}}}');
           SELECT evolve.ingest('spot', jsonb_build_object('about', CASE WHEN i = 77 THEN 'poison' ELSE repeat('x', i) END),
                                entity_key => 'k' || i)
           FROM generate_series(1, 200) i;"#,
    )
    .unwrap();
    su.batch_execute("CALL evolve.run_reembedding()").unwrap();

    let mut admin = cluster.connect_as(&db, "embed_admin");
    // Element 1: the text's length; element 2: 1 when running as embed_admin; element 3: 1.
    admin
        .batch_execute(
            "CREATE SEQUENCE app.calls;
             CREATE FUNCTION app.embed3(texts text[]) RETURNS vector[] LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM nextval('app.calls');
                 IF EXISTS (SELECT FROM unnest(texts) t WHERE t LIKE '%poison%') THEN
                     RAISE EXCEPTION 'poisoned text';
                 END IF;
                 RETURN (SELECT array_agg(format('[%s,%s,1]', length(t),
                                                 (current_user = 'embed_admin')::int)::public.vector ORDER BY o)
                         FROM unnest(texts) WITH ORDINALITY u(t, o));
             END $$;
             CREATE FUNCTION app.wrong(texts text[]) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
             CREATE DOMAIN app.vector AS text;
             CREATE FUNCTION app.fake(texts text[]) RETURNS app.vector[] LANGUAGE sql
                 AS $$ SELECT array_agg(t::app.vector) FROM unnest(texts) t $$;",
        )
        .unwrap();
    // Refused: no such function, the wrong signature or result, a bad name, a temporary schema,
    // and a function whose owner does not hold the creator's privileges.
    for (sql, sqlstate) in [
        (
            "SELECT evolve.create_embedding_profile('p', 3, function => 'app.nope')",
            "42883",
        ),
        (
            "SELECT evolve.create_embedding_profile('p', 3, function => 'app.wrong')",
            "42P13",
        ),
        // A type of the same name in another schema is another type.
        (
            "SELECT evolve.create_embedding_profile('p', 3, function => 'app.fake')",
            "42P13",
        ),
        (
            "SELECT evolve.create_embedding_profile('p', 3, function => 'app.embed3; drop')",
            "22023",
        ),
        (
            "SELECT evolve.create_embedding_profile('p', 3, function => 'pg_temp.f')",
            "42501",
        ),
        (
            "SELECT evolve.create_embedding_profile('p', 3, 'minilm', function => 'app.embed3')",
            "22023",
        ),
        (
            "SELECT evolve.create_embedding_profile('p', 0, function => 'app.embed3')",
            "22023",
        ),
    ] {
        assert_eq!(state(&mut admin, sql), sqlstate, "{sql}");
    }
    su.batch_execute(
        "CREATE ROLE stranger; CREATE FUNCTION app.foreign3(texts text[]) RETURNS vector[] \
             LANGUAGE sql AS $$ SELECT NULL::vector[] $$; \
         ALTER FUNCTION app.foreign3(text[]) OWNER TO stranger;",
    )
    .unwrap();
    assert_eq!(
        state(
            &mut admin,
            "SELECT evolve.create_embedding_profile('p', 3, function => 'app.foreign3')"
        ),
        "42501"
    );

    assert_eq!(
        text(
            &mut admin,
            "SELECT evolve.create_embedding_profile('tiny', 3, function => 'app.embed3', max_batch => 50)"
        )
        .as_deref(),
        Some("tiny")
    );
    let row = admin
        .query_one(
            "SELECT model, function, run_as::text FROM evolve.embedding_profiles WHERE name = 'tiny'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (
            "function".to_string(),
            "app.embed3(text[])".to_string(),
            "embed_admin".to_string()
        )
    );
    admin
        .batch_execute("SELECT evolve.set_embedding_profile('spot', 'tiny')")
        .unwrap();
    su.batch_execute("SET evolve.max_embed_attempts = 1; SET evolve.embed_batch_size = 100")
        .unwrap();
    su.batch_execute("CALL evolve.run_reembedding()").unwrap();
    // 200 texts: 4 calls of 50, and for the chunk holding the bad text one call per text.
    let calls = count(&mut su, "SELECT last_value FROM app.calls");
    assert_eq!(calls, 4 + 50, "calls of the function");
    let row = su
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE (x.embedding::real[])[2] = 1 AND vector_dims(x.embedding) = 3) \
             FROM evolve.entity_embeddings x JOIN evolve.embedding_generations g USING (generation) \
             WHERE g.state = 'current' AND g.entity_type = 'spot' AND x.profile = 'tiny'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (199, 199),
        "every text but the bad one, embedded as embed_admin"
    );
    let error = text(
        &mut su,
        "SELECT q.last_error FROM evolve.embedding_queue q JOIN evolve.entities e USING (entity_id) \
         WHERE e.entity_key = 'k77'",
    )
    .unwrap_or_default();
    assert!(error.contains("poisoned text"), "{error}");
    // A reader searches: the query is embedded by the same function, as embed_admin.
    let mut reader = cluster.connect_as(&db, "searcher");
    let r = reader
        .query_one(
            "SELECT entity_key, generation FROM evolve.semantic_search('spot', repeat('y', 150), 1)",
            &[],
        )
        .unwrap();
    assert!(
        r.get::<_, i64>(1) > 0,
        "answered from the function's generation"
    );
    let key: String = r.get(0);
    assert!(key.starts_with('k'), "{key}");
    assert_eq!(
        count(
            &mut reader,
            "SELECT ((evolve.embed('abcd', 'tiny')::real[])[1] * 10 \
                    + (evolve.embed('abcd', 'tiny')::real[])[2])::int8"
        ),
        41,
        "4 characters, embedded as embed_admin"
    );
    // The function runs with search_path = pg_catalog, pg_temp whoever calls: a caller's schema
    // that shadows length() (with a search_path naming pg_catalog after it) changes nothing,
    // and the caller's search_path is back after the call, and after a failed one.
    su.batch_execute(
        "CREATE SCHEMA evil; GRANT USAGE ON SCHEMA evil TO searcher; \
         CREATE FUNCTION evil.length(text) RETURNS integer LANGUAGE sql AS 'SELECT 99'; \
         CREATE FUNCTION app.plain3(texts text[]) RETURNS public.vector[] LANGUAGE sql \
             AS $$ SELECT array_agg(format('[%s,0,1]', length(t))::public.vector) FROM unnest(texts) t $$; \
         ALTER FUNCTION app.plain3(text[]) OWNER TO embed_admin;",
    )
    .unwrap();
    admin
        .batch_execute(
            "SELECT evolve.create_embedding_profile('plain', 3, function => 'app.plain3')",
        )
        .unwrap();
    reader
        .batch_execute("SET search_path = evil, pg_catalog, public")
        .unwrap();
    assert_eq!(
        count(
            &mut reader,
            "SELECT (evolve.embed('abcd', 'plain')::real[])[1]::int8"
        ),
        4,
        "length() is pg_catalog's"
    );
    assert_eq!(
        text(&mut reader, "SHOW search_path").as_deref(),
        Some("evil, pg_catalog, public")
    );
    assert_eq!(
        state(&mut reader, "SELECT evolve.embed('x', 'nope')"),
        "42704"
    );
    assert_eq!(
        text(&mut reader, "SHOW search_path").as_deref(),
        Some("evil, pg_catalog, public")
    );
    reader.batch_execute("RESET search_path").unwrap();
    // A stored OID that no longer names the function (as after pg_upgrade, which keeps no
    // function OIDs): the function is found by its signature.
    su.batch_execute("UPDATE evolve.embedding_profiles SET function_oid = 1 WHERE name = 'tiny'")
        .unwrap();
    assert_eq!(
        count(
            &mut reader,
            "SELECT (evolve.embed('abcd', 'tiny')::real[])[1]::int8"
        ),
        4
    );
    // The function changes hands: the next call refuses to run it.
    su.batch_execute("ALTER FUNCTION app.embed3(text[]) OWNER TO stranger")
        .unwrap();
    assert_eq!(
        state(&mut reader, "SELECT evolve.embed('abcd', 'tiny')"),
        "22000"
    );
}
