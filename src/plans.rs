//! L0 SPI helpers: statements of hot loops, prepared once per backend and kept (`SPI_keepplan`),
//! and the one relation lookup.
//!
//! A kept plan is revalidated by PostgreSQL's plan cache when what it reads changes, so keeping
//! one is safe across DDL; what it saves is the parse and plan of every execution.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, Spi, SpiClient, SpiTupleTable};

use crate::error::OrRaise;

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Executes `sql` (which may change data) through its kept plan, preparing it on first use with
/// the argument types of `args`.
pub fn execute<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &'static str,
    args: &[DatumWithOid<'_>],
) -> SpiTupleTable<'conn> {
    // Taken out of the map while it runs, so a statement that re-enters (a trigger) cannot
    // find the map borrowed; an error drops it (`SPI_freeplan`) and the next call prepares again.
    // Where entities are distributed, Citus routes a statement to one shard by its parameters'
    // values, which a kept plan may stop being planned with (a generic plan then spans every
    // shard): each execution is planned with its values.
    if distributed() {
        return client.update(sql, None, args).or_raise();
    }
    let plan = match PLANS.with(|plans| plans.borrow_mut().remove(sql)) {
        Some(plan) => plan,
        None => {
            let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
            client.prepare_mut(sql, &types).or_raise().keep()
        }
    };
    let table = client.update(&plan, None, args).or_raise();
    PLANS.with(|plans| plans.borrow_mut().insert(sql, plan));
    table
}

/// Whether entity ids are derived from their keys (`evolve_core::hash::derived_entity_id`):
/// where `evolve.distribute()` dropped `entities_key` (no index keeps a key unique across
/// nodes), an upsert by key must reach the one shard that holds it. Elsewhere ids come from the
/// sequence and `entities_key` keeps keys unique.
pub fn derived_ids() -> bool {
    evolve_relation(c"entities_key") == pg_sys::InvalidOid
}

/// Whether the entities are distributed by Citus (ids derived, Citus installed).
pub fn distributed() -> bool {
    // SAFETY: a catalog lookup by name; missing_ok gives InvalidOid.
    derived_ids()
        && unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) } != pg_sys::InvalidOid
}

/// The oid of a relation of schema `evolve` (InvalidOid when missing), from the syscache.
pub fn evolve_relation(name: &std::ffi::CStr) -> pg_sys::Oid {
    // SAFETY: syscache lookups by name; a missing schema or relation gives InvalidOid.
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"evolve".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(name.as_ptr(), nsp)
    }
}

/// Whether the relation `rel` of schema `evolve` has a column `column`, from the syscache.
pub fn evolve_column(rel: &std::ffi::CStr, column: &std::ffi::CStr) -> bool {
    let relid = evolve_relation(rel);
    // SAFETY: a syscache lookup by relation oid and name; a missing column gives
    // InvalidAttrNumber.
    relid != pg_sys::InvalidOid
        && unsafe { pg_sys::get_attnum(relid, column.as_ptr()) } != pg_sys::InvalidAttrNumber as i16
}

/// Whether observations, embeddings and a proposal's history carry their rows' scope
/// (`user_id`, since 0.10.0). Until `ALTER EXTENSION pg_evolve UPDATE`, their writers leave
/// it out.
pub fn rows_carry_scope() -> bool {
    evolve_column(c"observations", c"user_id")
}

/// Whether the aggregate and count parts carry their shard (since 0.10.0). Until `ALTER
/// EXTENSION pg_evolve UPDATE`, their writers use the functions without a shard.
pub fn parts_by_shard() -> bool {
    evolve_column(c"raw_fragment_aggregate_parts", c"shard")
}

pub fn i64_rows(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Vec<i64> {
    Spi::connect(|c| {
        c.select(sql, None, args)
            .or_raise()
            .filter_map(|r| r.value::<i64>(1))
            .collect()
    })
}

pub fn text_rows(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Vec<String> {
    Spi::connect(|c| {
        c.select(sql, None, args)
            .or_raise()
            .filter_map(|r| r.value::<String>(1))
            .collect()
    })
}

thread_local! {
    /// (parent, child) contexts in which column values are converted, created once per backend.
    static READS: std::cell::Cell<Option<(pg_sys::MemoryContext, pg_sys::MemoryContext)>> =
        const { std::cell::Cell::new(None) };
}

/// Runs `read` (a pgrx column read) with its PostgreSQL allocations in a context of their own,
/// reset as soon as the value is a Rust value.
///
/// pgrx converts a column's datum in the parent of the current memory context; inside SPI that
/// parent is the transaction's top context, so every text or jsonb read (its detoasted copy,
/// jsonb's text form) stayed allocated until the transaction ended: a COPY of a million payloads
/// into the inbox grew its backend by hundreds of megabytes. Here the current context is a child
/// of a context of ours, which is reset after each read.
fn in_read_context<R>(read: impl FnOnce() -> R) -> R {
    let (parent, child) = READS.with(|r| {
        r.get().unwrap_or_else(|| {
            // SAFETY: two contexts under TopMemoryContext, created once and kept for the
            // backend's life; the names are static strings.
            let pair = unsafe {
                let parent = pg_sys::AllocSetContextCreateExtended(
                    pg_sys::TopMemoryContext,
                    c"pg_evolve column reads".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                );
                let child = pg_sys::AllocSetContextCreateExtended(
                    parent,
                    c"pg_evolve column read".as_ptr(),
                    pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                    pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                    pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
                );
                (parent, child)
            };
            r.set(Some(pair));
            pair
        })
    });
    // SAFETY: switches to a live context of ours and back; the values `read` returns are owned
    // Rust values (no borrow of PostgreSQL memory), so resetting the parent afterwards (which
    // keeps the child) frees only what the conversion left behind. An error inside `read`
    // aborts the (sub)transaction, whose cleanup sets the current context again.
    unsafe {
        let previous = pg_sys::MemoryContextSwitchTo(child);
        let value = read();
        pg_sys::MemoryContextSwitchTo(previous);
        pg_sys::MemoryContextResetOnly(parent);
        value
    }
}

/// Column reads of SPI rows, with their PostgreSQL allocations freed at once (see
/// [`in_read_context`]); errors raise.
pub trait Row {
    /// The value of column `ordinal` (1-based), NULL as None.
    fn value<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Option<T>;

    /// Reading a column the query guarantees is not NULL (a key, a NOT NULL column): an
    /// unexpected NULL is an internal error naming the column, never a silent 0 or "".
    fn required<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> T {
        self.value::<T>(ordinal).unwrap_or_else(|| {
            pgrx::error!("pg_evolve internal query returned NULL in its column {ordinal}")
        })
    }
}

impl Row for pgrx::spi::SpiHeapTupleData<'_> {
    fn value<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Option<T> {
        in_read_context(|| self.get::<T>(ordinal)).or_raise()
    }
}

impl Row for SpiTupleTable<'_> {
    fn value<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Option<T> {
        in_read_context(|| self.get::<T>(ordinal)).or_raise()
    }
}

/// The first column of the first row of a query (None: no row, or NULL), read as [`Row`] reads.
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    Spi::connect(|c| {
        let table = c.select(sql, Some(1), args).or_raise();
        if table.is_empty() {
            None
        } else {
            table.first().value::<T>(1)
        }
    })
}
