//! 10,000 mutated definitions, patches, payloads, change documents and migration steps
//! through SQL: the server stays up, and every error carries a SQLSTATE from the list in
//! docs/reference.md (never XX000). Inbox rows that fail are kept with the same rule.

use std::collections::BTreeMap;

use postgres::types::ToSql;
use serde_json::{json, Map, Value};

use crate::common::Cluster;

const INPUTS: usize = 10_000;

/// splitmix64: a fixed seed, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
    "earthquake",
    "mag",
    "number",
    "string",
    "integer",
    "max",
    "union",
    "",
    " ",
    "Bad Name",
    "a;b",
    "\"; DROP TABLE evolve.schemas; --",
    "Robert'); DROP TABLE x;--",
    "ünï côdé ✓",
    "attribute_description_changed",
    "entity_type_description_changed",
    "attribute_deleted",
    "relationship_deleted",
    "template_applied",
    "rename",
    "cast",
    "drop",
    "function",
    "public.nothing",
    "pg_catalog.now",
    "timestamp",
    "2024-01-01T00:00:00Z",
];

/// Numbers at and past every limit f64 and i64 have: they must go through exactly or be
/// refused with a documented SQLSTATE, never as XX000.
const EXTREME_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "1e-400",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "3.14159265358979323846",
    "0.1000000000000000000000000001",
    "18446744073709551616",
    "-9223372036854775809",
    "1e131071",
    "1e-16383",
];

