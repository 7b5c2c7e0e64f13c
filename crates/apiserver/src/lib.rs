//! The Kubernetes API server: HTTPS with client-certificate and token authentication,
//! discovery, OpenAPI, generic REST storage over `ferry-store` (the only crate that touches the
//! store), watch, Status errors, Service IP/port allocation, and the in-process control loops
//! that upstream runs inside the API server (namespace finalization, `kubernetes` Service
//! endpoints, store compaction).
#![forbid(unsafe_code)]

mod bootstrap;
mod deletion;
mod discovery;
mod http;
mod managed;
mod metrics;
mod namespaces;
mod nodeproxy;
mod object;
mod patch;
pub mod pki;
mod registry;
mod request;
mod scale;
mod selectors;
mod server;
mod services;
pub mod status;
mod table;
mod watch;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferry_store::Store;
use tokio::task::JoinSet;

pub use http::version_info;

/// Configuration of the API server, built once by the binary.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// 0 picks a free port (tests).
    pub https_port: u16,
    /// The address other components and the `kubernetes` Endpoints use to reach the server.
    pub advertise_address: IpAddr,
    pub service_cidr: (Ipv4Addr, u8),
    pub node_port_range: RangeInclusive<u16>,
    pub cluster_domain: String,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// How often the store is compacted (history older than one interval is dropped).
    pub compaction_interval: Duration,
}

/// Errors that stop the API server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("credentials: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("bootstrapping cluster objects: {0}")]
    Bootstrap(status::ApiError),
}

/// A running API server.
pub struct ApiServer {
    /// `https://host:port`
    pub url: String,
    pub kubeconfig: PathBuf,
    pub local_addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: JoinSet<()>,
    pki: pki::Pki,
    data_dir: PathBuf,
}

impl ApiServer {
    /// Start serving. Returns once the listener is bound, the cluster objects exist and the
    /// admin kubeconfig is written.
    pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<ApiServer, StartError> {
        let cidr = services::service_cidr(config.service_cidr).map_err(StartError::Config)?;
        let kubernetes_ip = services::kubernetes_service_ip(cidr);
        let mut dns: Vec<String> = vec![
            "localhost".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{}", config.cluster_domain),
        ];
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim().to_string();
            if !h.is_empty() && !dns.contains(&h) {
                dns.push(h);
            }
        }
        let mut ips: Vec<IpAddr> =
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(kubernetes_ip), config.advertise_address];
        if !config.bind_address.is_unspecified() && !ips.contains(&config.bind_address) {
            ips.push(config.bind_address);
        }
        ips.dedup();
        let pki = pki::Pki::load_or_create(&config.data_dir, &dns, &ips)?;
        let tls = pki.server_config()?;

        let hooks = services::ServiceHooks::new(cidr, config.node_port_range.clone());
        let registry = registry::Registry::new(store.clone(), hooks);
        registry.restore_allocations().await.map_err(StartError::Bootstrap)?;

        let addr = SocketAddr::new(config.bind_address, config.https_port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let port = local_addr.port();
        bootstrap::ensure_cluster_objects(&registry, kubernetes_ip, config.advertise_address, port)
            .await
            .map_err(StartError::Bootstrap)?;

        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let host = if config.bind_address.is_unspecified() || config.bind_address.is_loopback() {
            "127.0.0.1".to_string()
        } else {
            config.bind_address.to_string()
        };
        let url = format!("https://{host}:{port}");
        let state = Arc::new(http::State {
            registry,
            openapi: ferry_openapi::build(),
            tokens: pki.tokens.clone(),
            server_address: format!("{}:{port}", config.advertise_address),
            shutdown: shutdown_rx.clone(),
            bookmark_interval: config.bookmark_interval,
            ready: std::sync::atomic::AtomicBool::new(false),
            node_dialer: Some(nodeproxy::NodeDialer::new(pki.node_client_config()?)),
            metrics: metrics::RequestCounter::default(),
        });
        let kubeconfig = config.data_dir.join("kubeconfig.yaml");
        pki.write_kubeconfig(&kubeconfig, &url)?;

        let mut tasks = JoinSet::new();
        tasks.spawn(server::serve(listener, tls, state.clone(), shutdown_rx.clone(), Duration::from_secs(5)));
        tasks.spawn(namespaces::run(state.clone(), shutdown_rx.clone()));
        tasks.spawn(bootstrap::compactor(state.clone(), config.compaction_interval, shutdown_rx.clone()));
        state.ready.store(true, Ordering::Release);
        tracing::info!(%url, kubeconfig = %kubeconfig.display(), "API server ready");
        Ok(ApiServer { url, kubeconfig, local_addr, shutdown: shutdown_tx, tasks, pki, data_dir: config.data_dir })
    }

    /// A serving certificate for a node agent's HTTPS endpoint (cert chain PEM, key PEM) and
    /// the CA its clients' certificates must chain to.
    pub fn node_serving_tls(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<(String, String, String), StartError> {
        let (cert, key) = self.pki.issue_serving_cert(dns_names, ips)?;
        Ok((cert, key, self.pki.ca_pem.clone()))
    }

    /// Credentials for an in-process component that talks to this server the way a remote
    /// one would: issues a client certificate for `user` in `groups` and writes a kubeconfig
    /// to `<data-dir>/components/<name>.kubeconfig`.
    pub fn component_kubeconfig(&self, name: &str, user: &str, groups: &[&str]) -> Result<PathBuf, StartError> {
        let dir = self.data_dir.join("components");
        std::fs::create_dir_all(&dir)
            .map_err(|source| StartError::Pki(pki::PkiError::Io { path: dir.clone(), source }))?;
        let path = dir.join(format!("{name}.kubeconfig"));
        self.pki.write_component_kubeconfig(&path, &self.url, user, groups)?;
        Ok(path)
    }

    /// Stop accepting requests, end watches, wait for every task.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "API server task ended abnormally");
            }
        }
    }
}
