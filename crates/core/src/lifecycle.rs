//! The lifecycle of a raw fragment (a payload field the schema does not declare).
//!
//! ```text
//! active ──promote──► promoted ──delete──► pending_deletion
//!  ▲  │ ◄──rollback──────┘                        ▲
//!  │  └──archive──► archived ──delete─────────────┘
//!  └──seen again──────┘
//! ```
//!
//! A fragment starts `active`. It is `promoted` when an attribute takes it over (a rollback of
//! that promotion makes it `active` again), or `archived` when it goes unused; an archived
//! fragment whose key is seen again becomes `active`. Promoted and archived fragments may be
//! marked `pending_deletion`, which is final. Staying in the same state is not a transition.

use std::fmt;

use crate::named::named_enum;

named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum FragmentState {
        Active = "active",
        Promoted = "promoted",
        Archived = "archived",
        PendingDeletion = "pending_deletion",
    }
}

impl fmt::Display for FragmentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every legal transition, as (from, to).
pub const LEGAL: &[(FragmentState, FragmentState)] = &[
    (FragmentState::Active, FragmentState::Promoted),
    (FragmentState::Active, FragmentState::Archived),
    (FragmentState::Promoted, FragmentState::PendingDeletion),
    (FragmentState::Archived, FragmentState::PendingDeletion),
    (FragmentState::Archived, FragmentState::Active),
    (FragmentState::Promoted, FragmentState::Active),
];

/// Whether a fragment may move from `from` to `to` (never to the state it is in).
pub fn can_transition(from: FragmentState, to: FragmentState) -> bool {
    LEGAL.contains(&(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FragmentState::*;

    #[test]
    fn names_round_trip() {
        for s in FragmentState::ALL {
            assert_eq!(FragmentState::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(FragmentState::parse("Active"), None);
        assert_eq!(FragmentState::parse("deleted"), None);
    }

    #[test]
    fn all_sixteen_pairs() {
        let table = [
            // from, to, legal
            (Active, Active, false),
            (Active, Promoted, true),
            (Active, Archived, true),
            (Active, PendingDeletion, false),
            (Promoted, Active, true),
            (Promoted, Promoted, false),
            (Promoted, Archived, false),
            (Promoted, PendingDeletion, true),
            (Archived, Active, true),
            (Archived, Promoted, false),
            (Archived, Archived, false),
            (Archived, PendingDeletion, true),
            (PendingDeletion, Active, false),
            (PendingDeletion, Promoted, false),
            (PendingDeletion, Archived, false),
            (PendingDeletion, PendingDeletion, false),
        ];
        assert_eq!(table.len(), 16);
        for from in FragmentState::ALL {
            for to in FragmentState::ALL {
                let want = table
                    .iter()
                    .find(|(f, t, _)| (*f, *t) == (from, to))
                    .map(|(_, _, legal)| *legal)
                    .unwrap();
                assert_eq!(can_transition(from, to), want, "{from} -> {to}");
            }
        }
        assert_eq!(LEGAL.len(), table.iter().filter(|(_, _, l)| *l).count());
    }
}
