//! L4: reviewing schema proposals: approve (apply in a subtransaction), reject and roll back,
//! each with its audit row in `evolve.schema_evolution_history`, and the Mermaid diagram.
//! Applying goes through the registry in Rust; what a proposal does is its typed `Action`.

use std::panic::AssertUnwindSafe;

use evolve_core::compat::CompatMode;
use evolve_core::impact::Change;
use evolve_core::proposals::index_sql;
use evolve_core::propose::{self, removal_patch, Action};
use evolve_core::schema::{self, AttrType, Definition};
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::args::{check_user_id, writable_transaction};
use crate::error::{in_subtransaction, raise, OrRaise};
use crate::governance::{incompatibilities, mode_of, ForcedCompatibility};
use crate::plans::{text_rows, Row};
use crate::store::{effective_definition, read_head};

struct Proposal {
    id: i64,
    entity_type: String,
    user_id: Option<String>,
    name: String,
    action: Value,
    measure: f64,
}

/// Locks a proposal and checks it is in status `want` (else 55000; 42704 when it does not exist).
fn load(id: i64, want: &str) -> Proposal {
    writable_transaction();
    let (p, status) = Spi::connect_mut(|c| {
        c.update(
            "SELECT entity_type, user_id, name, status, action, measure \
             FROM evolve.schema_proposals WHERE id = $1 FOR UPDATE",
            None,
            &[id.into()],
        )
        .or_raise()
        .next()
        .map(|r| {
            let p = Proposal {
                id,
                entity_type: r.required::<String>(1),
                user_id: r.value::<String>(2),
                name: r.required::<String>(3),
                action: r.value::<JsonB>(5).map(|j| j.0).unwrap_or_default(),
                measure: r.value::<f64>(6).unwrap_or(0.0),
            };
            (p, r.required::<String>(4))
        })
    })
    .unwrap_or_else(|| {
        raise(
            SqlState::UndefinedObject,
            format!("proposal {id} does not exist"),
            None,
            Some("See evolve.schema_proposals or run evolve.propose_schema().".into()),
        )
    });
    if status != want {
        raise(
            SqlState::ObjectNotInPrerequisiteState,
            format!("proposal {id} is {status}, not {want}"),
            None,
            Some("Only pending proposals can be approved or rejected, and only implemented ones rolled back; evolve.propose_schema() refreshes them.".into()),
        );
    }
    p
}

fn history(
    proposal: i64,
    action: &str,
    executed: Option<&str>,
    rollback: Option<&str>,
    success: bool,
    error: Option<(&str, &str)>,
    details: Value,
) -> i64 {
    Spi::connect_mut(|c| {
        // The row carries its proposal's scope (since 0.10.0) for row-level security.
        let sql = if crate::plans::rows_carry_scope() {
            "INSERT INTO evolve.schema_evolution_history \
                 (proposal_id, action, executed_sql, rollback_sql, success, sqlstate, error, details, \
                  user_id, proposal_kind) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, p.user_id, p.kind \
             FROM evolve.schema_proposals p WHERE p.id = $1 RETURNING id"
        } else {
            "INSERT INTO evolve.schema_evolution_history \
                 (proposal_id, action, executed_sql, rollback_sql, success, sqlstate, error, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"
        };
        c.update(
            sql,
            None,
            &[
                proposal.into(),
                action.into(),
                executed.into(),
                rollback.into(),
                success.into(),
                error.map(|e| e.0).into(),
                error.map(|e| e.1).into(),
                JsonB(details).into(),
            ],
        )
        .or_raise()
        .next()
        .and_then(|r| r.value::<i64>(1))
        .unwrap_or(0)
    })
}

/// What applying a proposal did: the statements (as text for the audit), their undo, and the
/// facts the rollback needs.
struct Applied {
    executed: Vec<String>,
    rollback: Vec<String>,
    details: Value,
}

fn run_patch(entity_type: &str, user_id: Option<&str>, patch: &Value) -> i32 {
    crate::registry::update_incremental(entity_type, patch, user_id)
}

