//! Who may do what. Three roles (`evolve_reader` ⊂ `evolve_writer` ⊂ `evolve_admin`) and the
//! session's tenant. Writing functions run as SECURITY DEFINER, where `current_user` is the
//! extension owner, so the caller is taken from the role in effect outside any function
//! (`GetOuterUserId`: the session role, after SET ROLE). Row-level security covers direct reads
//! of the tables; these checks cover the functions.
//!
//! The tenant comes from one of two modes:
//! - trusted: `evolve.current_user_id`, set by the application (any role may name any tenant);
//! - bound: an admin bound the role to a tenant in `evolve.tenant_roles` (`evolve.bind_tenant`).
//!   The binding of the outer role counts, else that of the login (session) role, so that a
//!   bound login cannot escape with SET ROLE to an unbound group role. A bound session's tenant
//!   is its binding whatever `evolve.current_user_id` says; naming another tenant there is
//!   refused (42501) by every function, and row-level security ignores it.
//!
//! Bindings are cached per backend, keyed by (outer role, session role), and the cache follows
//! the relcache model of `crate::cache`: a statement trigger on `evolve.tenant_roles` queues a
//! relcache invalidation of that table, which reaches every backend when its transaction commits.

use crate::error::raise;
use evolve_core::SqlState;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;

/// The role calling into pg_evolve, as it is outside any SECURITY DEFINER function.
pub fn caller() -> pg_sys::Oid {
    // SAFETY: reads a backend-local variable set at login and by SET ROLE; no side effects.
    unsafe { pg_sys::GetOuterUserId() }
}

/// Whether the caller is a member of `role` (superusers are members of every role). Both
/// lookups go through PostgreSQL's role caches, so this is cheap enough for every call.
fn caller_in(role: &CStr) -> bool {
    // SAFETY: `role` is NUL-terminated; with missing_ok the lookup returns InvalidOid instead
    // of raising, and is_member_of_role only reads the catalog caches.
    unsafe {
        let oid = pg_sys::get_role_oid(role.as_ptr(), true);
        oid != pg_sys::InvalidOid && pg_sys::is_member_of_role(caller(), oid)
    }
}

/// The name of a role, or its OID as text when it no longer exists.
fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: with noerr = true a missing role yields NULL instead of an error; the name is
    // palloc'd in the current memory context and copied out at once.
    unsafe {
        let name = pg_sys::GetUserNameFromId(oid, true);
        if name.is_null() {
            u32::from(oid).to_string()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// The calling role's name, as the audit columns record it: the role in effect outside any
/// SECURITY DEFINER function (after SET ROLE), not the extension owner.
#[pg_extern(stable, parallel_safe, name = "_calling_role")]
fn calling_role() -> String {
    role_name(caller())
}

type BindingKey = (pg_sys::Oid, pg_sys::Oid);

thread_local! {
    /// (outer role, session role) → the tenant bound to it, `None` when unbound.
    static BINDINGS: RefCell<HashMap<BindingKey, Option<String>>> = RefCell::new(HashMap::new());
    /// Bumped by every invalidation, so a lookup that raced one is not cached.
    static BINDINGS_GENERATION: Cell<u64> = const { Cell::new(0) };
    /// OID of `evolve.tenant_roles`, looked up lazily; `InvalidOid` until then.
    static TENANT_ROLES_RELID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// Called from a relcache invalidation: must not touch the catalogs or raise an error.
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let table = TENANT_ROLES_RELID.with(|r| r.get());
    if relid == pg_sys::InvalidOid || (table != pg_sys::InvalidOid && relid == table) {
        if relid != pg_sys::InvalidOid {
            // The table may have been dropped (DROP EXTENSION): look it up again next time.
            TENANT_ROLES_RELID.with(|r| r.set(pg_sys::InvalidOid));
        }
        BINDINGS_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
        BINDINGS.with(|b| {
            if let Ok(mut b) = b.try_borrow_mut() {
                b.clear()
            }
        });
    }
}

/// Registers the invalidation callback of the binding cache; once per backend, from `_PG_init`.
pub fn init() {
    // SAFETY: registering a callback with a 'static function pointer is what the API is for;
    // the callback itself neither errors nor accesses catalogs.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0))
    };
}

/// The OID of `evolve.tenant_roles`, `InvalidOid` while it does not exist (during an upgrade).
fn tenant_roles_relid() -> pg_sys::Oid {
    let cached = TENANT_ROLES_RELID.with(|r| r.get());
    if cached != pg_sys::InvalidOid {
        return cached;
    }
    // SAFETY: syscache lookups of NUL-terminated names; missing_ok yields InvalidOid, and
    // get_relname_relid of InvalidOid finds nothing. No SPI, so this works in any query.
    let oid = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"evolve".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(c"tenant_roles".as_ptr(), nsp)
        }
    };
    TENANT_ROLES_RELID.with(|r| r.set(oid));
    oid
}

