//! Garbage collection end to end with kubectl 1.20 against a whole single-node cluster: a plain delete of an owner
//! removes what it owns (background), a Deployment takes its ReplicaSets and pods with it, `--cascade=foreground`
//! keeps the owner (with the `foregroundDeletion` finalizer) until its pods are gone, and `--cascade=orphan` leaves the
//! pods running without an owner.

use std::path::Path;
use std::time::Duration;

use ferry_testkit::{eventually, unique_name, Cluster, Kubectl};

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(90);

fn workload(kind: &str, name: &str, replicas: u32) -> String {
    let (api, selector) = match kind {
        "ReplicationController" => ("v1", format!("{{app: {name}}}")),
        _ => ("apps/v1", format!("{{matchLabels: {{app: {name}}}}}")),
    };
    format!(
        r#"apiVersion: {api}
kind: {kind}
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector: {selector}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["pause"]
"#
    )
}

fn names(k: &Kubectl, ns: &str, what: &str, selector: &str) -> Vec<String> {
    let out = k.jsonpath(&["get", what, "-n", ns, "-l", selector], "{.items[*].metadata.name}");
    let mut names: Vec<String> = out.split_whitespace().map(String::from).collect();
    names.sort();
    names
}

fn wait_count(k: &Kubectl, ns: &str, what: &str, selector: &str, n: usize) -> Vec<String> {
    eventually(&format!("{n} {what} with {selector}"), WAIT, || {
        let found = names(k, ns, what, selector);
        if found.len() == n {
            Ok(found)
        } else {
            Err(format!("{found:?}"))
        }
    })
}

#[test]
fn owners_take_their_dependents_or_leave_them_as_asked() {
    let cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    let ns = unique_name("gc");
    k.ok(&["create", "namespace", &ns]);

    // Background (kubectl's default): the RC goes at once, its pods follow.
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], workload("ReplicationController", "kubia", 3).as_bytes());
    wait_count(&k, &ns, "pods", "app=kubia", 3);
    let out = k.ok(&["delete", "rc", "kubia", "-n", &ns]);
    assert_eq!(out.trim(), "replicationcontroller \"kubia\" deleted");
    wait_count(&k, &ns, "pods", "app=kubia", 0);

    // A Deployment takes its ReplicaSet and pods with it.
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], workload("Deployment", "web", 2).as_bytes());
    wait_count(&k, &ns, "pods", "app=web", 2);
    wait_count(&k, &ns, "replicasets", "app=web", 1);
    k.ok(&["delete", "deployment", "web", "-n", &ns]);
    wait_count(&k, &ns, "replicasets", "app=web", 0);
    wait_count(&k, &ns, "pods", "app=web", 0);

    // Foreground: kubectl waits while the ReplicaSet, marked with foregroundDeletion, waits for its pods.
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], workload("ReplicaSet", "fg", 2).as_bytes());
    wait_count(&k, &ns, "pods", "app=fg", 2);
    let watch = k
        .command(&["get", "rs", "fg", "-n", &ns, "-w", "-o", "jsonpath={.metadata.finalizers}{\"\\n\"}"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = k.ok(&["delete", "rs", "fg", "-n", &ns, "--cascade=foreground"]);
    assert_eq!(out.trim(), "replicaset.apps \"fg\" deleted");
    assert!(names(&k, &ns, "pods", "app=fg").is_empty(), "the owner went before its pods");
    let mut watch = watch;
    let _ = watch.kill();
    let seen = watch.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout);
    assert!(seen.contains("foregroundDeletion"), "the ReplicaSet never showed the finalizer: {seen}");

    // Orphan: the ReplicaSet goes, its pods stay with no owner.
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], workload("ReplicaSet", "orph", 2).as_bytes());
    let pods = wait_count(&k, &ns, "pods", "app=orph", 2);
    k.ok(&["delete", "rs", "orph", "-n", &ns, "--cascade=orphan"]);
    assert!(k.run(&["get", "rs", "orph", "-n", &ns]).stdout.is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(names(&k, &ns, "pods", "app=orph"), pods, "orphaned pods live on");
    let owners = k.jsonpath(&["get", "pods", "-n", &ns, "-l", "app=orph"], "{.items[*].metadata.ownerReferences}");
    assert_eq!(owners, "", "orphaned pods keep no ownerReference");
}
