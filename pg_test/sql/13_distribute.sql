-- Distribution on Citus: evolve.distribute() makes the registry reference tables and
-- distributes the data by entity_id (tests/citus.rs runs it on a coordinator with two workers).
-- Where Citus is not installed it refuses, and a single node changes nothing.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

SELECT * FROM evolve.distribute();
\echo :LAST_ERROR_SQLSTATE

-- Not for other roles (it runs as the owner of the extension's tables).
CREATE ROLE distribute_writer;
GRANT evolve_writer TO distribute_writer;
SET ROLE distribute_writer;
SELECT * FROM evolve.distribute();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE distribute_writer;

-- The layout a distribution needs, there from the install on: no foreign key between the
-- registry's tables, and row-level policies that read only the row.
SELECT conrelid::regclass AS referencing, confrelid::regclass AS referenced
FROM pg_constraint WHERE contype = 'f' AND connamespace = 'evolve'::regnamespace ORDER BY 1, 2;
SELECT tablename, qual FROM pg_policies
WHERE schemaname = 'evolve' AND tablename IN ('observations', 'entity_embeddings', 'embedding_queue',
                                                'schema_evolution_history', 'dynamic_tables')
ORDER BY 1;
