//! Services end to end on a real single-node `ferry server` (Endpoints/EndpointSlice controllers, load balancer
//! allocator, workload controllers, node agent and the kernel Service proxy), driven by kubectl 1.20 and the seeds'
//! manifests, with real connections from the host and from "client pods" (a Python client run inside a pod's
//! network namespace): new connections to a ClusterIP spread over every pod; ClientIP affinity pins them until
//! patched back to None; named targetPorts reach the right container port (and the pod's service variables are
//! upstream's); NodePort 30123 and a LoadBalancer's EXTERNAL-IP answer on the node address while a second
//! LoadBalancer wanting the same port stays pending with a Warning; externalTrafficPolicy Local keeps the client's
//! address and serves healthCheckNodePort; an unready pod leaves the Endpoints within a probe period and gets no
//! more connections; a selectorless Service reaches an address outside the cluster through hand-written
//! Endpoints; a Service without endpoints refuses at once; a rolling restart behind readiness probes and a preStop
//! sleep drops no request; the proxy's nftables table goes away with the server.
//!
//! Needs root (network namespaces, nftables). Tests that use ports on the node address hold
//! [`ferry_testkit::lock_node_address_ports`] while their cluster runs.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use ferry_testkit::{eventually, lock_node_address_ports, seed_fixture, Cluster, Kubectl, Table};
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(90);
const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
/// Time the proxy gets to program what the API already shows (upstream kube-proxy syncs at most once a second).
const SETTLE: Duration = Duration::from_secs(2);

/// The client run on the host or inside a pod's network namespace. `get HOST PORT PATH COUNT INTERVAL TIMEOUT`
/// makes COUNT HTTP GETs, each on a new connection, started INTERVAL seconds apart (0: back to back), and prints a
/// JSON list of `{at, status, body}` or `{at, error}`. `connect HOST PORT TIMEOUT` opens one TCP connection and
/// prints `{error, elapsed}`. `serve IP PORT TEXT` answers every GET with TEXT and a newline (unlike
/// `python3 -m http.server`, it never looks its own address up in DNS, which stalls in a namespace without DNS).
const CLIENT_PY: &str = r#"
import http.client, json, socket, sys, time

def get(host, port, path, timeout):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()

def main():
    mode = sys.argv[1]
    if mode == "get":
        host, port, path = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        count, interval, timeout = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
        start = time.monotonic()
        out = []
        for i in range(count):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            at = time.monotonic() - start
            try:
                status, body = get(host, port, path, timeout)
                out.append({"at": at, "status": status, "body": body})
            except Exception as e:
                out.append({"at": at, "error": "%s: %s" % (type(e).__name__, e)})
        json.dump(out, sys.stdout)
    elif mode == "connect":
        host, port, timeout = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        t0 = time.monotonic()
        err = None
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except Exception as e:
            err = "%s: %s" % (type(e).__name__, e)
        json.dump({"error": err, "elapsed": time.monotonic() - t0}, sys.stdout)
    elif mode == "serve":
        import http.server, socketserver
        ip, port, text = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = (text + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args):
                pass
        socketserver.TCPServer.allow_reuse_address = True
        with socketserver.TCPServer((ip, port), Handler) as server:
            server.serve_forever()

main()
"#;

/// One HTTP request's outcome.
#[derive(Debug, Clone)]
struct Reply {
    /// Seconds since the client started.
    at: f64,
    status: Option<u64>,
    body: String,
    error: Option<String>,
}

impl Reply {
    fn ok(&self) -> bool {
        self.status == Some(200)
    }

    /// What the tally counts: the body (trimmed) of a 200, else the status or the error.
    fn key(&self) -> String {
        match (&self.error, self.status) {
            (Some(e), _) => format!("error: {e}"),
            (None, Some(200)) => self.body.trim().to_string(),
            (None, status) => format!("status {status:?}: {}", self.body.trim()),
        }
    }
}

fn tally(replies: &[Reply]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in replies {
        *counts.entry(r.key()).or_insert(0) += 1;
    }
    counts
}

/// A pod used as a client: its network namespace and address.
#[derive(Debug, Clone)]
struct ClientPod {
    netns: String,
    ip: String,
}

/// A running cluster plus the client script.
struct Node {
    cluster: Cluster,
    k: Kubectl,
    script: PathBuf,
}

impl Node {
    fn start() -> Node {
        let cluster = Cluster::start_with_node(ferry());
        let script = cluster.scratch_dir().join("client.py");
        fs::write(&script, CLIENT_PY).unwrap();
        let k = cluster.kubectl();
        Node { cluster, k, script }
    }

