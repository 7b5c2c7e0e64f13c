//! The reconciler shared by ReplicaSets and ReplicationControllers (upstream `syncReplicaSet`): claim pods (adopt
//! orphans, release pods that stopped matching), create or delete pods towards `spec.replicas` guarded by
//! expectations, and write the status when it changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferry_apimachinery::selector::LabelSelector;
use ferry_runtime::events::Recorder;
use ferry_runtime::{Change, Controller, Expectations, Informer, Informers, Key, Next, Reconciler, Task};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use tracing::Instrument;

use crate::claim::{adopt_patch, controller_ref, decide, release_patch, Claim, Claimant};
use crate::owner::{template_labels, ReplicaOwner, ReplicaStatus};
use crate::pods::{controller_of, is_active, pod_from_template, until_available};
use crate::rank::pods_to_delete;
use crate::status::{self, Observed};

/// Most pods created or deleted in one sync (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// The first batch of creations; each successful batch doubles the next (upstream `SlowStartInitialBatchSize`).
const SLOW_START_INITIAL_BATCH: usize = 1;
/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 64;
/// How long unobserved creations/deletions hold a key back (upstream `ExpectationsTimeout`).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Status writes retried after a fresh read (upstream `statusUpdateRetries`).
const STATUS_UPDATE_RETRIES: usize = 1;
/// Added to a minReadySeconds re-check so the pod is surely available by then (upstream adds a second too).
const AVAILABILITY_SKEW: Duration = Duration::from_secs(1);

/// Why a sync failed (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Adopting or releasing pods failed (upstream's aggregate message).
    #[error("{0}")]
    Claim(String),
    /// Creating or deleting pods failed; the message is also the ReplicaFailure condition's.
    #[error("{0}")]
    Manage(String),
    #[error("updating the status of {key}: {source}")]
    Status { key: Key, source: kube::Error },
}

/// The reconciler of one kind `O`.
pub struct ReplicaController<O: ReplicaOwner> {
    client: Client,
    owners: Informer<O>,
    pods: Informer<Pod>,
    expectations: Expectations<Key>,
    /// The pods each owner deleted and has not seen go yet (upstream `UIDTrackingControllerExpectations`), so
    /// only those deletions are counted as observed, each once.
    deleting: HashMap<Key, HashSet<Key>>,
    recorder: Recorder,
    burst: usize,
}

impl<O: ReplicaOwner> ReplicaController<O> {
    pub fn new(client: Client, owners: Informer<O>, pods: Informer<Pod>) -> ReplicaController<O> {
        ReplicaController {
            recorder: Recorder::new(client.clone(), O::COMPONENT),
            client,
            owners,
            pods,
            expectations: Expectations::new(EXPECTATIONS_TIMEOUT),
            deleting: HashMap::new(),
            burst: BURST_REPLICAS,
        }
    }

    /// The control loop: owners and pods from the shared informers.
    pub fn task(informers: &mut Informers) -> Task {
        let owners = informers.get::<O>();
        let pods = informers.get::<Pod>();
        let reconciler = ReplicaController::new(informers.client(), owners.clone(), pods.clone());
        let controller = Controller::new(reconciler)
            .watch(&owners, |r: &mut Self, change: &Change<O>| r.owner_changed(change))
            .watch(&pods, |r: &mut Self, change: &Change<Pod>| r.pod_changed(change));
        Box::pin(controller.run())
    }

    fn owner_changed(&mut self, change: &Change<O>) -> Vec<Key> {
        match change {
            Change::Applied { new, .. } => vec![Key::of(new.as_ref())],
            Change::Deleted(owner) => {
                let key = Key::of(owner.as_ref());
                self.expectations.forget(&key);
                self.deleting.remove(&key);
                if let Some(uid) = owner.meta().uid.as_deref() {
                    self.recorder.forget(uid);
                }
                vec![key]
            }
            Change::Synced => Vec::new(),
        }
    }

