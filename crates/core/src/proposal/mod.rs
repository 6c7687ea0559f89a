//! Schema proposals, in three layers: the [`evidence`] for an undeclared key (scores,
//! temporal and reference detection, fingerprints, the re-proposal rule), the [`draft`]s built
//! from it for one scope, with the typed [`Action`] approval performs, and the safe SQL
//! ([`ddl`]) they preview and run.

mod action;
pub mod ddl;
pub mod draft;
pub mod evidence;
pub mod extract;
pub mod maps;

pub use action::{Action, Column};
