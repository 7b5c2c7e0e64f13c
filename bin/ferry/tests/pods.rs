//! Pods run for real, driven by kubectl 1.20 against a whole single-node `ferry server` (API server, scheduler and
//! node agent): two containers of a pod share localhost; `get po -o wide` shows the pod IP and node; an exec liveness
//! probe restarts a container and RESTARTS counts up; an httpGet readiness probe follows the app's answer; a crashing
//! container backs off 0, 10, 20 s into CrashLoopBackOff; deletion waits for a SIGTERM handler and SIGKILLs at the
//! grace deadline; nodeSelector and cordon keep pods Pending until the node changes; an image ferry cannot run waits
//! in ErrImagePull/ImagePullBackOff; and faults (`kill -9` of a container, of ferry itself) leave pods running and
//! nothing leaked (network namespaces, links, shims, container processes, allocated IPs are counted).
//!
//! Needs root (network namespaces). Every test starts its own cluster with a pod network and interface names no other
//! cluster on the host uses, and talks only to the pod IPs of that cluster.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use ferry_testkit::{eventually, seed_fixture, squash, Cluster, Kubectl, Table};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

/// How long a pod may take to reach a state that needs no back-off (scheduling, sandbox, start, probes).
const WAIT: Duration = Duration::from_secs(60);

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A whole single-node cluster ([`Cluster::start_with_node`]: its pod network and interface names are reserved for
/// it; dropped, it stops with SIGTERM so the node agent removes its pods, then sweeps leftovers), with the helpers
/// these tests need.
struct NodeCluster {
    cluster: Cluster,
    prefix: String,
    cidr_octet: u32,
}

impl NodeCluster {
    fn start() -> NodeCluster {
        let cluster = Cluster::start_with_node(ferry());
        let prefix = cluster.network_prefix().map(str::to_string).unwrap_or_default();
        let cidr_octet =
            cluster.cluster_cidr().and_then(|c| c.split('.').nth(1)).and_then(|o| o.parse().ok()).unwrap_or_default();
        NodeCluster { cluster, prefix, cidr_octet }
    }

    fn node_name(&self) -> String {
        format!("node-{}", &self.prefix[2..])
    }

    /// Whether `ip` is in this cluster's pod network.
    fn in_pod_network(&self, ip: &str) -> bool {
        ip.starts_with(&format!("10.{}.", self.cidr_octet))
    }

    /// Everything the node agent holds on the host right now.
    fn footprint(&self) -> Footprint {
        let netns = run("ip", &["netns", "list"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_string)
            .collect();
        let links = run("ip", &["-o", "link"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        let shims = shim_pids(self.data_dir());
        let containers = child_pids(&shims);
        let ips = allocated_ips(self.data_dir());
        Footprint { netns, links, shims, containers, ips }
    }

    /// The host pid of a container's process: the child of its shim (`<pod uid>-<container>-<restart>`).
    fn container_pid(&self, uid: &str, container: &str, restart: i32) -> u32 {
        let marker = format!("/{uid}-{container}-{restart}/");
        let shims: BTreeSet<u32> =
            shim_pids(self.data_dir()).into_iter().filter(|pid| cmdline(*pid).contains(&marker)).collect();
        let children = child_pids(&shims);
        assert_eq!(children.len(), 1, "container {marker}: shims {shims:?}, children {children:?}");
        children.into_iter().next().unwrap_or_default()
    }
}

impl Deref for NodeCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for NodeCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// What a node agent holds on the host: network namespaces and links named with its prefix (the bridge and one veth
/// per pod), shim processes under its data dir, their children (the container processes), and allocated pod IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    netns: BTreeSet<String>,
    links: BTreeSet<String>,
    shims: BTreeSet<u32>,
    containers: BTreeSet<u32>,
    ips: BTreeSet<String>,
}

impl Footprint {
    /// (namespaces, links, shims, container processes, IPs).
    fn counts(&self) -> (usize, usize, usize, usize, usize) {
        (self.netns.len(), self.links.len(), self.shims.len(), self.containers.len(), self.ips.len())
    }
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| b.split(|c| *c == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// (parent pid, state letter) from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

fn process_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z' && state != 'X')
}

/// The shims (`ferry internal shim .../<data dir>/...`) of one server.
fn shim_pids(data_dir: &Path) -> BTreeSet<u32> {
    let dir = data_dir.to_string_lossy().into_owned();
    all_pids()
        .into_iter()
        .filter(|pid| {
            let cmd = cmdline(*pid);
            cmd.contains("internal shim") && cmd.contains(&dir) && process_alive(*pid)
        })
        .collect()
}

fn child_pids(parents: &BTreeSet<u32>) -> BTreeSet<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| stat(*pid).is_some_and(|(ppid, state)| parents.contains(&ppid) && state != 'Z'))
        .collect()
}

/// The pod IPs the node agent's allocator holds (`<data dir>/agent/pod-ips.json`).
fn allocated_ips(data_dir: &Path) -> BTreeSet<String> {
    let path = data_dir.join("agent/pod-ips.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return BTreeSet::new() };
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()));
    doc["allocations"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["ip"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A plain HTTP/1.0 GET to a pod; (status, body).
fn http_get(ip: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().map_err(|e| format!("{ip}:{port}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP response: {text:?}"))?;
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("{head:?}"))?;
    Ok((status, body.to_string()))
}

fn create(k: &Kubectl, manifest: &str) {
    k.ok_stdin(&["create", "-f", "-"], manifest.as_bytes());
}

fn pod(k: &Kubectl, name: &str) -> Value {
    k.json(&["get", "pod", name])
}

fn container_status(pod: &Value, container: &str) -> Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == container))
        .cloned()
        .unwrap_or(Value::Null)
}

