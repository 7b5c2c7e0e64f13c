//! The Deployment controller: rollouts (RollingUpdate, Recreate), history, pause, progress.
//!
//! Upstream's `pkg/controller/deployment` in three layers: [`util`] (pure helpers: fenceposts, the pod-template
//! hash, revisions and annotations, conditions), [`sync`] (one sync of one Deployment, every write through the
//! [`sync::Writes`] trait so whole rollouts run against a model in tests) and the control loop on the shared runtime
//! (event mapping, ReplicaSet adoption/release, the API writes).
#![forbid(unsafe_code)]

mod controller;
pub mod sync;
pub mod util;

#[cfg(test)]
mod tests;

use ferry_runtime::{Informers, Task};

/// The control loops of this crate, subscribed to `informers`; the caller polls them.
pub fn controllers(informers: &mut Informers) -> Vec<Task> {
    vec![controller::deployment_controller(informers)]
}
