//! The Node object the agent registers and the status it posts, built as pure values from the config and the
//! host's facts, plus the comparisons that decide when a post or a label patch is due.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::cidr::Ipv4Cidr;
use crate::host::HostInfo;
use crate::NodeConfig;

/// What `kubectl get nodes` shows as VERSION.
pub const KUBELET_VERSION: &str = "v1.33.0+ferry";
/// Pods a node accepts (upstream's default `--max-pods`).
pub const DEFAULT_MAX_PODS: u32 = 110;
/// The k3s-style role label of a server node.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
pub const LABEL_BETA_OS: &str = "beta.kubernetes.io/os";
pub const LABEL_BETA_ARCH: &str = "beta.kubernetes.io/arch";

/// Upstream's default hard eviction threshold `memory.available<100Mi`, subtracted from allocatable memory.
const MEMORY_EVICTION_BYTES: u64 = 100 * 1024 * 1024;
/// Upstream's default `nodefs.available<10%`, subtracted from allocatable ephemeral storage.
const NODEFS_EVICTION_PERCENT: u64 = 10;

/// `containerRuntimeVersion`: ferry runs containers itself.
pub fn runtime_version() -> String {
    format!("ferry://{}", env!("CARGO_PKG_VERSION"))
}

/// The labels the agent keeps on its Node at all times (upstream's `updateDefaultLabels`).
pub fn default_labels(hostname: &str, architecture: &str) -> BTreeMap<String, String> {
    [
        (LABEL_HOSTNAME, hostname),
        (LABEL_OS, "linux"),
        (LABEL_ARCH, architecture),
        (LABEL_BETA_OS, "linux"),
        (LABEL_BETA_ARCH, architecture),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The labels set when the agent registers: the default labels plus the configured ones (`--node-labels`).
pub fn registration_labels(config: &NodeConfig, host: &HostInfo) -> BTreeMap<String, String> {
    let mut labels = config.labels.clone();
    labels.extend(default_labels(&config.hostname, &host.architecture));
    labels
}

/// The entries of `wanted` that `current` lacks or holds with another value (what a label patch must set).
pub fn labels_to_set(
    current: Option<&BTreeMap<String, String>>,
    wanted: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    wanted
        .iter()
        .filter(|(k, v)| current.and_then(|c| c.get(*k)) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A byte count as Kubernetes prints binary quantities: `<n>Ki` when it divides evenly, else plain bytes.
fn bytes_quantity(bytes: u64) -> Quantity {
    if bytes.is_multiple_of(1024) {
        Quantity(format!("{}Ki", bytes / 1024))
    } else {
        Quantity(bytes.to_string())
    }
}

fn resources(cpus: u32, memory_bytes: u64, storage_bytes: u64, max_pods: u32) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("ephemeral-storage".to_string(), bytes_quantity(storage_bytes)),
        ("hugepages-1Gi".to_string(), Quantity("0".into())),
        ("hugepages-2Mi".to_string(), Quantity("0".into())),
        ("memory".to_string(), bytes_quantity(memory_bytes)),
        ("pods".to_string(), Quantity(max_pods.to_string())),
    ])
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: None,
        last_transition_time: None,
    }
}

/// The status the agent reports now. `previous` (the stored status) keeps each condition's
/// `lastTransitionTime` while its status stays the same; heartbeat times are `now`.
pub fn node_status(config: &NodeConfig, host: &HostInfo, previous: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
    let memory = host.memory_kib.saturating_mul(1024);
    let storage = host.ephemeral_storage_bytes;
    let capacity = resources(host.cpus, memory, storage, config.max_pods);
    let allocatable = resources(
        host.cpus,
        memory.saturating_sub(MEMORY_EVICTION_BYTES),
        storage - storage / 100 * NODEFS_EVICTION_PERCENT,
        config.max_pods,
    );
    let conditions = [
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
    .into_iter()
    .map(|mut c| {
        let same = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|old| old.type_ == c.type_))
            .filter(|old| old.status == c.status);
        c.last_transition_time = Some(same.and_then(|old| old.last_transition_time.clone()).unwrap_or(Time(now)));
        c.last_heartbeat_time = Some(Time(now));
        c
    })
    .collect();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: config.node_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: config.hostname.clone() },
        ]),
        allocatable: Some(allocatable),
        capacity: Some(capacity),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(config.kubelet_port) }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: host.architecture.clone(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: runtime_version(),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: KUBELET_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: host.os_image.clone(),
            system_uuid: host.system_uuid.clone(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// The Node to create when none exists: registration labels, pod CIDR, and a full status.
pub fn new_node(config: &NodeConfig, host: &HostInfo, pod_cidr: Option<Ipv4Cidr>, now: Timestamp) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(registration_labels(config, host)),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: pod_cidr.map(|c| c.to_string()),
            pod_cidrs: pod_cidr.map(|c| vec![c.to_string()]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(config, host, None, now)),
    }
}

