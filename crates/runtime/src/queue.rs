//! The work queue: keys waiting to be reconciled, each at most once; keys waiting for a time (a requested re-check
//! or a back-off after a failure); and the failure count behind each key's exponential back-off.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// A de-duplicating FIFO of keys with delayed adds and per-key exponential back-off.
#[derive(Debug)]
pub struct WorkQueue<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    /// (due, sequence) → key, plus the due time of each delayed key.
    delayed: BTreeSet<(Instant, u64, K)>,
    due: HashMap<K, (Instant, u64)>,
    failures: HashMap<K, u32>,
    sequence: u64,
    base: Duration,
    max: Duration,
}

impl<K: Clone + Eq + Hash + Ord> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue::new(Duration::from_millis(100), Duration::from_secs(60))
    }
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// A queue whose back-off starts at `base` and doubles up to `max`.
    pub fn new(base: Duration, max: Duration) -> WorkQueue<K> {
        WorkQueue {
            ready: VecDeque::new(),
            queued: HashSet::new(),
            delayed: BTreeSet::new(),
            due: HashMap::new(),
            failures: HashMap::new(),
            sequence: 0,
            base,
            max,
        }
    }

    /// Queues `key` now (a no-op if it is already waiting; a delayed key is brought forward).
    pub fn add(&mut self, key: K) {
        self.undelay(&key);
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// Queues `key` after `delay`, unless it is already due sooner.
    pub fn add_after(&mut self, key: K, delay: Duration) {
        self.add_at(key, Instant::now() + delay);
    }

    /// Queues `key` at `at`, unless it is already due sooner.
    pub fn add_at(&mut self, key: K, at: Instant) {
        if self.queued.contains(&key) {
            return;
        }
        if let Some((due, _)) = self.due.get(&key) {
            if *due <= at {
                return;
            }
            self.undelay(&key);
        }
        self.sequence += 1;
        self.delayed.insert((at, self.sequence, key.clone()));
        self.due.insert(key, (at, self.sequence));
    }

    /// Queues `key` after its back-off (which doubles with every call until [`WorkQueue::forget`]).
    pub fn add_rate_limited(&mut self, key: K) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        let delay = self.base.saturating_mul(1u32 << (*failures).min(20)).min(self.max);
        *failures = failures.saturating_add(1);
        self.add_after(key, delay);
        delay
    }

    /// Resets `key`'s back-off (after a successful reconcile).
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// How many times in a row `key` failed.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// Moves every delayed key that is due at `now` to the ready queue.
    pub fn promote(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.delayed.first() {
            if *at > now {
                break;
            }
            let Some((_, _, key)) = self.delayed.pop_first() else { break };
            self.due.remove(&key);
            if self.queued.insert(key.clone()) {
                self.ready.push_back(key);
            }
        }
    }

    /// The next key to reconcile.
    pub fn pop(&mut self) -> Option<K> {
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    /// Whether a key is ready now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// When the earliest delayed key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.first().map(|(at, _, _)| *at)
    }

    /// Number of keys ready or delayed.
    pub fn len(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn undelay(&mut self, key: &K) {
        if let Some((at, seq)) = self.due.remove(key) {
            self.delayed.remove(&(at, seq, key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deduplicates_and_keeps_order() {
        let mut q = WorkQueue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_become_ready_when_due_and_add_brings_them_forward() {
        let mut q = WorkQueue::default();
        q.add_after("a", Duration::from_secs(5));
        q.add_after("a", Duration::from_secs(10));
        q.add_after("b", Duration::from_secs(1));
        let now = Instant::now();
        q.promote(now);
        assert!(!q.has_ready());
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
        q.promote(now + Duration::from_secs(5));
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), Some("a"));
        q.add_after("c", Duration::from_secs(60));
        q.add("c");
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop(), Some("c"));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_doubles_until_forgotten() {
        let mut q = WorkQueue::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..6)
            .map(|_| {
                let d = q.add_rate_limited("k");
                q.promote(Instant::now() + Duration::from_secs(10));
                q.pop();
                d
            })
            .collect();
        let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        q.forget(&"k");
        assert_eq!(q.add_rate_limited("k").as_millis(), 100);
    }
}
