//! The schema registry: entity types with versioned definitions, global and per user.
//!
//! `evolve.schemas` holds one row per (entity_type, user_id) — the head, with the current
//! definition — and `evolve.schema_history` every immutable version with its diff. All writes
//! lock the head row (`FOR UPDATE`), so concurrent changes to one schema serialize; the statement
//! trigger on `evolve.schemas` invalidates every backend's schema cache at commit.

use crate::jsonb::Json;
use crate::plans::Row;
use evolve_core::diff::diff;
use evolve_core::schema::{self, check_extension, Definition};
use evolve_core::{CoreError, SqlState};
use pgrx::prelude::*;

use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::json;

use crate::access;
use crate::args::{check_entity_type, check_user_id, parse_document};
use crate::cache;
use crate::error::{raise, OrRaise};
use crate::governance;
use crate::store::{
    canonical_type, lock_or_create_head, not_found, parse_stored, read_head, scope_label, Head,
};

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
                let ext = parse_stored(&row.value::<JsonB>(2).map(|j| j.0).unwrap_or_default());
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
    crate::projections::on_new_version(&def.entity_type);
    // Fields that are now declared take their raw fragments with them, under their names and
    // their aliases (payload keys mapped to them).
    for name in change
        .attributes_added
        .iter()
        .chain(&change.relationships_added)
    {
        // A path into array elements names no fragment (arrays are kept whole).
        let path = evolve_core::path::lenient(name);
        if path.has_items() {
            continue;
        }
        crate::fragments::promote(&def.entity_type, name, name, user_id);
        let declared = def.attribute_at(&path).map(|(_, a)| a);
        if declared.is_some_and(|a| a.values.is_some()) {
            // A map: its members were ingested as fragments below it.
            crate::fragments::promote_members(&def.entity_type, name, name, user_id);
        }
        let aliases = declared.map(|a| a.aliases.as_slice()).unwrap_or(&[]);
        for alias in aliases {
            let key = match path.parent() {
                Some(parent) => parent.child(alias.clone()),
                None => evolve_core::path::Path::key(alias.clone()),
            }
            .to_string();
            crate::fragments::promote(&def.entity_type, &key, name, user_id);
            // Before 0.6.0 a top-level key was stored as written, even when its path's text
            // form quotes it.
            if path.len() == 1 && key != *alias {
                crate::fragments::promote(&def.entity_type, alias, name, user_id);
            }
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

/// Registers (or updates) an entity type's schema; global when `user_id` is NULL, otherwise a
/// per-user extension of the global schema. Returns the new version number.
#[pg_extern(volatile, parallel_unsafe)]
fn register_schema(definition: Json, user_id: default!(Option<String>, "NULL")) -> i32 {
    register(&definition.0, user_id.as_deref())
}

/// `register_schema`, for the layers above (proposals, changes): the same checks and the same
/// pipeline, without a trip through SQL.
pub fn register(definition: &serde_json::Value, user_id: Option<&str>) -> i32 {
    check_user_id(user_id);
    access::require_schema_owner(user_id, "register");
    let def = parse_document(definition);
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
    update_incremental(entity_type, &patch.0, user_id.as_deref())
}

/// `update_schema_incremental`, for the layers above: the same checks and pipeline.
pub fn update_incremental(
    entity_type: &str,
    patch: &serde_json::Value,
    user_id: Option<&str>,
) -> i32 {
    check_user_id(user_id);
    access::require_schema_owner(user_id, "change");
    check_entity_type(entity_type);
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
    schema::check_limits("schema patch", patch, text_len).or_raise();
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
            for removed in schema::patch_removals(patch) {
                if g.attribute_named(&removed).is_some() || g.relationships.contains_key(&removed) {
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
        let def = parse_document(&schema::merge_patch(&base, patch));
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

/// Resolves a name conflict. `keep`: the new name stands (a type pending review becomes active).
/// `merge`: the new name becomes an alias of the existing one (a pending type is removed and
/// `active_schema(new_name)` answers with the existing type; an attribute moves into the
/// existing attribute's aliases in a new version). Returns the conflict's new status.
#[pg_extern(volatile, parallel_unsafe)]
fn resolve_conflict(id: i64, action: &str) -> String {
    access::require_admin("resolve a conflict");
    let status = match action {
        "keep" => "kept",
        "merge" => "merged",
        _ => raise(
            SqlState::InvalidParameterValue,
            format!("unknown action \"{action}\""),
            None,
            Some("Use 'keep' or 'merge'.".into()),
        ),
    };
    crate::args::writable_transaction();
    Spi::connect_mut(|client| {
        let row = client
            .select(
                "SELECT kind, entity_type, user_id, new_name, existing_name, status \
                 FROM evolve.entity_conflicts WHERE id = $1 FOR UPDATE",
                Some(1),
                &[id.into()],
            )
            .or_raise();
        if row.is_empty() {
            raise(
                SqlState::UndefinedObject,
                format!("conflict {id} does not exist"),
                None,
                None,
            );
        }
        let row = row.first();
        let kind: String = row.get(1).or_raise().unwrap_or_default();
        let entity_type: String = row.get(2).or_raise().unwrap_or_default();
        let user_id: Option<String> = row.get(3).or_raise();
        let new_name: String = row.get(4).or_raise().unwrap_or_default();
        let existing: String = row.get(5).or_raise().unwrap_or_default();
        let current: String = row.get(6).or_raise().unwrap_or_default();
        if current != "pending" {
            raise(
                SqlState::ObjectNotInPrerequisiteState,
                format!("conflict {id} is already resolved ({current})"),
                None,
                None,
            );
        }
        let user_id = user_id.as_deref();
        match (kind.as_str(), status) {
            ("entity_type", "kept") => {
                let others = client
                    .select(
                        "SELECT 1 FROM evolve.entity_conflicts WHERE kind = 'entity_type' AND new_name = $1 \
                         AND status = 'pending' AND id <> $2",
                        None,
                        &[new_name.as_str().into(), id.into()],
                    )
                    .or_raise()
                    .len();
                if others == 0 {
                    client
                        .update(
                            "UPDATE evolve.schemas SET status = 'active', updated_at = now() \
                             WHERE entity_type = $1 AND status = 'pending_review'",
                            None,
                            &[new_name.as_str().into()],
                        )
                        .or_raise();
                }
            }
            ("entity_type", _) => {
                client
                    .update(
                        // Its history goes with it (no foreign key since 0.10.0).
                        "WITH gone AS (DELETE FROM evolve.schemas \
                             WHERE entity_type = $1 AND status = 'pending_review' RETURNING schema_id) \
                         DELETE FROM evolve.schema_history h USING gone WHERE h.schema_id = gone.schema_id",
                        None,
                        &[new_name.as_str().into()],
                    )
                    .or_raise();
                client
                    .update(
                        "INSERT INTO evolve.entity_type_aliases (alias, entity_type) VALUES ($1, $2) \
                         ON CONFLICT (alias) DO UPDATE SET entity_type = EXCLUDED.entity_type",
                        None,
                        &[new_name.as_str().into(), existing.as_str().into()],
                    )
                    .or_raise();
                // Every other pending conflict of the merged name is settled by the merge.
                client
                    .update(
                        "UPDATE evolve.entity_conflicts SET status = 'merged', resolved_at = now(), \
                         resolved_by = evolve._calling_role() WHERE kind = 'entity_type' AND new_name = $1 AND status = 'pending'",
                        None,
                        &[new_name.as_str().into()],
                    )
                    .or_raise();
            }
            (_, "merged") => merge_attribute(client, &entity_type, user_id, &new_name, &existing),
            _ => {}
        }
        client
            .update(
                "UPDATE evolve.entity_conflicts SET status = $2, resolved_at = now(), resolved_by = evolve._calling_role() \
                 WHERE id = $1",
                None,
                &[id.into(), status.into()],
            )
            .or_raise();
        crate::cache::invalidate_local();
    });
    status.to_string()
}

/// Folds attribute `new_name` into `existing` as an alias, in a new version of the scope.
fn merge_attribute(
    client: &mut SpiClient<'_>,
    entity_type: &str,
    user_id: Option<&str>,
    new_name: &str,
    existing: &str,
) {
    let Some(head) = read_head(client, entity_type, user_id, "FOR UPDATE") else {
        return;
    };
    let mut def = Definition::parse(&head.definition).or_raise();
    if def.attributes.remove(new_name).is_none() {
        return;
    }
    match def.attributes.get_mut(existing) {
        Some(attr) => {
            if !attr.aliases.iter().any(|a| a == new_name) {
                attr.aliases.push(new_name.to_string());
            }
        }
        None => raise(
            SqlState::ObjectNotInPrerequisiteState,
            format!("attribute \"{existing}\" is not in the schema of \"{entity_type}\"; cannot merge into it"),
            None,
            Some("Resolve with action => 'keep' instead.".into()),
        ),
    }
    write_version(client, &head, &def, user_id);
}
