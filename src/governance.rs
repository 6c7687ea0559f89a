//! Registry governance: compatibility modes, quotas, near-duplicate names, time travel and diffs.

use crate::jsonb::Json;
use crate::plans::Row;
use evolve_core::compat::{self, CompatMode};
use evolve_core::diff::diff;
use evolve_core::schema::Definition;
use evolve_core::similarity::similar_names;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::Value;

use crate::access;
use crate::args::{check_entity_type, check_user_id};
use crate::error::{raise, OrRaise};
use crate::gucs;
use crate::jsonb::RawJsonb;
use crate::store::{effective_document, read_head, Head};

/// The compatibility mode governing a scope: the global schema's, else the scope's own.
pub fn mode_of(client: &SpiClient<'_>, entity_type: &str) -> CompatMode {
    let mode: Option<String> = client
        .select(
            "SELECT compatibility FROM evolve.schemas WHERE entity_type = $1 ORDER BY user_id NULLS FIRST LIMIT 1",
            Some(1),
            &[entity_type.into()],
        )
        .or_raise()
        .first()
        .get_one()
        .or_raise();
    mode.and_then(|m| CompatMode::parse(&m)).unwrap_or_default()
}

/// Every reason the new definition is incompatible with the scope's history under its mode.
pub fn incompatibilities(
    client: &SpiClient<'_>,
    head: &Head,
    def: &Definition,
) -> (CompatMode, Vec<String>) {
    let mode = mode_of(client, &def.entity_type);
    if head.version == 0 || mode == CompatMode::None {
        return (mode, Vec::new());
    }
    let previous: Vec<Definition> = if mode.is_transitive() {
        client
            .select(
                "SELECT definition FROM evolve.schema_history WHERE schema_id = $1 ORDER BY version",
                None,
                &[head.schema_id.into()],
            )
            .or_raise()
            .filter_map(|row| row.value::<JsonB>(1))
            .map(|j| Definition::parse(&j.0).or_raise())
            .collect()
    } else {
        vec![Definition::parse(&head.definition).or_raise()]
    };
    (mode, compat::check(mode, &previous, def))
}

