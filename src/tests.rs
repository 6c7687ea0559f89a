// In-backend tests (`cargo pgrx test`). Each runs in its own transaction, rolled back after.

use pgrx::prelude::*;
use serde_json::{json, Value};

fn sql_json(query: &str) -> Option<Value> {
    Spi::get_one::<pgrx::JsonB>(query).unwrap().map(|j| j.0)
}

fn register(doc: Value, user: Option<&str>) -> i32 {
    Spi::get_one_with_args::<i32>(
        "SELECT evolve.register_schema($1, $2)",
        &[pgrx::JsonB(doc).into(), user.into()],
    )
    .unwrap()
    .unwrap()
}

fn quake() -> Value {
    json!({
        "entity_type": "earthquake",
        "description": "A seismic event",
        "attributes": {
            "mag": {"type": "number", "description": "Magnitude"},
            "place": {"type": "string"}
        },
        "relationships": {"near": {"target": "place"}}
    })
}

#[pg_test]
fn register_returns_versions() {
    assert_eq!(register(quake(), None), 1);
    // The same definition again is not a change.
    assert_eq!(register(quake(), None), 1);
    let mut v2 = quake();
    v2["attributes"]["depth"] = json!({"type": "number"});
    assert_eq!(register(v2, None), 2);
    let count = Spi::get_one::<i64>("SELECT count(*) FROM evolve.schema_history").unwrap();
    assert_eq!(count, Some(2));
}

#[pg_test]
fn active_schema_merges_user_extension() {
    register(quake(), None);
    register(
        json!({"entity_type": "earthquake",
               "attributes": {"felt": {"type": "integer"},
                              "mag": {"type": "number", "description": "Richter"}}}),
        Some("ana"),
    );
    let global = sql_json("SELECT evolve.active_schema('earthquake')").unwrap();
    assert!(global["attributes"].get("felt").is_none());
    assert_eq!(global["version"], json!(1));
    let ana = sql_json("SELECT evolve.active_schema('earthquake', 'ana')").unwrap();
    assert_eq!(ana["attributes"]["felt"]["type"], json!("integer"));
    assert_eq!(ana["attributes"]["mag"]["description"], json!("Richter"));
    assert_eq!(ana["attributes"]["place"]["type"], json!("string"));
    assert_eq!(ana["user_version"], json!(1));
    assert!(sql_json("SELECT evolve.active_schema('nothing')").is_none());
}

#[pg_test]
fn cache_sees_changes_in_the_same_transaction() {
    register(quake(), None);
    let before = sql_json("SELECT evolve.active_schema('earthquake')").unwrap();
    assert_eq!(before["version"], json!(1));
    Spi::run(
        r#"SELECT evolve.update_schema_incremental('earthquake', '{"attributes":{"depth":{"type":"number"}}}')"#,
    )
    .unwrap();
    let after = sql_json("SELECT evolve.active_schema('earthquake')").unwrap();
    assert_eq!(after["version"], json!(2));
    assert_eq!(after["attributes"]["depth"]["type"], json!("number"));
    let hits = Spi::get_one::<i64>("SELECT hits FROM evolve.cache_stats()")
        .unwrap()
        .unwrap();
    let _ = sql_json("SELECT evolve.active_schema('earthquake')");
    let hits_after = Spi::get_one::<i64>("SELECT hits FROM evolve.cache_stats()")
        .unwrap()
        .unwrap();
    assert_eq!(hits_after, hits + 1);
}

#[pg_test]
fn deactivate_and_activate() {
    register(quake(), None);
    assert_eq!(
        Spi::get_one::<bool>("SELECT evolve.deactivate_schema('earthquake')").unwrap(),
        Some(true)
    );
    assert!(sql_json("SELECT evolve.active_schema('earthquake')").is_none());
    assert_eq!(
        Spi::get_one::<bool>("SELECT evolve.deactivate_schema('earthquake')").unwrap(),
        Some(false)
    );
    assert_eq!(
        Spi::get_one::<bool>("SELECT evolve.activate_schema('earthquake')").unwrap(),
        Some(true)
    );
    assert!(sql_json("SELECT evolve.active_schema('earthquake')").is_some());
}

#[pg_test]
fn incremental_patch_removes_own_fields() {
    register(quake(), None);
    let v = Spi::get_one::<i32>(
        r#"SELECT evolve.update_schema_incremental('earthquake', '{"attributes":{"place":null}}')"#,
    )
    .unwrap();
    assert_eq!(v, Some(2));
    let s = sql_json("SELECT evolve.active_schema('earthquake')").unwrap();
    assert!(s["attributes"].get("place").is_none());
    let diff = sql_json("SELECT diff FROM evolve.schema_history WHERE version = 2").unwrap();
    assert_eq!(diff["attributes"]["removed"], json!(["place"]));
}

