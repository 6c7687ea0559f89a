//! L2: typed projections. `create_projection` makes `evolve_data.<type>` (one typed column per
//! leaf of the definition, see evolve_core::projection) and fills it with a row per entity that
//! has a declared value; snapshot writes keep it current in the same transaction (set-based,
//! one upsert per projection per batch; a projection whose table an admin dropped by hand is
//! skipped, never an error for ingestion); a
//! new schema version adds, retypes or drops its columns and refills them; `drop_projection`
//! removes it. Tenants see their rows only (row-level security on `user_id`).

use evolve_core::path::Path;
use evolve_core::projection::{self, Column, ColumnKind};
use evolve_core::proposals::{quote_ident, quote_literal};
use evolve_core::SqlState;
use pgrx::prelude::*;
use serde_json::{json, Value};

use crate::access;
use crate::args::{check_entity_type, check_user_id};
use crate::error::{raise, required, OrRaise};

/// Entities refilled per statement when a projection is filled or its columns change.
const FILL_BATCH: i64 = 10_000;

/// One projection, as `evolve.projections` records it.
struct Projection {
    entity_type: String,
    user_id: Option<String>,
    table: String,
    columns: Vec<Column>,
}

fn read_columns(v: &Value) -> Vec<Column> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let path: Vec<String> = serde_json::from_value(c["path"].clone()).ok()?;
            Some(Column {
                path: Path::from_array(&path).ok()?,
                name: c["name"].as_str()?.to_string(),
                kind: ColumnKind::parse(c["type"].as_str()?)?,
            })
        })
        .collect()
}

fn write_columns(columns: &[Column]) -> Value {
    Value::Array(
        columns
            .iter()
            .map(|c| json!({"path": c.path.to_array(), "name": c.name, "type": c.kind.sql_type()}))
            .collect(),
    )
}

/// Whether this database has projections at all (0.6.0 on: a database not yet updated keeps
/// working with this library). A syscache lookup.
fn installed() -> bool {
    crate::plans::evolve_relation(c"projections") != pg_sys::InvalidOid
}

/// The projections of these entity types.
fn projections_of(client: &mut pgrx::spi::SpiClient<'_>, types: &[String]) -> Vec<Projection> {
    // A kept plan: every snapshot write asks.
    crate::plans::execute(
        client,
        "SELECT entity_type, user_id, table_name, columns FROM evolve.projections \
         WHERE entity_type = ANY ($1) \
           AND to_regclass(format('evolve_data.%I', table_name)) IS NOT NULL \
         ORDER BY table_name",
        &[types.to_vec().into()],
    )
    .map(|r| Projection {
        entity_type: r.get::<String>(1).ok().flatten().unwrap_or_default(),
        user_id: r.get::<String>(2).ok().flatten(),
        table: r.get::<String>(3).ok().flatten().unwrap_or_default(),
        columns: read_columns(
            &r.get::<pgrx::JsonB>(4)
                .ok()
                .flatten()
                .map(|j| j.0)
                .unwrap_or(Value::Null),
        ),
    })
    .collect()
}

/// The upsert of rows given as arrays: `$1` ids, then one text array per column.
fn upsert_sql(p: &Projection) -> String {
    let table = format!("evolve_data.{}", quote_ident(&p.table));
    let names: Vec<String> = p.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let args: Vec<String> = (0..p.columns.len())
        .map(|i| format!("${}::text[]", i + 2))
        .collect();
    let aliases: Vec<String> = (0..p.columns.len()).map(|i| format!("c{i}")).collect();
    let casts: Vec<String> = p
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("u.c{i}::{}", c.kind.sql_type()))
        .collect();
    let updates: Vec<String> = ["entity_key", "user_id", "updated_at"]
        .iter()
        .map(|n| n.to_string())
        .chain(names.iter().cloned())
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let sep = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!(", {}", v.join(", "))
        }
    };
    format!(
        "INSERT INTO {table} (entity_id, entity_key, user_id, updated_at{}) \
         SELECT u.id, e.entity_key, e.user_id, now(){} \
         FROM unnest($1::bigint[]{}) AS u(id{}) JOIN evolve.entities e ON e.entity_id = u.id \
         ON CONFLICT (entity_id) DO UPDATE SET {}",
        sep(&names),
        sep(&casts),
        sep(&args),
        sep(&aliases),
        updates.join(", ")
    )
}