    fn prefix(&self) -> String {
        self.cluster.network_prefix().unwrap().to_string()
    }

    fn apply(&self, yaml: &str) {
        self.k.ok_stdin(&["apply", "-f", "-"], yaml.as_bytes());
    }

    fn client_command(&self, netns: Option<&str>) -> Command {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        cmd.arg(&self.script);
        cmd
    }

    /// Starts `count` GETs (see [`CLIENT_PY`]) in the background.
    fn spawn_gets(&self, from: Option<&str>, host: &str, port: u16, path: &str, count: usize, interval: f64) -> Child {
        self.client_command(from)
            .args(["get", host, &port.to_string(), path, &count.to_string(), &interval.to_string(), "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn gets(&self, from: Option<&str>, host: &str, port: u16, path: &str, count: usize) -> Vec<Reply> {
        parse_replies(self.spawn_gets(from, host, port, path, count, 0.0).wait_with_output().unwrap())
    }

    fn get_one(&self, from: Option<&str>, host: &str, port: u16, path: &str) -> Reply {
        self.gets(from, host, port, path, 1).remove(0)
    }

    /// One TCP connect: (error, seconds it took).
    fn connect(&self, from: Option<&str>, host: &str, port: u16) -> (Option<String>, f64) {
        let out = self.client_command(from).args(["connect", host, &port.to_string(), "5"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("client printed no JSON ({e}): {}", describe_output(&out)));
        (v["error"].as_str().map(str::to_string), v["elapsed"].as_f64().unwrap())
    }

    fn pod(&self, name: &str) -> Value {
        self.k.json(&["get", "pod", name])
    }

    /// Starts an agnhost pause pod and returns its network namespace and IP once it runs.
    fn client_pod(&self, name: &str) -> ClientPod {
        self.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  \
             containers:\n  - {{name: main, image: \"{AGNHOST}\", args: [pause]}}\n"
        ));
        let ip = eventually(&format!("client pod {name} to run"), WAIT, || {
            let pod = self.pod(name);
            let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_string();
            (pod["status"]["phase"] == "Running" && !ip.is_empty()).then_some(ip).ok_or(format!("{}", pod["status"]))
        });
        let uid = self.pod(name)["metadata"]["uid"].as_str().unwrap().to_string();
        ClientPod { netns: format!("{}-{uid}", self.prefix()), ip }
    }

    /// Waits for `n` Running, Ready, not terminating pods matching `selector`; returns name → IP.
    fn wait_pods(&self, selector: &str, n: usize) -> BTreeMap<String, String> {
        eventually(&format!("{n} ready pods {selector}"), WAIT, || {
            let list = self.k.json(&["get", "pods", "-l", selector]);
            let ready: BTreeMap<String, String> = items(&list)
                .iter()
                .filter(|p| is_ready(p))
                .map(|p| {
                    let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    (name, p["status"]["podIP"].as_str().unwrap_or_default().to_string())
                })
                .collect();
            (ready.len() == n).then_some(ready.clone()).ok_or(format!("{ready:?}"))
        })
    }

    fn cluster_ip(&self, svc: &str) -> String {
        let ip = self.k.jsonpath(&["get", "svc", svc], "{.spec.clusterIP}");
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "service {svc} has no cluster IP: {ip:?}");
        ip
    }

    fn node_ip(&self) -> String {
        let node = self.cluster.node_name().unwrap();
        let ip = self.k.jsonpath(&["get", "node", &node], r#"{.status.addresses[?(@.type=="InternalIP")].address}"#);
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "node {node} has no InternalIP: {ip:?}");
        ip
    }

    /// The addresses of the ready endpoints in the service's EndpointSlices.
    fn ready_in_slices(&self, svc: &str) -> BTreeSet<String> {
        let list = self.k.json(&["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={svc}")]);
        items(&list)
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] != false)
            .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
            .collect()
    }

    fn wait_slices(&self, svc: &str, want: &BTreeSet<String>) {
        eventually(&format!("{svc}'s slices to list {want:?} as ready"), WAIT, || {
            let got = self.ready_in_slices(svc);
            (&got == want).then_some(()).ok_or(format!("{got:?}"))
        });
    }

    /// Waits for one request to succeed (the proxy has the service), then lets the proxy settle.
    fn wait_answers(&self, from: Option<&str>, host: &str, port: u16, path: &str) {
        eventually(&format!("{host}:{port}{path} to answer from {from:?}"), WAIT, || {
            let r = self.get_one(from, host, port, path);
            r.ok().then_some(()).ok_or(format!("{r:?}"))
        });
        sleep(SETTLE);
    }

    fn events_of(&self, name: &str) -> String {
        self.k.ok(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")])
    }
}

