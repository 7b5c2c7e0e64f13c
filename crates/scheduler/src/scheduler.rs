//! The scheduler loop: reflectors of nodes and pods feed one task that keeps the queue, schedules one pod at a
//! time with `fit::schedule`, binds it (`pods/{name}/binding`) or records why it cannot (PodScheduled condition and
//! a FailedScheduling event), and ends when told to.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::fit::{self, Resources};
use crate::queue::{Attempt, PodKey, Queue};
use ferry_runtime::events::Recorder;

/// The scheduler name pods get by default (`spec.schedulerName`).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// What the scheduler needs to run.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A kubeconfig for the API server (the scheduler is an ordinary API client).
    pub kubeconfig: PathBuf,
    /// Pods whose `spec.schedulerName` is this are ours; it is also the events' source component.
    pub scheduler_name: String,
}

impl SchedulerConfig {
    /// The default scheduler (`default-scheduler`) for the cluster `kubeconfig` points at.
    pub fn new(kubeconfig: PathBuf) -> SchedulerConfig {
        SchedulerConfig { kubeconfig, scheduler_name: DEFAULT_SCHEDULER_NAME.into() }
    }
}

/// Why the scheduler stopped before being told to.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("connecting to the API server: {0}")]
    Connect(#[from] ferry_client::ClientError),
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Runs the scheduler until `shutdown` becomes `true` (or its sender is dropped). Spawns no tasks: everything runs
/// inside this future, so it is done when it returns.
pub async fn run(config: SchedulerConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), SchedulerError> {
    let client = tokio::select! {
        biased;
        _ = ferry_client::stopped(&mut shutdown) => return Ok(()),
        client = ferry_client::connect(&config.kubeconfig) => client?,
    };
    let (node_store, node_writer) = reflector::store::<Node>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let mut node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer)
        .boxed();
    let mut pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .boxed();
    let mut state = State::new(client, &config.scheduler_name, node_store, pod_store);
    tracing::info!(scheduler = %config.scheduler_name, "scheduler started");
    loop {
        let now = Instant::now();
        let wakeup = if state.synced() { state.queue.next_wakeup(now) } else { None };
        tokio::select! {
            biased;
            _ = ferry_client::stopped(&mut shutdown) => break,
            event = node_events.next() => state.on_node_event(next_event(event, "nodes")?),
            event = pod_events.next() => state.on_pod_event(next_event(event, "pods")?),
            _ = tokio::time::sleep_until(wakeup.unwrap_or(now)), if wakeup.is_some() => {
                if let Some((key, how)) = state.pick(Instant::now()) {
                    tokio::select! {
                        biased;
                        _ = ferry_client::stopped(&mut shutdown) => break,
                        _ = state.schedule_one(key, how) => {}
                    }
                }
            }
        }
    }
    tracing::info!(scheduler = %config.scheduler_name, "scheduler stopped");
    Ok(())
}

/// Unwraps one reflector item: errors are logged (the watcher retries with back-off), an ended stream is fatal.
fn next_event<K>(
    item: Option<Result<watcher::Event<K>, watcher::Error>>,
    what: &'static str,
) -> Result<Option<watcher::Event<K>>, SchedulerError> {
    match item {
        None => Err(SchedulerError::WatchEnded(what)),
        Some(Ok(event)) => Ok(Some(event)),
        Some(Err(e)) => {
            tracing::warn!(resource = what, error = %e, "watch failed; retrying");
            Ok(None)
        }
    }
}

/// What a bound pod takes from its node, for noticing changes that may free room.
type Footprint = Option<(String, Resources)>;

struct State {
    client: Client,
    name: String,
    nodes: Store<Node>,
    pods: Store<Pod>,
    nodes_synced: bool,
    pods_synced: bool,
    queue: Queue,
    /// Pods we bound whose binding the pod watch has not shown yet (they count on their node meanwhile).
    assumed: BTreeMap<PodKey, Pod>,
    footprints: HashMap<PodKey, (String, Footprint)>,
    /// What of each node matters for scheduling, to ignore heartbeat-only updates.
    node_prints: HashMap<String, String>,
    recorder: Recorder,
}

