//! `ferry explain service`: walks the Service troubleshooting checklist for the user. Is the service there, does
//! its selector match pods, are they ready, do the ports match, are they endpoints, what rules does the node's
//! proxy hold for it, and can this host reach the endpoints and the ClusterIP; then one verdict line per problem.
//!
//! [`diagnose`] (API objects → [`Diagnosis`]), [`rules::table_rules`] (nft listings → the service's rules) and
//! [`render`] are pure; [`gather`] fetches the objects with kube-rs, [`rules::read_rules`] runs `nft`, and
//! [`connect`] dials TCP. [`cli`] holds the clap arguments the binary mounts as `ferry explain`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod connect;
pub mod diagnose;
pub mod gather;
pub mod report;
pub mod rules;

#[cfg(test)]
mod tests;

pub use connect::{Attempt, Outcome, Target, TargetKind};
pub use diagnose::{diagnose, Backends, Diagnosis, Listing, Objects, PodReport, Problem, Reason, ServiceSummary};
pub use gather::{explain_service, ExplainError, Request};
pub use report::{assemble, render, Explanation};
pub use rules::{ProxyRules, TableRules};
