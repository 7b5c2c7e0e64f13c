//! The proxy as a node component: an ordinary API client (its own kubeconfig, like kube-proxy) whose shared
//! informers of Services and EndpointSlices feed the [`Proxier`] through [`run`]; on shutdown the table is
//! deleted and the health-check listeners closed, so nothing of the proxy outlives it.

use std::net::IpAddr;
use std::path::PathBuf;

use ferry_runtime::{Change, Informers};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::{mpsc, watch};

use crate::desired::{BridgeHairpin, ProxyConfig};
use crate::health::HealthServer;
use crate::model::Ipv4Net;
use crate::nft::{NftConfig, NftDataplane};
use crate::proxier::{run, Proxier, ProxyEvent, RunConfig};

/// What the node's proxy needs.
#[derive(Debug, Clone)]
pub struct NodeProxyConfig {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    /// The node's address: healthCheckNodePorts listen on it.
    pub node_ip: IpAddr,
    /// The nftables table (family `ip`) the proxy owns, e.g. `ferry-proxy`.
    pub table: String,
    /// The cluster's pod network.
    pub cluster_cidr: Ipv4Net,
    /// The node's pod bridge (pods reaching a Service backed by a pod on the same bridge are masqueraded so the
    /// reply comes back through the host).
    pub bridge: String,
}

impl NodeProxyConfig {
    /// The table name ferry uses for a network prefix (`ferry` → `ferry-proxy`).
    pub fn table_for_prefix(prefix: &str) -> String {
        format!("{prefix}-proxy")
    }
}

/// Why the node proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeProxyError {
    #[error("connecting to the API server: {0}")]
    Connect(#[from] ferry_client::ClientError),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::RuntimeError),
    #[error("enabling IPv4 forwarding: {0}")]
    Forwarding(std::io::Error),
}

const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";
const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Whether bridged IPv4 traffic passes the host's netfilter hooks (br_netfilter with bridge-nf-call-iptables,
/// which upstream's bridge networking requires): then replies between pods on one bridge are un-NATed by the
/// host's conntrack and pod-to-Service traffic keeps the client pod's address. Turns it on when br_netfilter is
/// loaded; without it the proxy masquerades same-bridge Service traffic instead (backends then see the bridge's
/// address).
fn bridged_traffic_is_tracked() -> bool {
    if !std::path::Path::new(BRIDGE_NF).exists() {
        // Best effort: a kernel with br_netfilter as a module (no error if modprobe or the module is missing).
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    match std::fs::read_to_string(BRIDGE_NF) {
        Ok(v) if v.trim() == "1" => true,
        Ok(_) => std::fs::write(BRIDGE_NF, "1").is_ok(),
        Err(_) => false,
    }
}

/// Turns on IPv4 forwarding (pods reach Services through the host's routing); left on at exit, as every
/// Kubernetes node leaves it, since other networks on the host may depend on it by then.
fn enable_forwarding() -> Result<(), std::io::Error> {
    if std::fs::read_to_string(FORWARDING)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(FORWARDING, "1")
}

/// Runs the node proxy until `shutdown` flips; then removes its table.
pub async fn run_node_proxy(
    config: NodeProxyConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NodeProxyError> {
    enable_forwarding().map_err(NodeProxyError::Forwarding)?;
    let client = tokio::select! {
        biased;
        _ = ferry_client::stopped(&mut shutdown) => return Ok(()),
        client = ferry_client::connect(&config.kubeconfig) => client?,
    };
    let tracked = bridged_traffic_is_tracked();
    if !tracked {
        tracing::warn!("br_netfilter is not loaded: pod-to-Service traffic within the node is masqueraded");
    }
    let proxy_config = ProxyConfig {
        cluster_cidr: Some(config.cluster_cidr),
        bridge_hairpin: (!tracked)
            .then(|| BridgeHairpin { bridge: config.bridge.clone(), pod_cidr: config.cluster_cidr }),
        ..ProxyConfig::default()
    };
    let dataplane = NftDataplane::new(NftConfig::new(config.table.clone()));
    let proxier = Proxier::new(proxy_config, config.node_name.clone(), dataplane);
    let health = Some(HealthServer::new(config.node_ip));

    let mut informers = Informers::new(client);
    let mut services = informers.get::<Service>().subscribe();
    let mut slices = informers.get::<EndpointSlice>().subscribe();
    let (tx, rx) = mpsc::channel(4096);
    let forward = async move {
        loop {
            let event = tokio::select! {
                change = services.next() => match change {
                    Some(Change::Applied { old, new }) => ProxyEvent::Service {
                        old: old.map(|o| Box::new((*o).clone())),
                        new: Some(Box::new((*new).clone())),
                    },
                    Some(Change::Deleted(obj)) => ProxyEvent::Service { old: Some(Box::new((*obj).clone())), new: None },
                    Some(Change::Synced) => continue,
                    None => break,
                },
                change = slices.next() => match change {
                    Some(Change::Applied { old, new }) => ProxyEvent::Slice {
                        old: old.map(|o| Box::new((*o).clone())),
                        new: Some(Box::new((*new).clone())),
                    },
                    Some(Change::Deleted(obj)) => ProxyEvent::Slice { old: Some(Box::new((*obj).clone())), new: None },
                    Some(Change::Synced) => continue,
                    None => break,
                },
            };
            if tx.send(event).await.is_err() {
                break;
            }
        }
    };
    tracing::info!(table = %config.table, node = %config.node_name, "service proxy started");
    let proxying = run(proxier, rx, health, RunConfig::default());
    tokio::pin!(proxying);
    let mut result = Ok(());
    // Stop feeding on shutdown (or a dead watch): dropping the sender lets `run` finish its last sync and
    // hand the proxier back for cleanup.
    {
        let feeding = async {
            tokio::select! {
                biased;
                _ = ferry_client::stopped(&mut shutdown) => {}
                r = informers.run() => result = r.map_err(NodeProxyError::from),
                _ = forward => {}
            }
        };
        tokio::select! {
            _ = feeding => {}
            _ = &mut proxying => {}
        }
    }
    let mut proxier = proxying.await;
    if let Err(e) = proxier.cleanup() {
        tracing::warn!(error = %e, table = %config.table, "removing the proxy table failed");
    }
    tracing::info!(table = %config.table, "service proxy stopped; table removed");
    result
}

/// The node's pod bridge name for a network prefix (the node agent names it `<prefix>0`).
pub fn bridge_for_prefix(prefix: &str) -> String {
    format!("{prefix}0")
}
