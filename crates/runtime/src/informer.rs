//! Shared informers: one watch per resource type for the whole process, a kube-rs reflector cache every controller
//! reads, and a fan-out of [`Change`]s with the previous object to every subscriber.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::RuntimeError;

/// One change a subscriber sees, in watch order.
#[derive(Debug)]
pub enum Change<K> {
    /// Created (`old` is `None`) or updated (`old` is what the cache held before).
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    /// Deleted; the object as last seen.
    Deleted(Arc<K>),
    /// The cache holds a complete list (after the first list and after every re-list).
    Synced,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied { old: old.clone(), new: new.clone() },
            Change::Deleted(obj) => Change::Deleted(obj.clone()),
            Change::Synced => Change::Synced,
        }
    }
}

impl<K> Change<K> {
    /// The object the change is about (the new one for updates); `None` for `Synced`.
    pub fn object(&self) -> Option<&K> {
        match self {
            Change::Applied { new, .. } => Some(new),
            Change::Deleted(obj) => Some(obj),
            Change::Synced => None,
        }
    }

    /// The previous object of an update, or the deleted object.
    pub fn old(&self) -> Option<&K> {
        match self {
            Change::Applied { old, .. } => old.as_deref(),
            Change::Deleted(obj) => Some(obj),
            Change::Synced => None,
        }
    }
}

/// What an informed type must be.
pub trait Informed: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}
impl<K> Informed for K where K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}

struct Shared<K: Informed> {
    store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>,
}

/// A handle on one type's shared cache and change feed.
pub struct Informer<K: Informed> {
    shared: Arc<Shared<K>>,
}

impl<K: Informed> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer { shared: self.shared.clone() }
    }
}

impl<K: Informed> Informer<K> {
    /// The cache (complete once the first `Synced` was delivered).
    pub fn store(&self) -> Store<K> {
        self.shared.store.clone()
    }

    /// A new feed of every change from now on (the first list arrives as `Applied` changes then `Synced`).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change<K>> {
        let (tx, rx) = mpsc::unbounded();
        if let Ok(mut subs) = self.shared.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    /// The cached object `namespace/name` (empty namespace for cluster-scoped types).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let reference = ObjectRef::new(name);
        let reference = if namespace.is_empty() { reference } else { reference.within(namespace) };
        self.shared.store.get(&reference)
    }
}

type Driver = Pin<Box<dyn Future<Output = Result<(), RuntimeError>> + Send>>;

/// The set of informers of one process: `get::<K>()` returns the same informer every time.
pub struct Informers {
    client: Client,
    by_type: HashMap<TypeId, Box<dyn Any + Send>>,
    drivers: Vec<Driver>,
}

impl Informers {
    pub fn new(client: Client) -> Informers {
        Informers { client, by_type: HashMap::new(), drivers: Vec::new() }
    }

    /// The client the informers watch with (controllers write with it too).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The informer of `K` over all namespaces, created on first use. Subscribe before [`Informers::run`].
    pub fn get<K: Informed>(&mut self) -> Informer<K> {
        if let Some(existing) = self.by_type.get(&TypeId::of::<K>()).and_then(|b| b.downcast_ref::<Informer<K>>()) {
            return existing.clone();
        }
        let writer = reflector::store::Writer::<K>::default();
        let informer = Informer {
            shared: Arc::new(Shared {
                store: writer.as_reader(),
                writer: Mutex::new(Some(writer)),
                subscribers: Mutex::new(Vec::new()),
            }),
        };
        let api = Api::<K>::all(self.client.clone());
        self.drivers.push(Box::pin(drive(informer.shared.clone(), api)));
        self.by_type.insert(TypeId::of::<K>(), Box::new(informer.clone()));
        informer
    }

    /// Runs every watch until one ends for good (never, in practice: failures are retried with back-off).
    pub async fn run(self) -> Result<(), RuntimeError> {
        if self.drivers.is_empty() {
            return std::future::pending().await;
        }
        let (result, _, _) = futures::future::select_all(self.drivers).await;
        result
    }
}

fn type_name<K: Informed>() -> String {
    K::plural(&()).into_owned()
}

fn publish<K: Informed>(shared: &Shared<K>, change: Change<K>) {
    if let Ok(mut subs) = shared.subscribers.lock() {
        subs.retain(|tx| tx.unbounded_send(change.clone()).is_ok());
    }
}

fn same_version<K: Informed>(a: &K, b: &K) -> bool {
    let (a, b) = (a.meta(), b.meta());
    a.uid == b.uid && a.resource_version.is_some() && a.resource_version == b.resource_version
}

/// One type's watch: applies every event to the cache, then tells the subscribers what changed.
async fn drive<K: Informed>(shared: Arc<Shared<K>>, api: Api<K>) -> Result<(), RuntimeError> {
    let Some(mut writer) = shared.writer.lock().ok().and_then(|mut w| w.take()) else {
        return Err(RuntimeError::WatchEnded(type_name::<K>()));
    };
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listing: Vec<K> = Vec::new();
    while let Some(item) = events.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(resource = %type_name::<K>(), error = %e, "watch failed; retrying");
                continue;
            }
        };
        match &event {
            watcher::Event::Init => {
                listing.clear();
                writer.apply_watcher_event(&event);
            }
            watcher::Event::InitApply(obj) => {
                listing.push(obj.clone());
                writer.apply_watcher_event(&event);
            }
            watcher::Event::InitDone => {
                let mut before: HashMap<ObjectRef<K>, Arc<K>> =
                    shared.store.state().into_iter().map(|o| (ObjectRef::from_obj(o.as_ref()), o)).collect();
                writer.apply_watcher_event(&event);
                for obj in listing.drain(..) {
                    let reference = ObjectRef::from_obj(&obj);
                    let old = before.remove(&reference);
                    if old.as_deref().is_some_and(|old| same_version(old, &obj)) {
                        continue;
                    }
                    let new = shared.store.get(&reference).unwrap_or_else(|| Arc::new(obj));
                    publish(&shared, Change::Applied { old, new });
                }
                for (_, gone) in before {
                    publish(&shared, Change::Deleted(gone));
                }
                publish(&shared, Change::Synced);
            }
            watcher::Event::Apply(obj) => {
                let reference = ObjectRef::from_obj(obj);
                let old = shared.store.get(&reference);
                writer.apply_watcher_event(&event);
                let new = shared.store.get(&reference).unwrap_or_else(|| Arc::new(obj.clone()));
                publish(&shared, Change::Applied { old, new });
            }
            watcher::Event::Delete(obj) => {
                writer.apply_watcher_event(&event);
                publish(&shared, Change::Deleted(Arc::new(obj.clone())));
            }
        }
    }
    Err(RuntimeError::WatchEnded(type_name::<K>()))
}