fn record_object(p: &Proposal, kind: &str, name: &str, columns: Value, sql: &str) {
    // A table is a projection, in evolve_data (an index is on evolve.entities).
    let schema = if kind == "table" {
        "evolve_data"
    } else {
        "evolve"
    };
    Spi::connect_mut(|c| {
        let insert = if crate::plans::rows_carry_scope() {
            "INSERT INTO evolve.dynamic_tables (proposal_id, kind, schema_name, object_name, entity_type, columns, \
                 created_sql, user_id, proposal_kind) \
             SELECT $1, $2, $7, $3, $4, $5, $6, p.user_id, p.kind FROM evolve.schema_proposals p WHERE p.id = $1"
        } else {
            "INSERT INTO evolve.dynamic_tables (proposal_id, kind, schema_name, object_name, entity_type, columns, created_sql) \
             VALUES ($1, $2, $7, $3, $4, $5, $6)"
        };
        c.update(
            insert,
            None,
            &[
                p.id.into(),
                kind.into(),
                name.into(),
                p.entity_type.as_str().into(),
                JsonB(columns).into(),
                sql.into(),
                schema.into(),
            ],
        )
        .or_raise();
    });
}

fn create_index(p: &Proposal, field: &str, attr_type: AttrType, out: &mut Applied) {
    let (create, drop) = index_sql("evolve", &p.entity_type, field, attr_type);
    // Identifiers quoted, the type name a quoted literal (DDL takes no parameters).
    Spi::run(&create).or_raise();
    record_object(
        p,
        "index",
        &evolve_core::proposals::index_name(&p.entity_type, field),
        json!([]),
        &create,
    );
    out.executed.push(create);
    out.rollback.insert(0, drop);
}

fn apply(p: &Proposal) -> Applied {
    let mut out = Applied {
        executed: Vec::new(),
        rollback: Vec::new(),
        details: json!({}),
    };
    let user = p.user_id.as_deref();
    let action = Action::from_json(&p.action);
    // The type of the index `patch_and_index` creates after its patch.
    let then_index = match &action {
        Ok(Action::PatchAndIndex { attr_type, .. }) => Some(*attr_type),
        _ => None,
    };
    match action {
        Ok(
            Action::Patch { patch, field, key }
            | Action::PatchAndIndex {
                patch, field, key, ..
            },
        ) => {
            let field = field.unwrap_or_else(|| p.name.clone());
            let before = crate::store::effective_definition(&p.entity_type, user);
            let version = run_patch(&p.entity_type, user, &patch);
            let removal = removal_patch(&patch, before.as_ref().map(|e| &e.definition));
            out.executed
                .push(propose::patch_sql(&p.entity_type, user, &patch));
            out.rollback
                .push(propose::patch_sql(&p.entity_type, user, &removal));
            let at = Spi::get_one::<String>("SELECT now()::text")
                .or_raise()
                .unwrap_or_default();
            out.details = json!({"version": version, "field": field, "key": key, "promoted_at": at,
                                 "removal": removal});
            // A map promoted the fragments of its members, below its key.
            let is_map = crate::store::effective_definition(&p.entity_type, user)
                .and_then(|e| {
                    e.definition
                        .attribute_named(&field)
                        .map(|(_, a)| a.values.is_some())
                })
                .unwrap_or(false);
            if is_map {
                out.details["members_prefix"] =
                    json!(evolve_core::path::lenient(key.as_deref().unwrap_or(&field))
                        .member_prefix());
            }
            if let Some(attr_type) = then_index {
                create_index(p, &field, attr_type, &mut out);
            }
        }
        Ok(Action::Index { field, attr_type }) => {
            let field = field.unwrap_or_else(|| p.name.clone());
            create_index(p, &field, attr_type, &mut out);
        }
        Ok(Action::Table { .. }) => {
            // A typed projection of the type, filled and kept current with the snapshots.
            let q = evolve_core::proposals::quote_literal;
            let create = format!("SELECT evolve.create_projection({})", q(&p.entity_type));
            let table = crate::projections::create(&p.entity_type, None);
            let mapping: Value = crate::plans::one::<JsonB>(
                "SELECT columns FROM evolve.projections WHERE entity_type = $1 AND user_id IS NULL",
                &[p.entity_type.as_str().into()],
            )
            .map(|j| j.0)
            .unwrap_or(Value::Null);
            record_object(p, "table", &table, mapping, &create);
            out.executed.push(create);
            out.rollback.push(format!(
                "SELECT evolve.drop_projection({})",
                q(&p.entity_type)
            ));
            if crate::gucs::notify_pgrst() {
                // Sent at commit, with the table: PostgREST reloads its schema cache.
                Spi::run("SELECT pg_catalog.pg_notify('pgrst', 'reload schema')").or_raise();
            }
        }
        Ok(Action::Register { definition, .. }) => {
            let version = crate::registry::register(&definition, user);
            // The rejected rows are ingested again (rows that still fail return to the rejects).
            let replayed = Spi::connect_mut(|c| {
                c.update(
                    "WITH moved AS (DELETE FROM evolve.inbox_rejects \
                         WHERE sqlstate = '42704' AND entity_type = $1 AND user_id IS NOT DISTINCT FROM $2 \
                         RETURNING entity_type, payload, user_id, source, entity_key, schema_version) \
                     INSERT INTO evolve.inbox (entity_type, payload, user_id, source, entity_key, schema_version) \
                     SELECT entity_type, payload, user_id, source, entity_key, schema_version FROM moved",
                    None,
                    &[p.entity_type.as_str().into(), user.into()],
                )
                .or_raise()
                .len()
            });
            out.executed.push(format!(
                "SELECT evolve.register_schema({}::jsonb, {})",
                evolve_core::proposals::quote_literal(&definition.to_string()),
                user.map_or("NULL".into(), evolve_core::proposals::quote_literal)
            ));
            out.rollback.push(format!(
                "SELECT evolve.deactivate_schema({}, {})",
                evolve_core::proposals::quote_literal(&p.entity_type),
                user.map_or("NULL".into(), evolve_core::proposals::quote_literal)
            ));
            out.details = json!({"version": version, "replayed_rows": replayed});
        }
        Ok(Action::ExtractEntity {
            definition,
            target,
            relationship,
            key,
        }) => {
            let q = evolve_core::proposals::quote_literal;
            let user_sql = user.map_or("NULL".into(), q);
            out.executed.push(format!(
                "SELECT evolve.register_schema({}::jsonb, {user_sql})",
                q(&definition.to_string())
            ));
            let patch =
                json!({"relationships": {relationship.clone(): {"target": target, "key": key}}});
            out.executed
                .push(propose::patch_sql(&p.entity_type, user, &patch));
            out.rollback.push(propose::patch_sql(
                &p.entity_type,
                user,
                &json!({"relationships": {relationship.clone(): null}}),
            ));
            out.details = crate::extraction::approve(
                &p.entity_type,
                user,
                &p.name,
                &definition,
                &target,
                &relationship,
                &key,
            );
        }
        Err(other) => raise(
            SqlState::InvalidParameterValue,
            format!("proposal {} has an unknown action \"{other}\"", p.id),
            None,
            None,
        ),
    }
    out
}

