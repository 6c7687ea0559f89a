//! Paths into nested JSON: how a field below the top level of a payload is named.
//!
//! A path is a list of segments: object keys, and `[]` for "each element of the array".
//!
//! - **Text form**: segments joined by `.`; `[]` follows its array's segment without a dot
//!   (`payload.commits[].sha`). A key other than `[A-Za-z0-9_-]+` is written as a JSON string
//!   (`labels."app.kubernetes.io/name"`). A path of one key is that key as written, so the
//!   top-level keys of flat payloads keep their names; only a single key holding `.`, `[`, `]`
//!   or `"` (or the empty key) is quoted, so that the text form stays unambiguous.
//! - **Array form**: one element per segment, `[]` as its own element
//!   (`{payload,commits,[],sha}`).
//!
//! [`Path::parse`] reads what [`Path`]'s `Display` writes (and is lenient: an unquoted key may
//! hold any character but `.`, `[`, `]` and `"`); `parse(p.to_string()) == p` for every path.

use std::fmt;

use crate::error::CoreError;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// A member of an object.
    Key(String),
    /// Every element of an array.
    Items,
}

/// A path from the top of a payload (never empty; the first segment is a key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(Vec<Segment>);

/// The array-form element standing for [`Segment::Items`].
pub const ITEMS: &str = "[]";

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::InvalidArgument {
        what: "path",
        message: message.into(),
    }
}

