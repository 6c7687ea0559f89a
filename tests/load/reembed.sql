\set n random(1, 1000000)
SELECT evolve.apply_change(jsonb_build_object('kind', 'entity_type_description_changed', 'entity_type', 'quake', 'description', 'seismic ' || :n));
