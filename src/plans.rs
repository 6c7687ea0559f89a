//! L0 SPI helpers: statements of hot loops, prepared once per backend and kept (`SPI_keepplan`),
//! and the one relation lookup.
//!
//! A kept plan is revalidated by PostgreSQL's plan cache when what it reads changes, so keeping
//! one is safe across DDL; what it saves is the parse and plan of every execution.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
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

pub fn text_rows(sql: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Vec<String> {
    Spi::connect(|c| {
        c.select(sql, None, args)
            .or_raise()
            .filter_map(|r| r.get::<String>(1).or_raise())
            .collect()
    })
}

/// Reading a column the query guarantees is not NULL (a key, a NOT NULL column): an
/// unexpected NULL is an internal error naming the column, never a silent 0 or "".
pub trait Required {
    fn required<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(&self, ordinal: usize) -> T;
}

impl Required for pgrx::spi::SpiHeapTupleData<'_> {
    fn required<T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum>(&self, ordinal: usize) -> T {
        self.get::<T>(ordinal).or_raise().unwrap_or_else(|| {
            pgrx::error!("pg_evolve internal query returned NULL in its column {ordinal}")
        })
    }
}
