//! Node loss, as upstream's node lifecycle, taint-eviction and pod GC controllers handle it:
//!
//! - a node whose agent stops renewing its Lease (and posting status) for the grace period gets every condition set
//!   to `Unknown` ("Kubelet stopped posting node status.") and the `node.kubernetes.io/unreachable` taints; a node
//!   whose Ready condition is False gets the `not-ready` taints; both go away when it is Ready again;
//! - a pod on a node with a `NoExecute` taint it does not tolerate is deleted (at once, or when its
//!   `tolerationSeconds` run out: pods get 300 s for not-ready/unreachable by default), so its controller replaces it;
//! - a pod bound to a node that no longer exists is force-deleted.
//!
//! Time is observed locally, as upstream does: the grace period runs from the moment this controller last saw the
//! Lease or the node's heartbeat change, never from the agent's clock.

use std::collections::HashMap;
use std::time::Duration;

use ferry_runtime::events::Recorder;
use ferry_runtime::{Change, Controller, Informers, Key, Next, ObjectRef, Reconciler, Store, Task};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::time::Instant;

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const UNKNOWN_REASON: &str = "NodeStatusUnknown";
const UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";

/// The taints a node's Ready condition calls for (upstream's taint-based eviction and TaintNodesByCondition).
pub fn condition_taints(ready: Option<&str>) -> Vec<(&'static str, &'static str)> {
    match ready {
        Some("True") => Vec::new(),
        Some("False") => vec![(TAINT_NOT_READY, "NoExecute"), (TAINT_NOT_READY, "NoSchedule")],
        // Unknown, or no Ready condition at all yet (a node that never reported is treated as not ready).
        Some(_) => vec![(TAINT_UNREACHABLE, "NoExecute"), (TAINT_UNREACHABLE, "NoSchedule")],
        None => vec![(TAINT_NOT_READY, "NoSchedule")],
    }
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// `taints` with the condition taints made to match `want` (other taints untouched); `None` when already so.
pub fn reconcile_taints(taints: &[Taint], want: &[(&str, &str)], now: Timestamp) -> Option<Vec<Taint>> {
    let managed = |t: &Taint| t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY;
    let have: Vec<(&str, &str)> =
        taints.iter().filter(|t| managed(t)).map(|t| (t.key.as_str(), t.effect.as_str())).collect();
    let mut sorted_have = have.clone();
    sorted_have.sort();
    let mut sorted_want = want.to_vec();
    sorted_want.sort();
    if sorted_have == sorted_want {
        return None;
    }
    let mut next: Vec<Taint> =
        taints.iter().filter(|t| !managed(t) || want.contains(&(t.key.as_str(), t.effect.as_str()))).cloned().collect();
    for (key, effect) in want {
        if !have.contains(&(*key, *effect)) {
            let time_added = (*effect == "NoExecute").then_some(Time(now));
            next.push(Taint { key: key.to_string(), effect: effect.to_string(), time_added, value: None });
        }
    }
    Some(next)
}

/// The conditions of a node whose agent went silent: every one not already Unknown becomes Unknown.
pub fn unknown_conditions(conditions: &[NodeCondition], now: Timestamp) -> Option<Vec<NodeCondition>> {
    if conditions.iter().all(|c| c.status == "Unknown") && !conditions.is_empty() {
        return None;
    }
    let mut next: Vec<NodeCondition> = conditions
        .iter()
        .map(|c| {
            if c.status == "Unknown" {
                return c.clone();
            }
            NodeCondition {
                status: "Unknown".into(),
                reason: Some(UNKNOWN_REASON.into()),
                message: Some(UNKNOWN_MESSAGE.into()),
                last_transition_time: Some(Time(now)),
                ..c.clone()
            }
        })
        .collect();
    if !next.iter().any(|c| c.type_ == "Ready") {
        next.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some(UNKNOWN_REASON.into()),
            message: Some(UNKNOWN_MESSAGE.into()),
            last_transition_time: Some(Time(now)),
            last_heartbeat_time: None,
        });
    }
    Some(next)
}

/// When (if ever) a pod must leave a node with these taints: `Some(None)` now, `Some(Some(t))` at `t`, `None` never.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<Option<Timestamp>> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let mut deadline: Option<Timestamp> = None;
    let mut evict = false;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations.iter().filter(|t| ferry_scheduler::fit::tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(None);
        }
        // The shortest tolerationSeconds of the matching tolerations (none: tolerated forever).
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else { continue };
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now);
        let at = added + jiff_seconds(seconds.max(0));
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
        evict = true;
    }
    if evict {
        Some(deadline)
    } else {
        None
    }
}

fn jiff_seconds(seconds: i64) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_secs(seconds)
}

