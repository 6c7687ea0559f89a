//! jsonb values kept as raw bytes, so a cached schema is returned with one memcpy instead of a
//! serialize + parse round trip.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::nullable::Nullable;
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
        let ptr = datum(&value).cast_mut_ptr::<pg_sys::varlena>();
        // SAFETY: `ptr` is the plain (untoasted) varlena `datum` just built in this context.
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
        // SAFETY: copies this value's bytes into a fresh palloc'd buffer of their length.
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

/// A jsonb argument read exactly: every digit of every number kept (serde_json with
/// `arbitrary_precision`), nesting bounded before parsing (54000), and NULL refused with 22004
/// where the argument is required. pgrx's `JsonB` argument would instead raise internal errors
/// for numbers beyond f64 and for deep nesting.
pub struct Json(pub serde_json::Value);

impl Json {
    /// Reads a jsonb datum; bad input is a pure-layer error with its SQLSTATE.
    ///
    /// # Safety
    /// `datum` must be a valid (possibly toasted) jsonb datum.
    pub unsafe fn read(datum: pg_sys::Datum) -> Result<Json, evolve_core::CoreError> {
        // SAFETY: per the contract, a valid jsonb varlena; jsonb_out returns a palloc'd C
        // string, freed once parsed.
        unsafe {
            let varlena = datum.cast_mut_ptr::<pg_sys::varlena>();
            let detoasted = pg_sys::pg_detoast_datum_packed(varlena);
            let text = pgrx::direct_function_call::<&core::ffi::CStr>(
                pg_sys::jsonb_out,
                &[Some(pg_sys::Datum::from(detoasted))],
            )
            .expect("jsonb_out returns text");
            let parsed = evolve_core::number::parse_exact(&text.to_string_lossy());
            pg_sys::pfree(text.as_ptr() as *mut core::ffi::c_void);
            if detoasted != varlena {
                pg_sys::pfree(detoasted.cast());
            }
            parsed.map(Json)
        }
    }

    /// Reads the jsonb a user function returned.
    ///
    /// # Safety
    /// `datum` must be a valid jsonb datum.
    pub unsafe fn from_result_datum(datum: pg_sys::Datum) -> Result<Json, String> {
        // SAFETY: forwarded contract.
        unsafe { Json::read(datum) }.map_err(|e| e.to_string())
    }
}

impl FromDatum for Json {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Json> {
        if is_null {
            return None;
        }
        // SAFETY: PostgreSQL passes a jsonb datum for a jsonb argument.
        Some(unsafe { Json::read(datum) }.unwrap_or_else(|e| crate::error::raise_core(e)))
    }
}

// SAFETY: the argument is read with FromDatum above; NULL is refused for a required argument.
unsafe impl<'fcx> ArgAbi<'fcx> for Json {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: forwarded from the caller.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| {
            crate::error::raise(
                evolve_core::SqlState::NullValueNotAllowed,
                format!("argument {} must not be NULL", index + 1),
                None,
                Some("Pass a JSON document.".into()),
            )
        })
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: forwarded from the caller.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: Json is read from a jsonb argument.
unsafe impl SqlTranslatable for Json {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(Json);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

/// Builds a jsonb datum from a JSON value without going through text: a container is pushed
/// into PostgreSQL's own jsonb builder (`pushJsonbValue`, as `jsonb_in` does after lexing), a
/// scalar is laid out directly ([`scalar_datum`]); strings as they are, numbers through
/// `numeric_in` with their exact digits (the values are read with arbitrary precision). The
/// datum is palloc'd in the current memory context.
pub fn datum(value: &serde_json::Value) -> pg_sys::Datum {
    if let Some(d) = scalar_datum(value) {
        return d;
    }
    // SAFETY: every JsonbValue pushed points into `value`, which outlives the call, or at a
    // numeric palloc'd here; JsonbValueToJsonb copies all of it into the new datum before
    // returning, and pushJsonbValue only reads its argument.
    unsafe {
        if is_scalar(value) {
            let mut v = scalar(value);
            return pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(&mut v));
        }
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        let result = push(&mut state, value);
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(result))
    }
}