fn parse_replies(out: Output) -> Vec<Reply> {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client printed no JSON ({e}): {}", describe_output(&out)));
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| Reply {
            at: r["at"].as_f64().unwrap_or(0.0),
            status: r["status"].as_u64(),
            body: r["body"].as_str().unwrap_or_default().to_string(),
            error: r["error"].as_str().map(str::to_string),
        })
        .collect()
}

fn describe_output(out: &Output) -> String {
    format!(
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn seed(name: &str) -> String {
    fs::read_to_string(seed_fixture(name)).unwrap()
}

/// The seed's ReplicationController (three `kubia/manual` pods, the book's Node.js app on :8080), labelled
/// `app: kubia` as the seeds' Services select (the seed itself says `app: test`).
fn kubia_rc() -> String {
    let rc = seed("003-rc-kubia.yaml");
    assert_eq!(rc.matches("app: test").count(), 2, "{rc}");
    rc.replace("app: test", "app: kubia")
}

fn kubia_hit(pod: &str) -> String {
    format!("You've hit {pod}")
}

/// Three kubia pods behind `svc` (already applied): their names, once the slices list all three.
fn kubia_behind(node: &Node, svc: &str) -> Vec<String> {
    node.apply(&kubia_rc());
    let pods = node.wait_pods("app=kubia", 3);
    node.wait_slices(svc, &pods.values().cloned().collect());
    pods.keys().cloned().collect()
}

#[test]
fn cluster_ip_spreads_new_connections_over_every_pod() {
    let node = Node::start();
    let svc = seed("003-svc-kubia-http.yaml").replace("sessionAffinity: ClientIP", "sessionAffinity: None");
    node.apply(&svc);
    let pods = kubia_behind(&node, "kubia-http");
    let client = node.client_pod("client");
    let ip = node.cluster_ip("kubia-http");
    node.wait_answers(Some(&client.netns), &ip, 80, "/");

    let replies = node.gets(Some(&client.netns), &ip, 80, "/", 120);
    let hits = tally(&replies);
    assert_eq!(replies.iter().filter(|r| r.ok()).count(), 120, "every request answered: {hits:#?}");
    for pod in &pods {
        let n = hits.get(&kubia_hit(pod)).copied().unwrap_or(0);
        assert!(n >= 20, "pod {pod} got {n} of 120 new connections (want >= 20): {hits:#?}");
    }

    // From the host too (its traffic to ClusterIPs is masqueraded), every pod serves.
    let hits = tally(&node.gets(None, &ip, 80, "/", 60));
    for pod in &pods {
        assert!(hits.contains_key(&kubia_hit(pod)), "pod {pod} never answered the host: {hits:#?}");
    }
}

#[test]
fn client_ip_affinity_pins_connections_until_patched_to_none() {
    let node = Node::start();
    node.apply(&seed("003-svc-kubia-http.yaml"));
    let svc = node.k.json(&["get", "svc", "kubia-http"]);
    assert_eq!(svc["spec"]["sessionAffinity"], "ClientIP", "{svc}");
    assert_eq!(svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"], 10800, "{svc}");
    let pods = kubia_behind(&node, "kubia-http");
    let client = node.client_pod("client");
    let ip = node.cluster_ip("kubia-http");
    node.wait_answers(Some(&client.netns), &ip, 80, "/");

    let hits = tally(&node.gets(Some(&client.netns), &ip, 80, "/", 120));
    assert_eq!(hits.len(), 1, "with ClientIP affinity all 120 connections of one client reach one pod: {hits:#?}");
    let (pinned, n) = hits.iter().next().unwrap();
    assert_eq!(*n, 120, "{hits:#?}");
    assert!(pods.iter().any(|p| &kubia_hit(p) == pinned), "{pinned:?} is not one of {pods:?}");
    let hits = tally(&node.gets(None, &ip, 80, "/", 30));
    assert_eq!(hits.len(), 1, "the host, another client, is pinned too: {hits:#?}");

    node.k.ok(&["patch", "svc", "kubia-http", "-p", r#"{"spec":{"sessionAffinity":"None"}}"#]);
    let svc = node.k.json(&["get", "svc", "kubia-http"]);
    assert_eq!(svc["spec"]["sessionAffinity"], "None", "{svc}");
    assert!(svc["spec"]["sessionAffinityConfig"].is_null(), "the config goes with the affinity: {svc}");
    // Give the proxy the change, then one burst must spread.
    eventually("connections to spread after the patch", Duration::from_secs(20), || {
        let hits = tally(&node.gets(Some(&client.netns), &ip, 80, "/", 20));
        (hits.len() >= 2).then_some(()).ok_or(format!("{hits:#?}"))
    });
    let hits = tally(&node.gets(Some(&client.netns), &ip, 80, "/", 120));
    for pod in &pods {
        assert!(hits.contains_key(&kubia_hit(pod)), "after the patch to None, {pod} got nothing: {hits:#?}");
    }
}

/// A pod with the seed's named ports `http` and `https` (on container ports that differ from the Service's ports,
/// so only a resolved targetPort reaches them), each served by its own agnhost netexec container that says which
/// it is through `/shell`.
const NAMED_PORTS_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: zch-serv
  labels: {type: serv}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: zch-serv
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
    env: [{name: SERVER, value: plain-8080}]
    ports:
    - name: http
      containerPort: 8080
    - name: https
      containerPort: 8443
  - name: second
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=8443", "--udp-port=-1"]
    env: [{name: SERVER, value: second-8443}]
"#;

#[test]
fn named_target_ports_reach_their_container_ports() {
    let node = Node::start();
    node.k.ok(&["apply", "-f", seed_fixture("004-svc-zch-svc2-named-target-ports.yaml").to_str().unwrap()]);
    let ip = node.cluster_ip("zch-svc2");
    node.apply(NAMED_PORTS_POD);
    let pods = node.wait_pods("type=serv", 1);
    let pod_ip = pods["zch-serv"].clone();
    node.wait_slices("zch-svc2", &[pod_ip.clone()].into());
    let ep = node.k.json(&["get", "endpoints", "zch-svc2"]);
    let mut ports: Vec<(String, u64)> = ep["subsets"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["port"].as_u64().unwrap()))
        .collect();
    ports.sort();
    assert_eq!(ports, [("http".to_string(), 8080), ("https".to_string(), 8443)], "{ep}");

    let client = node.client_pod("client");
    let which = "/shell?cmd=echo%20$SERVER";
    node.wait_answers(Some(&client.netns), &ip, 9190, which);
    node.wait_answers(Some(&client.netns), &ip, 9191, which);
    for (port, want) in [(9190, "plain-8080"), (9191, "second-8443")] {
        for from in [Some(client.netns.as_str()), None] {
            let hits = tally(&node.gets(from, &ip, port, which, 10));
            let body = format!(r#"{{"output":"{want}\n"}}"#);
            assert_eq!(hits, BTreeMap::from([(body, 10)]), "service port {port} from {from:?}");
        }
    }

    // The pod was created after the Service: its containers have the Service's variables, upstream's names.
    let env = node.k.ok(&["exec", "zch-serv", "-c", "zch-serv", "--", "env"]);
    let vars: BTreeMap<&str, &str> =
        env.lines().filter_map(|l| l.split_once('=')).filter(|(k, _)| k.starts_with("ZCH_SVC2_")).collect();
    let want: BTreeMap<String, String> = [
        ("ZCH_SVC2_SERVICE_HOST", ip.clone()),
        ("ZCH_SVC2_SERVICE_PORT", "9190".into()),
        ("ZCH_SVC2_SERVICE_PORT_HTTP", "9190".into()),
        ("ZCH_SVC2_SERVICE_PORT_HTTPS", "9191".into()),
        ("ZCH_SVC2_PORT", format!("tcp://{ip}:9190")),
        ("ZCH_SVC2_PORT_9190_TCP", format!("tcp://{ip}:9190")),
        ("ZCH_SVC2_PORT_9190_TCP_PROTO", "tcp".into()),
        ("ZCH_SVC2_PORT_9190_TCP_PORT", "9190".into()),
        ("ZCH_SVC2_PORT_9190_TCP_ADDR", ip.clone()),
        ("ZCH_SVC2_PORT_9191_TCP", format!("tcp://{ip}:9191")),
        ("ZCH_SVC2_PORT_9191_TCP_PROTO", "tcp".into()),
        ("ZCH_SVC2_PORT_9191_TCP_PORT", "9191".into()),
        ("ZCH_SVC2_PORT_9191_TCP_ADDR", ip.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let got: BTreeMap<String, String> = vars.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(got, want, "service variables in `kubectl exec zch-serv -- env`");
}

#[test]
fn node_port_30123_answers_on_the_node_address() {
    let _ports = lock_node_address_ports();
    let node = Node::start();
    node.k.ok(&["apply", "-f", seed_fixture("003-svc-kubia-nodeport.yaml").to_str().unwrap()]);
    let table = Table::parse(&node.k.ok(&["get", "svc", "kubia-nodeport"]));
    assert_eq!(table.cell("kubia-nodeport", "TYPE"), "NodePort", "{table:?}");
    assert_eq!(table.cell("kubia-nodeport", "PORT(S)"), "80:30123/TCP", "{table:?}");
    let pods = kubia_behind(&node, "kubia-nodeport");
    let node_ip = node.node_ip();
    node.wait_answers(None, &node_ip, 30123, "/");
    let hits = tally(&node.gets(None, &node_ip, 30123, "/", 30));
    assert_eq!(hits.values().sum::<usize>(), 30, "{hits:#?}");
    assert!(
        hits.keys().all(|h| pods.iter().any(|p| &kubia_hit(p) == h)),
        "{node_ip}:30123 from the host: every request answered by a kubia pod: {hits:#?}"
    );
}

#[test]
fn load_balancer_gets_the_node_address_and_a_clash_stays_pending() {
    let _ports = lock_node_address_ports();
    let node = Node::start();
    node.k.ok(&["apply", "-f", seed_fixture("003-svc-kubia-loadbalancer.yaml").to_str().unwrap()]);
    let pods = kubia_behind(&node, "kubia-loadbalancer");
    let node_ip = node.node_ip();
    let external = eventually("an EXTERNAL-IP", WAIT, || {
        let table = Table::parse(&node.k.ok(&["get", "svc", "kubia-loadbalancer"]));
        let ip = table.cell("kubia-loadbalancer", "EXTERNAL-IP").to_string();
        ip.parse::<std::net::Ipv4Addr>().is_ok().then_some(ip).ok_or(format!("{table:?}"))
    });
    assert_eq!(external, node_ip, "the default pool is the node's address");
    node.wait_answers(None, &external, 80, "/");
    let hits = tally(&node.gets(None, &external, 80, "/", 30));
    assert!(
        hits.keys().all(|h| pods.iter().any(|p| &kubia_hit(p) == h)) && hits.values().sum::<usize>() == 30,
        "{external}:80 from the host: every request answered by a kubia pod: {hits:#?}"
    );

    // A second Service wanting port 80 on the only address stays pending, with a Warning event.
    let second = seed("003-svc-kubia-loadbalancer.yaml").replace("name: kubia-loadbalancer", "name: kubia-lb-2");
    node.apply(&second);
    let events = eventually("a Warning event for kubia-lb-2", WAIT, || {
        let events = node.events_of("kubia-lb-2");
        events.contains("Warning").then_some(events.clone()).ok_or(events)
    });
    let table = Table::parse(&node.k.ok(&["get", "svc", "kubia-lb-2"]));
    assert_eq!(table.cell("kubia-lb-2", "EXTERNAL-IP"), "<pending>", "{table:?}\n{events}");
    let svc = node.k.json(&["get", "svc", "kubia-lb-2"]);
    assert!(svc["status"]["loadBalancer"]["ingress"].is_null(), "{svc}");
    // The first one still answers.
    let r = node.get_one(None, &external, 80, "/");
    assert!(r.ok(), "{r:?}");
}

fn echo_backend() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: echo
  labels: {{app: echo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: {AGNHOST}
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: echo}}
  ports: [{{port: 8081, targetPort: 8080}}]
"#
    )
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let _ports = lock_node_address_ports();
    let node = Node::start();
    node.apply(&echo_backend());
    let backend = node.wait_pods("app=echo", 1);
    node.wait_slices("echo", &backend.values().cloned().collect());
    let svc = node.k.json(&["get", "svc", "echo"]);
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
    let health_port = svc["spec"]["healthCheckNodePort"].as_u64().unwrap_or(0) as u16;
    assert!(health_port > 0, "an eTP Local LoadBalancer gets a healthCheckNodePort: {svc}");
    let node_ip = node.node_ip();
    let client = node.client_pod("client");
    node.wait_answers(Some(&client.netns), &node_ip, node_port, "/clientip");

    let seen = |what: &str| -> BTreeSet<String> {
        node.gets(Some(&client.netns), &node_ip, node_port, "/clientip", 10)
            .iter()
            .map(|r| {
                assert!(r.ok(), "{what}: {r:?}");
                r.body.trim().rsplit_once(':').map(|(ip, _)| ip.to_string()).unwrap_or_default()
            })
            .collect()
    };
    let local = seen("eTP Local");
    assert_eq!(
        local,
        BTreeSet::from([client.ip.clone()]),
        "with externalTrafficPolicy Local the backend sees the client pod's address ({}) on {node_ip}:{node_port}",
        client.ip
    );

    // healthCheckNodePort: 200 with the number of local endpoints.
    let r = node.get_one(None, &node_ip, health_port, "/");
    assert_eq!(r.status, Some(200), "healthCheckNodePort {node_ip}:{health_port}: {r:?}");
    let health: Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("health body is not JSON ({e}): {:?}", r.body));
    assert_eq!(health["localEndpoints"], 1, "{health}");
    assert_eq!(health["service"]["name"], "echo", "{health}");
    assert_eq!(health["service"]["namespace"], "default", "{health}");
    // No local endpoint (the pod no longer matches): 503 with 0; matching again: 200.
    node.k.ok(&["label", "pod", "echo", "app=elsewhere", "--overwrite"]);
    let r = eventually("the health check to fail without local endpoints", Duration::from_secs(20), || {
        let r = node.get_one(None, &node_ip, health_port, "/");
        (r.status == Some(503)).then_some(r.clone()).ok_or(format!("{r:?}"))
    });
    let health: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body));
    assert_eq!(health["localEndpoints"], 0, "{health}");
    node.k.ok(&["label", "pod", "echo", "app=echo", "--overwrite"]);
    node.wait_slices("echo", &backend.values().cloned().collect());
    node.wait_answers(Some(&client.netns), &node_ip, node_port, "/clientip");

    node.k.ok(&["patch", "svc", "echo", "-p", r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#]);
    let svc = node.k.json(&["get", "svc", "echo"]);
    assert!(svc["spec"]["healthCheckNodePort"].is_null(), "Cluster policy drops the health port: {svc}");
    eventually("the backend to see another address with eTP Cluster", Duration::from_secs(20), || {
        let seen = node
            .gets(Some(&client.netns), &node_ip, node_port, "/clientip", 1)
            .iter()
            .map(|r| r.body.trim().rsplit_once(':').map(|(ip, _)| ip.to_string()).unwrap_or_default())
            .collect::<BTreeSet<_>>();
        (!seen.contains(&client.ip) && !seen.contains("")).then_some(()).ok_or(format!("{seen:?}"))
    });
    sleep(SETTLE);
    let masqueraded = seen("eTP Cluster");
    assert!(
        !masqueraded.contains(&client.ip),
        "with externalTrafficPolicy Cluster the node masquerades; the backend saw {masqueraded:?} (client {})",
        client.ip
    );
}

/// Pods `stable` and `flip`, agnhost netexec with an exec readiness probe on a host file each.
fn readiness_pod(name: &str, ready_file: &Path, period: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: probed}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {AGNHOST}
    args: ["netexec", "--http-port=8080", "--udp-port=-1"]
    readinessProbe:
      exec:
        command: ["cat", "{}"]
      periodSeconds: {period}
      failureThreshold: 1
"#,
        ready_file.display()
    )
}

#[test]
fn an_unready_pod_leaves_the_endpoints_within_a_probe_period() {
    const PERIOD: u32 = 2;
    let node = Node::start();
    let dir = node.cluster.scratch_dir().to_path_buf();
    let (stable_file, flip_file) = (dir.join("stable-ready"), dir.join("flip-ready"));
    fs::write(&stable_file, "ok").unwrap();
    fs::write(&flip_file, "ok").unwrap();
    let manifests = [
        readiness_pod("stable", &stable_file, PERIOD),
        readiness_pod("flip", &flip_file, PERIOD),
        "apiVersion: v1\nkind: Service\nmetadata: {name: probed}\nspec:\n  selector: {app: probed}\n  \
         ports: [{port: 80, targetPort: 8080}]\n"
            .to_string(),
    ]
    .join("---\n");
    node.apply(&manifests);
    let pods = node.wait_pods("app=probed", 2);
    node.wait_slices("probed", &pods.values().cloned().collect());
    let ip = node.cluster_ip("probed");
    let client = node.client_pod("client");
    node.wait_answers(Some(&client.netns), &ip, 80, "/hostname");
    let hits = tally(&node.gets(Some(&client.netns), &ip, 80, "/hostname", 40));
    assert!(hits.contains_key("flip") && hits.contains_key("stable"), "both pods serve while ready: {hits:#?}");

    let flip_ip = pods["flip"].clone();
    fs::remove_file(&flip_file).unwrap();
    let removed = Instant::now();
    let ready_addresses = || -> BTreeSet<String> {
        let ep = node.k.json(&["get", "endpoints", "probed"]);
        ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    };
    let mut seen = ready_addresses();
    while seen.contains(&flip_ip) && removed.elapsed() < Duration::from_secs(30) {
        sleep(Duration::from_millis(100));
        seen = ready_addresses();
    }
    let took = removed.elapsed();
    eprintln!("flip left the Endpoints after {took:?}");
    let limit = Duration::from_secs(PERIOD as u64) + Duration::from_secs(3);
    assert!(
        !seen.contains(&flip_ip) && took <= limit,
        "flip ({flip_ip}) still a ready address {took:?} after its probe started failing (period {PERIOD}s, \
         limit {limit:?}); addresses: {seen:?}"
    );
    node.wait_slices("probed", &[pods["stable"].clone()].into());
    sleep(SETTLE);
    let hits = tally(&node.gets(Some(&client.netns), &ip, 80, "/hostname", 60));
    assert_eq!(hits, BTreeMap::from([("stable".to_string(), 60)]), "no connection reaches the unready pod");
}

/// A network namespace outside the cluster, linked to the host by a veth pair on a private /30, serving HTTP with
/// Python on port 80 (every path answers `outside`). Everything is removed on drop (even when the test fails).
struct OutsideServer {
    netns: String,
    host_link: String,
    server: Option<Child>,
    /// The address inside the namespace.
    ip: String,
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}: {}", args.join(" "), describe_output(&out));
}

impl OutsideServer {
    fn start(script: &Path) -> OutsideServer {
        let pid = std::process::id();
        let routes = String::from_utf8(Command::new("ip").args(["-4", "route"]).output().unwrap().stdout).unwrap();
        let addrs = String::from_utf8(Command::new("ip").args(["-4", "addr"]).output().unwrap().stdout).unwrap();
        let (third, fourth) = (0..256u32)
            .map(|i| ((pid + i * 7) % 256, 4 * ((pid / 256 + i) % 63) + 4))
            .find(|(c, _)| !routes.contains(&format!("10.254.{c}.")) && !addrs.contains(&format!("10.254.{c}.")))
            .expect("a free 10.254.x.0/24 for the outside server");
        let net = format!("10.254.{third}");
        let (host_ip, ip) = (format!("{net}.{}", fourth + 1), format!("{net}.{}", fourth + 2));
        let mut server = OutsideServer {
            netns: format!("svc-outside-{pid}"),
            host_link: format!("svo{}", pid % 1_000_000),
            server: None,
            ip: ip.clone(),
        };
        let peer = format!("svp{}", pid % 1_000_000);
        run_ip(&["netns", "add", &server.netns]);
        run_ip(&["link", "add", &server.host_link, "type", "veth", "peer", "name", &peer]);
        run_ip(&["link", "set", &peer, "netns", &server.netns]);
        run_ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &server.host_link]);
        run_ip(&["link", "set", &server.host_link, "up"]);
        let ns = server.netns.clone();
        run_ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        run_ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{ip}/30"), "dev", &peer]);
        run_ip(&["netns", "exec", &ns, "ip", "link", "set", &peer, "up"]);
        run_ip(&["netns", "exec", &ns, "ip", "route", "add", "default", "via", &host_ip]);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "python3"])
            .arg(script)
            .args(["serve", &ip, "80", "outside"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        server.server = Some(child);
        server
    }
}

