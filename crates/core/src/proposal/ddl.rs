//! Safe SQL for proposals: quoting, projection tables and expression indexes.
//!
//! Every identifier goes through [`quote_ident`] (always double-quoted, `"` doubled) and every
//! value through [`quote_literal`] (single-quoted, `'` doubled; when the value holds a
//! backslash it is written `E'…'` with backslashes doubled, which reads the same under any
//! `standard_conforming_strings`). NUL characters, which PostgreSQL text cannot hold (and
//! `jsonb` keys therefore never contain), are dropped. No data can end a quote.
//!
//! - Column names are [`column_name`] = [`safe_name`] of the raw key. In a projection table,
//!   names are deduplicated in the given order: a name already used (`entity_id` is always
//!   used) gets `_2`, `_3`, … (the base cut so that the whole stays within 63 bytes); see
//!   [`projection_column_names`].
//! - `{safe(entity_type)}_details` (the base cut to 55 bytes so that the name stays within 63) is
//!   the name of a type's `table` proposal. Approving one has created the typed projection
//!   `evolve_data.<type>` since 0.6.0 (its columns: [`crate::projection`]); before, it created the
//!   empty table [`projection_table_sql`] writes (`entity_id bigint PRIMARY KEY REFERENCES
//!   evolve.entities (entity_id) ON DELETE CASCADE` and one column per attribute of
//!   [`AttrType::sql_type`]), which a rollback still drops.
//! - The index is a partial expression index on `evolve.entities` for the entity type
//!   ([`index_expression`]). An index expression is evaluated on every insert and update of
//!   the table, so it must never fail on a value of another type, and it must be immutable:
//!   - `number`, `integer`: `(CASE WHEN jsonb_typeof(snapshot->'k') = 'number' THEN
//!     (snapshot->>'k')::numeric END)`: a plain `::double precision` or `::bigint` cast would
//!     make every write of an entity whose value is `"n/a"` (or `1.5` for `bigint`, or `1e400`
//!     for `double precision`) fail; `numeric` holds every JSON number;
//!   - `boolean`: the same guard with `jsonb_typeof = 'boolean'` and `::boolean`;
//!   - `string`, `date`, `timestamp`: the text `(snapshot->>'k')`; a text-to-`timestamptz` or
//!     `date` cast is not immutable (it depends on `TimeZone`/`DateStyle`) and PostgreSQL
//!     refuses it in an index. ISO-8601 text with a uniform offset sorts chronologically;
//!   - `object`, `array`: a GIN index on `(snapshot->'k')`.
//!
//!   Queries use the index when they repeat the expression exactly: use [`index_expression`].
//!   The name is `{safe(type)}_{safe(key)}_idx`. When the type or the key is not already its
//!   own safe name (`Mag` and `mag` would collide) or the name would exceed 63 bytes, 8 hex
//!   digits of the FNV-1a hash of type and key are added before `_idx` and the readable part is
//!   cut so that the whole is at most 63 bytes. [`index_sql`]'s `schema` is the schema of the
//!   `entities` table (normally `evolve`), where the index lives too; rollback:
//!   `DROP INDEX IF EXISTS "evolve"."name"`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::hash::fnv1a_joined;
use crate::ident::{safe_name, MAX_IDENT_LEN};
use crate::schema::AttrType;

/// An SQL identifier, always double-quoted, with `"` doubled (NUL characters dropped).
pub fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\"\""),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An SQL string literal: `'…'` with `'` doubled, or `E'…'` with backslashes doubled too when
/// the value holds a backslash (NUL characters dropped).
pub fn quote_literal(s: &str) -> String {
    let escape = s.contains('\\');
    let mut out = String::with_capacity(s.len() + 3);
    if escape {
        out.push('E');
    }
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if escape => out.push_str("\\\\"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The column name of a raw key in a typed projection (before deduplication).
pub fn column_name(raw_key: &str) -> String {
    safe_name(raw_key)
}

/// `s` cut to at most `max` bytes (on a character boundary), without trailing underscores.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim_end_matches('_')
}

/// The unquoted name of the projection table of an entity type: `{safe(type)}_details`.
pub fn projection_table_name(entity_type: &str) -> String {
    let suffix = "_details";
    format!(
        "{}{suffix}",
        cut(&safe_name(entity_type), MAX_IDENT_LEN - suffix.len())
    )
}

/// The column names of a projection for these raw keys, in order: [`column_name`], a name
/// already taken (`entity_id` always is) suffixed `_2`, `_3`, …, at most 63 bytes each.
pub fn projection_column_names<'a>(raw_keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut used: BTreeSet<String> = BTreeSet::from(["entity_id".to_string()]);
    let mut out = Vec::new();
    for raw in raw_keys {
        let base = column_name(raw);
        let mut name = base.clone();
        let mut n = 2u64;
        while used.contains(&name) {
            let suffix = format!("_{n}");
            name = format!("{}{suffix}", cut(&base, MAX_IDENT_LEN - suffix.len()));
            n += 1;
        }
        used.insert(name.clone());
        out.push(name);
    }
    out
}

