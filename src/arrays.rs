//! L0: `text[]` arguments of the bulk statements, laid out in one allocation. (pgrx builds an
//! array element by element, each copied into a text datum, then into an accumulator, then into
//! the array; a batch of the inbox passes a dozen such columns of up to 55k elements.)

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;

/// An element of a `text[]` argument: NULL for None.
pub trait TextElem {
    fn text(&self) -> Option<&str>;
}

impl TextElem for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl TextElem for &str {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl TextElem for Option<String> {
    fn text(&self) -> Option<&str> {
        self.as_deref()
    }
}

impl TextElem for Option<&str> {
    fn text(&self) -> Option<&str> {
        *self
    }
}

const VARHDRSZ: usize = 4;

fn intalign(n: usize) -> usize {
    (n + 3) & !3
}

fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

/// A one-dimensional `text[]` of `items`, byte for byte what `construct_md_array` makes of the
/// same elements (the in-backend tests compare the two), palloc'd in the current memory context.
pub fn text<T: TextElem>(items: &[T]) -> DatumWithOid<'static> {
    let n = items.len();
    if n == 0 {
        // SAFETY: returns a palloc'd empty array of the given element type.
        let empty = unsafe { pg_sys::construct_empty_array(pg_sys::TEXTOID) };
        // SAFETY: `empty` is a text[] datum.
        return unsafe { DatumWithOid::new(pg_sys::Datum::from(empty), pg_sys::TEXTARRAYOID) };
    }
    // The layout of src/include/utils/array.h: the header (length, ndim, dataoffset, element
    // type), the dimension and lower bound, the null bitmap if any element is NULL (bit set: not
    // NULL), then at a MAXALIGN'd offset each element as a 4-byte-header varlena, padded to an
    // int boundary (the last one too).
    let has_nulls = items.iter().any(|i| i.text().is_none());
    let header = 16 + 2 * 4;
    let data_offset = if has_nulls {
        maxalign(header + n.div_ceil(8))
    } else {
        maxalign(header)
    };
    let data_len: usize = items
        .iter()
        .filter_map(|i| i.text())
        .map(|s| intalign(VARHDRSZ + s.len()))
        .sum();
    let total = data_offset + data_len;
    // palloc's limit (MaxAllocSize), which would refuse it with an internal error.
    if total > 0x3fff_ffff {
        crate::error::raise(
            evolve_core::SqlState::ProgramLimitExceeded,
            format!("a statement's column of {n} values needs {total} bytes, more than 1 GB"),
            None,
            Some("Ingest fewer payloads per statement (or lower evolve.inbox_batch_size).".into()),
        );
    }
    // SAFETY: palloc0 of `total` bytes, every write below within them: the fixed header, the
    // bitmap before `data_offset`, each element within the padded length the sizing above
    // counted for it (padding bytes stay zero, as construct_md_array leaves them).
    unsafe {
        let base = pg_sys::palloc0(total) as *mut u8;
        pgrx::varlena::set_varsize_4b(base.cast(), total as i32);
        let words = [
            1i32,                                           // ndim
            if has_nulls { data_offset as i32 } else { 0 }, // dataoffset
            u32::from(pg_sys::TEXTOID) as i32,              // elemtype
            n as i32,                                       // dims[0]
            1,                                              // lbound[0]
        ];
        std::ptr::copy_nonoverlapping(words.as_ptr() as *const u8, base.add(4), 20);
        let bitmap = base.add(header);
        let data = base.add(data_offset);
        let mut offset = 0;
        for (i, item) in items.iter().enumerate() {
            let Some(s) = item.text() else { continue };
            if has_nulls {
                *bitmap.add(i / 8) |= 1 << (i % 8);
            }
            let element = data.add(offset);
            pgrx::varlena::set_varsize_4b(element.cast(), (VARHDRSZ + s.len()) as i32);
            std::ptr::copy_nonoverlapping(s.as_ptr(), element.add(VARHDRSZ), s.len());
            offset += intalign(VARHDRSZ + s.len());
        }
        DatumWithOid::new(pg_sys::Datum::from(base), pg_sys::TEXTARRAYOID)
    }
}