thread_local! {
    static FORCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, `enforce_compatibility` lets an incompatible change through: a reviewer
/// approves a proposal with `force => true` (its audit row records the reasons).
pub struct ForcedCompatibility(bool);

impl ForcedCompatibility {
    pub fn begin() -> ForcedCompatibility {
        ForcedCompatibility(FORCED.with(|f| f.replace(true)))
    }
}

impl Drop for ForcedCompatibility {
    fn drop(&mut self) {
        FORCED.with(|f| f.set(self.0));
    }
}

/// Refuses an incompatible change, listing every reason (unless a reviewer forces it).
pub fn enforce_compatibility(client: &SpiClient<'_>, head: &Head, def: &Definition) {
    if FORCED.with(|f| f.get()) {
        return;
    }
    let (mode, reasons) = incompatibilities(client, head, def);
    if !reasons.is_empty() {
        raise(
            SqlState::ObjectNotInPrerequisiteState,
            format!(
                "schema change for \"{}\" is not {} compatible ({} problem{})",
                def.entity_type,
                mode.as_str(),
                reasons.len(),
                if reasons.len() == 1 { "" } else { "s" }
            ),
            Some(reasons.join("\n")),
            Some(format!(
                "Give new required attributes a default, or change the mode with evolve.set_compatibility('{}', mode).",
                def.entity_type
            )),
        );
    }
}

/// Charges a user's quota for a change: `new_scope` adds a schema, `field_delta` fields.
/// The quota row is locked, so concurrent registrations of one user serialize here.
pub fn charge_quota(client: &mut SpiClient<'_>, user_id: &str, new_scope: bool, field_delta: i64) {
    client
        .update(
            "INSERT INTO evolve.user_schema_quotas (user_id) VALUES ($1) ON CONFLICT DO NOTHING",
            None,
            &[user_id.into()],
        )
        .or_raise();
    let rows = client
        .select(
            "SELECT schema_count, max_schemas, total_fields, max_fields FROM evolve.user_schema_quotas \
             WHERE user_id = $1 FOR UPDATE",
            Some(1),
            &[user_id.into()],
        )
        .or_raise();
    let row = rows.first();
    let int = |n: usize, default: i32| row.value::<i32>(n).unwrap_or(default) as i64;
    let (count, max_schemas, fields, max_fields) = (int(1, 0), int(2, 10), int(3, 0), int(4, 200));
    let new_count = count + new_scope as i64;
    let new_fields = (fields + field_delta).max(0);
    let hint = Some(format!(
        "Ask an administrator to raise it with evolve.set_quota('{user_id}', max_schemas, max_fields)."
    ));
    if new_count > max_schemas {
        raise(
            SqlState::ConfigurationLimitExceeded,
            format!("user \"{user_id}\" has reached the quota of {max_schemas} schemas"),
            None,
            hint,
        );
    }
    if new_fields > max_fields {
        raise(
            SqlState::ConfigurationLimitExceeded,
            format!(
                "user \"{user_id}\" would have {new_fields} fields, over the quota of {max_fields}"
            ),
            None,
            hint,
        );
    }
    if new_count * 5 >= max_schemas * 4 || new_fields * 5 >= max_fields * 4 {
        pgrx::warning!(
            "user \"{user_id}\" is at {new_count} of {max_schemas} schemas and {new_fields} of {max_fields} fields (80 % quota warning)"
        );
    }
    client
        .update(
            "UPDATE evolve.user_schema_quotas SET schema_count = $2, total_fields = $3, updated_at = now() \
             WHERE user_id = $1",
            None,
            &[user_id.into(), (new_count as i32).into(), (new_fields as i32).into()],
        )
        .or_raise();
}

fn record_conflict(
    client: &mut SpiClient<'_>,
    kind: &str,
    entity_type: &str,
    user_id: Option<&str>,
    new_name: &str,
    existing: &str,
    score: f64,
) {
    client
        .update(
            "INSERT INTO evolve.entity_conflicts (kind, entity_type, user_id, new_name, existing_name, score) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            None,
            &[kind.into(), entity_type.into(), user_id.into(), new_name.into(), existing.into(), score.into()],
        )
        .or_raise();
}

/// For a new entity type: records every near-duplicate of an existing type (or alias) visible
/// to the scope. Returns true when the new type must wait for review.
pub fn detect_type_conflicts(
    client: &mut SpiClient<'_>,
    entity_type: &str,
    user_id: Option<&str>,
) -> bool {
    let existing: Vec<String> = client
        .select(
            "SELECT DISTINCT entity_type FROM evolve.schemas \
             WHERE entity_type <> $1 AND current_version > 0 AND (user_id IS NULL OR user_id = $2) \
             UNION SELECT alias FROM evolve.entity_type_aliases",
            None,
            &[entity_type.into(), user_id.into()],
        )
        .or_raise()
        .filter_map(|r| r.value::<String>(1))
        .collect();
    let matches = similar_names(
        entity_type,
        existing.iter().map(String::as_str),
        gucs::similarity_threshold(),
    );
    for (name, score) in &matches {
        record_conflict(
            client,
            "entity_type",
            entity_type,
            user_id,
            entity_type,
            name,
            *score,
        );
    }
    !matches.is_empty()
}

/// For attributes a change adds: records near-duplicates of the type's other attributes.
pub fn detect_attribute_conflicts(
    client: &mut SpiClient<'_>,
    old: Option<&Definition>,
    new: &Definition,
    global: Option<&Definition>,
    user_id: Option<&str>,
) {
    let added = diff(old, new).attributes_added;
    let mut existing: Vec<&str> = new.attributes.keys().map(String::as_str).collect();
    if let Some(g) = global {
        existing.extend(g.attributes.keys().map(String::as_str));
    }
    // Top-level attributes only: a nested member's siblings are other objects' members.
    for name in &added {
        let Some(attr) = new.attributes.get(name) else {
            continue;
        };
        let aliases = &attr.aliases;
        let others = existing
            .iter()
            .copied()
            .filter(|e| e != name && !aliases.iter().any(|a| a == e));
        for (other, score) in similar_names(name, others, gucs::similarity_threshold()) {
            if !added.contains(&other) || other < *name {
                record_conflict(
                    client,
                    "attribute",
                    &new.entity_type,
                    user_id,
                    name,
                    &other,
                    score,
                );
            }
        }
    }
}

/// Sets an entity type's compatibility mode: NONE, BACKWARD, FORWARD, FULL or their
/// _TRANSITIVE forms. Applies to the global schema and every user's extension of it.
#[pg_extern(volatile, parallel_unsafe)]
fn set_compatibility(entity_type: &str, mode: &str) -> String {
    access::require_admin("set a compatibility mode");
    check_entity_type(entity_type);
    let Some(m) = CompatMode::parse(mode) else {
        raise(
            SqlState::InvalidParameterValue,
            format!("unknown compatibility mode \"{mode}\""),
            None,
            Some("Use NONE, BACKWARD, FORWARD, FULL, BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE or FULL_TRANSITIVE.".into()),
        );
    };
    let updated = Spi::connect_mut(|client| {
        client
            .update(
                "UPDATE evolve.schemas SET compatibility = $2, updated_at = now() WHERE entity_type = $1",
                None,
                &[entity_type.into(), m.as_str().into()],
            )
            .or_raise()
            .len()
    });
    if updated == 0 {
        raise(
            SqlState::UndefinedObject,
            format!("entity type \"{entity_type}\" does not exist"),
            None,
            None,
        );
    }
    m.as_str().to_string()
}

/// Would this definition be accepted? Lists every compatibility problem (and nothing else:
/// validation errors are raised as by register_schema).
#[pg_extern(volatile, parallel_unsafe)]
fn check_compatibility(
    definition: Json,
    user_id: default!(Option<String>, "NULL"),
) -> TableIterator<'static, (name!(compatible, bool), name!(reasons, Vec<String>))> {
    let user_id = user_id.as_deref();
    check_user_id(user_id);
    access::require_read(user_id);
    let def = crate::args::parse_document(&definition.0);
    let reasons = Spi::connect(
        |client| match read_head(client, &def.entity_type, user_id, "") {
            Some(head) if head.version > 0 => incompatibilities(client, &head, &def).1,
            _ => Vec::new(),
        },
    );
    TableIterator::once((reasons.is_empty(), reasons))
}

