//! What a DaemonSet's pods look like and how they are judged: the pod built for a node (upstream
//! `util.CreatePodTemplate`, `controller.GetPodFromTemplate`, `ReplaceDaemonSetPodNodeNameNodeAffinity`), the default
//! tolerations every daemon pod gets, readiness and availability, the node a pod is meant for, and "oldest first".

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, PodTemplateSpec,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The label carrying the hash of the revision a pod was made from (`apps.DefaultDaemonSetUniqueLabelKey`).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The legacy label carrying the template generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The legacy annotation on a DaemonSet with its template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The only field a node selector's `matchFields` may name.
pub const OBJECT_NAME_FIELD: &str = "metadata.name";

const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        ..Default::default()
    }
}

/// Upstream `MatchToleration`: the same key, operator, value and effect (tolerationSeconds aside).
fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    a.key == b.key && a.operator == b.operator && a.value == b.value && a.effect == b.effect
}

/// Upstream `AddOrUpdateTolerationInPodSpec`: replaces a matching toleration, or appends it.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|t| same_toleration(t, &toleration)) {
        Some(existing) => *existing = toleration,
        None => list.push(toleration),
    }
}

/// Upstream `AddOrUpdateDaemonPodTolerations`: daemon pods keep running on not-ready and unreachable nodes, and
/// are placed despite disk, memory and PID pressure and cordons (and a missing network, for host-network pods).
pub fn add_default_tolerations(spec: &mut PodSpec) {
    add_or_update_toleration(spec, exists(TAINT_NOT_READY, "NoExecute"));
    add_or_update_toleration(spec, exists(TAINT_UNREACHABLE, "NoExecute"));
    add_or_update_toleration(spec, exists(TAINT_DISK_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_MEMORY_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_PID_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_UNSCHEDULABLE, "NoSchedule"));
    if spec.host_network == Some(true) {
        add_or_update_toleration(spec, exists(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
}

/// The template generation recorded on the DaemonSet, if any (upstream `GetTemplateGeneration`).
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata.annotations.as_ref()?.get(TEMPLATE_GENERATION_ANNOTATION)?.parse().ok()
}

/// Upstream `CreatePodTemplate`: the DaemonSet's template with the default tolerations and the revision labels.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    add_default_tolerations(template.spec.get_or_insert_with(Default::default));
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if let Some(generation) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.to_string(), generation.to_string());
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    }
    template
}

fn name_term(node: &str) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: OBJECT_NAME_FIELD.to_string(),
            operator: "In".to_string(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    }
}

/// Upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity becomes exactly
/// `matchFields metadata.name In [node]` (the node was already checked against the template's own terms); preferred
/// terms and pod (anti-)affinity are kept.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(NodeSelector { node_selector_terms: vec![name_term(node)] });
    affinity
}

/// The controller reference a DaemonSet puts on what it owns (upstream `metav1.NewControllerRef`).
pub fn controller_ref(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_string(),
        kind: "DaemonSet".to_string(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod to create for `node` from `template` (upstream `GetPodFromTemplate` plus the node pinning): labels,
/// annotations and finalizers of the template, `generateName: <ds>-`, the controller reference, the template's spec.
pub fn pod_for_node(ds: &DaemonSet, template: &PodTemplateSpec, node: &str) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ds.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The pod the eligibility checks judge (upstream `NewPod`): the template's spec bound to `node`, with the default
/// tolerations.
pub fn eligibility_pod(ds: &DaemonSet, node: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    spec.node_name = Some(node.to_string());
    add_default_tolerations(&mut spec);
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.namespace = ds.metadata.namespace.clone();
    Pod { metadata, spec: Some(spec), status: None }
}

/// The node a daemon pod is for: its `nodeName` once bound, else the node its `matchFields` pins it to (upstream
/// `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    for term in &required.node_selector_terms {
        for req in term.match_fields.iter().flatten() {
            if req.key == OBJECT_NAME_FIELD && req.operator == "In" {
                let values = req.values.as_deref().unwrap_or(&[]);
                return if values.len() == 1 { Some(values[0].clone()) } else { None };
            }
        }
    }
    None
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn bound(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
}

/// Upstream `podByCreationTimestampAndPhase`: bound pods first, then the oldest, then by name.
pub fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Upstream `IsPodReady`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream `IsPodAvailable`: ready, and for longer than `min_ready_seconds` when that is set.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) < now,
    }
}

/// Upstream `IsPodUpdated`: the pod carries the current revision's hash (or the current template generation).
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let hash_matches = !hash.is_empty() && label(REVISION_HASH_LABEL) == Some(hash);
    let generation_matches =
        generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    hash_matches || generation_matches
}

