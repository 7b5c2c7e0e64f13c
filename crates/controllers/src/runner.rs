//! The loop around the endpoint controllers: kube-rs reflectors of Services, Pods, Endpoints and EndpointSlices
//! feed a de-duplicating queue keyed by Service (namespace, name); each key is reconciled level-triggered from the
//! caches by the pure `endpoints`/`slices` rules, and only differences are written. Writes the caches have not shown
//! yet hold the key back, so a slow watch never causes a duplicate slice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::endpoints;
use crate::slices::{self, SliceChanges};

/// What the controllers need to run.
#[derive(Debug, Clone)]
pub struct ControllersConfig {
    /// A kubeconfig for the API server (the controllers are ordinary API clients).
    pub kubeconfig: PathBuf,
}

/// Why the controllers stopped before being told to.
#[derive(Debug, thiserror::Error)]
pub enum ControllersError {
    #[error("connecting to the API server: {0}")]
    Connect(#[from] ferry_client::ClientError),
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::RuntimeError),
}

/// Why one reconcile failed (the key is retried with back-off).
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("writing Endpoints {name}: {source}")]
    Endpoints { name: String, source: kube::Error },
    #[error("writing EndpointSlice for {service}: {source}")]
    Slice { service: String, source: kube::Error },
}

/// How long an unseen write holds its key back at most.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_BASE: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs the Endpoints, EndpointSlice and mirroring controllers until `shutdown` becomes `true` (or its sender is
/// dropped). Spawns no tasks: everything runs inside this future, so it is done when it returns.
pub(crate) async fn run(client: Client, mut shutdown: watch::Receiver<bool>) -> Result<(), ControllersError> {
    let (services, service_writer) = reflector::store::<Service>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let (endpoints_store, endpoints_writer) = reflector::store::<Endpoints>();
    let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
    let mut service_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(service_writer)
        .boxed();
    let mut pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .boxed();
    let mut endpoints_events = watcher(Api::<Endpoints>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(endpoints_writer)
        .boxed();
    let slice_config = watcher::Config::default().labels(slices::SERVICE_NAME_LABEL);
    let mut slice_events = watcher(Api::<EndpointSlice>::all(client.clone()), slice_config)
        .default_backoff()
        .reflect(slice_writer)
        .boxed();

    let mut state = State {
        client,
        services,
        pods: pod_store,
        endpoints: endpoints_store,
        slices: slice_store,
        synced: [false; 4],
        ready: BTreeSet::new(),
        retries: BTreeMap::new(),
        attempts: HashMap::new(),
        pod_labels: HashMap::new(),
        deleted_services: HashSet::new(),
        expectations: HashMap::new(),
    };
    tracing::info!("endpoint controllers started");
    loop {
        let now = Instant::now();
        state.promote_retries(now);
        let work = state.all_synced() && !state.ready.is_empty();
        let wakeup = state.retries.values().min().copied();
        tokio::select! {
            biased;
            _ = ferry_client::stopped(&mut shutdown) => break,
            event = service_events.next() => state.on_service(next_event(event, "services")?),
            event = pod_events.next() => state.on_pod(next_event(event, "pods")?),
            event = endpoints_events.next() => state.on_endpoints(next_event(event, "endpoints")?),
            event = slice_events.next() => state.on_slice(next_event(event, "endpointslices")?),
            _ = tokio::time::sleep_until(wakeup.unwrap_or(now)), if wakeup.is_some() && !work => {}
            _ = std::future::ready(()), if work => {
                let Some(key) = state.ready.pop_first() else { continue };
                tokio::select! {
                    biased;
                    _ = ferry_client::stopped(&mut shutdown) => break,
                    _ = state.sync(key) => {}
                }
            }
        }
    }
    tracing::info!("endpoint controllers stopped");
    Ok(())
}

/// Unwraps one reflector item: errors are logged (the watcher retries with back-off), an ended stream is fatal.
fn next_event<K>(
    item: Option<Result<watcher::Event<K>, watcher::Error>>,
    what: &'static str,
) -> Result<Option<watcher::Event<K>>, ControllersError> {
    match item {
        None => Err(ControllersError::WatchEnded(what)),
        Some(Ok(event)) => Ok(Some(event)),
        Some(Err(e)) => {
            tracing::warn!(resource = what, error = %e, "watch failed; retrying");
            Ok(None)
        }
    }
}

/// A Service (and its same-named Endpoints and its slices): the unit of work.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    namespace: String,
    name: String,
}

