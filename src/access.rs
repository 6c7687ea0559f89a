//! Who may do what. Three roles (`evolve_reader` ⊂ `evolve_writer` ⊂ `evolve_admin`) and the
//! session's tenant, `evolve.current_user_id`. Writing functions run as SECURITY DEFINER, where
//! `current_user` is the extension owner, so the caller is taken from the role in effect outside
//! any function (`GetOuterUserId`: the session role, after SET ROLE). Row-level security covers
//! direct reads of the tables; these checks cover the functions.

use crate::error::raise;
use evolve_core::SqlState;
use pgrx::prelude::*;
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

/// The session's tenant: `evolve.current_user_id`, NULL when unset or empty.
pub fn tenant() -> Option<String> {
    crate::gucs::current_user_id()
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

/// Reserved to members of evolve_admin.
pub fn require_admin(what: &str) {
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
    if is_admin() {
        return;
    }
    require_role(c"evolve_reader", "read pg_evolve schemas");
    if user_id.is_some() && user_id != tenant().as_deref() {
        deny(
            format!("permission denied to read {}", describe(user_id)),
            "A session reads the global scope and the scope named by evolve.current_user_id.",
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
    if is_admin() {
        return;
    }
    require_role(c"evolve_writer", what);
    if user_id != tenant().as_deref() {
        deny(
            format!("permission denied to {what} in {}", describe(user_id)),
            "A writer writes only the scope named by evolve.current_user_id (the global scope when it is unset).",
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
