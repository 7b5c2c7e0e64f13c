//! Tests of the DaemonSet controller's pure decisions.

use serde_json::{json, Value};

use super::*;

const NOW: &str = "2025-01-01T01:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn node(name: &str, labels: Value) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn ds(extra_spec: Value) -> DaemonSet {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "d"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "template": {"metadata": {"labels": {"app": "d"}},
                     "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "i"}]}}
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": "d", "namespace": "ns", "uid": "u"}, "spec": spec})).unwrap()
}

/// A pod of the DaemonSet: `state` is "ready", "ready-just-now", "pending", "failed", "succeeded" or "terminating".
fn pod(name: &str, node: &str, hash: &str, state: &str, created_second: u32) -> Pod {
    let ready_at = if state == "ready-just-now" { NOW } else { "2025-01-01T00:00:00Z" };
    let ready = if state.starts_with("ready") { "True" } else { "False" };
    let phase = match state {
        "failed" => "Failed",
        "succeeded" => "Succeeded",
        "pending" => "Pending",
        _ => "Running",
    };
    let mut v = json!({
        "metadata": {"name": name, "labels": {"app": "d", "controller-revision-hash": hash},
                     "creationTimestamp": format!("2025-01-01T00:00:{created_second:02}Z")},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": ready_at}]}
    });
    if state == "terminating" {
        v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:59:00Z");
    }
    serde_json::from_value(v).unwrap()
}

fn ssd_nodes() -> Vec<Node> {
    vec![node("n1", json!({"disk": "ssd"})), node("n2", json!({"disk": "ssd"})), node("n3", json!({"disk": "hdd"}))]
}

fn refs<T>(v: &[T]) -> Vec<&T> {
    v.iter().collect()
}

#[test]
fn manage_creates_on_eligible_nodes_and_removes_misscheduled_pods() {
    let nodes = ssd_nodes();
    let pods = [pod("d-a", "n1", "h", "ready", 1), pod("d-c", "n3", "h", "ready", 1)];
    let by_node = group_by_node(&refs(&pods));
    let plan = manage(&ds(json!({})), &refs(&nodes), &by_node, "h", now());
    assert_eq!(plan.create_on, ["n2"]);
    assert_eq!(plan.delete, ["d-c"]);
    assert!(plan.failed.is_empty() && plan.succeeded.is_empty());
}

#[test]
fn manage_keeps_the_oldest_of_several_pods_and_replaces_ended_ones() {
    let nodes = ssd_nodes();
    let pods = [
        pod("d-new", "n1", "h", "ready", 9),
        pod("d-old", "n1", "h", "ready", 1),
        pod("d-gone", "n1", "h", "terminating", 0),
        pod("d-failed", "n2", "h", "failed", 1),
        pod("d-done", "n2", "h", "succeeded", 2),
    ];
    let by_node = group_by_node(&refs(&pods));
    let plan = manage(&ds(json!({})), &refs(&nodes), &by_node, "h", now());
    assert!(plan.create_on.is_empty(), "{plan:?}");
    assert_eq!(plan.delete, ["d-new"]);
    assert_eq!(plan.failed, [EndedPod { pod: "d-failed".into(), node: "n2".into() }]);
    assert_eq!(plan.succeeded, [EndedPod { pod: "d-done".into(), node: "n2".into() }]);
}

#[test]
fn manage_waits_for_a_terminating_pod_before_creating() {
    let nodes = ssd_nodes();
    let pods = [pod("d-gone", "n1", "h", "terminating", 0)];
    let by_node = group_by_node(&refs(&pods));
    let plan = manage(&ds(json!({})), &refs(&nodes), &by_node, "h", now());
    assert_eq!(plan.create_on, ["n2"]);
    assert!(plan.delete.is_empty());
}

#[test]
fn manage_deletes_unbound_pods_for_nodes_that_are_gone() {
    let nodes = ssd_nodes();
    let unbound: Pod = serde_json::from_value(json!({
        "metadata": {"name": "d-x"},
        "spec": {"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gone"]}]}]}}}}
    }))
    .unwrap();
    let pods = [unbound, pod("d-b", "gone2", "h", "ready", 0)];
    let by_node = group_by_node(&refs(&pods));
    let plan = manage(&ds(json!({})), &refs(&nodes), &by_node, "h", now());
    assert_eq!(plan.delete, ["d-x"]);
}

