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
        SqlState::DataException => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
        SqlState::UndefinedFunction => PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
        SqlState::InvalidFunctionDefinition => PgSqlErrorCode::ERRCODE_INVALID_FUNCTION_DEFINITION,
        SqlState::InsufficientPrivilege => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        SqlState::NullValueNotAllowed => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        SqlState::ReadOnlySqlTransaction => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        SqlState::UndefinedFile => PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
        SqlState::IoError => PgSqlErrorCode::ERRCODE_IO_ERROR,
        SqlState::InsufficientResources => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
        SqlState::SerializationFailure => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        SqlState::UniqueViolation => PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
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

/// A required argument: NULL raises 22004 naming it (functions that take optional arguments
/// cannot be STRICT, so their required ones are checked here).
#[track_caller]
pub fn required<T>(value: Option<T>, name: &str) -> T {
    value.unwrap_or_else(|| {
        raise(
            SqlState::NullValueNotAllowed,
            format!("{name} must not be NULL"),
            None,
            Some("Pass a value; only the arguments documented with a default may be omitted or NULL.".into()),
        )
    })
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

/// The five-character SQLSTATE of a caught error.
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let packed = code as isize as u32;
    (0..5)
        .map(|i| (((packed >> (6 * i)) & 0x3F) as u8 + b'0') as char)
        .collect()
}

/// Runs `f` inside a subtransaction: on error everything it did is rolled back and the error
/// is returned as (SQLSTATE, message) instead of aborting the transaction.
pub fn in_subtransaction<R>(
    f: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, (String, String)> {
    use pgrx::pg_sys;
    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::PgTryBuilder;
    // SAFETY: the standard PL pattern: begin an internal subtransaction, and on both paths
    // restore the caller's memory context and resource owner after ending it.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let result = PgTryBuilder::new(move || Ok(f()))
            .catch_others(|e| {
                Err(match e {
                    CaughtError::PostgresError(r)
                    | CaughtError::ErrorReport(r)
                    | CaughtError::RustPanic { ereport: r, .. } => {
                        (sqlstate_text(r.sql_error_code()), r.message().to_string())
                    }
                })
            })
            .execute();
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}