/// The part of a status the agent owns, with heartbeat and transition times left out, for change detection.
#[derive(PartialEq, Debug)]
struct Owned<'a> {
    conditions: Vec<(&'a str, &'a str, Option<&'a str>, Option<&'a str>)>,
    addresses: Option<&'a Vec<NodeAddress>>,
    capacity: Option<&'a BTreeMap<String, Quantity>>,
    allocatable: Option<&'a BTreeMap<String, Quantity>>,
    node_info: Option<&'a NodeSystemInfo>,
    daemon_endpoints: Option<&'a NodeDaemonEndpoints>,
}

fn owned(status: &NodeStatus) -> Owned<'_> {
    Owned {
        conditions: status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref(), c.message.as_deref()))
            .collect(),
        addresses: status.addresses.as_ref(),
        capacity: status.capacity.as_ref(),
        allocatable: status.allocatable.as_ref(),
        node_info: status.node_info.as_ref(),
        daemon_endpoints: status.daemon_endpoints.as_ref(),
    }
}

/// Whether the stored status differs from the one the agent would post, times aside.
pub fn status_changed(stored: Option<&NodeStatus>, desired: &NodeStatus) -> bool {
    match stored {
        None => true,
        Some(stored) => owned(stored) != owned(desired),
    }
}

/// The pod CIDR a Node holds (`spec.podCIDRs[0]`, else `spec.podCIDR`), when it parses as IPv4.
pub fn pod_cidr_of(node: &Node) -> Option<Ipv4Cidr> {
    let spec = node.spec.as_ref()?;
    let first = spec.pod_cidrs.as_ref().and_then(|c| c.first()).or(spec.pod_cidr.as_ref())?;
    first.parse().ok()
}

