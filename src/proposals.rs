//! Schema proposals in SQL: detection (`evolve.propose_schema`), review (approve, reject,
//! rollback) with its audit trail, and the Mermaid diagram. What is proposed, with which
//! priority and evidence, is decided in `evolve_core::propose`; this layer gathers the inputs
//! (aggregates, registry, catalog, inbox rejects), stores drafts by fingerprint and applies them.
//!
//! Tenants. `evolve.propose_schema` runs as the extension owner, so row-level security does not
//! filter what it reads; this layer does. The drafts of a scope are built only from what that
//! scope may see: the global rows and, for a user scope, that user's rows (entity keys for
//! relationships and co-occurrence, type names for name conflicts). A global proposal is
//! readable by every reader, so it is built from global rows only. A proposal's identity is its
//! (user_id, fingerprint): every lookup and upsert names the scope, so a run of one scope can
//! never match, return or update a row of another, whatever the fingerprints.
//! `promote_to_global` is the one kind drawn from several tenants (their own schemas): it is
//! computed only in a run by a member of evolve_admin, and the row-level security policy on
//! `evolve.schema_proposals` shows it (with its users and field names) to admins only.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;

use evolve_core::proposals::{
    index_sql, projection_table_name, projection_table_sql, should_repropose, KeyStats,
    REPROPOSE_FACTOR,
};
use evolve_core::propose::{
    self, removal_patch, Action, Column, Draft, Scope, MAX_PAYLOAD_SAMPLES,
};
use evolve_core::schema::{AttrType, Definition};
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::args::{check_entity_type, check_user_id, writable_transaction};
use crate::error::{in_subtransaction, raise, OrRaise};
use crate::gucs;
use crate::store::effective_definition;

fn text_rows(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Vec<String> {
    Spi::connect(|c| {
        c.select(sql, None, args)
            .or_raise()
            .filter_map(|r| r.get::<String>(1).or_raise())
            .collect()
    })
}

/// Key statistics of a scope's fragments, from the aggregates.
fn key_stats(entity_type: &str, user_id: Option<&str>) -> Vec<KeyStats> {
    Spi::connect(|c| {
        c.select(
            "SELECT fragment_key, sample_count, frequency_total, type_counts, unique_sources, sample_values \
             FROM evolve.raw_fragment_aggregates \
             WHERE entity_type = $1 AND user_id IS NOT DISTINCT FROM $2 AND sample_count > 0",
            None,
            &[entity_type.into(), user_id.into()],
        )
        .or_raise()
        .map(|r| KeyStats {
            key: r.get::<String>(1).or_raise().unwrap_or_default(),
            sample_count: r.get::<i64>(2).or_raise().unwrap_or(0),
            frequency_total: r.get::<i64>(3).or_raise().unwrap_or(0),
            type_counts: r
                .get::<JsonB>(4)
                .or_raise()
                .and_then(|j| serde_json::from_value(j.0).ok())
                .unwrap_or_default(),
            unique_sources: r.get::<i32>(5).or_raise().unwrap_or(0) as i64,
            sample_values: match r.get::<JsonB>(6).or_raise().map(|j| j.0) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
        })
        .collect()
    })
}

/// The entities a scope's drafts may draw on: the global ones and, for a user scope, that
/// user's (`$2` of the queries below). Appended to a `WHERE` on `evolve.entities`.
const SCOPE_ENTITIES: &str = "(user_id IS NULL OR user_id = $2::text)";

/// For every known type, those of its entity keys found among `candidates`, among the entities
/// the scope `user_id` may see.
fn known_keys(
    candidates: &BTreeSet<String>,
    user_id: Option<&str>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if candidates.is_empty() {
        return out;
    }
    Spi::connect(|c| {
        let sql = format!(
            "SELECT entity_type, entity_key FROM evolve.entities \
             WHERE entity_type = ANY (ARRAY(SELECT DISTINCT entity_type FROM evolve.entity_counts \
                                            WHERE entity_count > 0 AND {SCOPE_ENTITIES})) \
               AND entity_key = ANY ($1) AND {SCOPE_ENTITIES}"
        );
        let rows = c
            .select(
                &sql,
                None,
                &[
                    candidates.iter().cloned().collect::<Vec<_>>().into(),
                    user_id.into(),
                ],
            )
            .or_raise();
        for r in rows {
            let t = r.get::<String>(1).or_raise().unwrap_or_default();
            let k = r.get::<String>(2).or_raise().unwrap_or_default();
            out.entry(t).or_default().insert(k);
        }
    });
    out
}

/// A sample of a scope's entity keys (first by key order, through the index), and per other
/// type how many of them are also its keys (among the entities the scope may see): bounded
/// index probes, whatever the table size.
fn cooccurrence(entity_type: &str, user_id: Option<&str>) -> (usize, BTreeMap<String, usize>) {
    // `user_id IS NULL` / `= $2` (not IS NOT DISTINCT FROM) so that the scan is an ordered range
    // of the (entity_type, user_id, entity_key) index that stops at the limit.
    let sql = match user_id {
        None => {
            "SELECT entity_key FROM evolve.entities WHERE entity_type = $1 AND user_id IS NULL \
                 AND $2::text IS NULL ORDER BY entity_key LIMIT $3"
        }
        Some(_) => {
            "SELECT entity_key FROM evolve.entities WHERE entity_type = $1 AND user_id = $2 \
                    ORDER BY entity_key LIMIT $3"
        }
    };
    let keys = text_rows(
        sql,
        &[
            entity_type.into(),
            user_id.into(),
            (propose::COOCCURRENCE_SAMPLE as i64).into(),
        ],
    );
    if keys.is_empty() {
        return (0, BTreeMap::new());
    }
    let shared = Spi::connect(|c| {
        c.select(
            "SELECT entity_type, count(DISTINCT entity_key) FROM evolve.entities \
             WHERE entity_type = ANY (ARRAY(SELECT DISTINCT entity_type FROM evolve.entity_counts \
                                            WHERE entity_count > 0 AND entity_type <> $1 \
                                              AND (user_id IS NULL OR user_id = $3::text))) \
               AND entity_key = ANY ($2) AND (user_id IS NULL OR user_id = $3::text) \
             GROUP BY entity_type",
            None,
            &[entity_type.into(), keys.clone().into(), user_id.into()],
        )
        .or_raise()
        .map(|r| {
            (
                r.get::<String>(1).or_raise().unwrap_or_default(),
                r.get::<i64>(2).or_raise().unwrap_or(0) as usize,
            )
        })
        .collect()
    });
    (keys.len(), shared)
}

fn entity_count(entity_type: &str, user_id: Option<&str>) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT coalesce(sum(entity_count), 0)::bigint FROM evolve.entity_counts \
         WHERE entity_type = $1 AND user_id IS NOT DISTINCT FROM $2",
        &[entity_type.into(), user_id.into()],
    )
    .or_raise()
    .unwrap_or(0)
}

