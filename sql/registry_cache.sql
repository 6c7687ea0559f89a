-- Any change to the registry heads invalidates every backend's schema cache when it commits.
CREATE FUNCTION evolve._registry_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evolve._invalidate_schema_cache();
    RETURN NULL;
END
$$;
CREATE TRIGGER schemas_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evolve.schemas
    FOR EACH STATEMENT EXECUTE FUNCTION evolve._registry_changed();
