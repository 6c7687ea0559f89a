//! docs/reference.md documents every public object of the installed extension, and every
//! public object has a COMMENT (regenerate the file with `scripts/reference.sh`).

use crate::common::Cluster;

#[test]
fn reference_documents_every_public_object() {
    let cluster = Cluster::start("reference", &[]);
    let db = cluster.fresh_db("reference");
    let mut c = cluster.connect_to(&db);
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md"))
        .expect("docs/reference.md exists");
    let objects = c
        .query(
            "SELECT 'function', format('`evolve.%s(%s)`', p.proname, pg_get_function_arguments(p.oid)),
                    obj_description(p.oid, 'pg_proc') IS NOT NULL
             FROM pg_proc p WHERE p.pronamespace = 'evolve'::regnamespace AND p.proname !~ '^_'
             UNION ALL
             SELECT 'relation', format('`evolve.%s`', c.relname), obj_description(c.oid, 'pg_class') IS NOT NULL
             FROM pg_class c WHERE c.relnamespace = 'evolve'::regnamespace AND c.relkind IN ('r', 'p', 'u', 'v')
               AND c.relname !~ '^_'
             UNION ALL
             SELECT 'setting', format('`%s`', name), short_desc <> '' FROM pg_settings WHERE name LIKE 'evolve.%'",
            &[],
        )
        .unwrap();
    assert!(objects.len() > 50, "the catalog lists the public objects");
    let mut missing = Vec::new();
    for row in &objects {
        let (kind, name, commented): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        if !commented {
            missing.push(format!("{kind} {name} has no COMMENT"));
        }
        if !doc.contains(&name) {
            missing.push(format!("{kind} {name} is not in docs/reference.md"));
        }
    }
    // And nothing documented that no longer exists.
    for line in doc.lines().filter(|l| l.starts_with("### `evolve.")) {
        let name = line
            .trim_start_matches("### ")
            .split(" → ")
            .next()
            .unwrap_or("");
        let name = name.trim_end_matches(" (procedure)");
        if !objects.iter().any(|r| r.get::<_, String>(1) == name) {
            missing.push(format!(
                "docs/reference.md documents {name}, which does not exist"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "run scripts/reference.sh:\n{}",
        missing.join("\n")
    );
}