/// Runs `f`, which reads a reference table, where Citus would refuse it: on a node running a
/// shard's part of a distributed statement (row-level security evaluated there), Citus takes
/// any read of one of its tables for a nested distributed query. A reference table's rows are
/// all on every node, so the read is exact: `citus.allow_nested_distributed_execution` is on
/// for its duration (as a function's SET clause would set it). Without Citus, `f` alone.
fn with_nested_citus_reads<T>(f: impl FnOnce() -> T) -> T {
    const NAME: &CStr = c"citus.allow_nested_distributed_execution";
    // SAFETY: looks a setting up by name; missing_ok gives NULL where Citus is not loaded.
    if unsafe { pg_sys::GetConfigOption(NAME.as_ptr(), true, false) }.is_null() {
        return f();
    }
    // SAFETY: the nest level pattern of a function's SET clause: the value set with
    // GUC_ACTION_SAVE is undone by AtEOXact_GUC at this level (and by abort on error).
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            NAME.as_ptr(),
            c"on".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        let result = f();
        pg_sys::AtEOXact_GUC(true, level);
        result
    }
}

/// Reads the binding of (outer role, session role) from `evolve.tenant_roles`, the outer
/// role's first. Read-only SPI with the active snapshot: no command counter increment and no
/// transaction id, so that it may run inside any query, a parallel one included (pgrx's
/// helpers execute read-write once the transaction has written).
fn lookup_binding((outer, session): BindingKey) -> Option<String> {
    const SQL: &CStr = c"SELECT user_id FROM evolve.tenant_roles \
        WHERE role OPERATOR(pg_catalog.=) $1 OR role OPERATOR(pg_catalog.=) $2 \
        ORDER BY role OPERATOR(pg_catalog.<>) $1 LIMIT 1";
    Spi::connect(|_client| {
        let mut types = [pg_sys::OIDOID, pg_sys::OIDOID];
        let mut values = [pg_sys::Datum::from(outer), pg_sys::Datum::from(session)];
        let nulls = [b' ' as std::ffi::c_char; 2];
        // SAFETY: SPI is connected (Spi::connect); the arrays hold two parameters each and
        // outlive the call; read_only = true runs the query with the active snapshot.
        let rc = unsafe {
            pg_sys::SPI_execute_with_args(
                SQL.as_ptr(),
                2,
                types.as_mut_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                true,
                1,
            )
        };
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            pgrx::error!("reading evolve.tenant_roles failed (SPI code {rc})");
        }
        // SAFETY: after a successful SELECT, SPI_tuptable holds SPI_processed rows of one
        // column; SPI_getvalue returns NULL for a NULL value, else a string palloc'd in the
        // SPI context, copied out before Spi::connect finishes it.
        unsafe {
            let table = pg_sys::SPI_tuptable;
            if pg_sys::SPI_processed == 0 || table.is_null() {
                return None;
            }
            let value = pg_sys::SPI_getvalue(*(*table).vals, (*table).tupdesc, 1);
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    })
}

/// The tenant bound to this session (see the module comment), `None` in trusted mode.
fn bound_tenant() -> Option<String> {
    // SAFETY: reads a backend-local variable set at login; no side effects.
    let key = (caller(), unsafe { pg_sys::GetSessionUserId() });
    if let Some(hit) = BINDINGS.with(|b| b.borrow().get(&key).cloned()) {
        return hit;
    }
    if tenant_roles_relid() == pg_sys::InvalidOid {
        return None;
    }
    let generation = BINDINGS_GENERATION.with(|g| g.get());
    // Outside parallel mode, read with a snapshot taken now: the statement's (or a repeatable
    // read transaction's) snapshot may predate a binding whose invalidation was already
    // consumed, and caching what it sees would keep the session unbound. A parallel operation
    // may take no new snapshot: read with the active one and cache nothing.
    // SAFETY: reads a backend-local flag.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    if !parallel {
        // SAFETY: a balanced push/pop; on error, transaction abort resets the snapshot stack.
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    }
    let found = with_nested_citus_reads(|| lookup_binding(key));
    if !parallel {
        // SAFETY: pops the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    if !parallel && BINDINGS_GENERATION.with(|g| g.get()) == generation {
        BINDINGS.with(|b| b.borrow_mut().insert(key, found.clone()));
    }
    found
}

/// The session's tenant as row-level security sees it: the bound tenant, else
/// `evolve.current_user_id`; NULL when neither. Never raises for a mismatch (see `tenant`).
#[pg_extern(stable, parallel_safe, name = "_session_tenant")]
fn session_tenant() -> Option<String> {
    bound_tenant().or_else(crate::gucs::current_user_id)
}

