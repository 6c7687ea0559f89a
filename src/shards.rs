//! L0 Where entities live: one node, or Citus shards after `evolve.distribute()`.
//!
//! On a distributed database, Citus runs a statement that names one shard's rows on that shard
//! alone (a router plan), and refuses to lock rows of several shards in one statement. So the
//! statements that lock entities (and their rows) by id run once per shard, each over the ids
//! one shard holds, groups in shard order and ids ascending within each: every writer takes its
//! locks in that one order. On a single node there is one group, in id order, as ever.

use pgrx::spi::SpiClient;

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
