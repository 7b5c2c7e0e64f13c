//! The garbage collector on the shared runtime: every kind that owns or is owned is watched, each change updates the
//! dependency graph of `gc`, and each affected object (by uid) is reconciled by carrying out the graph's plan for it
//! against the API server: delete dependents of gone owners, orphan the dependents of an owner with the `orphan`
//! finalizer, delete the dependents of an owner in foreground deletion and release its finalizer.

use ferry_runtime::{Change, Controller, Informers, Next, Reconciler, Task};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, ReplicationController, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};

use crate::gc::{Action, Graph, Node, ObjectIdent, Propagation};

/// How many plan/execute rounds one reconcile runs (a verified owner changes the plan).
const MAX_ROUNDS: usize = 4;

struct Collector {
    client: kube::Client,
    graph: Graph,
    requeue: Vec<String>,
}

/// The collector, subscribed to `informers`.
pub(crate) fn controller(informers: &mut Informers) -> Task {
    let collector = Collector { client: informers.client(), graph: Graph::new(), requeue: Vec::new() };
    let mut c = Controller::new(collector);
    c = watch::<Pod>(c, informers);
    c = watch::<ReplicaSet>(c, informers);
    c = watch::<ReplicationController>(c, informers);
    c = watch::<Deployment>(c, informers);
    c = watch::<DaemonSet>(c, informers);
    c = watch::<ControllerRevision>(c, informers);
    c = watch::<Job>(c, informers);
    c = watch::<CronJob>(c, informers);
    c = watch::<Service>(c, informers);
    c = watch::<Endpoints>(c, informers);
    c = watch::<EndpointSlice>(c, informers);
    c = watch::<ConfigMap>(c, informers);
    c = watch::<Secret>(c, informers);
    c = watch::<Lease>(c, informers);
    Box::pin(c.run())
}

fn watch<K>(controller: Controller<Collector>, informers: &mut Informers) -> Controller<Collector>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let informer = informers.get::<K>();
    controller.watch(&informer, |gc: &mut Collector, change: &Change<K>| {
        let (api_version, kind) = (K::api_version(&()), K::kind(&()));
        match change {
            Change::Applied { new, .. } => match Node::from_meta(&api_version, &kind, new.meta()) {
                Some(node) => gc.graph.upsert(node),
                None => Vec::new(),
            },
            Change::Deleted(obj) => obj.meta().uid.as_deref().map(|uid| gc.graph.remove(uid)).unwrap_or_default(),
            Change::Synced => Vec::new(),
        }
    })
}

/// Why one action failed (the uid is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CollectError {
    #[error("{action} {target}: {source}")]
    Api { action: &'static str, target: String, source: kube::Error },
}

fn describe(ident: &ObjectIdent) -> String {
    match &ident.namespace {
        Some(ns) => format!("{} {ns}/{}", ident.kind, ident.name),
        None => format!("{} {}", ident.kind, ident.name),
    }
}

/// The dynamic API of an object's kind at its apiVersion, if ferry serves that kind there.
fn api_for(client: &kube::Client, ident: &ObjectIdent) -> Option<(Api<DynamicObject>, bool)> {
    let (group, version) = match ident.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", ident.api_version.as_str()),
    };
    let (def, _) = ferry_api::catalog::lookup_kind(group, version, &ident.kind)?;
    let resource = ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: ident.api_version.clone(),
        kind: ident.kind.clone(),
        plural: def.plural.to_string(),
    };
    let api = match (&ident.namespace, def.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &resource),
        (_, false) => Api::all_with(client.clone(), &resource),
        (None, true) => return None,
    };
    Some((api, def.namespaced))
}

fn gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

impl Collector {
    async fn execute(&mut self, action: Action) -> Result<(), CollectError> {
        let target = action.target().clone();
        let Some((api, namespaced)) = api_for(&self.client, &target) else {
            tracing::debug!(object = %describe(&target), "garbage collector: kind not served; skipping");
            return Ok(());
        };
        let fail = |action: &'static str| {
            let target = describe(&target);
            move |source| CollectError::Api { action, target, source }
        };
        let uid_guard = serde_json::json!(target.uid);
        match action {
            Action::Delete { policy, .. } => {
                let params = DeleteParams {
                    propagation_policy: Some(match policy {
                        Propagation::Orphan => kube::api::PropagationPolicy::Orphan,
                        Propagation::Background => kube::api::PropagationPolicy::Background,
                        Propagation::Foreground => kube::api::PropagationPolicy::Foreground,
                    }),
                    preconditions: Some(Preconditions { uid: Some(target.uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                };
                match api.delete(&target.name, &params).await {
                    Ok(_) => tracing::info!(object = %describe(&target), policy = policy.as_str(), "garbage collected"),
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(fail("deleting")(e)),
                }
            }
            Action::RemoveOwnerRefs { owner_uids, .. } => {
                let refs: Vec<_> =
                    owner_uids.iter().map(|u| serde_json::json!({"$patch": "delete", "uid": u})).collect();
                let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": uid_guard}});
                match api.patch(&target.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                    Ok(_) => tracing::info!(object = %describe(&target), "orphaned"),
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(fail("orphaning")(e)),
                }
            }
            Action::UnblockOwnerRefs { .. } => {
                let owners = self.graph.node(&target.uid).map(|n| n.owners.clone()).unwrap_or_default();
                let refs: Vec<_> = owners
                    .iter()
                    .filter(|o| o.block_owner_deletion)
                    .map(|o| serde_json::json!({"uid": o.uid, "blockOwnerDeletion": false}))
                    .collect();
                if !refs.is_empty() {
                    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": uid_guard}});
                    match api.patch(&target.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                        Ok(_) => {}
                        Err(e) if gone(&e) => {}
                        Err(e) => return Err(fail("unblocking owner references of")(e)),
                    }
                }
            }
            Action::RemoveFinalizer { finalizer, .. } => {
                let patch = serde_json::json!({
                    "metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer], "uid": uid_guard}
                });
                match api.patch(&target.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                    Ok(_) => tracing::info!(object = %describe(&target), finalizer, "released finalizer"),
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(fail("removing a finalizer of")(e)),
                }
            }
            Action::VerifyOwnerAbsent { owner } => {
                let live = match api.get_opt(&owner.name).await {
                    Ok(live) => live,
                    Err(e) => return Err(fail("looking up owner")(e)),
                };
                let live_node = live
                    .filter(|o| o.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    .and_then(|o| Node::from_meta(&owner.api_version, &owner.kind, &o.metadata));
                let woken = match live_node {
                    Some(node) => self.graph.upsert(node),
                    None => {
                        let mut absent = owner.clone();
                        if !namespaced {
                            absent.namespace = None;
                        }
                        self.graph.owner_absent(&absent)
                    }
                };
                self.requeue.extend(woken);
            }
        }
        Ok(())
    }
}

impl Reconciler for Collector {
    type Key = String;
    type Error = CollectError;

    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    async fn reconcile(&mut self, uid: &String) -> Result<Next, CollectError> {
        for _ in 0..MAX_ROUNDS {
            let plan = self.graph.plan(uid);
            if plan.is_empty() {
                break;
            }
            let verifying = plan.iter().any(|a| matches!(a, Action::VerifyOwnerAbsent { .. }));
            for action in plan {
                self.execute(action).await?;
            }
            if !verifying {
                // Writes show up through the watches, which re-plan the objects they touch.
                break;
            }
        }
        Ok(Next::Done)
    }

    fn take_requeues(&mut self) -> Vec<String> {
        std::mem::take(&mut self.requeue)
    }
}
