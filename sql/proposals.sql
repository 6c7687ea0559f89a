-- Proposals: evidence-backed schema changes, their review and their audit trail.

-- Reviewers. Roles belong to the cluster: the role outlives DROP EXTENSION and is shared by
-- every database that installs pg_evolve.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'evolve_admin') THEN
        CREATE ROLE evolve_admin NOLOGIN;
    END IF;
END
$$;

-- Entities per type and scope, kept by statement triggers, so that proposals read a count
-- instead of scanning entities (an entity's type and user never change).
CREATE TABLE evolve.entity_counts (
    entity_type  text NOT NULL,
    user_id      text,
    entity_count bigint NOT NULL,
    CONSTRAINT entity_counts_key UNIQUE NULLS NOT DISTINCT (entity_type, user_id)
);
COMMENT ON TABLE evolve.entity_counts IS 'Entities per type and user scope, kept by statement triggers on evolve.entities.';

CREATE FUNCTION evolve._count_entities() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO evolve.entity_counts AS c (entity_type, user_id, entity_count)
        SELECT entity_type, user_id, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (entity_type, user_id) DO UPDATE SET entity_count = c.entity_count + EXCLUDED.entity_count;
    ELSE
        UPDATE evolve.entity_counts c SET entity_count = c.entity_count - d.n
        FROM (SELECT entity_type, user_id, count(*) AS n FROM old_rows GROUP BY 1, 2) d
        WHERE c.entity_type = d.entity_type AND c.user_id IS NOT DISTINCT FROM d.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER entities_count_insert AFTER INSERT ON evolve.entities
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION evolve._count_entities();
CREATE TRIGGER entities_count_delete AFTER DELETE ON evolve.entities
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION evolve._count_entities();

CREATE TABLE evolve.schema_proposals (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('attribute', 'table', 'relationship', 'temporal',
                                                   'index', 'entity_type', 'promote_to_global')),
    entity_type      text NOT NULL,
    user_id          text,
    name             text NOT NULL,
    safe_name        text NOT NULL,
    priority         text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'rejected', 'implemented', 'rolled_back')),
    title            text NOT NULL,
    rationale        text NOT NULL,
    impact           bigint NOT NULL DEFAULT 0,
    sql_preview      text NOT NULL,
    action           jsonb NOT NULL,
    fingerprint      text NOT NULL UNIQUE,
    evidence         jsonb NOT NULL,
    measure          double precision NOT NULL DEFAULT 0,
    rejected_measure double precision,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    reviewed_by      text,
    reviewed_at      timestamptz,
    review_notes     text
);
CREATE INDEX schema_proposals_scope ON evolve.schema_proposals (entity_type, user_id, status);
COMMENT ON TABLE evolve.schema_proposals IS
    'Schema changes proposed from the fragment aggregates and the registry, with their evidence. name is the key as seen in the data, safe_name the identifier it maps to; action is what approval does; measure is the evidence size a rejection is compared against (presence, or the entities concerned).';

CREATE TABLE evolve.schema_evolution_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    proposal_id  bigint REFERENCES evolve.schema_proposals (id) ON DELETE SET NULL,
    action       text NOT NULL CHECK (action IN ('approve', 'auto_approve', 'reject', 'rollback', 'supersede')),
    executed_sql text,
    rollback_sql text,
    success      boolean NOT NULL,
    sqlstate     text,
    error        text,
    details      jsonb NOT NULL DEFAULT '{}',
    performed_by text NOT NULL DEFAULT current_user,
    performed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schema_evolution_history_proposal ON evolve.schema_evolution_history (proposal_id, id);
COMMENT ON TABLE evolve.schema_evolution_history IS
    'Audit trail of proposal reviews: what ran, how to undo it, whether it worked, who, when. A failed approval is recorded here and changes nothing else.';

CREATE TABLE evolve.dynamic_tables (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    proposal_id  bigint REFERENCES evolve.schema_proposals (id) ON DELETE SET NULL,
    kind         text NOT NULL CHECK (kind IN ('table', 'index')),
    schema_name  text NOT NULL,
    object_name  text NOT NULL,
    entity_type  text NOT NULL,
    columns      jsonb NOT NULL DEFAULT '[]',
    created_sql  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    dropped_at   timestamptz
);
COMMENT ON TABLE evolve.dynamic_tables IS
    'Tables and indexes created by approved proposals; columns maps each key seen in the data to its column.';

