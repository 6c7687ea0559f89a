//! The schema registry: entity types with versioned definitions, global and per user.
//!
//! `evolve.schemas` holds one row per (entity_type, user_id) — the head, with the current
//! definition — and `evolve.schema_history` every immutable version with its diff. All writes
//! lock the head row (`FOR UPDATE`), so concurrent changes to one schema serialize; the statement
//! trigger on `evolve.schemas` invalidates every backend's schema cache at commit.

use crate::jsonb::Json;
use evolve_core::diff::diff;
use evolve_core::schema::{self, check_extension, effective, Definition};
use evolve_core::{CoreError, SqlState};
use pgrx::prelude::*;
use std::cell::RefCell;

use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::access;
use crate::cache;
use crate::error::{raise, OrRaise};
use crate::governance;
use crate::jsonb::RawJsonb;

/// Checks a user id argument: NULL means global; otherwise 1–256 bytes without control characters.
pub fn check_user_id(user_id: Option<&str>) {
    if let Some(u) = user_id {
        if !evolve_core::ident::is_valid_user_id(u) {
            raise(
                SqlState::InvalidParameterValue,
                format!("invalid user_id {u:?}"),
                Some(
                    "A user_id is 1 to 256 bytes of printable text; NULL means the global scope."
                        .into(),
                ),
                None,
            );
        }
    }
}

/// Checks an entity type name argument.
pub fn check_entity_type(entity_type: &str) {
    if let Some(problem) = evolve_core::ident::name_problem(entity_type) {
        raise(
            SqlState::InvalidParameterValue,
            format!("invalid entity type \"{entity_type}\": {problem}"),
            None,
            None,
        );
    }
}

fn scope_label(entity_type: &str, user_id: Option<&str>) -> String {
    match user_id {
        None => format!("global schema \"{entity_type}\""),
        Some(u) => format!("schema \"{entity_type}\" of user \"{u}\""),
    }
}

fn not_found(entity_type: &str, user_id: Option<&str>) -> ! {
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
fn scope_predicate(user_id: Option<&str>) -> &'static str {
    if user_id.is_some() {
        "entity_type = $1 AND user_id = $2"
    } else {
        "entity_type = $1 AND user_id IS NULL AND $2::text IS NULL"
    }
}

/// Row locks need a read-write SPI execution: make sure the transaction has an xid, which is
/// how SPI decides.
pub fn writable_transaction() {
    // SAFETY: assigns (or returns) the current transaction id; raises an ERROR if impossible.
    unsafe { pgrx::pg_sys::GetCurrentTransactionId() };
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
        schema_id: row.get::<i64>(1).or_raise().unwrap_or_default(),
        version: row.get::<i32>(2).or_raise().unwrap_or_default(),
        definition: row
            .get::<JsonB>(3)
            .or_raise()
            .map(|j| j.0)
            .unwrap_or(Value::Null),
        status: row.get::<String>(4).or_raise().unwrap_or_default(),
    })
}

fn parse_stored(doc: &Value) -> Definition {
    Definition::parse(doc).unwrap_or_else(|e| pgrx::error!("stored definition is invalid: {e}"))
}

