//! Shared parts of the whole-cluster benchmark binaries (`ferry-bench-pods`, `ferry-bench-workloads`,
//! `ferry-bench-proxy`): starting a `ferry server` with a node on a private pod network, watching pods, reading
//! the API server's request counts, and the small statistics and table helpers they print with.
#![forbid(unsafe_code)]

pub mod node;

use std::future::Future;
use std::time::Duration;

/// Runs a benchmark on a multi-threaded runtime, giving up after `timeout_secs` or on Ctrl-C (dropping the future,
/// whose guards stop everything it started), then lets the runtime's remaining tasks end within 5 s.
pub fn run_bounded<T>(timeout_secs: u64, bench: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    use anyhow::Context;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let result = rt.block_on(async {
        let limit = Duration::from_secs(timeout_secs.max(1));
        tokio::select! {
            r = tokio::time::timeout(limit, bench) => match r {
                Ok(r) => r,
                Err(_) => anyhow::bail!("gave up after {limit:?} (--timeout-secs); everything started was stopped"),
            },
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; everything started was stopped"),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}