// The layout of a jsonb scalar (src/include/utils/jsonb.h): a one-element array container
// flagged scalar, its one JEntry (the first of a container stores its end offset), the data.
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FARRAY: u32 = 0x4000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;

/// A scalar's jsonb datum, byte for byte what `JsonbValueToJsonb` makes of it (the in-backend
/// tests compare the two), without its builder's parse state and intermediate copies: one palloc
/// (and `numeric_in` for a number). None for a container, or a string too long for a JEntry
/// (left to PostgreSQL's builder and its error).
pub fn scalar_datum(value: &serde_json::Value) -> Option<pg_sys::Datum> {
    use serde_json::Value;
    // The data: a string's bytes, or a number's numeric varlena (at offset 12, int-aligned
    // already, so with no padding); none for a boolean or null.
    let (entry, data, numeric): (u32, &[u8], *mut pg_sys::varlena) = match value {
        Value::Null => (JENTRY_ISNULL, &[], std::ptr::null_mut()),
        Value::Bool(false) => (JENTRY_ISBOOL_FALSE, &[], std::ptr::null_mut()),
        Value::Bool(true) => (JENTRY_ISBOOL_TRUE, &[], std::ptr::null_mut()),
        Value::String(s) if s.len() <= JENTRY_OFFLENMASK as usize => {
            (JENTRY_ISSTRING, s.as_bytes(), std::ptr::null_mut())
        }
        Value::Number(n) => {
            let numeric = numeric(n.as_str());
            // SAFETY: numeric_in returns a complete numeric varlena, palloc'd.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    numeric as *const u8,
                    pgrx::varlena::varsize_any(numeric),
                )
            };
            (JENTRY_ISNUMERIC, bytes, numeric)
        }
        _ => return None,
    };
    let total = 12 + data.len();
    let container: [u32; 2] = [
        1 | JB_FARRAY | JB_FSCALAR,
        entry | data.len() as u32 | JENTRY_HAS_OFF,
    ];
    // SAFETY: a fresh palloc of `total` bytes, written whole: the varlena header, the container
    // header and JEntry, then the data; the numeric (if any) was palloc'd above and is copied
    // before it is freed.
    unsafe {
        let dst = pg_sys::palloc(total) as *mut u8;
        pgrx::varlena::set_varsize_4b(dst.cast(), total as i32);
        std::ptr::copy_nonoverlapping(container.as_ptr() as *const u8, dst.add(4), 8);
        std::ptr::copy_nonoverlapping(data.as_ptr(), dst.add(12), data.len());
        if !numeric.is_null() {
            pg_sys::pfree(numeric.cast());
        }
        Some(pg_sys::Datum::from(dst))
    }
}

/// A scalar's jsonb by PostgreSQL's own builder: the oracle of [`scalar_datum`]'s tests.
#[cfg(any(test, feature = "pg_test"))]
pub fn built_by_postgres(value: &serde_json::Value) -> pg_sys::Datum {
    // SAFETY: as in `datum`: the JsonbValue points into `value`, copied by the builder.
    unsafe {
        let mut v = scalar(value);
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(&mut v))
    }
}

/// A number's numeric, by `numeric_in` on its exact digits (NUL-terminated on the stack when
/// short, as nearly all are).
fn numeric(digits: &str) -> *mut pg_sys::varlena {
    // SAFETY: `cstr` is a NUL-terminated string that outlives the call; numeric_in takes
    // (cstring, typioparam, typmod) and returns a palloc'd numeric or raises.
    let call = |cstr: *const std::ffi::c_char| unsafe {
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                Some(pg_sys::Datum::from(cstr)),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1i32)),
            ],
        )
        .expect("numeric_in returns a value")
        .cast_mut_ptr::<pg_sys::varlena>()
    };
    let mut buf = [0u8; 64];
    if digits.len() < buf.len() {
        buf[..digits.len()].copy_from_slice(digits.as_bytes());
        call(buf.as_ptr() as *const std::ffi::c_char)
    } else {
        let owned = std::ffi::CString::new(digits).expect("no NUL in a number");
        call(owned.as_ptr())
    }
}

