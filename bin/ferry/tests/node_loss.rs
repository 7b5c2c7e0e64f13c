//! Node loss, end to end with kubectl 1.20: a node whose agent never renews its Lease is marked Unknown and tainted
//! unreachable after the grace period, its pods are evicted when their tolerationSeconds run out, their
//! ReplicationController replaces them on the healthy node, and once the dead node is deleted its pods go too.

use std::path::Path;
use std::time::Duration;

use ferry_testkit::{eventually, unique_name, Cluster};
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(90);

#[test]
fn pods_leave_a_lost_node_and_are_replaced() {
    let cluster = Cluster::start_with_node_and(ferry(), &["--node-monitor-grace-period-seconds", "15"]);
    let k = cluster.kubectl();
    let real_node = cluster.node_name().expect("node name");
    let ghost = unique_name("ghost");
    let ns = unique_name("loss");
    k.ok(&["create", "namespace", &ns]);

    // A node nobody runs: no agent will ever renew its Lease.
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {ghost}\n  labels: {{kubernetes.io/hostname: {ghost}}}\n"
    );
    k.ok_stdin(&["create", "-f", "-"], node.as_bytes());

    // A pod bound to it (tolerating unreachable for 2 s), adopted by a one-replica RC.
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: stranded
  labels: {{app: kubia}}
spec:
  nodeName: {ghost}
  tolerations:
  - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
  containers:
  - name: kubia
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: ["pause"]
"#
    );
    k.ok_stdin(&["create", "-n", &ns, "-f", "-"], pod.as_bytes());
    let rc = r#"apiVersion: v1
kind: ReplicationController
metadata:
  name: kubia
spec:
  replicas: 1
  selector: {app: kubia}
  template:
    metadata:
      labels: {app: kubia}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: kubia
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["pause"]
"#;
    k.ok_stdin(&["create", "-n", &ns, "-f", "-"], rc.as_bytes());

    // The ghost goes Unknown and gets the unreachable taints.
    let node: Value = eventually("the ghost node to be tainted unreachable", WAIT, || {
        let node = k.json(&["get", "node", &ghost]);
        let taints = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
        let tainted = taints.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute");
        if tainted {
            Ok(node)
        } else {
            Err(node.to_string())
        }
    });
    let ready = node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "Unknown", "{ready}");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert!(k.ok(&["get", "node", &ghost]).contains("NotReady"));

    // The stranded pod is evicted (it stays Terminating: nothing runs on the ghost) and replaced on the real node.
    eventually("the stranded pod to be evicted", WAIT, || {
        let pod = k.json(&["get", "pod", "stranded", "-n", &ns]);
        if pod["metadata"]["deletionTimestamp"].is_string() {
            Ok(())
        } else {
            Err(pod.to_string())
        }
    });
    let replacement = eventually("a replacement pod to run on the healthy node", WAIT, || {
        let pods = k.json(&["get", "pods", "-n", &ns, "-l", "app=kubia"]);
        let found = pods["items"].as_array().unwrap().iter().find_map(|p| {
            let running = p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == real_node.as_str();
            (running && p["metadata"]["deletionTimestamp"].is_null())
                .then(|| p["metadata"]["name"].as_str().unwrap().to_string())
        });
        found.ok_or_else(|| pods.to_string())
    });
    let events = k.ok(&["get", "events", "-n", &ns]);
    assert!(events.contains("TaintManagerEviction"), "{events}");

    // Deleting the dead node lets the stranded pod go for good.
    k.ok(&["delete", "node", &ghost]);
    eventually("the stranded pod to be gone", WAIT, || {
        let out = k.run(&["get", "pod", "stranded", "-n", &ns]);
        if out.status.success() {
            Err(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Ok(())
        }
    });
    let names = k.ok(&["get", "pods", "-n", &ns, "-o", "name"]);
    assert_eq!(names.trim(), format!("pod/{replacement}"));
}