fn condition(pod: &Value, type_: &str) -> Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or(Value::Null)
}

fn events(k: &Kubectl, pod: &str) -> Vec<Value> {
    let selector = format!("involvedObject.name={pod}");
    k.json(&["get", "events", "--field-selector", &selector])["items"].as_array().cloned().unwrap_or_default()
}

/// Waits for an event of `pod` with `reason` whose message contains `text`.
fn wait_event(k: &Kubectl, pod: &str, reason: &str, text: &str) -> Value {
    eventually(&format!("a {reason} event of {pod} saying {text:?}"), WAIT, || {
        let all = events(k, pod);
        all.iter()
            .find(|e| e["reason"] == reason && e["message"].as_str().is_some_and(|m| m.contains(text)))
            .cloned()
            .ok_or_else(|| format!("{:#?}", all.iter().map(|e| (&e["reason"], &e["message"])).collect::<Vec<_>>()))
    })
}

/// The row of `pod` in `kubectl get po` (READY, STATUS, RESTARTS, ...), with `extra` flags.
fn get_po(k: &Kubectl, pod: &str, extra: &[&str]) -> Table {
    let mut args = vec!["get", "po", pod];
    args.extend(extra);
    Table::parse(&k.ok(&args))
}

/// Waits until `kubectl get po` shows `ready` and `status` for the pod.
fn wait_row(k: &Kubectl, pod: &str, ready: &str, status: &str, timeout: Duration) -> Table {
    eventually(&format!("{pod} to show READY {ready} STATUS {status}"), timeout, || {
        let table = get_po(k, pod, &["-o", "wide"]);
        if table.cell(pod, "READY") == ready && table.cell(pod, "STATUS") == status {
            Ok(table)
        } else {
            Err(format!("{table:?}"))
        }
    })
}

/// Deletes a pod with kubectl (which waits until it is gone) and returns how long that took.
fn timed_delete(k: &Kubectl, pod: &str, extra: &[&str]) -> Duration {
    let mut args = vec!["delete", "pod", pod];
    args.extend(extra);
    let t0 = Instant::now();
    k.ok(&args);
    let took = t0.elapsed();
    let out = k.run(&["get", "pod", pod]);
    assert!(!out.status.success(), "{pod} still exists after kubectl delete returned");
    took
}

/// Waits until the node agent holds nothing for pods: no namespace, only the bridge, no shim, no IP.
fn wait_no_pods(c: &NodeCluster) -> Footprint {
    eventually("the node agent to hold nothing for pods", Duration::from_secs(20), || {
        let fp = c.footprint();
        let bridge = format!("{}0", c.prefix);
        (fp.counts() == (0, 1, 0, 0, 0) && fp.links.contains(&bridge)).then_some(fp.clone()).ok_or(format!("{fp:#?}"))
    })
}

/// Stops the server cleanly and checks that nothing of the node is left on the host.
fn stop_and_expect_nothing_left(c: &mut NodeCluster) {
    let before = c.footprint();
    c.stop();
    let after = c.footprint();
    assert_eq!(after.counts(), (0, 0, 0, 0, 0), "left after SIGTERM: {after:#?}\nbefore: {before:#?}");
    for pid in before.shims.iter().chain(&before.containers) {
        assert!(!process_alive(*pid), "process {pid} ({}) survived the server", cmdline(*pid));
    }
}

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

