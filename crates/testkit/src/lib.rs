//! Test harness for end-to-end tests: a real `ferry server` child process on a temporary data dir, real kubectl
//! binaries pointed at it, and small helpers to read what kubectl prints.
//!
//! Everything here panics on failure (it is only used from tests) and every panic message carries what is needed
//! to see why: kubectl's stdout and stderr, and the tail of the server's log.
//!
//! ```ignore
//! // in an integration test of the `ferry` package:
//! let cluster = ferry_testkit::Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_ferry")));
//! let kubectl = cluster.kubectl();
//! let out = kubectl.ok(&["get", "ns"]);
//! let table = ferry_testkit::Table::parse(&out);
//! assert!(table.row("default").is_some());
//! ```
#![forbid(unsafe_code)]

mod cluster;
mod credentials;
mod kubectl;
mod network;
mod process;
mod table;

pub use cluster::{Cluster, API_ONLY, READY_PREFIX};
pub use credentials::Credentials;
pub use kubectl::{kubectl_120_path, kubectl_current_path, workspace_root, Kubectl};
pub use network::NodeNetwork;
pub use process::{wait_timeout, LineReader};
pub use table::Table;

use std::sync::atomic::{AtomicU32, Ordering};

/// `<workspace>/tests/fixtures/seeds`: the seed manifests and their `index.json`.
pub fn seed_fixtures_dir() -> std::path::PathBuf {
    workspace_root().join("tests/fixtures/seeds")
}

/// The path of one seed fixture, e.g. `seed_fixture("003-pod-kubia-manual.yaml")`; panics if it does not exist.
pub fn seed_fixture(name: &str) -> std::path::PathBuf {
    let path = seed_fixtures_dir().join(name);
    assert!(path.is_file(), "no seed fixture {}", path.display());
    path
}

/// `text` with every run of whitespace (spaces, tabs, newlines) replaced by one space, for comparing output whose
/// alignment kubectl chooses (`describe`, `explain`).
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A name that is unique within this test process and readable in logs: `<prefix>-<pid>-<n>`, truncated to stay a
/// valid DNS label. Use it for namespaces so tests sharing a server never collide.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = format!("{prefix}-{}-{n}", std::process::id());
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// Polls `probe` every 200 ms until it returns `Ok`; panics with `what` and the last `Err` after `timeout`.
pub fn eventually<T>(what: &str, timeout: std::time::Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("timed out after {}s waiting for {what}; last seen:\n{last}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

/// Waits for, and holds until the returned file is dropped, a lock shared by every test process on this host for
/// the node address's ports. Every node cluster's node has the host's address, so NodePorts, LoadBalancer ingress
/// ports on it (the default pool) and healthCheckNodePorts of two clusters running at once would capture each
/// other's traffic: tests that create such Services hold this lock while their cluster runs.
pub fn lock_node_address_ports() -> std::fs::File {
    let path = std::env::temp_dir().join("ferry-test-node-address-ports.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock().unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    file
}