/// Every IPv4 pod CIDR held by a Node other than `except`.
pub fn used_pod_cidrs(nodes: &[Node], except: &str) -> Vec<Ipv4Cidr> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(except))
        .flat_map(|n| {
            let spec = n.spec.clone().unwrap_or_default();
            spec.pod_cidrs.unwrap_or_default().into_iter().chain(spec.pod_cidr)
        })
        .filter_map(|c| c.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;

    use super::*;

    fn config() -> NodeConfig {
        NodeConfig::new(
            PathBuf::from("/nonexistent/kubeconfig"),
            "node-a".into(),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            (Ipv4Addr::new(10, 42, 0, 0), 16),
            PathBuf::from("/nonexistent/data"),
        )
    }

    fn host() -> HostInfo {
        HostInfo {
            cpus: 2,
            memory_kib: 24684092,
            ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
            kernel_version: "6.1.0-test".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            system_uuid: "0123456789abcdef0123456789abcdef".into(),
            boot_id: "b10d0814-d0ec-47f0-b9a2-bfa1614e2f07".into(),
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn registered_node_is_shaped_like_a_kubelets() {
        let node = new_node(&config(), &host(), Some("10.42.3.0/24".parse().unwrap()), t("2025-01-01T00:00:00Z"));
        let json = serde_json::to_value(&node).unwrap();
        assert_eq!(
            json["metadata"]["labels"],
            serde_json::json!({
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": "node-a",
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": "true",
            })
        );
        assert_eq!(json["spec"], serde_json::json!({"podCIDR": "10.42.3.0/24", "podCIDRs": ["10.42.3.0/24"]}));
        let status = &json["status"];
        assert_eq!(
            status["addresses"],
            serde_json::json!([{"type": "InternalIP", "address": "192.0.2.10"}, {"type": "Hostname", "address": "node-a"}])
        );
        assert_eq!(
            status["capacity"],
            serde_json::json!({
                "cpu": "2", "ephemeral-storage": "104857600Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "memory": "24684092Ki", "pods": "110",
            })
        );
        assert_eq!(status["allocatable"]["memory"], "24581692Ki", "capacity minus the 100Mi eviction threshold");
        assert_eq!(status["allocatable"]["ephemeral-storage"], "94371840Ki", "capacity minus 10%");
        assert_eq!(status["allocatable"]["pods"], "110");
        assert_eq!(status["daemonEndpoints"], serde_json::json!({"kubeletEndpoint": {"Port": 10250}}));
        let info = &status["nodeInfo"];
        assert_eq!(info["kubeletVersion"], "v1.33.0+ferry");
        assert_eq!(info["containerRuntimeVersion"], format!("ferry://{}", env!("CARGO_PKG_VERSION")));
        assert_eq!(info["operatingSystem"], "linux");
        assert_eq!(info["architecture"], "amd64");
        assert_eq!(info["osImage"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(info["bootID"], "b10d0814-d0ec-47f0-b9a2-bfa1614e2f07");
        let conditions: Vec<(&str, &str, &str)> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap(), c["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
        assert_eq!(status["conditions"][3]["message"], "kubelet is posting ready status");
        assert_eq!(status["conditions"][3]["lastHeartbeatTime"], "2025-01-01T00:00:00Z");
    }

    #[test]
    fn transition_times_survive_while_heartbeats_move() {
        let first = node_status(&config(), &host(), None, t("2025-01-01T00:00:00Z"));
        let second = node_status(&config(), &host(), Some(&first), t("2025-01-01T00:01:00Z"));
        let ready =
            |s: &NodeStatus| s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").cloned().unwrap();
        assert_eq!(ready(&second).last_transition_time, Some(Time(t("2025-01-01T00:00:00Z"))));
        assert_eq!(ready(&second).last_heartbeat_time, Some(Time(t("2025-01-01T00:01:00Z"))));
        assert!(!status_changed(Some(&first), &second), "only times differ");

        // A condition that was not Ready transitions now.
        let mut not_ready = first.clone();
        for c in not_ready.conditions.as_mut().unwrap() {
            if c.type_ == "Ready" {
                c.status = "False".into();
            }
        }
        let third = node_status(&config(), &host(), Some(&not_ready), t("2025-01-01T00:02:00Z"));
        assert_eq!(ready(&third).last_transition_time, Some(Time(t("2025-01-01T00:02:00Z"))));
        assert!(status_changed(Some(&not_ready), &third));
        assert!(status_changed(None, &third));

        let mut bigger = host();
        bigger.memory_kib += 1024;
        assert!(status_changed(
            Some(&first),
            &node_status(&config(), &bigger, Some(&first), t("2025-01-01T00:03:00Z"))
        ));
    }

    #[test]
    fn label_patches_only_set_what_differs() {
        let wanted = default_labels("node-a", "arm64");
        let mut current = wanted.clone();
        current.insert("gpu".into(), "true".into());
        assert!(labels_to_set(Some(&current), &wanted).is_empty());
        current.insert(LABEL_ARCH.into(), "amd64".into());
        current.remove(LABEL_OS);
        let set = labels_to_set(Some(&current), &wanted);
        assert_eq!(set.keys().collect::<Vec<_>>(), [LABEL_ARCH, LABEL_OS]);
        assert_eq!(labels_to_set(None, &wanted), wanted);
    }

    #[test]
    fn pod_cidrs_of_nodes() {
        let node = |name: &str, cidrs: &[&str]| Node {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            spec: Some(NodeSpec {
                pod_cidr: cidrs.first().map(|c| c.to_string()),
                pod_cidrs: Some(cidrs.iter().map(|c| c.to_string()).collect()),
                ..NodeSpec::default()
            }),
            status: None,
        };
        let nodes = [node("a", &["10.42.0.0/24"]), node("b", &["10.42.1.0/24", "fd00::/64"]), node("c", &[])];
        let used: Vec<String> = used_pod_cidrs(&nodes, "a").iter().map(|c| c.to_string()).collect();
        assert_eq!(used, ["10.42.1.0/24", "10.42.1.0/24"]);
        assert_eq!(pod_cidr_of(&nodes[0]).map(|c| c.to_string()).as_deref(), Some("10.42.0.0/24"));
        assert_eq!(pod_cidr_of(&nodes[2]), None);
    }
}
