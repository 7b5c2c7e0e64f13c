//! Running the pods bound to this node: a manager watches them and owns one worker task per
//! pod; `Shared` holds what workers share (network, IP allocator, image resolution, paths).
//!
//! Lifecycle rules: on start the manager removes whatever a previous run left (processes,
//! sandboxes, IPs) and re-creates the pods still bound here, with a `SandboxChanged` event; on
//! shutdown every worker stops its containers and removes its sandbox, so nothing is left.

mod probe;
pub mod procrt;
pub mod runtime;
pub mod service_env;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use ferry_containers::image::Plan;
use ferry_sys::{BridgeSpec, Network, SandboxSpec};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, Service};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinSet;

use crate::events::Recorder;
use crate::ipam::IpAllocator;
use crate::Ipv4Cidr;
pub use runtime::ContainerRuntime;

/// A pod's network sandbox and the files its containers see.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub netns: String,
    pub netns_path: PathBuf,
    pub veth_host: String,
    pub ip: Ipv4Addr,
    pub hostname: String,
    pub hosts: String,
    pub resolv: String,
    pub uid: String,
}

/// Node-wide settings for pods.
#[derive(Clone, Debug)]
pub struct PodsConfig {
    pub node_name: String,
    pub node_ip: IpAddr,
    /// Prefix of every bridge, veth and netns name this agent makes (unique per cluster).
    pub net_prefix: String,
    pub cluster_domain: String,
    /// The cluster DNS Service address (resolv.conf `nameserver` for ClusterFirst pods), when known.
    pub cluster_dns: Option<Ipv4Addr>,
    pub data_dir: PathBuf,
    /// The executable providing built-in images (`ferry agnhost ...`).
    pub ferry_exe: PathBuf,
}

/// What every pod worker shares.
pub struct Shared {
    pub config: PodsConfig,
    /// Running containers, for the streaming endpoint.
    pub directory: Arc<crate::server::Directory>,
    pub node_ip: IpAddr,
    network: Arc<dyn Network>,
    ipam: Mutex<IpAllocator>,
    pod_cidr: Ipv4Cidr,
    client: Client,
    /// Every Service of the cluster, as the node's watch last saw it (service environment variables).
    services: Store<Service>,
}

/// How long a container start waits for the first full read of the Services before giving up for this attempt.
const SERVICES_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a container's environment could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Upstream refuses too: without the Services, `KUBERNETES_SERVICE_HOST` and friends would be missing.
    #[error("services have not yet been read at least once, cannot construct envvars")]
    ServicesNotSynced,
}

impl Shared {
    fn bridge(&self) -> String {
        format!("{}0", self.config.net_prefix)
    }

    fn names(&self, uid: &str) -> (String, String) {
        let short: String = uid.chars().filter(|c| c.is_ascii_hexdigit()).take(8).collect();
        (format!("{}-{uid}", self.config.net_prefix), format!("{}{short}", self.config.net_prefix))
    }

    /// Image resolution for one container.
    pub fn resolve(&self, c: &Container) -> Plan {
        ferry_containers::image::resolve(
            &self.config.ferry_exe,
            c.image.as_deref().unwrap_or(""),
            &c.command.clone().unwrap_or_default(),
            &c.args.clone().unwrap_or_default(),
        )
    }

    /// Where a container instance's log goes (the kubelet's layout).
    pub fn log_path(&self, ns: &str, name: &str, uid: &str, container: &str, restart: i32) -> PathBuf {
        self.config
            .data_dir
            .join("pods")
            .join(format!("{ns}_{name}_{uid}"))
            .join(container)
            .join(format!("{restart}.log"))
    }

    /// The environment of a container: its own `env`/`envFrom`, then the service variables (see [`service_env`])
    /// from the Services cached right now. Fails while the Services were never read.
    pub async fn container_env(
        &self,
        pod: &Pod,
        c: &Container,
        sb: &Sandbox,
    ) -> Result<Vec<(String, String)>, EnvError> {
        let services = self.service_env(pod).await?;
        let own =
            worker::resolve_env(&self.client, pod, c, sb.ip, &self.node_ip.to_string(), &sb.hostname, &services).await;
        Ok(service_env::with_service_env(own, &services))
    }