/// Drafts for one scope: its undeclared keys, missing indexes and projection table.
/// `indexes`: the names of the indexes on `evolve.entities`.
fn scope_drafts(
    entity_type: &str,
    user_id: Option<&str>,
    indexes: &BTreeSet<String>,
) -> Vec<Draft> {
    let Some(crate::store::Effective { definition, .. }) =
        effective_definition(entity_type, user_id)
    else {
        return Vec::new();
    };
    let keys = key_stats(entity_type, user_id);
    let candidates: BTreeSet<String> = keys
        .iter()
        .flat_map(|k| k.sample_values.iter())
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    let scope = Scope {
        entity_type,
        user_id,
        entity_count: entity_count(entity_type, user_id),
        definition: &definition,
        min_presence: gucs::min_attribute_presence(),
    };
    let mut drafts = propose::key_drafts(&scope, &keys, &known_keys(&candidates, user_id));
    let (sampled, shared) = cooccurrence(entity_type, user_id);
    let related = propose::cooccurrence_drafts(&scope, sampled, &shared, &drafts);
    drafts.extend(related);
    drafts.extend(propose::index_drafts(&scope, indexes));
    let table = projection_table_name(entity_type);
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT to_regclass(format('%I.%I', 'evolve', $1::text)) IS NOT NULL",
        &[table.as_str().into()],
    )
    .or_raise()
    .unwrap_or(false);
    drafts.extend(propose::table_draft(&scope, exists));
    drafts
}

