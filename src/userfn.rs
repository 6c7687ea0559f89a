//! Calling functions that users name: migration `function` steps, `evolve.embedding_function`
//! and `evolve.rationale_function`.
//!
//! The model (README, "Privileges"):
//! * A name is resolved to one function OID without consulting any search_path: `schema.fn`
//!   names its schema, a bare `fn` means `pg_catalog.fn`. Temporary schemas are refused, so no
//!   session can plant a function under a name another session will call.
//! * Migration steps are resolved once, when registered; the OIDs and the registering role are
//!   stored with the migration and nothing resolves the names again. The settings are resolved
//!   by the same rule (their value is a qualified name, so the session calling them cannot
//!   change what it means).
//! * The function runs with the rights of the role that chose it — the registering role for a
//!   migration step, the calling role for the superuser-only settings — never with the
//!   extension owner's, under `SECURITY_RESTRICTED_OPERATION` (no SET ROLE, no temporary
//!   objects). Its owner must hold that role's privileges (the owner is that role, a role it
//!   is a member of, or a superuser), so whoever can change the function's body could already
//!   act as the role it runs as. Both rules are checked when the name is resolved and again at
//!   every call (ownership and grants can change).
//! * The call goes through the function manager by OID with the argument as a datum: no SQL
//!   text is built from a name.

use std::cell::RefCell;
use std::collections::HashMap;

use evolve_core::SqlState;
use pgrx::prelude::*;

use crate::error::{raise, OrRaise};
use crate::plans::Row;

/// A resolved user function and the role it runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFn {
    pub oid: pg_sys::Oid,
    pub run_as: pg_sys::Oid,
}

/// Why a name or a stored function cannot be used: (SQLSTATE, message, hint).
pub type Refusal = (SqlState, String, Option<String>);

/// Splits `schema.fn` / `fn` into (schema, function), folding case as PostgreSQL does for
/// unquoted identifiers. The pure layer has already checked the characters.
fn split(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, f)) => (s.to_ascii_lowercase(), f.to_ascii_lowercase()),
        None => ("pg_catalog".into(), name.to_ascii_lowercase()),
    }
}

fn is_temp_schema(schema: &str) -> bool {
    schema == "pg_temp"
        || schema
            .strip_prefix("pg_temp_")
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        || schema
            .strip_prefix("pg_toast_temp_")
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// What the catalog says about a function, from the point of view of `run_as`.
struct Facts {
    temp: bool,
    /// The result type, by OID (a type of the same name in another schema is another type).
    returns: pg_sys::Oid,
    returns_name: String,
    may_execute: bool,
    owner_trusted: bool,
    signature: String,
}

fn facts(oid: pg_sys::Oid, run_as: pg_sys::Oid) -> Option<Facts> {
    Spi::connect(|c| {
        let rows = c
            .select(
                "SELECT n.nspname ~ '^pg_(toast_)?temp_', p.prorettype, \
                        pg_catalog.format_type(p.prorettype, NULL), \
                        pg_catalog.has_function_privilege($2, p.oid, 'EXECUTE'), \
                        pg_catalog.pg_has_role(p.proowner, $2, 'USAGE'), \
                        pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, \
                                          pg_catalog.pg_get_function_identity_arguments(p.oid)) \
                 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                 WHERE p.oid = $1 AND p.prokind = 'f'",
                Some(1),
                &[oid.into(), run_as.into()],
            )
            .or_raise();
        if rows.is_empty() {
            return None;
        }
        let r = rows.first();
        Some(Facts {
            temp: r.value::<bool>(1).unwrap_or(true),
            returns: r.value::<pg_sys::Oid>(2).unwrap_or(pg_sys::InvalidOid),
            returns_name: r.value::<String>(3).unwrap_or_default(),
            may_execute: r.value::<bool>(4).unwrap_or(false),
            owner_trusted: r.value::<bool>(5).unwrap_or(false),
            signature: r.value::<String>(6).unwrap_or_default(),
        })
    })
}

fn role_name(role: pg_sys::Oid) -> String {
    crate::plans::one::<String>(
        "SELECT pg_catalog.quote_ident(rolname) FROM pg_catalog.pg_roles WHERE oid = $1",
        &[role.into()],
    )
    .unwrap_or_else(|| format!("role {}", role.to_u32()))
}

fn temporary(what: &str, function: &str) -> Refusal {
    (
        SqlState::InsufficientPrivilege,
        format!("the {what} {function} is in a temporary schema"),
        Some("Create the function in a permanent schema and name it as schema.function.".into()),
    )
}

/// Checks that `f` may run as `f.run_as` and returns the function's return type.
fn check(f: UserFn, what: &str) -> Result<(pg_sys::Oid, String), Refusal> {
    let Some(facts) = facts(f.oid, f.run_as) else {
        return Err((
            SqlState::UndefinedFunction,
            format!("the {what} (function {}) no longer exists", f.oid.to_u32()),
            Some(
                "Name the function again (register the migration again, or set the setting again)."
                    .into(),
            ),
        ));
    };
    if facts.temp {
        return Err(temporary(what, &facts.signature));
    }
    let role = || role_name(f.run_as);
    if !facts.may_execute {
        return Err((
            SqlState::InsufficientPrivilege,
            format!(
                "permission denied to execute the {what} {} as {}",
                facts.signature,
                role()
            ),
            Some(format!(
                "GRANT EXECUTE ON FUNCTION {} TO {}.",
                facts.signature,
                role()
            )),
        ));
    }
    if !facts.owner_trusted {
        return Err((
            SqlState::InsufficientPrivilege,
            format!(
                "the {what} {} runs as {} but its owner does not hold that role's privileges",
                facts.signature,
                role()
            ),
            Some("A user-named function must be owned by the role it runs as, by a role that role is a member of, or by a superuser: ALTER FUNCTION … OWNER TO that role.".into()),
        ));
    }
    Ok((facts.returns, facts.returns_name))
}

/// A type's name as PostgreSQL prints it.
fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be handles any OID (unknown ones print as "???") and returns a
    // palloc'd string, copied out at once.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::format_type_be(oid))
            .to_string_lossy()
            .into_owned()
    }
}

