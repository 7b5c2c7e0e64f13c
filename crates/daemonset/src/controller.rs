//! The DaemonSet reconciler (upstream `syncDaemonSet`): reads the DaemonSet, node and pod caches, keeps the history
//! of templates as ControllerRevisions, adopts and releases pods, creates and deletes pods as [`crate::plan`]
//! decides (with expectations, slow-start batches and events), and writes the status.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferry_apimachinery::selector::LabelSelector;
use ferry_runtime::events::Recorder;
use ferry_runtime::{Change, Expectations, Informer, Key, Next, Reconciler};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio::time::Instant;

use crate::eligibility::{ignorable_node_update, node_should_run};
use tracing::Instrument;

use crate::history::{compute_hash, matches, plan_history, revision_hash, to_clean_up, Current};
use crate::plan::{self, group_by_node, manage, rolling_update, Counts};
use crate::pods::{controller_of, controller_ref, is_terminating, pod_for_node, pod_template, REVISION_HASH_LABEL};

/// The event source name, as upstream's.
pub const COMPONENT: &str = "daemonset-controller";
/// Most pods created or deleted for one DaemonSet in one pass (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;
/// How long unobserved creations/deletions hold a DaemonSet back (upstream `ExpectationsTimeout`).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(300);
/// The back-off between deletions of failed daemon pods on one node (upstream 1 s doubling to 15 min).
const FAILED_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Why one reconcile of a DaemonSet failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("listing the ControllerRevisions of {key}: {source}")]
    ListRevisions { key: Key, source: kube::Error },
    #[error("writing ControllerRevision {name}: {source}")]
    WriteRevision { name: String, source: kube::Error },
    #[error("ControllerRevision {name} holds another template; collisionCount raised, retrying")]
    HashCollision { name: String },
    #[error("reading DaemonSet {key} for its collisionCount: {source}")]
    ReadDaemonSet { key: Key, source: kube::Error },
    #[error("stale collisionCount on DaemonSet {key}; retrying once it is current")]
    StaleCollisionCount { key: Key },
    #[error("adopting or releasing pod {name}: {source}")]
    ClaimPod { name: String, source: kube::Error },
    #[error("{count} pod creations or deletions failed; first: {first}")]
    Pods { count: usize, first: kube::Error },
    #[error("updating the status of {key}: {source}")]
    Status { key: Key, source: kube::Error },
}

/// Upstream's failed-pod back-off (`flowcontrol.Backoff`): per DaemonSet generation and node.
#[derive(Debug, Default)]
struct FailedBackoff {
    entries: HashMap<String, (Duration, Instant)>,
}

impl FailedBackoff {
    /// The current delay while `key` is backing off.
    fn in_backoff(&self, key: &str, now: Instant) -> Option<Duration> {
        let (delay, since) = self.entries.get(key)?;
        (now < *since + *delay).then_some(*delay)
    }

    /// Records an attempt: the delay starts at 1 s and doubles (an entry idle for twice the maximum starts over).
    fn next(&mut self, key: &str, now: Instant) {
        let delay = match self.entries.get(key) {
            Some((delay, since)) if now < *since + 2 * FAILED_BACKOFF_MAX => (*delay * 2).min(FAILED_BACKOFF_MAX),
            _ => FAILED_BACKOFF_INITIAL,
        };
        self.entries.insert(key.to_string(), (delay, now));
    }
}

/// The DaemonSet controller's state.
pub struct DaemonSetController {
    client: Client,
    daemonsets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    expectations: Expectations<Key>,
    /// Pods whose deletion was already counted (by uid), so a later event for the same pod is not counted again.
    deletions_seen: HashSet<String>,
    recorder: Recorder,
    failed_backoff: FailedBackoff,
    warned_no_history: bool,
}

fn selector_of(ds: &DaemonSet) -> LabelSelector {
    let raw = ds.spec.as_ref().map(|s| serde_json::to_value(&s.selector).unwrap_or_default()).unwrap_or_default();
    LabelSelector::from_json(&raw).unwrap_or_else(|_| LabelSelector::nothing())
}

