-- pg_evolve 0.4.0 -> 0.5.0: a reviewer sees what approving a proposal would do before approving
-- it. Run by ALTER EXTENSION pg_evolve UPDATE, and the end of a fresh install too.
--
-- propose_schema stores in each pending proposal's evidence (jsonb: no DDL) its verdict,
-- recomputed on every run: `compatibility` (the type's mode, `compatible`, every reason, as
-- check_compatibility gives them for the definition approval would write) and `impact` (the
-- entities approval would re-embed, their priority, the estimated seconds, as analyze_impact
-- gives them). approve_proposal gains `force`: an approval that would break the type's mode is
-- refused with 55000, as register_schema refuses the change, unless the reviewer forces it; the
-- history row of a forced approval says so and keeps the reasons.

-- src/review.rs: approve_proposal_forcible (0.4.0's three-argument _approve_proposal stays,
-- so that a database not yet updated keeps working against this library).
CREATE OR REPLACE FUNCTION evolve."_approve_proposal"(
	"id" bigint, /* Option < i64 > */
	"reviewer" TEXT, /* Option < String > */
	"notes" TEXT, /* Option < String > */
	"force" bool /* Option < bool > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'approve_proposal_forcible_wrapper';
REVOKE ALL ON FUNCTION evolve._approve_proposal(bigint, text, text, boolean) FROM PUBLIC;

DROP FUNCTION evolve.approve_proposal(bigint, text, text);
CREATE FUNCTION evolve.approve_proposal(id bigint, reviewer text DEFAULT current_user, notes text DEFAULT NULL,
                                        force boolean DEFAULT false)
RETURNS evolve.schema_evolution_history
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN evolve._history_row(evolve._approve_proposal($1, $2, $3, $4));
END
$$;
REVOKE ALL ON FUNCTION evolve.approve_proposal(bigint, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.approve_proposal(bigint, text, text, boolean) TO evolve_admin;
COMMENT ON FUNCTION evolve.approve_proposal(bigint, text, text, boolean) IS
    'Applies a pending proposal in a subtransaction (members of evolve_admin only, else 42501) and returns its history row; on failure nothing changes but the history row (success false, sqlstate, error). An approval that would break the type''s compatibility mode (see the proposal''s evidence->''compatibility'') is refused with 55000 unless force is true; a forced approval is recorded as such in its history row (details->''forced'', details->''incompatibilities'').';

-- ---------------------------------------------------------------- change events
-- NOTIFY is transactional: an event is delivered when its transaction commits and never for one
-- that rolls back. Payloads are JSON. LISTEN takes no privilege, so events of user scopes (their
-- type names and user ids) are sent only when evolve.notify_user_scopes is on (superuser).
-- evolve_schema: every committed version of a schema.
CREATE FUNCTION evolve._notify_schema_version() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.user_id IS NULL
       OR coalesce(pg_catalog.current_setting('evolve.notify_user_scopes', true), 'off') IN ('on', 'true') THEN
        PERFORM pg_catalog.pg_notify('evolve_schema', pg_catalog.json_build_object(
            'entity_type', NEW.entity_type, 'user_id', NEW.user_id, 'version', NEW.version)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER schema_history_notify AFTER INSERT ON evolve.schema_history
    FOR EACH ROW EXECUTE FUNCTION evolve._notify_schema_version();

-- evolve_proposal: a proposal created, approved (implemented), rejected or rolled back.
CREATE FUNCTION evolve._notify_proposal() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.user_id IS NULL
       OR coalesce(pg_catalog.current_setting('evolve.notify_user_scopes', true), 'off') IN ('on', 'true') THEN
        PERFORM pg_catalog.pg_notify('evolve_proposal', pg_catalog.json_build_object(
            'id', NEW.id, 'event', CASE WHEN TG_OP = 'INSERT' THEN 'created'
                                        WHEN NEW.status = 'implemented' THEN 'approved'
                                        ELSE NEW.status END,
            'kind', NEW.kind, 'entity_type', NEW.entity_type, 'user_id', NEW.user_id,
            'name', NEW.name)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER schema_proposals_notify_insert AFTER INSERT ON evolve.schema_proposals
    FOR EACH ROW EXECUTE FUNCTION evolve._notify_proposal();
CREATE TRIGGER schema_proposals_notify_status AFTER UPDATE OF status ON evolve.schema_proposals
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'pending')
    EXECUTE FUNCTION evolve._notify_proposal();

-- evolve_job: a re-embedding job's status changes, and its progress at every tenth (throttled:
-- the worker updates a job's counters after each batch).
CREATE FUNCTION evolve._notify_job() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('evolve_job', pg_catalog.json_build_object(
        'id', NEW.id, 'status', NEW.status, 'kind', NEW.kind, 'entity_types', NEW.entity_types,
        'processed_entities', NEW.processed_entities, 'total_entities', NEW.total_entities,
        'parked_entities', NEW.parked_entities)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER schema_migration_jobs_notify_insert AFTER INSERT ON evolve.schema_migration_jobs
    FOR EACH ROW EXECUTE FUNCTION evolve._notify_job();
CREATE TRIGGER schema_migration_jobs_notify_update AFTER UPDATE ON evolve.schema_migration_jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR 10 * OLD.processed_entities / nullif(OLD.total_entities, 0)
                          IS DISTINCT FROM 10 * NEW.processed_entities / nullif(NEW.total_entities, 0))
    EXECUTE FUNCTION evolve._notify_job();

-- (Firing a trigger checks no EXECUTE privilege: nobody needs one on these.)
REVOKE ALL ON FUNCTION evolve._notify_schema_version(), evolve._notify_proposal(), evolve._notify_job()
    FROM PUBLIC;

-- ---------------------------------------------------------------- metrics
-- src/metrics.rs: cluster-wide counters in shared memory (since the server started; work
-- counted when its transaction commits) and this database's queue and review gauges, for a
-- Prometheus exporter (docs/prometheus-queries.yaml). It reads every tenant's queue: monitoring
-- roles and admins only.
CREATE OR REPLACE FUNCTION evolve."metrics"() RETURNS TABLE (
	"name" TEXT,  /* String */
	"value" double precision,  /* f64 */
	"kind" TEXT,  /* String */
	"help" TEXT  /* String */
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'metrics_wrapper';
ALTER FUNCTION evolve.metrics() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION evolve.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.metrics() TO evolve_admin, pg_monitor;
-- (USAGE only names the schema's objects; pg_monitor reads none of its tables.)
GRANT USAGE ON SCHEMA evolve TO pg_monitor;
COMMENT ON FUNCTION evolve.metrics() IS
    'Cluster-wide counters since the server started (payloads ingested and rejected, fragments, proposals, schema cache hits and misses of every backend, embeddings written, failures, worker batches and busy seconds; work is counted when it commits) and this database''s gauges (queued and parked entities, pending proposals): name, value, kind (counter or gauge), help. For members of evolve_admin and pg_monitor; needs shared_preload_libraries (else the counters stay 0).';

-- ---------------------------------------------------------------- maintenance
-- src/maintenance.rs: unschedule_maintenance removes the pg_cron jobs schedule_maintenance
-- created. Outside pg_cron's database both refuse (55000) with the statement to run there
-- (cron.schedule_in_database names this database).
CREATE OR REPLACE FUNCTION evolve."unschedule_maintenance"() RETURNS TABLE (
	"jobname" TEXT,  /* String */
	"jobid" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unschedule_maintenance_wrapper';
ALTER FUNCTION evolve.unschedule_maintenance() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION evolve.unschedule_maintenance() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.unschedule_maintenance() TO evolve_admin;
COMMENT ON FUNCTION evolve.unschedule_maintenance() IS
    'Removes the pg_cron jobs schedule_maintenance created for this database and returns them (members of evolve_admin only). Outside pg_cron''s database it refuses (55000) with the statement to run there.';