/// The type's compatibility mode and every reason the definition approval would write breaks
/// it, as `check_compatibility` gives them (no reason: compatible).
fn compatibility(
    entity_type: &str,
    user_id: Option<&str>,
    action: &Action,
) -> (CompatMode, Vec<String>) {
    Spi::connect(|c| {
        // A type not registered yet has no mode of its own, and nothing to be compatible with.
        let Some(head) = read_head(c, entity_type, user_id, "").filter(|h| h.version > 0) else {
            return (CompatMode::default(), Vec::new());
        };
        let after = match action {
            Action::Patch { patch, .. } | Action::PatchAndIndex { patch, .. } => {
                schema::merge_patch(&head.definition, patch)
            }
            Action::Register { definition, .. } => definition.clone(),
            Action::ExtractEntity {
                target,
                relationship,
                key,
                ..
            } => schema::merge_patch(
                &head.definition,
                &json!({"relationships": {relationship.clone(): {"target": target, "key": key}}}),
            ),
            // Indexes and tables write no definition.
            Action::Index { .. } | Action::Table { .. } => {
                return (mode_of(c, entity_type), Vec::new())
            }
        };
        match Definition::parse(&after) {
            Ok(def) => incompatibilities(c, &head, &def),
            Err(e) => (
                mode_of(c, entity_type),
                vec![format!("the definition it writes is invalid: {e}")],
            ),
        }
    })
}

