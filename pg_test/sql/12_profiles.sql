-- Embedding profiles: how an entity type's texts become vectors. The built-in hashing
-- embedder (256 dimensions), all-MiniLM-L6-v2 in the backend (384), or a batched SQL function
-- of the user's (text[] -> vector[], any dimensions), run with the rights of the role that
-- created the profile. A type changes profile as a whole: a new generation, searched with the
-- same profile once complete.
\set SHOW_CONTEXT never
\i sql/fresh_extension.psql

SELECT name, dims, model, max_batch, function, run_as IS NOT NULL AS run_as FROM evolve.embedding_profiles ORDER BY name;
SELECT vector_dims(evolve.embed('a seismic event', 'hashing')) AS hashing,
       vector_dims(evolve.embed('a seismic event', 'minilm')) AS minilm,
       round(vector_norm(evolve.embed('a seismic event', 'minilm'))::numeric, 4) AS minilm_norm;

-- A function profile: schema.fn(text[]) returning vector[], one vector per text, in order. It
-- runs with search_path = pg_catalog, pg_temp (whoever calls): it names its schemas, or sets
-- its own search_path.
CREATE FUNCTION public.embed_lengths(texts text[]) RETURNS vector[] LANGUAGE sql
SET search_path = public AS $$
    SELECT array_agg(format('[%s,%s,1]', length(t), array_length(texts, 1))::vector ORDER BY o)
    FROM unnest(texts) WITH ORDINALITY u(t, o)
$$;
SELECT evolve.create_embedding_profile('lengths', 3, function => 'public.embed_lengths', max_batch => 4);
SELECT name, dims, model, max_batch, function, run_as = current_user::regrole AS run_as_creator
FROM evolve.embedding_profiles WHERE name = 'lengths';
SELECT evolve.embed('abcde', 'lengths');

SELECT evolve.register_schema($${"entity_type": "earthquake", "description": "A seismic event",
  "attributes": {"mag": {"type": "number"}, "place": {"type": "string"}}}$$);
INSERT INTO evolve.inbox (entity_type, payload, entity_key)
SELECT 'earthquake', jsonb_build_object('mag', i, 'place', repeat('x', i)), 'q' || i
FROM generate_series(1, 10) i;
CALL evolve.run_reembedding();
SELECT evolve.set_embedding_profile('earthquake', 'lengths') > 0 AS job;
CALL evolve.run_reembedding();
-- Ten texts in calls of at most four (the second element is the call's size).
SELECT (x.embedding::real[])[2] AS call_size, count(*) AS texts
FROM evolve.entity_embeddings x JOIN evolve.embedding_generations g USING (generation)
WHERE g.state = 'current' AND g.entity_type = 'earthquake'
GROUP BY 1 ORDER BY 1;
SELECT g.profile, s.entities, s.embedded, s.stale
FROM evolve.embedding_status s JOIN evolve.embedding_generations g ON g.generation = s.generation;
SELECT entity_key FROM evolve.semantic_search('earthquake', 'x', 1);

-- Refused: a function that does not exist or returns something else, a bad name, a model with
-- the wrong dimensions, a name taken.
\set VERBOSITY terse
SELECT evolve.create_embedding_profile('p', 3, function => 'public.nope');
CREATE FUNCTION public.not_vectors(texts text[]) RETURNS text[] LANGUAGE sql AS 'SELECT texts';
SELECT evolve.create_embedding_profile('p', 3, function => 'public.not_vectors');
SELECT evolve.create_embedding_profile('p', 3, function => 'public.embed_lengths; --');
SELECT evolve.create_embedding_profile('p', 1024, 'minilm');
SELECT evolve.create_embedding_profile('lengths', 384);
SELECT evolve.embed('x', 'nope');