CREATE VIEW evolve.proposal_stats AS
SELECT kind, status, priority, count(*) AS proposals, sum(impact) AS entities_concerned
FROM evolve.schema_proposals
GROUP BY kind, status, priority;
COMMENT ON VIEW evolve.proposal_stats IS 'Proposals counted by kind, status and priority.';

CREATE VIEW evolve.knowledge_patterns AS
SELECT kind,
       coalesce(evidence->>'inferred_type', '') AS inferred_type,
       count(*) AS proposals,
       count(*) FILTER (WHERE status IN ('implemented', 'approved')) AS accepted,
       count(*) FILTER (WHERE status = 'rejected') AS rejected,
       count(*) FILTER (WHERE status = 'rolled_back') AS rolled_back,
       round(avg((evidence->>'confidence')::float8)::numeric, 3) AS avg_confidence,
       round((count(*) FILTER (WHERE status IN ('implemented', 'approved'))::numeric
              / nullif(count(*) FILTER (WHERE status IN ('implemented', 'approved', 'rejected', 'rolled_back')), 0)), 3)
           AS acceptance_rate
FROM evolve.schema_proposals
GROUP BY 1, 2;
COMMENT ON VIEW evolve.knowledge_patterns IS
    'What reviewers accept: per proposal kind and inferred type, how many were accepted, rejected or rolled back, and the mean confidence.';

CREATE FUNCTION evolve.propose_schema(entity_type text DEFAULT NULL, user_id text DEFAULT NULL)
RETURNS SETOF evolve.schema_proposals
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    ids bigint[] := evolve._propose_schema($1, $2);
BEGIN
    -- A statement of its own, so that it sees the rows the detection just wrote.
    RETURN QUERY
    SELECT p.* FROM evolve.schema_proposals p WHERE p.id = ANY (ids)
    ORDER BY CASE p.priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, p.kind, p.entity_type, p.name;
END
$$;
COMMENT ON FUNCTION evolve.propose_schema(text, text) IS
    'Detects schema changes from the fragment aggregates, the registry and the inbox rejects (never a scan of all fragments), records them by fingerprint, and returns the pending ones in scope. NULL user_id: the global scope.';

-- The review functions return their history row. The row is read by a function of its own,
-- called after the review, so that it sees what the review just wrote.
CREATE FUNCTION evolve._history_row(history_id bigint) RETURNS evolve.schema_evolution_history
LANGUAGE sql VOLATILE AS $$
    SELECT h FROM evolve.schema_evolution_history h WHERE h.id = history_id
$$;

CREATE FUNCTION evolve.approve_proposal(id bigint, reviewer text DEFAULT current_user, notes text DEFAULT NULL)
RETURNS evolve.schema_evolution_history
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN evolve._history_row(evolve._approve_proposal($1, $2, $3));
END
$$;
COMMENT ON FUNCTION evolve.approve_proposal(bigint, text, text) IS
    'Applies a pending proposal in a subtransaction (members of evolve_admin only, else 42501) and returns its history row; on failure nothing changes but the history row (success false, sqlstate, error).';

CREATE FUNCTION evolve.reject_proposal(id bigint, reviewer text DEFAULT current_user, notes text DEFAULT NULL)
RETURNS evolve.schema_evolution_history
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN evolve._history_row(evolve._reject_proposal($1, $2, $3));
END
$$;
COMMENT ON FUNCTION evolve.reject_proposal(bigint, text, text) IS
    'Rejects a pending proposal (members of evolve_admin only). It is proposed again only when its evidence grows by the re-proposal factor (1.5).';

CREATE FUNCTION evolve.rollback_proposal(id bigint)
RETURNS evolve.schema_evolution_history
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN evolve._history_row(evolve._rollback_proposal($1));
END
$$;
COMMENT ON FUNCTION evolve.rollback_proposal(bigint) IS
    'Undoes an implemented proposal with its recorded rollback (members of evolve_admin only): the registry gets back the previous definition, promoted fragments return to active, created objects are dropped.';
