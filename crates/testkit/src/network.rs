//! Pod networks for test clusters that run a node: each gets a `10.<n>.0.0/16`, a Service network
//! `198.18.<n - 120>.0/24` and an interface name prefix that no other test (thread or process) and nothing on the
//! host uses, so parallel clusters never share a subnet, a ClusterIP or a bridge name (every node proxy on the host
//! captures its own cluster's ClusterIPs, and ClusterIPs are handed out in the same order in every cluster).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// A reserved pod network; released on drop.
#[derive(Debug)]
pub struct NodeNetwork {
    /// Prefix of the bridge, veth and netns names (`fp1a2b`).
    pub prefix: String,
    /// The second octet of the cluster CIDR `10.<octet>.0.0/16`.
    pub octet: u32,
}

/// Serializes the choice among this process's threads.
static CHOOSING: Mutex<()> = Mutex::new(());

/// Where processes record their reservations: one file per octet holding the owner's pid
/// (`cargo nextest` runs each test in its own process).
fn reservations() -> PathBuf {
    std::env::temp_dir().join("ferry-test-pod-networks")
}

fn process_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Reserve `octet` for this process; false when a live process holds it.
fn reserve(octet: u32) -> bool {
    let dir = reservations();
    let _ = fs::create_dir_all(&dir);
    let path = dir.join(octet.to_string());
    for _ in 0..2 {
        match fs::File::create_new(&path) {
            Ok(mut f) => return write!(f, "{}", std::process::id()).is_ok(),
            Err(_) => {
                let holder = fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u32>().ok());
                match holder {
                    // Left by a process that died: take it over.
                    Some(pid) if !process_alive(pid) => {
                        let _ = fs::remove_file(&path);
                    }
                    _ => return false,
                }
            }
        }
    }
    false
}

impl NodeNetwork {
    /// Choose and reserve a network absent from the host's routes and links.
    pub fn reserve() -> NodeNetwork {
        let _choosing = CHOOSING.lock().unwrap_or_else(|e| e.into_inner());
        let routes = output("ip", &["-4", "route"]);
        let links = output("ip", &["-o", "link"]);
        let seed = std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        (0..4096u32)
            .map(|i| {
                let n = seed.wrapping_add(i.wrapping_mul(40_503));
                (format!("fp{:04x}", n & 0xffff), 120 + (n >> 16) % 130)
            })
            .find(|(prefix, octet)| {
                !routes.contains(&format!("10.{octet}.")) && !links.contains(&format!(": {prefix}")) && reserve(*octet)
            })
            .map(|(prefix, octet)| NodeNetwork { prefix, octet })
            .unwrap_or_else(|| panic!("no free pod network for a test cluster"))
    }

    /// The Service (ClusterIP) network of this cluster: `198.18.<octet - 120>.0/24` (RFC 2544's benchmarking
    /// range, never routed), one per reserved octet.
    pub fn service_cidr(&self) -> String {
        format!("198.18.{}.0/24", self.octet - 120)
    }

    /// `ferry server` flags using this network (plus an ephemeral node endpoint port and a node name).
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--network-prefix".into(),
            self.prefix.clone(),
            "--cluster-cidr".into(),
            format!("10.{}.0.0/16", self.octet),
            "--service-cidr".into(),
            self.service_cidr(),
            "--kubelet-port".into(),
            "0".into(),
            "--node-name".into(),
            format!("node-{}", &self.prefix[2..]),
        ]
    }
}

impl Drop for NodeNetwork {
    fn drop(&mut self) {
        let path = reservations().join(self.octet.to_string());
        let mine = fs::read_to_string(&path).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if mine {
            let _ = fs::remove_file(path);
        }
    }
}
