//! Conflict-driven migration of incoming payloads across schema versions.
//!
//! A payload ingested with a `schema_version` older than the entity type's current global
//! version is a schema conflict: the shortest path of registered steps through the version
//! graph (`evolve.migrations`) is applied to it before it is split. User functions named by
//! steps run inside a subtransaction. When migration fails, the failure is recorded in
//! `evolve.migration_failures` and `evolve.migration_strategy` decides: reject, fragment
//! (ingest the payload as it is: what fits becomes observations, the rest raw fragments) or
//! auto (built-in coercions, then retry, up to `evolve.max_migration_attempts`, then fragment).

use std::collections::HashMap;

use crate::jsonb::Json;
use crate::plans::Row;
use evolve_core::migrate::{self, Step, StepError};
use evolve_core::schema::Definition;
use evolve_core::SqlState;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::args::check_entity_type;
use crate::error::{in_subtransaction, raise, OrRaise};
use crate::userfn::UserFn;

/// Why a payload could not be migrated. (Built only on the failure path, so its size is moot.)
pub struct Failure {
    pub from_version: i32,
    pub to_version: i32,
    pub failing_step: Option<i32>,
    pub step: Option<Value>,
    pub message: String,
    pub sqlstate: String,
}

impl Failure {
    /// The message a rejection (or a dry run) reports.
    pub fn describe(&self, entity_type: &str) -> String {
        match self.failing_step {
            Some(i) => format!(
                "migration of \"{entity_type}\" payload from version {} to {} failed at step {i}: {}",
                self.from_version, self.to_version, self.message
            ),
            None => format!(
                "migration of \"{entity_type}\" payload from version {} to {} failed: {}",
                self.from_version, self.to_version, self.message
            ),
        }
    }
}

/// One step of a migration path, with the function a `function` step calls: resolved when the
/// migration was registered (`Err` when that resolution is missing, for migrations registered
/// before 0.3.0).
pub struct PathStep {
    step: Step,
    function: Option<Result<UserFn, String>>,
}

/// The steps of the shortest path between two versions, edge by edge. Cached per batch by the
/// caller (all payloads of one version share it).
pub fn path_steps(entity_type: &str, from: i32, to: i32) -> Result<Vec<PathStep>, String> {
    type Edge = (
        i32,
        i32,
        Value,
        Option<pg_sys::Oid>,
        Vec<Option<pg_sys::Oid>>,
    );
    let edges: Vec<Edge> = Spi::connect(|c| {
        c.select(
            "SELECT from_version, to_version, steps, run_as::pg_catalog.oid, \
                    function_oids::pg_catalog.int8[] \
             FROM evolve.migrations WHERE entity_type = $1",
            None,
            &[entity_type.into()],
        )
        .or_raise()
        .map(|r| {
            let oids = r
                .value::<Vec<Option<i64>>>(5)
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.map(|o| pg_sys::Oid::from(o as u32)))
                .collect();
            (
                r.value::<i32>(1).unwrap_or(0),
                r.value::<i32>(2).unwrap_or(0),
                r.value::<JsonB>(3).map(|j| j.0).unwrap_or(Value::Null),
                r.value::<pg_sys::Oid>(4),
                oids,
            )
        })
        .collect()
    });
    let pairs: Vec<(i32, i32)> = edges.iter().map(|e| (e.0, e.1)).collect();
    let Some(path) = migrate::shortest_path(&pairs, from, to) else {
        return Err(format!("no migration path from version {from} to {to}"));
    };
    let mut steps = Vec::new();
    for (a, b) in path {
        let (_, _, doc, run_as, oids) = edges
            .iter()
            .find(|e| e.0 == a && e.1 == b)
            .expect("edge on the path");
        if doc.as_array().is_some_and(|s| s.is_empty()) {
            continue;
        }
        let mut functions = oids.iter();
        for step in migrate::parse_steps(doc).map_err(|e| e.to_string())? {
            let function = matches!(step, Step::Function { .. }).then(|| {
                match (functions.next().copied().flatten(), run_as) {
                    (Some(oid), Some(run_as)) => Ok(UserFn { oid, run_as: *run_as }),
                    _ => Err(format!(
                        "the function steps of the migration from version {a} to {b} were registered before 0.3.0 and are not resolved; register the migration again"
                    )),
                }
            });
            steps.push(PathStep { step, function });
        }
    }
    Ok(steps)
}