/// Whether a key may be written bare inside a longer path.
fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether a path of this one key may be written bare (today's top-level keys).
fn is_plain_alone(key: &str) -> bool {
    !key.is_empty() && !key.contains(['.', '[', ']', '"'])
}

fn quoted(key: &str) -> String {
    serde_json::to_string(key).expect("a string serializes")
}

impl Path {
    /// The path of one top-level key.
    pub fn key(key: impl Into<String>) -> Path {
        Path(vec![Segment::Key(key.into())])
    }

    /// The path of a member of the object at this path.
    pub fn child(&self, key: impl Into<String>) -> Path {
        let mut s = self.0.clone();
        s.push(Segment::Key(key.into()));
        Path(s)
    }

    /// The path of the elements of the array at this path.
    pub fn items(&self) -> Path {
        let mut s = self.0.clone();
        s.push(Segment::Items);
        Path(s)
    }

    /// The segments, first to last.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a path has at least one segment.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last key, if the path ends with a key (not `[]`).
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// The path without its last segment (`None` for a one-segment path).
    pub fn parent(&self) -> Option<Path> {
        (self.0.len() > 1).then(|| Path(self.0[..self.0.len() - 1].to_vec()))
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &Path) -> bool {
        self.0.starts_with(&other.0)
    }

    /// Whether some segment is `[]` (the path reaches into array elements).
    pub fn has_items(&self) -> bool {
        self.0.contains(&Segment::Items)
    }

    /// The keys of the path, first to last; `None` when it reaches into array elements.
    pub fn keys(&self) -> Option<Vec<&str>> {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Items => None,
            })
            .collect()
    }

    /// The text every member's path starts with: the text form of a member is this prefix
    /// followed by the member's segment (`actor.` for `actor`; `"a b".` for the key `a b`,
    /// which a longer path quotes).
    pub fn member_prefix(&self) -> String {
        let probe = self.child("x").to_string();
        probe[..probe.len() - 1].to_string()
    }

    /// Builds a path from segments; the first must be a key.
    pub fn from_segments(segments: Vec<Segment>) -> Result<Path, CoreError> {
        match segments.first() {
            None => Err(invalid("a path needs at least one segment")),
            Some(Segment::Items) => Err(invalid(
                "a path starts with a key: payloads are objects, not arrays",
            )),
            Some(Segment::Key(_)) => Ok(Path(segments)),
        }
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Path, CoreError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut expect_key = true;
        loop {
            if let Some(r) = rest.strip_prefix(ITEMS) {
                if segments.is_empty() {
                    return Err(invalid(format!(
                        "\"{text}\" starts with []; a path starts with a key"
                    )));
                }
                segments.push(Segment::Items);
                rest = r;
                expect_key = false;
            } else if expect_key {
                let (key, r) = if rest.starts_with('"') {
                    let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
                    let key = match de.next() {
                        Some(Ok(k)) => k,
                        _ => {
                            return Err(invalid(format!(
                                "\"{text}\" has an unterminated or invalid quoted key"
                            )))
                        }
                    };
                    (key, &rest[de.byte_offset()..])
                } else {
                    let end = rest.find(['.', '[', ']', '"']).unwrap_or(rest.len());
                    if end == 0 {
                        return Err(invalid(format!(
                            "\"{text}\" has an empty key; quote it as \"\""
                        )));
                    }
                    (rest[..end].to_string(), &rest[end..])
                };
                segments.push(Segment::Key(key));
                rest = r;
                expect_key = false;
            } else if rest.is_empty() {
                break;
            } else if let Some(r) = rest.strip_prefix('.') {
                rest = r;
                expect_key = true;
            } else {
                return Err(invalid(format!(
                    "\"{text}\": expected '.', '[]' or the end after a segment, found \"{rest}\""
                )));
            }
            if rest.is_empty() && !expect_key {
                break;
            }
        }
        Path::from_segments(segments)
    }

    /// Reads the array form (`[]` elements are array elements).
    pub fn from_array<S: AsRef<str>>(elements: &[S]) -> Result<Path, CoreError> {
        Path::from_segments(
            elements
                .iter()
                .map(|e| match e.as_ref() {
                    ITEMS => Segment::Items,
                    k => Segment::Key(k.to_string()),
                })
                .collect(),
        )
    }

    /// The array form.
    pub fn to_array(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k.clone(),
                Segment::Items => ITEMS.to_string(),
            })
            .collect()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [Segment::Key(k)] = self.0.as_slice() {
            return if is_plain_alone(k) {
                f.write_str(k)
            } else {
                f.write_str(&quoted(k))
            };
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Items => f.write_str(ITEMS)?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_plain(k) {
                        f.write_str(k)?;
                    } else {
                        f.write_str(&quoted(k))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Sets `value` at the keys `keys` (at least one) below `object`, creating the objects on the
/// way; a value on the way that is not an object is replaced by one.
pub fn insert_at(
    object: &mut serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
    value: serde_json::Value,
) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut at = object;
    for k in parents {
        let slot = at.entry(k.to_string()).or_insert(serde_json::Value::Null);
        if !slot.is_object() {
            *slot = serde_json::Value::Object(serde_json::Map::new());
        }
        at = slot.as_object_mut().expect("made an object above");
    }
    at.insert(last.to_string(), value);
}

/// The text form of a top-level key's member `key` (the common case, without building a path).
pub fn join(parent: &str, key: &str) -> String {
    match Path::parse(parent) {
        Ok(p) => p.child(key).to_string(),
        Err(_) => Path::key(parent).child(key).to_string(),
    }
}

/// The path named by a text that may be a stored key from before nested paths existed: a text
/// that does not parse is one key.
pub fn lenient(text: &str) -> Path {
    Path::parse(text).unwrap_or_else(|_| Path::key(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(p: &Path) -> Vec<String> {
        p.to_array()
    }

    #[test]
    fn text_forms() {
        let cases: &[(&str, &[&str])] = &[
            ("mag", &["mag"]),
            (
                "payload.commits[].sha",
                &["payload", "commits", "[]", "sha"],
            ),
            ("tags[]", &["tags", "[]"]),
            ("matrix[][]", &["matrix", "[]", "[]"]),
            (
                "labels.\"app.kubernetes.io/name\"",
                &["labels", "app.kubernetes.io/name"],
            ),
            ("Beak Length (mm)", &["Beak Length (mm)"]),
            ("\"a.b\"", &["a.b"]),
            ("properties.\"Beak Length\"", &["properties", "Beak Length"]),
            ("geometry.coordinates", &["geometry", "coordinates"]),
            ("\"\"", &[""]),
            ("a.\"\"", &["a", ""]),
            ("x-y.z_1", &["x-y", "z_1"]),
        ];
        for (text, array) in cases {
            let p = Path::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(keys(&p), *array, "{text}");
            assert_eq!(&p.to_string(), text);
            assert_eq!(Path::from_array(array).unwrap(), p);
        }
    }

    #[test]
    fn lenient_bare_keys_print_quoted() {
        let p = Path::parse("properties.Beak Length").unwrap();
        assert_eq!(keys(&p), ["properties", "Beak Length"]);
        assert_eq!(p.to_string(), "properties.\"Beak Length\"");
    }

    #[test]
    fn refuses_malformed() {
        for text in [
            "", ".a", "a.", "a..b", "[]", "[].a", "a[", "a[x]", "a.\"b", "a\"b\"", "a]",
        ] {
            let e = Path::parse(text).expect_err(text);
            assert!(
                matches!(e, CoreError::InvalidArgument { what: "path", .. }),
                "{text}"
            );
        }
        assert!(Path::from_array::<&str>(&[]).is_err());
        assert!(Path::from_array(&["[]", "a"]).is_err());
    }

    #[test]
    fn navigation() {
        let p = Path::parse("payload.commits[].sha").unwrap();
        assert_eq!(p.last_key(), Some("sha"));
        assert_eq!(p.parent().unwrap().to_string(), "payload.commits[]");
        assert!(p.has_items());
        assert!(p.starts_with(&Path::parse("payload").unwrap()));
        assert!(!Path::key("pay")
            .child("x")
            .starts_with(&Path::key("payload")));
        assert_eq!(
            Path::key("a").child("b c").items().to_string(),
            "a.\"b c\"[]"
        );
        assert_eq!(join("actor", "login"), "actor.login");
        assert_eq!(join("a.b", "c"), "a.b.c");
        assert_eq!(lenient("a.").to_array(), ["a."]);
        assert_eq!(Path::parse("a.b").unwrap().keys(), Some(vec!["a", "b"]));
        assert_eq!(Path::parse("a[].b").unwrap().keys(), None);
        assert_eq!(Path::key("actor").member_prefix(), "actor.");
        assert_eq!(Path::key("a b").member_prefix(), "\"a b\".");
        assert_eq!(
            Path::key("a b").child("c").to_string(),
            format!("{}c", Path::key("a b").member_prefix())
        );
        let mut o = serde_json::Map::new();
        insert_at(&mut o, &["a", "b"], serde_json::json!(1));
        insert_at(&mut o, &["a", "c", "d"], serde_json::json!(2));
        insert_at(&mut o, &["x"], serde_json::json!(3));
        insert_at(&mut o, &["x", "y"], serde_json::json!(4));
        assert_eq!(
            serde_json::Value::Object(o),
            serde_json::json!({"a": {"b": 1, "c": {"d": 2}}, "x": {"y": 4}})
        );
    }

    fn segment() -> impl Strategy<Value = Segment> {
        prop_oneof![
            3 => "[a-z_]{1,6}".prop_map(Segment::Key),
            2 => any::<String>().prop_map(Segment::Key),
            1 => Just(Segment::Items),
        ]
    }

    proptest! {
        #[test]
        fn text_round_trip(first in any::<String>(), rest in proptest::collection::vec(segment(), 0..6)) {
            let mut segments = vec![Segment::Key(first)];
            segments.extend(rest);
            let p = Path::from_segments(segments).unwrap();
            prop_assume!(!p.segments().contains(&Segment::Key(ITEMS.to_string())));
            let text = p.to_string();
            prop_assert_eq!(Path::parse(&text).unwrap(), p.clone());
            prop_assert_eq!(Path::from_array(&p.to_array()).unwrap(), p);
        }
    }
}