/// The typed projection table of an entity type: `(create, rollback)`; see the module
/// documentation.
pub fn projection_table_sql(
    schema: &str,
    entity_type: &str,
    columns: &[(String, AttrType)],
) -> (String, String) {
    let table = format!(
        "{}.{}",
        quote_ident(schema),
        quote_ident(&projection_table_name(entity_type))
    );
    let names = projection_column_names(columns.iter().map(|(k, _)| k.as_str()));
    let mut create = format!(
        "CREATE TABLE {table} ({} bigint PRIMARY KEY REFERENCES {}.{} ({}) ON DELETE CASCADE",
        quote_ident("entity_id"),
        quote_ident("evolve"),
        quote_ident("entities"),
        quote_ident("entity_id"),
    );
    for (name, (_, t)) in names.iter().zip(columns) {
        let _ = write!(create, ", {} {}", quote_ident(name), t.sql_type());
    }
    create.push(')');
    (create, format!("DROP TABLE IF EXISTS {table}"))
}

/// The indexed expression over `evolve.entities.snapshot` for a key of this type; queries must
/// repeat it exactly to use the index of [`index_sql`].
pub fn index_expression(key: &str, attr_type: AttrType) -> String {
    let k = quote_literal(key);
    let guarded = |json_type: &str, cast: &str| {
        format!(
            "(CASE WHEN jsonb_typeof(snapshot->{k}) = {} THEN (snapshot->>{k})::{cast} END)",
            quote_literal(json_type)
        )
    };
    match attr_type {
        AttrType::Number | AttrType::Integer => guarded("number", "numeric"),
        AttrType::Boolean => guarded("boolean", "boolean"),
        AttrType::String | AttrType::Date | AttrType::Timestamp => format!("(snapshot->>{k})"),
        AttrType::Object | AttrType::Array => format!("(snapshot->{k})"),
    }
}

/// The unquoted name of the index of a key; see the module documentation.
pub fn index_name(entity_type: &str, key: &str) -> String {
    let (t, k) = (safe_name(entity_type), safe_name(key));
    let plain = format!("{t}_{k}_idx");
    if t == entity_type && k == key && plain.len() <= MAX_IDENT_LEN {
        return plain;
    }
    let hash = format!("{:08x}", fnv1a_joined(&[entity_type, key]) as u32);
    let tail = format!("_{hash}_idx");
    let head = format!("{t}_{k}");
    format!("{}{tail}", cut(&head, MAX_IDENT_LEN - tail.len()))
}