/// Drafts registering types the inbox rejected for lack of a schema.
fn entity_type_drafts(entity_type: Option<&str>, user_id: Option<&str>) -> Vec<Draft> {
    let rejected: Vec<(String, i64)> = Spi::connect(|c| {
        c.select(
            "SELECT entity_type, count(*) FROM evolve.inbox_rejects \
             WHERE sqlstate = '42704' AND entity_type IS NOT NULL AND user_id IS NOT DISTINCT FROM $2 \
               AND ($1::text IS NULL OR entity_type = $1) \
             GROUP BY entity_type ORDER BY entity_type",
            None,
            &[entity_type.into(), user_id.into()],
        )
        .or_raise()
        .map(|r| {
            (
                r.get::<String>(1).or_raise().unwrap_or_default(),
                r.get::<i64>(2).or_raise().unwrap_or(0),
            )
        })
        .collect()
    });
    if rejected.is_empty() {
        return Vec::new();
    }
    // Names a new type may conflict with: those the scope sees (as the registry's own conflict
    // detection does), never another tenant's.
    let existing = text_rows(
        "SELECT DISTINCT entity_type FROM evolve.schemas WHERE current_version > 0 \
             AND (user_id IS NULL OR user_id = $1::text) \
         UNION SELECT alias FROM evolve.entity_type_aliases",
        &[user_id.into()],
    );
    let mut out = Vec::new();
    for (t, n) in rejected {
        if effective_definition(&t, user_id).is_some() {
            continue;
        }
        let payloads: Vec<Value> = Spi::connect(|c| {
            c.select(
                "SELECT payload FROM evolve.inbox_rejects \
                 WHERE sqlstate = '42704' AND entity_type = $1 AND user_id IS NOT DISTINCT FROM $2 \
                 ORDER BY inbox_id LIMIT $3",
                None,
                &[
                    t.as_str().into(),
                    user_id.into(),
                    (MAX_PAYLOAD_SAMPLES as i64).into(),
                ],
            )
            .or_raise()
            .filter_map(|r| r.get::<JsonB>(1).or_raise().map(|j| j.0))
            .collect()
        });
        out.extend(propose::entity_type_draft(
            &t,
            user_id,
            n,
            &payloads,
            &existing,
            gucs::similarity_threshold(),
        ));
    }
    out
}

/// Drafts promoting fields common to many users' schemas to the global schema. They read every
/// tenant's own schemas and name the users and fields: only an admin's run computes them, and
/// only admins can read them (the policy on `evolve.schema_proposals`).
fn promotion_drafts(entity_type: Option<&str>) -> Vec<Draft> {
    let min_users = gucs::promotion_min_users();
    let types = text_rows(
        "SELECT entity_type FROM evolve.schemas \
         WHERE user_id IS NOT NULL AND status = 'active' AND current_version > 0 \
           AND ($1::text IS NULL OR entity_type = $1) \
         GROUP BY entity_type HAVING count(*) >= $2 ORDER BY entity_type",
        &[entity_type.into(), min_users.into()],
    );
    let mut out = Vec::new();
    for t in types {
        let rows: Vec<(Option<String>, Value)> = Spi::connect(|c| {
            c.select(
                "SELECT user_id, definition FROM evolve.schemas \
                 WHERE entity_type = $1 AND status = 'active' AND current_version > 0",
                None,
                &[t.as_str().into()],
            )
            .or_raise()
            .map(|r| {
                (
                    r.get::<String>(1).or_raise(),
                    r.get::<JsonB>(2)
                        .or_raise()
                        .map(|j| j.0)
                        .unwrap_or_default(),
                )
            })
            .collect()
        });
        let mut global = None;
        let mut users = Vec::new();
        for (u, doc) in rows {
            let Ok(def) = Definition::parse(&doc) else {
                continue;
            };
            match u {
                None => global = Some(def),
                Some(u) => users.push((u, def)),
            }
        }
        out.extend(propose::promote_drafts(
            &t,
            global.as_ref(),
            &users,
            min_users,
        ));
    }
    out
}

/// The rationale of `evolve.rationale_function`, when set and when it works; else the built-in.
fn rationale(draft: &Draft) -> String {
    let Some(f) = gucs::rationale_function() else {
        return draft.rationale.clone();
    };
    let input = format!("{}\n{}", draft.rationale, draft.evidence);
    match in_subtransaction(AssertUnwindSafe(|| {
        crate::userfn::call_setting_with_text("evolve.rationale_function", &f, &["text"], &input)
            // SAFETY: the function returns text (checked by the call).
            .map(|(d, _)| unsafe { String::from_datum(d, false) }.unwrap_or_default())
    })) {
        Ok(Ok(text)) if !text.trim().is_empty() => text,
        Ok(Err(e)) | Err((_, e)) => {
            pgrx::warning!("evolve.rationale_function {f} failed, built-in rationale kept: {e}");
            draft.rationale.clone()
        }
        Ok(Ok(_)) => draft.rationale.clone(),
    }
}

