//! Names: which strings are valid schema identifiers, and how names from data become safe ones.

/// Longest identifier PostgreSQL keeps without truncation (NAMEDATALEN - 1).
pub const MAX_IDENT_LEN: usize = 63;

/// A schema name (entity type, attribute, relationship): an ASCII letter or underscore, then
/// letters, digits or underscores, at most 63 bytes. Such a name is safe as a JSON key and, once
/// quoted, as an SQL identifier.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_IDENT_LEN
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// A function name as users give it: `name` or `schema.name`, each part a valid name (a bare
/// name means `pg_catalog`; no search_path is consulted).
pub fn is_valid_function_name(name: &str) -> bool {
    let mut parts = name.split('.');
    let ok = |p: Option<&str>| p.is_some_and(is_valid_name);
    match (parts.next(), parts.next(), parts.next()) {
        (f, None, None) => ok(f),
        (s, f, None) => ok(s) && ok(f),
        _ => false,
    }
}

/// Why a name is invalid, for error messages.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_IDENT_LEN {
        Some("must be at most 63 bytes")
    } else if !is_valid_name(name) {
        Some("must start with a letter or underscore and hold only ASCII letters, digits and underscores")
    } else {
        None
    }
}

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 256;

/// A user id is 1 to 256 bytes of text without control characters.
pub fn is_valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_LEN
        && !user_id.chars().any(char::is_control)
}

/// Turns any key seen in data (`Beak Length (mm)`, `"; DROP TABLE x; --`, unicode, 200 chars)
/// into a valid lower-case name: runs of other characters become one underscore, a leading digit
/// gets a `f_` prefix, the result is cut to 63 bytes. Deterministic; the mapping is kept by the
/// caller.
pub fn safe_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut last_us = false;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            last_us = false;
        } else if !last_us && !out.is_empty() {
            out.push('_');
            last_us = true;
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("field");
    }
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert_str(0, "f_");
    }
    out.truncate(MAX_IDENT_LEN);
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for ok in ["lower", "app.embed_batch", "_s._f"] {
            assert!(is_valid_function_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a.b.c",
            "a b.c",
            "a;drop.x",
            "pg_temp.f\"x",
        ] {
            assert!(!is_valid_function_name(bad), "{bad}");
        }
    }

    #[test]
    fn valid_names() {
        for ok in ["mag", "magType", "_x", "a1", &"a".repeat(63)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a b", "é", "a;b", &"a".repeat(64), "\"x\""] {
            assert!(!is_valid_name(bad), "{bad}");
            assert!(name_problem(bad).is_some());
        }
    }

    #[test]
    fn user_ids() {
        assert!(is_valid_user_id("ana"));
        assert!(is_valid_user_id("tenant 42 / ünï"));
        assert!(is_valid_user_id(&"u".repeat(256)));
        for bad in ["", "a\nb", "tab\there", &"u".repeat(257)] {
            assert!(!is_valid_user_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn safe_names_are_valid() {
        let cases = [
            ("Beak Length (mm)", "beak_length_mm"),
            ("Running Time min", "running_time_min"),
            ("\"; DROP TABLE x; --", "drop_table_x"),
            ("ünïcödé", "n_c_d"),
            ("123abc", "f_123abc"),
            ("***", "field"),
        ];
        for (raw, want) in cases {
            assert_eq!(safe_name(raw), want, "{raw}");
            assert!(is_valid_name(&safe_name(raw)));
        }
        let long = "x".repeat(200);
        assert_eq!(safe_name(&long).len(), 63);
    }
}
