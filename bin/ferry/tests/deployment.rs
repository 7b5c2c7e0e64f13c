//! Deployments roll out for real, driven by kubectl 1.20 against a whole single-node `ferry server` (the Deployment
//! and ReplicaSet controllers, scheduler and node agent): a 3-replica agnhost Deployment becomes available;
//! `kubectl set image` rolls it to another tag while a pod watch shows Ready pods never dropping below
//! `replicas - maxUnavailable`; `rollout status` waits for the end; `rollout history` lists the revisions;
//! `rollout undo` brings back the pods of the first template (same ReplicaSet, new revision); `rollout pause`
//! holds a template change until `rollout resume`; `rollout restart` rolls new pods; `get deploy` shows READY,
//! UP-TO-DATE and AVAILABLE; ScalingReplicaSet events are recorded. A Recreate Deployment never runs old and new
//! pods together.
//!
//! Needs root (network namespaces): every test starts its own cluster with its own pod network.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ferry_testkit::{eventually, Cluster, Kubectl, Table};
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost";
const WAIT: Duration = Duration::from_secs(120);

fn manifest(name: &str, replicas: u32, tag: &str, strategy: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  strategy:
    {strategy}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {IMAGE}:{tag}
        args: ["netexec", "--http-port=8080"]
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
          periodSeconds: 1
"#
    )
}

fn apply(k: &Kubectl, yaml: &str) {
    k.ok_stdin(&["apply", "-f", "-"], yaml.as_bytes());
}

fn rollout_status(k: &Kubectl, name: &str) -> String {
    k.ok(&["rollout", "status", &format!("deployment/{name}"), "--timeout=180s"])
}

