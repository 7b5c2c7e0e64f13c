//! The DaemonSet controller's decisions as pure functions of the caches: which nodes need a pod and which pods must
//! go (upstream `manage` / `podsShouldBeOnNode`), what a rolling update replaces next (`rollingUpdate`, with and
//! without surge), and the status counts (`updateDaemonSetStatus`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::eligibility::node_should_run;
use crate::pods::{
    is_available, is_ready, is_terminating, is_updated, oldest_first, phase, target_node, template_generation,
    REVISION_HASH_LABEL,
};

/// A DaemonSet's pods by the node they are for (upstream `getNodesToDaemonPods`).
pub type ByNode<'a> = BTreeMap<String, Vec<&'a Pod>>;

/// Groups `pods` by [`target_node`]; pods for no node are left out.
pub fn group_by_node<'a>(pods: &[&'a Pod]) -> ByNode<'a> {
    let mut by_node: ByNode<'a> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    by_node
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

/// A pod that ended on a node it should keep running on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedPod {
    pub pod: String,
    pub node: String,
}

/// What `manage` decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagePlan {
    /// Nodes that need a pod.
    pub create_on: Vec<String>,
    /// Pods to delete: surplus pods, pods on nodes that no longer run the DaemonSet, unbound pods for nodes that
    /// are gone.
    pub delete: Vec<String>,
    /// Failed pods to replace (deleted subject to the caller's back-off; event `FailedDaemonPod`).
    pub failed: Vec<EndedPod>,
    /// Succeeded pods to replace (deleted; event `SucceededDaemonPod`).
    pub succeeded: Vec<EndedPod>,
}

/// Upstream `GetScaledValueFromIntOrPercent` rounding up; `None` for a malformed percentage.
pub fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(v) => Some(*v),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            let scaled = (percent * i64::from(total) + 99).div_euclid(100);
            i32::try_from(scaled).ok()
        }
    }
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let strategy = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if strategy.type_.as_deref() != Some("RollingUpdate") {
        return None;
    }
    strategy.rolling_update.as_ref()
}

/// Upstream `SurgeCount`.
pub fn surge_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling(ds).and_then(|r| r.max_surge.as_ref()).and_then(|v| scaled(v, desired)).unwrap_or(0)
}

/// Upstream `UnavailableCount`.
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling(ds).and_then(|r| r.max_unavailable.as_ref()).and_then(|v| scaled(v, desired)).unwrap_or(0)
}

/// Upstream `AllowsSurge`.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1) != 0
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// Upstream `manage`: for every node, the pod it lacks or the pods it must lose.
pub fn manage(ds: &DaemonSet, nodes: &[&Node], by_node: &ByNode<'_>, hash: &str, now: Timestamp) -> ManagePlan {
    let mut plan = ManagePlan::default();
    let surge = allows_surge(ds);
    for node in nodes {
        let e = node_should_run(node, ds);
        let node = node_name(node).to_string();
        let pods = by_node.get(&node);
        match pods {
            None if e.should_run => plan.create_on.push(node),
            Some(pods) if e.should_continue_running => {
                let mut running: Vec<&Pod> = Vec::new();
                for pod in pods.iter().filter(|p| !is_terminating(p)) {
                    match phase(pod) {
                        "Failed" => plan.failed.push(EndedPod { pod: name(pod), node: node.clone() }),
                        "Succeeded" => plan.succeeded.push(EndedPod { pod: name(pod), node: node.clone() }),
                        _ => running.push(pod),
                    }
                }
                if running.len() <= 1 {
                    if running.is_empty() && surge && e.should_run {
                        plan.create_on.push(node);
                    }
                    continue;
                }
                running.sort_by(|a, b| oldest_first(a, b));
                if !surge {
                    plan.delete.extend(running[1..].iter().map(|p| name(p)));
                    continue;
                }
                // With surge, an old pod may stay beside a new one until the new one is available.
                let (mut oldest_new, mut oldest_old): (Option<&Pod>, Option<&Pod>) = (None, None);
                for pod in running {
                    let is_new =
                        pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH_LABEL)).map(String::as_str)
                            == Some(hash);
                    let slot = if is_new { &mut oldest_new } else { &mut oldest_old };
                    if slot.is_none() {
                        *slot = Some(pod);
                    } else {
                        plan.delete.push(name(pod));
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                    if !is_ready(old) || is_available(new, min_ready_seconds(ds), now) {
                        plan.delete.push(name(old));
                    }
                }
            }
            Some(pods) if !e.should_continue_running => {
                plan.delete.extend(pods.iter().filter(|p| !is_terminating(p)).map(|p| name(p)));
            }
            _ => {}
        }
    }
    // Unbound pods for nodes that no longer exist would never be scheduled nor collected.
    for (node, pods) in by_node {
        if nodes.iter().any(|n| node_name(n) == node) {
            continue;
        }
        for pod in pods {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty) {
                plan.delete.push(name(pod));
            }
        }
    }
    plan
}

