//! L0: checks of the arguments users pass, and the one SPI precondition every writer shares.
//! Nothing here reads pg_evolve's tables.

use evolve_core::schema::{self, Definition};
use evolve_core::SqlState;
use serde_json::Value;

use crate::error::{raise, OrRaise};

/// Checks a user id argument: NULL means global; otherwise 1–256 bytes without control characters.
pub fn check_user_id(user_id: Option<&str>) {
    if let Some(u) = user_id {
        if !evolve_core::ident::is_valid_user_id(u) {
            raise(
                SqlState::InvalidParameterValue,
                format!("invalid user_id {u:?}"),
                Some(
                    "A user_id is 1 to 256 bytes of printable text; NULL means the global scope."
                        .into(),
                ),
                None,
            );
        }
    }
}

/// Checks an entity type name argument.
pub fn check_entity_type(entity_type: &str) {
    if let Some(problem) = evolve_core::ident::name_problem(entity_type) {
        raise(
            SqlState::InvalidParameterValue,
            format!("invalid entity type \"{entity_type}\": {problem}"),
            None,
            None,
        );
    }
}

pub fn parse_document(doc: &Value) -> Definition {
    let text_len = serde_json::to_string(doc)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    schema::check_limits("schema definition", doc, text_len).or_raise();
    Definition::parse_input(doc).or_raise()
}

/// Row locks need a read-write SPI execution: make sure the transaction has an xid, which is
/// how SPI decides.
pub fn writable_transaction() {
    // SAFETY: assigns (or returns) the current transaction id; raises an ERROR if impossible.
    unsafe { pgrx::pg_sys::GetCurrentTransactionId() };
}
