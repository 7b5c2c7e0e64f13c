//! Expectations: how many creations and deletions a controller made for a key that its caches have not shown yet.
//! A key with unmet expectations is not acted on (the cache would make it create or delete again); expectations
//! expire so a lost watch event cannot wedge a key forever.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Pending {
    adds: i64,
    deletes: i64,
    since: Instant,
}

/// Outstanding creations/deletions per key.
#[derive(Debug)]
pub struct Expectations<K> {
    pending: HashMap<K, Pending>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone> Expectations<K> {
    /// Expectations that lapse after `ttl`.
    pub fn new(ttl: Duration) -> Expectations<K> {
        Expectations { pending: HashMap::new(), ttl }
    }

    /// Records that `adds` creations and `deletes` deletions are in flight for `key` (replacing older ones).
    pub fn expect(&mut self, key: K, adds: usize, deletes: usize) {
        let pending = Pending { adds: adds as i64, deletes: deletes as i64, since: Instant::now() };
        self.pending.insert(key, pending);
    }

    /// A creation the caches showed, or one that failed and will never show.
    pub fn creation_observed(&mut self, key: &K) {
        if let Some(p) = self.pending.get_mut(key) {
            p.adds -= 1;
        }
    }

    /// A deletion the caches showed, or one that failed and will never show.
    pub fn deletion_observed(&mut self, key: &K) {
        if let Some(p) = self.pending.get_mut(key) {
            p.deletes -= 1;
        }
    }

    /// Whether the caches are current for `key`: nothing pending, all observed, or expired.
    pub fn satisfied(&self, key: &K) -> bool {
        match self.pending.get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.deletes <= 0) || p.since.elapsed() > self.ttl,
        }
    }

    /// When `key`'s expectations lapse (for a re-check), if any are pending.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.pending.get(key).filter(|p| p.adds > 0 || p.deletes > 0).map(|p| p.since + self.ttl)
    }

    /// Drops `key`'s expectations (the object is gone).
    pub fn forget(&mut self, key: &K) {
        self.pending.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn satisfied_after_all_observed_or_expired() {
        let mut e = Expectations::new(Duration::from_secs(30));
        assert!(e.satisfied(&"rs"));
        e.expect("rs", 2, 1);
        assert!(!e.satisfied(&"rs"));
        e.creation_observed(&"rs");
        e.creation_observed(&"rs");
        assert!(!e.satisfied(&"rs"));
        e.deletion_observed(&"rs");
        assert!(e.satisfied(&"rs"));
        e.expect("rs", 1, 0);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(e.satisfied(&"rs"));
    }
}