/// Resolves `name(arg_type)` for a function that will run as `run_as`, without any
/// search_path (see the module documentation), and checks it may run so. `returns` lists the
/// accepted result types, by OID. Raises with a SQLSTATE and a hint otherwise.
pub fn resolve(
    name: &str,
    arg_type: &str,
    returns: &[pg_sys::Oid],
    run_as: pg_sys::Oid,
    what: &str,
) -> UserFn {
    resolve_quietly(name, arg_type, returns, run_as, what)
        .map(|(f, _)| f)
        .unwrap_or_else(|(state, message, hint)| raise(state, message, None, hint))
}

fn resolve_quietly(
    name: &str,
    arg_type: &str,
    returns: &[pg_sys::Oid],
    run_as: pg_sys::Oid,
    what: &str,
) -> Result<(UserFn, pg_sys::Oid), Refusal> {
    let (schema, function) = split(name);
    if is_temp_schema(&schema) {
        return Err(temporary(what, name));
    }
    let oid = crate::plans::one::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(%s)', $1, $2, $3))::pg_catalog.oid",
        &[schema.as_str().into(), function.as_str().into(), arg_type.into()],
    )
    .filter(|o| *o != pg_sys::InvalidOid)
    .ok_or_else(|| {
        (
            SqlState::UndefinedFunction,
            format!("the {what} {schema}.{function}({arg_type}) does not exist"),
            Some("Name it as schema.function (a name without a schema means pg_catalog; the search_path is not used).".into()),
        )
    })?;
    let f = UserFn { oid, run_as };
    let (got, got_name) = check(f, what)?;
    if !returns.contains(&got) {
        let expected: Vec<String> = returns.iter().map(|t| type_name(*t)).collect();
        return Err((
            SqlState::InvalidFunctionDefinition,
            format!(
                "the {what} {schema}.{function}({arg_type}) returns {got_name}, expected {}",
                expected.join(" or ")
            ),
            None,
        ));
    }
    Ok((f, got))
}

thread_local! {
    /// Settings' functions: (value, calling role) → the function and its result type.
    /// Resolution does not depend on the session's search_path; every call checks the
    /// function again (`call`), and a failed check drops the entry so it is resolved anew.
    static SETTINGS: RefCell<HashMap<(String, u32), (UserFn, pg_sys::Oid)>> = RefCell::new(HashMap::new());
}

/// The function a setting names, run as the calling role, with its result type (see the
/// module documentation).
fn for_setting(
    key: &(String, u32),
    arg_type: &str,
    returns: &[pg_sys::Oid],
    what: &str,
) -> Result<(UserFn, pg_sys::Oid), Refusal> {
    if let Some(hit) = SETTINGS.with(|s| s.borrow().get(key).cloned()) {
        return Ok(hit);
    }
    let resolved = resolve_quietly(&key.0, arg_type, returns, pg_sys::Oid::from(key.1), what)?;
    SETTINGS.with(|s| s.borrow_mut().insert(key.clone(), resolved));
    Ok(resolved)
}

