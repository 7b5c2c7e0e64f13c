//! The Deployment control loop on the shared runtime: which Deployments a ReplicaSet or Pod change wakes, the
//! ReplicaSet adoption/release (upstream's ControllerRefManager), and the API writes behind [`crate::sync::Writes`].

use std::sync::Arc;
use std::time::Duration;

use ferry_apimachinery::selector::LabelSelector as Selector;
use ferry_runtime::events::Recorder;
use ferry_runtime::{Change, Controller, Informer, Informers, Key, Next, Reconciler, Task};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use tracing::Instrument;

use crate::sync::{PodMap, SyncError, Syncer, WriteError, Writes};
use crate::util::{controller_of, controller_ref, strategy_type, REVISION};

/// Why one reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("deployment {0} has an invalid label selector: {1}")]
    Selector(Key, String),
    #[error("adopting replica set {name}: {source}")]
    Adopt { name: String, source: WriteError },
    #[error("releasing replica set {name}: {source}")]
    Release { name: String, source: WriteError },
    #[error("deployment {0} was deleted before its replica sets could be adopted")]
    Deleted(Key),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// The Deployment controller: one task for all Deployments.
pub(crate) fn deployment_controller(informers: &mut Informers) -> Task {
    let client = informers.client();
    let deployments = informers.get::<Deployment>();
    let replica_sets = informers.get::<ReplicaSet>();
    let pods = informers.get::<Pod>();
    let reconciler = DeploymentReconciler {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
        deployments: deployments.clone(),
        replica_sets: replica_sets.clone(),
        pods: pods.clone(),
    };
    let controller = Controller::new(reconciler)
        .watch(&deployments, |_, change: &Change<Deployment>| change.object().map(Key::of).into_iter().collect())
        .watch(&replica_sets, |r: &mut DeploymentReconciler, change| r.keys_for_replica_set(change))
        .watch(&pods, |r: &mut DeploymentReconciler, change| r.keys_for_pod(change));
    Box::pin(controller.run())
}

struct DeploymentReconciler {
    client: Client,
    recorder: Recorder,
    deployments: Informer<Deployment>,
    replica_sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
}

/// The selector of a Deployment as a matcher (`None`: invalid).
fn selector_of(selector: &LabelSelector) -> Result<Selector, String> {
    let json = serde_json::to_value(selector).map_err(|e| e.to_string())?;
    Selector::from_json(&json).map_err(|e| e.message().to_string())
}

fn selects(selector: &LabelSelector, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    let empty = std::collections::BTreeMap::new();
    selector_of(selector).is_ok_and(|s| !s.is_empty() && s.matches(labels.unwrap_or(&empty)))
}

/// What [`ClaimReplicaSets`](https://pkg.go.dev/k8s.io/kubernetes/pkg/controller#ReplicaSetControllerRefManager)
/// does with one ReplicaSet of the Deployment's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and selected.
    Owned,
    /// An orphan the Deployment selects: take it.
    Adopt,
    /// Ours but no longer selected: let go.
    Release,
    /// Someone else's, or not for us.
    Ignore,
}

