//! Which surplus pods to delete first: upstream's `getPodsToDelete` and `ActivePodsWithRanks` order (with the
//! PodDeletionCost and LogarithmicScaleDown features on, as they are by default in v1.33).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::pods::{is_active, is_ready, phase, ready_since};

/// The annotation that orders pods of equal standing (lower cost is deleted first).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The `count` pods of `pods` to delete first. `related` are the pods of every ReplicaSet sharing this one's
/// controller (a Deployment's): a pod on a node crowded with them goes first. When every pod goes, order is kept.
pub fn pods_to_delete(pods: &[Arc<Pod>], related: &[Arc<Pod>], count: usize, now: Timestamp) -> Vec<Arc<Pod>> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let ranked: Vec<(Arc<Pod>, usize)> =
        pods.iter().map(|p| (p.clone(), on_node.get(node_name(p)).copied().unwrap_or(0))).collect();
    let sorted = merge_sort(ranked, &|(a, ra): &(Arc<Pod>, usize), (b, rb): &(Arc<Pod>, usize)| {
        delete_before(a, *ra, b, *rb, now)
    });
    sorted.into_iter().take(count).map(|(p, _)| p).collect()
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Pending < Unknown < Running (anything else counts as Pending, as a missing map entry does upstream).
fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

/// Upstream `GetDeletionCostFromPodAnnotations`: an int32, 0 when absent or invalid.
pub fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// Upstream `afterOrZero`: a zero time sorts first, otherwise the later time does.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a > b,
        (a, _) => a.is_none(),
    }
}

/// Upstream `logarithmicRankDiff`: compares floor(log2(age in ns)) of two times.
fn logarithmic_rank_diff(a: Timestamp, b: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| {
        let age = now.duration_since(t).as_nanos();
        if age > 0 {
            (age as f64).log2() as i64
        } else {
            -1
        }
    };
    rank(a) - rank(b)
}

/// Orders two times the LogarithmicScaleDown way: zero first, then the younger age bucket, ties broken by UID.
fn time_before(a: Option<Timestamp>, b: Option<Timestamp>, uid_a: &str, uid_b: &str, now: Timestamp) -> bool {
    match (a, b) {
        (Some(ta), Some(tb)) => match logarithmic_rank_diff(ta, tb, now) {
            0 => uid_a < uid_b,
            d => d < 0,
        },
        _ => after_or_zero(a, b),
    }
}

/// The highest restart count of regular containers, then of restartable (sidecar) init containers.
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else { return (0, 0) };
    let regular = status.container_statuses.iter().flatten().map(|c| c.restart_count).max().unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular.max(0), sidecar.max(0))
}

