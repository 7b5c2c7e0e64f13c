//! ferry's scheduler: binds pending pods to nodes as upstream's default scheduler would for the plugins that
//! matter on ferry (cordon, node name, taints and tolerations, node selector and required node affinity, resource
//! requests against allocatable), and explains a pod that fits nowhere with upstream's exact message in the
//! PodScheduled condition and a FailedScheduling event.
//!
//! `fit` is the pure core (filters, score, failure message); `run` is the loop, an ordinary API client built on
//! kube-rs's reflectors.
#![forbid(unsafe_code)]

pub mod fit;
pub mod quantity;
mod queue;
mod scheduler;

pub use queue::{backoff, FLUSH_INTERVAL, INITIAL_BACKOFF, MAX_BACKOFF};
pub use scheduler::{run, SchedulerConfig, SchedulerError, DEFAULT_SCHEDULER_NAME};