fn key_of(pod: &Pod) -> PodKey {
    PodKey {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn footprint(pod: &Pod) -> Footprint {
    let node = bound_node(pod)?;
    (!fit::is_terminal(pod)).then(|| (node.to_string(), fit::pod_requests(pod)))
}

/// Labels, spec (unschedulable, taints) and allocatable: what the filters read.
fn node_print(node: &Node) -> String {
    let status = node.status.as_ref();
    serde_json::json!([
        node.metadata.labels,
        node.spec,
        status.and_then(|s| s.allocatable.as_ref()),
        status.and_then(|s| s.capacity.as_ref()),
    ])
    .to_string()
}

fn pod_ref(key: &PodKey) -> ObjectRef<Pod> {
    ObjectRef::new(&key.name).within(&key.namespace)
}

impl State {
    fn new(client: Client, name: &str, nodes: Store<Node>, pods: Store<Pod>) -> State {
        State {
            recorder: Recorder::new(client.clone(), name),
            client,
            name: name.to_string(),
            nodes,
            pods,
            nodes_synced: false,
            pods_synced: false,
            queue: Queue::new(),
            assumed: BTreeMap::new(),
            footprints: HashMap::new(),
            node_prints: HashMap::new(),
        }
    }

    fn synced(&self) -> bool {
        self.nodes_synced && self.pods_synced
    }

    /// Whether `pod` waits for this scheduler.
    fn responsible(&self, pod: &Pod) -> bool {
        let Some(spec) = pod.spec.as_ref() else { return false };
        let scheduler = spec.scheduler_name.as_deref().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SCHEDULER_NAME);
        scheduler == self.name
            && bound_node(pod).is_none()
            && pod.metadata.deletion_timestamp.is_none()
            && !fit::is_terminal(pod)
            && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
    }

    fn on_node_event(&mut self, event: Option<watcher::Event<Node>>) {
        match event {
            Some(watcher::Event::Apply(node)) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let print = node_print(&node);
                if self.node_prints.get(&name) != Some(&print) {
                    self.node_prints.insert(name, print);
                    self.queue.move_all();
                }
            }
            Some(watcher::Event::Delete(node)) => {
                self.node_prints.remove(node.metadata.name.as_deref().unwrap_or(""));
                self.queue.move_all();
            }
            // A (re-)list starts: the store keeps the old view until it is complete; do not schedule meanwhile.
            Some(watcher::Event::Init) => self.nodes_synced = false,
            Some(watcher::Event::InitDone) => {
                self.nodes_synced = true;
                self.node_prints = self
                    .nodes
                    .state()
                    .iter()
                    .map(|n| (n.metadata.name.clone().unwrap_or_default(), node_print(n)))
                    .collect();
                self.queue.move_all();
            }
            Some(watcher::Event::InitApply(_)) | None => {}
        }
    }

    fn on_pod_event(&mut self, event: Option<watcher::Event<Pod>>) {
        match event {
            Some(watcher::Event::Apply(pod)) => self.observe(&pod),
            Some(watcher::Event::Delete(pod)) => self.gone(&key_of(&pod), pod.metadata.uid.as_deref()),
            Some(watcher::Event::Init) => self.pods_synced = false,
            Some(watcher::Event::InitDone) => {
                // The store now holds the complete list: take everything from it, drop what it no longer has.
                self.pods_synced = true;
                let pods = self.pods.state();
                for pod in &pods {
                    self.observe(pod);
                }
                let stale: Vec<PodKey> = self
                    .footprints
                    .keys()
                    .chain(self.queue.keys())
                    .chain(self.assumed.keys())
                    .filter(|k| self.pods.get(&pod_ref(k)).is_none())
                    .cloned()
                    .collect();
                for k in stale {
                    self.gone(&k, None);
                }
                self.queue.move_all();
            }
            Some(watcher::Event::InitApply(_)) | None => {}
        }
    }

    fn observe(&mut self, pod: &Pod) {
        let key = key_of(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let print = footprint(pod);
        let before = self.footprints.insert(key.clone(), (uid.clone(), print.clone()));
        let before_print = before.and_then(|(_, p)| p);
        if before_print != print && (before_print.is_some() || print.is_some()) {
            self.queue.move_all();
        }
        if bound_node(pod).is_some() {
            self.queue.remove(&key);
            self.assumed.remove(&key);
        } else if self.responsible(pod) {
            let binding = self.assumed.get(&key).is_some_and(|a| a.metadata.uid.as_deref() == Some(uid.as_str()));
            if !binding {
                self.queue.observe(key, &uid, pod.metadata.resource_version.as_deref());
            }
        } else {
            self.queue.remove(&key);
        }
    }

    fn gone(&mut self, key: &PodKey, uid: Option<&str>) {
        self.queue.remove(key);
        self.assumed.remove(key);
        if let Some((old_uid, print)) = self.footprints.remove(key) {
            self.recorder.forget(uid.unwrap_or(&old_uid));
            if print.is_some() {
                self.queue.move_all();
            }
        }
    }

    /// The ready pod to try next: highest priority, then oldest (upstream's PrioritySort).
    fn pick(&self, now: Instant) -> Option<(PodKey, Attempt)> {
        let ready = self.queue.ready(now);
        ready.into_iter().min_by_key(|(key, _)| {
            let pod = self.pods.get(&pod_ref(key));
            let priority = pod.as_ref().and_then(|p| p.spec.as_ref()).and_then(|s| s.priority).unwrap_or(0);
            let created = pod.as_ref().and_then(|p| p.metadata.creation_timestamp.as_ref()).map(|t| t.0);
            (std::cmp::Reverse(priority), created, key.clone())
        })
    }

    async fn schedule_one(&mut self, key: PodKey, how: Attempt) {
        let Some(pod) = self.pods.get(&pod_ref(&key)).filter(|p| self.responsible(p)) else {
            self.queue.remove(&key);
            return;
        };
        let mut nodes: Vec<Arc<Node>> = self.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let node_refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
        let pods = self.pods.state();
        let mut assigned: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).filter(|p| bound_node(p).is_some()).collect();
        assigned.extend(self.assumed.values());
        match fit::schedule(&pod, &node_refs, &assigned) {
            Ok(node) => self.bind(&key, &pod, &node).await,
            Err(e) => self.unschedulable(&key, &pod, &e.message, how).await,
        }
    }

    async fn bind(&mut self, key: &PodKey, pod: &Pod, node: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                namespace: Some(key.namespace.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference { kind: Some("Node".into()), name: Some(node.to_string()), ..Default::default() },
        };
        let result = api
            .create_subresource::<_, serde_json::Value>("binding", &key.name, &PostParams::default(), &binding)
            .await;
        match result {
            Ok(_) => {
                tracing::info!(pod = %key, node, "bound");
                self.queue.remove(key);
                let mut assumed = pod.clone();
                assumed.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
                self.assumed.insert(key.clone(), assumed);
                let message = format!("Successfully assigned {key} to {node}");
                self.recorder.record(pod, "Normal", "Scheduled", &message).await;
            }
            // Gone, or bound by someone else meanwhile: the watch will tell.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                tracing::debug!(pod = %key, status = %s.message, "binding not needed any more");
                self.queue.remove(key);
            }
            Err(e) => {
                tracing::warn!(pod = %key, node, error = %e, "binding failed; will retry");
                self.queue.errored(key, Instant::now());
            }
        }
    }

    async fn unschedulable(&mut self, key: &PodKey, pod: &Pod, message: &str, how: Attempt) {
        let now = Instant::now();
        if how == Attempt::Quiet && self.queue.last_message(key) == Some(message) {
            self.queue.unchanged(key, now);
            return;
        }
        tracing::debug!(pod = %key, message, "unschedulable");
        if let Err(e) = self.set_condition(key, pod, message).await {
            if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                self.queue.remove(key);
                return;
            }
            tracing::warn!(pod = %key, error = %e, "updating the PodScheduled condition failed; will retry");
            self.queue.errored(key, now);
            return;
        }
        self.recorder.record(pod, "Warning", "FailedScheduling", message).await;
        self.queue.unschedulable(key, now, message);
    }

    /// PodScheduled=False with reason Unschedulable, unless the pod already says exactly that.
    async fn set_condition(&mut self, key: &PodKey, pod: &Pod, message: &str) -> Result<(), kube::Error> {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        if let Some(c) = current {
            if c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
            {
                return Ok(());
            }
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.clone(),
            _ => None,
        }
        .unwrap_or(Time(Timestamp::now()));
        let patch = serde_json::json!({
            "status": {
                "conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": null,
                    "lastTransitionTime": transition,
                    "reason": "Unschedulable",
                    "message": message,
                }]
            }
        });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let updated = api.patch_status(&key.name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
        self.queue.wrote(key, updated.metadata.resource_version);
        Ok(())
    }
}