impl Drop for OutsideServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.netns]).status();
        let _ = Command::new("ip").args(["link", "delete", &self.host_link]).output();
    }
}

#[test]
fn selectorless_service_reaches_hand_written_endpoints() {
    let node = Node::start();
    let outside = OutsideServer::start(&node.script);
    eventually("the outside server to answer", WAIT, || {
        let r = node.get_one(None, &outside.ip, 80, "/who");
        (r.ok() && r.body == "outside\n").then_some(()).ok_or(format!("{r:?}"))
    });
    node.k.ok(&["apply", "-f", seed_fixture("003-svc-external-service.yaml").to_str().unwrap()]);
    // The seed's Endpoints, pointing at our server instead of 11.11.11.11 and 22.22.22.22.
    let endpoints = seed("003-ep-external-service.yaml")
        .replace("  - ip: 11.11.11.11", &format!("  - ip: {}", outside.ip))
        .replace("  - ip: 22.22.22.22\n", "");
    assert!(endpoints.contains(&outside.ip) && !endpoints.contains("22.22"), "{endpoints}");
    node.apply(&endpoints);
    node.wait_slices("external-service", &[outside.ip.clone()].into());
    let ip = node.cluster_ip("external-service");
    let client = node.client_pod("client");
    node.wait_answers(None, &ip, 80, "/who");
    for from in [None, Some(client.netns.as_str())] {
        let hits = tally(&node.gets(from, &ip, 80, "/who", 10));
        assert_eq!(hits, BTreeMap::from([("outside".to_string(), 10)]), "{ip}:80 from {from:?}");
    }
    drop(node);
    drop(outside);
}