    /// The service variables for `pod`'s containers, from the Service cache.
    async fn service_env(&self, pod: &Pod) -> Result<service_env::ServiceEnv, EnvError> {
        match tokio::time::timeout(SERVICES_SYNC_WAIT, self.services.wait_until_ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return Err(EnvError::ServicesNotSynced),
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let cached = self.services.state();
        Ok(service_env::service_env(cached.iter().map(|s| s.as_ref()), namespace, links))
    }

    /// Create the pod's network namespace, veth and address, and its hosts/resolv files.
    pub async fn setup_sandbox(&self, pod: &Pod) -> Result<Sandbox, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ip = self.ipam.lock().await.allocate(&uid).map_err(|e| e.to_string())?;
        let (netns, veth_host) = self.names(&uid);
        let spec = SandboxSpec {
            netns: netns.clone(),
            veth_host: veth_host.clone(),
            veth_pod: "eth0".into(),
            ip,
            prefix: self.pod_cidr.prefix(),
            gateway: self.pod_cidr.nth(1).unwrap_or(ip),
            bridge: self.bridge(),
        };
        let network = self.network.clone();
        let created = tokio::task::spawn_blocking(move || network.create_sandbox(&spec)).await;
        match created {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = self.ipam.lock().await.release(&uid);
                return Err(e.to_string());
            }
            Err(e) => return Err(e.to_string()),
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let names = match ferry_containers::hosts::PodHostname::new(
            &name,
            &ns,
            spec.hostname.as_deref(),
            spec.subdomain.as_deref(),
            &self.config.cluster_domain,
        ) {
            Ok(n) => n,
            Err(e) => {
                self.teardown_sandbox(&Sandbox {
                    netns_path: PathBuf::new(),
                    netns,
                    veth_host,
                    ip,
                    hostname: String::new(),
                    hosts: String::new(),
                    resolv: String::new(),
                    uid,
                })
                .await;
                return Err(e.to_string());
            }
        };
        let hostname = names.hostname.clone();
        let aliases: Vec<ferry_containers::hosts::HostAlias> = spec
            .host_aliases
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|a| ferry_containers::hosts::HostAlias { ip: a.ip, hostnames: a.hostnames.unwrap_or_default() })
            .collect();
        let hosts = ferry_containers::hosts::hosts_file(&[ip.to_string()], &names, &aliases);
        let resolv = self.resolv_conf(pod);
        Ok(Sandbox {
            netns_path: PathBuf::from("/run/netns").join(&netns),
            netns,
            veth_host,
            ip,
            hostname,
            hosts,
            resolv,
            uid,
        })
    }

    fn resolv_conf(&self, pod: &Pod) -> String {
        use ferry_containers::dns::{pod_resolv_conf, DnsInputs, DnsPolicy, PodDnsConfig};
        let spec = pod.spec.clone().unwrap_or_default();
        let dns_config = spec.dns_config.map(|c| PodDnsConfig {
            nameservers: c.nameservers.unwrap_or_default(),
            searches: c.searches.unwrap_or_default(),
            options: c.options.unwrap_or_default().into_iter().filter_map(|o| o.name.map(|n| (n, o.value))).collect(),
        });
        let inputs = DnsInputs {
            policy: DnsPolicy::parse(spec.dns_policy.as_deref()),
            host_network: spec.host_network.unwrap_or(false),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            cluster_domain: self.config.cluster_domain.clone(),
            cluster_dns: self.config.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").ok(),
            node_ips_ipv6: vec![self.node_ip.is_ipv6()],
            dns_config,
        };
        pod_resolv_conf(&inputs).0.render()
    }

    /// Remove a pod's sandbox and release its IP.
    pub async fn teardown_sandbox(&self, sb: &Sandbox) {
        let network = self.network.clone();
        let (netns, veth) = (sb.netns.clone(), sb.veth_host.clone());
        match tokio::task::spawn_blocking(move || network.delete_sandbox(&netns, &veth)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(netns = %sb.netns, error = %e, "deleting pod sandbox"),
            Err(e) => tracing::warn!(error = %e, "deleting pod sandbox"),
        }
        if let Err(e) = self.ipam.lock().await.release(&sb.uid) {
            tracing::warn!(error = %e, "releasing pod IP");
        }
    }
}

/// Watches this node's pods and owns their workers.
pub struct PodManager {
    shared: Arc<Shared>,
    runtime: Arc<dyn ContainerRuntime>,
    client: Client,
    events: Arc<Mutex<Recorder>>,
    /// Fills `Shared::services`; driven by [`PodManager::run`].
    services: Writer<Service>,
}

impl PodManager {
    pub async fn new(
        client: Client,
        config: PodsConfig,
        network: Arc<dyn Network>,
        runtime: Arc<dyn ContainerRuntime>,
        pod_cidr: Ipv4Cidr,
        directory: Arc<crate::server::Directory>,
    ) -> Result<PodManager, String> {
        let ipam_path = config.data_dir.join("pod-ips.json");
        let ipam = IpAllocator::open(&ipam_path, pod_cidr).map_err(|e| e.to_string())?;
        let events = Arc::new(Mutex::new(Recorder::new(client.clone(), "kubelet", &config.node_name)));
        let services = Writer::default();
        let shared = Arc::new(Shared {
            node_ip: config.node_ip,
            config,
            directory,
            network,
            ipam: Mutex::new(ipam),
            pod_cidr,
            client: client.clone(),
            services: services.as_reader(),
        });
        Ok(PodManager { shared, runtime, client, events, services })
    }