/// The controller reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(value: serde_json::Value) -> DaemonSet {
        serde_json::from_value(value).unwrap()
    }

    fn sample() -> DaemonSet {
        ds(json!({
            "metadata": {"name": "ssd-monitor", "namespace": "default", "uid": "u1"},
            "spec": {
                "selector": {"matchLabels": {"app": "ssd-monitor"}},
                "template": {
                    "metadata": {"labels": {"app": "ssd-monitor"}, "annotations": {"a": "b"}},
                    "spec": {
                        "nodeSelector": {"disk": "ssd"},
                        "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                         "effect": "NoSchedule", "tolerationSeconds": 5}],
                        "affinity": {"nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {"weight": 1, "preference": {"matchExpressions": [
                                    {"key": "fast", "operator": "Exists"}]}}]}},
                        "containers": [{"name": "main", "image": "luksa/ssd-monitor"}]
                    }
                }
            }
        }))
    }

    #[test]
    fn pods_for_a_node_are_pinned_labelled_tolerant_and_owned() {
        let ds = sample();
        let template = pod_template(&ds, "abc12");
        let pod = pod_for_node(&ds, &template, "node-1");
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["generateName"], "ssd-monitor-");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["metadata"]["labels"], json!({"app": "ssd-monitor", "controller-revision-hash": "abc12"}));
        assert_eq!(v["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(
            v["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ssd-monitor", "uid": "u1",
                    "controller": true, "blockOwnerDeletion": true}])
        );
        let na = &v["spec"]["affinity"]["nodeAffinity"];
        assert_eq!(
            na["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]})
        );
        assert_eq!(na["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"], 1);
        let keys: Vec<(&str, &str)> = v["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["key"].as_str().unwrap(), t["effect"].as_str().unwrap()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
                ("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/unreachable", "NoExecute"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ]
        );
        // The user's matching toleration was replaced by the default one (no tolerationSeconds).
        assert!(v["spec"]["tolerations"][0].get("tolerationSeconds").is_none());
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
    }

    #[test]
    fn host_network_pods_tolerate_a_missing_network() {
        let mut spec = PodSpec { host_network: Some(true), ..Default::default() };
        add_default_tolerations(&mut spec);
        let list = spec.tolerations.unwrap();
        assert_eq!(list.len(), 7);
        assert_eq!(list[6].key.as_deref(), Some("node.kubernetes.io/network-unavailable"));
    }

    #[test]
    fn template_generation_label_follows_the_annotation() {
        let mut ds = sample();
        ds.metadata.annotations = Some([(TEMPLATE_GENERATION_ANNOTATION.to_string(), "3".to_string())].into());
        let t = pod_template(&ds, "");
        let labels = t.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str), Some("3"));
        assert!(!labels.contains_key(REVISION_HASH_LABEL));
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn readiness_availability_and_update_state() {
        let now: Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let p = pod(json!({"metadata": {"labels": {"controller-revision-hash": "h1"}},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                        "lastTransitionTime": "2025-01-01T00:00:30Z"}]}}));
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 29, now));
        assert!(!is_available(&p, 30, now));
        assert!(is_updated(&p, "h1", None));
        assert!(!is_updated(&p, "h2", None));
        assert!(!is_updated(&p, "", Some(1)));
        let unready = pod(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert!(!is_ready(&unready) && !is_available(&unready, 0, now));
    }

    #[test]
    fn target_node_and_ordering() {
        let bound = pod(json!({"metadata": {"name": "b", "creationTimestamp": "2025-01-01T00:00:09Z"},
                               "spec": {"nodeName": "n2", "containers": []}}));
        let old = pod(json!({"metadata": {"name": "z", "creationTimestamp": "2025-01-01T00:00:01Z"},
                             "spec": {"containers": [], "affinity": {"nodeAffinity": {
                                 "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                     {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}}));
        let same_time = pod(json!({"metadata": {"name": "a", "creationTimestamp": "2025-01-01T00:00:09Z"},
                                   "spec": {"nodeName": "n2", "containers": []}}));
        assert_eq!(target_node(&bound).as_deref(), Some("n2"));
        assert_eq!(target_node(&old).as_deref(), Some("n1"));
        assert_eq!(target_node(&pod(json!({"spec": {"containers": []}}))), None);
        let mut pods = [&old, &bound, &same_time];
        pods.sort_by(|a, b| oldest_first(a, b));
        let names: Vec<&str> = pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["a", "b", "z"]);
    }
}
