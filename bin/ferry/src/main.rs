//! The `ferry` binary: parses flags, builds each component's typed config, and wires the
//! crates together. The only composition root; the only place `anyhow` is used.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// Where `ferry server` keeps its state (and admin kubeconfig) unless told otherwise.
const DEFAULT_DATA_DIR: &str = "/var/lib/ferry";

#[derive(Parser)]
#[command(name = "ferry", version, about = "A Kubernetes-compatible cluster in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (and, in later releases, the node agent) on this machine.
    Server(Box<ServerArgs>),
    /// Print the Kubernetes version ferry serves.
    Version,
    /// The built-in test image (Kubernetes' e2e `agnhost`): `ferry agnhost netexec --http-port 8080`, ...
    #[command(disable_help_flag = true)]
    Agnhost {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Explain why a Service does or does not work: `ferry explain service NAME [-n NAMESPACE]`.
    #[command(subcommand)]
    Explain(ferry_explain::cli::ExplainCommand),
    /// Internal entry points of the process container runtime (the per-container shim, exec).
    #[command(hide = true)]
    Internal {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the datastore, certificates and kubeconfig live.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server (0 picks a free port).
    #[arg(long, default_value_t = 6443)]
    https_port: u16,
    /// Address advertised to clients and in the `kubernetes` Endpoints (default: this host's
    /// first global IPv4 address).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Pod network.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Service (ClusterIP) network.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// NodePort range.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Cluster DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// This node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Datastore: `redb` (durable, default) or `memory` (nothing survives a restart).
    #[arg(long, default_value = "redb")]
    datastore: String,
    /// Seconds between store compactions (history older than this is dropped).
    #[arg(long, default_value_t = 300, hide = true)]
    compaction_interval_seconds: u64,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 10, hide = true)]
    bookmark_interval_seconds: u64,
    /// Do not run the node agent on this machine (API server and scheduler only).
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler.
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controllers (Endpoints, EndpointSlice, workloads, garbage collection, load balancers).
    #[arg(long)]
    disable_controllers: bool,
    /// Addresses for `type: LoadBalancer` Services: comma-separated IPs, CIDRs and ranges (a-b). Default: the
    /// node's own address, shared between Services port by port.
    #[arg(long)]
    load_balancer_pool: Option<String>,
    /// The node's pod capacity (the scheduler places no more pods on it).
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Prefix length of each node's pod CIDR inside --cluster-cidr (/24: 254 pod addresses).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(16..=28))]
    node_cidr_mask_size: u8,
    /// Seconds a node may go without renewing its Lease before it is marked Unknown, tainted unreachable, and
    /// (after its pods' tolerationSeconds, 300 by default) emptied so controllers replace its pods elsewhere.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period_seconds: u64,
    /// Port of the node agent's HTTPS endpoint (exec, attach, port-forward, logs); 0 picks one.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Prefix of the bridge, veth and network namespace names this node creates.
    #[arg(long, default_value = "ferry", hide = true)]
    network_prefix: String,
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/').context("CIDR must look like 10.43.0.0/16")?;
    let ip: Ipv4Addr = ip.parse().with_context(|| format!("bad CIDR address in {s}"))?;
    let prefix: u8 = prefix.parse().with_context(|| format!("bad CIDR prefix in {s}"))?;
    if !(8..=30).contains(&prefix) {
        bail!("CIDR prefix of {s} must be between 8 and 30");
    }
    Ok((ip, prefix))
}

fn parse_range(s: &str) -> Result<std::ops::RangeInclusive<u16>> {
    let (a, b) = s.split_once('-').context("port range must look like 30000-32767")?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    if a == 0 || a > b {
        bail!("bad port range {s}");
    }
    Ok(a..=b)
}

