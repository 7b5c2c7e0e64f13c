//! The agent's two long-running loops against the API server: node registration and status, and the Lease
//! heartbeat. Both end when shutdown is signalled; every API failure is logged and retried with back-off.

use std::future::Future;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{sleep, Duration, Instant};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::cidr::{pick_pod_cidr, CidrError, Ipv4Cidr};
use crate::host::HostInfo;
use crate::node::{
    default_labels, labels_to_set, new_node, node_status, pod_cidr_of, registration_labels, status_changed,
    used_pod_cidrs,
};
use crate::NodeConfig;

use ferry_client::kube;

/// Where node leases live.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The first retry after a failure (upstream's lease controller starts at 200 ms too).
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// A failed step of a loop, naming the operation.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("{op}: {source}")]
    Api { op: &'static str, source: kube::Error },
    #[error("choosing a pod CIDR: {0}")]
    Cidr(#[from] CidrError),
}

fn api(op: &'static str) -> impl FnOnce(kube::Error) -> SyncError {
    move |source| SyncError::Api { op, source }
}

fn is_status(err: &kube::Error, pred: fn(&kube::core::Status) -> bool) -> bool {
    matches!(err, kube::Error::Api(status) if pred(status))
}

/// Resolves once shutdown is signalled (the value turns true or every sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// `fut`'s output, or `None` when shutdown comes first (the future is then dropped, cancelling its request).
async fn unless_stopped<F: Future>(shutdown: &mut watch::Receiver<bool>, fut: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = stopped(shutdown) => None,
        out = fut => Some(out),
    }
}

pub(crate) struct Agent {
    nodes: Api<Node>,
    leases: Api<Lease>,
    config: NodeConfig,
    cluster_cidr: Ipv4Cidr,
    host: HostInfo,
}

/// What the status loop remembers between syncs.
struct StatusState {
    host: HostInfo,
    /// When this process last wrote the Node's status.
    last_post: Option<Instant>,
    /// Whether this process has applied its registration labels yet.
    labelled: bool,
}

