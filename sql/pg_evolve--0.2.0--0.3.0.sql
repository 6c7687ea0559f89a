-- pg_evolve 0.2.0 → 0.3.0: trust. User-named functions never run with the owner's rights,
-- tenants never see or touch one another's rows, numbers keep every digit, audit columns name
-- the calling role.
--
-- As with 0.2.0, this one file is both the upgrade script (ALTER EXTENSION pg_evolve UPDATE)
-- and the last part of a fresh 0.3.0 install, so the two cannot drift (tests/upgrade.rs
-- compares their catalogs). Everything here is idempotent against a fresh install: CREATE OR
-- REPLACE, IF [NOT] EXISTS.

-- ---------------------------------------------------------------- user-named functions

-- ---------------------------------------------------------------- numbers, bad input, inbox

-- ---------------------------------------------------------------- proposals and tenants

-- ---------------------------------------------------------------- audit, defaults, tenant binding

