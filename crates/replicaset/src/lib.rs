//! The ReplicaSet (apps/v1) and ReplicationController (core/v1) controllers: one implementation, upstream's
//! `replicaset` controller, over both kinds through [`ReplicaOwner`].
//!
//! - [`owner`]: the kind-neutral view (selector, replicas, template, status) of both kinds.
//! - [`pods`], [`claim`], [`rank`], [`status`]: pure decisions (which pods count, adopt/release, which surplus pods
//!   go first, the status to report), unit-tested without an API server.
//! - [`sync`]: the reconciler: claims pods, creates/deletes towards `spec.replicas` behind expectations, writes status.
#![forbid(unsafe_code)]

pub mod claim;
pub mod owner;
pub mod pods;
pub mod rank;
pub mod status;
pub mod sync;

use ferry_runtime::{Informers, Task};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;

pub use owner::{ReplicaOwner, ReplicaStatus};
pub use sync::{ReplicaController, SyncError, BURST_REPLICAS};

/// The control loops of this crate, subscribed to `informers`; the caller polls them.
pub fn controllers(informers: &mut Informers) -> Vec<Task> {
    vec![ReplicaController::<ReplicaSet>::task(informers), ReplicaController::<ReplicationController>::task(informers)]
}