/// The unit of work: a node (its conditions and taints) or a pod (its eviction).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Work {
    Node(String),
    Pod(Key),
}

struct NodeLifecycle {
    client: kube::Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    grace: Duration,
    /// Per node: the last heartbeat seen (lease renew time, Ready heartbeat) and when this controller saw it change.
    heard: HashMap<String, (Option<String>, Instant)>,
    recorder: Recorder,
}

/// The controller, subscribed to `informers`; `grace` is upstream's node-monitor-grace-period.
pub(crate) fn controller(informers: &mut Informers, grace: Duration) -> Task {
    let nodes = informers.get::<Node>();
    let leases = informers.get::<Lease>();
    let pods = informers.get::<Pod>();
    let client = informers.client();
    let reconciler = NodeLifecycle {
        recorder: Recorder::new(client.clone(), "node-controller"),
        client,
        nodes: nodes.store(),
        leases: leases.store(),
        pods: pods.store(),
        grace,
        heard: HashMap::new(),
    };
    let controller = Controller::new(reconciler)
        .watch(&nodes, |lc: &mut NodeLifecycle, change: &Change<Node>| {
            let Some(node) = change.object() else { return Vec::new() };
            let name = node.metadata.name.clone().unwrap_or_default();
            let mut work = vec![Work::Node(name.clone())];
            let taints_changed = change.old().map(|o| o.spec.as_ref().and_then(|s| s.taints.clone()))
                != Some(node.spec.as_ref().and_then(|s| s.taints.clone()));
            if taints_changed || matches!(change, Change::Deleted(_)) {
                work.extend(lc.pods_on(&name).into_iter().map(Work::Pod));
            }
            work
        })
        .watch(&leases, |_: &mut NodeLifecycle, change: &Change<Lease>| match change.object() {
            Some(lease) if lease.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE) => {
                vec![Work::Node(lease.metadata.name.clone().unwrap_or_default())]
            }
            _ => Vec::new(),
        })
        .watch(&pods, |_: &mut NodeLifecycle, change: &Change<Pod>| match change {
            Change::Applied { new, .. } if new.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() => {
                vec![Work::Pod(Key::of(new.as_ref()))]
            }
            _ => Vec::new(),
        });
    Box::pin(controller.run())
}

/// Why a node or pod write failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub(crate) struct LifecycleError {
    what: String,
    source: kube::Error,
}

impl NodeLifecycle {
    fn pods_on(&self, node: &str) -> Vec<Key> {
        self.pods
            .state()
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .map(|p| Key::of(p.as_ref()))
            .collect()
    }