/// Calls a migration function jsonb → jsonb as the role that registered it (inside the
/// caller's subtransaction).
fn call_function(f: &Result<UserFn, String>, payload: Value) -> Result<Value, String> {
    let f = f.as_ref().map_err(Clone::clone)?;
    let arg = JsonB(payload).into_datum().expect("jsonb is never NULL");
    match crate::userfn::call(*f, arg, &[pg_sys::JSONBOID], "migration function")? {
        None => Err("the function returned NULL".into()),
        // SAFETY: the function returns jsonb (checked when it was registered).
        Some(d) => unsafe { crate::jsonb::Json::from_result_datum(d) }.map(|j| j.0),
    }
}

#[allow(clippy::result_large_err)]
/// Applies migration steps to a payload. Function steps run in one subtransaction, so a
/// failing function leaves nothing behind.
pub fn apply(
    steps: &[PathStep],
    payload: &Map<String, Value>,
    from: i32,
    to: i32,
) -> Result<Map<String, Value>, Failure> {
    let has_function = steps.iter().any(|s| s.function.is_some());
    let run = |p: Map<String, Value>| -> Result<Map<String, Value>, StepError> {
        let mut p = p;
        for (index, s) in steps.iter().enumerate() {
            let mut call = |_: &str, v: Value| match &s.function {
                Some(f) => call_function(f, v),
                None => Err("not a function step".into()),
            };
            migrate::apply_steps(&mut p, std::slice::from_ref(&s.step), &mut call)
                .map_err(|e| StepError { index, ..e })?;
        }
        Ok(p)
    };
    let to_failure = |e: StepError| Failure {
        from_version: from,
        to_version: to,
        failing_step: Some(e.index as i32 + 1),
        step: serde_json::from_str(&e.step).ok(),
        message: e.message,
        sqlstate: "22000".into(),
    };
    if !has_function {
        return run(payload.clone()).map_err(to_failure);
    }
    let input = payload.clone();
    match in_subtransaction(move || run(input)) {
        Ok(result) => result.map_err(to_failure),
        Err((sqlstate, message)) => Err(Failure {
            from_version: from,
            to_version: to,
            failing_step: None,
            step: None,
            message,
            sqlstate,
        }),
    }
}

/// Records a failed migration.
pub fn record_failure(
    entity_type: &str,
    user_id: Option<&str>,
    entity_key: Option<&str>,
    payload: &Value,
    failure: &Failure,
    strategy: &str,
) {
    Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO evolve.migration_failures \
                 (entity_type, user_id, entity_key, payload, from_version, to_version, failing_step, step, error, sqlstate, strategy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            None,
            &[
                entity_type.into(),
                user_id.into(),
                entity_key.into(),
                JsonB(payload.clone()).into(),
                failure.from_version.into(),
                failure.to_version.into(),
                failure.failing_step.into(),
                failure.step.clone().map(JsonB).into(),
                failure.message.as_str().into(),
                failure.sqlstate.as_str().into(),
                strategy.into(),
            ],
        )
        .or_raise();
    });
}

/// Per-batch cache of migration paths, keyed by (entity_type, from, to).
#[derive(Default)]
pub struct Paths(HashMap<(String, i32, i32), Result<Vec<PathStep>, String>>);

impl Paths {
    pub fn get(&mut self, entity_type: &str, from: i32, to: i32) -> &Result<Vec<PathStep>, String> {
        self.0
            .entry((entity_type.to_string(), from, to))
            .or_insert_with(|| path_steps(entity_type, from, to))
    }
}

/// Records the derived edge from a new global version's predecessor (renames via aliases,
/// widened types, defaults); a registered migration for the same edge is kept.
pub fn record_derived_edge(entity_type: &str, old: &Definition, new: &Definition, from: i32) {
    let steps = migrate::derive_steps(old, new);
    Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO evolve.migrations (entity_type, from_version, to_version, steps, derived) \
             VALUES ($1, $2, $3, $4, true) ON CONFLICT DO NOTHING",
            None,
            &[
                entity_type.into(),
                from.into(),
                (from + 1).into(),
                JsonB(migrate::steps_to_json(&steps)).into(),
            ],
        )
        .or_raise();
    });
}

fn global_version_exists(entity_type: &str, version: i32) -> bool {
    crate::plans::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM evolve.schema_history WHERE entity_type = $1 AND user_id IS NULL AND version = $2)",
        &[entity_type.into(), version.into()],
    )
    .unwrap_or(false)
}

fn current_global_version(entity_type: &str) -> Option<i32> {
    crate::plans::one::<i32>(
        "SELECT current_version FROM evolve.schemas WHERE entity_type = $1 AND user_id IS NULL AND current_version > 0",
        &[entity_type.into()],
    )
}