impl Key {
    fn of<K: Resource>(obj: &K) -> Key {
        Key {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }
}

/// A write of ours the caches must show before the key is reconciled again.
#[derive(Debug)]
struct Expectation {
    kind: Kind,
    name: String,
    /// `Some(rv)`: present at `rv` or later; `None`: gone.
    revision: Option<u64>,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Endpoints,
    Slice,
}

struct State {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    /// services, pods, endpoints, slices: listed completely.
    synced: [bool; 4],
    ready: BTreeSet<Key>,
    retries: BTreeMap<Key, Instant>,
    attempts: HashMap<Key, u32>,
    /// Last seen labels of every pod, to find the services a pod left.
    pod_labels: HashMap<Key, BTreeMap<String, String>>,
    /// Services whose deletion was observed and whose Endpoints are still to be deleted.
    deleted_services: HashSet<Key>,
    expectations: HashMap<Key, Vec<Expectation>>,
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref().and_then(|rv| rv.parse().ok())
}

fn selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl State {
    fn all_synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    fn enqueue(&mut self, key: Key) {
        self.retries.remove(&key);
        self.ready.insert(key);
    }

    fn promote_retries(&mut self, now: Instant) {
        let due: Vec<Key> = self.retries.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            self.retries.remove(&key);
            self.ready.insert(key);
        }
    }

    fn retry_later(&mut self, key: Key) {
        let attempt = self.attempts.entry(key.clone()).or_insert(0);
        let delay = RETRY_BASE.saturating_mul(1 << (*attempt).min(8)).min(RETRY_MAX);
        *attempt += 1;
        self.retries.insert(key, Instant::now() + delay);
    }

    /// After a (re-)list: every service, Endpoints and slice owner may need work.
    fn enqueue_everything(&mut self) {
        let mut keys: Vec<Key> = self.services.state().iter().map(|s| Key::of(s.as_ref())).collect();
        keys.extend(self.endpoints.state().iter().map(|e| Key::of(e.as_ref())));
        keys.extend(self.slices.state().iter().filter_map(|s| {
            Some(Key { namespace: s.metadata.namespace.clone()?, name: slices::service_name(s)?.to_string() })
        }));
        for key in keys {
            self.enqueue(key);
        }
    }

    fn on_init_done(&mut self, which: usize) {
        self.synced[which] = true;
        if self.all_synced() {
            self.enqueue_everything();
        }
    }

    fn on_service(&mut self, event: Option<watcher::Event<Service>>) {
        match event {
            Some(watcher::Event::Apply(svc)) | Some(watcher::Event::InitApply(svc)) => {
                let key = Key::of(&svc);
                self.deleted_services.remove(&key);
                self.enqueue(key);
            }
            Some(watcher::Event::Delete(svc)) => {
                let key = Key::of(&svc);
                self.deleted_services.insert(key.clone());
                self.enqueue(key);
            }
            Some(watcher::Event::Init) => self.synced[0] = false,
            Some(watcher::Event::InitDone) => self.on_init_done(0),
            None => {}
        }
    }

    fn on_pod(&mut self, event: Option<watcher::Event<Pod>>) {
        match event {
            Some(watcher::Event::Apply(pod)) => self.pod_changed(&pod, false),
            Some(watcher::Event::Delete(pod)) => self.pod_changed(&pod, true),
            Some(watcher::Event::Init) => self.synced[1] = false,
            Some(watcher::Event::InitDone) => {
                self.pod_labels = self
                    .pods
                    .state()
                    .iter()
                    .map(|p| (Key::of(p.as_ref()), p.metadata.labels.clone().unwrap_or_default()))
                    .collect();
                self.on_init_done(1);
            }
            Some(watcher::Event::InitApply(_)) | None => {}
        }
    }