/// What approving `action` would do, before anyone approves it: `compatibility` (the type's
/// mode, whether the definition it writes is compatible, every reason) and `impact` (the
/// entities it would re-embed, their priority and the estimated seconds, as
/// `analyze_impact` gives them). Stored in each pending proposal's evidence by propose_schema.
pub fn verdict(entity_type: &str, user_id: Option<&str>, action: &Action) -> (Value, Value) {
    let (mode, reasons) = compatibility(entity_type, user_id, action);
    let compatibility =
        json!({"mode": mode.as_str(), "compatible": reasons.is_empty(), "reasons": reasons});
    // The attributes a patch adds are what approval would re-embed entities for.
    let added: Vec<(String, AttrType, Option<String>)> = match action {
        Action::Patch { patch, .. } | Action::PatchAndIndex { patch, .. } => {
            let declared = effective_definition(entity_type, user_id)
                .map(|e| e.definition.attributes.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            patch
                .get("attributes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(name, _)| !declared.contains(name))
                .filter_map(|(name, attr)| {
                    let t = attr
                        .get("type")
                        .and_then(Value::as_str)
                        .and_then(AttrType::parse)?;
                    let description = attr
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    Some((name.clone(), t, description))
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let (mut entities, mut seconds, mut priority) = (0_i64, 0.0_f64, None::<String>);
    for (attribute, attr_type, description) in added {
        let change = Change::AttributeAdded {
            entity_type: entity_type.to_string(),
            attribute,
            attr_type,
            description,
        };
        for e in crate::impact::estimate(&change) {
            entities += e.affected_entities;
            seconds += e.estimated_seconds;
            priority = priority.or(e.priority);
        }
    }
    let impact = json!({"entities": entities, "priority": priority, "estimated_seconds": seconds});
    (compatibility, impact)
}

/// Applies (approve, auto_approve) a pending proposal in a subtransaction and records the
/// outcome; returns the history row's id. An approval whose definition is incompatible with
/// the type's mode is refused (55000, as register_schema refuses it) unless `force`: then it
/// is applied and its audit row records that it was forced, and why it was incompatible.
pub fn review(id: i64, reviewer: &str, notes: Option<&str>, action: &str, force: bool) -> i64 {
    let p = load(id, "pending");
    let reasons = match Action::from_json(&p.action) {
        Ok(a) => compatibility(&p.entity_type, p.user_id.as_deref(), &a).1,
        Err(_) => Vec::new(),
    };
    if !reasons.is_empty() && !force {
        raise(
            SqlState::ObjectNotInPrerequisiteState,
            format!(
                "proposal {id} would make \"{}\" incompatible ({} problem{})",
                p.entity_type,
                reasons.len(),
                if reasons.len() == 1 { "" } else { "s" }
            ),
            Some(reasons.join("\n")),
            Some("Reject it, change the type's mode with evolve.set_compatibility, or approve it anyway with force => true (recorded in its audit row).".into()),
        );
    }
    let forced = (!reasons.is_empty()).then(ForcedCompatibility::begin);
    let result = in_subtransaction(AssertUnwindSafe(|| apply(&p)));
    drop(forced);
    match result {
        Ok(applied) => {
            Spi::run_with_args(
                "UPDATE evolve.schema_proposals SET status = 'implemented', reviewed_by = $2, reviewed_at = now(), \
                     review_notes = $3, updated_at = now() WHERE id = $1",
                &[id.into(), reviewer.into(), notes.into()],
            )
            .or_raise();
            let mut details = applied.details;
            if !reasons.is_empty() {
                if let Some(d) = details.as_object_mut() {
                    d.insert("forced".into(), json!(true));
                    d.insert("incompatibilities".into(), json!(reasons));
                }
            }
            history(
                id,
                action,
                Some(&applied.executed.join(";\n")),
                Some(&applied.rollback.join(";\n")),
                true,
                None,
                details,
            )
        }
        Err((state, message)) => {
            pgrx::warning!("proposal {id} could not be applied ({state}): {message}");
            history(
                id,
                action,
                None,
                None,
                false,
                Some((&state, &message)),
                json!({}),
            )
        }
    }
}

/// 0.4.0's approval (no `force`); kept so that its definition resolves against this library.
#[pg_extern(volatile, parallel_unsafe, name = "_approve_proposal")]
fn approve_proposal(id: Option<i64>, reviewer: Option<String>, notes: Option<String>) -> i64 {
    approve_proposal_forcible(id, reviewer, notes, Some(false))
}

#[pg_extern(volatile, parallel_unsafe, name = "_approve_proposal")]
fn approve_proposal_forcible(
    id: Option<i64>,
    reviewer: Option<String>,
    notes: Option<String>,
    force: Option<bool>,
) -> i64 {
    let id = crate::error::required(id, "id");
    crate::access::require_admin("approve a proposal");
    let reviewer = reviewer.unwrap_or_else(|| "unknown".into());
    review(
        id,
        &reviewer,
        notes.as_deref(),
        "approve",
        force.unwrap_or(false),
    )
}

#[pg_extern(volatile, parallel_unsafe, name = "_reject_proposal")]
fn reject_proposal(id: Option<i64>, reviewer: Option<String>, notes: Option<String>) -> i64 {
    let id = crate::error::required(id, "id");
    crate::access::require_admin("reject a proposal");
    let p = load(id, "pending");
    Spi::run_with_args(
        "UPDATE evolve.schema_proposals SET status = 'rejected', rejected_measure = measure, reviewed_by = $2, \
             reviewed_at = now(), review_notes = $3, updated_at = now() WHERE id = $1",
        &[id.into(), reviewer.as_deref().into(), notes.as_deref().into()],
    )
    .or_raise();
    history(
        id,
        "reject",
        None,
        None,
        true,
        None,
        json!({"measure": p.measure}),
    )
}

/// Undoes an implemented proposal from its approval's record.
#[pg_extern(volatile, parallel_unsafe, name = "_rollback_proposal")]
fn rollback_proposal(id: i64) -> i64 {
    crate::access::require_admin("roll back a proposal");
    let p = load(id, "implemented");
    let approval: (String, Value) = Spi::connect(|c| {
        c.select(
            "SELECT rollback_sql, details FROM evolve.schema_evolution_history \
             WHERE proposal_id = $1 AND action IN ('approve', 'auto_approve') AND success ORDER BY id DESC LIMIT 1",
            None,
            &[id.into()],
        )
        .or_raise()
        .next()
        .map(|r| {
            (
                r.value::<String>(1).unwrap_or_default(),
                r.value::<JsonB>(2).map(|j| j.0).unwrap_or_default(),
            )
        })
    })
    .unwrap_or_else(|| raise(SqlState::ObjectNotInPrerequisiteState, format!("proposal {id} has no recorded approval"), None, None));
    let result = in_subtransaction(AssertUnwindSafe(|| undo(&p, &approval.1)));
    match result {
        Ok(details) => {
            Spi::run_with_args(
                "UPDATE evolve.schema_proposals SET status = 'rolled_back', rejected_measure = measure, \
                     updated_at = now() WHERE id = $1",
                &[id.into()],
            )
            .or_raise();
            history(id, "rollback", Some(&approval.0), None, true, None, details)
        }
        Err((state, message)) => {
            pgrx::warning!("proposal {id} could not be rolled back ({state}): {message}");
            history(
                id,
                "rollback",
                Some(&approval.0),
                None,
                false,
                Some((&state, &message)),
                json!({}),
            )
        }
    }
}

fn undo(p: &Proposal, details: &Value) -> Value {
    let user = p.user_id.as_deref();
    // Created objects go first (an index depends on nothing we remove, but keep it symmetric).
    let objects: Vec<(String, String, String)> = Spi::connect_mut(|c| {
        c.update(
            "UPDATE evolve.dynamic_tables SET dropped_at = now() WHERE proposal_id = $1 AND dropped_at IS NULL \
             RETURNING kind, object_name, schema_name",
            None,
            &[p.id.into()],
        )
        .or_raise()
        .map(|r| {
            (
                r.value::<String>(1).unwrap_or_default(),
                r.value::<String>(2).unwrap_or_default(),
                r.value::<String>(3).unwrap_or_default(),
            )
        })
        .collect()
    });
    for (kind, name, schema) in &objects {
        let q = evolve_core::proposals::quote_ident;
        match kind.as_str() {
            // A projection (since 0.6.0), or an empty typed table of an earlier approval.
            "table" if schema == "evolve_data" => {
                crate::projections::drop(&p.entity_type, None);
            }
            "table" => {
                Spi::run(&format!("DROP TABLE IF EXISTS {}.{}", q("evolve"), q(name))).or_raise()
            }
            _ => Spi::run(&format!("DROP INDEX IF EXISTS {}.{}", q("evolve"), q(name))).or_raise(),
        }
    }
    let mut out = json!({"dropped": objects.iter().map(|o| o.1.clone()).collect::<Vec<_>>()});
    match Action::from_json(&p.action) {
        Ok(Action::Patch { .. } | Action::PatchAndIndex { .. } | Action::ExtractEntity { .. }) => {
            run_patch(&p.entity_type, user, &details["removal"]);
            let field = details["field"].as_str().unwrap_or(&p.name);
            let key = details["key"].as_str().unwrap_or(&p.name);
            let at = details["promoted_at"].as_str().unwrap_or("");
            // The fragments the approval promoted are active again; the observations it made of
            // them are removed and the snapshots recomputed. `user_id` NULL covers every user's
            // fragments (a global attribute promoted them all).
            let (fragments, entities) = Spi::connect_mut(|c| {
                let fragments = c
                    .update(
                        "UPDATE evolve.raw_fragments SET lifecycle_state = 'active', promoted_at = NULL, expires_at = NULL \
                         WHERE entity_type = $1 AND ($2::text IS NULL OR user_id = $2) \
                           AND (fragment_key = ANY ($3) OR starts_with(fragment_key, $5)) \
                           AND lifecycle_state = 'promoted' AND promoted_at = $4::timestamptz",
                        None,
                        &[p.entity_type.as_str().into(), user.into(), vec![key.to_string(), field.to_string()].into(), at.into(),
                          details["members_prefix"].as_str().into()],
                    )
                    .or_raise()
                    .len() as i64;
                let entities: Vec<i64> = c
                    .update(
                        "WITH gone AS (DELETE FROM evolve.observations o USING evolve.entities e \
                             WHERE o.entity_id = e.entity_id AND e.entity_type = $1 AND ($2::text IS NULL OR e.user_id = $2) \
                               AND o.attribute = $3 AND o.observed_at = $4::timestamptz RETURNING o.entity_id) \
                         SELECT DISTINCT entity_id FROM gone ORDER BY entity_id",
                        None,
                        &[p.entity_type.as_str().into(), user.into(), field.into(), at.into()],
                    )
                    .or_raise()
                    .filter_map(|r| r.value::<i64>(1))
                    .collect();
                (fragments, entities)
            });
            Spi::run_with_args(
                "SELECT evolve.refresh_snapshot(id) FROM unnest($1::bigint[]) AS id",
                &[entities.clone().into()],
            )
            .or_raise();
            out["fragments_reactivated"] = json!(fragments);
            out["snapshots_refreshed"] = json!(entities.len());
        }
        Ok(Action::Register { .. }) => {
            Spi::run_with_args(
                "SELECT evolve.deactivate_schema($1, $2)",
                &[p.entity_type.as_str().into(), user.into()],
            )
            .or_raise();
        }
        _ => {}
    }
    out
}

/// The active schema as a diagram: a Mermaid `erDiagram` of every active global type (and,
/// with `user_id`, that user's view of them and its own types).
#[pg_extern(stable, parallel_safe)]
fn schema_diagram(
    format: default!(Option<&str>, "'mermaid'"),
    user_id: default!(Option<String>, "NULL"),
) -> String {
    let format = crate::error::required(format, "format");
    crate::access::require_read(user_id.as_deref());
    if format != "mermaid" {
        raise(
            SqlState::InvalidParameterValue,
            format!("unknown diagram format \"{format}\""),
            None,
            Some("The supported format is 'mermaid'.".into()),
        );
    }
    let user = user_id.as_deref();
    check_user_id(user);
    let types = text_rows(
        "SELECT DISTINCT entity_type FROM evolve.schemas \
         WHERE status = 'active' AND current_version > 0 AND (user_id IS NULL OR user_id = $1) ORDER BY 1",
        &[user.into()],
    );
    let defs: Vec<Definition> = types
        .iter()
        .filter_map(|t| effective_definition(t, user).map(|e| e.definition))
        .collect();
    evolve_core::proposals::mermaid(&defs)
}