/// Writes the projection rows of these entities (id, snapshot).
fn write_rows(client: &mut pgrx::spi::SpiClient<'_>, p: &Projection, rows: &[(i64, &Value)]) {
    if rows.is_empty() {
        return;
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut args: Vec<pgrx::datum::DatumWithOid<'static>> = vec![ids.into()];
    for c in &p.columns {
        let cells: Vec<Option<String>> = rows
            .iter()
            .map(|(_, s)| projection::lookup(s, &c.path).and_then(|v| projection::cell(c.kind, v)))
            .collect();
        args.push(cells.into());
    }
    client.update(&upsert_sql(p), None, &args).or_raise();
}

/// Keeps the projections of the written entities current: called with every batch of
/// snapshots written (entity id, type, user, snapshot).
pub fn upkeep(client: &mut pgrx::spi::SpiClient<'_>, rows: &[(i64, &str, Option<&str>, &Value)]) {
    if rows.is_empty() || !installed() {
        return;
    }
    let mut types: Vec<String> = rows.iter().map(|r| r.1.to_string()).collect();
    types.sort();
    types.dedup();
    for p in projections_of(client, &types) {
        let mine: Vec<(i64, &Value)> = rows
            .iter()
            .filter(|r| {
                r.1 == p.entity_type && (p.user_id.is_none() || r.2 == p.user_id.as_deref())
            })
            .map(|r| (r.0, r.3))
            .collect();
        write_rows(client, &p, &mine);
    }
}

/// Refills every row of a projection from the snapshots, `FILL_BATCH` entities at a time.
fn fill(client: &mut pgrx::spi::SpiClient<'_>, p: &Projection) -> i64 {
    let mut after = 0_i64;
    let mut total = 0_i64;
    loop {
        let batch: Vec<(i64, Value)> = client
            .select(
                "SELECT entity_id, snapshot FROM evolve.entities \
                 WHERE entity_type = $1 AND ($2::text IS NULL OR user_id = $2) AND entity_id > $3 \
                   AND snapshot <> '{}'::jsonb \
                 ORDER BY entity_id LIMIT $4",
                None,
                &[
                    p.entity_type.as_str().into(),
                    p.user_id.as_deref().into(),
                    after.into(),
                    FILL_BATCH.into(),
                ],
            )
            .or_raise()
            .map(|r| {
                (
                    r.get::<i64>(1).ok().flatten().unwrap_or(0),
                    r.get::<pgrx::JsonB>(2)
                        .ok()
                        .flatten()
                        .map(|j| j.0)
                        .unwrap_or(Value::Null),
                )
            })
            .collect();
        let Some(last) = batch.last().map(|b| b.0) else {
            break;
        };
        let rows: Vec<(i64, &Value)> = batch.iter().map(|(id, s)| (*id, s)).collect();
        write_rows(client, p, &rows);
        total += rows.len() as i64;
        after = last;
    }
    total
}

fn table_name(entity_type: &str, user_id: Option<&str>) -> String {
    match user_id {
        None => entity_type.to_string(),
        Some(u) => {
            let base = format!("{entity_type}__{}", evolve_core::ident::safe_name(u));
            let hash = format!("{:08x}", evolve_core::hash::fnv1a64(&[u.as_bytes()]) as u32);
            let cut: String = base.chars().take(63 - 9).collect();
            format!("{cut}_{hash}")
        }
    }
}

/// The columns a scope's effective definition gives.
fn columns_of(entity_type: &str, user_id: Option<&str>) -> Vec<Column> {
    match crate::store::effective_definition(entity_type, user_id) {
        Some(e) => projection::columns(&e.definition),
        None => raise(
            SqlState::UndefinedObject,
            format!("entity type \"{entity_type}\" has no active schema"),
            None,
            Some("Register it first: a projection has one column per declared attribute.".into()),
        ),
    }
}

/// Creates (or returns, if it exists) the typed projection of a type's entities: the table
/// `evolve_data.<type>` (`<type>__<user>_<hash>` for a user's scope) with `entity_id`,
/// `entity_key`, `user_id`, `updated_at` and one typed column per declared attribute, filled
/// from the snapshots and kept current with them. The table's oid (`evolve.create_projection`
/// returns it as a regclass).
#[pg_extern(volatile, parallel_unsafe, name = "_create_projection")]
fn create_projection(
    entity_type: Option<&str>,
    user_id: default!(Option<String>, "NULL"),
) -> pg_sys::Oid {
    let entity_type = required(entity_type, "entity_type");
    check_entity_type(entity_type);
    check_user_id(user_id.as_deref());
    access::require_admin("create a projection");
    let table = create(entity_type, user_id.as_deref());
    crate::plans::one::<pg_sys::Oid>(
        "SELECT to_regclass(format('evolve_data.%I', $1::text))::oid",
        &[table.as_str().into()],
    )
    .unwrap_or(pg_sys::InvalidOid)
}

/// Creates and fills a scope's projection unless it exists (the caller checked the rights);
/// returns its table's name in schema `evolve_data`.
pub fn create(entity_type: &str, user_id: Option<&str>) -> String {
    crate::args::writable_transaction();
    let table = table_name(entity_type, user_id);
    let columns = columns_of(entity_type, user_id);
    Spi::connect_mut(|client| {
        // Two sessions creating the same projection: the second waits, then finds it.
        client
            .update(
                "SELECT pg_advisory_xact_lock(hashtext('evolve.projection:' || $1))",
                None,
                &[table.as_str().into()],
            )
            .or_raise();
        let exists = !client
            .select(
                "SELECT 1 FROM evolve.projections WHERE entity_type = $1 AND user_id IS NOT DISTINCT FROM $2 FOR UPDATE",
                None,
                &[entity_type.into(), user_id.into()],
            )
            .or_raise()
            .is_empty();
        if !exists {
            let qualified = format!("evolve_data.{}", quote_ident(&table));
            let defs: Vec<String> = columns
                .iter()
                .map(|c| format!(", {} {}", quote_ident(&c.name), c.kind.sql_type()))
                .collect();
            client
                .update(
                    &format!(
                        "CREATE TABLE {qualified} (entity_id bigint PRIMARY KEY REFERENCES evolve.entities (entity_id) ON DELETE CASCADE, \
                         entity_key text NOT NULL, user_id text, updated_at timestamptz NOT NULL{})",
                        defs.concat()
                    ),
                    None,
                    &[],
                )
                .or_raise();
            for sql in [
                format!("ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY"),
                format!("CREATE POLICY tenant ON {qualified} USING (evolve._visible(user_id))"),
                format!("GRANT SELECT ON {qualified} TO evolve_reader"),
                format!(
                    "COMMENT ON TABLE {qualified} IS {}",
                    quote_literal(&format!(
                        "Typed projection of {entity_type} entities{} (evolve.create_projection), kept current with their snapshots.",
                        user_id.map(|u| format!(" of user {u}")).unwrap_or_default()
                    ))
                ),
            ] {
                client.update(&sql, None, &[]).or_raise();
            }
            client
                .update(
                    "INSERT INTO evolve.projections (entity_type, user_id, table_name, columns) VALUES ($1, $2, $3, $4)",
                    None,
                    &[entity_type.into(), user_id.into(), table.as_str().into(), pgrx::JsonB(write_columns(&columns)).into()],
                )
                .or_raise();
            let p = Projection {
                entity_type: entity_type.to_string(),
                user_id: user_id.map(str::to_string),
                table: table.clone(),
                columns,
            };
            fill(client, &p);
        }
    });
    table
}

/// Drops a type's projection (its table and its record). False when there was none.
#[pg_extern(volatile, parallel_unsafe)]
fn drop_projection(entity_type: Option<&str>, user_id: default!(Option<String>, "NULL")) -> bool {
    let entity_type = required(entity_type, "entity_type");
    check_user_id(user_id.as_deref());
    access::require_admin("drop a projection");
    drop(entity_type, user_id.as_deref())
}

/// Drops a scope's projection (the caller checked the rights); false when there was none.
pub fn drop(entity_type: &str, user_id: Option<&str>) -> bool {
    crate::args::writable_transaction();
    let table = crate::plans::one::<String>(
        "DELETE FROM evolve.projections WHERE entity_type = $1 AND user_id IS NOT DISTINCT FROM $2 RETURNING table_name",
        &[entity_type.into(), user_id.into()],
    );
    match table {
        Some(t) => {
            Spi::run(&format!(
                "DROP TABLE IF EXISTS evolve_data.{}",
                quote_ident(&t)
            ))
            .or_raise();
            true
        }
        None => false,
    }
}

/// After a new version of a type's schema: each of its projections gets the columns of the
/// new effective definition (new ones added, retyped ones replaced, removed ones dropped) and,
/// when they changed, is refilled.
pub fn on_new_version(entity_type: &str) {
    if !installed() {
        return;
    }
    Spi::connect_mut(|client| {
        for p in projections_of(client, &[entity_type.to_string()]) {
            let Some(e) = crate::store::effective_definition(entity_type, p.user_id.as_deref())
            else {
                continue;
            };
            let new = projection::columns(&e.definition);
            if new == p.columns {
                continue;
            }
            let qualified = format!("evolve_data.{}", quote_ident(&p.table));
            for old in &p.columns {
                if !new.iter().any(|c| c.name == old.name && c.kind == old.kind) {
                    client
                        .update(
                            &format!(
                                "ALTER TABLE {qualified} DROP COLUMN IF EXISTS {}",
                                quote_ident(&old.name)
                            ),
                            None,
                            &[],
                        )
                        .or_raise();
                }
            }
            for c in &new {
                if !p
                    .columns
                    .iter()
                    .any(|o| o.name == c.name && o.kind == c.kind)
                {
                    client
                        .update(
                            &format!(
                                "ALTER TABLE {qualified} ADD COLUMN {} {}",
                                quote_ident(&c.name),
                                c.kind.sql_type()
                            ),
                            None,
                            &[],
                        )
                        .or_raise();
                }
            }
            client
                .update(
                    "UPDATE evolve.projections SET columns = $3, updated_at = now() \
                     WHERE entity_type = $1 AND user_id IS NOT DISTINCT FROM $2",
                    None,
                    &[
                        entity_type.into(),
                        p.user_id.as_deref().into(),
                        pgrx::JsonB(write_columns(&new)).into(),
                    ],
                )
                .or_raise();
            let refreshed = Projection { columns: new, ..p };
            fill(client, &refreshed);
        }
    });
}