/// Upstream `ClaimObject` for a ReplicaSet: `selected` is whether the Deployment's selector matches its labels.
pub fn claim(d: &Deployment, rs: &ReplicaSet, selected: bool) -> Claim {
    let deleting = d.metadata.deletion_timestamp.is_some();
    match controller_of(rs.metadata.owner_references.as_ref()) {
        Some(owner) => {
            if Some(&owner.uid) != d.metadata.uid.as_ref() {
                Claim::Ignore
            } else if selected {
                Claim::Owned
            } else if deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        None => {
            if deleting
                || !selected
                || rs.metadata.deletion_timestamp.is_some()
                || rs.metadata.namespace != d.metadata.namespace
            {
                Claim::Ignore
            } else {
                Claim::Adopt
            }
        }
    }
}

fn write_error(e: kube::Error) -> WriteError {
    match e {
        kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists" => WriteError::AlreadyExists,
        kube::Error::Api(s) if s.code == 409 => WriteError::Conflict(s.message.clone()),
        kube::Error::Api(s) if s.code == 404 => WriteError::NotFound,
        other => WriteError::Other(other.to_string()),
    }
}

impl DeploymentReconciler {
    /// Upstream `resolveControllerRef`.
    fn resolve(&self, namespace: &str, owner: &OwnerReference) -> Option<Key> {
        if owner.kind != "Deployment" {
            return None;
        }
        let d = self.deployments.get(namespace, &owner.name)?;
        (d.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| Key::new(namespace, &owner.name))
    }

    /// Deployments of the namespace whose selector picks these labels (upstream `getDeploymentsForReplicaSet`).
    fn selecting(&self, rs: &ReplicaSet) -> Vec<Key> {
        let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
        self.deployments
            .store()
            .state()
            .iter()
            .filter(|d| d.metadata.namespace.as_deref() == Some(namespace))
            .filter(|d| d.spec.as_ref().is_some_and(|s| selects(&s.selector, rs.metadata.labels.as_ref())))
            .map(|d| Key::of(d.as_ref()))
            .collect()
    }

    /// Upstream's add/update/delete ReplicaSet handlers.
    fn keys_for_replica_set(&mut self, change: &Change<ReplicaSet>) -> Vec<Key> {
        let owner_key = |r: &Self, rs: &ReplicaSet| -> Option<Key> {
            let owner = controller_of(rs.metadata.owner_references.as_ref())?;
            r.resolve(rs.metadata.namespace.as_deref().unwrap_or_default(), owner)
        };
        match change {
            Change::Synced => Vec::new(),
            Change::Deleted(rs) => owner_key(self, rs).into_iter().collect(),
            Change::Applied { old: None, new } => {
                if new.metadata.deletion_timestamp.is_some() {
                    return owner_key(self, new).into_iter().collect();
                }
                if controller_of(new.metadata.owner_references.as_ref()).is_some() {
                    return owner_key(self, new).into_iter().collect();
                }
                self.selecting(new)
            }
            Change::Applied { old: Some(old), new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return Vec::new();
                }
                let mut keys = Vec::new();
                let old_ref = controller_of(old.metadata.owner_references.as_ref());
                let new_ref = controller_of(new.metadata.owner_references.as_ref());
                let ref_changed = old_ref != new_ref;
                if ref_changed && old_ref.is_some() {
                    keys.extend(owner_key(self, old));
                }
                if new_ref.is_some() {
                    keys.extend(owner_key(self, new));
                    return keys;
                }
                if ref_changed || old.metadata.labels != new.metadata.labels {
                    keys.extend(self.selecting(new));
                }
                keys
            }
        }
    }

    /// Upstream `deletePod`: a Recreate Deployment waits for its old pods to be gone.
    fn keys_for_pod(&mut self, change: &Change<Pod>) -> Vec<Key> {
        let Change::Deleted(pod) = change else { return Vec::new() };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(owner) = controller_of(pod.metadata.owner_references.as_ref()) else { return Vec::new() };
        if owner.kind != "ReplicaSet" {
            return Vec::new();
        }
        let Some(rs) = self.replica_sets.get(namespace, &owner.name) else { return Vec::new() };
        if rs.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
            return Vec::new();
        }
        let Some(rs_owner) = controller_of(rs.metadata.owner_references.as_ref()) else { return Vec::new() };
        let Some(key) = self.resolve(namespace, rs_owner) else { return Vec::new() };
        match self.deployments.get(&key.namespace, &key.name) {
            Some(d) if strategy_type(&d) == "Recreate" => vec![key],
            _ => Vec::new(),
        }
    }

    /// Upstream `getReplicaSetsForDeployment`: the ReplicaSets the Deployment owns after adopting and releasing.
    async fn claim_replica_sets(&mut self, key: &Key, d: &Deployment) -> Result<Vec<ReplicaSet>, ReconcileError> {
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let matcher = selector_of(&selector).map_err(|e| ReconcileError::Selector(key.clone(), e))?;
        let empty = std::collections::BTreeMap::new();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut owned = Vec::new();
        let mut may_adopt: Option<bool> = None;
        let mut candidates: Vec<Arc<ReplicaSet>> = self
            .replica_sets
            .store()
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
            .collect();
        candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for rs in candidates {
            let selected = matcher.matches(rs.metadata.labels.as_ref().unwrap_or(&empty));
            let name = rs.metadata.name.clone().unwrap_or_default();
            let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
            match claim(d, &rs, selected) {
                Claim::Owned => owned.push(rs.as_ref().clone()),
                Claim::Ignore => {}
                Claim::Adopt => {
                    if may_adopt.is_none() {
                        may_adopt = Some(self.still_current(key, d).await);
                    }
                    if may_adopt != Some(true) {
                        return Err(ReconcileError::Deleted(key.clone()));
                    }
                    let patch = serde_json::json!({
                        "metadata": { "ownerReferences": [controller_ref(d)], "uid": rs_uid }
                    });
                    match api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(adopted) => owned.push(adopted),
                        Err(e) => match write_error(e) {
                            WriteError::NotFound => {}
                            source => return Err(ReconcileError::Adopt { name, source }),
                        },
                    }
                }
                Claim::Release => {
                    let owner_uid = d.metadata.uid.clone().unwrap_or_default();
                    let patch = serde_json::json!({
                        "metadata": { "ownerReferences": [{ "$patch": "delete", "uid": owner_uid }], "uid": rs_uid }
                    });
                    if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        match write_error(e) {
                            WriteError::NotFound => {}
                            source => return Err(ReconcileError::Release { name, source }),
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    /// Upstream `RecheckDeletionTimestamp`: an uncached read that the Deployment still exists, is the same one and
    /// is not being deleted, before adopting anything.
    async fn still_current(&self, key: &Key, d: &Deployment) -> bool {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.get(&key.name).await {
            Ok(fresh) => fresh.metadata.uid == d.metadata.uid && fresh.metadata.deletion_timestamp.is_none(),
            Err(_) => false,
        }
    }

    /// Upstream `getPodMapForDeployment`.
    fn pod_map(&self, d: &Deployment, rs_list: &[ReplicaSet]) -> PodMap {
        let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
        let mut map: PodMap =
            rs_list.iter().filter_map(|rs| rs.metadata.uid.clone()).map(|u| (u, Vec::new())).collect();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let Ok(matcher) = selector_of(&selector) else { return map };
        let empty = std::collections::BTreeMap::new();
        for pod in self.pods.store().state() {
            if pod.metadata.namespace.as_deref() != Some(namespace)
                || !matcher.matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
            {
                continue;
            }
            let Some(owner) = controller_of(pod.metadata.owner_references.as_ref()) else { continue };
            if let Some(list) = map.get_mut(&owner.uid) {
                list.push(pod.as_ref().clone());
            }
        }
        map
    }
}

impl Reconciler for DeploymentReconciler {
    type Key = Key;
    type Error = ReconcileError;

    fn name(&self) -> &'static str {
        "deployment"
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, ReconcileError> {
        let Some(cached) = self.deployments.get(&key.namespace, &key.name) else {
            return Ok(Next::Done);
        };
        let d = cached.as_ref().clone();
        let rs_list = self.claim_replica_sets(key, &d).await?;
        let pods = self.pod_map(&d, &rs_list);
        let mut writes = ApiWrites {
            client: self.client.clone(),
            recorder: &mut self.recorder,
            replica_sets: &self.replica_sets,
            deployments: Api::namespaced(self.client.clone(), &key.namespace),
        };
        let span = tracing::debug_span!("sync deployment", key = %key);
        let requeue = Syncer::new(&mut writes, d, Timestamp::now()).run(rs_list, &pods).instrument(span).await?;
        Ok(match requeue {
            Some(after) => Next::After(after.max(Duration::from_millis(100))),
            None => Next::Done,
        })
    }
}

/// [`Writes`] against the API server.
struct ApiWrites<'a> {
    client: Client,
    recorder: &'a mut Recorder,
    replica_sets: &'a Informer<ReplicaSet>,
    deployments: Api<Deployment>,
}

impl ApiWrites<'_> {
    fn rs_api(&self, namespace: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

fn namespace_of(rs: &ReplicaSet) -> String {
    rs.metadata.namespace.clone().unwrap_or_default()
}

impl Writes for ApiWrites<'_> {
    async fn create_replica_set(&mut self, rs: &ReplicaSet) -> Result<ReplicaSet, WriteError> {
        self.rs_api(&namespace_of(rs)).create(&PostParams::default(), rs).await.map_err(write_error)
    }

    async fn update_replica_set(&mut self, rs: &ReplicaSet) -> Result<ReplicaSet, WriteError> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        self.rs_api(&namespace_of(rs)).replace(&name, &PostParams::default(), rs).await.map_err(write_error)
    }

    async fn delete_replica_set(&mut self, namespace: &str, name: &str) -> Result<(), WriteError> {
        self.rs_api(namespace).delete(name, &DeleteParams::default()).await.map(|_| ()).map_err(write_error)
    }

    async fn update_status(&mut self, d: &Deployment) -> Result<Deployment, WriteError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        self.deployments.replace_status(&name, &PostParams::default(), d).await.map_err(write_error)
    }

    async fn set_revision(&mut self, d: &Deployment, revision: &str) -> Result<Deployment, WriteError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({ "metadata": { "annotations": { REVISION: revision } } });
        self.deployments.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(write_error)
    }

    async fn update_deployment(&mut self, d: &Deployment) -> Result<Deployment, WriteError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        self.deployments.replace(&name, &PostParams::default(), d).await.map_err(write_error)
    }

    fn cached_replica_set(&self, namespace: &str, name: &str) -> Option<ReplicaSet> {
        self.replica_sets.get(namespace, name).map(|rs| rs.as_ref().clone())
    }

    async fn event(&mut self, d: &Deployment, type_: &str, reason: &str, message: &str) {
        self.recorder.record(d, type_, reason, message).await;
    }
}
