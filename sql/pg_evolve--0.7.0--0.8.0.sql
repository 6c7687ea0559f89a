-- pg_evolve 0.7.0 -> 0.8.0: embedding profiles that name a batched SQL function. Run by
-- ALTER EXTENSION pg_evolve UPDATE, and the end of a fresh install too.
--
-- A profile may embed with a function of the user's, `schema.fn(text[]) RETURNS vector[]`,
-- called with up to max_batch texts at a time (the worker's batches; search and evolve.embed
-- with one). The function is resolved to its OID when the profile is created, without any
-- search_path, and runs with the rights of the role that created the profile, never the
-- extension owner's (src/userfn.rs): the role must be allowed to execute it, and its owner
-- must hold that role's privileges, checked then and at every call. A call that fails, returns
-- NULL, the wrong number of vectors or vectors of other dimensions is retried text by text, so
-- one bad text fails (and is retried, then parked) alone.

-- ---------------------------------------------------------------- function profiles
-- The function is kept by OID and by its qualified signature (not as regprocedure, which
-- pg_upgrade refuses in user tables: function OIDs are not kept across it). A profile whose
-- OID no longer names that signature (after pg_upgrade or a restore) finds it by the signature.
ALTER TABLE evolve.embedding_profiles ADD COLUMN function text;
ALTER TABLE evolve.embedding_profiles ADD COLUMN function_oid oid;
ALTER TABLE evolve.embedding_profiles ADD COLUMN run_as regrole;
COMMENT ON COLUMN evolve.embedding_profiles.function IS
    'The function of a profile whose model is function, as its qualified signature: schema.fn(text[]) returning vector[], resolved when the profile was created.';
COMMENT ON COLUMN evolve.embedding_profiles.function_oid IS
    'The OID of that function when the profile was created.';
COMMENT ON COLUMN evolve.embedding_profiles.run_as IS
    'The role that created a function profile: its function runs with this role''s rights.';
ALTER TABLE evolve.embedding_profiles DROP CONSTRAINT embedding_profiles_model_check;
ALTER TABLE evolve.embedding_profiles DROP CONSTRAINT embedding_profiles_check;
ALTER TABLE evolve.embedding_profiles ADD CONSTRAINT embedding_profiles_model_check
    CHECK (model IN ('hashing', 'minilm', 'function'));
ALTER TABLE evolve.embedding_profiles ADD CONSTRAINT embedding_profiles_check
    CHECK ((model = 'hashing' AND dims = 256 AND function IS NULL)
        OR (model = 'minilm' AND dims = 384 AND function IS NULL)
        OR (model = 'function' AND function IS NOT NULL AND function_oid IS NOT NULL AND run_as IS NOT NULL));
COMMENT ON TABLE evolve.embedding_profiles IS
    'Embedding profiles: a name, the dimensions and the model (hashing: the built-in feature-hashing embedder, or the function evolve.embedding_function names; minilm: all-MiniLM-L6-v2 in the backend; function: a batched SQL function text[] -> vector[] run as the role that created the profile), with the batch size the worker embeds in.';

CREATE OR REPLACE FUNCTION evolve."_resolve_embedding_function"(
	"name" TEXT /* &str */
) RETURNS oid /* pgrx_pg_sys::submodules::oids::Oid */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'resolve_embedding_function_wrapper';
REVOKE ALL ON FUNCTION evolve._resolve_embedding_function(text) FROM PUBLIC;
COMMENT ON FUNCTION evolve._resolve_embedding_function(text) IS
    'Internal: resolves schema.fn(text[]) returning vector[] for a function profile, as the calling role.';

DROP FUNCTION evolve.create_embedding_profile(text, integer, text, integer);
CREATE FUNCTION evolve.create_embedding_profile(name text, dims integer, model text DEFAULT NULL,
                                                max_batch integer DEFAULT 32, function text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text := coalesce($3, CASE WHEN $5 IS NULL THEN 'minilm' ELSE 'function' END);
    fn oid;
BEGIN
    IF NOT pg_catalog.pg_has_role(evolve._calling_role(), 'evolve_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to create an embedding profile'
            USING ERRCODE = '42501', HINT = 'Embedding profiles are created by members of evolve_admin.';
    END IF;
    IF $1 IS NULL OR $1 !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid embedding profile name: %', coalesce($1, 'NULL')
            USING ERRCODE = '22023', HINT = 'A profile name is a lowercase letter followed by up to 62 lowercase letters, digits or underscores.';
    END IF;
    IF kind = 'function' THEN
        IF $5 IS NULL OR $2 IS NULL OR $2 NOT BETWEEN 1 AND 16000 THEN
            RAISE EXCEPTION 'invalid embedding profile: model function, function %, % dimensions', coalesce($5, 'NULL'), coalesce($2::text, 'NULL')
                USING ERRCODE = '22023', HINT = 'A function profile names schema.function(text[]) returning vector[] and its dimensions (1 to 16000).';
        END IF;
    ELSIF $5 IS NOT NULL OR (kind, $2) NOT IN (('minilm', 384), ('hashing', 256)) THEN
        RAISE EXCEPTION 'invalid embedding profile: model %, % dimensions', kind, coalesce($2::text, 'NULL')
            USING ERRCODE = '22023', HINT = 'The models are minilm (384 dimensions), hashing (256) and function (function => ''schema.fn'', any dimensions).';
    END IF;
    IF $4 IS NULL OR $4 NOT BETWEEN 1 AND 1024 THEN
        RAISE EXCEPTION 'invalid max_batch: %', coalesce($4::text, 'NULL')
            USING ERRCODE = '22023', HINT = 'max_batch is from 1 to 1024.';
    END IF;
    IF EXISTS (SELECT FROM evolve.embedding_profiles p WHERE p.name = $1) THEN
        RAISE EXCEPTION 'embedding profile "%" already exists', $1 USING ERRCODE = '42710';
    END IF;
    IF kind = 'function' THEN
        fn := evolve._resolve_embedding_function($5);
    END IF;
    INSERT INTO evolve.embedding_profiles (name, dims, model, max_batch, function, function_oid, run_as)
    SELECT $1, $2, kind, $4,
           (SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes))
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = fn),
           fn, CASE WHEN fn IS NOT NULL THEN r.oid::regrole END
    FROM pg_catalog.pg_roles r WHERE r.rolname = evolve._calling_role();
    RETURN $1;