#[test]
fn two_containers_share_localhost_and_get_wide_shows_ip_and_node() {
    let mut c = NodeCluster::start();
    let k = c.kubectl();
    create(
        &k,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  containers:
  - name: server
    image: {AGNHOST}
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
  - name: client
    image: {AGNHOST}
    args: ["netexec", "--http-port=8081", "--udp-port=-1"]
"#
        ),
    );
    let table = wait_row(&k, "two", "2/2", "Running", WAIT);
    let ip = table.cell("two", "IP").to_string();
    assert!(c.in_pod_network(&ip), "pod IP {ip} is not in 10.{}.0.0/16: {table:?}", c.cidr_octet);
    assert_eq!(table.cell("two", "NODE"), c.node_name());
    assert_eq!(table.cell("two", "RESTARTS"), "0");
    let p = pod(&k, "two");
    assert_eq!(p["status"]["podIP"], ip.as_str());
    assert_eq!(p["status"]["podIPs"][0]["ip"], ip.as_str());
    assert!(p["status"]["hostIP"].as_str().is_some_and(|h| !h.is_empty()), "{p}");
    assert_eq!(p["status"]["phase"], "Running");
    for type_ in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&p, type_)["status"], "True", "{type_}: {p}");
    }

    // The client container reaches the server container on 127.0.0.1 (the request goes to the client's port).
    let (status, body) = eventually("the client to dial the server over localhost", WAIT, || {
        http_get(&ip, 8081, "/dial?request=hostname&host=127.0.0.1&port=8080&protocol=http&tries=1")
    });
    assert_eq!((status, body.trim()), (200, r#"{"responses":["two"]}"#));
    // ...and nothing answers on a port no container listens on.
    let (_, body) = http_get(&ip, 8081, "/dial?request=hostname&host=127.0.0.1&port=8089&protocol=http&tries=1")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(body.contains("errors") && !body.contains(r#""responses":["two"]"#), "{body}");
    // Each container's hostname is the pod name (its own UTS namespace).
    assert_eq!(http_get(&ip, 8080, "/hostname").unwrap_or_else(|e| panic!("{e}")), (200, "two".to_string()));

    // Events say what ran.
    let pulled = wait_event(&k, "two", "Pulled", "built-in agnhost");
    assert_eq!(pulled["involvedObject"]["fieldPath"], "spec.containers{server}", "{pulled}");
    wait_event(&k, "two", "Scheduled", &format!("Successfully assigned default/two to {}", c.node_name()));
    wait_event(&k, "two", "Started", "Started container client");

    // One pod: one namespace, the bridge and one veth, two shims with one process each, one IP (the pod's).
    let fp = c.footprint();
    assert_eq!(fp.counts(), (1, 2, 2, 2, 1), "{fp:#?}");
    assert_eq!(fp.ips, BTreeSet::from([ip.clone()]));
    let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
    assert_eq!(fp.netns, BTreeSet::from([format!("{}-{uid}", c.prefix)]));

    let took = timed_delete(&k, "two", &[]);
    assert!(took < Duration::from_secs(15), "deleting two agnhost containers took {took:?}");
    let left = wait_no_pods(&c);
    for pid in fp.containers.iter().chain(&fp.shims) {
        assert!(!process_alive(*pid), "process {pid} survived its pod: {left:#?}");
    }
    stop_and_expect_nothing_left(&mut c);
}

#[test]
fn liveness_restarts_the_container_and_readiness_follows_the_app() {
    let mut c = NodeCluster::start();
    let k = c.kubectl();
    let healthy = c.scratch_dir().join("healthy");
    let www = c.scratch_dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let ready_file = www.join("ready");
    // Healthy for 4 s after every start, then the liveness probe (`ls <file>`, as the seeds' `ls /var/ready`) fails.
    create(
        &k,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "touch {healthy}; sleep 4; rm -f {healthy}; sleep 600"]
    livenessProbe:
      exec:
        command: ["ls", "{healthy}"]
      periodSeconds: 1
      failureThreshold: 2
"#,
            healthy = healthy.display()
        ),
    );
    // An HTTP server whose answer on /ready is 200 while the file exists and 404 otherwise.
    create(
        &k,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: ready
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: docker.io/library/python:3
    command: ["python3", "-m", "http.server", "8080", "--directory", "{www}"]
    readinessProbe:
      httpGet:
        path: /ready
        port: 8080
      periodSeconds: 1
      failureThreshold: 1
"#,
            www = www.display()
        ),
    );

    let t_start = Instant::now();
    // Readiness: Running but not ready while /ready is 404; ready when it answers 200; unready again; ready again.
    wait_row(&k, "ready", "0/1", "Running", WAIT);
    sleep(Duration::from_secs(2));
    let row = get_po(&k, "ready", &[]);
    assert_eq!((row.cell("ready", "READY"), row.cell("ready", "STATUS")), ("0/1", "Running"));
    let p = pod(&k, "ready");
    assert_eq!(condition(&p, "Ready")["status"], "False", "{p}");
    assert_eq!(condition(&p, "ContainersReady")["reason"], "ContainersNotReady", "{p}");
    wait_event(&k, "ready", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404");
    std::fs::write(&ready_file, "ok").unwrap();
    wait_row(&k, "ready", "1/1", "Running", Duration::from_secs(15));
    assert_eq!(condition(&pod(&k, "ready"), "Ready")["status"], "True");
    std::fs::remove_file(&ready_file).unwrap();
    wait_row(&k, "ready", "0/1", "Running", Duration::from_secs(15));
    std::fs::write(&ready_file, "ok").unwrap();
    wait_row(&k, "ready", "1/1", "Running", Duration::from_secs(15));
    eprintln!("readiness flips done after {:?}", t_start.elapsed());
    // Readiness never restarts the container.
    assert_eq!(get_po(&k, "ready", &[]).cell("ready", "RESTARTS"), "0");

    // Liveness: the container is killed and restarted, RESTARTS counts up (0 → 1 → 2).
    let mut seen = BTreeSet::new();
    eventually("live to be restarted twice", Duration::from_secs(90), || {
        let table = get_po(&k, "live", &[]);
        let restarts: u32 = table.cell("live", "RESTARTS").split_whitespace().next().unwrap_or("").parse().unwrap_or(0);
        seen.insert(restarts);
        (restarts >= 2).then_some(()).ok_or(format!("{table:?}"))
    });
    assert!(seen.contains(&1) || seen.len() > 1, "RESTARTS did not count up: {seen:?}");
    eprintln!("live restarted twice after {:?}", t_start.elapsed());
    let unhealthy = wait_event(&k, "live", "Unhealthy", "Liveness probe failed");
    assert_eq!(unhealthy["type"], "Warning");
    assert!(unhealthy["count"].as_i64().is_some_and(|n| n >= 1), "{unhealthy}");
    wait_event(&k, "live", "Killing", "Container main failed liveness probe, will be restarted");
    let p = pod(&k, "live");
    let last = &container_status(&p, "main")["lastState"]["terminated"];
    assert!(matches!(last["exitCode"].as_i64(), Some(137 | 143)), "killed, not exited: {p}");
    assert!(last["finishedAt"].is_string() && last["startedAt"].is_string(), "{p}");

    k.ok(&["delete", "pod", "live", "ready"]);
    wait_no_pods(&c);
    stop_and_expect_nothing_left(&mut c);
}

/// One observation of the crashing container on the watch.
#[derive(Debug)]
struct Seen {
    at: Instant,
    restarts: i64,
    waiting: String,
    message: String,
    last: Option<(i64, i64)>,
}

#[test]
fn a_crashing_container_backs_off_into_crash_loop() {
    let mut c = NodeCluster::start();
    let k = c.kubectl();
    let t0 = Instant::now();
    create(
        &k,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "exit 1"]
"#,
    );
    // Every version of the pod, from kubectl's watch (JSON objects one after another).
    let mut watch = k.spawn(&["get", "pod", "crash", "--watch", "-o", "json"]);
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for v in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
            let Ok(v) = v else { break };
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let secs = |v: &Value| v.as_str().and_then(|s| s.parse::<Timestamp>().ok()).map(|t| t.as_second());
    let mut seen: Vec<Seen> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    // Until the 4th failure: restarts after 0, 10 and 20 s, and the next back-off is 40 s.
    while !seen.iter().any(|s| s.restarts >= 3 && s.message.starts_with("back-off 40s")) {
        assert!(Instant::now() < deadline, "no 4th failure within 90 s: {seen:#?}");
        let Ok(p) = rx.recv_timeout(Duration::from_secs(1)) else { continue };
        let cs = container_status(&p, "main");
        let last = &cs["lastState"]["terminated"];
        seen.push(Seen {
            at: Instant::now(),
            restarts: cs["restartCount"].as_i64().unwrap_or(0),
            waiting: cs["state"]["waiting"]["reason"].as_str().unwrap_or("").to_string(),
            message: cs["state"]["waiting"]["message"].as_str().unwrap_or("").to_string(),
            last: secs(&last["startedAt"]).zip(secs(&last["finishedAt"])),
        });
        if let Some(code) = last["exitCode"].as_i64() {
            assert_eq!((code, last["reason"].as_str()), (1, Some("Error")), "{p}");
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();

    // When each restart count was first seen (local clock): restart 1 at once, 2 after ~10 s, 3 after ~20 s more.
    let first = |n: i64| seen.iter().find(|s| s.restarts >= n).map(|s| s.at).unwrap_or_else(|| panic!("{seen:#?}"));
    let (r1, r2, r3) = (first(1), first(2), first(3));
    let gaps = [r1 - t0, r2 - r1, r3 - r2];
    assert!(gaps[0] < Duration::from_secs(8), "first restart not immediate: {gaps:?}");
    assert!((9.0..14.0).contains(&gaps[1].as_secs_f64()), "second restart not after ~10 s: {gaps:?}");
    assert!((19.0..25.0).contains(&gaps[2].as_secs_f64()), "third restart not after ~20 s: {gaps:?}");

    // The same from the server's timestamps: the pause between one run's finishedAt and the next run's startedAt.
    let runs: BTreeSet<(i64, i64)> = seen.iter().filter_map(|s| s.last).collect();
    let runs: Vec<(i64, i64)> = runs.into_iter().collect();
    let pauses: Vec<i64> = runs.windows(2).map(|w| w[1].0 - w[0].1).collect();
    assert!(pauses.len() >= 2, "too few runs seen in lastState: {runs:?}");
    eprintln!("crash loop: restarts seen after {gaps:?}; pauses between runs (server clock) {pauses:?} s");
    let n = pauses.len();
    assert!((9..=12).contains(&pauses[n - 2]) && (19..=22).contains(&pauses[n - 1]), "pauses {pauses:?} ({runs:?})");
    assert!(pauses[..n - 2].iter().all(|p| *p <= 2), "the first restart waited: {pauses:?}");

    // CrashLoopBackOff with upstream's messages, as `get po` and the events show it.
    let backoffs: Vec<&str> =
        seen.iter().filter(|s| s.waiting == "CrashLoopBackOff").map(|s| s.message.as_str()).collect();
    for want in ["back-off 10s restarting failed container=main pod=crash_default(", "back-off 20s", "back-off 40s"] {
        assert!(backoffs.iter().any(|m| m.starts_with(want)), "no {want:?} in {backoffs:#?}");
    }
    let table = get_po(&k, "crash", &[]);
    assert_eq!((table.cell("crash", "STATUS"), table.cell("crash", "READY")), ("CrashLoopBackOff", "0/1"));
    assert!(table.cell("crash", "RESTARTS").starts_with('3'), "{table:?}");
    let backoff = wait_event(&k, "crash", "BackOff", "Back-off restarting failed container");
    assert!(backoff["count"].as_i64().is_some_and(|n| n >= 2), "{backoff}");

    let took = timed_delete(&k, "crash", &[]);
    assert!(took < Duration::from_secs(10), "deleting a crash-looping pod took {took:?}");
    wait_no_pods(&c);
    stop_and_expect_nothing_left(&mut c);
}

#[test]
fn delete_waits_for_sigterm_handlers_and_kills_at_the_grace_deadline() {
    let mut c = NodeCluster::start();
    let k = c.kubectl();
    let pod_manifest = |name: &str, grace: u32, script: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", {script:?}]
"#
        )
    };
    // Exits 2 s after SIGTERM (the default 30 s grace is not needed).
    create(&k, &pod_manifest("polite", 30, r#"trap "echo bye; sleep 2; exit 0" TERM; while true; do sleep 0.2; done"#));
    // Ignores SIGTERM: killed at its 3 s deadline.
    create(&k, &pod_manifest("stubborn", 3, "trap '' TERM; while true; do sleep 0.2; done"));
    // Ignores SIGTERM with 30 s of grace: `--grace-period=0 --force` removes it at once.
    create(&k, &pod_manifest("forced", 30, "trap '' TERM; while true; do sleep 0.2; done"));
    for name in ["polite", "stubborn", "forced"] {
        wait_row(&k, name, "1/1", "Running", WAIT);
    }
    let uid = pod(&k, "polite")["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let log = c.data_dir().join(format!("agent/pods/default_polite_{uid}/main/0.log"));

    // kubectl delete blocks until the pod is gone; meanwhile the handler's "bye" reaches the container log.
    let t0 = Instant::now();
    let mut delete = k.spawn(&["delete", "pod", "polite"]);
    let mut said_bye = false;
    let status = loop {
        said_bye |= std::fs::read_to_string(&log).is_ok_and(|text| text.contains("bye"));
        if let Some(status) = delete.try_wait().unwrap() {
            break status;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "kubectl delete still running after 60 s");
        sleep(Duration::from_millis(20));
    };
    let took = t0.elapsed();
    assert!(status.success(), "kubectl delete pod polite: {status}");
    assert!(!k.run(&["get", "pod", "polite"]).status.success(), "polite still exists");
    eprintln!("delete of polite took {took:?}");
    assert!(said_bye, "the SIGTERM handler's output never reached {}", log.display());
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(15),
        "delete of a pod whose SIGTERM handler takes 2 s took {took:?}"
    );
    let killing = wait_event(&k, "polite", "Killing", "Stopping container main");
    assert_eq!(killing["involvedObject"]["fieldPath"], "spec.containers{main}", "{killing}");

    let took = timed_delete(&k, "stubborn", &[]);
    assert!(
        took >= Duration::from_millis(2800) && took < Duration::from_secs(15),
        "delete of a pod ignoring SIGTERM with 3 s of grace took {took:?}"
    );
    eprintln!("delete of stubborn (grace 3 s) took {took:?}");

    let before = c.footprint();
    assert_eq!(before.counts(), (1, 2, 1, 1, 1), "only `forced` is left: {before:#?}");
    let took = timed_delete(&k, "forced", &["--grace-period=0", "--force"]);
    assert!(took < Duration::from_secs(10), "a forced delete took {took:?}");
    let t0 = Instant::now();
    wait_no_pods(&c);
    assert!(t0.elapsed() < Duration::from_secs(10), "the forced pod's process lived {:?} on", t0.elapsed());
    for pid in &before.containers {
        assert!(!process_alive(*pid), "forced pod's process {pid} survived");
    }
    stop_and_expect_nothing_left(&mut c);
}

#[test]
fn node_selector_and_cordon_keep_pods_pending_until_the_node_changes() {
    let mut c = NodeCluster::start();
    let k = c.kubectl();
    let node = c.node_name();
    eventually("the node to be Ready", WAIT, || {
        let table = Table::parse(&k.ok(&["get", "nodes"]));
        (table.row(&node).is_some() && table.cell(&node, "STATUS") == "Ready").then_some(()).ok_or(format!("{table:?}"))
    });
    let pause_pod = |name: &str, spec_extra: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{spec_extra}  containers:
  - name: main
    image: registry.k8s.io/pause:3.9
"#
        )
    };
    // The seeds' snippet: nodeSelector gpu: "true".
    let snippet = std::fs::read_to_string(seed_fixture("003-snippet-node-selector.yaml")).unwrap();
    let selector: serde_yaml::Value = serde_yaml::from_str(&snippet).unwrap();
    assert_eq!(selector["spec"]["nodeSelector"]["gpu"], serde_yaml::Value::from("true"));
    create(&k, &pause_pod("gpu", "  nodeSelector:\n    gpu: \"true\"\n"));

    let why = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";
    expect_pending(&k, "gpu", why);
    k.ok(&["label", "node", &node, "gpu=true"]);
    let table = wait_row(&k, "gpu", "1/1", "Running", WAIT);
    assert_eq!(table.cell("gpu", "NODE"), node);

    // Cordon: a new pod stays Pending; uncordon: it runs.
    k.ok(&["cordon", &node]);
    create(&k, &pause_pod("late", ""));
    expect_pending(&k, "late", "0/1 nodes are available: 1 node(s) were unschedulable.");
    // The running pod is not disturbed by the cordon.
    assert_eq!(get_po(&k, "gpu", &[]).cell("gpu", "STATUS"), "Running");
    k.ok(&["uncordon", &node]);
    let table = wait_row(&k, "late", "1/1", "Running", WAIT);
    assert_eq!(table.cell("late", "NODE"), node);

    k.ok(&["delete", "pod", "gpu", "late"]);
    wait_no_pods(&c);
    stop_and_expect_nothing_left(&mut c);
}