#[pg_test]
#[should_panic(expected = "may not remove global field \"mag\"")]
fn user_cannot_remove_global_attribute() {
    register(quake(), None);
    Spi::run(r#"SELECT evolve.update_schema_incremental('earthquake', '{"attributes":{"mag":null}}', 'ana')"#)
        .unwrap();
}

#[pg_test]
#[should_panic(expected = "invalid schema definition at /attributes/mag/type")]
fn invalid_definition_names_its_path() {
    register(
        json!({"entity_type": "e", "attributes": {"mag": {"type": "float"}}}),
        None,
    );
}

/// A small deterministic generator, so the property test needs no extra dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Incremental snapshots equal a full recompute on random histories of every merge policy,
/// including a schema change half way (which forces a full recompute on the next observation).
#[pg_test]
fn incremental_snapshot_equals_full_recompute() {
    register(
        json!({"entity_type": "probe", "attributes": {
            "lww": {"type": "number"},
            "hi": {"type": "number", "merge_policy": "max"},
            "lo": {"type": "number", "merge_policy": "min"},
            "tags": {"type": "array", "merge_policy": "union"},
            "owner": {"type": "string", "merge_policy": "source_priority", "source_priority": ["a", "b"]}}}),
        None,
    );
    let mut rng = Lcg(42);
    let sources = ["a", "b", "c"];
    for round in 0..400 {
        if round == 200 {
            Spi::run(r#"SELECT evolve.update_schema_incremental('probe', '{"attributes": {"extra": {"type": "integer"}}}')"#)
                .unwrap();
        }
        let key = format!("e{}", rng.next(12));
        let mut payload = serde_json::Map::new();
        for attr in ["lww", "hi", "lo", "tags", "owner", "extra", "undeclared"] {
            if rng.next(2) == 0 {
                continue;
            }
            let v = match attr {
                "tags" => json!([format!("t{}", rng.next(5)), format!("t{}", rng.next(5))]),
                "owner" => json!(format!("o{}", rng.next(9))),
                _ if rng.next(6) == 0 => Value::Null,
                _ => json!(rng.next(1000) as i64 - 500),
            };
            payload.insert(attr.to_string(), v);
        }
        Spi::get_one_with_args::<i64>(
            "SELECT evolve.ingest('probe', $1, source => $2, entity_key => $3)",
            &[
                pgrx::JsonB(Value::Object(payload)).into(),
                sources[rng.next(3) as usize].into(),
                key.as_str().into(),
            ],
        )
        .unwrap();
    }
    let differing = Spi::get_one::<i64>(
        "SELECT count(*) FROM evolve.entities WHERE snapshot <> evolve.refresh_snapshot(entity_id)",
    )
    .unwrap();
    assert_eq!(differing, Some(0));
    let entities = Spi::get_one::<i64>("SELECT count(*) FROM evolve.entities").unwrap();
    assert_eq!(entities, Some(12));
    let verify = Spi::get_one::<i64>("SELECT count(*) FROM evolve.verify_aggregates()").unwrap();
    assert_eq!(verify, Some(0));
}

/// Every pair of distinct lifecycle states through the trigger: exactly the legal ones pass.
#[pg_test]
fn fragment_lifecycle_transitions() {
    register(
        json!({"entity_type": "quake", "attributes": {"mag": {"type": "number"}}}),
        None,
    );
    Spi::run(r#"SELECT evolve.ingest('quake', '{"felt": 1}', entity_key => 'a')"#).unwrap();
    Spi::run(
        "CREATE TEMP TABLE outcomes (from_state text, to_state text, allowed boolean);
         DO $$
         DECLARE f text; t text;
         BEGIN
           FOR f, t IN SELECT a, b FROM unnest(ARRAY['active','promoted','archived','pending_deletion']) a,
                                       unnest(ARRAY['active','promoted','archived','pending_deletion']) b
                       WHERE a <> b LOOP
             ALTER TABLE evolve.raw_fragments DISABLE TRIGGER raw_fragments_lifecycle;
             UPDATE evolve.raw_fragments SET lifecycle_state = f;
             ALTER TABLE evolve.raw_fragments ENABLE TRIGGER raw_fragments_lifecycle;
             BEGIN
               UPDATE evolve.raw_fragments SET lifecycle_state = t;
               INSERT INTO outcomes VALUES (f, t, true);
             EXCEPTION WHEN object_not_in_prerequisite_state THEN
               INSERT INTO outcomes VALUES (f, t, false);
             END;
           END LOOP;
         END $$;",
    )
    .unwrap();
    let allowed = Spi::get_one::<String>(
        "SELECT string_agg(from_state || '>' || to_state, ',' ORDER BY from_state, to_state)
         FROM outcomes WHERE allowed",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        allowed,
        "active>archived,active>promoted,archived>active,archived>pending_deletion,\
         promoted>active,promoted>pending_deletion"
    );
    let total = Spi::get_one::<i64>("SELECT count(*) FROM outcomes").unwrap();
    assert_eq!(total, Some(12));
}

/// Every ingest reads text and jsonb columns back (entity states, snapshots): what the reads
/// allocate is freed at once, not kept until the transaction ends (a COPY of a million payloads
/// used to grow its backend by hundreds of megabytes that way).
#[pg_test]
fn column_reads_do_not_pile_up_in_the_transaction() {
    register(quake(), None);
    let ingest = |n: i32| {
        Spi::run_with_args(
            "SELECT evolve.ingest('earthquake', jsonb_build_object('mag', i, 'place', 'p' || i, 'sig', i), \
                                  entity_key => 'k' || (i % 100)) \
             FROM generate_series(1, $1) i",
            &[n.into()],
        )
        .unwrap();
    };
    let used = || {
        Spi::get_one::<i64>(
            "SELECT used_bytes FROM pg_backend_memory_contexts WHERE name = 'TopTransactionContext'",
        )
        .unwrap()
        .unwrap()
    };
    ingest(100);
    let before = used();
    ingest(2000);
    let grown = used() - before;
    assert!(
        grown < 2000 * 64,
        "the transaction's context grew by {grown} bytes over 2000 ingests"
    );
}

#[pg_test]
fn scalar_jsonb_is_laid_out_as_postgres_builds_it() {
    // Each scalar, encoded directly, is byte for byte what PostgreSQL's builder makes of it, and
    // equals the jsonb its text reads as.
    let cases = [
        "null", "true", "false", "0", "-1", "1e3", "0.10", "-0.0", "123456789012345678901234567890",
        "1.5e-7", "\"\"", "\"a\"", r#""\u00e9 \u2713 ok""#, r#""tab\there""#, "\"é ✓\"",
    ];
    let long = format!("\"{}\"", "x".repeat(3000));
    let digits = format!("{}.{}", "9".repeat(70), "1".repeat(40));
    for text in cases.iter().copied().chain([long.as_str(), digits.as_str()]) {
        let value = evolve_core::number::parse_exact(text).unwrap();
        let ours = crate::jsonb::scalar_datum(&value).expect("a scalar");
        let theirs = crate::jsonb::built_by_postgres(&value);
        // SAFETY: both are plain jsonb varlenas just palloc'd in this context.
        let (a, b) = unsafe {
            let bytes = |d: pg_sys::Datum| {
                let p = d.cast_mut_ptr::<pg_sys::varlena>();
                std::slice::from_raw_parts(p as *const u8, pgrx::varlena::varsize_any(p)).to_vec()
            };
            (bytes(ours), bytes(theirs))
        };
        assert_eq!(a, b, "{text}");
        let same = Spi::get_one_with_args::<bool>(
            "SELECT $1::text::jsonb = $2",
            &[
                text.into(),
                // SAFETY: a jsonb datum built above, in this context.
                unsafe { pgrx::datum::DatumWithOid::new(ours, pg_sys::JSONBOID) },
            ],
        )
        .unwrap();
        assert_eq!(same, Some(true), "{text}");
    }
}

#[pg_test]
fn text_arrays_are_laid_out_as_postgres_builds_them() {
    // Each array, laid out directly, is byte for byte what construct_md_array makes of the same
    // elements (NULLs, empty and long strings, a bitmap of more than one byte), and reads back.
    let long = "ü".repeat(1500);
    let cases: Vec<Vec<Option<&str>>> = vec![
        vec![],
        vec![Some("a")],
        vec![None],
        vec![Some(""), Some("ab"), Some("abc"), Some("abcd"), Some("abcde")],
        vec![Some("x"), None, Some("é ✓"), None, None, Some(""), Some(&long), None, Some("9")],
        (0..40).map(|i| if i % 3 == 0 { None } else { Some("k") }).collect(),
    ];
    for items in &cases {
        let ours = crate::arrays::text(items);
        let theirs: pgrx::datum::DatumWithOid<'static> = items.clone().into();
        // SAFETY: both are plain text[] varlenas just palloc'd in this context.
        let (a, b) = unsafe {
            let bytes = |d: &pgrx::datum::DatumWithOid<'_>| {
                let p = d
                    .datum()
                    .expect("not NULL")
                    .sans_lifetime()
                    .cast_mut_ptr::<pg_sys::varlena>();
                std::slice::from_raw_parts(p as *const u8, pgrx::varlena::varsize_any(p)).to_vec()
            };
            (bytes(&ours), bytes(&theirs))
        };
        assert_eq!(a, b, "{items:?}");
        let back = Spi::get_one_with_args::<Vec<Option<String>>>("SELECT $1::text[]", &[ours])
            .unwrap()
            .unwrap();
        let expected: Vec<Option<String>> =
            items.iter().map(|i| i.map(str::to_string)).collect();
        assert_eq!(back, expected);
    }
}