END
$$;
REVOKE ALL ON FUNCTION evolve.create_embedding_profile(text, integer, text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evolve.create_embedding_profile(text, integer, text, integer, text) TO evolve_admin;
COMMENT ON FUNCTION evolve.create_embedding_profile(text, integer, text, integer, text) IS
    'Creates an embedding profile: a name, its dimensions and its model (minilm, 384; hashing, 256; or function, with function => ''schema.fn'' taking text[] and returning vector[], run as the creating role), with the number of texts embedded per forward pass or call (max_batch). Returns the name.';

-- A profile's function may not be parallel safe. evolve.embed(text, profile) works whatever
-- the caller's search_path (user functions run with a pinned one): pgvector's assignment cast
-- turns the real[] into the vector, as for evolve.embed(text).
ALTER FUNCTION evolve._embed_profile(text, text) PARALLEL RESTRICTED;
CREATE OR REPLACE FUNCTION evolve.embed(text, profile text) RETURNS vector
LANGUAGE sql STABLE STRICT PARALLEL RESTRICTED
AS $$ SELECT evolve._embed_profile($1, $2) $$;
COMMENT ON FUNCTION evolve.embed(text, text) IS
    'A text''s embedding with an embedding profile (hashing: 256 dimensions; minilm: all-MiniLM-L6-v2 in the backend, 384 dimensions, unit length; a function profile: its function, called with one text, as the role that created the profile).';

-- ---------------------------------------------------------------- ingest: no per-row key checks
-- Observations and raw fragments are written only by pg_evolve's own functions, each of which
-- locks the entities it writes to first (FOR NO KEY UPDATE, in id order): their foreign keys to
-- evolve.entities checked each row again (one index probe and lock per row, a quarter of an
-- inbox COPY). They go; the entities' triggers delete an entity's observations and fragments
-- with it (the fragments' own triggers keep the aggregates exact, as the cascade did), and
-- TRUNCATE empties them and the aggregate parts too.
ALTER TABLE evolve.observations DROP CONSTRAINT observations_entity_id_fkey;
ALTER TABLE evolve.raw_fragments DROP CONSTRAINT raw_fragments_entity_id_fkey;
CREATE FUNCTION evolve._entities_cascade() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE evolve.raw_fragments, evolve.observations, evolve.raw_fragment_aggregate_parts,
                 evolve.entity_count_parts;
    ELSE
        DELETE FROM evolve.raw_fragments f USING old_rows o WHERE f.entity_id = o.entity_id;
        DELETE FROM evolve.observations x USING old_rows o WHERE x.entity_id = o.entity_id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION evolve._entities_cascade() FROM PUBLIC;
COMMENT ON FUNCTION evolve._entities_cascade() IS
    'Trigger: deletes the observations and raw fragments of deleted entities (and empties them when evolve.entities is truncated).';
CREATE TRIGGER entities_cascade AFTER DELETE ON evolve.entities
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION evolve._entities_cascade();
CREATE TRIGGER entities_cascade_truncate AFTER TRUNCATE ON evolve.entities
    FOR EACH STATEMENT EXECUTE FUNCTION evolve._entities_cascade();

-- ---------------------------------------------------------------- user functions' search_path
-- Every user-named function now runs with search_path = pg_catalog, pg_temp, whoever calls it
-- (src/userfn.rs): a caller's search_path could otherwise decide what its unqualified names
-- mean while it runs with another role's rights. Migration functions that set no search_path
-- of their own are named here, once, so that their owners can qualify what they use.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT DISTINCT p.oid::regprocedure AS fn
             FROM evolve.migrations m CROSS JOIN LATERAL pg_catalog.unnest(m.function_oids) AS o(oid)
             JOIN pg_catalog.pg_proc p ON p.oid = o.oid
             WHERE NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) c WHERE c LIKE 'search_path=%') LOOP
        RAISE NOTICE 'migration function % sets no search_path: from pg_evolve 0.8.0 on it runs with search_path = pg_catalog, pg_temp', f.fn
            USING HINT = 'Qualify the names it uses with their schema, or ALTER FUNCTION ... SET search_path = ...';
    END LOOP;
END
$$;
