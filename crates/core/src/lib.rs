//! The PostgreSQL-free heart of pg_evolve.
//!
//! Everything here is plain Rust, tested with `cargo test -p evolve-core`; the extension crate
//! only moves data between PostgreSQL and these functions.

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod cache;
pub mod compat;
pub mod diagram;
pub mod diff;
pub mod embed;
pub mod error;
pub mod fair;
pub mod hash;
pub mod ident;
pub mod impact;
pub mod infer;
pub mod interop;
pub mod lifecycle;
pub mod migrate;
mod named;
pub mod number;
pub mod path;
pub mod payload;
pub mod projection;
pub mod proposal;
pub mod reduce;
pub mod schema;
pub mod similarity;
mod validate;

pub use error::{CoreError, SqlState};

/// The evidence, SQL and diagram functions of proposals under the paths the SQL layer uses.
pub mod proposals {
    pub use crate::diagram::mermaid;
    pub use crate::proposal::ddl::*;
    pub use crate::proposal::evidence::*;
}

/// Drafting proposals, under the path the SQL layer uses.
pub mod propose {
    pub use crate::proposal::draft::*;
    pub use crate::proposal::extract::{Candidate, Identity};
    pub use crate::proposal::{Action, Column};
}