#[test]
fn a_service_without_endpoints_refuses_at_once_and_the_table_goes_with_the_server() {
    let mut node = Node::start();
    node.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: nobody}\nspec:\n  selector: {app: nobody}\n  \
         ports: [{port: 80, targetPort: 8080}]\n",
    );
    let ip = node.cluster_ip("nobody");
    eventually("nobody's Endpoints", WAIT, || {
        node.k.run(&["get", "endpoints", "nobody"]).status.success().then_some(()).ok_or("absent".to_string())
    });
    let client = node.client_pod("client");
    sleep(SETTLE);
    for from in [None, Some(client.netns.as_str())] {
        for _ in 0..3 {
            let (error, elapsed) = node.connect(from, &ip, 80);
            assert!(
                error.as_deref().is_some_and(|e| e.starts_with("ConnectionRefusedError")) && elapsed < 1.0,
                "connecting to {ip}:80 (no endpoints) from {from:?}: error {error:?} after {elapsed:.3}s; want \
                 ECONNREFUSED within 1s"
            );
        }
    }

    let table = format!("{}-proxy", node.prefix());
    let tables = || String::from_utf8(Command::new("nft").args(["list", "tables"]).output().unwrap().stdout).unwrap();
    assert!(tables().lines().any(|l| l.trim() == format!("table ip {table}")), "{}", tables());
    node.cluster.stop();
    let after = tables();
    assert!(!after.contains(&table), "after the server stopped, `nft list tables` still shows {table}:\n{after}");
}