/// An expression index on `{schema}.entities` (`schema` is the one holding the `entities`
/// table, normally `evolve`; the index lives there too) for one key of one entity type:
/// `(create, rollback)`; see the module documentation.
pub fn index_sql(
    schema: &str,
    entity_type: &str,
    key: &str,
    attr_type: AttrType,
) -> (String, String) {
    let schema = quote_ident(schema);
    let name = quote_ident(&index_name(entity_type, key));
    let using = match attr_type {
        AttrType::Object | AttrType::Array => " USING gin",
        _ => "",
    };
    let create = format!(
        "CREATE INDEX {name} ON {schema}.{}{using} ({}) WHERE {} = {}",
        quote_ident("entities"),
        index_expression(key, attr_type),
        quote_ident("entity_type"),
        quote_literal(entity_type),
    );
    let rollback = format!("DROP INDEX IF EXISTS {schema}.{name}");
    (create, rollback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::is_valid_name;

    #[test]
    fn quoting() {
        let idents = [
            ("mag", "\"mag\""),
            ("a\"b", "\"a\"\"b\""),
            ("\"", "\"\"\"\""),
            ("", "\"\""),
            ("nul\0x", "\"nulx\""),
        ];
        for (raw, want) in idents {
            assert_eq!(quote_ident(raw), want);
        }
        let literals = [
            ("mag", "'mag'"),
            ("it's", "'it''s'"),
            ("a\\b", "E'a\\\\b'"),
            ("\\'", "E'\\\\'''"),
            ("", "''"),
            ("nul\0x", "'nulx'"),
        ];
        for (raw, want) in literals {
            assert_eq!(quote_literal(raw), want);
        }
    }

    /// What a lexer makes of generated SQL: the text outside quotes (each quoted identifier
    /// shown as `I`, each literal as `L`), the decoded identifiers and the decoded literals.
    fn lex(sql: &str) -> (String, Vec<String>, Vec<String>) {
        let c: Vec<char> = sql.chars().collect();
        let (mut skeleton, mut idents, mut literals) = (String::new(), Vec::new(), Vec::new());
        let mut i = 0;
        while i < c.len() {
            let prev_word = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
            if c[i] == '"' {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    assert!(j < c.len(), "unterminated identifier in {sql}");
                    if c[j] == '"' {
                        if c.get(j + 1) == Some(&'"') {
                            s.push('"');
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    s.push(c[j]);
                    j += 1;
                }
                idents.push(s);
                skeleton.push('I');
                i = j + 1;
            } else if c[i] == '\'' || (c[i] == 'E' && c.get(i + 1) == Some(&'\'') && !prev_word) {
                let escape = c[i] == 'E';
                let mut j = if escape { i + 2 } else { i + 1 };
                let mut s = String::new();
                loop {
                    assert!(j < c.len(), "unterminated literal in {sql}");
                    if escape && c[j] == '\\' {
                        assert!(j + 1 < c.len(), "dangling backslash in {sql}");
                        s.push(c[j + 1]);
                        j += 2;
                        continue;
                    }
                    if c[j] == '\'' {
                        if c.get(j + 1) == Some(&'\'') {
                            s.push('\'');
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    s.push(c[j]);
                    j += 1;
                }
                literals.push(s);
                skeleton.push('L');
                i = j + 1;
            } else {
                skeleton.push(c[i]);
                i += 1;
            }
        }
        (skeleton, idents, literals)
    }

    fn hostile_keys() -> Vec<String> {
        vec![
            "\"; DROP TABLE x; --".into(),
            "Running Time min".into(),
            "Beak Length (mm)".into(),
            "ünïcödé 🚀 名前".into(),
            "x".repeat(200),
            "é".repeat(100),
            "it's".into(),
            "'); DROP TABLE evolve.entities; --".into(),
            "back\\slash'".into(),
            "\\'; SELECT 1; --".into(),
            "$$; SELECT 1; $$".into(),
            "a\"b'c\\d".into(),
            "*/ /* --".into(),
            "".into(),
        ]
    }

    #[test]
    fn index_sql_quotes_everything() {
        for t in AttrType::ALL {
            let (plain_create, plain_drop) = index_sql("evolve", "earthquake", "mag", t);
            let (plain_skel, _, _) = lex(&plain_create);
            let (plain_drop_skel, _, _) = lex(&plain_drop);
            assert!(!plain_skel.contains(';') && !plain_skel.contains("--"));
            for entity_type in ["earthquake", "we\"ird'type\\"] {
                for key in hostile_keys() {
                    let (create, drop) = index_sql("evolve", entity_type, &key, t);
                    let (skel, idents, literals) = lex(&create);
                    assert_eq!(skel, plain_skel, "{key}: {create}");
                    let name = index_name(entity_type, &key);
                    assert!(is_valid_name(&name), "{name}");
                    assert_eq!(idents, [name.as_str(), "evolve", "entities", "entity_type"]);
                    assert_eq!(literals.last().unwrap(), entity_type, "{create}");
                    assert!(
                        literals[..literals.len() - 1]
                            .iter()
                            .all(|l| *l == key || *l == "number" || *l == "boolean"),
                        "{create}"
                    );
                    assert!(literals.contains(&key), "{create}");
                    let (dskel, didents, dliterals) = lex(&drop);
                    assert_eq!(dskel, plain_drop_skel);
                    assert_eq!(didents, ["evolve", name.as_str()]);
                    assert!(dliterals.is_empty());
                }
            }
        }
        let (create, drop) = index_sql("evolve", "earthquake", "mag", AttrType::Number);
        assert_eq!(
            create,
            "CREATE INDEX \"earthquake_mag_idx\" ON \"evolve\".\"entities\" \
             ((CASE WHEN jsonb_typeof(snapshot->'mag') = 'number' THEN (snapshot->>'mag')::numeric END)) \
             WHERE \"entity_type\" = 'earthquake'"
        );
        assert_eq!(
            drop,
            "DROP INDEX IF EXISTS \"evolve\".\"earthquake_mag_idx\""
        );
        let (create, _) = index_sql("evolve", "earthquake", "place", AttrType::String);
        assert!(create.contains(" ((snapshot->>'place')) WHERE"), "{create}");
        let (create, _) = index_sql("evolve", "earthquake", "tags", AttrType::Array);
        assert!(
            create.contains("\"entities\" USING gin ((snapshot->'tags'))"),
            "{create}"
        );
        let (create, _) = index_sql("evolve", "earthquake", "tsunami", AttrType::Boolean);
        assert!(
            create.contains("= 'boolean' THEN (snapshot->>'tsunami')::boolean END"),
            "{create}"
        );
    }

    #[test]
    fn index_names() {
        assert_eq!(index_name("earthquake", "mag"), "earthquake_mag_idx");
        let hashed = [
            index_name("earthquake", "Mag"),
            index_name("earthquake", "MAG"),
            index_name("earthquake", "beak length"),
            index_name("earthquake", "beak-length"),
            index_name("earthquake", &"x".repeat(200)),
            index_name("earthquake", &"x".repeat(201)),
            index_name("Earthquake", "mag"),
        ];
        for (i, a) in hashed.iter().enumerate() {
            assert!(is_valid_name(a) && a.ends_with("_idx"), "{a}");
            assert_ne!(a, "earthquake_mag_idx");
            for b in &hashed[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(hashed[0].starts_with("earthquake_mag_"));
        assert_eq!(hashed[4].len(), MAX_IDENT_LEN);
    }

    #[test]
    fn projection_quotes_everything() {
        let plain_cols: Vec<(String, AttrType)> = hostile_keys()
            .iter()
            .enumerate()
            .map(|(i, _)| (format!("c{i}"), AttrType::ALL[i % 8]))
            .collect();
        let hostile_cols: Vec<(String, AttrType)> = hostile_keys()
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, AttrType::ALL[i % 8]))
            .collect();
        let (plain_create, plain_drop) = projection_table_sql("public", "earthquake", &plain_cols);
        let (create, drop) = projection_table_sql("my\"schema'", "earth\"quake", &hostile_cols);
        let (skel, idents, literals) = lex(&create);
        assert_eq!(skel, lex(&plain_create).0, "{create}");
        assert!(literals.is_empty());
        let names = projection_column_names(hostile_cols.iter().map(|(k, _)| k.as_str()));
        let mut want = vec![
            "my\"schema'".to_string(),
            "earth_quake_details".into(),
            "entity_id".into(),
            "evolve".into(),
            "entities".into(),
            "entity_id".into(),
        ];
        want.extend(names.iter().cloned());
        assert_eq!(idents, want);
        for n in &names {
            assert!(is_valid_name(n), "{n}");
        }
        assert_eq!(lex(&drop).0, lex(&plain_drop).0);
        assert_eq!(lex(&drop).1, ["my\"schema'", "earth_quake_details"]);

        let cols = vec![
            ("mag".to_string(), AttrType::Number),
            ("Beak Length (mm)".to_string(), AttrType::Integer),
            ("time".to_string(), AttrType::Timestamp),
        ];
        let (create, drop) = projection_table_sql("evolve", "earthquake", &cols);
        assert_eq!(
            create,
            "CREATE TABLE \"evolve\".\"earthquake_details\" (\"entity_id\" bigint PRIMARY KEY \
             REFERENCES \"evolve\".\"entities\" (\"entity_id\") ON DELETE CASCADE, \
             \"mag\" double precision, \"beak_length_mm\" bigint, \"time\" timestamptz)"
        );
        assert_eq!(
            drop,
            "DROP TABLE IF EXISTS \"evolve\".\"earthquake_details\""
        );
    }

    #[test]
    fn projection_names_are_deduplicated() {
        let long = "y".repeat(200);
        let names = projection_column_names([
            "Mag",
            "mag",
            "MAG!",
            "entity_id",
            "Entity ID",
            long.as_str(),
            long.as_str(),
            "mag_2",
        ]);
        assert_eq!(
            &names[..5],
            ["mag", "mag_2", "mag_3", "entity_id_2", "entity_id_3"]
        );
        assert_eq!(names[5], "y".repeat(63));
        assert_eq!(names[6], format!("{}_2", "y".repeat(61)));
        assert_eq!(names[7], "mag_2_2");
        let distinct: BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert!(names.iter().all(|n| is_valid_name(n)));
        assert_eq!(projection_table_name(&"z".repeat(100)).len(), MAX_IDENT_LEN);
        assert_eq!(column_name("Running Time min"), "running_time_min");
    }
}
