//! ferry's controllers: the control loops kube-controller-manager runs upstream, as ordinary API clients.
//!
//! For now the Service endpoint controllers: `endpoints` (legacy Endpoints objects), `slices` (EndpointSlices for
//! services with a selector, and the mirroring of hand-written Endpoints into slices). Each keeps its rules in a pure
//! function from the observed objects to the desired ones; `run` is the loop around them, built on kube-rs's
//! reflectors and a de-duplicating queue keyed by Service.
#![forbid(unsafe_code)]

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
