//! Checks shared by the hand-written JSON readers (definitions, migration steps, changes).
//! Every failure is a [`CoreError::InvalidDefinition`] naming the JSON pointer of the offending
//! part; `path` is the pointer of the object holding the member (`""` for the document).

use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::ident::name_problem;

/// Escapes one JSON-pointer reference token (RFC 6901).
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Checks that `name` is a valid schema name; the error names `path`.
pub(crate) fn check_name(path: &str, name: &str) -> Result<(), CoreError> {
    match name_problem(name) {
        Some(problem) => Err(CoreError::def(path, format!("name \"{name}\" {problem}"))),
        None => Ok(()),
    }
}

/// Refuses the first key of `obj` that is not in `allowed`; the error names `key_path(key)`
/// and lists `allowed`.
pub(crate) fn reject_unknown(
    obj: &Map<String, Value>,
    allowed: &[&str],
    key_path: impl Fn(&str) -> String,
) -> Result<(), CoreError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(CoreError::def(
            key_path(key),
            format!("unknown key; expected one of {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A required string member `{path}/{key}` (absent or `null`: "is required").
pub(crate) fn required_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, CoreError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(CoreError::def(format!("{path}/{key}"), "is required")),
        Some(_) => Err(CoreError::def(format!("{path}/{key}"), "must be a string")),
    }
}

/// A required member `{path}/{key}` holding a valid schema name.
pub(crate) fn required_name(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, CoreError> {
    let s = required_string(obj, key, path)?;
    check_name(&format!("{path}/{key}"), &s)?;
    Ok(s)
}

/// An optional string member `{path}/{key}`: absent or `null` gives `None`.
pub(crate) fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, CoreError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CoreError::def(format!("{path}/{key}"), "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn message(e: CoreError) -> (String, String) {
        match e {
            CoreError::InvalidDefinition { path, message } => (path, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn members_and_their_errors() {
        let o = obj(json!({"s": "x", "n": 1, "z": null, "bad": "a b", "a/b": 1}));
        assert_eq!(required_string(&o, "s", "/p").unwrap(), "x");
        let cases = [
            (required_string(&o, "n", "/p"), ("/p/n", "must be a string")),
            (required_string(&o, "z", "/p"), ("/p/z", "is required")),
            (required_string(&o, "none", ""), ("/none", "is required")),
        ];
        for (got, (path, msg)) in cases {
            assert_eq!(message(got.unwrap_err()), (path.into(), msg.into()));
        }
        let (path, msg) = message(required_name(&o, "bad", "").unwrap_err());
        assert_eq!(path, "/bad");
        assert!(msg.starts_with("name \"a b\" must start"), "{msg}");
        assert_eq!(optional_string(&o, "z", "").unwrap(), None);
        assert_eq!(optional_string(&o, "none", "").unwrap(), None);
        assert_eq!(optional_string(&o, "s", "").unwrap(), Some("x".into()));
        assert_eq!(
            message(optional_string(&o, "n", "").unwrap_err()),
            ("/n".into(), "must be a string".into())
        );
        let allowed = ["s", "n", "z", "bad"];
        assert_eq!(
            message(reject_unknown(&o, &allowed, |k| format!("/q/{}", escape(k))).unwrap_err()),
            (
                "/q/a~1b".into(),
                "unknown key; expected one of s, n, z, bad".into()
            )
        );
        assert!(reject_unknown(&o, &["s", "n", "z", "bad", "a/b"], |k| k.into()).is_ok());
        assert_eq!(escape("~/"), "~0~1");
    }
}
