//! JSON numbers kept exactly: parsing that keeps every digit and bounds nesting before any
//! recursion, integer detection by the number's text, and numeric comparison without rounding.
//!
//! serde_json is built with `arbitrary_precision`, so a [`serde_json::Number`] holds the text
//! it was read from: `123456789012345678901234567890`, `0.1000000000000000000000000001` and
//! `1e-400` survive a round trip through pg_evolve digit for digit. Code that needs a value
//! compares with [`cmp`] instead of going through `f64`.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::payload::MAX_PAYLOAD_DEPTH;
use crate::CoreError;

/// The deepest JSON any argument is read at: past the payload limit (64) and the definition
/// limit (32), which are checked afterwards with their own messages, and within the parser's
/// recursion limit (128), which would otherwise fail without a SQLSTATE of its own.
pub const MAX_JSON_DEPTH: usize = 2 * MAX_PAYLOAD_DEPTH;

/// How deep `text` nests, counting arrays and objects outside strings; stops counting past
/// `limit` (`None` then). Linear, no recursion.
pub fn depth_within(text: &str, limit: usize) -> Option<usize> {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return None;
                }
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Some(max)
}

/// Parses JSON text (as PostgreSQL prints jsonb) keeping every digit of every number. Refuses
/// nesting deeper than [`MAX_JSON_DEPTH`] with [`CoreError::TooDeep`] (54000) before parsing.
pub fn parse_exact(text: &str) -> Result<Value, CoreError> {
    if depth_within(text, MAX_JSON_DEPTH).is_none() {
        return Err(CoreError::TooDeep {
            what: "JSON value",
            limit: MAX_JSON_DEPTH,
        });
    }
    // The depth is bounded above, so the parser's own recursion limit is not needed.
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let parsed = serde::Deserialize::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| CoreError::InvalidArgument {
        what: "JSON value",
        message: e.to_string(),
    })
}

/// Whether a number is an integer by its text: no fraction and no exponent (`1e3` and `1.0`
/// are numbers, as JSON Schema's `integer` also reads only the value's form here).
pub fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || !n
            .to_string()
            .bytes()
            .any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// A decimal in normal form: sign, significant digits without leading or trailing zeros, and
/// the exponent of the first digit (value = 0.d1d2… × 10^exp); with the scale its text gives
/// (digits after the point minus the exponent), which `numeric` keeps.
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
    scale: i64,
}

fn decimal(text: &str) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut digits = Vec::with_capacity(int.len() + frac.len());
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        digits.push(b - b'0');
    }
    let lead = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..lead);
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let exp = exponent
        .checked_add(int.len() as i64)?
        .checked_sub(lead as i64)?;
    Some(Decimal {
        negative: negative && !digits.is_empty(),
        digits,
        exp,
        scale: (frac.len() as i64).checked_sub(exponent)?,
    })
}

fn cmp_magnitude(a: &Decimal, b: &Decimal) -> Ordering {
    match (a.digits.is_empty(), b.digits.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    a.exp.cmp(&b.exp).then_with(|| a.digits.cmp(&b.digits))
}

/// Compares two JSON numbers by value, exactly, whatever their size or precision.
pub fn cmp(a: &Number, b: &Number) -> Ordering {
    let (Some(x), Some(y)) = (decimal(&a.to_string()), decimal(&b.to_string())) else {
        return a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Equal);
    };
    match (x.negative, y.negative) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => cmp_magnitude(&x, &y),
        (true, true) => cmp_magnitude(&y, &x),
    }
}

/// The text PostgreSQL's `numeric` prints for a JSON number's text (what jsonb stores): the
/// exponent applied, as many digits after the point as the text had minus its exponent (at
/// least none), no leading zeros, no sign on zero. `None` when `text` is not a number or
/// its exponent is beyond what `numeric` takes (the database refuses those itself).
pub fn canonical_text(text: &str) -> Option<String> {
    let d = decimal(text)?;
    if d.exp.abs() > 1_000_000 || d.scale > 1_000_000 {
        return None;
    }
    // Digit `i` of the value counted from its first significant one ('0' outside them).
    let digit = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| d.digits.get(i))
            .map_or('0', |n| char::from(b'0' + n))
    };
    let scale = d.scale.max(0);
    let mut out = String::with_capacity((d.exp.max(1) + scale + 2) as usize);
    if d.negative {
        out.push('-');
    }
    if d.exp <= 0 {
        out.push('0');
    }
    out.extend((0..d.exp).map(digit));
    if scale > 0 {
        out.push('.');
        out.extend((d.exp..d.exp + scale).map(digit));
    }
    Some(out)
}