/// Stores a draft by fingerprint: a pending proposal gets the new evidence; a rejected or
/// rolled-back one comes back only when its measure grew by the re-proposal factor; an
/// implemented one is left alone. Returns the id when the proposal is pending afterwards.
///
/// The identity is (user_id, fingerprint), unique with NULLS NOT DISTINCT: the lookup and the
/// update name the draft's scope, so equal fingerprints of two scopes are two proposals. The
/// insert names no conflict target, so a database whose update to 0.3.0 is still to come (its
/// fingerprints unique alone) refuses a colliding draft instead of taking another scope's row.
fn store(draft: &Draft) -> Option<i64> {
    let fingerprint = draft.fingerprint();
    let user_id = draft.user_id.as_deref();
    let lookup = || -> Option<(i64, String, Option<f64>)> {
        Spi::connect(|c| {
            c.select(
                "SELECT id, status, rejected_measure FROM evolve.schema_proposals \
                 WHERE fingerprint = $1 AND user_id IS NOT DISTINCT FROM $2",
                None,
                &[fingerprint.as_str().into(), user_id.into()],
            )
            .or_raise()
            .next()
            .map(|r| {
                (
                    r.get::<i64>(1).or_raise().unwrap_or(0),
                    r.get::<String>(2).or_raise().unwrap_or_default(),
                    r.get::<f64>(3).or_raise(),
                )
            })
        })
    };
    let existing = lookup();
    if let Some((_, status, rejected)) = &existing {
        let comes_back = matches!(status.as_str(), "rejected" | "rolled_back")
            && should_repropose(rejected.unwrap_or(0.0), draft.measure, REPROPOSE_FACTOR);
        if status != "pending" && !comes_back {
            return None;
        }
    }
    let text = rationale(draft);
    let update = |id: i64| -> Option<i64> {
        Spi::connect_mut(|c| {
            c.update(
                "UPDATE evolve.schema_proposals SET priority = $3, title = $4, rationale = $5, impact = $6, \
                     sql_preview = $7, action = $8, evidence = $9, measure = $10, safe_name = $11, \
                     status = 'pending', updated_at = now() \
                 WHERE id = $1 AND user_id IS NOT DISTINCT FROM $2 \
                 RETURNING id",
                None,
                &[
                    id.into(),
                    user_id.into(),
                    draft.priority.as_str().into(),
                    draft.title.as_str().into(),
                    text.as_str().into(),
                    draft.impact.into(),
                    draft.sql_preview.as_str().into(),
                    JsonB(draft.action.to_json()).into(),
                    JsonB(draft.evidence.clone()).into(),
                    draft.measure.into(),
                    draft.safe_name.as_str().into(),
                ],
            )
            .or_raise()
            .next()
            .and_then(|r| r.get::<i64>(1).or_raise())
        })
    };
    if let Some((id, _, _)) = existing {
        return update(id);
    }
    let inserted = Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO evolve.schema_proposals (kind, entity_type, user_id, name, safe_name, priority, \
                 title, rationale, impact, sql_preview, action, fingerprint, evidence, measure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT DO NOTHING \
             RETURNING id",
            None,
            &[
                draft.kind.into(),
                draft.entity_type.as_str().into(),
                user_id.into(),
                draft.name.as_str().into(),
                draft.safe_name.as_str().into(),
                draft.priority.as_str().into(),
                draft.title.as_str().into(),
                text.as_str().into(),
                draft.impact.into(),
                draft.sql_preview.as_str().into(),
                JsonB(draft.action.to_json()).into(),
                fingerprint.as_str().into(),
                JsonB(draft.evidence.clone()).into(),
                draft.measure.into(),
            ],
        )
        .or_raise()
        .next()
        .and_then(|r| r.get::<i64>(1).or_raise())
    });
    // Nothing inserted: a concurrent run of the same scope inserted it first (its row is
    // updated), or, before the update to 0.3.0, another scope holds the fingerprint (left
    // alone: not stored).
    inserted.or_else(|| lookup().and_then(|(id, _, _)| update(id)))
}

