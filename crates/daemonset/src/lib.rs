//! The DaemonSet controller (upstream `pkg/controller/daemon`, v1.33): one pod per eligible node, rolling updates
//! and history.
//!
//! - A node is eligible when the template's `nodeName`, `nodeSelector` and required node affinity admit it and its
//!   NoSchedule/NoExecute taints are tolerated; daemon pods get upstream's default tolerations (not-ready and
//!   unreachable NoExecute; disk, memory and PID pressure, unschedulable, and for host-network pods
//!   network-unavailable, NoSchedule), so a cordon does not keep them away ([`eligibility`]).
//! - Pods are created with `generateName: <ds>-`, a controller reference (`blockOwnerDeletion`), the
//!   `controller-revision-hash` label and a required node affinity `matchFields metadata.name In [<node>]`; the
//!   scheduler binds them ([`pods`]).
//! - Each distinct template is a ControllerRevision `<ds>-<hash>` with a growing revision number, so `kubectl
//!   rollout history|undo ds` work; old revisions beyond `revisionHistoryLimit` are removed ([`history`]).
//! - `RollingUpdate` replaces old pods at most `maxUnavailable` at a time (or surges `maxSurge` new pods first);
//!   `OnDelete` replaces a pod only once it is deleted ([`plan`]).
//! - Expectations keep a DaemonSet from being acted on again before its own creations and deletions show in the
//!   caches; events `SuccessfulCreate`, `SuccessfulDelete`, `FailedCreate`, `FailedDelete`, `FailedDaemonPod`,
//!   `SucceededDaemonPod`, `SelectingAll` are recorded on the DaemonSet.
#![forbid(unsafe_code)]

mod controller;
pub mod eligibility;
pub mod history;
pub mod plan;
pub mod pods;

use ferry_runtime::{Change, Controller, Informers, Key, Task};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};

pub use controller::{DaemonSetController, SyncError, BURST_REPLICAS, COMPONENT, EXPECTATIONS_TTL};

/// The control loops of this crate, subscribed to `informers`; the caller polls them.
pub fn controllers(informers: &mut Informers) -> Vec<Task> {
    let daemonsets = informers.get::<DaemonSet>();
    let pods = informers.get::<Pod>();
    let nodes = informers.get::<Node>();
    let reconciler = DaemonSetController::new(informers.client(), daemonsets.clone(), pods.clone(), nodes.clone());
    let controller = Controller::new(reconciler)
        .watch(&daemonsets, |_, change: &Change<DaemonSet>| change.object().map(Key::of).into_iter().collect())
        .watch(&pods, |r: &mut DaemonSetController, change: &Change<Pod>| r.pod_changed(change))
        .watch(&nodes, |r: &mut DaemonSetController, change: &Change<Node>| r.node_changed(change));
    vec![Box::pin(controller.run())]
}
