//! jsonb values kept as raw bytes, so a cached schema is returned with one memcpy instead of a
//! serialize + parse round trip.

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::JsonB;

/// A jsonb datum's bytes (header included).
pub struct RawJsonb(pub Box<[u8]>);

impl RawJsonb {
    /// Encodes a JSON value as jsonb bytes.
    pub fn encode(value: serde_json::Value) -> RawJsonb {
        let datum = JsonB(value).into_datum().expect("jsonb is never NULL");
        let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        // SAFETY: `ptr` is the plain (untoasted) varlena jsonb_in just built in this context.
        let bytes = unsafe {
            let len = pgrx::varlena::varsize_any(ptr);
            std::slice::from_raw_parts(ptr as *const u8, len)
        };
        let raw = RawJsonb(bytes.into());
        // SAFETY: the datum was palloc'd above and is not referenced anymore.
        unsafe { pg_sys::pfree(ptr.cast()) };
        raw
    }
}

impl RawJsonb {
    /// Decodes jsonb bytes back into a JSON value.
    pub fn decode(bytes: &[u8]) -> serde_json::Value {
        // SAFETY: `bytes` are a complete jsonb varlena (made by `encode`); the copy lives in the
        // current memory context for the duration of the conversion.
        unsafe {
            let dst = pg_sys::palloc(bytes.len()) as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            let value =
                JsonB::from_polymorphic_datum(pg_sys::Datum::from(dst), false, pg_sys::JSONBOID)
                    .map(|j| j.0)
                    .unwrap_or(serde_json::Value::Null);
            pg_sys::pfree(dst.cast());
            value
        }
    }
}

// SAFETY: the returned datum is a freshly palloc'd copy of valid jsonb bytes, in the memory
// context current at return, which is the one PostgreSQL expects results in.
unsafe impl BoxRet for RawJsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        unsafe {
            let dst = pg_sys::palloc(self.0.len()) as *mut u8;
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), dst, self.0.len());
            fcinfo.return_raw_datum(pg_sys::Datum::from(dst))
        }
    }
}

// SAFETY: RawJsonb is returned as a jsonb datum, so jsonb is its SQL type.
unsafe impl SqlTranslatable for RawJsonb {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(RawJsonb);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}