/// A `jsonb[]` argument built with [`datum`], one element per value (none NULL).
pub fn array<'a>(
    values: impl ExactSizeIterator<Item = &'a serde_json::Value>,
) -> pgrx::datum::DatumWithOid<'static> {
    let mut elems: Vec<pg_sys::Datum> = values.map(datum).collect();
    // SAFETY: `elems` holds jsonb varlena datums; jsonb's storage is (-1, by reference, int
    // alignment), and construct_array copies them into an array palloc'd in the current memory
    // context.
    unsafe {
        let array = pg_sys::construct_array(
            elems.as_mut_ptr(),
            elems.len() as i32,
            pg_sys::JSONBOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
        );
        pgrx::datum::DatumWithOid::new(pg_sys::Datum::from(array), pg_sys::JSONBARRAYOID)
    }
}

fn is_scalar(value: &serde_json::Value) -> bool {
    !matches!(
        value,
        serde_json::Value::Array(_) | serde_json::Value::Object(_)
    )
}

/// A scalar's JsonbValue; strings point into `value`.
///
/// # Safety
/// `value` must be a scalar and outlive every use of the result.
unsafe fn scalar(value: &serde_json::Value) -> pg_sys::JsonbValue {
    use serde_json::Value;
    // SAFETY: a zeroed JsonbValue is a valid jbvNull; the fields set match the type set.
    unsafe {
        let mut v: pg_sys::JsonbValue = std::mem::zeroed();
        match value {
            Value::Null => v.type_ = pg_sys::jbvType::jbvNull,
            Value::Bool(b) => {
                v.type_ = pg_sys::jbvType::jbvBool;
                v.val.boolean = *b;
            }
            Value::Number(n) => {
                v.type_ = pg_sys::jbvType::jbvNumeric;
                v.val.numeric = numeric(n.as_str()).cast();
            }
            Value::String(s) => {
                v.type_ = pg_sys::jbvType::jbvString;
                v.val.string.len = s.len() as i32;
                v.val.string.val = s.as_ptr() as *mut std::ffi::c_char;
            }
            Value::Array(_) | Value::Object(_) => unreachable!("containers are pushed"),
        }
        v
    }
}

/// Pushes a container and its members; returns the built value once the outermost ends.
///
/// # Safety
/// As for [`scalar`]: `value` outlives the conversion of the result.
unsafe fn push(
    state: &mut *mut pg_sys::JsonbParseState,
    value: &serde_json::Value,
) -> *mut pg_sys::JsonbValue {
    use pg_sys::JsonbIteratorToken as T;
    use serde_json::Value;
    // SAFETY: per the contract; pushJsonbValue copies each JsonbValue struct it is given.
    unsafe {
        match value {
            Value::Array(items) => {
                pg_sys::pushJsonbValue(state, T::WJB_BEGIN_ARRAY, std::ptr::null_mut());
                for item in items {
                    if is_scalar(item) {
                        let mut v = scalar(item);
                        pg_sys::pushJsonbValue(state, T::WJB_ELEM, &mut v);
                    } else {
                        push(state, item);
                    }
                }
                pg_sys::pushJsonbValue(state, T::WJB_END_ARRAY, std::ptr::null_mut())
            }
            Value::Object(members) => {
                pg_sys::pushJsonbValue(state, T::WJB_BEGIN_OBJECT, std::ptr::null_mut());
                for (key, member) in members {
                    let mut k: pg_sys::JsonbValue = std::mem::zeroed();
                    k.type_ = pg_sys::jbvType::jbvString;
                    k.val.string.len = key.len() as i32;
                    k.val.string.val = key.as_ptr() as *mut std::ffi::c_char;
                    pg_sys::pushJsonbValue(state, T::WJB_KEY, &mut k);
                    if is_scalar(member) {
                        let mut v = scalar(member);
                        pg_sys::pushJsonbValue(state, T::WJB_VALUE, &mut v);
                    } else {
                        push(state, member);
                    }
                }
                pg_sys::pushJsonbValue(state, T::WJB_END_OBJECT, std::ptr::null_mut())
            }
            _ => unreachable!("scalars are not pushed alone"),
        }
    }
}