    /// Remove what a previous run left behind (containers, sandboxes, IP allocations).
    async fn clean_leftovers(&self) -> bool {
        for id in self.runtime.list().await {
            self.runtime.remove(&id).await;
        }
        let network = self.shared.network.clone();
        let prefix = self.shared.config.net_prefix.clone();
        let found = tokio::task::spawn_blocking(move || network.list_sandboxes(&format!("{prefix}-"))).await;
        let mut any = false;
        if let Ok(Ok(sandboxes)) = found {
            for sb in sandboxes {
                any = true;
                let uid = sb.netns.trim_start_matches(&format!("{}-", self.shared.config.net_prefix)).to_string();
                let (_, veth) = self.shared.names(&uid);
                let network = self.shared.network.clone();
                let _ = tokio::task::spawn_blocking(move || network.delete_sandbox(&sb.netns, &veth)).await;
            }
        }
        let mut ipam = self.shared.ipam.lock().await;
        let _ = ipam.retain(|_| false);
        any
    }

    /// Run until `shutdown`; then stop every pod and remove every sandbox.
    pub async fn run(mut self, shutdown: watch::Receiver<bool>) {
        let writer = std::mem::take(&mut self.services);
        let cache = cache_services(self.client.clone(), writer, shutdown.clone());
        tokio::join!(cache, self.run_pods(shutdown));
    }

    async fn run_pods(self, mut shutdown: watch::Receiver<bool>) {
        let restarted = self.clean_leftovers().await;
        let bridge = BridgeSpec {
            name: self.shared.bridge(),
            gateway: self.shared.pod_cidr.nth(1).unwrap_or(Ipv4Addr::UNSPECIFIED),
            prefix: self.shared.pod_cidr.prefix(),
        };
        let network = self.shared.network.clone();
        match tokio::task::spawn_blocking(move || network.ensure_bridge(&bridge)).await {
            Ok(Ok(())) => {}
            other => tracing::error!(result = ?other.map(|r| r.map_err(|e| e.to_string())), "creating the node bridge"),
        }
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.shared.config.node_name));
        let mut stream = watcher(api, cfg).boxed();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers: HashMap<String, mpsc::Sender<Option<Pod>>> = HashMap::new();
        let mut tasks: JoinSet<String> = JoinSet::new();
        let mut init_seen: Option<Vec<String>> = None;
        loop {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(uid) = done {
                        workers.remove(&uid);
                    }
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            let Some(ev) = ev else { break };
            let pods: Vec<(Pod, bool)> = match ev {
                Ok(watcher::Event::Apply(p)) => vec![(p, true)],
                Ok(watcher::Event::Delete(p)) => vec![(p, false)],
                Ok(watcher::Event::Init) => {
                    init_seen = Some(Vec::new());
                    vec![]
                }
                Ok(watcher::Event::InitApply(p)) => {
                    if let (Some(seen), Some(uid)) = (init_seen.as_mut(), p.metadata.uid.clone()) {
                        seen.push(uid);
                    }
                    vec![(p, true)]
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(seen) = init_seen.take() {
                        for (uid, tx) in workers.iter() {
                            if !seen.contains(uid) {
                                let _ = tx.try_send(None);
                            }
                        }
                    }
                    vec![]
                }
                Err(e) => {
                    tracing::debug!(error = %e, "pod watch");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    vec![]
                }
            };
            for (pod, present) in pods {
                let Some(uid) = pod.metadata.uid.clone() else { continue };
                if let Some(tx) = workers.get(&uid) {
                    let _ = tx.send(present.then_some(pod)).await;
                    continue;
                }
                if !present {
                    continue;
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                let finished = matches!(phase.as_str(), "Succeeded" | "Failed");
                if finished && pod.metadata.deletion_timestamp.is_none() {
                    continue;
                }
                if finished
                    || (pod.metadata.deletion_timestamp.is_some()
                        && pod.status.as_ref().and_then(|s| s.pod_ip.clone()).is_none())
                {
                    // Nothing runs for it here: complete the deletion.
                    let ns = pod.metadata.namespace.clone().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                        ..Default::default()
                    };
                    let _ = api.delete(pod.metadata.name.as_deref().unwrap_or(""), &dp).await;
                    continue;
                }
                if restarted && pod.status.as_ref().and_then(|s| s.pod_ip.clone()).is_some() {
                    self.events
                        .lock()
                        .await
                        .pod_event(
                            &pod,
                            "Normal",
                            "SandboxChanged",
                            "Pod sandbox changed, it will be killed and re-created.",
                            None,
                        )
                        .await;
                }
                let (tx, rx) = mpsc::channel(16);
                workers.insert(uid.clone(), tx);
                let env = worker::WorkerEnv {
                    client: self.client.clone(),
                    runtime: self.runtime.clone(),
                    shared: self.shared.clone(),
                    events: self.events.clone(),
                };
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    worker::run(env, pod, rx, stop).await;
                    uid
                });
            }
        }
        // Shutdown: every worker stops its containers and removes its sandbox.
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let network = self.shared.network.clone();
        let bridge = self.shared.bridge();
        let _ = tokio::task::spawn_blocking(move || network.delete_bridge(&bridge)).await;
    }
}

/// Keeps `writer`'s cache of every Service in the cluster current until `shutdown` (a watch with back-off).
async fn cache_services(client: Client, writer: Writer<Service>, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Service> = Api::all(client);
    let mut stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff()).boxed();
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "service watch"),
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