/// This host's first global IPv4 address, as `ip` reports it; loopback when there is none.
fn host_address() -> IpAddr {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output();
    if let Ok(out) = out {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == "inet" {
                    if let Some(addr) = words.next().and_then(|a| a.split('/').next()).and_then(|a| a.parse().ok()) {
                        return addr;
                    }
                }
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

async fn server(args: ServerArgs) -> Result<()> {
    let service_cidr = parse_cidr(&args.service_cidr)?;
    let cluster_cidr = parse_cidr(&args.cluster_cidr)?;
    let node_port_range = parse_range(&args.service_node_port_range)?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let advertise = match args.advertise_address {
        Some(a) => a,
        None if !args.bind_address.is_unspecified() && !args.bind_address.is_loopback() => args.bind_address,
        None => host_address(),
    };
    let node_name = args.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_lowercase()).unwrap_or_default()
    });
    let store: Arc<dyn ferry_store::Store> = match args.datastore.as_str() {
        "redb" => {
            let path = args.data_dir.join("db").join("state.redb");
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Arc::new(ferry_store::RedbStore::open(&path).with_context(|| format!("opening {}", path.display()))?)
        }
        "memory" => Arc::new(ferry_store::MemoryStore::new()),
        other => bail!("unknown datastore {other:?} (use redb or memory)"),
    };
    let config = ferry_apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        https_port: args.https_port,
        advertise_address: advertise,
        service_cidr,
        node_port_range,
        cluster_domain: args.cluster_domain.clone(),
        bookmark_interval: Duration::from_secs(args.bookmark_interval_seconds.max(1)),
        compaction_interval: Duration::from_secs(args.compaction_interval_seconds.max(1)),
    };
    let api = ferry_apiserver::ApiServer::start(config, store).await.context("starting the API server")?;

    // Components talk to the API server as remote ones would: over HTTPS with their own certificates.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut components = tokio::task::JoinSet::new();
    if !args.disable_scheduler {
        let kubeconfig = api.component_kubeconfig("scheduler", "system:kube-scheduler", &[])?;
        let stop = stop_rx.clone();
        components.spawn(async move {
            if let Err(e) = ferry_scheduler::run(ferry_scheduler::SchedulerConfig::new(kubeconfig), stop).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        });
    }
    if !args.disable_controllers {
        let kubeconfig = api.component_kubeconfig("controllers", "system:kube-controller-manager", &[])?;
        let load_balancer_pool = match &args.load_balancer_pool {
            Some(spec) => ferry_controllers::loadbalancer::Pool::parse(spec)?,
            None => ferry_controllers::loadbalancer::Pool::new(vec![advertise]),
        };
        let stop = stop_rx.clone();
        components.spawn(async move {
            let config = ferry_controllers::ControllersConfig {
                kubeconfig,
                load_balancer_pool,
                node_monitor_grace_period: Duration::from_secs(args.node_monitor_grace_period_seconds.max(1)),
            };
            if let Err(e) = ferry_controllers::run(config, stop).await {
                tracing::error!(error = %e, "controllers stopped");
            }
        });
    }
    if !args.disable_agent {
        let kubeconfig = api.component_kubeconfig("node", &format!("system:node:{node_name}"), &["system:nodes"])?;
        let agent_dir = args.data_dir.join("agent");
        let mut node =
            ferry_kubelet::NodeConfig::new(kubeconfig, node_name.clone(), advertise, cluster_cidr, agent_dir.clone());
        node.kubelet_port = args.kubelet_port;
        node.max_pods = args.max_pods;
        node.node_cidr_prefix = args.node_cidr_mask_size;
        let ferry_exe = std::env::current_exe().context("locating the ferry executable")?;
        let network: Arc<dyn ferry_sys::Network> =
            Arc::new(ferry_sys_linux::IpNetwork::find().context("the node agent needs iproute2's `ip`")?);
        let process_runtime =
            ferry_kubelet::pods::procrt::ProcessRuntime::new(ferry_exe.clone(), agent_dir.join("containers"))
                .context("starting the process container runtime")?;
        let (cert_pem, key_pem, client_ca_pem) =
            api.node_serving_tls(std::slice::from_ref(&node_name), &[advertise])?;
        let streaming = Some((
            process_runtime.inner().clone(),
            ferry_kubelet::server::ServerTls { cert_pem, key_pem, client_ca_pem },
        ));
        let runtime: Arc<dyn ferry_kubelet::pods::ContainerRuntime> = Arc::new(process_runtime);
        let setup = ferry_kubelet::PodsSetup {
            config: ferry_kubelet::pods::PodsConfig {
                node_name: node_name.clone(),
                node_ip: advertise,
                net_prefix: args.network_prefix.clone(),
                cluster_domain: args.cluster_domain.clone(),
                cluster_dns: None,
                data_dir: agent_dir,
                ferry_exe,
            },
            network,
            runtime,
            streaming,
        };
        let stop = stop_rx.clone();
        components.spawn(async move {
            if let Err(e) = ferry_kubelet::run_with_pods(node, Some(setup), stop).await {
                tracing::error!(error = %e, "node agent stopped");
            }
        });

        // The node's Service proxy (kernel mode): its own identity, one nftables table, removed at shutdown.
        let kubeconfig = api.component_kubeconfig("proxy", "system:kube-proxy", &[])?;
        let proxy = ferry_proxy::NodeProxyConfig {
            kubeconfig,
            node_name: node_name.clone(),
            node_ip: advertise,
            table: ferry_proxy::NodeProxyConfig::table_for_prefix(&args.network_prefix),
            cluster_cidr: ferry_proxy::Ipv4Net::new(cluster_cidr.0, cluster_cidr.1)
                .context("the cluster CIDR is not a valid IPv4 network")?,
            bridge: ferry_proxy::node::bridge_for_prefix(&args.network_prefix),
        };
        let stop = stop_rx.clone();
        components.spawn(async move {
            if let Err(e) = ferry_proxy::run_node_proxy(proxy, stop).await {
                tracing::error!(error = %e, "service proxy stopped");
            }
        });
    }

    println!("ferry server ready: kubeconfig={} url={}", api.kubeconfig.display(), api.url);
    eprintln!(
        "Kubeconfig written to {}; try: kubectl --kubeconfig {} get ns",
        api.kubeconfig.display(),
        api.kubeconfig.display()
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    // Components first (the node agent stops its pods and removes their sandboxes), then the API server.
    let _ = stop_tx.send(true);
    while components.join_next().await.is_some() {}
    api.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// `ferry internal shim|nsexec ...`: the process runtime's helpers (single-threaded, so they
/// run before anything else in the process).
fn internal(args: &[String]) -> i32 {
    match args.split_first() {
        Some((cmd, rest)) if cmd == "shim" => ferry_containers::shim_main(rest),
        Some((cmd, rest)) if cmd == "nsexec" => ferry_containers::nsexec_main(rest),
        _ => {
            eprintln!("usage: ferry internal shim|nsexec ...");
            2
        }
    }
}

fn main() -> Result<()> {
    // Built-in images and runtime helpers take over the process before any thread or handler exists.
    let raw: Vec<String> = std::env::args().collect();
    match raw.get(1).map(String::as_str) {
        Some("internal") => std::process::exit(internal(&raw[2..])),
        Some("agnhost") => std::process::exit(ferry_agnhost::main(raw[2..].to_vec())),
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("{}", ferry_apiserver::version_info()["gitVersion"].as_str().unwrap_or(""));
            Ok(())
        }
        Command::Agnhost { args } => std::process::exit(ferry_agnhost::main(args)),
        Command::Internal { args } => std::process::exit(internal(&args)),
        Command::Explain(cmd) => std::process::exit(ferry_explain::cli::main(cmd, Path::new(DEFAULT_DATA_DIR))),
        Command::Server(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(server(*args))
        }
    }
}