/// Puts a value in the form jsonb stores it in: numbers as [`canonical_text`], object members
/// in jsonb's order (shorter keys first, then by bytes). Values read back from jsonb are in
/// that form already; values made in memory (a cast step's numbers, a payload's member order)
/// may not be. Returns whether anything changed.
pub fn canonicalize(value: &mut Value) -> bool {
    match value {
        Value::Number(n) => {
            let text = n.as_str();
            if is_canonical(text) {
                return false;
            }
            match canonical_text(text) {
                Some(c) if c != text => match serde_json::from_str::<Number>(&c) {
                    Ok(m) => {
                        *n = m;
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            }
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| canonicalize(v) | c),
        Value::Object(members) => {
            let mut changed = members.values_mut().fold(false, |c, v| canonicalize(v) | c);
            let ordered = members
                .keys()
                .zip(members.keys().skip(1))
                .all(|(a, b)| jsonb_key_order(a, b) != Ordering::Greater);
            if !ordered {
                let mut entries: Vec<(String, Value)> =
                    std::mem::take(members).into_iter().collect();
                entries.sort_by(|a, b| jsonb_key_order(&a.0, &b.0));
                members.extend(entries);
                changed = true;
            }
            changed
        }
        _ => false,
    }
}

/// Whether a number's text is already [`canonical_text`]'s (most are): digits without leading
/// zeros, an optional fraction, no exponent, no sign on zero. Allocates nothing.
fn is_canonical(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(digits)
        && (unsigned.len() == text.len() || unsigned.bytes().any(|b| (b'1'..=b'9').contains(&b)))
}

/// jsonb's order of object keys: by length, then bytewise.
fn jsonb_key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        match serde_json::from_str::<Value>(text).unwrap() {
            Value::Number(n) => n,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn digits_survive_a_round_trip() {
        for text in [
            "123456789012345678901234567890",
            "3.14159265358979323846",
            "0.1000000000000000000000000001",
            "1e-400",
            "1e400",
            "-0.000000000000000000000000000000001",
        ] {
            let v = parse_exact(text).unwrap();
            let Value::Number(got) = &v else {
                panic!("{v}")
            };
            // Same value; digits written out exactly (an exponent may gain its sign).
            assert_eq!(cmp(got, &n(text)), Ordering::Equal, "{text}");
            assert_eq!(v.to_string().replace("e+", "e"), text);
        }
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(parse_exact(&ok).is_ok());
        for depth in [129, 10_000, 1_000_000] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let e = parse_exact(&deep).unwrap_err();
            assert_eq!(e.sqlstate().code(), "54000", "{depth}");
        }
        // Brackets inside strings do not count.
        let s = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(100), "{".repeat(100));
        assert_eq!(depth_within(&s, 64), Some(1));
    }

    #[test]
    fn integers_by_their_text() {
        for (text, int) in [
            ("1", true),
            ("-7", true),
            ("123456789012345678901234567890", true),
            ("1.0", false),
            ("1e3", false),
            ("0.5", false),
        ] {
            assert_eq!(is_integer(&n(text)), int, "{text}");
        }
    }

    #[test]
    fn exact_comparison() {
        use Ordering::*;
        for (a, b, want) in [
            ("1", "2", Less),
            ("10", "9", Greater),
            ("1.0", "1", Equal),
            ("1e2", "100", Equal),
            ("0.1000000000000000000000000001", "0.1", Greater),
            (
                "123456789012345678901234567891",
                "123456789012345678901234567890",
                Greater,
            ),
            ("-1", "1", Less),
            ("-2", "-1", Less),
            ("0", "-0", Equal),
            ("1e-400", "0", Greater),
            ("-1e-400", "0", Less),
            ("1e400", "1e399", Greater),
            ("0.001", "0.01", Less),
            ("12.5", "12.50000", Equal),
        ] {
            assert_eq!(cmp(&n(a), &n(b)), want, "{a} vs {b}");
            assert_eq!(cmp(&n(b), &n(a)), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn agrees_with_f64_where_f64_is_exact() {
        let values = [-1e6, -12.5, -1.0, -0.25, 0.0, 0.125, 1.0, 3.5, 1024.0, 1e9];
        for a in values {
            for b in values {
                let (x, y) = (n(&a.to_string()), n(&b.to_string()));
                assert_eq!(cmp(&x, &y), a.partial_cmp(&b).unwrap(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn canonical_text_is_what_numeric_prints() {
        for (input, expected) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("12", "12"),
            ("-12.50", "-12.50"),
            ("1e3", "1000"),
            ("1E+2", "100"),
            ("1.50e1", "15.0"),
            ("1.5e-3", "0.0015"),
            ("-1.0E-5", "-0.000010"),
            ("0.1", "0.1"),
            ("1e-2", "0.01"),
            ("123.456e2", "12345.6"),
            ("123.456e-1", "12.3456"),
            ("5e0", "5"),
            (
                "12345678901234567890.123456789012345678901234567890",
                "12345678901234567890.123456789012345678901234567890",
            ),
        ] {
            assert_eq!(canonical_text(input).as_deref(), Some(expected), "{input}");
        }
        assert_eq!(canonical_text("1e400").unwrap().len(), 401);
        assert_eq!(canonical_text("x"), None);
        assert_eq!(canonical_text("1e99999999"), None);
    }

    #[test]
    fn canonicalize_orders_members_as_jsonb_and_rewrites_numbers() {
        let mut v =
            parse_exact(r#"{"bb": 1E+2, "a": [1.50e1, {"zz": -0, "y": 2}], "c": "1e3"}"#).unwrap();
        assert!(canonicalize(&mut v));
        assert_eq!(
            v.to_string(),
            r#"{"a":[15.0,{"y":2,"zz":0}],"c":"1e3","bb":100}"#
        );
        assert!(!canonicalize(&mut v), "already canonical");
        for text in ["0", "12", "-12.50", "0.0015", "-0.1"] {
            assert!(is_canonical(text), "{text}");
        }
        for text in ["-0", "-0.00", "1e3", "007", "1.", ".5"] {
            assert!(!is_canonical(text), "{text}");
        }
    }
}