/// Queues a relcache invalidation of `evolve.tenant_roles`: at commit it reaches every backend,
/// on abort it is discarded (and replayed locally).
#[pg_extern(volatile, parallel_unsafe, name = "_invalidate_tenant_cache")]
fn invalidate_tenant_cache() {
    let relid = tenant_roles_relid();
    if relid != pg_sys::InvalidOid {
        // SAFETY: relid names an existing relation (just looked up in this transaction).
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    }
    BINDINGS_GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    BINDINGS.with(|b| b.borrow_mut().clear());
}

/// The session's tenant: the tenant its role is bound to (bound mode), else
/// `evolve.current_user_id` (trusted mode); NULL when unset or empty. A bound session whose
/// evolve.current_user_id names another tenant is refused.
pub fn tenant() -> Option<String> {
    let set = crate::gucs::current_user_id();
    let Some(bound) = bound_tenant() else {
        return set;
    };
    if set.as_deref().is_some_and(|s| s != bound) {
        deny(
            format!(
                "role \"{}\" is bound to tenant \"{bound}\"; evolve.current_user_id may not name another tenant",
                role_name(caller())
            ),
            "A role bound with evolve.bind_tenant acts only as its tenant: leave evolve.current_user_id unset or set it to that tenant. An admin may change the binding.",
        );
    }
    Some(bound)
}

pub fn is_admin() -> bool {
    caller_in(c"evolve_admin")
}

fn deny(message: String, hint: &str) -> ! {
    raise(
        SqlState::InsufficientPrivilege,
        message,
        None,
        Some(hint.into()),
    )
}

/// Every write runs on the primary: on a hot standby (streaming replication) pg_evolve serves
/// reads (active_schema, entity, semantic_search, the views) and refuses writes up front, with
/// the SQLSTATE PostgreSQL itself gives a write in a read-only transaction and a hint.
pub fn require_primary(what: &str) {
    // SAFETY: RecoveryInProgress only reads shared memory state; callable in any backend.
    if unsafe { pg_sys::RecoveryInProgress() } {
        raise(
            SqlState::ReadOnlySqlTransaction,
            format!("cannot {what} on a hot standby"),
            None,
            Some("pg_evolve writes on the primary only: run it there. Standbys serve reads (active_schema, entity, semantic_search, the views).".into()),
        );
    }
}

/// Reserved to members of evolve_admin. (Every caller writes: see `require_primary`.)
pub fn require_admin(what: &str) {
    require_primary(what);
    tenant();
    if !is_admin() {
        deny(
            format!("permission denied to {what}"),
            "This is reserved to members of evolve_admin: GRANT evolve_admin TO the role.",
        );
    }
}

fn require_role(role: &CStr, what: &str) {
    if !caller_in(role) {
        let role = role.to_string_lossy();
        deny(
            format!("permission denied to {what}"),
            &format!("This needs membership in {role}: GRANT {role} TO the role."),
        );
    }
}

fn describe(user_id: Option<&str>) -> String {
    user_id.map_or_else(
        || "the global scope".into(),
        |u| format!("user scope \"{u}\""),
    )
}

/// Reading a scope: global rows are readable by every reader; a user's rows only by that
/// tenant and by admins.
pub fn require_read(user_id: Option<&str>) {
    // Admins read every scope, so their tenant cannot matter here: checked first, this keeps
    // the cached active_schema path as short as it was.
    if is_admin() {
        return;
    }
    let tenant = tenant();
    require_role(c"evolve_reader", "read pg_evolve schemas");
    if user_id.is_some() && user_id != tenant.as_deref() {
        deny(
            format!("permission denied to read {}", describe(user_id)),
            "A session reads the global scope and its tenant's scope: the tenant its role is bound to, else evolve.current_user_id.",
        );
    }
}

/// Whether the caller may write rows of this scope (see `require_write`).
pub fn may_write(user_id: Option<&str>) -> bool {
    is_admin() || (caller_in(c"evolve_writer") && user_id == tenant().as_deref())
}

/// Writing data (ingest, fragments, proposals) into a scope: a writer writes only the scope of
/// its session's tenant (the global scope when evolve.current_user_id is unset).
pub fn require_write(user_id: Option<&str>, what: &str) {
    require_primary(what);
    let tenant = tenant();
    if is_admin() {
        return;
    }
    require_role(c"evolve_writer", what);
    if user_id != tenant.as_deref() {
        deny(
            format!("permission denied to {what} in {}", describe(user_id)),
            "A writer writes only its tenant's scope: the tenant its role is bound to, else evolve.current_user_id (the global scope when neither).",
        );
    }
}

/// Changing a schema definition: the global schemas are the admins'; a writer changes only its
/// tenant's own user schemas.
pub fn require_schema_owner(user_id: Option<&str>, what: &str) {
    if user_id.is_none() {
        require_admin(&format!("{what} a global schema"));
    } else {
        require_write(user_id, what);
    }
}
