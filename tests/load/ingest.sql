\set k random(1, 3000)
\set u random(0, 5)
SELECT evolve.ingest('quake', jsonb_build_object('mag', :k % 90 / 10.0, 'extra_' || (:k % 7), :k, 'depth', :k % 50), NULLIF('u' || :u, 'u0'), 'load', 'k' || :k);
INSERT INTO evolve.inbox (entity_type, payload, user_id, entity_key) SELECT 'quake', jsonb_build_object('mag', i % 9, 'tag_' || (i % 5), 'x'), NULLIF('u' || :u, 'u0'), 'i' || ((:k + i) % 3000) FROM generate_series(1, 5) i;
