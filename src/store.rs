//! L1: the schema store. `evolve.schemas` holds one head row per (entity_type, user_id) with
//! the current definition, `evolve.schema_history` every immutable version; the effective
//! schema (global merged with a user's extension) is read from them through the backend-local
//! cache. Reads only, apart from creating a scope's head row: the write pipeline is
//! `registry` (L3).

use std::cell::RefCell;

use evolve_core::schema::{effective, Definition};
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::JsonB;
use serde_json::Value;

use crate::access;
use crate::args::writable_transaction;
use crate::cache;
use crate::error::{raise, OrRaise};
use crate::jsonb::RawJsonb;
use crate::plans::Row;

pub fn scope_label(entity_type: &str, user_id: Option<&str>) -> String {
    match user_id {
        None => format!("global schema \"{entity_type}\""),
        Some(u) => format!("schema \"{entity_type}\" of user \"{u}\""),
    }
}

pub fn not_found(entity_type: &str, user_id: Option<&str>) -> ! {
    raise(
        SqlState::UndefinedObject,
        format!("{} does not exist", scope_label(entity_type, user_id)),
        None,
        Some("Register it first with evolve.register_schema(definition, user_id).".into()),
    )
}

/// The head row of one schema scope.
#[derive(Clone)]
pub struct Head {
    pub schema_id: i64,
    pub version: i32,
    pub definition: Value,
    pub status: String,
}

/// `WHERE` clause selecting one scope; `$1` is the entity type, `$2` the user id. Two texts so
/// that both forms use the unique index.
pub fn scope_predicate(user_id: Option<&str>) -> &'static str {
    if user_id.is_some() {
        "entity_type = $1 AND user_id = $2"
    } else {
        "entity_type = $1 AND user_id IS NULL AND $2::text IS NULL"
    }
}

pub fn read_head(
    client: &SpiClient<'_>,
    entity_type: &str,
    user_id: Option<&str>,
    lock: &str,
) -> Option<Head> {
    if !lock.is_empty() {
        writable_transaction();
    }
    let sql = format!(
        "SELECT schema_id, current_version, definition, status FROM evolve.schemas WHERE {} {lock}",
        scope_predicate(user_id)
    );
    let rows = client
        .select(&sql, Some(1), &[entity_type.into(), user_id.into()])
        .or_raise();
    rows.into_iter().next().map(|row| Head {
        schema_id: row.required::<i64>(1),
        version: row.required::<i32>(2),
        definition: row.value::<JsonB>(3).map(|j| j.0).unwrap_or(Value::Null),
        status: row.required::<String>(4),
    })
}

pub fn parse_stored(doc: &Value) -> Definition {
    Definition::parse(doc).unwrap_or_else(|e| pgrx::error!("stored definition is invalid: {e}"))
}

/// Locks the head of a scope, creating it (at version 0, invisible until commit) if needed.
pub fn lock_or_create_head(
    client: &mut SpiClient<'_>,
    def: &Definition,
    user_id: Option<&str>,
) -> Head {
    client
        .update(
            "INSERT INTO evolve.schemas (entity_type, user_id, current_version, definition) \
             VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING",
            None,
            &[
                def.entity_type.as_str().into(),
                user_id.into(),
                JsonB(def.to_json()).into(),
            ],
        )
        .or_raise();
    read_head(client, &def.entity_type, user_id, "FOR UPDATE")
        .expect("the head row exists: it was just inserted or already there")
}

/// The entity type an alias was merged into; `None` when the name is no alias.
pub fn canonical_type(client: &SpiClient<'_>, entity_type: &str) -> Option<String> {
    client
        .select(
            "SELECT entity_type FROM evolve.entity_type_aliases WHERE alias = $1",
            Some(1),
            &[entity_type.into()],
        )
        .or_raise()
        .first()
        .get_one()
        .unwrap_or(None)
}

thread_local! {
    /// The two lookup plans (with and without a user), prepared once per backend. A kept plan
    /// is revalidated by PostgreSQL when the tables it reads change.
    static EFFECTIVE_PLANS: RefCell<[Option<OwnedPreparedStatement>; 2]> = const { RefCell::new([None, None]) };
}

