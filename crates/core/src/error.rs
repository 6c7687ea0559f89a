//! Errors of the pure layer, each carrying the SQLSTATE the SQL layer reports.

use thiserror::Error;

/// The SQLSTATEs pg_evolve reports. Every user-facing failure maps to one of these; the list is
/// documented in `docs/reference.md` so that callers can `EXCEPTION WHEN sqlstate '…'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 22023 invalid_parameter_value: a definition, patch or argument is malformed.
    InvalidParameterValue,
    /// 54000 program_limit_exceeded: a document is too large or too deeply nested.
    ProgramLimitExceeded,
    /// 42704 undefined_object: an entity type or version does not exist.
    UndefinedObject,
    /// 42P17 invalid_object_definition: a user extension contradicts the global schema.
    InvalidObjectDefinition,
    /// 55000 object_not_in_prerequisite_state: a change is incompatible under the type's mode,
    /// or the type is not in a state that allows the operation.
    ObjectNotInPrerequisiteState,
    /// 53400 configuration_limit_exceeded: a user's quota is exhausted.
    ConfigurationLimitExceeded,
    /// 22000 data_exception: a payload's schema conflict could not be resolved (reject strategy).
    DataException,
    /// 42883 undefined_function: a migration step names a function that does not exist.
    UndefinedFunction,
    /// 42P13 invalid_function_definition: a migration function is not jsonb → jsonb.
    InvalidFunctionDefinition,
    /// 42501 insufficient_privilege.
    InsufficientPrivilege,
    /// 22004 null_value_not_allowed: a required argument is NULL.
    NullValueNotAllowed,
    /// 25006 read_only_sql_transaction: a write on a hot standby.
    ReadOnlySqlTransaction,
    /// 58P01 undefined_file: the files of an in-process model are not installed.
    UndefinedFile,
    /// 58030 io_error: the files of an in-process model cannot be read or are not that model's.
    IoError,
    /// 53000 insufficient_resources: an in-process model's compute threads cannot be started.
    InsufficientResources,
    /// 40001 serialization_failure: a concurrent transaction deleted what this one writes to;
    /// retry.
    SerializationFailure,
    /// 23505 unique_violation: two keys of a distributed database derive the same entity id.
    UniqueViolation,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::InvalidParameterValue => "22023",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::UndefinedObject => "42704",
            SqlState::InvalidObjectDefinition => "42P17",
            SqlState::ObjectNotInPrerequisiteState => "55000",
            SqlState::ConfigurationLimitExceeded => "53400",
            SqlState::DataException => "22000",
            SqlState::UndefinedFunction => "42883",
            SqlState::InvalidFunctionDefinition => "42P13",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::NullValueNotAllowed => "22004",
            SqlState::ReadOnlySqlTransaction => "25006",
            SqlState::UndefinedFile => "58P01",
            SqlState::IoError => "58030",
            SqlState::InsufficientResources => "53000",
            SqlState::SerializationFailure => "40001",
            SqlState::UniqueViolation => "23505",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// The document at `path` (a JSON pointer such as `/attributes/mag/type`) is invalid.
    #[error("invalid schema definition at {path}: {message}")]
    InvalidDefinition { path: String, message: String },
    #[error("invalid {what}: {message}")]
    InvalidArgument { what: &'static str, message: String },
    #[error("{what} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{what} nests deeper than {limit} levels")]
    TooDeep { what: &'static str, limit: usize },
    #[error("user schema for \"{entity_type}\" {message}")]
    ExtensionViolation {
        entity_type: String,
        message: String,
    },
}

impl CoreError {
    pub fn sqlstate(&self) -> SqlState {
        match self {
            CoreError::InvalidDefinition { .. } | CoreError::InvalidArgument { .. } => {
                SqlState::InvalidParameterValue
            }
            CoreError::TooLarge { .. } | CoreError::TooDeep { .. } => {
                SqlState::ProgramLimitExceeded
            }
            CoreError::ExtensionViolation { .. } => SqlState::InvalidObjectDefinition,
        }
    }

    /// A hint for the user, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            CoreError::InvalidDefinition { .. } => Some(
                "A definition is {\"entity_type\": name, \"description\": text, \"attributes\": {name: {\"type\": ...}}, \"relationships\": {name: {\"target\": type}}}; see docs/reference.md.".into(),
            ),
            CoreError::TooLarge { .. } | CoreError::TooDeep { .. } => {
                Some("Definitions and patches are limited to 1 MiB and 32 levels of nesting; payloads to 8 MiB and 64 levels.".into())
            }
            CoreError::ExtensionViolation { .. } => Some(
                "A user schema may add attributes and relationships and override descriptions; change the global schema to remove or retype a global field.".into(),
            ),
            CoreError::InvalidArgument { .. } => None,
        }
    }

    pub(crate) fn def(path: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::InvalidDefinition {
            path: path.into(),
            message: message.into(),
        }
    }
}
