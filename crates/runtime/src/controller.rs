//! One control loop: sources (informer feeds mapped to keys) fill a [`WorkQueue`]; once every source has listed, keys
//! are reconciled one at a time by the [`Reconciler`]; failures back off per key, `Next::After` re-checks later.

use std::any::Any;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use tokio::time::Instant;

use crate::informer::{Change, Informed, Informer};
use crate::queue::WorkQueue;

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing until a change maps to the key again.
    Done,
    /// Reconcile again after this long (e.g. minReadySeconds, a deadline, the next cron time).
    After(Duration),
}

/// The logic of one controller: make the world match the object named by `key`, reading the informer caches.
/// Must be idempotent and level-triggered: it is called with only a key, never with the event that caused it.
#[allow(async_fn_in_trait)]
pub trait Reconciler {
    type Key: Clone + Eq + Hash + Ord + Debug + Send + 'static;
    type Error: std::fmt::Display;

    /// The controller's name (logs).
    fn name(&self) -> &'static str;

    async fn reconcile(&mut self, key: &Self::Key) -> Result<Next, Self::Error>;

    /// Other keys the last reconcile found work for (e.g. dependents of an owner it learned is gone); queued
    /// right after it returns.
    fn take_requeues(&mut self) -> Vec<Self::Key> {
        Vec::new()
    }
}

type Erased = Box<dyn Any + Send>;
type Handler<R> = Box<dyn FnMut(&mut R, Erased) -> Handled<<R as Reconciler>::Key> + Send>;

struct Handled<K> {
    keys: Vec<K>,
    synced: bool,
}

/// A reconciler, its sources and its queue.
pub struct Controller<R: Reconciler> {
    reconciler: R,
    queue: WorkQueue<R::Key>,
    sources: SelectAll<BoxStream<'static, (usize, Erased)>>,
    handlers: Vec<Handler<R>>,
    synced: Vec<bool>,
}

impl<R: Reconciler> Controller<R> {
    pub fn new(reconciler: R) -> Controller<R> {
        Controller {
            reconciler,
            queue: WorkQueue::default(),
            sources: SelectAll::new(),
            handlers: Vec::new(),
            synced: Vec::new(),
        }
    }

    /// Adds a source: every change of `informer` is mapped to the keys it affects. `map` may update the
    /// reconciler's own bookkeeping (e.g. expectations) through the `&mut R` it is given.
    pub fn watch<K: Informed>(
        mut self,
        informer: &Informer<K>,
        mut map: impl FnMut(&mut R, &Change<K>) -> Vec<R::Key> + Send + 'static,
    ) -> Self {
        let index = self.handlers.len();
        let feed = informer.subscribe().map(move |change| (index, Box::new(change) as Erased)).boxed();
        self.sources.push(feed);
        self.synced.push(false);
        self.handlers.push(Box::new(move |reconciler: &mut R, erased: Erased| match erased.downcast::<Change<K>>() {
            Ok(change) => {
                let synced = matches!(*change, Change::Synced);
                let keys = if synced { Vec::new() } else { map(reconciler, &change) };
                Handled { keys, synced }
            }
            Err(_) => Handled { keys: Vec::new(), synced: false },
        }));
        self
    }

    /// Queues `key` now (e.g. periodic work a controller wants at start).
    pub fn enqueue(&mut self, key: R::Key) {
        self.queue.add(key);
    }

    /// Runs until dropped. Reconciles only after every source has listed once.
    pub async fn run(mut self) {
        let name = self.reconciler.name();
        tracing::info!(controller = name, "controller started");
        loop {
            let now = Instant::now();
            self.queue.promote(now);
            let synced = self.synced.iter().all(|s| *s);
            let work = synced && self.queue.has_ready();
            let wakeup = self.queue.next_due();
            tokio::select! {
                item = self.sources.next(), if !self.sources.is_empty() => {
                    let Some((index, erased)) = item else { continue };
                    self.handle(index, erased);
                    // Take every change already waiting before reconciling, so a burst is seen as one state.
                    while let Some(Some((index, erased))) = futures::FutureExt::now_or_never(self.sources.next()) {
                        self.handle(index, erased);
                    }
                }
                _ = tokio::time::sleep_until(wakeup.unwrap_or(now)), if wakeup.is_some() && !work => {}
                _ = std::future::ready(()), if work => {
                    let Some(key) = self.queue.pop() else { continue };
                    let result = self.reconciler.reconcile(&key).await;
                    for other in self.reconciler.take_requeues() {
                        self.queue.add(other);
                    }
                    match result {
                        Ok(next) => {
                            self.queue.forget(&key);
                            if let Next::After(delay) = next {
                                self.queue.add_after(key, delay);
                            }
                        }
                        Err(e) => {
                            let delay = self.queue.add_rate_limited(key.clone());
                            tracing::warn!(controller = name, key = ?key, error = %e, retry_in = ?delay, "reconcile failed");
                        }
                    }
                }
            }
        }
    }

    fn handle(&mut self, index: usize, erased: Erased) {
        let Some(handler) = self.handlers.get_mut(index) else { return };
        let handled = handler(&mut self.reconciler, erased);
        if handled.synced {
            if let Some(s) = self.synced.get_mut(index) {
                *s = true;
            }
        }
        for key in handled.keys {
            self.queue.add(key);
        }
    }
}