/// Restores the user id and security context when dropped, also while unwinding from an error.
struct UserSwitch(pg_sys::Oid, i32);

impl UserSwitch {
    fn to(role: pg_sys::Oid) -> UserSwitch {
        let mut uid = pg_sys::InvalidOid;
        let mut context = 0;
        // SAFETY: plain reads and writes of backend-local state, as SECURITY DEFINER calls do;
        // the Drop below restores it on every path.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut uid, &mut context);
            pg_sys::SetUserIdAndSecContext(
                role,
                context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
        }
        UserSwitch(uid, context)
    }
}

impl Drop for UserSwitch {
    fn drop(&mut self) {
        // SAFETY: restores what `to` saved.
        unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
    }
}

/// Calls `f` with one non-NULL argument, as `f.run_as`, once it is checked again and returns
/// one of `returns` (by OID). `Ok(None)` when it returned NULL. Errors of the function itself
/// propagate as PostgreSQL errors (callers that must survive them run this in a
/// subtransaction).
pub fn call(
    f: UserFn,
    arg: pg_sys::Datum,
    returns: &[pg_sys::Oid],
    what: &str,
) -> Result<Option<pg_sys::Datum>, String> {
    let (got, got_name) = check(f, what).map_err(|(_, message, _)| message)?;
    if !returns.contains(&got) {
        return Err(format!(
            "the {what} returns {got_name}, which cannot be read here"
        ));
    }
    let _switch = UserSwitch::to(f.run_as);
    // The pinned search_path, whoever calls: the caller's own could otherwise decide what the
    // function's unqualified names mean while it runs with another role's rights. As for a
    // function's SET clause: a GUC nest level, popped on return and by (sub)transaction abort.
    // SAFETY: the same calls fmgr_security_definer makes for a function's SET clause; the
    // strings are NUL-terminated literals.
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    // SAFETY: fmgr_info fills `flinfo` for an existing function (checked above, in this
    // transaction); the call info is allocated for exactly one argument and lives in the current
    // memory context for the duration of the call; errors raised by the function cross into
    // Rust through pg_guard_ffi_boundary.
    unsafe {
        let mut flinfo = std::mem::MaybeUninit::<pg_sys::FmgrInfo>::zeroed().assume_init();
        pg_sys::fmgr_info(f.oid, &mut flinfo);
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + std::mem::size_of::<pg_sys::NullableDatum>();
        let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
        (*fcinfo).flinfo = &mut flinfo;
        (*fcinfo).nargs = 1;
        (*fcinfo).fncollation = pg_sys::DEFAULT_COLLATION_OID;
        let args = (*fcinfo).args.as_mut_slice(1);
        args[0] = pg_sys::NullableDatum {
            value: arg,
            isnull: false,
        };
        let Some(addr) = flinfo.fn_addr else {
            pg_sys::AtEOXact_GUC(true, level);
            return Err(format!("the {what} cannot be called"));
        };
        let result = pg_sys::ffi::pg_guard_ffi_boundary(|| addr(fcinfo));
        pg_sys::AtEOXact_GUC(true, level);
        if (*fcinfo).isnull {
            Ok(None)
        } else {
            Ok(Some(result))
        }
    }
}

/// Calls the function a setting names with one text argument, as the calling role; returns
/// the result datum and its type (one of `returns`, by OID).
pub fn call_setting_with_text(
    setting: &str,
    name: &str,
    returns: &[pg_sys::Oid],
    text: &str,
) -> Result<(pg_sys::Datum, pg_sys::Oid), String> {
    let what = format!("function of {setting}");
    let key = (name.to_string(), crate::access::caller().to_u32());
    let arg = text.into_datum().expect("text is never NULL");
    let attempt = || -> Result<(Option<pg_sys::Datum>, pg_sys::Oid), String> {
        let (f, returned) = for_setting(&key, "text", returns, &what).map_err(|(_, m, _)| m)?;
        call(f, arg, returns, &what).map(|d| (d, returned))
    };
    // A cached resolution that fails its check (the function was dropped, re-created or
    // changed hands) is dropped and resolved once more.
    let result = attempt().or_else(|_| {
        SETTINGS.with(|s| s.borrow_mut().remove(&key));
        attempt()
    })?;
    match result {
        (Some(d), returned) => Ok((d, returned)),
        (None, _) => Err(format!("{setting} {name} returned NULL")),
    }
}