    /// Enqueues every service of the pod's namespace whose selector matches its old or new labels.
    fn pod_changed(&mut self, pod: &Pod, gone: bool) {
        let key = Key::of(pod);
        let new = pod.metadata.labels.clone().unwrap_or_default();
        let old = if gone { self.pod_labels.remove(&key) } else { self.pod_labels.insert(key.clone(), new.clone()) };
        let services: Vec<Key> = self
            .services
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
            .filter(|s| {
                let Some(selector) = s.spec.as_ref().and_then(|sp| sp.selector.as_ref()) else { return false };
                selector_matches(selector, &new) || old.as_ref().is_some_and(|o| selector_matches(selector, o))
            })
            .map(|s| Key::of(s.as_ref()))
            .collect();
        for service in services {
            self.enqueue(service);
        }
    }

    fn on_endpoints(&mut self, event: Option<watcher::Event<Endpoints>>) {
        match event {
            Some(watcher::Event::Apply(ep)) | Some(watcher::Event::Delete(ep)) => self.enqueue(Key::of(&ep)),
            Some(watcher::Event::Init) => self.synced[2] = false,
            Some(watcher::Event::InitDone) => self.on_init_done(2),
            Some(watcher::Event::InitApply(_)) | None => {}
        }
    }

    fn on_slice(&mut self, event: Option<watcher::Event<EndpointSlice>>) {
        match event {
            Some(watcher::Event::Apply(slice)) | Some(watcher::Event::Delete(slice)) => {
                if let (Some(namespace), Some(name)) = (slice.metadata.namespace.clone(), slices::service_name(&slice))
                {
                    self.enqueue(Key { namespace, name: name.to_string() });
                }
            }
            Some(watcher::Event::Init) => self.synced[3] = false,
            Some(watcher::Event::InitDone) => self.on_init_done(3),
            Some(watcher::Event::InitApply(_)) | None => {}
        }
    }

    /// Whether the caches show every write made for `key` (expired expectations are dropped).
    fn caches_current(&mut self, key: &Key) -> bool {
        let Some(list) = self.expectations.get_mut(key) else { return true };
        let now = Instant::now();
        let endpoints = &self.endpoints;
        let slices = &self.slices;
        list.retain(|e| {
            if now.duration_since(e.since) > EXPECTATION_TIMEOUT {
                return false;
            }
            let stored = match e.kind {
                Kind::Endpoints => {
                    endpoints.get(&ObjectRef::new(&e.name).within(&key.namespace)).map(|o| revision(&o.metadata))
                }
                Kind::Slice => {
                    slices.get(&ObjectRef::new(&e.name).within(&key.namespace)).map(|o| revision(&o.metadata))
                }
            };
            let seen = match (e.revision, stored) {
                (None, None) => true,
                (None, Some(_)) => false,
                (Some(_), None) => false,
                (Some(want), Some(have)) => have.is_none_or(|have| have >= want),
            };
            !seen
        });
        let current = list.is_empty();
        if current {
            self.expectations.remove(key);
        }
        current
    }

    fn expect(&mut self, key: &Key, kind: Kind, name: String, revision: Option<u64>) {
        self.expectations.entry(key.clone()).or_default().push(Expectation {
            kind,
            name,
            revision,
            since: Instant::now(),
        });
    }

    async fn sync(&mut self, key: Key) {
        if !self.caches_current(&key) {
            // The watch event of our write re-enqueues the key; the retry covers a write that never shows.
            self.retries.insert(key, Instant::now() + Duration::from_millis(200));
            return;
        }
        let span = tracing::debug_span!("sync service", namespace = %key.namespace, name = %key.name);
        let _guard = span.enter();
        match self.sync_inner(&key).await {
            Ok(()) => {
                self.attempts.remove(&key);
            }
            Err(e) => {
                tracing::warn!(namespace = %key.namespace, name = %key.name, error = %e, "endpoint sync failed; will retry");
                self.retry_later(key);
            }
        }
    }

