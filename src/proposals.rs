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

use evolve_core::proposals::{projection_table_name, should_repropose, KeyStats, REPROPOSE_FACTOR};
use evolve_core::propose::{self, Action, Draft, Scope, MAX_PAYLOAD_SAMPLES};
use evolve_core::schema::Definition;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::args::{check_entity_type, check_user_id, writable_transaction};
use crate::error::{in_subtransaction, OrRaise};
use crate::gucs;
use crate::plans::text_rows;
use crate::plans::Row;
use crate::review::review;
use crate::store::effective_definition;

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
            key: r.value::<String>(1).unwrap_or_default(),
            sample_count: r.value::<i64>(2).unwrap_or(0),
            frequency_total: r.value::<i64>(3).unwrap_or(0),
            type_counts: r
                .value::<JsonB>(4)
                .and_then(|j| serde_json::from_value(j.0).ok())
                .unwrap_or_default(),
            unique_sources: r.value::<i32>(5).unwrap_or(0) as i64,
            sample_values: match r.value::<JsonB>(6).map(|j| j.0) {
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
            let t = r.value::<String>(1).unwrap_or_default();
            let k = r.value::<String>(2).unwrap_or_default();
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
                r.value::<String>(1).unwrap_or_default(),
                r.value::<i64>(2).unwrap_or(0) as usize,
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
        array_sample: gucs::array_sample(),
    };
    let mut drafts = propose::key_drafts(&scope, &keys, &known_keys(&candidates, user_id));
    // Nested objects with an identity of their own.
    let found: Vec<_> = propose::extract_candidates(&scope, &keys)
        .into_iter()
        .map(|c| {
            let identity = crate::extraction::identity(entity_type, user_id, &c);
            (c, identity)
        })
        .collect();
    drafts.extend(propose::extract_drafts(&scope, &found));
    let (sampled, shared) = cooccurrence(entity_type, user_id);
    let related = propose::cooccurrence_drafts(&scope, sampled, &shared, &drafts);
    drafts.extend(related);
    drafts.extend(propose::index_drafts(&scope, indexes));
    let table = projection_table_name(entity_type);
    // A projection (or the empty table an approval made before projections existed).
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT to_regclass(format('%I.%I', 'evolve', $1::text)) IS NOT NULL \
             OR to_regclass(format('%I.%I', 'evolve_data', $2::text)) IS NOT NULL",
        &[table.as_str().into(), entity_type.into()],
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
                r.value::<String>(1).unwrap_or_default(),
                r.value::<i64>(2).unwrap_or(0),
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
            .filter_map(|r| r.value::<JsonB>(1).map(|j| j.0))
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
                    r.value::<String>(1),
                    r.value::<JsonB>(2).map(|j| j.0).unwrap_or_default(),
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
        crate::userfn::call_setting_with_text(
            "evolve.rationale_function",
            &f,
            &[pg_sys::TEXTOID],
            &input,
        )
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
/// Whether `evolve.schema_proposals` has the `path` column (0.6.0 on): a database not yet
/// updated keeps working against this library.
fn proposals_have_path() -> bool {
    crate::plans::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute \
          WHERE attrelid = 'evolve.schema_proposals'::regclass AND attname = 'path' AND NOT attisdropped)",
        &[],
    )
    .unwrap_or(false)
}

fn store(draft: &Draft, with_path: bool) -> Option<i64> {
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
                    r.value::<i64>(1).unwrap_or(0),
                    r.value::<String>(2).unwrap_or_default(),
                    r.value::<f64>(3),
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
        let set_path = if with_path { ", path = $12" } else { "" };
        Spi::connect_mut(|c| {
            c.update(
                &format!(
                    "UPDATE evolve.schema_proposals SET priority = $3, title = $4, rationale = $5, impact = $6, \
                         sql_preview = $7, action = $8, evidence = $9, measure = $10, safe_name = $11{set_path}, \
                         status = 'pending', updated_at = now() \
                     WHERE id = $1 AND user_id IS NOT DISTINCT FROM $2 \
                     RETURNING id"
                ),
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
                    draft.path().into(),
                ],
            )
            .or_raise()
            .next()
            .and_then(|r| r.value::<i64>(1))
        })
    };
    if let Some((id, _, _)) = existing {
        return update(id);
    }
    let (path_column, path_value) = if with_path {
        (", path", ", $15")
    } else {
        ("", "")
    };
    let inserted = Spi::connect_mut(|c| {
        c.update(
            &format!(
                "INSERT INTO evolve.schema_proposals (kind, entity_type, user_id, name, safe_name, priority, \
                     title, rationale, impact, sql_preview, action, fingerprint, evidence, measure{path_column}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14{path_value}) \
                 ON CONFLICT DO NOTHING \
                 RETURNING id"
            ),
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
                draft.path().into(),
            ],
        )
        .or_raise()
        .next()
        .and_then(|r| r.value::<i64>(1))
    });
    if inserted.is_some() {
        crate::metrics::add_at_commit(crate::metrics::Counter::ProposalsCreated, 1);
    }
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
    let with_path = proposals_have_path();
    let mut ids = Vec::new();
    for d in &mut drafts {
        // What approving it would do, recomputed on every run: the reviewer sees it before.
        let (compatibility, impact) =
            crate::review::verdict(&d.entity_type, d.user_id.as_deref(), &d.action);
        if let Some(e) = d.evidence.as_object_mut() {
            e.insert("compatibility".into(), compatibility);
            e.insert("impact".into(), impact);
        }
        let Some(id) = store(d, with_path) else {
            continue;
        };
        ids.push(id);
        if d.kind == "entity_type" && matches!(d.action, Action::Register { auto: true, .. }) {
            review(
                id,
                "pg_evolve",
                Some("no name conflict: approved automatically"),
                "auto_approve",
                false,
            );
        }
    }
    // Pending proposals of these scopes the evidence no longer supports (their key was
    // declared another way, their index created…) are closed.
    // One statement closes them and writes their history rows.
    // (History rows carry their proposal's scope since 0.10.0.)
    let history = if crate::plans::rows_carry_scope() {
        "INSERT INTO evolve.schema_evolution_history (proposal_id, action, success, user_id, proposal_kind) \
         SELECT id, 'supersede', true, user_id, kind FROM closed ORDER BY id"
    } else {
        "INSERT INTO evolve.schema_evolution_history (proposal_id, action, success) \
         SELECT id, 'supersede', true FROM closed ORDER BY id"
    };
    Spi::run_with_args(
        &format!(
            "WITH closed AS ( \
                 UPDATE evolve.schema_proposals SET status = 'rejected', rejected_measure = measure, \
                     review_notes = 'superseded: no longer supported by the evidence', reviewed_by = 'pg_evolve', \
                     reviewed_at = now(), updated_at = now() \
                 WHERE status = 'pending' AND user_id IS NOT DISTINCT FROM $2 AND entity_type = ANY ($1) \
                   AND kind IN ('attribute', 'temporal', 'relationship', 'index', 'table') AND NOT id = ANY ($3) \
                 RETURNING id, user_id, kind) \
             {history}"
        ),
        &[scopes.clone().into(), user_id.into(), ids.clone().into()],
    )
    .or_raise();
    ids
}
