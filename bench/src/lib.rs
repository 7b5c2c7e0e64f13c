//! Shared parts of the whole-cluster benchmark binaries (`ferry-bench-pods`, `ferry-bench-workloads`,
//! `ferry-bench-proxy`): starting a `ferry server` with a node on a private pod network, watching pods, reading
//! the API server's request counts, and the small statistics and table helpers they print with.
#![forbid(unsafe_code)]

pub mod node;
