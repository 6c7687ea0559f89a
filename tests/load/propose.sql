\set u random(0, 5)
SELECT count(*) FROM evolve.propose_schema('quake', NULLIF('u' || :u, 'u0'));
