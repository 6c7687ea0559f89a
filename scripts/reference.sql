-- Writes docs/reference.md from the catalog: every public function, table, view and GUC of
-- pg_evolve with its COMMENT (scripts/reference.sh runs it; a test checks the file is current).
\set QUIET on
\pset format unaligned
\pset tuples_only on
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_evolve CASCADE;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION pg_evolve;
SELECT E'# pg_evolve reference\n\n'
    || E'Generated from the catalog by `scripts/reference.sh` (the descriptions are the objects'' `COMMENT`s);\n'
    || E'`tests/reference.rs` fails when a public object is missing here or has no comment.\n'
    || E'Objects whose name starts with `_` are internal.\n\n## Functions and procedures\n';
SELECT format(E'### `evolve.%s(%s)`%s\n\n%s\n',
              p.proname, pg_get_function_arguments(p.oid),
              CASE WHEN p.prokind = 'p' THEN ' (procedure)' ELSE ' → `' || pg_get_function_result(p.oid) || '`' END,
              coalesce(obj_description(p.oid, 'pg_proc'), '(undocumented)'))
FROM pg_proc p
WHERE p.pronamespace = 'evolve'::regnamespace AND p.proname !~ '^_'
ORDER BY p.proname, pg_get_function_arguments(p.oid);
-- One section per relation: its comment and its columns.
CREATE FUNCTION pg_temp.relation_doc(rel oid) RETURNS text LANGUAGE sql AS $$
    SELECT format(E'### `evolve.%s`\n\n%s\n\nColumns: %s.\n', c.relname,
                  coalesce(obj_description(c.oid, 'pg_class'), '(undocumented)'),
                  (SELECT string_agg(format('`%s` %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
    FROM pg_class c WHERE c.oid = rel
$$;
SELECT E'## Tables\n';
SELECT pg_temp.relation_doc(c.oid) FROM pg_class c
WHERE c.relnamespace = 'evolve'::regnamespace AND c.relkind IN ('r', 'p', 'u') AND c.relname !~ '^_'
ORDER BY c.relname;
SELECT E'## Views\n';
SELECT pg_temp.relation_doc(c.oid) FROM pg_class c
WHERE c.relnamespace = 'evolve'::regnamespace AND c.relkind = 'v'
ORDER BY c.relname;
SELECT E'## Settings (GUCs)\n\n| name | default | context | description |\n|---|---|---|---|';
SELECT format('| `%s` | %s | %s | %s%s |', name, coalesce(nullif(boot_val, ''), '(empty)') || coalesce(' ' || unit, ''),
              context, short_desc, coalesce(' ' || nullif(extra_desc, ''), ''))
FROM pg_settings WHERE name LIKE 'evolve.%' ORDER BY name;
SELECT E'\n## Roles and tenants\n\n'
    || E'Created by the extension when missing (roles belong to the cluster). PUBLIC gets nothing: no USAGE on schema `evolve`, no EXECUTE on any routine.\n\n'
    || E'| role | may |\n|---|---|\n'
    || E'| `evolve_reader` | read the tables and views (under row-level security), `active_schema`, `schema_at`, `schema_diff`, `check_compatibility`, `schema_diagram`, `field_confidence`, `migrate_payload`, `entity`, `enriched_text`, `embed`, `semantic_search`, `analyze_impact`, `cache_stats`, `verify_aggregates`, `current_user_id` |\n'
    || E'| `evolve_writer` (is a reader) | `ingest`, INSERT into `evolve.inbox`, `register_schema` / `update_schema_incremental` / `activate_schema` / `deactivate_schema` / `promote_fragments` of its own user schemas, `propose_schema`, `refresh_snapshot` |\n'
    || E'| `evolve_admin` (is a writer) | global schemas, `approve_proposal` / `reject_proposal` / `rollback_proposal`, `set_quota`, `set_compatibility`, `resolve_conflict`, `register_migration`, `apply_change`, `retry_failed`, `run_reembedding`, `schedule_maintenance` / `unschedule_maintenance`, `archive_stale_fragments`, `cleanup_expired_fragments`, `bind_tenant` / `unbind_tenant`, `metrics` (which members of `pg_monitor` may call too); every tenant''s rows |\n\n'
    || E'The tenant of a session is `evolve.current_user_id` (`SET LOCAL evolve.current_user_id = ''ana''` per transaction, or `ALTER ROLE … SET`). Outside `evolve_admin`, a session reads global rows and its tenant''s rows, and writes only its tenant''s scope (the global scope when unset; global schemas are the admins''). The writing functions are SECURITY DEFINER with `search_path = pg_catalog, pg_temp` and check the caller (the session role, after SET ROLE) themselves. A role bound to a tenant with `evolve.bind_tenant` (listed in `evolve.tenant_roles`) has that tenant whatever `evolve.current_user_id` says: row-level security ignores the setting and every function refuses (42501) a setting that names another tenant. The binding of the role after SET ROLE counts, else that of the login role. Audit columns (`created_by`, `performed_by`, `resolved_by`, `bound_by`) name the calling role, not the extension owner.\n';
SELECT E'## SQLSTATEs\n\n| SQLSTATE | when |\n|---|---|\n'
    || E'| 22023 | malformed definition, patch, payload, change document or argument (the message names the JSON path) |\n'
    || E'| 54000 | a document over its size or nesting limit (payloads 64 levels, definitions 32, any JSON argument 128); a payload key or entity_key over 1,024 bytes; one statement''s text column over 1 GB |\n'
    || E'| 54001 | JSON nested so deep that PostgreSQL\'s own parser stops (stack depth), before pg_evolve sees it |\n'
    || E'| 22004 | a required argument is NULL (the message names it) |\n'
    || E'| 42704 | unknown entity type (or no active schema), version, conflict, entity, job or proposal |\n'
    || E'| 42P17 | a user extension contradicts the global schema |\n'
    || E'| 55000 | an incompatible change (every reason in DETAIL), also when approving a proposal that would make one without `force => true`; a type pending review; an alias; an illegal fragment transition; promoting an undeclared key; pg_cron missing; a proposal not pending (or, for a rollback, not implemented); search blocked during re-embedding; `evolve.distribute()` where Citus is not installed, off the coordinator, or over existing entities |\n'
    || E'| 53400 | a user''s quota is exhausted |\n'
    || E'| 23514 | a direct write breaking a table''s CHECK constraint |\n'
    || E'| 22000 | a schema conflict that could not be migrated, under `evolve.migration_strategy = ''reject''`; a query that cannot be embedded |\n'
    || E'| 42883 / 42P13 | a user function (migration step, embedding, rationale) that does not exist / has the wrong signature |\n'
    || E'| 42501 | a call outside the caller''s role or tenant (see Roles and tenants); a bound role whose `evolve.current_user_id` names another tenant; an inbox row for another tenant (set aside in inbox_rejects); a user function in a temporary schema, one the role it runs as may not execute, or one whose owner does not hold that role''s privileges |\n'
    || E'| 25006 | a write (any function that writes, `CALL run_reembedding`, INSERT into `evolve.inbox`) on a hot standby: run it on the primary |\n'
    || E'| 58P01 | the minilm profile is used but its model files are not installed (the hint says how: `bash scripts/model.sh <dir>`, or `evolve.model_dir`) |\n'
    || E'| 58030 | the minilm profile''s model files cannot be read or are not all-MiniLM-L6-v2''s |\n'
    || E'| 53000 | the minilm profile''s compute threads cannot be started (lower `evolve.model_threads`) |\n'
    || E'| 40001 | an entity was deleted by another transaction while a batch ingested into it: retry |\n'
    || E'| 23505 | on a distributed database (after `evolve.distribute()`), a key whose derived entity id belongs to another entity (a hash collision: ingest it under another key) |\n'
    || E'| 25001 | `CALL evolve.rebuild_aggregates()` in a transaction that is not read committed (and 2D000 inside a transaction block: it commits between the aggregates and the counts) |';