impl Agent {
    pub(crate) fn new(client: kube::Client, config: NodeConfig, cluster_cidr: Ipv4Cidr, host: HostInfo) -> Agent {
        Agent {
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client, LEASE_NAMESPACE),
            config,
            cluster_cidr,
            host,
        }
    }

    pub(crate) async fn run(self, shutdown: watch::Receiver<bool>) {
        let (uid_tx, uid_rx) = watch::channel(None::<String>);
        info!(node = %self.config.node_name, "node agent starting");
        tokio::join!(self.status_loop(shutdown.clone(), uid_tx), self.lease_loop(shutdown, uid_rx));
        info!(node = %self.config.node_name, "node agent stopped");
    }

    async fn status_loop(&self, mut shutdown: watch::Receiver<bool>, uid_tx: watch::Sender<Option<String>>) {
        let mut state = StatusState { host: self.host.clone(), last_post: None, labelled: false };
        let mut backoff = Backoff::new(FIRST_RETRY, self.config.timing.status_update);
        loop {
            let delay = match unless_stopped(&mut shutdown, self.sync_node(&mut state, &uid_tx)).await {
                None => return,
                Some(Ok(())) => {
                    backoff.reset();
                    self.config.timing.status_update
                }
                Some(Err(error)) => {
                    warn!(node = %self.config.node_name, %error, "node status sync failed; retrying");
                    backoff.next_delay()
                }
            };
            if unless_stopped(&mut shutdown, sleep(delay)).await.is_none() {
                return;
            }
        }
    }

    /// One pass: create the Node if absent, else add missing labels, a pod CIDR if none, and post the status
    /// when it changed or was last posted `status_report` ago.
    async fn sync_node(
        &self,
        state: &mut StatusState,
        uid_tx: &watch::Sender<Option<String>>,
    ) -> Result<(), SyncError> {
        let name = self.config.node_name.as_str();
        match HostInfo::probe(&self.config.data_dir) {
            Ok(host) => state.host = host,
            Err(error) => warn!(node = %name, %error, "probing the host failed; reporting the last known facts"),
        }
        let node = match self.nodes.get_opt(name).await.map_err(api("reading the node"))? {
            Some(node) => node,
            None => {
                let cidr = self.pick_cidr().await?;
                let node = new_node(&self.config, &state.host, Some(cidr), Timestamp::now());
                match self.nodes.create(&PostParams::default(), &node).await {
                    Ok(created) => {
                        info!(node = %name, pod_cidr = %cidr, "registered node");
                        state.last_post = Some(Instant::now());
                        state.labelled = true;
                        publish_uid(uid_tx, created.metadata.uid);
                        return Ok(());
                    }
                    Err(e) if is_status(&e, kube::core::Status::is_already_exists) => {
                        self.nodes.get(name).await.map_err(api("reading the node"))?
                    }
                    Err(e) => return Err(api("registering the node")(e)),
                }
            }
        };
        publish_uid(uid_tx, node.metadata.uid.clone());

        let wanted = if state.labelled {
            default_labels(&self.config.hostname, &state.host.architecture)
        } else {
            registration_labels(&self.config, &state.host)
        };
        let missing = labels_to_set(node.metadata.labels.as_ref(), &wanted);
        if !missing.is_empty() {
            debug!(node = %name, labels = ?missing, "setting node labels");
            let patch = json!({"metadata": {"labels": missing}});
            self.nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api("labelling the node"))?;
        }
        state.labelled = true;

        if pod_cidr_of(&node).is_none() {
            let cidr = self.pick_cidr().await?.to_string();
            info!(node = %name, pod_cidr = %cidr, "assigning a pod CIDR");
            let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
            self.nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api("setting the pod CIDR"))?;
        }

        let desired = node_status(&self.config, &state.host, node.status.as_ref(), Timestamp::now());
        let stale = state.last_post.is_none_or(|at| at.elapsed() >= self.config.timing.status_report);
        if stale || status_changed(node.status.as_ref(), &desired) {
            let patch = json!({"status": desired});
            self.nodes
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api("posting the node status"))?;
            debug!(node = %name, "posted node status");
            state.last_post = Some(Instant::now());
        }
        Ok(())
    }

    /// The first block (`node_cidr_prefix`, /24 by default) of the cluster CIDR that no other Node holds.
    async fn pick_cidr(&self) -> Result<Ipv4Cidr, SyncError> {
        let nodes = self.nodes.list(&Default::default()).await.map_err(api("listing nodes"))?;
        let used = used_pod_cidrs(&nodes.items, &self.config.node_name);
        Ok(pick_pod_cidr(self.cluster_cidr, self.config.node_cidr_prefix, &used)?)
    }

    async fn lease_loop(&self, mut shutdown: watch::Receiver<bool>, mut uid_rx: watch::Receiver<Option<String>>) {
        let mut cached: Option<Lease> = None;
        let mut backoff = Backoff::new(FIRST_RETRY, self.config.timing.lease_renew);
        loop {
            let uid = uid_rx.borrow_and_update().clone();
            let Some(uid) = uid else {
                // The Node is not registered yet: wait for the status loop (or shutdown).
                match unless_stopped(&mut shutdown, uid_rx.changed()).await {
                    Some(Ok(())) => continue,
                    None | Some(Err(_)) => return,
                }
            };
            let delay = match unless_stopped(&mut shutdown, self.renew_lease(&uid, &mut cached)).await {
                None => return,
                Some(Ok(())) => {
                    backoff.reset();
                    self.config.timing.lease_renew
                }
                Some(Err(error)) => {
                    warn!(node = %self.config.node_name, %error, "renewing the node lease failed; retrying");
                    backoff.next_delay()
                }
            };
            if unless_stopped(&mut shutdown, sleep(delay)).await.is_none() {
                return;
            }
        }
    }

    /// Writes the Lease with a fresh `renewTime`, from the last written copy when there is one (a conflict or
    /// error drops it, so the next attempt reads the Lease again).
    async fn renew_lease(&self, node_uid: &str, cached: &mut Option<Lease>) -> Result<(), SyncError> {
        let name = self.config.node_name.as_str();
        let base = match cached.take() {
            Some(lease) => Some(lease),
            None => self.leases.get_opt(name).await.map_err(api("reading the node lease"))?,
        };
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: name.to_string(),
            uid: node_uid.to_string(),
            ..OwnerReference::default()
        };
        let spec = LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(self.config.timing.lease_duration_seconds),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        };
        let written = match base {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(LEASE_NAMESPACE.to_string()),
                        owner_references: Some(vec![owner]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.leases.create(&PostParams::default(), &lease).await.map_err(api("creating the node lease"))?
            }
            Some(mut lease) => {
                let current = lease.spec.get_or_insert_with(LeaseSpec::default);
                current.holder_identity = spec.holder_identity;
                current.lease_duration_seconds = spec.lease_duration_seconds;
                current.renew_time = spec.renew_time;
                let owners = lease.metadata.owner_references.get_or_insert_with(Vec::new);
                owners.retain(|o| !(o.kind == "Node" && o.api_version == "v1"));
                owners.push(owner);
                self.leases
                    .replace(name, &PostParams::default(), &lease)
                    .await
                    .map_err(api("renewing the node lease"))?
            }
        };
        *cached = Some(written);
        Ok(())
    }
}

fn publish_uid(uid_tx: &watch::Sender<Option<String>>, uid: Option<String>) {
    uid_tx.send_if_modified(|current| {
        if *current != uid && uid.is_some() {
            *current = uid;
            true
        } else {
            false
        }
    });
}
