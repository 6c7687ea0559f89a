//! Migration of payloads written against an older schema version to the current one.
//!
//! A migration between two versions is a list of [`Step`]s, registered by the user as JSON (see
//! [`parse_steps`]) or derived from the definitions (see [`derive_steps`]). Registered
//! migrations are the directed edges of a version graph; a payload of version `a` reaches
//! version `b` along the [`shortest_path`], applying the steps of each edge in turn with
//! [`apply_steps`]. The "auto" strategy finally [`coerce`]s values that still do not fit their
//! declared types.
//!
//! # Step JSON
//!
//! Each step is an object with exactly one key:
//!
//! | Step | Effect |
//! |------|--------|
//! | `{"rename": {"from": "old", "to": "new"}}` | moves `old` to `new`; no-op when `old` is absent; error when `new` already exists |
//! | `{"add": {"key": "k", "default": v}}` | sets `k` to `v` (any JSON, `null` included) unless `k` is present |
//! | `{"drop": {"key": "k"}}` | removes `k`; no-op when absent |
//! | `{"cast": {"key": "k", "to": "number"}}` | converts `k` by the [cast rules](cast#cast-rules); no-op when absent |
//! | `{"nest": {"keys": ["lat", "lon"], "into": "geo"}}` | moves the present keys into the object `geo`, creating it, or merging into it when it is an object; error when `geo` exists and is not an object (`null` included) or already holds one of the moved keys; no-op when no key is present |
//! | `{"unnest": {"key": "geo", "prefix": "geo_"}}` | replaces the object `geo` by its members, named with the optional prefix; no-op when absent; error when `geo` is not an object (`null` included) or a lifted name already exists |
//! | `{"function": "schema.fn"}` | calls a user SQL function `jsonb → jsonb` with the whole payload; it must return an object |
//!
//! Key names must be valid schema names ([`is_valid_name`](crate::ident::is_valid_name)), except `rename.from` and
//! `drop.key`, which may be any non-empty string since old data may hold odd keys. A function
//! name is `name` or `schema.name`, each part a valid name, kept verbatim (the SQL layer quotes
//! each part, so the case matters).
//!
//! # Cast rules
//!
//! `null` stays `null` for every target. Strings are trimmed of surrounding white space before
//! they are read as numbers, booleans or timestamps.
//!
//! | Target | Accepted | Result | Errors |
//! |--------|----------|--------|--------|
//! | `number` | integer, number | unchanged | boolean, object, array |
//! | `number` | string holding a finite number (Rust `f64` syntax: `12`, `-1.5`, `1e3`, `.5`, `+2`) | an integer when the text is an integer that fits i64, else the float | other strings, `NaN`, `inf`, overflow such as `1e400` |
//! | `integer` | integer that fits i64 | unchanged | integers beyond i64 |
//! | `integer` | number with a zero fraction within i64 (`2.0`, `1e3`) | the integer | a fraction, out of range |
//! | `integer` | string holding an i64, or a finite number with a zero fraction within i64 (`"2.0"`) | the integer | other strings |
//! | `integer` | — | — | boolean, object, array |
//! | `string` | string | unchanged (not trimmed) | — |
//! | `string` | number, integer | its JSON text (`1.5` → `"1.5"`, `2.0` → `"2.0"`) | — |
//! | `string` | boolean | `"true"` / `"false"` | — |
//! | `string` | — | — | object, array |
//! | `boolean` | boolean | unchanged | — |
//! | `boolean` | string `true`/`false`/`yes`/`no`/`1`/`0`, any case | `true` / `false` | other strings |
//! | `boolean` | integer `0` / `1` | `false` / `true` | other integers, numbers (`1.0` too), object, array |
//! | `timestamp` | ISO timestamp string ([`is_timestamp`](crate::infer::is_timestamp)) | the trimmed string | — |
//! | `timestamp` | ISO date string ([`is_date`](crate::infer::is_date)) | `YYYY-MM-DDT00:00:00Z` | — |
//! | `timestamp` | integer (i64) | unchanged: epoch milliseconds, which a timestamp attribute accepts | numbers with a fraction, other strings, boolean, object, array |

mod apply;
mod cast;
mod derive;
mod graph;
mod step;

pub use apply::{apply_steps, StepError};
pub use cast::{cast, coerce, CastTarget};
pub use derive::derive_steps;
pub use graph::shortest_path;
pub use step::{parse_steps, steps_to_json, Step};

#[cfg(test)]
mod test_support {
    use serde_json::{Map, Value};

    use super::Step;
    use crate::schema::Definition;

    pub(super) fn no_function(_: &str, _: Value) -> Result<Value, String> {
        Err("no functions here".into())
    }

    pub(super) fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    pub(super) fn def(v: Value) -> Definition {
        Definition::parse(&v).expect("valid definition")
    }

    pub(super) fn rename(from: &str, to: &str) -> Step {
        Step::Rename {
            from: from.into(),
            to: to.into(),
        }
    }
}
