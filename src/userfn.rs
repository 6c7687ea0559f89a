//! Calling functions that users name in settings or migration steps (`schema.fn`).
//!
//! The name is resolved once per backend with `to_regprocedure`; the call then goes through the
//! resolved function's schema and name, quoted by PostgreSQL (`format('%I.%I')`), never through
//! the text the user wrote, so a later search_path cannot redirect it. The argument goes in as
//! an SPI parameter.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::{FromDatum, IntoDatum};
use pgrx::prelude::*;

thread_local! {
    /// (name, argument type, result cast) → the `SELECT` calling it.
    static CALLS: RefCell<HashMap<(String, &'static str, &'static str), String>> = RefCell::new(HashMap::new());
}

fn call_sql(
    name: &str,
    arg_type: &'static str,
    result_cast: &'static str,
) -> Result<String, String> {
    let key = (name.to_string(), arg_type, result_cast);
    if let Some(sql) = CALLS.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(sql);
    }
    let signature = format!("{name}({arg_type})");
    let sql = Spi::get_one_with_args::<String>(
        "SELECT (SELECT format('SELECT %I.%I($1)%s', n.nspname, p.proname, $2::text) \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE p.oid = to_regprocedure($1))",
        &[signature.as_str().into(), result_cast.into()],
    )
    .map_err(|e| e.to_string())?
    .ok_or_else(|| format!("function {signature} does not exist"))?;
    CALLS.with(|c| c.borrow_mut().insert(key, sql.clone()));
    Ok(sql)
}

/// Calls `name(arg_type)` with one argument; the result, cast by `result_cast` (e.g. `::text`),
/// must not be NULL.
pub fn call<A, R>(
    name: &str,
    arg_type: &'static str,
    result_cast: &'static str,
    arg: A,
) -> Result<R, String>
where
    A: IntoDatum,
    R: FromDatum + IntoDatum,
{
    let sql = call_sql(name, arg_type, result_cast)?;
    Spi::get_one_with_args::<R>(&sql, &[arg.into()])
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("function {name} returned NULL"))
}
