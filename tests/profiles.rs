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
