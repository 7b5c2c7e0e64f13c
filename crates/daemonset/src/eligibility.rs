//! Which nodes a DaemonSet runs on (upstream `NodeShouldRunDaemonPod`): the template's `nodeName`, `nodeSelector`
//! and required node affinity must admit the node, and its NoSchedule/NoExecute taints must be tolerated (with the
//! default daemon tolerations, so cordoned and pressured nodes still get their pod). A pod already running may stay
//! while only NoSchedule taints are untolerated. Also which node updates can change that answer.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};

use crate::pods::eligibility_pod;

/// Whether a DaemonSet wants a pod on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility {
    /// A pod should be created there if there is none.
    pub should_run: bool,
    /// A pod already there may stay.
    pub should_continue_running: bool,
}

fn untolerated(taints: &[Taint], pod: &Pod, effects: &[&str]) -> bool {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .any(|t| !tolerations.iter().any(|tol| ferry_scheduler::fit::tolerates(tol, t)))
}

/// Upstream `NodeShouldRunDaemonPod`.
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> Eligibility {
    const NO: Eligibility = Eligibility { should_run: false, should_continue_running: false };
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let wanted = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.node_name.as_deref());
    if wanted.is_some_and(|w| !w.is_empty() && w != node_name) {
        return NO;
    }
    let pod = eligibility_pod(ds, node_name);
    if !ferry_scheduler::fit::matches_node_affinity(&pod, node) {
        return NO;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    if untolerated(taints, &pod, &["NoSchedule", "NoExecute"]) {
        return Eligibility { should_run: false, should_continue_running: !untolerated(taints, &pod, &["NoExecute"]) };
    }
    Eligibility { should_run: true, should_continue_running: true }
}

/// Upstream `nodeInSameCondition`: the same set of condition types is `True`.
fn same_conditions(old: &[NodeCondition], new: &[NodeCondition]) -> bool {
    let trues = |list: &[NodeCondition]| {
        let mut v: Vec<String> = list.iter().filter(|c| c.status == "True").map(|c| c.type_.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    trues(old) == trues(new)
}

/// Upstream `shouldIgnoreNodeUpdate`: only the resourceVersion and condition details (heartbeats) changed.
pub fn ignorable_node_update(old: &Node, new: &Node) -> bool {
    let conditions = |n: &Node| n.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if !same_conditions(&conditions(old), &conditions(new)) {
        return false;
    }
    let mut old = old.clone();
    old.metadata.resource_version = new.metadata.resource_version.clone();
    let new_conditions = new.status.as_ref().and_then(|s| s.conditions.clone());
    if let Some(status) = old.status.as_mut() {
        status.conditions = new_conditions;
    } else if new_conditions.is_some() {
        return false;
    }
    old == *new
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    fn ds(template_spec: serde_json::Value) -> DaemonSet {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        for (k, v) in template_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({"metadata": {"name": "d", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec}}}))
        .unwrap()
    }

    fn run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
        let e = node_should_run(node, ds);
        (e.should_run, e.should_continue_running)
    }

    #[test]
    fn selectors_affinity_and_node_name() {
        let plain = node(json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}}));
        let ssd = node(json!({"metadata": {"name": "n1", "labels": {"disk": "ssd", "zone": "a"}}}));
        let wants_ssd = ds(json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(run(&plain, &wants_ssd), (false, false));
        assert_eq!(run(&ssd, &wants_ssd), (true, true));
        let affinity = ds(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}));
        assert_eq!(run(&plain, &affinity), (false, false));
        let by_field = ds(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}));
        assert_eq!(run(&plain, &by_field), (true, true));
        assert_eq!(run(&plain, &ds(json!({"nodeName": "n2"}))), (false, false));
        assert_eq!(run(&plain, &ds(json!({"nodeName": "n1"}))), (true, true));
    }

    #[test]
    fn taints_cordons_and_default_tolerations() {
        let any = ds(json!({}));
        let cordoned = node(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true,
            "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}));
        assert_eq!(run(&cordoned, &any), (true, true));
        let not_ready = node(json!({"metadata": {"name": "n"}, "spec": {
            "taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                       {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]}}));
        assert_eq!(run(&not_ready, &any), (true, true));
        let dedicated = node(json!({"metadata": {"name": "n"}, "spec": {
            "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}));
        assert_eq!(run(&dedicated, &any), (false, true));
        let evicting = node(json!({"metadata": {"name": "n"}, "spec": {
            "taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}}));
        assert_eq!(run(&evicting, &any), (false, false));
        let tolerant = ds(json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]}));
        assert_eq!(run(&evicting, &tolerant), (true, true));
        let network = node(json!({"metadata": {"name": "n"}, "spec": {
            "taints": [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}));
        assert_eq!(run(&network, &any), (false, true));
        assert_eq!(run(&network, &ds(json!({"hostNetwork": true}))), (true, true));
    }

    #[test]
    fn heartbeats_are_ignorable_label_changes_are_not() {
        let base = json!({"metadata": {"name": "n", "resourceVersion": "1", "labels": {"a": "b"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2025-01-01T00:00:00Z"}]}});
        let old = node(base.clone());
        let mut hb = base.clone();
        hb["metadata"]["resourceVersion"] = json!("2");
        hb["status"]["conditions"][0]["lastHeartbeatTime"] = json!("2025-01-01T00:00:10Z");
        assert!(ignorable_node_update(&old, &node(hb)));
        let mut relabelled = base.clone();
        relabelled["metadata"]["labels"]["disk"] = json!("ssd");
        assert!(!ignorable_node_update(&old, &node(relabelled)));
        let mut not_ready = base;
        not_ready["status"]["conditions"][0]["status"] = json!("False");
        assert!(!ignorable_node_update(&old, &node(not_ready)));
    }
}
