//! Fair sharing of the re-embedding worker between tenants: stride scheduling.
//!
//! Each tenant with queued work at the top priority has a *pass*; the batch goes to the tenant
//! with the lowest pass, which then advances by the batch's size divided by the tenant's weight.
//! Over time every tenant is served in proportion to its weight, and a tenant that arrives (or
//! comes back) starts at the lowest pass of those already served, so it neither waits behind a
//! large backlog nor takes over the worker to "catch up" on time it was not waiting.

use std::collections::HashMap;

/// The passes of the tenants seen at the last choice. Tenants without queued work are forgotten.
#[derive(Debug, Default, Clone)]
pub struct Stride {
    pass: HashMap<String, f64>,
}

impl Stride {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tenant (an index into `active`) whose turn it is among `active` (tenant, weight);
    /// None when `active` is empty. Weights below 1 count as 1. Ties go to the first listed.
    pub fn choose(&mut self, active: &[(String, u32)]) -> Option<usize> {
        if active.is_empty() {
            return None;
        }
        // The virtual time: the lowest pass among tenants that were already being served.
        let now = active
            .iter()
            .filter_map(|(t, _)| self.pass.get(t).copied())
            .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.min(p))))
            .unwrap_or(0.0);
        let pass: HashMap<String, f64> = active
            .iter()
            .map(|(t, _)| {
                let p = self.pass.get(t).copied().unwrap_or(now).max(now);
                (t.clone(), p)
            })
            .collect();
        self.pass = pass;
        let mut best = 0;
        for (i, (t, _)) in active.iter().enumerate() {
            if self.pass[t] < self.pass[&active[best].0] {
                best = i;
            }
        }
        Some(best)
    }

    /// Charges `tenant` for `items` served at `weight`.
    pub fn charge(&mut self, tenant: &str, items: usize, weight: u32) {
        let step = items as f64 / f64::from(weight.max(1));
        *self.pass.entry(tenant.to_string()).or_insert(0.0) += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(s: &mut Stride, active: &[(String, u32)], batch: usize) -> String {
        let i = s.choose(active).unwrap();
        s.charge(&active[i].0, batch, active[i].1);
        active[i].0.clone()
    }

    fn tenants(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    #[test]
    fn one_tenant_is_always_served() {
        let mut s = Stride::new();
        let a = tenants(&[("a", 1)]);
        for _ in 0..10 {
            assert_eq!(serve(&mut s, &a, 100), "a");
        }
    }

    #[test]
    fn equal_weights_alternate() {
        let mut s = Stride::new();
        let ab = tenants(&[("a", 1), ("b", 1)]);
        let order: Vec<String> = (0..6).map(|_| serve(&mut s, &ab, 100)).collect();
        assert_eq!(order, ["a", "b", "a", "b", "a", "b"]);
    }

    #[test]
    fn a_newcomer_neither_waits_nor_takes_over() {
        let mut s = Stride::new();
        let a = tenants(&[("a", 1)]);
        for _ in 0..500 {
            serve(&mut s, &a, 100);
        }
        // b arrives after a's 500 batches: served at once, then in turn with a.
        let ab = tenants(&[("a", 1), ("b", 1)]);
        let order: Vec<String> = (0..4).map(|_| serve(&mut s, &ab, 100)).collect();
        assert_eq!(order.iter().filter(|t| *t == "b").count(), 2);
        assert_eq!(order.iter().filter(|t| *t == "a").count(), 2);
        assert!(order[..2].contains(&"b".to_string()));
    }

    #[test]
    fn weights_share_in_proportion() {
        let mut s = Stride::new();
        let ab = tenants(&[("a", 3), ("b", 1)]);
        let order: Vec<String> = (0..400).map(|_| serve(&mut s, &ab, 10)).collect();
        let a = order.iter().filter(|t| *t == "a").count();
        assert!((295..=305).contains(&a), "{a}");
    }

    #[test]
    fn tenants_without_work_are_forgotten() {
        let mut s = Stride::new();
        let ab = tenants(&[("a", 1), ("b", 1)]);
        for _ in 0..10 {
            serve(&mut s, &ab, 100);
        }
        let b = tenants(&[("b", 1)]);
        for _ in 0..50 {
            serve(&mut s, &b, 100);
        }
        // a comes back: it does not get 50 batches in a row for the time it had no work.
        let order: Vec<String> = (0..4).map(|_| serve(&mut s, &ab, 100)).collect();
        assert_eq!(order.iter().filter(|t| *t == "a").count(), 2, "{order:?}");
        assert_eq!(s.choose(&[]), None);
    }
}
