//! Near-duplicate name detection for entity types and attributes.
//!
//! Names are first [normalized](normalize) so that spelling variants of one word
//! (`earthquakes`, `Earth_Quake`, `EarthQuake`, `earth-quakes`) compare equal, then
//! [scored](similarity) with the normalized Levenshtein similarity.

/// The score at or above which two names are usually worth flagging as near-duplicates.
pub const DEFAULT_THRESHOLD: f64 = 0.85;

/// Characters that separate words in a name.
fn is_separator(c: char) -> bool {
    matches!(c, '_' | '-' | '.') || c.is_whitespace()
}

/// Splits a name into words at separators and camelCase boundaries: `parseHTTPResponse_code`
/// gives `parse`, `HTTP`, `Response`, `code`.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if is_separator(c) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c.is_uppercase() && !current.is_empty() {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // `earthQuake` splits before `Q`; `HTTPResponse` splits before the `R` that starts
            // a capitalized word.
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_is_lower) {
                out.push(std::mem::take(&mut current));
            }
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A simple English singularization of a lower-case word:
///
/// * `ies` → `y` (`cities` → `city`);
/// * `ses`, `xes`, `ches`, `shes` lose the `es` (`buses` → `bus`, `boxes` → `box`,
///   `matches` → `match`, `dishes` → `dish`);
/// * otherwise a trailing `s` is dropped unless it follows another `s` (`class`) or a `u`
///   (`status`, `bonus`);
/// * words of three letters or fewer are left alone (`gas`, `bus`, `its`).
fn singularize(word: &str) -> String {
    if word.chars().count() <= 3 {
        return word.to_string();
    }
    if let Some(stem) = word.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for suffix in ["ses", "xes", "ches", "shes"] {
        if word.ends_with(suffix) {
            return word[..word.len() - 2].to_string();
        }
    }
    if let Some(stem) = word.strip_suffix('s') {
        if !stem.ends_with('s') && !stem.ends_with('u') {
            return stem.to_string();
        }
    }
    word.to_string()
}

/// The canonical form of a name for comparison: words split at separators (`_`, `-`, `.`,
/// whitespace) and camelCase boundaries, lower-cased and joined without separators, then the
/// last word singularized (see the rules below; a last word of three letters or fewer is kept).
///
/// `earthquakes`, `Earth_Quake`, `EarthQuake` and `earth-quakes` all give `earthquake`.
///
/// Singularization: `ies` → `y`; `ses`, `xes`, `ches`, `shes` drop the `es`; otherwise a
/// trailing `s` is dropped unless it follows `s` or `u` (`class`, `status`).
pub fn normalize(name: &str) -> String {
    let mut words: Vec<String> = words(name).iter().map(|w| w.to_lowercase()).collect();
    if let Some(last) = words.last_mut() {
        *last = singularize(last);
    }
    words.concat()
}

/// How alike two names are, in `[0, 1]`: the normalized Levenshtein similarity
/// (`1 - edit distance / length of the longer name`) of the [normalized](normalize) names.
/// Names that normalize to the same string score `1.0`.
///
/// Levenshtein is used rather than Jaro-Winkler because Jaro-Winkler rewards a shared prefix
/// heavily and so over-scores short names that are prefixes of longer ones (`mag` and
/// `magType`), which are usually distinct fields.
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (normalize(a), normalize(b));
    if a == b {
        return 1.0;
    }
    strsim::normalized_levenshtein(&a, &b).clamp(0.0, 1.0)
}