fn get_json(k: &Kubectl, args: &[&str]) -> Value {
    k.json(args)
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// ReplicaSets of `app` by name: (revision annotation, spec.replicas, image).
fn replica_sets(k: &Kubectl, app: &str) -> BTreeMap<String, (String, i64, String)> {
    let list = get_json(k, &["get", "rs", "-l", &format!("app={app}")]);
    items(&list)
        .iter()
        .map(|rs| {
            let name = rs["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let revision =
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap_or_default();
            let replicas = rs["spec"]["replicas"].as_i64().unwrap_or(-1);
            let image = rs["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
            (name, (revision.to_string(), replicas, image.to_string()))
        })
        .collect()
}

/// The pod-template-hash labels of the live (not terminating) pods of `app`, with their images.
fn live_pods(k: &Kubectl, app: &str) -> Vec<(String, String)> {
    let list = get_json(k, &["get", "pods", "-l", &format!("app={app}")]);
    items(&list)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let hash = p["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or_default().to_string();
            let image = p["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string();
            (hash, image)
        })
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// A `kubectl get pods -w -o json --output-watch-events` of one app: the Ready (and not terminating) pods after
/// every event, and the lowest count seen while armed.
struct ReadyWatch {
    child: std::process::Child,
    state: Arc<Mutex<WatchState>>,
    armed: Arc<AtomicBool>,
}

#[derive(Default)]
struct WatchState {
    ready: BTreeMap<String, bool>,
    min_armed: Option<usize>,
    log: Vec<String>,
    events: usize,
}

impl ReadyWatch {
    fn start(k: &Kubectl, app: &str) -> ReadyWatch {
        let mut child =
            k.spawn(&["get", "pods", "-l", &format!("app={app}"), "--watch", "-o", "json", "--output-watch-events"]);
        let stdout = child.stdout.take().expect("piped stdout");
        let state = Arc::new(Mutex::new(WatchState::default()));
        let armed = Arc::new(AtomicBool::new(false));
        let (s, a) = (state.clone(), armed.clone());
        thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
            for event in stream {
                let Ok(event) = event else { break };
                let pod = &event["object"];
                let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let mut st = s.lock().unwrap();
                st.events += 1;
                if event["type"] == "DELETED" {
                    st.ready.remove(&name);
                } else {
                    st.ready.insert(name.clone(), is_ready(pod));
                }
                let count = st.ready.values().filter(|r| **r).count();
                let line =
                    format!("{} {name} ready={} -> {count}", event["type"].as_str().unwrap_or("?"), is_ready(pod));
                st.log.push(line);
                if a.load(Ordering::SeqCst) {
                    st.min_armed = Some(st.min_armed.map_or(count, |m| m.min(count)));
                }
            }
        });
        ReadyWatch { child, state, armed }
    }

    fn ready(&self) -> usize {
        self.state.lock().unwrap().ready.values().filter(|r| **r).count()
    }

    fn arm(&self) {
        let mut st = self.state.lock().unwrap();
        self.armed.store(true, Ordering::SeqCst);
        let count = st.ready.values().filter(|r| **r).count();
        st.min_armed = Some(count);
    }

    /// (lowest Ready count while armed, events seen, the log).
    fn disarm(&self) -> (usize, usize, String) {
        self.armed.store(false, Ordering::SeqCst);
        let st = self.state.lock().unwrap();
        (st.min_armed.unwrap_or(0), st.events, st.log.join("\n"))
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deploy_row(k: &Kubectl, name: &str) -> Table {
    Table::parse(&k.ok(&["get", "deploy", name, "-o", "wide"]))
}

fn wait_deploy_row(k: &Kubectl, name: &str, ready: &str, updated: &str, available: &str) -> Table {
    eventually(&format!("get deploy {name} to show {ready} {updated} {available}"), WAIT, || {
        let t = deploy_row(k, name);
        let row = (t.cell(name, "READY"), t.cell(name, "UP-TO-DATE"), t.cell(name, "AVAILABLE"));
        if row == (ready, updated, available) {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    })
}

/// A rollout of `tag` while `watch` is armed: Ready pods never fewer than `floor`.
fn rolled_without_dropping_below(k: &Kubectl, watch: &ReadyWatch, floor: usize, change: &[&str]) {
    eventually("the watch to see every pod ready", WAIT, || {
        if watch.ready() >= 3 {
            Ok(())
        } else {
            Err(format!("{} ready", watch.ready()))
        }
    });
    watch.arm();
    k.ok(change);
    let out = rollout_status(k, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    // Let the last old pods finish terminating while still watched.
    thread::sleep(Duration::from_secs(1));
    let (min, events, log) = watch.disarm();
    assert!(events > 0, "the watch saw nothing");
    assert!(log.contains("DELETED"), "the watch saw no old pod go:\n{log}");
    assert!(min >= floor, "Ready pods dropped to {min} (< {floor}) during the rollout:\n{log}");
    if std::env::var_os("FERRY_TEST_VERBOSE").is_some() {
        eprintln!("---- pod watch ----\n{log}");
    }
}

#[test]
fn rolling_update_history_undo_pause_and_restart() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();
    // Default strategy: maxSurge 25% (1 of 3, rounded up), maxUnavailable 25% (0 of 3, rounded down).
    apply(&k, &manifest("web", 3, "2.39", "type: RollingUpdate"));
    let out = rollout_status(&k, "web");
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
    let t = wait_deploy_row(&k, "web", "3/3", "3", "3");
    assert_eq!(t.cell("web", "CONTAINERS"), "web");
    assert_eq!(t.cell("web", "IMAGES"), format!("{IMAGE}:2.39"));
    assert_eq!(t.cell("web", "SELECTOR"), "app=web");
    let first = replica_sets(&k, "web");
    assert_eq!(first.len(), 1, "{first:?}");
    let (first_rs, (rev, replicas, _)) = first.iter().next().map(|(n, v)| (n.clone(), v.clone())).unwrap();
    assert_eq!((rev.as_str(), replicas), ("1", 3));
    let first_hash = first_rs.trim_start_matches("web-").to_string();
    let rs_json = get_json(&k, &["get", "rs", &first_rs]);
    assert_eq!(rs_json["spec"]["selector"]["matchLabels"]["pod-template-hash"], first_hash.as_str());
    assert_eq!(rs_json["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(rs_json["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(rs_json["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
    assert_eq!(rs_json["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"], "3");
    assert_eq!(rs_json["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"], "4");
    let d = get_json(&k, &["get", "deploy", "web"]);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1", "{d}");
    assert_eq!(d["status"]["observedGeneration"], d["metadata"]["generation"]);
    let conditions: BTreeMap<String, (String, String)> = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let reason = c["reason"].as_str().unwrap_or_default().to_string();
            (
                c["type"].as_str().unwrap_or_default().to_string(),
                (c["status"].as_str().unwrap_or_default().to_string(), reason),
            )
        })
        .collect();
    assert_eq!(conditions["Available"], ("True".into(), "MinimumReplicasAvailable".into()), "{d}");
    assert_eq!(conditions["Progressing"], ("True".into(), "NewReplicaSetAvailable".into()), "{d}");
    assert!(live_pods(&k, "web").iter().all(|(h, _)| *h == first_hash));

    // set image: a second ReplicaSet; Ready pods never fewer than 3 - 0.
    let watch = ReadyWatch::start(&k, "web");
    rolled_without_dropping_below(&k, &watch, 3, &["set", "image", "deployment/web", &format!("web={IMAGE}:2.40")]);
    let second = replica_sets(&k, "web");
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[&first_rs].1, 0, "the old replica set is scaled to zero: {second:?}");
    let (second_rs, (rev, replicas, image)) =
        second.iter().find(|(n, _)| **n != first_rs).map(|(n, v)| (n.clone(), v.clone())).unwrap();
    assert_eq!((rev.as_str(), replicas, image.as_str()), ("2", 3, format!("{IMAGE}:2.40").as_str()));
    let second_hash = second_rs.trim_start_matches("web-").to_string();
    eventually("only pods of the new template", WAIT, || {
        let pods = live_pods(&k, "web");
        if pods.len() == 3 && pods.iter().all(|(h, i)| *h == second_hash && i.ends_with(":2.40")) {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    wait_deploy_row(&k, "web", "3/3", "3", "3");

    // History: two revisions.
    let history = k.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> =
        history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");
    let detail = k.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(detail.contains(&format!("{IMAGE}:2.39")), "{detail}");

    // Undo: back to the first template, on the first ReplicaSet, now revision 3.
    rolled_without_dropping_below(&k, &watch, 3, &["rollout", "undo", "deployment/web"]);
    eventually("pods of the first template back", WAIT, || {
        let pods = live_pods(&k, "web");
        if pods.len() == 3 && pods.iter().all(|(h, i)| *h == first_hash && i.ends_with(":2.39")) {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    let third = replica_sets(&k, "web");
    assert_eq!(third.len(), 2, "{third:?}");
    assert_eq!(third[&first_rs], ("3".to_string(), 3, format!("{IMAGE}:2.39")));
    let rs_json = get_json(&k, &["get", "rs", &first_rs]);
    assert_eq!(rs_json["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
    let history = k.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> =
        history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.parse::<u32>().is_ok()).collect();
    assert_eq!(revisions, vec!["2", "3"], "{history}");

    // Pause: a template change waits; resume rolls it out.
    k.ok(&["rollout", "pause", "deployment/web"]);
    k.ok(&["set", "image", "deployment/web", &format!("web={IMAGE}:2.41")]);
    let d = eventually("the paused change to be observed", WAIT, || {
        let d = get_json(&k, &["get", "deploy", "web"]);
        let paused = d["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused"));
        if d["status"]["observedGeneration"] == d["metadata"]["generation"] && paused {
            Ok(d)
        } else {
            Err(format!("{d}"))
        }
    });
    assert_eq!(d["spec"]["paused"], true);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(replica_sets(&k, "web").len(), 2, "no new replica set while paused");
    assert!(live_pods(&k, "web").iter().all(|(h, _)| *h == first_hash));
    let undo_paused = k.fail(&["rollout", "undo", "deployment/web"]);
    assert!(undo_paused.contains("paused"), "{undo_paused}");
    k.ok(&["rollout", "resume", "deployment/web"]);
    let out = rollout_status(&k, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let fourth = replica_sets(&k, "web");
    assert_eq!(fourth.len(), 3, "{fourth:?}");
    assert!(fourth.values().any(|(rev, n, image)| rev == "4" && *n == 3 && image.ends_with(":2.41")), "{fourth:?}");

    // Restart: a template annotation, so a new ReplicaSet of the same image.
    k.ok(&["rollout", "restart", "deployment/web"]);
    let out = rollout_status(&k, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = get_json(&k, &["get", "deploy", "web"]);
    assert!(d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(), "{d}");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "5", "{d}");
    let fifth = replica_sets(&k, "web");
    assert_eq!(fifth.values().filter(|(_, n, _)| *n > 0).count(), 1, "{fifth:?}");
    assert!(fifth.values().any(|(rev, n, image)| rev == "5" && *n == 3 && image.ends_with(":2.41")), "{fifth:?}");

    // Scale: the one active ReplicaSet follows.
    k.ok(&["scale", "deployment/web", "--replicas=4"]);
    wait_deploy_row(&k, "web", "4/4", "4", "4");

    // Events as upstream words them.
    let events = get_json(&k, &["get", "events", "--field-selector", "involvedObject.kind=Deployment"]);
    let messages: BTreeSet<String> =
        items(&events).iter().filter_map(|e| e["message"].as_str().map(str::to_string)).collect();
    assert!(messages.contains(&format!("Scaled up replica set {first_rs} to 3")), "{messages:?}");
    assert!(messages.contains(&format!("Scaled down replica set {first_rs} to 2 from 3")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with(&format!("Scaled up replica set {second_rs} to 1"))), "{messages:?}");
    drop(watch);
}

#[test]
fn recreate_stops_old_pods_before_starting_new_ones() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();
    apply(&k, &manifest("web", 2, "2.39", "type: Recreate"));
    rollout_status(&k, "web");
    let first = replica_sets(&k, "web");
    let first_hash = first.keys().next().unwrap().trim_start_matches("web-").to_string();
    let watch = PodHashWatch::start(&k, "web");
    k.ok(&["set", "image", "deployment/web", &format!("web={IMAGE}:2.40")]);
    let out = rollout_status(&k, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let (mixed, log) = watch.finish(&first_hash);
    assert!(!mixed, "old and new pods existed together:\n{log}");
    let new_hash = replica_sets(&k, "web")
        .into_iter()
        .find(|(_, (rev, _, _))| rev == "2")
        .map(|(name, _)| name.trim_start_matches("web-").to_string())
        .expect("a revision 2 replica set");
    assert!(log.contains(&format!("DELETED web-{first_hash}-")), "the watch saw no old pod go:\n{log}");
    assert!(
        log.contains(&format!(" {new_hash}\n")) || log.ends_with(&format!(" {new_hash}")),
        "no new pod seen:\n{log}"
    );
    wait_deploy_row(&k, "web", "2/2", "2", "2");
}

/// Watches the pods of an app and records whether a pod of another template existed while one of `first_hash`
/// still did (not yet deleted).
struct PodHashWatch {
    child: std::process::Child,
    log: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl PodHashWatch {
    fn start(k: &Kubectl, app: &str) -> PodHashWatch {
        let mut child =
            k.spawn(&["get", "pods", "-l", &format!("app={app}"), "--watch", "-o", "json", "--output-watch-events"]);
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        thread::spawn(move || {
            for event in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
                let Ok(event) = event else { break };
                let pod = &event["object"];
                let entry = (
                    event["type"].as_str().unwrap_or_default().to_string(),
                    pod["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    pod["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or_default().to_string(),
                );
                l.lock().unwrap().push(entry);
            }
        });
        PodHashWatch { child, log }
    }

    /// (whether old and new pods overlapped, the log).
    fn finish(mut self, first_hash: &str) -> (bool, String) {
        thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log.lock().unwrap().clone();
        let mut alive: BTreeMap<String, String> = BTreeMap::new();
        let mut mixed = false;
        for (type_, name, hash) in &log {
            if type_ == "DELETED" {
                alive.remove(name);
            } else {
                alive.insert(name.clone(), hash.clone());
            }
            let old = alive.values().any(|h| h == first_hash);
            let new = alive.values().any(|h| h != first_hash);
            mixed |= old && new;
        }
        let text = log.iter().map(|(t, n, h)| format!("{t} {n} {h}")).collect::<Vec<_>>().join("\n");
        (mixed, text)
    }
}