/// Sets a user's limits. Refuses limits below what the user already uses.
#[pg_extern(volatile, parallel_unsafe)]
fn set_quota(user_id: &str, max_schemas: i32, max_fields: i32) {
    access::require_admin("set a quota");
    check_user_id(Some(user_id));
    if max_schemas < 0 || max_fields < 0 {
        raise(
            SqlState::InvalidParameterValue,
            "quota limits must not be negative",
            None,
            None,
        );
    }
    Spi::connect_mut(|client| {
        client
            .update(
                "INSERT INTO evolve.user_schema_quotas (user_id) VALUES ($1) ON CONFLICT DO NOTHING",
                None,
                &[user_id.into()],
            )
            .or_raise();
        let (count, fields) = client
            .select(
                "SELECT schema_count, total_fields FROM evolve.user_schema_quotas WHERE user_id = $1 FOR UPDATE",
                Some(1),
                &[user_id.into()],
            )
            .or_raise()
            .first()
            .get_two::<i32, i32>()
            .or_raise();
        let (count, fields) = (count.unwrap_or(0), fields.unwrap_or(0));
        if max_schemas < count || max_fields < fields {
            raise(
                SqlState::InvalidParameterValue,
                format!(
                    "user \"{user_id}\" already uses {count} schemas and {fields} fields, more than the new limits"
                ),
                None,
                None,
            );
        }
        client
            .update(
                "UPDATE evolve.user_schema_quotas SET max_schemas = $2, max_fields = $3, updated_at = now() \
                 WHERE user_id = $1",
                None,
                &[user_id.into(), max_schemas.into(), max_fields.into()],
            )
            .or_raise();
    })
}

/// The effective schema of a type as it was at a point in time (by version timestamps; status
/// changes are not versions and are not considered).
#[pg_extern(stable, parallel_safe)]
fn schema_at(
    entity_type: Option<&str>,
    at: Option<pgrx::datum::TimestampWithTimeZone>,
    user_id: default!(Option<String>, "NULL"),
) -> Option<RawJsonb> {
    let entity_type = crate::error::required(entity_type, "entity_type");
    let at = crate::error::required(at, "at");
    let user_id = user_id.as_deref();
    access::require_read(user_id);
    let rows: Vec<(Option<String>, Value, i32)> = Spi::connect(|client| {
        client
            .select(
                "SELECT DISTINCT ON (schema_id) user_id, definition, version FROM evolve.schema_history \
                 WHERE entity_type = $1 AND (user_id IS NULL OR user_id = $2) AND created_at <= $3 \
                 ORDER BY schema_id, version DESC",
                None,
                &[entity_type.into(), user_id.into(), at.into()],
            )
            .or_raise()
            .map(|row| {
                (
                    row.value::<String>(1),
                    row.value::<JsonB>(2).map(|j| j.0).unwrap_or_default(),
                    row.value::<i32>(3).unwrap_or_default(),
                )
            })
            .collect()
    });
    effective_document(&rows).map(RawJsonb::encode)
}

/// What changed between two versions of one schema scope.
#[pg_extern(stable, parallel_safe)]
fn schema_diff(
    entity_type: Option<&str>,
    from_version: Option<i32>,
    to_version: Option<i32>,
    user_id: default!(Option<String>, "NULL"),
) -> JsonB {
    let entity_type = crate::error::required(entity_type, "entity_type");
    let from_version = crate::error::required(from_version, "from_version");
    let to_version = crate::error::required(to_version, "to_version");
    let user_id = user_id.as_deref();
    access::require_read(user_id);
    let from = existing_version(entity_type, user_id, from_version);
    let to = existing_version(entity_type, user_id, to_version);
    JsonB(diff(Some(&from), &to).to_json())
}

/// A version that must exist (42704 otherwise).
fn existing_version(entity_type: &str, user_id: Option<&str>, version: i32) -> Definition {
    crate::store::version_definition(entity_type, user_id, version).unwrap_or_else(|| {
        raise(
            SqlState::UndefinedObject,
            format!("version {version} of \"{entity_type}\" does not exist"),
            None,
            Some("See evolve.schema_versions for the versions that exist.".into()),
        )
    })
}
