//! The controller runtime shared by every ferry control loop (the Endpoints, EndpointSlice, workload and garbage
//! collection controllers), in the shape of client-go's informers and work queues:
//!
//! - [`Informers`]: one watch per resource type for the whole process, a cache ([`Store`]) every controller reads,
//!   and a fan-out of [`Change`]s (old and new object) to each subscriber. A re-list after a lost watch turns into
//!   the changes it implies (including deletions nobody saw), so controllers stay level-triggered.
//! - [`Controller`]: maps changes to keys, de-duplicates them in a [`WorkQueue`] (per-key exponential back-off on
//!   failure, delayed re-queue on request) and calls [`Reconciler::reconcile`] for one key at a time once every
//!   source has listed. When nothing changes, nothing runs and no request is made.
//! - [`Expectations`]: writes a controller made that its caches have not shown yet, so it never acts twice on stale
//!   state (upstream's ControllerExpectations).
//!
//! Nothing here spawns a task: informers and controllers are futures the caller polls (see [`run_all`]), so stopping
//! is dropping them after `shutdown` flips, and everything is gone when the caller's future returns.
#![forbid(unsafe_code)]

mod controller;
pub mod events;
mod expectations;
mod informer;
mod queue;

pub use controller::{Controller, Next, Reconciler};
pub use expectations::Expectations;
pub use informer::{Change, Informer, Informers};
pub use kube::runtime::reflector::{ObjectRef, Store};
pub use queue::WorkQueue;

/// Why the runtime stopped before being told to.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("connecting to the API server: {0}")]
    Connect(#[from] ferry_client::ClientError),
    #[error("the {0} watch ended")]
    WatchEnded(String),
}

/// A controller's loop, ready to be polled (`Box::pin(Controller::new(r).watch(..).run())`).
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `informers` and `controllers` until `shutdown` becomes true (or its sender is dropped), in the caller's
/// task. Returns early only if a watch ends for good.
pub async fn run_all(
    informers: Informers,
    controllers: Vec<Task>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let controllers = futures::future::join_all(controllers);
    tokio::select! {
        biased;
        _ = ferry_client::stopped(&mut shutdown) => Ok(()),
        result = informers.run() => result,
        _ = controllers => Ok(()),
    }
}

/// The namespace and name of an object: the usual work-queue key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Key {
        Key { namespace: namespace.into(), name: name.into() }
    }

    /// The key of any object (empty namespace for cluster-scoped ones).
    pub fn of<K: kube::Resource>(obj: &K) -> Key {
        Key {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The resourceVersion of an object as a number (ferry's are store revisions).
pub fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref().and_then(|rv| rv.parse().ok())
}
