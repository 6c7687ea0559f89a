//! pg_cron jobs for fragment cleanup and archival, and re-embedding without the worker.

use evolve_core::SqlState;
use pgrx::prelude::*;

use crate::error::{raise, OrRaise};

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
    let has_cron = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')",
    )
    .or_raise()
    .unwrap_or(false);
    if !has_cron {
        raise(
            SqlState::ObjectNotInPrerequisiteState,
            "pg_cron is not installed in this database",
            None,
            Some("Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, then CREATE EXTENSION pg_cron.".into()),
        );
    }
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