    /// The node's latest heartbeat as the cluster shows it: the Lease's renew time and the Ready heartbeat.
    fn heartbeat(&self, node: &Node, name: &str) -> Option<String> {
        let lease = self.leases.get(&ObjectRef::new(name).within(LEASE_NAMESPACE));
        let renew = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0.to_string()));
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()));
        match (renew, ready) {
            (None, None) => None,
            (a, b) => Some(format!("{}|{}", a.unwrap_or_default(), b.unwrap_or_default())),
        }
    }

    async fn sync_node(&mut self, name: &str) -> Result<Next, LifecycleError> {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            self.heard.remove(name);
            return Ok(Next::Done);
        };
        let beat = self.heartbeat(&node, name);
        let now = Instant::now();
        let seen_at = match self.heard.get(name) {
            Some((last, at)) if *last == beat => *at,
            _ => {
                self.heard.insert(name.to_string(), (beat, now));
                now
            }
        };
        let silent = now.duration_since(seen_at) >= self.grace;
        let api: Api<Node> = Api::all(self.client.clone());
        let error = |what: &str| {
            let what = format!("{what} of node {name}");
            move |source| LifecycleError { what, source }
        };
        let mut node = (*node).clone();
        if silent {
            let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            if let Some(next) = unknown_conditions(&conditions, Timestamp::now()) {
                node.status.get_or_insert_with(Default::default).conditions = Some(next);
                node = api.replace_status(name, &PostParams::default(), &node).await.map_err(error("status"))?;
                tracing::warn!(node = name, "node stopped posting status; conditions set to Unknown");
                self.recorder.normal(&node, "NodeNotReady", &format!("Node {name} status is now: NodeNotReady")).await;
            }
        }
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        if let Some(next) = reconcile_taints(&taints, &condition_taints(ready_status(&node)), Timestamp::now()) {
            node.spec.get_or_insert_with(Default::default).taints = Some(next);
            api.replace(name, &PostParams::default(), &node).await.map_err(error("taints"))?;
        }
        if silent {
            Ok(Next::Done)
        } else {
            Ok(Next::After(self.grace.saturating_sub(now.duration_since(seen_at)) + Duration::from_millis(50)))
        }
    }

    async fn sync_pod(&mut self, key: &Key) -> Result<Next, LifecycleError> {
        let Some(pod) = self.pods.get(&ObjectRef::new(&key.name).within(&key.namespace)) else {
            return Ok(Next::Done);
        };
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { return Ok(Next::Done) };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let uid_precondition = |grace: Option<u32>| DeleteParams {
            grace_period_seconds: grace,
            preconditions: Some(kube::api::Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        let Some(node) = self.nodes.get(&ObjectRef::new(&node_name)) else {
            // Bound to a node that does not exist: nothing will ever run or finish it (upstream's pod GC).
            match api.delete(&key.name, &uid_precondition(Some(0))).await {
                Ok(_) => tracing::info!(pod = %key, node = node_name, "deleted a pod bound to a missing node"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(source) => return Err(LifecycleError { what: format!("deleting pod {key}"), source }),
            }
            return Ok(Next::Done);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        match eviction_time(&pod, &taints) {
            None => Ok(Next::Done),
            Some(Some(at)) if at > Timestamp::now() => {
                let wait = (at - Timestamp::now()).total(k8s_openapi::jiff::Unit::Millisecond).unwrap_or(1000.0);
                Ok(Next::After(Duration::from_millis(wait.max(0.0) as u64 + 10)))
            }
            Some(_) => {
                self.recorder
                    .normal(pod.as_ref(), "TaintManagerEviction", &format!("Marking for deletion Pod {key}"))
                    .await;
                match api.delete(&key.name, &uid_precondition(None)).await {
                    Ok(_) => tracing::info!(pod = %key, node = node_name, "evicted a pod from a tainted node"),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(source) => return Err(LifecycleError { what: format!("evicting pod {key}"), source }),
                }
                Ok(Next::Done)
            }
        }
    }
}

impl Reconciler for NodeLifecycle {
    type Key = Work;
    type Error = LifecycleError;

    fn name(&self) -> &'static str {
        "node-lifecycle"
    }

    async fn reconcile(&mut self, work: &Work) -> Result<Next, LifecycleError> {
        match work {
            Work::Node(name) => self.sync_node(name).await,
            Work::Pod(key) => self.sync_pod(key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};

    fn taint(key: &str, effect: &str, added: Timestamp) -> Taint {
        Taint { key: key.into(), effect: effect.into(), time_added: Some(Time(added)), value: None }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod { spec: Some(PodSpec { tolerations: Some(tolerations), ..Default::default() }), ..Default::default() }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn ready_condition_decides_the_taints() {
        assert!(condition_taints(Some("True")).is_empty());
        assert_eq!(condition_taints(Some("Unknown"))[0], (TAINT_UNREACHABLE, "NoExecute"));
        assert_eq!(condition_taints(Some("False"))[0], (TAINT_NOT_READY, "NoExecute"));
    }

    #[test]
    fn taints_are_added_and_removed_leaving_others_alone() {
        let now = Timestamp::now();
        let user = Taint { key: "dedicated".into(), effect: "NoSchedule".into(), time_added: None, value: None };
        let next = reconcile_taints(std::slice::from_ref(&user), &condition_taints(Some("Unknown")), now).unwrap();
        assert_eq!(next.len(), 3);
        assert!(next.iter().any(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoExecute" && t.time_added.is_some()));
        assert_eq!(reconcile_taints(&next, &condition_taints(Some("Unknown")), now), None);
        let healed = reconcile_taints(&next, &condition_taints(Some("True")), now).unwrap();
        assert_eq!(healed, vec![user]);
    }

    #[test]
    fn silent_nodes_get_unknown_conditions_once() {
        let now = Timestamp::now();
        let ready = NodeCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() };
        let next = unknown_conditions(&[ready], now).unwrap();
        assert_eq!(next[0].status, "Unknown");
        assert_eq!(next[0].reason.as_deref(), Some(UNKNOWN_REASON));
        assert_eq!(next[0].message.as_deref(), Some(UNKNOWN_MESSAGE));
        assert_eq!(unknown_conditions(&next, now), None);
    }

    #[test]
    fn eviction_honours_toleration_seconds() {
        let added = Timestamp::now();
        let taints = [taint(TAINT_UNREACHABLE, "NoExecute", added)];
        assert_eq!(eviction_time(&pod(vec![]), &taints), Some(None));
        assert_eq!(eviction_time(&pod(vec![toleration(TAINT_UNREACHABLE, None)]), &taints), None);
        let at = eviction_time(&pod(vec![toleration(TAINT_UNREACHABLE, Some(300))]), &taints);
        assert_eq!(at, Some(Some(added + jiff_seconds(300))));
        let other = [taint("x", "NoSchedule", added)];
        assert_eq!(eviction_time(&pod(vec![]), &other), None);
    }
}
