//! ferry's node agent (the kubelet's role): registers this machine as a Node, keeps its Lease and status fresh,
//! and later runs the pods bound to it. It reaches the API server only through `ferry-client`, as a remote agent on
//! another machine would.
//!
//! [`run`] owns every task it starts and returns once `shutdown` turns true (or its sender is dropped).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

pub mod cidr;
pub mod host;
pub mod ipam;
pub mod node;

mod agent;
mod backoff;
pub mod events;
pub mod pods;
pub mod podstatus;
pub mod server;

pub use cidr::{CidrError, Ipv4Cidr};
pub use host::{HostError, HostInfo};
pub use ipam::{IpAllocator, IpamError, Pool};

/// Everything the node agent needs, built once by the binary.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The agent's kubeconfig (its identity towards the API server).
    pub kubeconfig: PathBuf,
    /// The Node's name.
    pub node_name: String,
    /// The `Hostname` address and `kubernetes.io/hostname` label; defaults to the node name.
    pub hostname: String,
    /// The `InternalIP` address.
    pub node_ip: IpAddr,
    /// The cluster's pod network; each node takes a /24 of it.
    pub cluster_cidr: (Ipv4Addr, u8),
    /// The agent's own state directory (created if missing); its filesystem is the node's ephemeral storage.
    pub data_dir: PathBuf,
    /// Labels set when registering (`--node-labels`); defaults to the k3s-style control-plane role.
    pub labels: BTreeMap<String, String>,
    /// The port advertised in `status.daemonEndpoints.kubeletEndpoint`.
    pub kubelet_port: u16,
    /// The node's `pods` capacity (upstream's `--max-pods`, default 110).
    pub max_pods: u32,
    /// The size of the node's pod CIDR within the cluster CIDR (upstream's `--node-cidr-mask-size`, default 24).
    pub node_cidr_prefix: u8,
    pub timing: Timing,
}

/// How often the agent talks to the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Lease renewal period (upstream: 10 s).
    pub lease_renew: Duration,
    /// `spec.leaseDurationSeconds` (upstream: 40).
    pub lease_duration_seconds: i32,
    /// How often the status is computed and compared (upstream `nodeStatusUpdateFrequency`: 10 s).
    pub status_update: Duration,
    /// The longest time an unchanged status goes unposted (upstream `nodeStatusReportFrequency`; ferry: 60 s).
    pub status_report: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_renew: Duration::from_secs(10),
            lease_duration_seconds: 40,
            status_update: Duration::from_secs(10),
            status_report: Duration::from_secs(60),
        }
    }
}

impl NodeConfig {
    /// A config with upstream's defaults for everything not given.
    pub fn new(
        kubeconfig: PathBuf,
        node_name: String,
        node_ip: IpAddr,
        cluster_cidr: (Ipv4Addr, u8),
        data_dir: PathBuf,
    ) -> NodeConfig {
        NodeConfig {
            kubeconfig,
            hostname: node_name.clone(),
            node_name,
            node_ip,
            cluster_cidr,
            data_dir,
            labels: BTreeMap::from([(node::CONTROL_PLANE_LABEL.to_string(), "true".to_string())]),
            kubelet_port: 10250,
            max_pods: node::DEFAULT_MAX_PODS,
            node_cidr_prefix: cidr::NODE_CIDR_PREFIX,
            timing: Timing::default(),
        }
    }
}

/// Why the node agent could not start. Once running, API errors are retried, never returned.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("invalid cluster CIDR: {0}")]
    ClusterCidr(#[from] CidrError),
    #[error("invalid node name {name:?}: {reason}")]
    NodeName { name: String, reason: &'static str },
    #[error("creating the data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("probing the host: {0}")]
    Host(#[from] HostError),
    #[error("connecting to the API server: {0}")]
    Client(#[from] ferry_client::ClientError),
}

/// Runs the node agent until `shutdown` is true: registers the Node (keeping what users set on it), renews its
/// Lease and posts its status. Returns an error only when it cannot start (bad config, unreadable kubeconfig,
/// unprobeable host); API failures are logged and retried with back-off.
pub async fn run(config: NodeConfig, shutdown: tokio::sync::watch::Receiver<bool>) -> Result<(), KubeletError> {
    run_with_pods(config, None, shutdown).await
}

/// What running pods needs besides the node's config: the kernel network and the container
/// runtime (real ones in `ferry server`, fakes in tests) and the node-wide pod settings.
pub struct PodsSetup {
    pub config: pods::PodsConfig,
    pub network: std::sync::Arc<dyn ferry_sys::Network>,
    pub runtime: std::sync::Arc<dyn pods::ContainerRuntime>,
    /// The HTTPS endpoint for exec/port-forward/logs (the process runtime and TLS material).
    pub streaming: Option<(ferry_containers::Runtime, server::ServerTls)>,
}

/// Like [`run`], and also runs the pods bound to this node once it has a pod CIDR.
pub async fn run_with_pods(
    config: NodeConfig,
    pods: Option<PodsSetup>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), KubeletError> {
    let cluster_cidr = Ipv4Cidr::new(config.cluster_cidr.0, config.cluster_cidr.1)?;
    if config.node_name.is_empty() || config.node_name.len() > 253 {
        return Err(KubeletError::NodeName { name: config.node_name, reason: "must be 1 to 253 characters" });
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| KubeletError::DataDir { path: config.data_dir.clone(), source })?;
    let host = HostInfo::probe(&config.data_dir)?;
    let client = ferry_client::connect(&config.kubeconfig).await?;
    let node_name = config.node_name.clone();
    let mut config = config;
    // The streaming endpoint binds first so the Node reports its real port.
    let directory = std::sync::Arc::new(server::Directory::default());
    let mut endpoint = None;
    if let Some((rt, tls)) = pods.as_ref().and_then(|p| p.streaming.clone()) {
        let addr = std::net::SocketAddr::new(config.node_ip, config.kubelet_port);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                if let Ok(a) = l.local_addr() {
                    config.kubelet_port = a.port();
                }
                endpoint = Some((
                    l,
                    tls,
                    std::sync::Arc::new(server::NodeStreams { directory: directory.clone(), runtime: rt }),
                ));
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "binding the node endpoint; exec, logs and port-forward will not work")
            }
        }
    }
    let endpoint_task = async {
        if let Some((l, tls, streams)) = endpoint {
            server::serve(l, tls, streams, shutdown.clone()).await;
        }
    };
    let agent = agent::Agent::new(client.clone(), config, cluster_cidr, host);
    let pods_task = async {
        let Some(setup) = pods else { return };
        let mut shutdown = shutdown.clone();
        // The pod CIDR comes with registration.
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        let cidr = loop {
            if let Ok(n) = nodes.get(&node_name).await {
                if let Some(c) = n.spec.and_then(|s| s.pod_cidr).and_then(|c| c.parse::<Ipv4Cidr>().ok()) {
                    break c;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = shutdown.changed() => return,
            }
        };
        match pods::PodManager::new(client.clone(), setup.config, setup.network, setup.runtime, cidr, directory.clone())
            .await
        {
            Ok(m) => m.run(shutdown).await,
            Err(e) => tracing::error!(error = %e, "cannot run pods on this node"),
        }
    };
    tokio::join!(agent.run(shutdown.clone()), pods_task, endpoint_task);
    Ok(())
}