fn random_string(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => "x".repeat(rng.below(2000)),
        1 => format!("k{}", rng.below(50)),
        2 => "\u{1}\u{7}\t\n".into(),
        _ => rng.pick(STRINGS).to_string(),
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    let choice = if depth == 0 {
        rng.below(6)
    } else {
        rng.below(8)
    };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64 >> rng.below(64)),
        3 if rng.below(3) == 0 => {
            serde_json::from_str::<Value>(rng.pick::<&str>(EXTREME_NUMBERS)).unwrap()
        }
        3 => json!((rng.next() as f64 / 7.0) * if rng.below(2) == 0 { -1.0 } else { 1.0 }),
        4 | 5 => Value::String(random_string(rng)),
        6 => Value::Array(
            (0..rng.below(5))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(5))
                .map(|_| (random_string(rng), random_json(rng, depth - 1)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// A deep chain, past the nesting limits.
fn deep(n: usize) -> Value {
    // Moved, not copied, level by level (`json!` would copy the inner value each time).
    (0..n).fold(json!(1), |v, _| {
        Value::Object(Map::from_iter([("a".to_string(), v)]))
    })
}

/// Replaces, removes or renames one random subtree of a valid document.
fn mutate(rng: &mut Rng, doc: &Value) -> Value {
    fn walk(rng: &mut Rng, node: &mut Value) {
        let stop = rng.below(3) == 0;
        match node {
            Value::Object(map) if !map.is_empty() && !stop => {
                let key = map.keys().nth(rng.below(map.len())).cloned().unwrap();
                match rng.below(6) {
                    0 => {
                        map.remove(&key);
                    }
                    1 => {
                        let v = map.remove(&key).unwrap();
                        map.insert(random_string(rng), v);
                    }
                    _ => walk(rng, map.get_mut(&key).unwrap()),
                }
            }
            Value::Array(items) if !items.is_empty() && !stop => {
                let i = rng.below(items.len());
                walk(rng, &mut items[i]);
            }
            _ => {
                *node = match rng.below(12) {
                    0 => deep(*rng.pick(&[40, 63, 64, 65, 80, 128, 129, 1000, 10_000])),
                    _ => random_json(rng, 3),
                };
            }
        }
    }
    let mut out = doc.clone();
    walk(rng, &mut out);
    out
}

fn definition() -> Value {
    json!({
        "entity_type": "earthquake", "description": "A seismic event",
        "attributes": {
            "mag": {"type": "number", "merge_policy": "max"},
            "place": {"type": "string", "aliases": ["location"]},
            "time": {"type": "timestamp"},
            "felt": {"type": "integer", "merge_policy": "source_priority", "source_priority": ["usgs"]}
        },
        "relationships": {"near": {"target": "city"}}
    })
}

fn payload() -> Value {
    json!({"mag": 4.5, "location": "Alaska", "time": "2024-01-01T00:00:00Z", "felt": 3,
           "near": "anchorage", "sig": 12, "nested": {"a": [1, 2, {"b": null}]}})
}

fn change() -> Value {
    json!({"kind": "attribute_description_changed", "entity_type": "earthquake",
           "attribute": "mag", "description": "Moment magnitude"})
}

fn steps() -> Value {
    json!([{"rename": {"from": "magnitude", "to": "mag"}}, {"add": {"key": "felt", "default": 0}},
           {"drop": {"key": "legacy"}}, {"cast": {"key": "mag", "to": "number"}}])
}

/// SQLSTATEs of the table in docs/reference.md.
fn documented_sqlstates() -> Vec<String> {
    let doc = include_str!("../docs/reference.md");
    let section = doc
        .split("## SQLSTATEs")
        .nth(1)
        .expect("a SQLSTATE section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .flat_map(|l| l.split(" |").next().unwrap_or("").split(" / "))
        .map(str::trim)
        .filter(|c| c.len() == 5 && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        .map(String::from)
        .collect()
}

#[test]
fn ten_thousand_mutated_inputs_get_documented_sqlstates() {
    // Documents nested 10,000 deep are built, printed and dropped recursively by serde_json:
    // give them a stack of their own.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(mutated_inputs)
        .unwrap()
        .join()
        .unwrap();
}

fn mutated_inputs() {
    let documented = documented_sqlstates();
    assert!(documented.len() >= 10, "{documented:?}");
    let cluster = Cluster::start("fuzz", &[]);
    let db = cluster.fresh_db("fuzz");
    let mut c = cluster.connect_to(&db);
    c.batch_execute(&format!(
        "SET client_min_messages = error; \
         SELECT evolve.register_schema('{}'); \
         SELECT evolve.register_schema('{{\"entity_type\": \"earthquake\", \"attributes\": {{\"x\": {{\"type\": \"string\"}}}}}}', 'u1'); \
         SELECT evolve.ingest('earthquake', '{}', entity_key => 'k1');",
        definition(),
        payload()
    ))
    .unwrap();

    let mut rng = Rng(0x5EED_2026);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let types = ["earthquake", "quake", "", "Bad Name", "a\"b", "x_123"];
    let users: [Option<&str>; 4] = [None, Some("u1"), Some(""), Some("bad user\n")];
    for i in 0..INPUTS {
        let t = rng.pick(&types).to_string();
        let u = rng.pick(&users).map(String::from);
        let int = [-1, 0, 1, 2, 3, 99, i32::MAX][rng.below(7)];
        // `args` names the parameters in order: d the document, u the user, t the type, v the version.
        let (sql, args, doc) = match rng.below(10) {
            0 => (
                "SELECT evolve.register_schema($1::text::jsonb, $2)",
                "du",
                mutate(&mut rng, &definition()),
            ),
            1 => (
                "SELECT evolve.update_schema_incremental($1, $2::text::jsonb, $3)",
                "tdu",
                mutate(
                    &mut rng,
                    &json!({"attributes": {"depth": {"type": "number"}}}),
                ),
            ),
            2 | 3 => (
                "SELECT evolve.ingest($1, $2::text::jsonb, $3, 'fuzz', NULL, NULLIF($4, 0))",
                "tduv",
                mutate(&mut rng, &payload()),
            ),
            4 => (
                "INSERT INTO evolve.inbox (entity_type, payload, user_id, schema_version) \
                 VALUES ($1, $2::text::jsonb, $3, NULLIF($4, 0))",
                "tduv",
                mutate(&mut rng, &payload()),
            ),
            5 => (
                "SELECT count(*) FROM evolve.analyze_impact($1::text::jsonb)",
                "d",
                mutate(&mut rng, &change()),
            ),
            6 => (
                "SELECT evolve.apply_change($1::text::jsonb)",
                "d",
                mutate(&mut rng, &change()),
            ),
            7 => (
                "SELECT evolve.register_migration($1, 1, $2, $3::text::jsonb)",
                "tvd",
                mutate(&mut rng, &steps()),
            ),
            8 => (
                "SELECT evolve.migrate_payload($1, $2::text::jsonb, $3)",
                "tdv",
                mutate(&mut rng, &payload()),
            ),
            _ => (
                "SELECT count(*) FROM evolve.check_compatibility($1::text::jsonb, $2)",
                "du",
                mutate(&mut rng, &definition()),
            ),
        };
        let text = doc.to_string();
        let params: Vec<&(dyn ToSql + Sync)> = args
            .chars()
            .map(|a| -> &(dyn ToSql + Sync) {
                match a {
                    'd' => &text,
                    'u' => &u,
                    't' => &t,
                    _ => &int,
                }
            })
            .collect();
        let outcome = match c.query(sql, &params) {
            Ok(_) => "ok".to_string(),
            Err(e) => {
                assert_no_backtrace(&e);
                match e.code() {
                    Some(code) => code.code().to_string(),
                    None => panic!("input {i}: the connection failed: {e}\n{sql}\n{text}"),
                }
            }
        };
        assert!(
            outcome == "ok" || (outcome != "XX000" && documented.contains(&outcome)),
            "input {i}: SQLSTATE {outcome} is not documented\n{sql}\n{text}"
        );
        *seen.entry(outcome).or_default() += 1;
    }
    // Inbox rows that failed were kept, each with a documented SQLSTATE.
    for row in c
        .query(
            "SELECT sqlstate, count(*) FROM evolve.inbox_rejects GROUP BY 1",
            &[],
        )
        .unwrap()
    {
        let code: String = row.get(0);
        assert!(documented.contains(&code), "inbox reject with {code}");
        *seen.entry(format!("inbox {code}")).or_default() += row.get::<_, i64>(1) as usize;
    }
    // The server is up and consistent.
    let up: i32 = c.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(up, 1);
    let broken: i64 = c
        .query_one("SELECT count(*) FROM evolve.verify_aggregates()", &[])
        .unwrap()
        .get(0);
    assert_eq!(broken, 0, "aggregates stayed exact");
    assert!(
        !cluster.log().contains("terminated by signal"),
        "a backend crashed"
    );
    // The inputs exercised both paths.
    assert!(seen.get("ok").copied().unwrap_or(0) > 1000, "{seen:?}");
    assert!(seen.keys().filter(|k| *k != "ok").count() >= 4, "{seen:?}");
    eprintln!("outcomes: {seen:?}");
}

/// No error shows the extension's insides: no Rust backtrace, no source location.
fn assert_no_backtrace(e: &postgres::Error) {
    if let Some(db) = e.as_db_error() {
        let text = format!("{} {:?} {:?}", db.message(), db.detail(), db.hint());
        for marker in ["backtrace", "rust_begin_unwind", "src/", ".rs:"] {
            assert!(!text.contains(marker), "an error shows {marker:?}: {text}");
        }
    }
}

/// Plausible values per argument type, so that only the NULL is wrong.
fn sample(type_name: &str) -> &'static str {
    match type_name {
        "jsonb" => "'{\"entity_type\": \"earthquake\", \"mag\": 1}'::jsonb",
        "integer" => "1",
        "bigint" => "1::bigint",
        "boolean" => "true",
        "double precision" | "real" => "0.5",
        "timestamp with time zone" => "now()",
        "interval" => "'90 days'::interval",
        "text[]" => "'{}'::text[]",
        "bigint[]" => "'{}'::bigint[]",
        "integer[]" => "'{}'::integer[]",
        "jsonb[]" => "'{}'::jsonb[]",
        _ => "'earthquake'",
    }
}

#[test]
fn null_in_every_argument_gets_a_documented_sqlstate() {
    let documented = documented_sqlstates();
    let cluster = Cluster::start("fuzz-null", &[]);
    let db = cluster.fresh_db("fuzz_null");
    let mut su = cluster.connect_to(&db);
    su.batch_execute(&format!(
        "CREATE ROLE boss LOGIN; GRANT evolve_admin TO boss; \
         SELECT evolve.register_schema('{}'); SELECT evolve.ingest('earthquake', '{}', entity_key => 'k1');",
        definition(),
        payload()
    ))
    .unwrap();
    // Every function an ordinary role may call, with its argument types.
    let functions: Vec<(String, Vec<String>)> = su
        .query(
            "SELECT p.proname::text, coalesce(array_agg(format_type(t.oid, NULL) ORDER BY a.n) FILTER (WHERE a.n IS NOT NULL), '{}') \
             FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid \
             JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_evolve' \
             LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n) ON true \
             LEFT JOIN pg_type t ON t.oid = a.t \
             WHERE p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype \
               AND has_function_privilege('boss', p.oid, 'EXECUTE') \
             GROUP BY p.oid, p.proname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(functions.len() > 30, "{functions:?}");
    let mut boss = cluster.connect_as(&db, "boss");
    boss.batch_execute("SET client_min_messages = error")
        .unwrap();
    let mut calls = 0;
    for (name, types) in &functions {
        for null_at in 0..types.len() {
            let args: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if i == null_at {
                        format!("NULL::{t}")
                    } else {
                        sample(t).to_string()
                    }
                })
                .collect();
            let sql = format!("SELECT evolve.{name}({})", args.join(", "));
            let mut tx = boss.transaction().unwrap();
            if let Err(e) = tx.batch_execute(&sql) {
                assert_no_backtrace(&e);
                let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                assert!(
                    code != "XX000" && documented.contains(&code),
                    "{sql}: SQLSTATE {code} is not documented: {e}"
                );
            }
            tx.rollback().unwrap();
            calls += 1;
        }
    }
    assert!(calls > 60, "{calls} calls");
    assert!(
        !cluster.log().contains("terminated by signal"),
        "a backend crashed"
    );
}
