//! The ReplicationController and ReplicaSet controllers, driven by kubectl 1.20 against a whole single-node `ferry
//! server`: the seeds' RC kubia keeps 3 pods, scales to 10 and back to exactly 3, replaces a deleted pod, and lets go
//! of a pod relabelled out of its selector (which keeps running, without an ownerReference); a ReplicaSet with
//! matchExpressions adopts a matching orphan pod instead of creating one; the seeds' apps/v1beta2 ReplicaSet reaches
//! its replicas and scales down. `get rc`/`get rs` columns, status fields and the SuccessfulCreate/SuccessfulDelete
//! events are checked along the way.
//!
//! Needs root (pods run in network namespaces). Every test starts its own cluster.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ferry_testkit::{eventually, seed_fixture, Cluster, Kubectl, Table};
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

/// How long pods may take to be created, scheduled, started and become ready (or to go away).
const WAIT: Duration = Duration::from_secs(120);

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.39";

/// A seed manifest with its `kubia/manual` image swapped for the built-in agnhost serving HTTP on 8080.
fn seed_with_agnhost(name: &str) -> String {
    let text = std::fs::read_to_string(seed_fixture(name)).unwrap();
    let swapped = text.replace(
        "image: kubia/manual",
        &format!("image: {AGNHOST}\n        args: [\"netexec\", \"--http-port=8080\", \"--udp-port=-1\"]"),
    );
    assert_ne!(swapped, text, "{name} has no kubia/manual image");
    swapped
}

fn create(k: &Kubectl, manifest: &str) {
    k.ok_stdin(&["create", "-f", "-"], manifest.as_bytes());
}

/// Every pod with `selector` (including terminating ones).
fn pods(k: &Kubectl, selector: &str) -> Vec<Value> {
    k.json(&["get", "pods", "-l", selector])["items"].as_array().cloned().unwrap_or_default()
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The uid of the controller owner reference of `obj`, if it has one.
fn controller_uid(obj: &Value) -> Option<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
        .map(str::to_string)
}