    async fn sync_inner(&mut self, key: &Key) -> Result<(), SyncError> {
        let service = self.services.get(&ObjectRef::new(&key.name).within(&key.namespace));
        let current = self.endpoints.get(&ObjectRef::new(&key.name).within(&key.namespace));
        let all_pods = self.pods.state();
        let pods: Vec<&Pod> = all_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.namespace.as_deref() == Some(&key.namespace))
            .collect();
        let all_slices = self.slices.state();
        let slices: Vec<&EndpointSlice> = all_slices
            .iter()
            .map(|s| s.as_ref())
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(&key.namespace) && slices::service_name(s) == Some(&key.name)
            })
            .collect();

        // Endpoints.
        let endpoints_api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let ep_error = |source| SyncError::Endpoints { name: key.name.clone(), source };
        match service.as_deref() {
            None => {
                if current.is_some() && self.deleted_services.contains(key) {
                    match endpoints_api.delete(&key.name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(status)) if status.code == 404 => {}
                        Err(e) => return Err(ep_error(e)),
                    }
                    tracing::info!(namespace = %key.namespace, name = %key.name, "deleted Endpoints of deleted service");
                    self.expect(key, Kind::Endpoints, key.name.clone(), None);
                }
                self.deleted_services.remove(key);
            }
            Some(service) => {
                if let Some(desired) = endpoints::desired_endpoints(service, &pods) {
                    let written = match current.as_deref() {
                        None => Some(endpoints_api.create(&PostParams::default(), &desired).await.map_err(ep_error)?),
                        Some(current) => match endpoints::updated_endpoints(current, &desired) {
                            None => None,
                            Some(next) => Some(
                                endpoints_api
                                    .replace(&key.name, &PostParams::default(), &next)
                                    .await
                                    .map_err(ep_error)?,
                            ),
                        },
                    };
                    if let Some(written) = written {
                        tracing::debug!(namespace = %key.namespace, name = %key.name, "wrote Endpoints");
                        self.expect(key, Kind::Endpoints, key.name.clone(), revision(&written.metadata));
                    }
                }
            }
        }

        // EndpointSlices of the service (deleted with it: stands in for the garbage collector), then mirrored ones.
        let mut changes = match service.as_deref() {
            Some(service) => slices::desired_slices(service, &pods, &slices),
            None => SliceChanges {
                delete: slices
                    .iter()
                    .filter(|s| slices::managed_by(s, slices::CONTROLLER_NAME))
                    .map(|s| (*s).clone())
                    .collect(),
                ..SliceChanges::default()
            },
        };
        let mirrored = slices::mirrored_slices(service.as_deref(), current.as_deref(), &slices);
        changes.create.extend(mirrored.create);
        changes.update.extend(mirrored.update);
        changes.delete.extend(mirrored.delete);
        self.apply_slices(key, changes).await
    }

    async fn apply_slices(&mut self, key: &Key, changes: SliceChanges) -> Result<(), SyncError> {
        if changes.is_empty() {
            return Ok(());
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        let error = |source| SyncError::Slice { service: key.name.clone(), source };
        for slice in &changes.create {
            let written = api.create(&PostParams::default(), slice).await.map_err(error)?;
            let name = written.metadata.name.clone().unwrap_or_default();
            self.expect(key, Kind::Slice, name, revision(&written.metadata));
        }
        for slice in &changes.update {
            let name = slice.metadata.name.clone().unwrap_or_default();
            let written = api.replace(&name, &PostParams::default(), slice).await.map_err(error)?;
            self.expect(key, Kind::Slice, name, revision(&written.metadata));
        }
        for slice in &changes.delete {
            let name = slice.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(error(e)),
            }
            self.expect(key, Kind::Slice, name, None);
        }
        tracing::debug!(
            namespace = %key.namespace,
            service = %key.name,
            created = changes.create.len(),
            updated = changes.update.len(),
            deleted = changes.delete.len(),
            "wrote EndpointSlices"
        );
        Ok(())
    }
}
