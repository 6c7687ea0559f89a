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
//! # Paths
//!
//! Wherever a step takes a key it also takes a [path](crate::path) in text form, naming a
//! member below the top level: `actor.login`, `payload.commits[].sha`,
//! `labels."app.kubernetes.io/name"`. A key is the path of one segment and behaves as above.
//! The keys of a path in `rename.to`, `add.key`, `cast.key`, `nest.keys`, `nest.into` and
//! `unnest.key` must be valid schema names (the members of nested attributes are), a path has
//! at most 64 segments ([`MAX_STEP_PATH_SEGMENTS`]), and only a
//! cast's path may end with `[]`; a text that does not parse is refused with its JSON pointer.
//!
//! A key segment reaches into an object, `[]` into every element of an array: a step applies
//! at every place its path reaches (`cast payload.commits[].size` casts the `size` of each
//! commit) and skips the places where a member is absent or not of the kind the path needs
//! (no object, no array), exactly as a step on an absent key is a no-op.
//!
//! | Step | With paths |
//! |------|------------|
//! | `rename` | moves the value at `from` to `to`: within one object when both share the parent (the key is renamed there, in every element along a shared `[]`), otherwise across objects, creating the objects on the way to `to` (`a` → `a.b` wraps the value). `from` and `to` may go through `[]` only where both do (`payload.commits[].author.name` → `payload.commits[].author_name`): values move within each element. Error when `to` exists or a member on the way to `to` is not an object |
//! | `add` | sets the member in every object the parent path reaches; absent parents are not created (add `{}` at the parent first to create it) |
//! | `drop` | removes the member from every object the parent path reaches |
//! | `cast` | casts every value the path reaches; `tags[]` casts each element of `tags` |
//! | `nest` | moves the present values of the `keys` paths into the object at `into`, each under its path's last key (which must differ between keys; no key may lie inside another or inside `into`, nor `into` inside a key); objects on the way to `into` are created. The keys and `into` may go through `[]` only where all of them do: values move within each element. Errors as above, per object |
//! | `unnest` | lifts the members of the object at `key` into the object holding it (the parent level), prefixed; in every element along `[]` |
//!
//! `rename.from` and `drop.key` name old data and are read leniently, so that steps stored
//! before paths existed keep their meaning: a text spelled exactly as a top-level key of the
//! payload names that key (a flattened `"user.name"` key is renamed or dropped as before; a
//! payload with both `"user.name"` and `user: {name}` loses the former); a text that does not
//! parse as a path, or whose path ends with `[]`, is one key; and a `from` whose path goes
//! through `[]` where `to` does not is one key too.
//!
//! A step that fails leaves the payload unchanged, even when it had already applied at some
//! of the places its paths reach. Error messages name the step's texts (the paths as written).
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
pub use step::{parse_steps, steps_to_json, Step, MAX_STEP_PATH_SEGMENTS};

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
