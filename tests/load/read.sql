-- A read is stale if it serves a version older than one committed before the read began.
\set u random(1, 5)
SELECT current_version AS v FROM evolve.schemas WHERE entity_type = 'quake' AND user_id = 'u' || :u
\gset
SELECT 1 / ((evolve.active_schema('quake', 'u' || :u)->>'user_version')::int >= :v)::int AS fresh;
