//! The DaemonSet controller end to end, driven by kubectl 1.20 against a whole single-node `ferry server`: the seeds'
//! `ssd-monitor` (apps/v1beta2) gets a pod only while the node is labelled `disk=ssd` (and keeps it through a
//! cordon, as upstream's default tolerations allow); the pod is pinned with `matchFields`, owned by the DaemonSet,
//! labelled with the revision hash and really runs the image's program; a template change rolls the pod over and
//! `kubectl rollout status` reports it; `OnDelete` waits for the pod to be deleted; `kubectl get ds` shows upstream's
//! columns; a `luksa/kubia` DaemonSet's pod answers HTTP on :8080 with its own name.
//!
//! Needs root (network namespaces). Every test starts its own cluster.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use ferry_testkit::{eventually, seed_fixture, Cluster, Kubectl, Table};
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

/// How long pods may take to be created, scheduled, started or stopped.
const WAIT: Duration = Duration::from_secs(60);

const SEED: &str = "003-ds-ssd-monitor-apps-v1beta2.yaml";

/// The DaemonSet's pods (JSON items), not yet being deleted.
fn live_pods(k: &Kubectl, selector: &str) -> Vec<Value> {
    let all = k.json(&["get", "pods", "-l", selector])["items"].as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
}

fn all_pods(k: &Kubectl, selector: &str) -> Vec<Value> {
    k.json(&["get", "pods", "-l", selector])["items"].as_array().cloned().unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Waits for exactly one running, ready pod of the DaemonSet and returns it.
fn one_ready_pod(k: &Kubectl, selector: &str, what: &str) -> Value {
    eventually(what, WAIT, || {
        let pods = all_pods(k, selector);
        match pods.as_slice() {
            [p] if is_ready(p) && p["status"]["phase"] == "Running" => Ok(p.clone()),
            _ => Err(serde_json::to_string_pretty(&pods).unwrap_or_default()),
        }
    })
}

fn ds_row(k: &Kubectl, name: &str) -> Table {
    Table::parse(&k.ok(&["get", "ds", name]))
}

fn wait_ds_columns(k: &Kubectl, name: &str, want: [&str; 5]) -> Table {
    eventually(&format!("ds {name} to show DESIRED..AVAILABLE {want:?}"), WAIT, || {
        let t = ds_row(k, name);
        let got: Vec<&str> =
            ["DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE"].iter().map(|c| t.cell(name, c)).collect();
        if got == want {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    })
}

fn events_of(k: &Kubectl, name: &str) -> Vec<(String, String)> {
    let selector = format!("involvedObject.name={name},involvedObject.kind=DaemonSet");
    k.json(&["get", "events", "--field-selector", &selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn wait_event(k: &Kubectl, ds: &str, reason: &str, text: &str) {
    eventually(&format!("a {reason} event of ds {ds} saying {text:?}"), WAIT, || {
        let all = events_of(k, ds);
        if all.iter().any(|(r, m)| r == reason && m.contains(text)) {
            Ok(())
        } else {
            Err(format!("{all:#?}"))
        }
    });
}

#[test]
fn ssd_monitor_runs_only_on_nodes_labelled_disk_ssd() {
    let cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    let node = cluster.node_name().expect("a node");
    let seed = seed_fixture(SEED).display().to_string();

    assert_eq!(k.ok(&["create", "-f", &seed]).trim(), "daemonset.apps/ssd-monitor created");
    // No node has disk=ssd: nothing is desired, nothing runs.
    let table = wait_ds_columns(&k, "ssd-monitor", ["0", "0", "0", "0", "0"]);
    assert_eq!(
        table.headers,
        ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
    );
    assert_eq!(table.cell("ssd-monitor", "NODE SELECTOR"), "disk=ssd");
    std::thread::sleep(Duration::from_secs(2));
    assert!(all_pods(&k, "app=ssd-monitor").is_empty());

    // Labelling the node brings the pod.
    k.ok(&["label", "node", &node, "disk=ssd"]);
    let pod = one_ready_pod(&k, "app=ssd-monitor", "the ssd-monitor pod to run");
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("ssd-monitor-"), "{name}");
    assert_eq!(pod["spec"]["nodeName"], node.as_str());
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "DaemonSet");
    assert_eq!(owner["name"], "ssd-monitor");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);
    let ds = k.json(&["get", "ds", "ssd-monitor"]);
    assert_eq!(owner["uid"], ds["metadata"]["uid"]);
    let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchFields"][0];
    assert_eq!(term["key"], "metadata.name");
    assert_eq!(term["operator"], "In");
    assert_eq!(term["values"][0], node.as_str());
    assert!(pod["metadata"]["labels"]["controller-revision-hash"].as_str().is_some_and(|h| !h.is_empty()), "{pod}");
    let tolerations = pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unschedulable", "node.kubernetes.io/disk-pressure"]
    {
        assert!(tolerations.iter().any(|t| t["key"] == key), "{key} not tolerated: {tolerations:?}");
    }
    wait_event(&k, "ssd-monitor", "SuccessfulCreate", &format!("Created pod: {name}"));
    // The image's program runs: it reports every 5 seconds.
    eventually("ssd-monitor to log SSD OK", WAIT, || {
        let out = k.run(&["logs", &name]);
        let logs = String::from_utf8_lossy(&out.stdout).into_owned();
        if logs.lines().next() == Some("SSD OK") {
            Ok(())
        } else {
            Err(format!("{logs:?} {}", String::from_utf8_lossy(&out.stderr)))
        }
    });
    let table = wait_ds_columns(&k, "ssd-monitor", ["1", "1", "1", "1", "1"]);
    assert_eq!(table.cell("ssd-monitor", "NODE SELECTOR"), "disk=ssd");
    let status = &k.json(&["get", "ds", "ssd-monitor"])["status"];
    assert_eq!(status["numberMisscheduled"], 0);
    assert_eq!(status["observedGeneration"], ds["metadata"]["generation"]);

    // A cordon does not keep daemon pods away: a deleted pod comes back on the cordoned node.
    k.ok(&["cordon", &node]);
    k.ok(&["delete", "pod", &name, "--wait=false"]);
    let again = eventually("a replacement pod on the cordoned node", WAIT, || {
        let pods = live_pods(&k, "app=ssd-monitor");
        match pods.as_slice() {
            [p] if p["metadata"]["name"] != name.as_str() && is_ready(p) => Ok(p.clone()),
            _ => Err(serde_json::to_string_pretty(&pods).unwrap_or_default()),
        }
    });
    assert_eq!(again["spec"]["nodeName"], node.as_str());
    k.ok(&["uncordon", &node]);
    let replacement = again["metadata"]["name"].as_str().unwrap().to_string();

    // Removing the label removes the pod.
    k.ok(&["label", "node", &node, "disk-"]);
    eventually("the ssd-monitor pod to go", WAIT, || {
        let pods = all_pods(&k, "app=ssd-monitor");
        if pods.is_empty() {
            Ok(())
        } else {
            Err(serde_json::to_string_pretty(&pods).unwrap_or_default())
        }
    });
    wait_event(&k, "ssd-monitor", "SuccessfulDelete", &format!("Deleted pod: {replacement}"));
    wait_ds_columns(&k, "ssd-monitor", ["0", "0", "0", "0", "0"]);

    // And labelling again brings exactly one pod back.
    k.ok(&["label", "node", &node, "disk=ssd"]);
    one_ready_pod(&k, "app=ssd-monitor", "the ssd-monitor pod to come back");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(all_pods(&k, "app=ssd-monitor").len(), 1, "no duplicate pods");
}

#[test]
fn a_template_change_rolls_the_pod_and_on_delete_waits() {
    let cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    let node = cluster.node_name().expect("a node");
    k.ok(&["label", "node", &node, "disk=ssd"]);
    let seed = seed_fixture(SEED).display().to_string();
    k.ok(&["apply", "-f", &seed]);
    let first = one_ready_pod(&k, "app=ssd-monitor", "the first pod");
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();
    let first_hash = first["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap().to_string();
    let out = k.ok(&["rollout", "status", "ds/ssd-monitor", "--timeout=60s"]);
    assert!(out.contains("daemon set \"ssd-monitor\" successfully rolled out"), "{out}");

    // RollingUpdate (the default): a new template replaces the pod.
    k.ok(&["set", "image", "ds/ssd-monitor", "main=luksa/ssd-monitor:v2"]);
    let out = k.ok(&["rollout", "status", "ds/ssd-monitor", "--timeout=60s"]);
    assert!(out.contains("daemon set \"ssd-monitor\" successfully rolled out"), "{out}");
    let second = one_ready_pod(&k, "app=ssd-monitor", "the rolled pod");
    let second_hash = second["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap().to_string();
    assert_ne!(second["metadata"]["name"], first_name.as_str());
    assert_ne!(second_hash, first_hash);
    assert_eq!(second["spec"]["containers"][0]["image"], "luksa/ssd-monitor:v2");
    wait_event(&k, "ssd-monitor", "SuccessfulDelete", &format!("Deleted pod: {first_name}"));
    let ds = k.json(&["get", "ds", "ssd-monitor"]);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 1);
    assert_eq!(ds["status"]["observedGeneration"], ds["metadata"]["generation"]);

    // History lives in ControllerRevisions: `rollout history` lists them and `rollout undo` brings one back.
    let history = k.ok(&["rollout", "history", "ds/ssd-monitor"]);
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let revision = k.json(&["get", "controllerrevisions", &format!("ssd-monitor-{second_hash}")]);
    assert_eq!(revision["revision"], 2);
    k.ok(&["rollout", "undo", "ds/ssd-monitor"]);
    let back = eventually("the undo to roll back", WAIT, || {
        let pods = live_pods(&k, "app=ssd-monitor");
        match pods.as_slice() {
            [p] if p["spec"]["containers"][0]["image"] == "luksa/ssd-monitor" && is_ready(p) => Ok(p.clone()),
            _ => Err(serde_json::to_string_pretty(&pods).unwrap_or_default()),
        }
    });
    assert_eq!(back["metadata"]["labels"]["controller-revision-hash"], first_hash.as_str());
    let history = k.ok(&["rollout", "history", "ds/ssd-monitor"]);
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    // OnDelete: a new template leaves the pod alone until it is deleted.
    k.ok(&[
        "patch",
        "ds",
        "ssd-monitor",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#,
    ]);
    let current = one_ready_pod(&k, "app=ssd-monitor", "the current pod");
    let current_name = current["metadata"]["name"].as_str().unwrap().to_string();
    k.ok(&["set", "image", "ds/ssd-monitor", "main=luksa/ssd-monitor:v3"]);
    wait_ds_columns(&k, "ssd-monitor", ["1", "1", "1", "0", "1"]);
    std::thread::sleep(Duration::from_secs(3));
    let pods = all_pods(&k, "app=ssd-monitor");
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metadata"]["name"], current_name.as_str(), "OnDelete must not replace the pod");
    k.ok(&["delete", "pod", &current_name]);
    let replaced = eventually("the OnDelete replacement", WAIT, || {
        let pods = live_pods(&k, "app=ssd-monitor");
        match pods.as_slice() {
            [p] if p["spec"]["containers"][0]["image"] == "luksa/ssd-monitor:v3" && is_ready(p) => Ok(p.clone()),
            _ => Err(serde_json::to_string_pretty(&pods).unwrap_or_default()),
        }
    });
    assert_ne!(replaced["metadata"]["name"], current_name.as_str());
    wait_ds_columns(&k, "ssd-monitor", ["1", "1", "1", "1", "1"]);
}

const KUBIA_DS: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kubia
spec:
  selector:
    matchLabels:
      app: kubia
  template:
    metadata:
      labels:
        app: kubia
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: kubia
        image: luksa/kubia
        ports:
        - containerPort: 8080
"#;

/// One HTTP/1.1 GET with `Connection: close`; the whole response.
fn http_get(ip: &str, port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect((ip, port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn a_kubia_daemon_set_pod_answers_with_its_name() {
    let cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    assert_eq!(k.ok_stdin(&["apply", "-f", "-"], KUBIA_DS.as_bytes()).trim(), "daemonset.apps/kubia created");
    let pod = one_ready_pod(&k, "app=kubia", "the kubia pod to run");
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let ip = pod["status"]["podIP"].as_str().expect("a pod IP").to_string();
    let response = eventually("kubia to answer on :8080", WAIT, || http_get(&ip, 8080));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(&format!("\r\n\r\nYou've hit {name}\n")), "{response}");
    wait_ds_columns(&k, "kubia", ["1", "1", "1", "1", "1"]);
    let logs = k.ok(&["logs", &name]);
    assert!(logs.starts_with("Kubia server starting...\n"), "{logs}");
    assert!(logs.contains("Received request from "), "{logs}");
}
