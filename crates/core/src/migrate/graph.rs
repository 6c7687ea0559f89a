//! The version graph of registered migrations.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The shortest path from version `from` to version `to` along the directed `edges`
/// (`(from_version, to_version)` pairs): the fewest edges; among paths of equal length the
/// lexicographically smallest sequence of edges. `Some` of no edges when `from == to`; `None`
/// when `to` cannot be reached. Duplicate edges and cycles are harmless.
pub fn shortest_path(edges: &[(i32, i32)], from: i32, to: i32) -> Option<Vec<(i32, i32)>> {
    if from == to {
        return Some(Vec::new());
    }
    let mut forward: BTreeMap<i32, BTreeSet<i32>> = BTreeMap::new();
    let mut backward: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for &(a, b) in edges {
        if forward.entry(a).or_default().insert(b) {
            backward.entry(b).or_default().push(a);
        }
    }
    // Distances to `to`, by a breadth-first search along reversed edges.
    let mut dist: BTreeMap<i32, usize> = BTreeMap::new();
    dist.insert(to, 0);
    let mut queue = VecDeque::from([to]);
    while let Some(v) = queue.pop_front() {
        if v == from {
            break;
        }
        let d = dist[&v];
        for &u in backward.get(&v).into_iter().flatten() {
            if let Entry::Vacant(slot) = dist.entry(u) {
                slot.insert(d + 1);
                queue.push_back(u);
            }
        }
    }
    let mut remaining = *dist.get(&from)?;
    // Walk forward, always to the smallest successor one step closer to `to`. Every edge
    // starts where the previous one ended, so this gives the smallest sequence of edges.
    let mut path = Vec::with_capacity(remaining);
    let mut at = from;
    while remaining > 0 {
        let next = forward
            .get(&at)?
            .iter()
            .copied()
            .find(|n| dist.get(n) == Some(&(remaining - 1)))?;
        path.push((at, next));
        at = next;
        remaining -= 1;
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        type Case = (Vec<(i32, i32)>, i32, i32, Option<Vec<(i32, i32)>>);
        let cases: Vec<Case> = vec![
            // from == to, even outside the graph or with a self-loop
            (vec![], 1, 1, Some(vec![])),
            (vec![(1, 1)], 1, 1, Some(vec![])),
            (vec![(1, 2), (2, 3)], 2, 2, Some(vec![])),
            // linear chain
            (
                vec![(1, 2), (2, 3), (3, 4)],
                1,
                4,
                Some(vec![(1, 2), (2, 3), (3, 4)]),
            ),
            (
                vec![(3, 4), (1, 2), (2, 3)],
                2,
                4,
                Some(vec![(2, 3), (3, 4)]),
            ),
            (vec![(1, 2)], 1, 2, Some(vec![(1, 2)])),
            // directed: no way back
            (vec![(1, 2), (2, 3)], 3, 1, None),
            // missing link
            (vec![(1, 2), (3, 4)], 1, 4, None),
            (vec![], 1, 2, None),
            (vec![(1, 2)], 5, 6, None),
            // a shortcut wins
            (
                vec![(1, 2), (2, 3), (3, 4), (1, 4)],
                1,
                4,
                Some(vec![(1, 4)]),
            ),
            (
                vec![(1, 2), (2, 3), (3, 4), (4, 5), (2, 5)],
                1,
                5,
                Some(vec![(1, 2), (2, 5)]),
            ),
            // downgrades and upgrades together (cycles)
            (
                vec![(1, 2), (2, 1), (2, 3), (3, 2), (3, 1)],
                1,
                3,
                Some(vec![(1, 2), (2, 3)]),
            ),
            (
                vec![(1, 2), (2, 1), (2, 3), (3, 2), (3, 1)],
                3,
                1,
                Some(vec![(3, 1)]),
            ),
            (
                vec![(1, 2), (2, 3), (3, 1), (3, 4)],
                2,
                4,
                Some(vec![(2, 3), (3, 4)]),
            ),
            (vec![(1, 2), (2, 3), (3, 1)], 1, 4, None),
            // ties: the smallest sequence of edges
            (
                vec![(1, 3), (3, 4), (1, 2), (2, 4)],
                1,
                4,
                Some(vec![(1, 2), (2, 4)]),
            ),
            (
                vec![(1, 5), (5, 9), (1, 7), (7, 9), (1, 6), (6, 9)],
                1,
                9,
                Some(vec![(1, 5), (5, 9)]),
            ),
            (
                vec![
                    (1, 2),
                    (2, 9),
                    (2, 8),
                    (8, 10),
                    (9, 10),
                    (1, 3),
                    (3, 4),
                    (4, 10),
                ],
                1,
                10,
                Some(vec![(1, 2), (2, 8), (8, 10)]),
            ),
            // the smallest first edge wins even when a later edge is larger
            (
                vec![(1, 2), (2, 100), (100, 5), (1, 3), (3, 4), (4, 5)],
                1,
                5,
                Some(vec![(1, 2), (2, 100), (100, 5)]),
            ),
            // a branch that looks smaller but is a dead end
            (
                vec![(1, 2), (2, 3), (1, 4), (4, 5)],
                1,
                5,
                Some(vec![(1, 4), (4, 5)]),
            ),
            // duplicates and negative versions
            (
                vec![(1, 2), (1, 2), (2, 3), (2, 3)],
                1,
                3,
                Some(vec![(1, 2), (2, 3)]),
            ),
            (vec![(-1, 0), (0, 1)], -1, 1, Some(vec![(-1, 0), (0, 1)])),
        ];
        for (edges, from, to, want) in cases {
            assert_eq!(
                shortest_path(&edges, from, to),
                want,
                "{edges:?} {from}→{to}"
            );
        }
    }

    #[test]
    fn path_order_independent_of_edge_order() {
        let edges = vec![(1, 3), (3, 4), (1, 2), (2, 4), (2, 5), (4, 5), (3, 5)];
        let want = shortest_path(&edges, 1, 5);
        let mut reversed = edges.clone();
        reversed.reverse();
        assert_eq!(shortest_path(&reversed, 1, 5), want);
        assert_eq!(want, Some(vec![(1, 2), (2, 5)]));
    }
}