/// Detects proposals in scope, stores them and returns the ids of those pending (or just
/// auto-approved). Entity types without a conflict are approved at once.
#[pg_extern(volatile, parallel_unsafe, name = "_propose_schema")]
fn propose_schema(entity_type: Option<String>, user_id: Option<String>) -> Vec<i64> {
    let (entity_type, user_id) = (entity_type.as_deref(), user_id.as_deref());
    check_user_id(user_id);
    crate::access::require_write(user_id, "propose schema changes");
    if let Some(t) = entity_type {
        check_entity_type(t);
    }
    writable_transaction();
    let scopes = text_rows(
        "SELECT entity_type FROM ( \
             SELECT DISTINCT entity_type, user_id FROM evolve.raw_fragment_aggregates WHERE sample_count > 0 \
             UNION SELECT entity_type, user_id FROM evolve.schemas WHERE status = 'active' AND current_version > 0) s \
         WHERE ($1::text IS NULL OR entity_type = $1) AND user_id IS NOT DISTINCT FROM $2 \
         ORDER BY entity_type",
        &[entity_type.into(), user_id.into()],
    );
    let indexes: BTreeSet<String> = text_rows(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'evolve' AND tablename = 'entities'",
        &[],
    )
    .into_iter()
    .collect();
    let mut drafts: Vec<Draft> = Vec::new();
    for t in &scopes {
        drafts.extend(scope_drafts(t, user_id, &indexes));
    }
    drafts.extend(entity_type_drafts(entity_type, user_id));
    if user_id.is_none() && crate::access::is_admin() {
        drafts.extend(promotion_drafts(entity_type));
    }
    let mut ids = Vec::new();
    for d in &drafts {
        let Some(id) = store(d) else { continue };
        ids.push(id);
        if d.kind == "entity_type" && matches!(d.action, Action::Register { auto: true, .. }) {
            review(
                id,
                "pg_evolve",
                Some("no name conflict: approved automatically"),
                "auto_approve",
            );
        }
    }
    // Pending proposals of these scopes the evidence no longer supports (their key was
    // declared another way, their index created…) are closed.
    // One statement closes them and writes their history rows.
    Spi::run_with_args(
        "WITH closed AS ( \
             UPDATE evolve.schema_proposals SET status = 'rejected', rejected_measure = measure, \
                 review_notes = 'superseded: no longer supported by the evidence', reviewed_by = 'pg_evolve', \
                 reviewed_at = now(), updated_at = now() \
             WHERE status = 'pending' AND user_id IS NOT DISTINCT FROM $2 AND entity_type = ANY ($1) \
               AND kind IN ('attribute', 'temporal', 'relationship', 'index', 'table') AND NOT id = ANY ($3) \
             RETURNING id) \
         INSERT INTO evolve.schema_evolution_history (proposal_id, action, success) \
         SELECT id, 'supersede', true FROM closed ORDER BY id",
        &[scopes.clone().into(), user_id.into(), ids.clone().into()],
    )
    .or_raise();
    ids
}

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
                entity_type: r.get::<String>(1).or_raise().unwrap_or_default(),
                user_id: r.get::<String>(2).or_raise(),
                name: r.get::<String>(3).or_raise().unwrap_or_default(),
                action: r
                    .get::<JsonB>(5)
                    .or_raise()
                    .map(|j| j.0)
                    .unwrap_or_default(),
                measure: r.get::<f64>(6).or_raise().unwrap_or(0.0),
            };
            (p, r.get::<String>(4).or_raise().unwrap_or_default())
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
        c.update(
            "INSERT INTO evolve.schema_evolution_history \
                 (proposal_id, action, executed_sql, rollback_sql, success, sqlstate, error, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
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
        .and_then(|r| r.get::<i64>(1).or_raise())
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
    Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO evolve.dynamic_tables (proposal_id, kind, schema_name, object_name, entity_type, columns, created_sql) \
             VALUES ($1, $2, 'evolve', $3, $4, $5, $6)",
            None,
            &[p.id.into(), kind.into(), name.into(), p.entity_type.as_str().into(), JsonB(columns).into(), sql.into()],
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
            let version = run_patch(&p.entity_type, user, &patch);
            let removal = removal_patch(&patch);
            out.executed
                .push(propose::patch_sql(&p.entity_type, user, &patch));
            out.rollback
                .push(propose::patch_sql(&p.entity_type, user, &removal));
            let at = Spi::get_one::<String>("SELECT now()::text")
                .or_raise()
                .unwrap_or_default();
            out.details = json!({"version": version, "field": field, "key": key, "promoted_at": at,
                                 "removal": removal});
            if let Some(attr_type) = then_index {
                create_index(p, &field, attr_type, &mut out);
            }
        }
        Ok(Action::Index { field, attr_type }) => {
            let field = field.unwrap_or_else(|| p.name.clone());
            create_index(p, &field, attr_type, &mut out);
        }
        Ok(Action::Table { columns }) => {
            let columns: Vec<(String, AttrType)> =
                columns.into_iter().map(|Column(n, t)| (n, t)).collect();
            let (create, drop) = projection_table_sql("evolve", &p.entity_type, &columns);
            Spi::run(&create).or_raise();
            let names = evolve_core::proposals::projection_column_names(
                columns.iter().map(|c| c.0.as_str()),
            );
            let mapping: Vec<Value> = columns
                .iter()
                .zip(&names)
                .map(|((k, t), c)| json!({"attribute": k, "column": c, "type": t.as_str()}))
                .collect();
            record_object(
                p,
                "table",
                &projection_table_name(&p.entity_type),
                Value::from(mapping),
                &create,
            );
            out.executed.push(create);
            out.rollback.push(drop);
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
        Err(other) => raise(
            SqlState::InvalidParameterValue,
            format!("proposal {} has an unknown action \"{other}\"", p.id),
            None,
            None,
        ),
    }
    out
}