fn selects(selector: &LabelSelector, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    let empty = BTreeMap::new();
    !selector.is_empty() && selector.matches(meta.labels.as_ref().unwrap_or(&empty))
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl DaemonSetController {
    pub fn new(client: Client, daemonsets: Informer<DaemonSet>, pods: Informer<Pod>, nodes: Informer<Node>) -> Self {
        DaemonSetController {
            recorder: Recorder::new(client.clone(), COMPONENT),
            client,
            daemonsets,
            pods,
            nodes,
            expectations: Expectations::new(EXPECTATIONS_TTL),
            deletions_seen: HashSet::new(),
            failed_backoff: FailedBackoff::default(),
            warned_no_history: false,
        }
    }

    /// The DaemonSet controlling `pod`, if it is one in the cache (upstream `resolveControllerRef`).
    fn owner(&self, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
        let r = controller_of(meta)?;
        if r.kind != "DaemonSet" {
            return None;
        }
        let namespace = meta.namespace.clone().unwrap_or_default();
        let ds = self.daemonsets.get(&namespace, &r.name)?;
        (ds.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| Key::new(namespace, r.name.clone()))
    }

    /// DaemonSets in the pod's namespace whose selector matches it (for orphans).
    fn selecting(&self, pod: &Pod) -> Vec<Key> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        self.daemonsets
            .store()
            .state()
            .iter()
            .filter(|ds| ds.metadata.namespace.as_deref() == Some(namespace))
            .filter(|ds| selects(&selector_of(ds), &pod.metadata))
            .map(|ds| Key::of(ds.as_ref()))
            .collect()
    }

    fn observe_deletion(&mut self, pod: &Pod) -> Vec<Key> {
        let Some(key) = self.owner(&pod.metadata) else { return Vec::new() };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.deletions_seen.insert(uid) {
            self.expectations.deletion_observed(&key);
        }
        vec![key]
    }

    /// Maps a pod change to the DaemonSets it concerns, counting observed creations and deletions.
    pub fn pod_changed(&mut self, change: &Change<Pod>) -> Vec<Key> {
        match change {
            Change::Applied { old: None, new } => {
                if is_terminating(new) {
                    return self.observe_deletion(new);
                }
                match self.owner(&new.metadata) {
                    Some(key) => {
                        self.expectations.creation_observed(&key);
                        vec![key]
                    }
                    None => self.selecting(new),
                }
            }
            Change::Applied { old: Some(old), new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return Vec::new();
                }
                if is_terminating(new) {
                    return self.observe_deletion(new);
                }
                let mut keys = Vec::new();
                let ref_changed = controller_of(&old.metadata) != controller_of(&new.metadata);
                if ref_changed {
                    keys.extend(self.owner(&old.metadata));
                }
                if let Some(key) = self.owner(&new.metadata) {
                    keys.push(key);
                } else if ref_changed || old.metadata.labels != new.metadata.labels {
                    keys.extend(self.selecting(new));
                }
                keys
            }
            Change::Deleted(pod) => {
                let keys = self.observe_deletion(pod);
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.deletions_seen.remove(uid);
                }
                keys
            }
            Change::Synced => Vec::new(),
        }
    }

    /// Maps a node change to the DaemonSets whose placement it may change.
    pub fn node_changed(&mut self, change: &Change<Node>) -> Vec<Key> {
        let all = self.daemonsets.store().state();
        match change {
            Change::Applied { old: None, new } => {
                all.iter().filter(|ds| node_should_run(new, ds).should_run).map(|ds| Key::of(ds.as_ref())).collect()
            }
            Change::Applied { old: Some(old), new } => {
                if ignorable_node_update(old, new) {
                    return Vec::new();
                }
                all.iter()
                    .filter(|ds| node_should_run(old, ds) != node_should_run(new, ds))
                    .map(|ds| Key::of(ds.as_ref()))
                    .collect()
            }
            Change::Deleted(_) => all.iter().map(|ds| Key::of(ds.as_ref())).collect(),
            Change::Synced => Vec::new(),
        }
    }

    /// The pods `ds` owns, adopting matching orphans and releasing owned pods that no longer match (upstream
    /// `ClaimPods`).
    async fn claim_pods(&mut self, ds: &DaemonSet, selector: &LabelSelector) -> Result<Vec<Arc<Pod>>, SyncError> {
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut claimed = Vec::new();
        for pod in self.pods.store().state() {
            if pod.metadata.namespace.as_deref() != Some(namespace.as_str()) {
                continue;
            }
            let name = name_of(&pod.metadata);
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            match controller_of(&pod.metadata) {
                Some(r) if r.uid == uid => {
                    if selects(selector, &pod.metadata) {
                        claimed.push(pod);
                        continue;
                    }
                    let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                                                    "uid": pod_uid}});
                    match api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(source) => return Err(SyncError::ClaimPod { name, source }),
                    }
                }
                Some(_) => {}
                None => {
                    if !selects(selector, &pod.metadata) || is_terminating(&pod) {
                        continue;
                    }
                    let patch = json!({"metadata": {"ownerReferences": [controller_ref(ds)], "uid": pod_uid}});
                    match api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(adopted) => claimed.push(Arc::new(adopted)),
                        Err(e) if is_not_found(&e) => {}
                        Err(source) => return Err(SyncError::ClaimPod { name, source }),
                    }
                }
            }
        }
        Ok(claimed)
    }

    /// The current revision's hash and the older revisions (upstream `constructHistory`). Without a
    /// ControllerRevision resource to write to, the hash alone still tells templates apart.
    async fn construct_history(
        &mut self,
        ds: &DaemonSet,
        selector: &LabelSelector,
    ) -> Result<(String, Vec<ControllerRevision>), SyncError> {
        let key = Key::of(ds);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &key.namespace);
        let listed = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) if is_not_found(&e) => {
                if !self.warned_no_history {
                    tracing::warn!("the API server serves no ControllerRevisions; DaemonSets keep no history");
                    self.warned_no_history = true;
                }
                let spec = ds.spec.clone().unwrap_or_default();
                let hash = compute_hash(&spec.template, ds.status.as_ref().and_then(|s| s.collision_count));
                return Ok((hash, Vec::new()));
            }
            Err(source) => return Err(SyncError::ListRevisions { key, source }),
        };
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let mut controlled = Vec::new();
        for mut revision in listed {
            let name = name_of(&revision.metadata);
            let write_err = |source| SyncError::WriteRevision { name: name.clone(), source };
            match controller_of(&revision.metadata) {
                Some(r) if r.uid == uid => {
                    if !selects(selector, &revision.metadata) {
                        let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}],
                                                        "uid": revision.metadata.uid}});
                        match api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                            Ok(_) => {}
                            Err(e) if is_not_found(&e) => {}
                            Err(e) => return Err(write_err(e)),
                        }
                        continue;
                    }
                }
                Some(_) => continue,
                None => {
                    if !selects(selector, &revision.metadata) {
                        continue;
                    }
                    let patch =
                        json!({"metadata": {"ownerReferences": [controller_ref(ds)], "uid": revision.metadata.uid}});
                    match api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(adopted) => revision = adopted,
                        Err(e) if is_not_found(&e) => continue,
                        Err(e) => return Err(write_err(e)),
                    }
                }
            }
            let labelled = revision.metadata.labels.as_ref().is_some_and(|l| l.contains_key(REVISION_HASH_LABEL));
            if !labelled {
                let patch = json!({"metadata": {"labels": {REVISION_HASH_LABEL: name}}});
                revision = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(write_err)?;
            }
            controlled.push(revision);
        }

        let plan = plan_history(ds, &controlled);
        let hash = match plan.current {
            Current::Create(revision) => {
                let name = name_of(&revision.metadata);
                match api.create(&PostParams::default(), revision.as_ref()).await {
                    Ok(created) => revision_hash(&created),
                    Err(kube::Error::Api(s)) if s.is_already_exists() => {
                        let existing = api
                            .get(&name)
                            .await
                            .map_err(|source| SyncError::WriteRevision { name: name.clone(), source })?;
                        if !matches(ds, &existing) {
                            self.bump_collision_count(ds).await?;
                            return Err(SyncError::HashCollision { name });
                        }
                        revision_hash(&existing)
                    }
                    Err(source) => return Err(SyncError::WriteRevision { name, source }),
                }
            }
            Current::Existing { name, hash, renumber } => {
                if !plan.duplicates.is_empty() {
                    self.remove_duplicates(ds, &plan.duplicates, &hash, &api).await?;
                }
                if let Some(revision) = renumber {
                    let patch = json!({ "revision": revision });
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|source| SyncError::WriteRevision { name: name.clone(), source })?;
                }
                hash
            }
        };
        Ok((hash, plan.old))
    }

    /// Upstream `dedupCurHistories`: pods labelled with a duplicate's hash get the kept hash; the duplicates go.
    async fn remove_duplicates(
        &mut self,
        ds: &DaemonSet,
        duplicates: &[ControllerRevision],
        keep_hash: &str,
        api: &Api<ControllerRevision>,
    ) -> Result<(), SyncError> {
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let dup_hashes: BTreeSet<String> = duplicates.iter().map(revision_hash).collect();
        for pod in self.pods.store().state() {
            let owned = self.owner(&pod.metadata).is_some_and(|k| k == Key::of(ds));
            let hash = pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH_LABEL));
            if !owned || !hash.is_some_and(|h| dup_hashes.contains(h)) {
                continue;
            }
            let name = name_of(&pod.metadata);
            let patch = json!({"metadata": {"labels": {REVISION_HASH_LABEL: keep_hash}}});
            match pods.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => return Err(SyncError::ClaimPod { name, source }),
            }
        }
        for dup in duplicates {
            let name = name_of(&dup.metadata);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => return Err(SyncError::WriteRevision { name, source }),
            }
        }
        Ok(())
    }

    async fn bump_collision_count(&mut self, ds: &DaemonSet) -> Result<(), SyncError> {
        let key = Key::of(ds);
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let fresh = api.get(&key.name).await.map_err(|source| SyncError::ReadDaemonSet { key: key.clone(), source })?;
        let count = |d: &DaemonSet| d.status.as_ref().and_then(|s| s.collision_count);
        if count(&fresh) != count(ds) {
            return Err(SyncError::StaleCollisionCount { key });
        }
        let patch = json!({"status": {"collisionCount": count(ds).unwrap_or(0).saturating_add(1)}});
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| SyncError::Status { key, source })?;
        Ok(())
    }

    /// Upstream `syncNodes`: deletes `delete` and creates a pod on each of `create_on`, in slow-start batches,
    /// expecting exactly those writes; failures are collected into `errors`.
    async fn sync_nodes(
        &mut self,
        ds: &DaemonSet,
        delete: &[String],
        create_on: &[String],
        hash: &str,
        errors: &mut Vec<kube::Error>,
    ) {
        let key = Key::of(ds);
        let creates = create_on.len().min(BURST_REPLICAS);
        let deletes = delete.len().min(BURST_REPLICAS);
        self.expectations.expect(key.clone(), creates, deletes);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);

        let template = pod_template(ds, hash);
        let mut pos = 0;
        let mut batch = creates.min(1);
        while pos < creates {
            let pods: Vec<Pod> = create_on[pos..pos + batch].iter().map(|n| pod_for_node(ds, &template, n)).collect();
            let params = PostParams::default();
            let results = join_all(pods.iter().map(|p| api.create(&params, p))).await;
            pos += batch;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(pod) => {
                        let msg = format!("Created pod: {}", name_of(&pod.metadata));
                        self.recorder.normal(ds, "SuccessfulCreate", &msg).await;
                    }
                    Err(e) => {
                        self.expectations.creation_observed(&key);
                        let msg = format!("Error creating: {}", api_message(&e));
                        self.recorder.warning(ds, "FailedCreate", &msg).await;
                        errors.push(e);
                        failed = true;
                    }
                }
            }
            if failed {
                // The rest are not attempted now; the next pass retries them.
                for _ in pos..creates {
                    self.expectations.creation_observed(&key);
                }
                break;
            }
            batch = (2 * batch).min(creates - pos);
        }

        let results = join_all(delete[..deletes].iter().map(|name| {
            let api = api.clone();
            async move { (name, api.delete(name, &DeleteParams::default()).await) }
        }))
        .await;
        for (name, result) in results {
            match result {
                Ok(_) => {
                    self.recorder.normal(ds, "SuccessfulDelete", &format!("Deleted pod: {name}")).await;
                }
                Err(e) if is_not_found(&e) => self.expectations.deletion_observed(&key),
                Err(e) => {
                    self.expectations.deletion_observed(&key);
                    self.recorder.warning(ds, "FailedDelete", &format!("Error deleting: {}", api_message(&e))).await;
                    errors.push(e);
                }
            }
        }
    }

    /// Writes the status counts (and `observedGeneration` when this pass acted on the current spec), unless they
    /// are already there.
    async fn write_status(&mut self, ds: &DaemonSet, c: Counts, observed: bool) -> Result<(), SyncError> {
        let s = ds.status.clone().unwrap_or_default();
        let generation = ds.metadata.generation.unwrap_or(0);
        let unchanged = s.desired_number_scheduled == c.desired
            && s.current_number_scheduled == c.current
            && s.number_misscheduled == c.misscheduled
            && s.number_ready == c.ready
            && s.updated_number_scheduled.unwrap_or(0) == c.updated
            && s.number_available.unwrap_or(0) == c.available
            && s.number_unavailable.unwrap_or(0) == c.unavailable
            && s.observed_generation.unwrap_or(0) >= generation;
        if unchanged {
            return Ok(());
        }
        let mut status = json!({
            "desiredNumberScheduled": c.desired,
            "currentNumberScheduled": c.current,
            "numberMisscheduled": c.misscheduled,
            "numberReady": c.ready,
            "updatedNumberScheduled": c.updated,
            "numberAvailable": c.available,
            "numberUnavailable": c.unavailable,
        });
        if observed {
            status["observedGeneration"] = json!(generation);
        }
        let key = Key::of(ds);
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(SyncError::Status { key, source }),
        }
    }

    async fn sync(&mut self, key: &Key, ds: Arc<DaemonSet>) -> Result<Next, SyncError> {
        let selector = selector_of(&ds);
        if selector.is_empty() {
            let msg = "This daemon set is selecting all pods. A non-empty selector is required.";
            self.recorder.warning(ds.as_ref(), "SelectingAll", msg).await;
            return Ok(Next::Done);
        }
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let mut nodes = self.nodes.store().state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();

        let (hash, old) = self.construct_history(&ds, &selector).await?;
        let pods = self.claim_pods(&ds, &selector).await?;
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let by_node = group_by_node(&pod_refs);
        let now = Timestamp::now();

        if !self.expectations.satisfied(key) {
            let (counts, _) = plan::status(&ds, &nodes, &by_node, &hash, now);
            self.write_status(&ds, counts, false).await?;
            let next = self.expectations.deadline(key).map(|d| d.saturating_duration_since(Instant::now()));
            return Ok(next.map_or(Next::Done, |d| Next::After(d + Duration::from_secs(1))));
        }

        let mut errors = Vec::new();
        let mut recheck: Option<Duration> = None;
        let managed = manage(&ds, &nodes, &by_node, &hash, now);
        let mut delete = managed.delete;
        for ended in &managed.succeeded {
            let msg = format!(
                "Found succeeded daemon pod {}/{} on node {}, will try to delete it",
                key.namespace, ended.pod, ended.node
            );
            self.recorder.normal(ds.as_ref(), "SucceededDaemonPod", &msg).await;
            delete.push(ended.pod.clone());
        }
        let observed_generation = ds.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        for ended in &managed.failed {
            let backoff_key = format!("{uid}/{observed_generation}/{}", ended.node);
            let at = Instant::now();
            if let Some(delay) = self.failed_backoff.in_backoff(&backoff_key, at) {
                recheck = Some(recheck.map_or(delay, |r| r.min(delay)));
                continue;
            }
            self.failed_backoff.next(&backoff_key, at);
            let msg = format!(
                "Found failed daemon pod {}/{} on node {}, will try to kill it",
                key.namespace, ended.pod, ended.node
            );
            self.recorder.warning(ds.as_ref(), "FailedDaemonPod", &msg).await;
            delete.push(ended.pod.clone());
        }
        self.sync_nodes(&ds, &delete, &managed.create_on, &hash, &mut errors).await;

        let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref());
        if errors.is_empty() && self.expectations.satisfied(key) && strategy == Some("RollingUpdate") {
            let step = rolling_update(&ds, &nodes, &by_node, &hash, now);
            self.sync_nodes(&ds, &step.delete, &step.create_on, &hash, &mut errors).await;
        }

        if errors.is_empty() {
            let live: BTreeSet<String> = pod_refs
                .iter()
                .filter_map(|p| p.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH_LABEL)).cloned())
                .collect();
            let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
            let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &key.namespace);
            for name in to_clean_up(&old, &live, limit) {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(source) => return Err(SyncError::WriteRevision { name, source }),
                }
            }
        }

        let (counts, status_recheck) = plan::status(&ds, &nodes, &by_node, &hash, now);
        let status_result = self.write_status(&ds, counts, true).await;
        if !errors.is_empty() {
            let count = errors.len();
            return Err(SyncError::Pods { count, first: errors.swap_remove(0) });
        }
        status_result?;
        let recheck = match (recheck, status_recheck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(recheck.map_or(Next::Done, Next::After))
    }
}

impl Reconciler for DaemonSetController {
    type Key = Key;
    type Error = SyncError;

    fn name(&self) -> &'static str {
        "daemonset"
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, SyncError> {
        let Some(ds) = self.daemonsets.get(&key.namespace, &key.name) else {
            self.expectations.forget(key);
            return Ok(Next::Done);
        };
        let span = tracing::debug_span!("reconcile", daemonset = %key);
        self.sync(key, ds).instrument(span).await
    }
}
