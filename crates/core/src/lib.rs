//! The PostgreSQL-free heart of pg_evolve.
//!
//! Everything here is plain Rust, tested with `cargo test -p evolve-core`; the extension crate
//! only moves data between PostgreSQL and these functions.

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod cache;
pub mod compat;
pub mod diff;
pub mod embed;
pub mod error;
pub mod hash;
pub mod ident;
pub mod impact;
pub mod infer;
pub mod lifecycle;
pub mod migrate;
pub mod number;
pub mod payload;
pub mod proposals;
pub mod propose;
pub mod reduce;
pub mod schema;
pub mod similarity;
mod named;
mod validate;

pub use error::{CoreError, SqlState};
