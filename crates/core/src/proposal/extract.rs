//! Entity extraction: a nested object with an identity of its own becomes an entity type.
//!
//! An event's `repo` (`{"id": 7, "name": "x/y"}`) is not a property of the event: the same repo
//! appears in many events, always with the same name. It is proposed (kind `extract_entity`)
//! as its own type plus a relationship from the parent that embeds it.
//!
//! A **candidate** is an undeclared top-level object (its members are fragments `repo.id`,
//! `repo.name`, …) with at least two members, one of which [is named like an
//! identifier](id_key) and present in at least half of the parent's entities. The caller then
//! measures its **identity** in the data: how many objects carry the id, how many distinct ids
//! there are, and how consistent the other members are for one id. It is an entity when ids
//! repeat (at least [`MIN_REPEAT`] objects per id on average, and some id seen twice) and the
//! other members agree for one id in at least [`MIN_CONSISTENCY`] of the cases.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::evidence::KeyStats;
use crate::ident::is_valid_name;
use crate::path::{lenient, Path, Segment};

/// Least average number of objects per distinct id.
pub const MIN_REPEAT: f64 = 1.5;
/// Least share of (id, member) pairs with a single value.
pub const MIN_CONSISTENCY: f64 = 0.9;

/// The member names that identify an object, best first: `id`, then `<name>_id`, `uuid`,
/// `key`, `slug`.
pub fn id_key<'a>(members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let members: Vec<&str> = members.into_iter().collect();
    let rank = |m: &str| match m {
        "id" => Some(0),
        "uuid" | "guid" => Some(2),
        "key" | "slug" => Some(3),
        _ if m.ends_with("_id") || m.ends_with("Id") => Some(1),
        _ => None,
    };
    members
        .into_iter()
        .filter_map(|m| rank(m).map(|r| (r, m)))
        .min()
        .map(|(_, m)| m)
}

/// An object that may be an entity of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its path (one top-level key).
    pub path: Path,
    /// The member holding its id.
    pub id_key: String,
    /// The fragment key of the id (`repo.id`).
    pub id_fragment: String,
    /// The stats of its members, by member name.
    pub members: BTreeMap<String, KeyStats>,
}

/// What the data says about a candidate's identity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Identity {
    /// Objects carrying the id.
    pub occurrences: i64,
    /// Distinct ids.
    pub distinct: i64,
    /// Share of (id, other member) pairs with one value only (1 when there is nothing to
    /// compare).
    pub consistency: f64,
}

impl Identity {
    /// Whether the objects are entities: ids repeat, and one id means one set of values.
    pub fn is_entity(&self) -> bool {
        self.distinct >= 1
            && self.occurrences > self.distinct
            && self.occurrences as f64 >= MIN_REPEAT * self.distinct as f64
            && self.consistency >= MIN_CONSISTENCY
    }
}

/// The candidates among the undeclared keys of a scope with `entity_count` entities; `taken`
/// tells whether a top-level name is already declared (such objects are not candidates).
pub fn candidates(
    keys: &[KeyStats],
    entity_count: i64,
    taken: impl Fn(&str) -> bool,
) -> Vec<Candidate> {
    let mut objects: BTreeMap<String, BTreeMap<String, KeyStats>> = BTreeMap::new();
    for stats in keys {
        let path = lenient(&stats.key);
        if let [Segment::Key(parent), Segment::Key(member)] = path.segments() {
            objects
                .entry(parent.clone())
                .or_default()
                .insert(member.clone(), stats.clone());
        }
    }
    objects
        .into_iter()
        .filter(|(parent, members)| members.len() >= 2 && is_valid_name(parent) && !taken(parent))
        .filter_map(|(parent, members)| {
            let id = id_key(members.keys().map(String::as_str))?.to_string();
            let present = members[&id].sample_count as f64 / entity_count.max(1) as f64;
            (present >= 0.5).then(|| {
                let path = Path::key(parent);
                Candidate {
                    id_fragment: path.child(id.clone()).to_string(),
                    path,
                    id_key: id,
                    members,
                }
            })
        })
        .collect()
}

/// The definition of the extracted type: one attribute per member, typed as the fragments'
/// aggregates say (members that are not valid names are left out: they stay in the objects'
/// raw fragments of the new type).
pub fn definition(entity_type: &str, candidate: &Candidate, entity_count: i64) -> Value {
    let mut attributes = serde_json::Map::new();
    for (name, stats) in &candidate.members {
        if !is_valid_name(name) {
            continue;
        }
        if let Some(ev) = super::evidence::attribute_evidence(stats, entity_count) {
            attributes.insert(name.clone(), json!({"type": ev.inferred_type.as_str()}));
        }
    }
    json!({"entity_type": entity_type, "attributes": attributes})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(key: &str, n: i64, t: &str) -> KeyStats {
        KeyStats {
            key: key.into(),
            sample_count: n,
            frequency_total: n,
            type_counts: [(t.to_string(), n)].into(),
            unique_sources: 1,
            sample_values: vec![],
        }
    }

    #[test]
    fn id_keys() {
        assert_eq!(id_key(["name", "id", "repo_id"]), Some("id"));
        assert_eq!(id_key(["name", "repo_id"]), Some("repo_id"));
        assert_eq!(id_key(["login", "avatarId"]), Some("avatarId"));
        assert_eq!(id_key(["slug", "uuid"]), Some("uuid"));
        assert_eq!(id_key(["name", "idea", "valid"]), None);
    }

    #[test]
    fn candidates_and_identity() {
        let keys = vec![
            stats("repo.id", 100, "integer"),
            stats("repo.name", 100, "string"),
            stats("actor.login", 100, "string"),
            stats("actor.url", 100, "string"),
            stats("payload.size", 100, "integer"),
            stats("payload.id", 30, "integer"),
            stats("org.id", 100, "integer"),
            stats("org.login", 100, "string"),
            stats("deep.a.id", 100, "integer"),
            stats("deep.a.b", 100, "integer"),
        ];
        let found = candidates(&keys, 100, |n| n == "org");
        assert_eq!(
            found.iter().map(|c| c.path.to_string()).collect::<Vec<_>>(),
            ["repo"],
            "actor has no id, payload's id is rare, org is declared, deep.a is not top level"
        );
        assert_eq!(found[0].id_fragment, "repo.id");
        assert_eq!(
            definition("repo", &found[0], 100),
            json!({"entity_type": "repo", "attributes": {"id": {"type": "integer"}, "name": {"type": "string"}}})
        );
        let repeated = Identity {
            occurrences: 100,
            distinct: 12,
            consistency: 1.0,
        };
        assert!(repeated.is_entity());
        assert!(
            !Identity {
                occurrences: 100,
                distinct: 100,
                consistency: 1.0
            }
            .is_entity(),
            "every id once: no identity"
        );
        assert!(
            !Identity {
                occurrences: 100,
                distinct: 80,
                consistency: 1.0
            }
            .is_entity(),
            "ids barely repeat"
        );
        assert!(
            !Identity {
                occurrences: 100,
                distinct: 12,
                consistency: 0.5
            }
            .is_entity(),
            "one id, many names"
        );
        assert!(!Identity {
            occurrences: 0,
            distinct: 0,
            consistency: 1.0
        }
        .is_entity());
    }
}
