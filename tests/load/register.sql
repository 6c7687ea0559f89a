\set n random(1, 40)
\set u random(1, 5)
SELECT evolve.update_schema_incremental('quake', jsonb_build_object('attributes', jsonb_build_object('f' || :n, jsonb_build_object('type', 'number'))), 'u' || :u);