/// Applies (approve, auto_approve) a pending proposal in a subtransaction and records the
/// outcome; returns the history row's id.
fn review(id: i64, reviewer: &str, notes: Option<&str>, action: &str) -> i64 {
    let p = load(id, "pending");
    match in_subtransaction(AssertUnwindSafe(|| apply(&p))) {
        Ok(applied) => {
            Spi::run_with_args(
                "UPDATE evolve.schema_proposals SET status = 'implemented', reviewed_by = $2, reviewed_at = now(), \
                     review_notes = $3, updated_at = now() WHERE id = $1",
                &[id.into(), reviewer.into(), notes.into()],
            )
            .or_raise();
            history(
                id,
                action,
                Some(&applied.executed.join(";\n")),
                Some(&applied.rollback.join(";\n")),
                true,
                None,
                applied.details,
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

#[pg_extern(volatile, parallel_unsafe, name = "_approve_proposal")]
fn approve_proposal(id: Option<i64>, reviewer: Option<String>, notes: Option<String>) -> i64 {
    let id = crate::error::required(id, "id");
    crate::access::require_admin("approve a proposal");
    let reviewer = reviewer.unwrap_or_else(|| "unknown".into());
    review(id, &reviewer, notes.as_deref(), "approve")
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
                r.get::<String>(1).or_raise().unwrap_or_default(),
                r.get::<JsonB>(2).or_raise().map(|j| j.0).unwrap_or_default(),
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
    let objects: Vec<(String, String)> = Spi::connect_mut(|c| {
        c.update(
            "UPDATE evolve.dynamic_tables SET dropped_at = now() WHERE proposal_id = $1 AND dropped_at IS NULL \
             RETURNING kind, object_name",
            None,
            &[p.id.into()],
        )
        .or_raise()
        .map(|r| {
            (
                r.get::<String>(1).or_raise().unwrap_or_default(),
                r.get::<String>(2).or_raise().unwrap_or_default(),
            )
        })
        .collect()
    });
    for (kind, name) in &objects {
        let q = evolve_core::proposals::quote_ident;
        let sql = match kind.as_str() {
            "table" => format!("DROP TABLE IF EXISTS {}.{}", q("evolve"), q(name)),
            _ => format!("DROP INDEX IF EXISTS {}.{}", q("evolve"), q(name)),
        };
        Spi::run(&sql).or_raise();
    }
    let mut out = json!({"dropped": objects.iter().map(|o| o.1.clone()).collect::<Vec<_>>()});
    match Action::from_json(&p.action) {
        Ok(Action::Patch { .. } | Action::PatchAndIndex { .. }) => {
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
                         WHERE entity_type = $1 AND ($2::text IS NULL OR user_id = $2) AND fragment_key = ANY ($3) \
                           AND lifecycle_state = 'promoted' AND promoted_at = $4::timestamptz",
                        None,
                        &[p.entity_type.as_str().into(), user.into(), vec![key.to_string(), field.to_string()].into(), at.into()],
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
                    .filter_map(|r| r.get::<i64>(1).or_raise())
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