fn summary(pods: &[Value]) -> String {
    pods.iter()
        .map(|p| {
            format!("{} phase={} ready={} terminating={}", name(p), p["status"]["phase"], ready(p), terminating(p))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until exactly `count` pods carry `selector`, none terminating, all Running and ready and controlled by
/// `owner_uid`; at no point may more than `max_live` of them be live (not terminating). Returns their names.
fn wait_pods(k: &Kubectl, selector: &str, count: usize, owner_uid: &str, max_live: usize) -> BTreeSet<String> {
    eventually(&format!("exactly {count} ready pods with {selector}"), WAIT, || {
        let all = pods(k, selector);
        let live = all.iter().filter(|p| !terminating(p)).count();
        assert!(live <= max_live, "{live} live pods with {selector} (at most {max_live} expected):\n{}", summary(&all));
        let settled = all.len() == count
            && all.iter().all(|p| {
                p["status"]["phase"] == "Running" && ready(p) && controller_uid(p).as_deref() == Some(owner_uid)
            });
        if settled {
            Ok(all.iter().map(name).collect())
        } else {
            Err(summary(&all))
        }
    })
}

/// Waits until `kubectl get <kind> <name>` shows DESIRED, CURRENT and READY equal to `n`.
fn wait_columns(k: &Kubectl, kind: &str, obj: &str, n: usize) -> Table {
    let n = n.to_string();
    eventually(&format!("{kind} {obj} to show {n}/{n}/{n}"), WAIT, || {
        let table = Table::parse(&k.ok(&["get", kind, obj]));
        let cells = [table.cell(obj, "DESIRED"), table.cell(obj, "CURRENT"), table.cell(obj, "READY")];
        if cells.iter().all(|c| *c == n) {
            Ok(table)
        } else {
            Err(format!("{table:?}"))
        }
    })
}

/// The events about `kind`/`obj` with `reason`.
fn events(k: &Kubectl, kind: &str, obj: &str, reason: &str) -> Vec<Value> {
    let all = k.json(&["get", "events"])["items"].as_array().cloned().unwrap_or_default();
    all.into_iter()
        .filter(|e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == obj && e["reason"] == reason)
        .collect()
}

/// How many times events of `reason` about `kind`/`obj` were counted in all.
fn event_count(k: &Kubectl, kind: &str, obj: &str, reason: &str) -> i64 {
    events(k, kind, obj, reason).iter().map(|e| e["count"].as_i64().unwrap_or(1)).sum()
}

fn uid(k: &Kubectl, kind: &str, obj: &str) -> String {
    k.jsonpath(&["get", kind, obj], "{.metadata.uid}")
}

#[test]
fn replication_controller_scales_replaces_and_releases_pods() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();
    create(&k, &seed_with_agnhost("003-rc-kubia.yaml"));
    let rc = uid(&k, "rc", "kubia");

    let first = wait_pods(&k, "app=test", 3, &rc, 3);
    for pod in &first {
        assert!(pod.starts_with("kubia-") && pod.len() > "kubia-".len(), "{pod}");
    }
    let table = wait_columns(&k, "rc", "kubia", 3);
    assert_eq!(table.headers, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let status = k.json(&["get", "rc", "kubia"]);
    assert_eq!(status["status"]["replicas"], 3, "{status}");
    assert_eq!(status["status"]["fullyLabeledReplicas"], 3, "{status}");
    assert_eq!(status["status"]["readyReplicas"], 3, "{status}");
    assert_eq!(status["status"]["availableReplicas"], 3, "{status}");
    assert_eq!(status["status"]["observedGeneration"], status["metadata"]["generation"], "{status}");
    let pod = k.json(&["get", "pod", first.iter().next().unwrap()]);
    let reference = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(reference["apiVersion"], "v1", "{pod}");
    assert_eq!(reference["kind"], "ReplicationController", "{pod}");
    assert_eq!(reference["name"], "kubia", "{pod}");
    assert_eq!(reference["blockOwnerDeletion"], true, "{pod}");
    assert_eq!(pod["metadata"]["generateName"], "kubia-", "{pod}");
    let created = events(&k, "ReplicationController", "kubia", "SuccessfulCreate");
    assert!(
        created.iter().any(|e| e["message"].as_str().is_some_and(|m| m.starts_with("Created pod: kubia-"))),
        "{created:#?}"
    );
    assert_eq!(created[0]["source"]["component"], "replication-controller", "{created:#?}");

    // Up to 10 (never more), then back down to exactly 3.
    k.ok(&["scale", "rc", "kubia", "--replicas=10"]);
    let ten = wait_pods(&k, "app=test", 10, &rc, 10);
    assert!(first.is_subset(&ten), "scaling up kept the first pods: {first:?} {ten:?}");
    wait_columns(&k, "rc", "kubia", 10);
    assert_eq!(event_count(&k, "ReplicationController", "kubia", "SuccessfulCreate"), 10);
    k.ok(&["scale", "rc", "kubia", "--replicas=3"]);
    let three = wait_pods(&k, "app=test", 3, &rc, 10);
    assert!(three.is_subset(&ten), "{three:?} {ten:?}");
    wait_columns(&k, "rc", "kubia", 3);
    let deleted = events(&k, "ReplicationController", "kubia", "SuccessfulDelete");
    assert_eq!(deleted.iter().map(|e| e["count"].as_i64().unwrap_or(1)).sum::<i64>(), 7, "{deleted:#?}");
    assert!(deleted.iter().all(|e| e["message"].as_str().is_some_and(|m| m.starts_with("Deleted pod: kubia-"))));

    // A deleted pod is replaced.
    let victim = three.iter().next().unwrap().clone();
    k.ok(&["delete", "pod", &victim, "--wait=false"]);
    let replaced = wait_pods(&k, "app=test", 3, &rc, 3);
    assert!(!replaced.contains(&victim), "{replaced:?}");
    assert_eq!(replaced.difference(&three).count(), 1, "one new pod: {three:?} -> {replaced:?}");

    // A pod relabelled out of the selector is released (and keeps running); a replacement is created.
    let moved = replaced.iter().next().unwrap().clone();
    k.ok(&["label", "pod", &moved, "app=foo", "--overwrite"]);
    let after = wait_pods(&k, "app=test", 3, &rc, 3);
    assert!(!after.contains(&moved), "{after:?}");
    let released = eventually("the relabelled pod to lose its ownerReference", WAIT, || {
        let p = k.json(&["get", "pod", &moved]);
        if p["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()) {
            Ok(p)
        } else {
            Err(format!("{}", p["metadata"]))
        }
    });
    assert_eq!(released["metadata"]["labels"]["app"], "foo");
    assert_eq!(released["status"]["phase"], "Running", "{released}");
    assert!(!terminating(&released), "{released}");
    wait_columns(&k, "rc", "kubia", 3);
    assert_eq!(pods(&k, "app=foo").len(), 1);
}

#[test]
fn replica_sets_adopt_orphans_and_reach_their_replicas() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();

    // An orphan that a ReplicaSet created later selects.
    create(
        &k,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: orphan
  labels:
    app: kubia
spec:
  containers:
  - name: kubia
    image: {AGNHOST}
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
"#
        ),
    );
    eventually("the orphan to run", WAIT, || {
        let p = k.json(&["get", "pod", "orphan"]);
        if ready(&p) {
            Ok(())
        } else {
            Err(format!("{}", p["status"]))
        }
    });
    create(
        &k,
        &format!(
            r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: kubia-expr
spec:
  replicas: 3
  selector:
    matchExpressions:
    - key: app
      operator: In
      values:
      - kubia
  template:
    metadata:
      labels:
        app: kubia
    spec:
      containers:
      - name: kubia
        image: {AGNHOST}
        args: ["netexec", "--http-port=8080", "--udp-port=-1"]
"#
        ),
    );
    let rs = uid(&k, "rs", "kubia-expr");
    let owned = wait_pods(&k, "app=kubia", 3, &rs, 3);
    assert!(owned.contains("orphan"), "{owned:?}");
    let orphan = k.json(&["get", "pod", "orphan"]);
    let reference = &orphan["metadata"]["ownerReferences"][0];
    assert_eq!(reference["apiVersion"], "apps/v1", "{orphan}");
    assert_eq!(reference["kind"], "ReplicaSet", "{orphan}");
    assert_eq!(reference["name"], "kubia-expr", "{orphan}");
    assert_eq!(reference["controller"], true, "{orphan}");
    assert_eq!(reference["blockOwnerDeletion"], true, "{orphan}");
    let table = wait_columns(&k, "rs", "kubia-expr", 3);
    assert_eq!(table.headers, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(
        event_count(&k, "ReplicaSet", "kubia-expr", "SuccessfulCreate"),
        2,
        "the orphan was adopted, not replaced"
    );
    let created = events(&k, "ReplicaSet", "kubia-expr", "SuccessfulCreate");
    assert_eq!(created[0]["source"]["component"], "replicaset-controller", "{created:#?}");

    // The seeds' apps/v1beta2 ReplicaSet (matchLabels) reaches its replicas, then scales down.
    create(&k, &seed_with_agnhost("003-rs-kubia-apps-v1beta2.yaml"));
    let seed_rs = uid(&k, "rs", "kubia");
    wait_pods(&k, "app=test", 3, &seed_rs, 3);
    wait_columns(&k, "rs", "kubia", 3);
    k.ok(&["scale", "rs", "kubia", "--replicas=1"]);
    wait_pods(&k, "app=test", 1, &seed_rs, 3);
    let status = wait_columns(&k, "rs", "kubia", 1);
    assert_eq!(status.names(), ["kubia"]);
    let rs_obj = k.json(&["get", "rs", "kubia"]);
    assert_eq!(rs_obj["status"]["replicas"], 1, "{rs_obj}");
    assert_eq!(rs_obj["status"]["observedGeneration"], rs_obj["metadata"]["generation"], "{rs_obj}");
    // The other ReplicaSet was not disturbed.
    assert_eq!(wait_pods(&k, "app=kubia", 3, &rs, 3), owned);

    // With minReadySeconds, a ready pod counts as available only once it has been ready that long.
    create(
        &k,
        &format!(
            r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: slow
spec:
  replicas: 1
  minReadySeconds: 4
  selector:
    matchLabels:
      app: slow
  template:
    metadata:
      labels:
        app: slow
    spec:
      containers:
      - name: slow
        image: {AGNHOST}
        args: ["netexec", "--http-port=8080", "--udp-port=-1"]
"#
        ),
    );
    let status = |k: &Kubectl| k.json(&["get", "rs", "slow"])["status"].clone();
    let ready_status = eventually("slow to report a ready replica", WAIT, || {
        let s = status(&k);
        if s["readyReplicas"] == 1 {
            Ok(s)
        } else {
            Err(format!("{s}"))
        }
    });
    let ready_at = std::time::Instant::now();
    assert!(ready_status["availableReplicas"].is_null(), "available before minReadySeconds: {ready_status}");
    eventually("slow to report an available replica", WAIT, || {
        let s = status(&k);
        if s["availableReplicas"] == 1 {
            Ok(())
        } else {
            Err(format!("{s}"))
        }
    });
    assert!(ready_at.elapsed() >= Duration::from_secs(2), "available after {:?}", ready_at.elapsed());
    assert!(ready_at.elapsed() <= Duration::from_secs(15), "available after {:?}", ready_at.elapsed());
}