/// A 3-replica agnhost Deployment as upstream users write one for zero-downtime rollouts: readiness probe, and a
/// preStop sleep so the pod keeps serving while the endpoint removal reaches the proxies.
const ROLLING: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080"]
        readinessProbe:
          httpGet: {path: /readyz, port: 8080}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec:
              command: ["sleep", "5"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

#[test]
fn rolling_restart_behind_a_cluster_ip_drops_no_request() {
    const RATE: f64 = 50.0;
    const SECONDS: f64 = 25.0;
    let node = Node::start();
    node.apply(ROLLING);
    let before = node.wait_pods("app=web", 3);
    node.wait_slices("web", &before.values().cloned().collect());
    let ip = node.cluster_ip("web");
    let client = node.client_pod("client");
    node.wait_answers(Some(&client.netns), &ip, 80, "/hostname");

    let count = (RATE * SECONDS) as usize;
    let load = node.spawn_gets(Some(&client.netns), &ip, 80, "/hostname", count, 1.0 / RATE);
    sleep(Duration::from_secs(2));
    let started = Instant::now();
    node.k.ok(&["rollout", "restart", "deploy/web"]);
    let status = node.k.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    let rolled_in = started.elapsed();
    let replies = parse_replies(load.wait_with_output().unwrap());
    let after = node.wait_pods("app=web", 3);

    assert!(
        after.keys().all(|p| !before.contains_key(p)),
        "rollout restart replaced every pod: before {before:?}, after {after:?}\n{status}"
    );
    assert!(
        rolled_in.as_secs_f64() + 2.0 < SECONDS,
        "the rollout ({rolled_in:?}) must end while the client still runs ({SECONDS}s)"
    );
    let failed: Vec<&Reply> = replies.iter().filter(|r| !r.ok()).collect();
    let hits = tally(&replies);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout (restart at ~2s, rollout took {rolled_in:?}); first failures: \
         {:#?}\nall: {hits:#?}",
        failed.len(),
        replies.len(),
        &failed[..failed.len().min(10)]
    );
    assert_eq!(replies.len(), count);
    let last = replies.last().map(|r| r.at).unwrap_or(0.0);
    assert!(last < SECONDS + 5.0, "the client fell behind its rate: last request at {last:.1}s");
    for pod in after.keys() {
        assert!(hits.contains_key(pod), "new pod {pod} never answered: {hits:#?}");
    }
}