/// Every name of `existing` whose [`similarity`] to `name` is at least `threshold`, with its
/// score, best first (ties by name). A name exactly equal to `name` is skipped, as are repeats.
pub fn similar_names<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
    threshold: f64,
) -> Vec<(String, f64)> {
    let normalized = normalize(name);
    let mut out: Vec<(String, f64)> = Vec::new();
    for candidate in existing {
        if candidate == name || out.iter().any(|(n, _)| n == candidate) {
            continue;
        }
        let other = normalize(candidate);
        let score = if other == normalized {
            1.0
        } else {
            strsim::normalized_levenshtein(&normalized, &other).clamp(0.0, 1.0)
        };
        if score >= threshold {
            out.push((candidate.to_string(), score));
        }
    }
    out.sort_by(|(an, a), (bn, b)| b.total_cmp(a).then_with(|| an.cmp(bn)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_spelling_variants() {
        for name in [
            "earthquakes",
            "Earth_Quake",
            "EarthQuake",
            "earth-quakes",
            "earthquake",
            "EARTHQUAKES",
            "earth quake",
            "earth.quakes",
        ] {
            assert_eq!(normalize(name), "earthquake", "{name}");
        }
    }

    #[test]
    fn singularization_rules() {
        let cases = [
            ("cities", "city"),
            ("buses", "bus"),
            ("boxes", "box"),
            ("matches", "match"),
            ("dishes", "dish"),
            ("persons", "person"),
            ("class", "class"),
            ("status", "status"),
            ("statuses", "status"),
            ("gas", "gas"),
            ("ids", "ids"),
            ("user_ids", "userids"),
            ("tagIds", "tagids"),
            ("natural_gases", "naturalgas"),
            ("mag", "mag"),
            ("magTypes", "magtype"),
            ("parseHTTPRequests", "parsehttprequest"),
            // The rules are simple: a word ending in `se` loses its `e` in the plural.
            ("responses", "respons"),
            ("HTTPStatus", "httpstatus"),
            ("", ""),
            ("__", ""),
        ];
        for (name, expected) in cases {
            assert_eq!(normalize(name), expected, "{name}");
        }
    }

    #[test]
    fn splits_words() {
        assert_eq!(
            words("parseHTTPResponse_code"),
            vec!["parse", "HTTP", "Response", "code"]
        );
        assert_eq!(words("v2Items"), vec!["v2", "Items"]);
        assert_eq!(words("--a--b--"), vec!["a", "b"]);
    }

    #[test]
    fn spelling_variants_are_similar() {
        for name in ["earthquakes", "Earth_Quake", "EarthQuake", "earth-quakes"] {
            assert!(
                similarity(name, "earthquake") >= 0.85,
                "{name}: {}",
                similarity(name, "earthquake")
            );
        }
        assert!(similarity("person", "persons") >= 0.85);
        assert_eq!(similarity("earthquake", "earthquake"), 1.0);
        assert_eq!(similarity("", ""), 1.0);
    }

    #[test]
    fn distinct_names_are_not_similar() {
        for (a, b) in [
            ("earthquake", "place"),
            ("user", "users_group"),
            ("mag", "magType"),
        ] {
            let s = similarity(a, b);
            assert!(s < 0.85, "{a} vs {b}: {s}");
            assert_eq!(s, similarity(b, a));
        }
        assert_eq!(similarity("abc", ""), 0.0);
    }

    #[test]
    fn similar_names_orders_and_excludes_the_exact_name() {
        let existing = [
            "place",
            "earthquake",
            "earth_quakes",
            "Earthquakes",
            "earthquakez",
            "earthquake",
            "user",
        ];
        let found = similar_names("earthquake", existing, 0.85);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["Earthquakes", "earth_quakes", "earthquakez"]);
        assert_eq!(found[0].1, 1.0);
        assert_eq!(found[1].1, 1.0);
        assert!(found[2].1 >= 0.85 && found[2].1 < 1.0);

        // A lower threshold admits more, still best first.
        let found = similar_names("user", ["users", "uses", "place", "user"], 0.5);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["users", "uses"]);

        assert!(similar_names("earthquake", ["place", "user"], DEFAULT_THRESHOLD).is_empty());
        assert!(similar_names("x", Vec::<&str>::new(), 0.0).is_empty());
    }

    proptest! {
        #[test]
        fn similarity_is_a_symmetric_score(a in "[A-Za-z_ -]{0,20}", b in "[A-Za-z_ -]{0,20}") {
            let s = similarity(&a, &b);
            prop_assert!((0.0..=1.0).contains(&s));
            prop_assert_eq!(s, similarity(&b, &a));
            prop_assert_eq!(similarity(&a, &a), 1.0);
        }
    }
}
