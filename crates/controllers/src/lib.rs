//! ferry's controllers: the control loops kube-controller-manager runs upstream, as ordinary API clients.
//!
//! `run` is the controller manager: one set of shared informers (crate `ferry-runtime`) and every control loop,
//! polled in one task: the Service endpoint controllers (`endpoints` for legacy Endpoints, `slices` for
//! EndpointSlices and the mirroring of hand-written Endpoints), the garbage collector (`gc` plans, `collector`
//! carries the plans out), node lifecycle (`nodelifecycle`: taints and eviction of lost nodes), the LoadBalancer
//! address allocator (`loadbalancer`), and the workload controllers of the `ferry-replicaset`, `ferry-deployment`,
//! `ferry-daemonset` and `ferry-batch` crates. Each keeps its rules in pure functions from observed objects to
//! desired ones, tested without a server.
#![forbid(unsafe_code)]

mod collector;
pub mod endpoints;
pub mod gc;
pub mod loadbalancer;
mod manager;
pub mod nodelifecycle;
pub mod pods;
mod runner;
pub mod slices;

pub use manager::run;
pub use runner::{ControllersConfig, ControllersError};