    /// Upstream `resolveControllerRef`: the cached owner a controller reference names, if it is still that object.
    fn resolve(&self, namespace: &str, reference: &OwnerReference) -> Option<Arc<O>> {
        if reference.kind != O::kind(&()) {
            return None;
        }
        let owner = self.owners.get(namespace, &reference.name)?;
        (owner.meta().uid.as_deref() == Some(reference.uid.as_str())).then_some(owner)
    }

    /// Upstream `getPodReplicaSets`: the owners in the pod's namespace whose (non-empty) selector matches it.
    fn owners_selecting(&self, pod: &Pod) -> Vec<Key> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let empty = Default::default();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        self.owners
            .store()
            .state()
            .iter()
            .filter(|o| o.meta().namespace.as_deref().unwrap_or("") == namespace)
            .filter(|o| o.selector().is_ok_and(|s| !s.is_empty() && s.matches(labels)))
            .map(|o| Key::of(o.as_ref()))
            .collect()
    }

    fn pod_changed(&mut self, change: &Change<Pod>) -> Vec<Key> {
        match change {
            Change::Applied { old: None, new } => self.pod_added(new),
            Change::Applied { old: Some(old), new } => self.pod_updated(old, new),
            Change::Deleted(pod) => self.pod_deleted(pod),
            Change::Synced => Vec::new(),
        }
    }

    fn pod_added(&mut self, pod: &Pod) -> Vec<Key> {
        if pod.metadata.deletion_timestamp.is_some() {
            // Seen for the first time already going (e.g. after a re-list): not a creation we wait for.
            return self.pod_deleted(pod);
        }
        if let Some(reference) = controller_of(&pod.metadata) {
            let Some(owner) = self.resolve(pod.metadata.namespace.as_deref().unwrap_or(""), reference) else {
                return Vec::new();
            };
            let key = Key::of(owner.as_ref());
            self.expectations.creation_observed(&key);
            return vec![key];
        }
        self.owners_selecting(pod)
    }

    fn pod_updated(&mut self, old: &Pod, new: &Pod) -> Vec<Key> {
        if old.metadata.resource_version == new.metadata.resource_version {
            return Vec::new();
        }
        let labels_changed = old.metadata.labels != new.metadata.labels;
        if new.metadata.deletion_timestamp.is_some() {
            // A graceful deletion started: the owner may replace the pod now, not when it is finally gone.
            let mut keys = self.pod_deleted(new);
            if labels_changed {
                keys.extend(self.pod_deleted(old));
            }
            return keys;
        }
        let namespace = new.metadata.namespace.as_deref().unwrap_or("");
        let current = controller_of(&new.metadata);
        let previous = controller_of(&old.metadata);
        let reference_changed = current != previous;
        let mut keys = Vec::new();
        if reference_changed {
            if let Some(owner) = previous.and_then(|r| self.resolve(namespace, r)) {
                keys.push(Key::of(owner.as_ref()));
            }
        }
        if let Some(reference) = current {
            keys.extend(self.resolve(namespace, reference).map(|o| Key::of(o.as_ref())));
            return keys;
        }
        if labels_changed || reference_changed {
            keys.extend(self.owners_selecting(new));
        }
        keys
    }

    fn pod_deleted(&mut self, pod: &Pod) -> Vec<Key> {
        let Some(reference) = controller_of(&pod.metadata) else { return Vec::new() };
        let Some(owner) = self.resolve(pod.metadata.namespace.as_deref().unwrap_or(""), reference) else {
            return Vec::new();
        };
        let key = Key::of(owner.as_ref());
        self.deletion_observed(&key, &Key::of(pod));
        vec![key]
    }

    fn deletion_observed(&mut self, owner: &Key, pod: &Key) {
        if self.deleting.get_mut(owner).is_some_and(|pods| pods.remove(pod)) {
            self.expectations.deletion_observed(owner);
        }
    }

    async fn sync(&mut self, key: &Key) -> Result<Next, SyncError> {
        let Some(owner) = self.owners.get(&key.namespace, &key.name) else {
            self.expectations.forget(key);
            self.deleting.remove(key);
            return Ok(Next::Done);
        };
        let needs_sync = self.expectations.satisfied(key);
        let selector = match owner.selector() {
            Ok(selector) => selector,
            Err(e) => {
                tracing::warn!(error = %e, "invalid pod selector; ignoring");
                return Ok(Next::Done);
            }
        };
        let active: Vec<Arc<Pod>> = self
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(key.namespace.as_str()) && is_active(p))
            .collect();
        let claimed = self.claim_pods(owner.as_ref(), &selector, active).await?;

        let manage = if needs_sync && owner.meta().deletion_timestamp.is_none() {
            self.manage_replicas(key, owner.as_ref(), &claimed).await
        } else {
            Ok(())
        };

        let now = Timestamp::now();
        let current = owner.replica_status();
        let labels = template_labels(owner.template());
        let manage_error = manage.as_ref().err().map(|e| e.to_string());
        let observed = Observed {
            desired: owner.replicas(),
            min_ready_seconds: owner.min_ready_seconds(),
            template_labels: &labels,
            pods: &claimed,
            manage_error: manage_error.as_deref(),
            now,
        };
        let mut new_status = status::calculate(&current, &observed);
        let generation = owner.meta().generation.unwrap_or(0);
        if status::needs_update(&current, &new_status, generation) {
            new_status.observed_generation = generation;
            self.write_status(key, owner.as_ref(), &new_status).await?;
        }
        manage?;
        Ok(self.next_check(key, owner.as_ref(), &claimed, now))
    }

    /// When to look again without any change: when a ready pod becomes available (minReadySeconds), or when
    /// unobserved expectations lapse.
    fn next_check(&self, key: &Key, owner: &O, claimed: &[Arc<Pod>], now: Timestamp) -> Next {
        let min_ready = owner.min_ready_seconds();
        let available =
            claimed.iter().filter_map(|p| until_available(p, min_ready, now)).min().map(|d| d + AVAILABILITY_SKEW);
        let expiry =
            self.expectations.deadline(key).map(|at| at.saturating_duration_since(tokio::time::Instant::now()));
        match available.into_iter().chain(expiry).min() {
            Some(delay) => Next::After(delay),
            None => Next::Done,
        }
    }

    /// Upstream `ClaimPods`: the active pods this owner controls after adopting matching orphans and releasing
    /// its pods that stopped matching.
    async fn claim_pods(
        &mut self,
        owner: &O,
        selector: &LabelSelector,
        pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, SyncError> {
        let meta = owner.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let claimant =
            Claimant { uid: &uid, namespace: &namespace, deleting: meta.deletion_timestamp.is_some(), selector };
        let reference = controller_ref(&O::api_version(&()), &O::kind(&()), &name, &uid);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut can_adopt: Option<Result<(), String>> = None;
        let mut claimed = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        for pod in pods {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            match decide(&claimant, &pod) {
                Claim::Owned => claimed.push(pod),
                Claim::Ignore => {}
                Claim::Release => {
                    tracing::info!(pod = %pod_name, "releasing pod that no longer matches the selector");
                    let patch = release_patch(&uid, &pod_uid);
                    match api.patch(&pod_name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(_) => {}
                        // Gone, or its uid changed or the reference is already gone.
                        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_invalid() => {}
                        Err(e) => errors.push(api_message(&e)),
                    }
                }
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_deletion(owner).await);
                    }
                    if let Some(Err(e)) = &can_adopt {
                        errors.push(format!("can't adopt Pod {namespace}/{pod_name} ({pod_uid}): {e}"));
                        continue;
                    }
                    tracing::info!(pod = %pod_name, "adopting orphan pod");
                    let patch = adopt_patch(&reference, &pod_uid);
                    match api.patch(&pod_name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(_) => claimed.push(pod),
                        Err(kube::Error::Api(s)) if s.is_not_found() => {}
                        Err(e) => errors.push(api_message(&e)),
                    }
                }
            }
        }
        match errors.len() {
            0 => Ok(claimed),
            1 => Err(SyncError::Claim(errors.remove(0))),
            _ => Err(SyncError::Claim(format!("[{}]", errors.join(", ")))),
        }
    }

    /// Upstream `RecheckDeletionTimestamp` with a live read: adopting is allowed only if the owner still exists
    /// with the same uid and is not being deleted.
    async fn recheck_deletion(&self, owner: &O) -> Result<(), String> {
        let meta = owner.meta();
        let namespace = meta.namespace.as_deref().unwrap_or("");
        let name = meta.name.as_deref().unwrap_or("");
        let uid = meta.uid.as_deref().unwrap_or("");
        let api: Api<O> = Api::namespaced(self.client.clone(), namespace);
        let fresh = api.get(name).await.map_err(|e| api_message(&e))?;
        let fresh_uid = fresh.meta().uid.as_deref().unwrap_or("");
        if fresh_uid != uid {
            return Err(format!(
                "original {} {namespace}/{name} is gone: got uid {fresh_uid}, wanted {uid}",
                O::kind(&())
            ));
        }
        if let Some(at) = fresh.meta().deletion_timestamp.as_ref() {
            return Err(format!("{namespace}/{name} has just been deleted at {}", at.0));
        }
        Ok(())
    }

    /// Upstream `manageReplicas`: creates (slow start) or deletes (best victims first) up to the burst size.
    async fn manage_replicas(&mut self, key: &Key, owner: &O, pods: &[Arc<Pod>]) -> Result<(), SyncError> {
        let desired = usize::try_from(owner.replicas()).unwrap_or(0);
        if pods.len() < desired {
            let count = (desired - pods.len()).min(self.burst);
            self.expectations.expect(key.clone(), count, 0);
            tracing::info!(need = desired, creating = count, "too few replicas");
            let (created, error) = self.create_pods(key, owner, count).await;
            // Creations never attempted (or failed) will not show up in the cache.
            for _ in created..count {
                self.expectations.creation_observed(key);
            }
            return error.map_or(Ok(()), |e| Err(SyncError::Manage(e)));
        }
        if pods.len() > desired {
            let count = (pods.len() - desired).min(self.burst);
            tracing::info!(need = desired, deleting = count, "too many replicas");
            let related = self.related_pods(owner);
            let victims = pods_to_delete(pods, &related, count, Timestamp::now());
            self.expectations.expect(key.clone(), 0, victims.len());
            self.deleting.insert(key.clone(), victims.iter().map(|p| Key::of(p.as_ref())).collect());
            return self.delete_pods(key, owner, victims).await;
        }
        Ok(())
    }

    /// Creates `count` pods in batches of 1, 2, 4, ... stopping after a batch with a failure. Returns how many
    /// succeeded and the first failure.
    async fn create_pods(&mut self, key: &Key, owner: &O, count: usize) -> (usize, Option<String>) {
        let meta = owner.meta();
        let name = meta.name.clone().unwrap_or_default();
        let uid = meta.uid.clone().unwrap_or_default();
        let Some(template) = owner.template() else {
            return (0, Some("unable to create pods, no template".to_string()));
        };
        let reference = controller_ref(&O::api_version(&()), &O::kind(&()), &name, &uid);
        let pod = pod_from_template(template, &name, reference);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let no_labels = pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty());
        let mut succeeded = 0;
        for batch in slow_start_batches(count) {
            if no_labels {
                return (succeeded, Some("unable to create pods, no labels".to_string()));
            }
            let params = PostParams::default();
            let results = futures::future::join_all((0..batch).map(|_| api.create(&params, &pod))).await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(created) => {
                        succeeded += 1;
                        let created = created.metadata.name.unwrap_or_default();
                        self.recorder.normal(owner, "SuccessfulCreate", &format!("Created pod: {created}")).await;
                    }
                    // Every creation fails in a terminating namespace; nothing to report or retry.
                    Err(e) if namespace_terminating(&e) => succeeded += 1,
                    Err(e) => {
                        let message = api_message(&e);
                        self.recorder.warning(owner, "FailedCreate", &format!("Error creating: {message}")).await;
                        failure.get_or_insert(message);
                    }
                }
            }
            if failure.is_some() {
                return (succeeded, failure);
            }
        }
        (succeeded, None)
    }

    /// Deletes `victims` with bounded concurrency; a failed deletion will not be observed, so it is counted now.
    async fn delete_pods(&mut self, key: &Key, owner: &O, victims: Vec<Arc<Pod>>) -> Result<(), SyncError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let results: Vec<(Arc<Pod>, Result<(), kube::Error>)> = futures::stream::iter(victims)
            .map(|pod| {
                let api = api.clone();
                async move {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let result = api.delete(&name, &DeleteParams::default()).await.map(|_| ());
                    (pod, result)
                }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let mut failure = None;
        for (pod, result) in results {
            let name = pod.metadata.name.clone().unwrap_or_default();
            match result {
                Ok(()) => self.recorder.normal(owner, "SuccessfulDelete", &format!("Deleted pod: {name}")).await,
                Err(e) => {
                    self.deletion_observed(key, &Key::of(pod.as_ref()));
                    if matches!(&e, kube::Error::Api(s) if s.is_not_found()) {
                        continue;
                    }
                    let message = api_message(&e);
                    self.recorder.warning(owner, "FailedDelete", &format!("Error deleting: {message}")).await;
                    failure.get_or_insert(format!("unable to delete pods: {message}"));
                }
            }
        }
        failure.map_or(Ok(()), |e| Err(SyncError::Manage(e)))
    }

    /// Upstream `getIndirectlyRelatedPods`: the pods selected by every owner sharing this one's controller (the
    /// ReplicaSets of one Deployment), each once. Empty when the owner has no controller.
    fn related_pods(&self, owner: &O) -> Vec<Arc<Pod>> {
        let Some(controller) = controller_of(owner.meta()) else { return Vec::new() };
        let namespace = owner.meta().namespace.as_deref().unwrap_or("");
        let siblings: Vec<LabelSelector> = self
            .owners
            .store()
            .state()
            .iter()
            .filter(|o| o.meta().namespace.as_deref().unwrap_or("") == namespace)
            .filter(|o| controller_of(o.meta()).is_some_and(|r| r.uid == controller.uid))
            .filter_map(|o| o.selector().ok())
            .collect();
        let empty = Default::default();
        let mut seen = HashSet::new();
        self.pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref().unwrap_or("") == namespace)
            .filter(|p| {
                let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
                siblings.iter().any(|s| s.matches(labels))
            })
            .filter(|p| seen.insert(p.metadata.uid.clone().unwrap_or_default()))
            .collect()
    }

    /// Upstream `updateReplicaSetStatus`: writes through the status subresource, once more on a fresh copy if
    /// the first write fails.
    async fn write_status(&self, key: &Key, owner: &O, status: &ReplicaStatus) -> Result<(), SyncError> {
        let api: Api<O> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut object = owner.clone();
        let mut attempt = 0;
        loop {
            object.set_replica_status(status);
            match api.replace_status(&key.name, &PostParams::default(), &object).await {
                Ok(_) => return Ok(()),
                Err(source) if attempt >= STATUS_UPDATE_RETRIES => {
                    return Err(SyncError::Status { key: key.clone(), source })
                }
                Err(_) => {
                    attempt += 1;
                    object =
                        api.get(&key.name).await.map_err(|source| SyncError::Status { key: key.clone(), source })?;
                }
            }
        }
    }
}

impl<O: ReplicaOwner> Reconciler for ReplicaController<O> {
    type Key = Key;
    type Error = SyncError;

    fn name(&self) -> &'static str {
        O::COMPONENT
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, SyncError> {
        let span = tracing::info_span!("sync", kind = %O::kind(&()), key = %key);
        self.sync(key).instrument(span).await
    }
}

/// Upstream `slowStartBatch`'s batch sizes for `count` calls: 1, 2, 4, ... with the last one cut to what is left.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut batch = SLOW_START_INITIAL_BATCH.min(remaining);
    while batch > 0 {
        batches.push(batch);
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    batches
}

/// The API server's message for an API error (what upstream's `err.Error()` prints), else the client error.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Upstream `HasStatusCause(err, NamespaceTerminatingCause)`.
fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_start_slow_and_double() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(7), [1, 2, 4]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(BURST_REPLICAS), [1, 2, 4, 8, 16, 32, 64, 128, 245]);
    }
}