/// Waits until `describe` shows the pod unschedulable with `why`, then checks it stays Pending and unbound.
fn expect_pending(k: &Kubectl, name: &str, why: &str) {
    let described = eventually(&format!("describe pod {name} to say why it is Pending"), WAIT, || {
        let out = squash(&k.ok(&["describe", "pod", name]));
        (out.contains("Warning FailedScheduling") && out.contains(why)).then_some(out.clone()).ok_or(out)
    });
    assert!(described.contains("Status: Pending"), "{described}");
    assert!(described.contains("Node: <none>"), "{described}");
    sleep(Duration::from_secs(2));
    let p = pod(k, name);
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    assert!(p["spec"]["nodeName"].is_null(), "{p}");
    let cond = condition(&p, "PodScheduled");
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("False"), Some("Unschedulable")), "{p}");
    assert!(cond["message"].as_str().is_some_and(|m| m.starts_with(why)), "{cond}");
}

#[test]
fn faults_kill_9_of_a_container_and_of_ferry_leave_pods_running_and_nothing_leaked() {
    let mut c = NodeCluster::start();
    let k = c.kubectl();
    let netexec = |name: &str, policy: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  containers:
  - name: app
    image: {AGNHOST}
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
"#
        )
    };
    create(&k, &netexec("victim", "Always"));
    create(&k, &netexec("once", "Never"));
    wait_row(&k, "victim", "1/1", "Running", WAIT);
    wait_row(&k, "once", "1/1", "Running", WAIT);
    let uid_of = |name: &str| pod(&k, name)["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let (victim, once) = (uid_of("victim"), uid_of("once"));

    // kill -9 of a container process: restartPolicy Always restarts it at once; Never leaves it Failed.
    let pid = c.container_pid(&victim, "app", 0);
    assert!(cmdline(pid).contains("agnhost netexec"), "{}", cmdline(pid));
    run("kill", &["-9", &pid.to_string()]);
    let p = eventually("victim to be restarted once", WAIT, || {
        let p = pod(&k, "victim");
        let cs = container_status(&p, "app");
        (cs["restartCount"] == 1 && cs["ready"] == true).then_some(p.clone()).ok_or(format!("{p}"))
    });
    let last = &container_status(&p, "app")["lastState"]["terminated"];
    assert_eq!((last["exitCode"].as_i64(), last["reason"].as_str()), (Some(137), Some("Error")), "{p}");
    assert!(!process_alive(pid), "the killed process {pid} is still there");
    let ip = p["status"]["podIP"].as_str().unwrap_or_default().to_string();
    let answer = eventually("victim to answer again", WAIT, || http_get(&ip, 8080, "/hostname"));
    assert_eq!(answer, (200, "victim".to_string()));

    let pid = c.container_pid(&once, "app", 0);
    run("kill", &["-9", &pid.to_string()]);
    let p = eventually("once to fail", WAIT, || {
        let p = pod(&k, "once");
        (p["status"]["phase"] == "Failed").then_some(p.clone()).ok_or(format!("{p}"))
    });
    let cs = container_status(&p, "app");
    assert_eq!(cs["restartCount"], 0, "{p}");
    assert_eq!(cs["state"]["terminated"]["exitCode"], 137, "{p}");
    assert_eq!(get_po(&k, "once", &[]).cell("once", "STATUS"), "Error");
    k.ok(&["delete", "pod", "once"]);

    // kill -9 of ferry: the containers outlive it; a restart recreates the pod (SandboxChanged) and leaks nothing.
    let before = eventually("only victim's resources", WAIT, || {
        let fp = c.footprint();
        (fp.counts() == (1, 2, 1, 1, 1)).then_some(fp.clone()).ok_or(format!("{fp:#?}"))
    });
    assert_eq!(before.ips, BTreeSet::from([ip.clone()]));
    c.kill9();
    let orphaned = c.footprint();
    assert_eq!(orphaned, before, "the pod's processes and sandbox live on while ferry is down");
    c.start_again();
    let k = c.kubectl();
    wait_event(&k, "victim", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.");
    // Recreated: new shim and process, the status (written by the new run) names the IP allocated now.
    let (p, after) = eventually("victim to run again", WAIT, || {
        let p = pod(&k, "victim");
        let cs = container_status(&p, "app");
        let fp = c.footprint();
        let recreated = fp.counts() == before.counts() && fp.shims.is_disjoint(&before.shims);
        let ip_now = p["status"]["podIP"].as_str().map(|i| BTreeSet::from([i.to_string()]));
        let running = cs["state"]["running"].is_object() && cs["ready"] == true && p["status"]["phase"] == "Running";
        (running && recreated && ip_now.as_ref() == Some(&fp.ips))
            .then_some((p.clone(), fp.clone()))
            .ok_or(format!("{p}\n{fp:#?}"))
    });
    assert_eq!(p["metadata"]["uid"], victim.as_str(), "the same pod, recreated");
    let new_ip = p["status"]["podIP"].as_str().unwrap_or_default().to_string();
    let answer = eventually("victim to answer on its IP", WAIT, || http_get(&new_ip, 8080, "/hostname"));
    assert_eq!(answer, (200, "victim".to_string()));
    assert_eq!((&after.netns, &after.links), (&before.netns, &before.links), "the same sandbox names");
    for pid in before.shims.iter().chain(&before.containers) {
        assert!(!process_alive(*pid), "process {pid} ({}) from before the crash survived", cmdline(*pid));
    }
    if new_ip != ip {
        assert!(http_get(&ip, 8080, "/hostname").is_err(), "the old IP {ip} still answers");
    }

    stop_and_expect_nothing_left(&mut c);
}

#[test]
fn an_image_ferry_cannot_run_waits_in_image_pull_back_off_and_deletes_promptly() {
    let mut c = NodeCluster::start();
    let k = c.kubectl();
    // The seed's pod with an image ferry has no built-in stand-in for (kubia/manual itself now runs).
    let fixture: PathBuf = seed_fixture("003-pod-kubia-manual.yaml");
    let manifest = std::fs::read_to_string(&fixture).unwrap().replace("image: kubia/manual", "image: nginx:1.27");
    k.ok_stdin(&["create", "-f", "-"], manifest.as_bytes());
    let waiting = |p: &Value| container_status(p, "kubia-manual")["state"]["waiting"].clone();
    let first = eventually("kubia-manual to wait in ErrImagePull", WAIT, || {
        let p = pod(&k, "kubia-manual");
        (waiting(&p)["reason"] == "ErrImagePull").then_some(p.clone()).ok_or(format!("{p}"))
    });
    let message = waiting(&first)["message"].as_str().unwrap_or_default().to_string();
    for part in ["nginx:1.27", "registry.k8s.io/e2e-test-images/agnhost", "explicit `command`"] {
        assert!(message.contains(part), "the message does not tell how to make it runnable: {message}");
    }
    assert_eq!(first["status"]["phase"], "Pending", "{first}");
    assert_eq!(get_po(&k, "kubia-manual", &[]).cell("kubia-manual", "STATUS"), "ErrImagePull");
    wait_event(&k, "kubia-manual", "Failed", "Failed to pull image \"nginx:1.27\"");

    let t0 = Instant::now();
    let table = eventually("kubia-manual to back off", Duration::from_secs(30), || {
        let table = get_po(&k, "kubia-manual", &[]);
        (table.cell("kubia-manual", "STATUS") == "ImagePullBackOff")
            .then_some(table.clone())
            .ok_or(format!("{table:?}"))
    });
    assert_eq!(table.cell("kubia-manual", "READY"), "0/1");
    assert!(t0.elapsed() < Duration::from_secs(20), "ImagePullBackOff after {:?}", t0.elapsed());
    let p = pod(&k, "kubia-manual");
    assert!(waiting(&p)["message"].as_str().is_some_and(|m| m.contains("Back-off pulling image")), "{p}");
    wait_event(&k, "kubia-manual", "BackOff", "Back-off pulling image \"nginx:1.27\"");
    let described = squash(&k.ok(&["describe", "pod", "kubia-manual"]));
    assert!(described.contains("Reason: ImagePullBackOff"), "{described}");

    let took = timed_delete(&k, "kubia-manual", &[]);
    assert!(took < Duration::from_secs(8), "deleting a pod with nothing running took {took:?}");
    wait_no_pods(&c);
    stop_and_expect_nothing_left(&mut c);
}