/// Upstream `ActivePodsWithRanks.Less`: whether `a` (with `rank_a` related pods on its node) goes before `b`.
pub fn delete_before(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> bool {
    // 1. Unassigned before assigned.
    let (node_a, node_b) = (node_name(a), node_name(b));
    if node_a != node_b && (node_a.is_empty() || node_b.is_empty()) {
        return node_a.is_empty();
    }
    // 2. Pending < Unknown < Running.
    if phase_ordinal(a) != phase_ordinal(b) {
        return phase_ordinal(a) < phase_ordinal(b);
    }
    // 3. Not ready before ready.
    if is_ready(a) != is_ready(b) {
        return !is_ready(a);
    }
    // 4. Lower deletion cost first.
    if deletion_cost(a) != deletion_cost(b) {
        return deletion_cost(a) < deletion_cost(b);
    }
    // 5. Doubled up (more related pods on the same node) first.
    if rank_a != rank_b {
        return rank_a > rank_b;
    }
    let uid_a = a.metadata.uid.as_deref().unwrap_or("");
    let uid_b = b.metadata.uid.as_deref().unwrap_or("");
    // 6. Ready for less time first.
    if is_ready(a) && is_ready(b) {
        let (ta, tb) = (ready_since(a), ready_since(b));
        if ta != tb {
            return time_before(ta, tb, uid_a, uid_b, now);
        }
    }
    // 7. More restarts first.
    let (ra, rb) = (max_restarts(a), max_restarts(b));
    if ra.0 != rb.0 {
        return ra.0 > rb.0;
    }
    if ra.1 != rb.1 {
        return ra.1 > rb.1;
    }
    // 8. Newer first (no creation time before any).
    let ca = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let cb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if ca != cb {
        return time_before(ca, cb, uid_a, uid_b, now);
    }
    false
}

/// A stable merge sort by a "goes before" predicate. Upstream's order is not always a strict weak order (the
/// UID tie-break of LogarithmicScaleDown), which the standard library's sorts may reject; this one never panics.
fn merge_sort<T>(items: Vec<T>, before: &dyn Fn(&T, &T) -> bool) -> Vec<T> {
    if items.len() <= 1 {
        return items;
    }
    let mut left = items;
    let right = left.split_off(left.len() / 2);
    let left = merge_sort(left, before);
    let right = merge_sort(right, before);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_right = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => before(r, l),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => break,
        };
        let next = if take_right { right.next() } else { left.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap_or("")).collect()
    }

    fn running_ready(name: &str, node: &str, ready: i64) -> Pod {
        ready_at(in_phase(on_node(created_at(pod(name), at(0)), node), "Running"), Some(at(ready)))
    }

    #[test]
    fn victims_follow_upstream_order() {
        let now = at(100_000);
        let pods: Vec<Arc<Pod>> = vec![
            Arc::new(running_ready("ready-old", "n1", 0)),
            Arc::new(in_phase(on_node(pod("running-unready"), "n1"), "Running")),
            Arc::new(in_phase(on_node(pod("unknown"), "n1"), "Unknown")),
            Arc::new(in_phase(on_node(pod("pending"), "n1"), "Pending")),
            Arc::new(pod("unscheduled")),
        ];
        let order = pods_to_delete(&pods, &[], 4, now);
        assert_eq!(names(&order), ["unscheduled", "pending", "unknown", "running-unready"]);
        assert_eq!(names(&pods_to_delete(&pods, &[], 5, now)), names(&pods), "all pods: order kept");
    }

    #[test]
    fn deletion_cost_then_colocation_then_ready_time_then_restarts_then_age() {
        let now = at(1_000_000);
        let mut cheap = running_ready("cheap", "n1", 10);
        cheap.metadata.annotations = Some([(DELETION_COST_ANNOTATION.to_string(), "-5".to_string())].into());
        let mut costly = running_ready("costly", "n1", 10);
        costly.metadata.annotations = Some([(DELETION_COST_ANNOTATION.to_string(), "100".to_string())].into());
        let plain = running_ready("plain", "n1", 10);
        let pods: Vec<Arc<Pod>> = vec![Arc::new(costly), Arc::new(plain), Arc::new(cheap)];
        assert_eq!(names(&pods_to_delete(&pods, &[], 2, now)), ["cheap", "plain"]);

        // Colocation: the pod on the node holding more related pods goes first.
        let a = Arc::new(running_ready("lonely", "n1", 10));
        let b = Arc::new(running_ready("crowded", "n2", 10));
        let related = vec![b.clone(), Arc::new(on_node(pod("other"), "n2")), a.clone()];
        assert_eq!(names(&pods_to_delete(&[a.clone(), b.clone()], &related, 1, now)), ["crowded"]);

        // Ready for less time (a different power-of-two bucket of age) first.
        let long = Arc::new(running_ready("long", "n1", 0));
        let short = Arc::new(running_ready("short", "n1", 999_990));
        assert_eq!(names(&pods_to_delete(&[long.clone(), short.clone()], &[], 1, now)), ["short"]);

        // Same ready time: more restarts first.
        let calm = Arc::new(running_ready("calm", "n1", 10));
        let crashy = Arc::new(restarted(running_ready("crashy", "n1", 10), 3));
        assert_eq!(names(&pods_to_delete(&[calm.clone(), crashy], &[], 1, now)), ["crashy"]);

        // Then newer first.
        let old = Arc::new(created_at(in_phase(on_node(pod("old"), "n1"), "Running"), at(0)));
        let new = Arc::new(created_at(in_phase(on_node(pod("new"), "n1"), "Running"), at(999_000)));
        assert_eq!(names(&pods_to_delete(&[old, new], &[], 1, now)), ["new"]);
    }

    #[test]
    fn same_age_bucket_is_broken_by_uid_and_zero_times_go_first() {
        let now = at(1_000_000);
        // Ages 1000 s and 1001 s share floor(log2(ns)): the lower UID goes first.
        let b = Arc::new(created_at(in_phase(on_node(pod("b"), "n"), "Running"), at(999_000)));
        let a = Arc::new(created_at(in_phase(on_node(pod("a"), "n"), "Running"), at(998_999)));
        assert_eq!(names(&pods_to_delete(&[b.clone(), a.clone()], &[], 1, now)), ["a"]);
        let zero = Arc::new(in_phase(on_node(pod("z"), "n"), "Running"));
        assert_eq!(names(&pods_to_delete(&[a, b, zero], &[], 1, now)), ["z"]);
    }

    #[test]
    fn inconsistent_orders_never_panic() {
        let now = at(1_000_000);
        let pods: Vec<Arc<Pod>> = (0..200)
            .map(|i| {
                let p = created_at(in_phase(on_node(pod(&format!("p{i}")), "n"), "Running"), at(999_000 - (i % 7)));
                Arc::new(restarted(p, (i % 3) as i32))
            })
            .collect();
        assert_eq!(pods_to_delete(&pods, &[], 150, now).len(), 150);
    }
}