/// Registers (or replaces) the steps migrating payloads of `from_version` to `to_version`.
/// Steps: rename, add, drop, cast, nest, unnest, function (a jsonb → jsonb SQL function the
/// caller may execute). Returns the number of steps.
#[pg_extern(volatile, parallel_unsafe)]
fn register_migration(entity_type: &str, from_version: i32, to_version: i32, steps: Json) -> i32 {
    crate::access::require_admin("register a migration");
    check_entity_type(entity_type);
    for v in [from_version, to_version] {
        if !global_version_exists(entity_type, v) {
            raise(
                SqlState::UndefinedObject,
                format!("version {v} of \"{entity_type}\" does not exist"),
                None,
                Some(
                    "Migrations connect versions of the global schema; see evolve.schema_versions."
                        .into(),
                ),
            );
        }
    }
    if from_version == to_version {
        raise(
            SqlState::InvalidParameterValue,
            "from_version and to_version must differ",
            None,
            None,
        );
    }
    let parsed = match migrate::parse_steps(&steps.0) {
        Ok(p) => p,
        Err(evolve_core::CoreError::InvalidDefinition { path, message }) => raise(
            SqlState::InvalidParameterValue,
            format!("invalid migration steps at {path}: {message}"),
            None,
            Some("Steps are a JSON array of {\"rename\"|\"add\"|\"drop\"|\"cast\"|\"nest\"|\"unnest\": {...}} or {\"function\": \"schema.fn\"}; see docs/reference.md.".into()),
        ),
        Err(e) => crate::error::raise_core(e),
    };
    // Each function is resolved now, once, and runs as the registering role from then on.
    let run_as = crate::access::caller();
    let oids: Vec<pg_sys::Oid> = parsed
        .iter()
        .filter_map(|step| match step {
            Step::Function { name } => Some(
                crate::userfn::resolve(
                    name,
                    "jsonb",
                    &[pg_sys::JSONBOID],
                    run_as,
                    "migration function",
                )
                .oid,
            ),
            _ => None,
        })
        .collect();
    Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO evolve.migrations \
                 (entity_type, from_version, to_version, steps, derived, run_as, function_oids) \
             VALUES ($1, $2, $3, $4, false, $5::pg_catalog.oid::pg_catalog.regrole, \
                     $6::pg_catalog.oid[]::pg_catalog.regprocedure[]) \
             ON CONFLICT (entity_type, from_version, to_version) DO UPDATE \
             SET steps = EXCLUDED.steps, derived = false, created_at = EXCLUDED.created_at, \
                 created_by = EXCLUDED.created_by, run_as = EXCLUDED.run_as, \
                 function_oids = EXCLUDED.function_oids",
            None,
            &[
                entity_type.into(),
                from_version.into(),
                to_version.into(),
                JsonB(migrate::steps_to_json(&parsed)).into(),
                run_as.into(),
                oids.into(),
            ],
        )
        .or_raise();
    });
    parsed.len() as i32
}

/// Dry run: the payload migrated from `from_version` to `to_version` (default: the current
/// version), without ingesting or recording anything. Raises SQLSTATE 22000 when a step fails.
#[pg_extern(volatile, parallel_unsafe)]
fn migrate_payload(
    entity_type: Option<&str>,
    payload: Json,
    from_version: Option<i32>,
    to_version: default!(Option<i32>, "NULL"),
) -> JsonB {
    let entity_type = crate::error::required(entity_type, "entity_type");
    let from_version = crate::error::required(from_version, "from_version");
    check_entity_type(entity_type);
    let Some(current) = current_global_version(entity_type) else {
        raise(
            SqlState::UndefinedObject,
            format!("entity type \"{entity_type}\" has no global schema"),
            None,
            None,
        );
    };
    let to = to_version.unwrap_or(current);
    let Some(obj) = payload.0.as_object() else {
        raise(
            SqlState::InvalidParameterValue,
            "a payload must be a JSON object",
            None,
            None,
        );
    };
    let steps = match path_steps(entity_type, from_version, to) {
        Ok(s) => s,
        Err(e) => raise(
            SqlState::UndefinedObject,
            e,
            None,
            Some("Register the missing step with evolve.register_migration.".into()),
        ),
    };
    match apply(&steps, obj, from_version, to) {
        Ok(p) => JsonB(Value::Object(p)),
        Err(f) => raise(
            SqlState::DataException,
            f.describe(entity_type),
            f.step.map(|s| format!("failing step: {s}")),
            None,
        ),
    }
}