#[test]
fn rolling_update_replaces_one_available_pod_at_a_time() {
    let nodes = ssd_nodes();
    let d = ds(json!({}));
    let old = [pod("d-1", "n1", "old", "ready", 1), pod("d-2", "n2", "old", "ready", 2)];
    let plan = rolling_update(&d, &refs(&nodes), &group_by_node(&refs(&old)), "new", now());
    assert_eq!(plan, RollingPlan { delete: vec!["d-1".into()], create_on: vec![] });

    // While the replacement on n1 is not yet available, nothing else goes.
    let mid = [pod("d-3", "n1", "new", "pending", 30), pod("d-2", "n2", "old", "ready", 2)];
    let plan = rolling_update(&d, &refs(&nodes), &group_by_node(&refs(&mid)), "new", now());
    assert_eq!(plan, RollingPlan::default());

    // An unavailable old pod is replaced at once, whatever the budget.
    let broken = [pod("d-3", "n1", "new", "pending", 30), pod("d-2", "n2", "old", "pending", 2)];
    let plan = rolling_update(&d, &refs(&nodes), &group_by_node(&refs(&broken)), "new", now());
    assert_eq!(plan.delete, ["d-2"]);

    // maxUnavailable 100% takes every old pod at once.
    let all = ds(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}}));
    let plan = rolling_update(&all, &refs(&nodes), &group_by_node(&refs(&old)), "new", now());
    assert_eq!(plan.delete, ["d-1", "d-2"]);
}

#[test]
fn rolling_update_respects_min_ready_seconds() {
    let nodes = ssd_nodes();
    let d = ds(json!({"minReadySeconds": 10}));
    let pods = [pod("d-3", "n1", "new", "ready-just-now", 30), pod("d-2", "n2", "old", "ready", 2)];
    let plan = rolling_update(&d, &refs(&nodes), &group_by_node(&refs(&pods)), "new", now());
    assert_eq!(plan, RollingPlan::default());
}

#[test]
fn rolling_update_with_surge_starts_new_pods_beside_old_ones() {
    let nodes = ssd_nodes();
    let d = ds(json!({"updateStrategy": {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}));
    let old = [pod("d-1", "n1", "old", "ready", 1), pod("d-2", "n2", "old", "ready", 2)];
    let plan = rolling_update(&d, &refs(&nodes), &group_by_node(&refs(&old)), "new", now());
    assert_eq!(plan, RollingPlan { delete: vec![], create_on: vec!["n1".into()] });

    let surged = [
        pod("d-1", "n1", "old", "ready", 1),
        pod("d-3", "n1", "new", "ready", 30),
        pod("d-2", "n2", "old", "ready", 2),
    ];
    let plan = rolling_update(&d, &refs(&nodes), &group_by_node(&refs(&surged)), "new", now());
    assert_eq!(plan, RollingPlan { delete: vec!["d-1".into()], create_on: vec!["n2".into()] });

    // manage keeps both pods on a surged node until the new one is available.
    let waiting = [pod("d-1", "n1", "old", "ready", 1), pod("d-3", "n1", "new", "pending", 30)];
    let plan = manage(&d, &refs(&nodes), &group_by_node(&refs(&waiting)), "new", now());
    assert!(plan.delete.is_empty(), "{plan:?}");
}

#[test]
fn status_counts() {
    let nodes = ssd_nodes();
    let d = ds(json!({}));
    let pods = [
        pod("d-1", "n1", "new", "ready", 1),
        pod("d-2", "n2", "old", "pending", 2),
        pod("d-3", "n3", "new", "ready", 3),
    ];
    let (c, recheck) = status(&d, &refs(&nodes), &group_by_node(&refs(&pods)), "new", now());
    assert_eq!(
        c,
        Counts { desired: 2, current: 2, misscheduled: 1, ready: 1, updated: 1, available: 1, unavailable: 1 }
    );
    assert_eq!(recheck, None);

    let slow = ds(json!({"minReadySeconds": 30}));
    let pods = [pod("d-1", "n1", "new", "ready-just-now", 1)];
    let (c, recheck) = status(&slow, &refs(&nodes), &group_by_node(&refs(&pods)), "new", now());
    assert_eq!((c.ready, c.available, c.unavailable), (1, 0, 2));
    assert_eq!(recheck, Some(Duration::from_secs(30)));
}

#[test]
fn scaled_values_round_up() {
    assert_eq!(scaled(&IntOrString::Int(2), 10), Some(2));
    assert_eq!(scaled(&IntOrString::String("10%".into()), 15), Some(2));
    assert_eq!(scaled(&IntOrString::String("100%".into()), 3), Some(3));
    assert_eq!(scaled(&IntOrString::String("0%".into()), 3), Some(0));
    assert_eq!(scaled(&IntOrString::String("ten".into()), 3), None);
    let on_delete = ds(json!({"updateStrategy": {"type": "OnDelete"}}));
    assert_eq!((unavailable_count(&on_delete, 5), surge_count(&on_delete, 5)), (0, 0));
    assert!(!allows_surge(&ds(json!({}))));
}
