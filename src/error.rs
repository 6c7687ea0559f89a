//! Turning failures into PostgreSQL errors with a SQLSTATE, a detail and a hint.

use evolve_core::{CoreError, SqlState};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

fn code(state: SqlState) -> PgSqlErrorCode {
    match state {
        SqlState::InvalidParameterValue => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        SqlState::ProgramLimitExceeded => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        SqlState::UndefinedObject => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        SqlState::InvalidObjectDefinition => PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
        SqlState::ObjectNotInPrerequisiteState => {
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        }
        SqlState::ConfigurationLimitExceeded => {
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED
        }
    }
}

/// Raises an ERROR. Never returns.
#[track_caller]
pub fn raise(
    state: SqlState,
    message: impl Into<String>,
    detail: Option<String>,
    hint: Option<String>,
) -> ! {
    let mut report = ErrorReport::new(code(state), message.into(), "pg_evolve");
    if let Some(d) = detail {
        report = report.set_detail(d);
    }
    if let Some(h) = hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a pure-layer error with its SQLSTATE and hint.
#[track_caller]
pub fn raise_core(err: CoreError) -> ! {
    let hint = err.hint();
    raise(err.sqlstate(), err.to_string(), None, hint)
}

/// `Result<T, CoreError>` → `T`, raising on error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, CoreError> {
    #[track_caller]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise_core(e),
        }
    }
}

/// SPI failures are internal errors: the SQL pg_evolve runs is its own.
impl<T> OrRaise<T> for Result<T, pgrx::spi::Error> {
    #[track_caller]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => pgrx::error!("pg_evolve internal query failed: {e}"),
        }
    }
}