/// The newest and the old pod on a node, or `None` when there are several of either (upstream
/// `findUpdatedPodsOnNode`).
fn updated_and_old<'a>(
    pods: &[&'a Pod],
    hash: &str,
    generation: Option<i64>,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !is_terminating(p)) {
        let slot = if is_updated(pod, hash, generation) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*pod);
    }
    Some((new, old))
}

/// What a rolling-update step does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollingPlan {
    /// Old pods to delete.
    pub delete: Vec<String>,
    /// Nodes to surge a new pod onto (beside the old one).
    pub create_on: Vec<String>,
}

/// Upstream `rollingUpdate`: replaces old pods, at most `maxUnavailable` unavailable at a time (or, with
/// `maxSurge`, at most that many extra new pods at a time).
pub fn rolling_update(
    ds: &DaemonSet,
    nodes: &[&Node],
    by_node: &ByNode<'_>,
    hash: &str,
    now: Timestamp,
) -> RollingPlan {
    let mut by_node: ByNode<'_> = by_node.clone();
    let mut desired = 0;
    for node in nodes {
        if node_should_run(node, ds).should_run {
            desired += 1;
            by_node.entry(node_name(node).to_string()).or_default();
        }
    }
    let mut max_unavailable = unavailable_count(ds, desired).max(0) as usize;
    let max_surge = surge_count(ds, desired).max(0) as usize;
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        max_unavailable = 1;
    }
    let generation = template_generation(ds);
    let min_ready = min_ready_seconds(ds);
    let mut plan = RollingPlan::default();

    if max_surge == 0 {
        let mut unavailable = 0usize;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = updated_and_old(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !is_available(new, min_ready, now) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !is_available(old, min_ready, now) {
                        replace_now.push(name(old));
                    } else if unavailable < max_unavailable {
                        candidates.push(name(old));
                    }
                }
            }
        }
        let room = max_unavailable.saturating_sub(unavailable).min(candidates.len());
        plan.delete = replace_now;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }

    let mut surging = 0usize;
    let mut allowed_new = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in &by_node {
        let Some((new, old)) = updated_and_old(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        let Some(old) = old else { continue };
        match new {
            None => {
                if !is_available(old, min_ready, now) {
                    let runs_here =
                        nodes.iter().find(|n| node_name(n) == node).is_some_and(|n| node_should_run(n, ds).should_run);
                    if runs_here {
                        allowed_new.push(node.clone());
                    } else {
                        plan.delete.push(name(old));
                    }
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            Some(new) => {
                if is_available(new, min_ready, now) {
                    plan.delete.push(name(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = max_surge.saturating_sub(surging).min(candidates.len());
    plan.create_on = allowed_new;
    plan.create_on.extend(candidates.into_iter().take(room));
    plan
}

/// The status counts of a DaemonSet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    pub unavailable: i32,
}

/// Upstream `updateDaemonSetStatus`'s counting, and when to look again (pods ready but not yet available for
/// `minReadySeconds`).
pub fn status(
    ds: &DaemonSet,
    nodes: &[&Node],
    by_node: &ByNode<'_>,
    hash: &str,
    now: Timestamp,
) -> (Counts, Option<Duration>) {
    let mut c = Counts::default();
    let generation = template_generation(ds);
    let min_ready = min_ready_seconds(ds);
    for node in nodes {
        let pods = by_node.get(node_name(node)).filter(|p| !p.is_empty());
        if node_should_run(node, ds).should_run {
            c.desired += 1;
            let Some(pods) = pods else { continue };
            c.current += 1;
            let mut pods = pods.clone();
            pods.sort_by(|a, b| oldest_first(a, b));
            let pod = pods[0];
            if is_ready(pod) {
                c.ready += 1;
                if is_available(pod, min_ready, now) {
                    c.available += 1;
                }
            }
            if is_updated(pod, hash, generation) {
                c.updated += 1;
            }
        } else if pods.is_some() {
            c.misscheduled += 1;
        }
    }
    c.unavailable = c.desired - c.available;
    let recheck =
        (min_ready > 0 && c.ready != c.available).then(|| Duration::from_secs(u64::from(min_ready.unsigned_abs())));
    (c, recheck)
}

#[cfg(test)]
mod tests;
