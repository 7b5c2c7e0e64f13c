//! The endpoint controllers on the shared runtime: changes of Services, Pods, Endpoints and EndpointSlices map to
//! the Service they concern; each Service is reconciled level-triggered from the informer caches by the pure
//! `endpoints`/`slices` rules, and only differences are written. Writes the caches have not shown yet hold the key
//! back, so a slow watch never causes a duplicate slice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use ferry_runtime::{revision, Change, Controller, Informers, Key, Next, ObjectRef, Reconciler, Store, Task};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use tokio::time::Instant;

use crate::endpoints;
use crate::slices::{self, SliceChanges};

/// What the controllers need to run.
#[derive(Debug, Clone)]
pub struct ControllersConfig {
    /// A kubeconfig for the API server (the controllers are ordinary API clients).
    pub kubeconfig: PathBuf,
    /// The addresses `type: LoadBalancer` Services get.
    pub load_balancer_pool: crate::loadbalancer::Pool,
    /// How long a node may stay silent before it is marked Unknown and tainted unreachable.
    pub node_monitor_grace_period: Duration,
}

impl ControllersConfig {
    /// Upstream's defaults (40 s node grace) and a load balancer pool of `node_address` only.
    pub fn new(kubeconfig: PathBuf, node_address: std::net::IpAddr) -> ControllersConfig {
        ControllersConfig {
            kubeconfig,
            load_balancer_pool: crate::loadbalancer::Pool::new(vec![node_address]),
            node_monitor_grace_period: Duration::from_secs(40),
        }
    }
}

/// Why the controllers stopped before being told to.
#[derive(Debug, thiserror::Error)]
pub enum ControllersError {
    #[error("connecting to the API server: {0}")]
    Connect(#[from] ferry_client::ClientError),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::RuntimeError),
}

/// Why one reconcile failed (the key is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("writing Endpoints {name}: {source}")]
    Endpoints { name: String, source: kube::Error },
    #[error("writing EndpointSlice for {service}: {source}")]
    Slice { service: String, source: kube::Error },
}

/// How long an unseen write holds its key back at most.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The Endpoints, EndpointSlice and mirroring controllers as one reconciler keyed by Service, subscribed to
/// `informers`.
pub(crate) fn controller(informers: &mut Informers) -> Task {
    let services = informers.get::<Service>();
    let pods = informers.get::<Pod>();
    let endpoints = informers.get::<Endpoints>();
    let slices = informers.get::<EndpointSlice>();
    let reconciler = State {
        client: informers.client(),
        services: services.store(),
        endpoints: endpoints.store(),
        slices: slices.store(),
        pods: pods.store(),
        deleted_services: HashSet::new(),
        expectations: HashMap::new(),
    };
    let controller = Controller::new(reconciler)
        .watch(&services, |state: &mut State, change: &Change<Service>| match change {
            Change::Applied { new, .. } => {
                let key = Key::of(new.as_ref());
                state.deleted_services.remove(&key);
                vec![key]
            }
            Change::Deleted(svc) => {
                let key = Key::of(svc.as_ref());
                state.deleted_services.insert(key.clone());
                vec![key]
            }
            Change::Synced => Vec::new(),
        })
        .watch(&pods, |state: &mut State, change: &Change<Pod>| state.services_of_pod(change))
        .watch(&endpoints, |_: &mut State, change: &Change<Endpoints>| {
            change.object().map(|ep| vec![Key::of(ep)]).unwrap_or_default()
        })
        .watch(&slices, |_: &mut State, change: &Change<EndpointSlice>| {
            let Some(slice) = change.object() else { return Vec::new() };
            match (slice.metadata.namespace.as_deref(), slices::service_name(slice)) {
                (Some(namespace), Some(name)) => vec![Key::new(namespace, name)],
                _ => Vec::new(),
            }
        });
    Box::pin(controller.run())
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
    /// Services whose deletion was observed and whose Endpoints are still to be deleted.
    deleted_services: HashSet<Key>,
    expectations: HashMap<Key, Vec<Expectation>>,
}

fn selector_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Reconciler for State {
    type Key = Key;
    type Error = SyncError;

    fn name(&self) -> &'static str {
        "endpoints"
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, SyncError> {
        if !self.caches_current(key) {
            // The watch event of our write re-enqueues the key; the re-check covers a write that never shows.
            return Ok(Next::After(Duration::from_millis(200)));
        }
        self.sync_inner(key).await?;
        Ok(Next::Done)
    }
}

impl State {
    /// Every service of the pod's namespace whose selector matches its old or new labels.
    fn services_of_pod(&self, change: &Change<Pod>) -> Vec<Key> {
        let Some(pod) = change.object() else { return Vec::new() };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let new = pod.metadata.labels.clone().unwrap_or_default();
        let old = change.old().and_then(|o| o.metadata.labels.clone());
        self.services
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .filter(|s| {
                let Some(selector) = s.spec.as_ref().and_then(|sp| sp.selector.as_ref()) else { return false };
                selector_matches(selector, &new) || old.as_ref().is_some_and(|o| selector_matches(selector, o))
            })
            .map(|s| Key::of(s.as_ref()))
            .collect()
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