/// Locks the head of a scope, creating it (at version 0, invisible until commit) if needed.
fn lock_or_create_head(
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

/// Checks the extension rule in both directions: a user definition against the global one, or
/// a new global definition against every user's extension.
fn check_extension_rules(client: &SpiClient<'_>, def: &Definition, user_id: Option<&str>) {
    match user_id {
        Some(_) => {
            if let Some(global) = read_head(client, &def.entity_type, None, "FOR SHARE") {
                if global.version > 0 {
                    check_extension(&parse_stored(&global.definition), def).or_raise();
                }
            }
        }
        None => {
            let rows = client
                .select(
                    "SELECT user_id, definition FROM evolve.schemas \
                     WHERE entity_type = $1 AND user_id IS NOT NULL ORDER BY user_id",
                    None,
                    &[def.entity_type.as_str().into()],
                )
                .or_raise();
            for row in rows {
                let user: String = row.get(1).or_raise().unwrap_or_default();
                let ext = parse_stored(
                    &row.get::<JsonB>(2)
                        .or_raise()
                        .map(|j| j.0)
                        .unwrap_or_default(),
                );
                if let Err(e) = check_extension(def, &ext) {
                    raise(
                        SqlState::InvalidObjectDefinition,
                        format!("the global change conflicts with the schema of user \"{user}\""),
                        Some(e.to_string()),
                        Some(
                            "Change the user's schema first, or keep the global field's type."
                                .into(),
                        ),
                    );
                }
            }
        }
    }
}

/// Writes a new version of a scope whose head is locked, after every check: the extension
/// rule, compatibility, the user's quota, and name conflicts for what is new. Returns the
/// version number; a definition equal to the current one is not a change.
pub fn write_version(
    client: &mut SpiClient<'_>,
    head: &Head,
    def: &Definition,
    user_id: Option<&str>,
) -> i32 {
    let new_doc = def.to_json();
    if head.version > 0 && head.definition == new_doc {
        return head.version;
    }
    governance::enforce_compatibility(client, head, def);
    check_extension_rules(client, def, user_id);
    let old = (head.version > 0).then(|| parse_stored(&head.definition));
    if let Some(u) = user_id {
        let delta = def.field_count() as i64 - old.as_ref().map_or(0, |o| o.field_count() as i64);
        governance::charge_quota(client, u, head.version == 0, delta);
    }
    let global = match user_id {
        Some(_) => read_head(client, &def.entity_type, None, "")
            .filter(|g| g.version > 0)
            .map(|g| parse_stored(&g.definition)),
        None => None,
    };
    let mut status = head.status.clone();
    // A new type (not a user's extension of a global one) is checked against existing names.
    if head.version == 0 && global.is_none() {
        refuse_alias(client, &def.entity_type);
        if governance::detect_type_conflicts(client, &def.entity_type, user_id) {
            status = "pending_review".into();
        }
    }
    governance::detect_attribute_conflicts(client, old.as_ref(), def, global.as_ref(), user_id);
    if let (None, Some(old)) = (user_id, old.as_ref()) {
        crate::migration::record_derived_edge(&def.entity_type, old, def, head.version);
    }
    let change = diff(old.as_ref(), def);
    let version = head.version + 1;
    client
        .update(
            "INSERT INTO evolve.schema_history (schema_id, version, entity_type, user_id, definition, diff) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            None,
            &[
                head.schema_id.into(),
                version.into(),
                def.entity_type.as_str().into(),
                user_id.into(),
                JsonB(new_doc.clone()).into(),
                JsonB(change.to_json()).into(),
            ],
        )
        .or_raise();
    client
        .update(
            "UPDATE evolve.schemas SET current_version = $2, definition = $3, status = $4, updated_at = now() \
             WHERE schema_id = $1",
            None,
            &[head.schema_id.into(), version.into(), JsonB(new_doc).into(), status.into()],
        )
        .or_raise();
    cache::invalidate_local();
    // Fields that are now declared take their raw fragments with them, under their names and
    // their aliases (payload keys mapped to them).
    for name in change
        .attributes_added
        .iter()
        .chain(&change.relationships_added)
    {
        crate::fragments::promote(&def.entity_type, name, name, user_id);
        let aliases = def
            .attributes
            .get(name)
            .map(|a| a.aliases.as_slice())
            .unwrap_or(&[]);
        for alias in aliases {
            crate::fragments::promote(&def.entity_type, alias, name, user_id);
        }
    }
    version
}

/// A name merged into another type (an alias) cannot be registered as a type of its own.
fn refuse_alias(client: &SpiClient<'_>, entity_type: &str) {
    if let Some(t) = canonical_type(client, entity_type) {
        raise(
            SqlState::ObjectNotInPrerequisiteState,
            format!("\"{entity_type}\" is an alias of entity type \"{t}\""),
            None,
            Some(format!("Register or change \"{t}\" instead.")),
        );
    }
}

/// The entity type an alias was merged into; `None` when the name is no alias.
fn canonical_type(client: &SpiClient<'_>, entity_type: &str) -> Option<String> {
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

pub fn parse_document(doc: &Value) -> Definition {
    let text_len = serde_json::to_string(doc)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    schema::check_limits("schema definition", doc, text_len).or_raise();
    Definition::parse_input(doc).or_raise()
}

/// Registers (or updates) an entity type's schema; global when `user_id` is NULL, otherwise a
/// per-user extension of the global schema. Returns the new version number.
#[pg_extern(volatile, parallel_unsafe)]
fn register_schema(definition: Json, user_id: default!(Option<String>, "NULL")) -> i32 {
    let user_id = user_id.as_deref();
    check_user_id(user_id);
    access::require_schema_owner(user_id, "register");
    let def = parse_document(&definition.0);
    Spi::connect_mut(|client| {
        let head = lock_or_create_head(client, &def, user_id);
        write_version(client, &head, &def, user_id)
    })
}

/// Applies a JSON merge patch (RFC 7396: objects merge, `null` removes) to a schema and
/// registers the result as a new version. A user may not remove a global field.
#[pg_extern(volatile, parallel_unsafe)]
fn update_schema_incremental(
    entity_type: Option<&str>,
    patch: Json,
    user_id: default!(Option<String>, "NULL"),
) -> i32 {
    let entity_type = crate::error::required(entity_type, "entity_type");
    let user_id = user_id.as_deref();
    check_user_id(user_id);
    access::require_schema_owner(user_id, "change");
    check_entity_type(entity_type);
    let patch = patch.0;
    if !patch.is_object() {
        raise(
            SqlState::InvalidParameterValue,
            "a schema patch must be a JSON object",
            None,
            Some("Use a JSON merge patch such as {\"attributes\": {\"felt\": {\"type\": \"integer\"}, \"old\": null}}.".into()),
        );
    }
    if let Some(t) = patch.get("entity_type") {
        if t.as_str() != Some(entity_type) {
            raise(
                SqlState::InvalidParameterValue,
                "a patch may not change the entity type",
                None,
                None,
            );
        }
    }
    let text_len = serde_json::to_string(&patch)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    schema::check_limits("schema patch", &patch, text_len).or_raise();
    Spi::connect_mut(|client| {
        let own = read_head(client, entity_type, user_id, "FOR UPDATE");
        let global = match user_id {
            Some(_) => read_head(client, entity_type, None, "FOR SHARE"),
            None => None,
        };
        if own.is_none() && global.is_none() {
            not_found(entity_type, user_id);
        }
        if let Some(g) = &global {
            let g = parse_stored(&g.definition);
            for removed in schema::patch_removals(&patch) {
                if g.attributes.contains_key(&removed) || g.relationships.contains_key(&removed) {
                    crate::error::raise_core(CoreError::ExtensionViolation {
                        entity_type: entity_type.to_string(),
                        message: format!("may not remove global field \"{removed}\""),
                    });
                }
            }
        }
        let base = own
            .as_ref()
            .map(|h| h.definition.clone())
            .unwrap_or_else(|| json!({"entity_type": entity_type}));
        let def = parse_document(&schema::merge_patch(&base, &patch));
        let head = match own {
            Some(h) => h,
            None => lock_or_create_head(client, &def, user_id),
        };
        write_version(client, &head, &def, user_id)
    })
}

fn set_status(entity_type: &str, user_id: Option<&str>, status: &str) -> bool {
    check_user_id(user_id);
    access::require_schema_owner(user_id, "change the status of");
    check_entity_type(entity_type);
    Spi::connect_mut(|client| {
        let head = read_head(client, entity_type, user_id, "FOR UPDATE")
            .filter(|h| h.version > 0)
            .unwrap_or_else(|| not_found(entity_type, user_id));
        if head.status == status {
            return false;
        }
        if head.status == "pending_review" {
            raise(
                SqlState::ObjectNotInPrerequisiteState,
                format!("{} is pending review", scope_label(entity_type, user_id)),
                None,
                Some("Resolve its name conflict with evolve.resolve_conflict(id, action)".into()),
            );
        }
        client
            .update(
                "UPDATE evolve.schemas SET status = $2, updated_at = now() WHERE schema_id = $1",
                None,
                &[head.schema_id.into(), status.into()],
            )
            .or_raise();
        cache::invalidate_local();
        true
    })
}

/// Makes a deactivated schema active again. Returns false when it already was.
#[pg_extern(volatile, parallel_unsafe)]
fn activate_schema(entity_type: Option<&str>, user_id: default!(Option<String>, "NULL")) -> bool {
    let entity_type = crate::error::required(entity_type, "entity_type");
    set_status(entity_type, user_id.as_deref(), "active")
}

/// Deactivates a schema: `active_schema` no longer returns it (a user scope falls back to the
/// global schema). Its versions are kept. Returns false when it already was inactive.
#[pg_extern(volatile, parallel_unsafe)]
fn deactivate_schema(entity_type: Option<&str>, user_id: default!(Option<String>, "NULL")) -> bool {
    let entity_type = crate::error::required(entity_type, "entity_type");
    set_status(entity_type, user_id.as_deref(), "inactive")
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
                        row.get::<String>(1).or_raise(),
                        row.get::<JsonB>(2)
                            .or_raise()
                            .map(|j| j.0)
                            .unwrap_or_default(),
                        row.get::<i32>(3).or_raise().unwrap_or_default(),
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

/// An effective schema: its definition, version and hash.
pub type Effective = (Definition, i32, i64);

/// The effective schema as a parsed definition, with its version (the user's when a user
/// extension exists, else the global one) and a hash that changes whenever it does. Cached.
pub fn effective_definition(
    entity_type: &str,
    user_id: Option<&str>,
) -> Option<(Definition, i32, i64)> {
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
    Some((parse_stored(&doc), version, stable_hash(&bytes)))
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