/// Reads and merges the active global and user definitions of a type. `None`: no active schema.
pub fn compute_effective(entity_type: &str, user_id: Option<&str>) -> Option<Value> {
    let slot = user_id.is_some() as usize;
    let rows: Vec<(Option<String>, Value, i32)> = Spi::connect(|client| {
        let text = [PgOid::BuiltIn(PgBuiltInOids::TEXTOID); 2];
        EFFECTIVE_PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            if plans[slot].is_none() {
                let sql = if user_id.is_some() {
                    "SELECT user_id, definition, current_version FROM evolve.schemas \
                     WHERE entity_type = $1 AND (user_id IS NULL OR user_id = $2) \
                       AND status = 'active' AND current_version > 0"
                } else {
                    "SELECT user_id, definition, current_version FROM evolve.schemas \
                     WHERE entity_type = $1 AND user_id IS NULL AND $2::text IS NULL \
                       AND status = 'active' AND current_version > 0"
                };
                plans[slot] = Some(client.prepare(sql, &text).or_raise().keep());
            }
            let plan = plans[slot].as_ref().expect("prepared above");
            client
                .select(plan, None, &[entity_type.into(), user_id.into()])
                .or_raise()
                .map(|row| {
                    (
                        row.value::<String>(1),
                        row.value::<JsonB>(2).map(|j| j.0).unwrap_or_default(),
                        row.required::<i32>(3),
                    )
                })
                .collect()
        })
    });
    if rows.is_empty() {
        // Not a registered type: maybe a name merged into one.
        if let Some(canonical) = Spi::connect(|c| canonical_type(c, entity_type)) {
            if canonical != entity_type {
                return compute_effective(&canonical, user_id);
            }
        }
    }
    effective_document(&rows)
}

/// The effective schema document from the active (user_id, definition, version) rows of a type.
pub fn effective_document(rows: &[(Option<String>, Value, i32)]) -> Option<Value> {
    let global = rows.iter().find(|r| r.0.is_none());
    let user = rows.iter().find(|r| r.0.is_some());
    let g = global.map(|r| parse_stored(&r.1));
    let u = user.map(|r| parse_stored(&r.1));
    let eff = effective(g.as_ref(), u.as_ref())?;
    let mut doc = eff.to_json();
    let obj = doc.as_object_mut().expect("a definition is an object");
    if let Some(g) = global {
        obj.insert("version".into(), g.2.into());
    }
    if let Some(u) = user {
        obj.insert("user_id".into(), u.0.clone().into());
        obj.insert("user_version".into(), u.2.into());
    }
    Some(doc)
}

/// The schema hash stored with snapshots (stable across builds).
fn stable_hash(bytes: &[u8]) -> i64 {
    evolve_core::hash::fnv1a64(&[bytes]) as i64
}

/// An effective schema: the merged definition, its version and its hash.
#[derive(Clone)]
pub struct Effective {
    pub definition: Definition,
    /// The user's version when a user extension exists, else the global one.
    pub version: i32,
    /// Changes whenever the effective schema does (stored with snapshots).
    pub hash: i64,
}

/// The effective schema as a parsed definition, with its version (the user's when a user
/// extension exists, else the global one) and a hash that changes whenever it does. Cached.
pub fn effective_definition(entity_type: &str, user_id: Option<&str>) -> Option<Effective> {
    let key = (entity_type.to_owned(), user_id.map(str::to_owned));
    let bytes = cache::lookup(key, |(t, u)| {
        compute_effective(t, u.as_deref()).map(|doc| RawJsonb::encode(doc).0)
    })?;
    let doc = RawJsonb::decode(&bytes);
    let version = doc
        .get("version")
        .and_then(Value::as_i64)
        .or_else(|| doc.get("user_version").and_then(Value::as_i64))
        .unwrap_or(0) as i32;
    Some(Effective {
        definition: parse_stored(&doc),
        version,
        hash: stable_hash(&bytes),
    })
}

/// The effective schema of an entity type: the global schema merged with the user's extension.
/// NULL when the type has no active schema. Served from the backend-local cache.
#[pg_extern(stable, parallel_safe)]
fn active_schema(
    entity_type: Option<&str>,
    user_id: default!(Option<String>, "NULL"),
) -> Option<RawJsonb> {
    let entity_type = crate::error::required(entity_type, "entity_type");
    access::require_read(user_id.as_deref());
    let key = (entity_type.to_owned(), user_id);
    cache::lookup(key, |(t, u)| {
        compute_effective(t, u.as_deref()).map(|doc| RawJsonb::encode(doc).0)
    })
    .map(RawJsonb)
}

/// One version of one scope's definition (the global scope when `user_id` is NULL); `None`
/// when that version does not exist. The one reader of `evolve.schema_history` by version.
pub fn version_definition(
    entity_type: &str,
    user_id: Option<&str>,
    version: i32,
) -> Option<Definition> {
    crate::plans::one::<JsonB>(
        "SELECT definition FROM evolve.schema_history WHERE entity_type = $1 \
         AND user_id IS NOT DISTINCT FROM $2 AND version = $3",
        &[entity_type.into(), user_id.into(), version.into()],
    )
    .map(|j| parse_stored(&j.0))
}
