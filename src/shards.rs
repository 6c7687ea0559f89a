//! L0 Where entities live: one node, or Citus shards after `evolve.distribute()`.
//!
//! On a distributed database, Citus runs a statement that names one shard's rows on that shard
//! alone (a router plan), and refuses to lock rows of several shards in one statement. So the
//! statements that lock entities (and their rows) by id run once per shard, each over the ids
//! one shard holds, groups in shard order and ids ascending within each: every writer takes its
//! locks in that one order. On a single node there is one group, in id order, as ever.
//!
//! The aggregate and count parts of a shard's rows live on that shard too, distributed by the
//! shard's key (`evolve._shard_keys()`: the smallest non-negative entity id Citus places there):
//! [`keys_in`] gives the key of each id's shard, 0 on a single node.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::spi::SpiClient;

use crate::plans::Row;

pub use crate::plans::{derived_ids, distributed};

/// Whether this is a Citus worker node of a distributed database: its shards are driven from
/// the coordinator (re-embedding included), so its own background worker stays idle.
pub fn on_worker_node() -> bool {
    distributed()
        && !pgrx::spi::Spi::get_one::<bool>("SELECT pg_catalog.citus_is_coordinator()")
            .ok()
            .flatten()
            .unwrap_or(false)
}

/// `ids` sorted and deduplicated, split by the shard of `evolve.entities` holding them, in
/// shard order (see the module's header): one group on a single node.
pub fn groups(ids: Vec<i64>) -> Vec<Vec<i64>> {
    if distributed() {
        pgrx::spi::Spi::connect_mut(|c| groups_in(c, ids))
    } else {
        one_group(ids)
    }
}

/// [`groups`] with the caller's SPI connection.
pub fn groups_in(client: &mut SpiClient<'_>, ids: Vec<i64>) -> Vec<Vec<i64>> {
    let mut groups = one_group(ids);
    match groups.pop() {
        Some(ids) if distributed() => by_shard(client, ids),
        Some(ids) => vec![ids],
        None => Vec::new(),
    }
}

/// `ids` sorted and deduplicated, as one group (none when empty).
fn one_group(mut ids: Vec<i64>) -> Vec<Vec<i64>> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        Vec::new()
    } else {
        vec![ids]
    }
}

fn by_shard(client: &mut SpiClient<'_>, ids: Vec<i64>) -> Vec<Vec<i64>> {
    crate::plans::execute(
        client,
        "SELECT array_agg(id ORDER BY id) FROM ( \
             SELECT id, pg_catalog.get_shard_id_for_distribution_column('evolve.entities', id) AS shard \
             FROM unnest($1::bigint[]) AS id) s \
         GROUP BY shard ORDER BY shard",
        &[ids.into()],
    )
    .filter_map(|r| r.get::<Vec<i64>>(1).ok().flatten())
    .collect()
}

thread_local! {
    /// Shard id (of `evolve.entities`) to its key: a shard's hash range never changes (a split
    /// makes new shards), so the map only grows; a shard not in it reloads it.
    static KEYS: RefCell<HashMap<i64, i64>> = RefCell::new(HashMap::new());
}

/// The keys of the shards holding some entities: the `shard` of the parts counting their rows.
/// On a single node every entity's is 0 (the default: nothing looked up).
#[derive(Default)]
pub struct ShardKeys(Option<HashMap<i64, i64>>);

impl ShardKeys {
    /// The key of the shard holding entity `id` (one of those looked up).
    pub fn of(&self, id: i64) -> i64 {
        self.0
            .as_ref()
            .map_or(0, |keys| keys.get(&id).copied().unwrap_or(0))
    }
}

/// The keys of the shards holding `ids`: one statement for them all, the keys of the shards
/// cached per backend.
pub fn keys_in(client: &mut SpiClient<'_>, ids: &[i64]) -> ShardKeys {
    if !distributed() || ids.is_empty() {
        return ShardKeys(None);
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let shards: Vec<(i64, i64)> = crate::plans::execute(
        client,
        "SELECT id, pg_catalog.get_shard_id_for_distribution_column('evolve.entities', id) \
         FROM unnest($1::bigint[]) AS id",
        &[ids.into()],
    )
    .map(|r| (r.required::<i64>(1), r.required::<i64>(2)))
    .collect();
    if shards
        .iter()
        .any(|(_, s)| KEYS.with(|k| !k.borrow().contains_key(s)))
    {
        let loaded: Vec<(i64, i64)> = crate::plans::execute(
            client,
            "SELECT shardid, shard FROM evolve._shard_keys()",
            &[],
        )
        .map(|r| (r.required::<i64>(1), r.required::<i64>(2)))
        .collect();
        KEYS.with(|k| k.borrow_mut().extend(loaded));
    }
    KEYS.with(|k| {
        let k = k.borrow();
        ShardKeys(Some(
            shards
                .into_iter()
                .map(|(id, s)| {
                    let key = k.get(&s).copied().unwrap_or_else(|| {
                        crate::error::raise(
                            evolve_core::SqlState::ObjectNotInPrerequisiteState,
                            format!("shard {s} of evolve.entities has no key in evolve._shard_keys()"),
                            None,
                            Some("The shards of evolve.entities changed during the statement: retry it.".into()),
                        )
                    });
                    (id, key)
                })
                .collect(),
        ))
    })
}
