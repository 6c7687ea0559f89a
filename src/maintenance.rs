//! pg_cron jobs for fragment cleanup and archival, and re-embedding without the worker.

use evolve_core::SqlState;
use pgrx::prelude::*;

use crate::error::{raise, OrRaise};
use crate::plans::Row;

fn literal(s: &str) -> String {
    evolve_core::proposals::quote_literal(s)
}

/// A job's name when pg_cron's database schedules it for database `db`, as a literal.
fn job_for(name: &str, db: &str) -> String {
    literal(&format!("{name}:{db}"))
}

/// pg_cron lives in one database (cron.database_name) and can only be called there. Elsewhere
/// this raises 55000 with the statement to run in that database instead (`statement` gets this
/// database's name), which pg_cron runs here with cron.schedule_in_database.
fn require_cron(what: &str, statement: impl FnOnce(&str) -> String) {
    let (has_cron, db, cron_db) = crate::plans::one::<pgrx::JsonB>(
        "SELECT pg_catalog.jsonb_build_array( \
             EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'), \
             pg_catalog.current_database(), \
             CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_cron') \
                  THEN pg_catalog.current_setting('cron.database_name', true) END)",
        &[],
    )
    .map(|j| {
        (
            j.0[0].as_bool().unwrap_or(false),
            j.0[1].as_str().unwrap_or_default().to_string(),
            j.0[2].as_str().map(str::to_string),
        )
    })
    .unwrap_or_default();
    if has_cron {
        return;
    }
    let hint = match cron_db {
        Some(cron_db) if !cron_db.is_empty() => format!(
            "pg_cron runs in database \"{cron_db}\": {what} this database's jobs from there, as a superuser or this database's owner: {}",
            statement(&db)
        ),
        _ => "Add pg_cron to shared_preload_libraries, set cron.database_name, restart, and CREATE EXTENSION pg_cron in that database.".into(),
    };
    raise(
        SqlState::ObjectNotInPrerequisiteState,
        "pg_cron is not installed in this database",
        None,
        Some(hint),
    );
}

/// Removes the jobs schedule_maintenance created for this database (by their names: those it
/// schedules here, and the `<job>:<database>` ones its hint schedules from pg_cron's database).
/// Returns what it removed. Elsewhere than pg_cron's database: 55000 with the statement to run
/// there.
#[pg_extern(volatile, parallel_unsafe)]
fn unschedule_maintenance() -> TableIterator<'static, (name!(jobname, String), name!(jobid, i64))> {
    crate::access::require_admin("unschedule maintenance");
    let names: Vec<String> = JOBS.iter().map(|j| j.0.to_string()).collect();
    require_cron("unschedule", |db| {
        let names = names
            .iter()
            .map(|n| job_for(n, db))
            .collect::<Vec<_>>()
            .join(", ");
        format!("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname IN ({names});")
    });
    // One statement finds and unschedules them.
    let rows: Vec<(String, i64)> = Spi::connect_mut(|client| {
        client
            .update(
                "SELECT j.jobname::text, j.jobid FROM ( \
                     SELECT jobname, jobid FROM cron.job \
                     WHERE jobname = ANY($1) \
                        OR jobname = ANY(SELECT n || ':' || pg_catalog.current_database() FROM unnest($1) n) \
                     ORDER BY jobid) j \
                 WHERE cron.unschedule(j.jobid)",
                None,
                &[names.into()],
            )
            .or_raise()
            .map(|r| (r.value::<String>(1).unwrap_or_default(), r.value::<i64>(2).unwrap_or_default()))
            .collect()
    });
    TableIterator::new(rows)
}

/// The jobs pg_evolve schedules: (name, cron schedule, command).
const JOBS: [(&str, &str, &str); 4] = [
    (
        "evolve_cleanup_expired_fragments",
        "17 3 * * *",
        "SELECT evolve.cleanup_expired_fragments()",
    ),
    (
        "evolve_archive_stale_fragments",
        "27 4 * * 0",
        "SELECT evolve.archive_stale_fragments()",
    ),
    // The per-backend aggregate parts, merged (reads stay short however many backends wrote).
    (
        "evolve_fold_aggregates",
        "7 * * * *",
        "SELECT evolve.fold_aggregates()",
    ),
    // Re-embedding where no background worker runs; with the worker it finds the queue empty.
    (
        "evolve_run_reembedding",
        "* * * * *",
        "CALL evolve.run_reembedding(50)",
    ),
];

/// Creates (or updates) the pg_cron jobs: cleanup of expired fragments daily at 03:17, archival
/// of stale fragments weekly on Sunday at 04:27, folding of aggregate parts hourly at :07, and
/// re-embedding (up to 50 batches) every minute. Idempotent: jobs are keyed by name.
#[pg_extern(volatile, parallel_unsafe)]
fn schedule_maintenance() -> TableIterator<
    'static,
    (
        name!(jobname, String),
        name!(schedule, String),
        name!(command, String),
        name!(jobid, i64),
    ),
> {
    crate::access::require_admin("schedule maintenance");
    require_cron("schedule", |db| {
        let jobs = JOBS
            .iter()
            .map(|(name, schedule, command)| {
                format!(
                    "({}, {}, {})",
                    job_for(name, db),
                    literal(schedule),
                    literal(command)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT cron.schedule_in_database(j.name, j.schedule, j.command, {}) FROM (VALUES {jobs}) AS j(name, schedule, command);",
            literal(db)
        )
    });
    let rows: Vec<(String, String, String, i64)> = Spi::connect_mut(|client| {
        JOBS.iter()
            .map(|(name, schedule, command)| {
                let id = client
                    .update(
                        "SELECT cron.schedule($1, $2, $3)",
                        None,
                        &[(*name).into(), (*schedule).into(), (*command).into()],
                    )
                    .or_raise()
                    .first()
                    .get_one::<i64>()
                    .or_raise()
                    .unwrap_or_default();
                (
                    name.to_string(),
                    schedule.to_string(),
                    command.to_string(),
                    id,
                )
            })
            .collect()
    });
    TableIterator::new(rows)
}
