//! A bounded LRU cache with a time-to-live and counters: the data structure behind the
//! backend-local schema cache. Time is passed in by the caller, so the logic is testable.

use std::hash::Hash;
use std::num::NonZeroUsize;

use lru::LruCache;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Whole-cache invalidations received (each drops every entry).
    pub invalidations: u64,
    /// Entries dropped to stay within capacity.
    pub evictions: u64,
    /// Lookups that found an entry older than the TTL.
    pub expirations: u64,
}

struct Entry<V> {
    value: V,
    stored_at_ms: u64,
}

pub struct BoundedCache<K: Hash + Eq, V> {
    map: LruCache<K, Entry<V>>,
    stats: CacheStats,
}

impl<K: Hash + Eq, V> BoundedCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        BoundedCache {
            map: LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("capacity ≥ 1")),
            stats: CacheStats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.map.cap().get()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Changes the capacity, evicting the least recently used entries if it shrinks.
    pub fn resize(&mut self, capacity: usize) {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("capacity ≥ 1");
        if cap != self.map.cap() {
            let before = self.map.len();
            self.map.resize(cap);
            self.stats.evictions += (before - self.map.len()) as u64;
        }
    }

    /// Looks a key up; an entry older than `ttl_ms` counts as a miss and is dropped.
    pub fn get(&mut self, key: &K, now_ms: u64, ttl_ms: u64) -> Option<&V> {
        let expired = match self.map.peek(key) {
            None => {
                self.stats.misses += 1;
                return None;
            }
            Some(e) => now_ms.saturating_sub(e.stored_at_ms) >= ttl_ms,
        };
        if expired {
            self.map.pop(key);
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        self.map.get(key).map(|e| &e.value)
    }

    pub fn put(&mut self, key: K, value: V, now_ms: u64) {
        let full = self.map.len() == self.map.cap().get() && !self.map.contains(&key);
        self.map.put(
            key,
            Entry {
                value,
                stored_at_ms: now_ms,
            },
        );
        if full {
            self.stats.evictions += 1;
        }
    }

    /// Drops every entry (an invalidation message arrived).
    pub fn invalidate_all(&mut self) {
        self.map.clear();
        self.stats.invalidations += 1;
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_and_ttl() {
        let mut c = BoundedCache::new(4);
        assert!(c.get(&"a", 0, 100).is_none());
        c.put("a", 1, 0);
        assert_eq!(c.get(&"a", 50, 100), Some(&1));
        assert!(c.get(&"a", 100, 100).is_none(), "expired at the TTL");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (1, 2, 1));
        assert!(c.is_empty());
    }

    #[test]
    fn never_outgrows_capacity() {
        let mut c = BoundedCache::new(64);
        for i in 0..100_000u32 {
            if c.get(&i, 0, u64::MAX).is_none() {
                c.put(i, i, 0);
            }
            assert!(c.len() <= 64);
        }
        assert_eq!(c.stats().evictions, 100_000 - 64);
        // The most recent keys survive.
        assert_eq!(c.get(&99_999, 0, u64::MAX), Some(&99_999));
        assert!(c.get(&0, 0, u64::MAX).is_none());
    }

    #[test]
    fn invalidation_and_resize() {
        let mut c = BoundedCache::new(8);
        for i in 0..8 {
            c.put(i, i, 0);
        }
        c.resize(3);
        assert_eq!(c.len(), 3);
        assert_eq!(c.capacity(), 3);
        c.invalidate_all();
        assert!(c.is_empty());
        assert_eq!(c.stats().invalidations, 1);
    }
}
