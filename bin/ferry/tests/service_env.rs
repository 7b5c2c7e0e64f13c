//! Environment-variable service discovery on a real single-node `ferry server`, checked with kubectl 1.20 and
//! `kubectl exec POD -- env`: a container gets the `{SVC}_SERVICE_*` and Docker-link `{SVC}_PORT*` variables of every
//! service with a cluster IP in its namespace (not headless, not ExternalName, not other namespaces) plus the
//! `kubernetes` service of `default`; its own `env` overrides them and may refer to them with `$(VAR)`;
//! `enableServiceLinks: false` leaves only the `kubernetes` variables; a service created after the container started
//! is not there until the container restarts.
//!
//! Needs root (network namespaces).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ferry_testkit::{eventually, Cluster, Kubectl};

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(60);
const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const NS: &str = "shop";

/// Prefixes of the variables these tests look at (every service they create, and `kubernetes`).
const PREFIXES: &[&str] = &["KUBERNETES_", "KUBIA_", "MY_DB_", "HL_", "EXT_", "ELSEWHERE_", "LATE_"];

fn create(k: &Kubectl, manifest: &str) {
    k.ok_stdin(&["create", "-f", "-"], manifest.as_bytes());
}

fn cluster_ip(k: &Kubectl, ns: &str, svc: &str) -> String {
    let ip = k.jsonpath(&["get", "svc", svc, "-n", ns], "{.spec.clusterIP}");
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "service {ns}/{svc} has no cluster IP: {ip:?}");
    ip
}

fn wait_running(k: &Kubectl, pod: &str) {
    eventually(&format!("pod {pod} to run"), WAIT, || {
        let phase = k.jsonpath(&["get", "pod", pod, "-n", NS], "{.status.phase}");
        (phase == "Running").then_some(()).ok_or(phase)
    });
}

/// `name=value` lines as a map, keeping only the variables of [`PREFIXES`].
fn service_vars(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The service variables of `pod`'s container, as `kubectl exec POD -- env` prints them.
fn exec_env(k: &Kubectl, pod: &str) -> BTreeMap<String, String> {
    service_vars(&k.ok(&["exec", "-n", NS, pod, "--", "env"]))
}

/// The variables upstream's kubelet gives for a service: (name, port, protocol) per port.
fn expected(prefix: &str, ip: &str, ports: &[(Option<&str>, u16, &str)]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
    m.insert(format!("{prefix}_SERVICE_PORT"), ports[0].1.to_string());
    m.insert(format!("{prefix}_PORT"), format!("{}://{ip}:{}", ports[0].2.to_lowercase(), ports[0].1));
    for (name, port, proto) in ports {
        if let Some(name) = name {
            m.insert(format!("{prefix}_SERVICE_PORT_{}", name.to_uppercase().replace('-', "_")), port.to_string());
        }
        let p = format!("{prefix}_PORT_{port}_{proto}");
        m.insert(p.clone(), format!("{}://{ip}:{port}", proto.to_lowercase()));
        m.insert(format!("{p}_PROTO"), proto.to_lowercase());
        m.insert(format!("{p}_PORT"), port.to_string());
        m.insert(format!("{p}_ADDR"), ip.to_string());
    }
    m
}

fn services() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Service
metadata: {{name: kubia, namespace: {NS}}}
spec:
  selector: {{app: kubia}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: my-db, namespace: {NS}}}
spec:
  selector: {{app: db}}
  ports:
  - {{name: pg-main, port: 5432}}
  - {{name: stats, port: 9187, protocol: UDP}}
---
apiVersion: v1
kind: Service
metadata: {{name: hl, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: kubia}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: {NS}}}
spec:
  type: ExternalName
  externalName: example.com
---
apiVersion: v1
kind: Service
metadata: {{name: elsewhere, namespace: default}}
spec:
  ports: [{{port: 81}}]
"#
    )
}

#[test]
fn containers_get_service_variables_as_upstream() {
    let mut cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    create(&k, &services());
    let kubernetes_ip = cluster_ip(&k, "default", "kubernetes");
    let kubia_ip = cluster_ip(&k, NS, "kubia");
    let db_ip = cluster_ip(&k, NS, "my-db");
    create(
        &k,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: links, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {AGNHOST}
    args: ["pause"]
    env:
    - {{name: KUBIA_URL, value: "http://$(KUBIA_SERVICE_HOST):$(KUBIA_SERVICE_PORT_HTTP)/"}}
    - {{name: MY_DB_SERVICE_HOST, value: db.internal}}
---
apiVersion: v1
kind: Pod
metadata: {{name: nolinks, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  enableServiceLinks: false
  containers:
  - name: main
    image: {AGNHOST}
    args: ["pause"]
"#
        ),
    );
    wait_running(&k, "links");
    wait_running(&k, "nolinks");

    let kubernetes = expected("KUBERNETES", &kubernetes_ip, &[(Some("https"), 443, "TCP")]);
    let kubia = expected("KUBIA", &kubia_ip, &[(Some("http"), 80, "TCP")]);
    assert_eq!(kubia["KUBIA_PORT_80_TCP"], format!("tcp://{kubia_ip}:80"));
    let mut db = expected("MY_DB", &db_ip, &[(Some("pg-main"), 5432, "TCP"), (Some("stats"), 9187, "UDP")]);
    assert!(db.contains_key("MY_DB_SERVICE_PORT_PG_MAIN") && db.contains_key("MY_DB_PORT_9187_UDP_ADDR"), "{db:?}");
    // The container's own definition wins over the service's.
    db.insert("MY_DB_SERVICE_HOST".into(), "db.internal".into());

    let mut want: BTreeMap<String, String> = kubernetes.clone().into_iter().chain(kubia).chain(db).collect();
    want.insert("KUBIA_URL".into(), format!("http://{kubia_ip}:80/"));
    assert_eq!(exec_env(&k, "links"), want, "env of a pod with service links");
    assert_eq!(exec_env(&k, "nolinks"), kubernetes, "env of a pod with enableServiceLinks: false");

    // A service created after the containers started is not injected into them.
    create(
        &k,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {NS}}}\nspec:\n  ports: [{{port: 82}}]\n"
        ),
    );
    let late_ip = cluster_ip(&k, NS, "late");
    assert_eq!(exec_env(&k, "links"), want, "env after creating service late");

    // A container started later sees it (here a new pod; a restarted container would too).
    create(
        &k,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: later, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {AGNHOST}
    args: ["pause"]
"#
        ),
    );
    wait_running(&k, "later");
    let env = exec_env(&k, "later");
    assert_eq!(env.get("LATE_SERVICE_HOST"), Some(&late_ip), "{env:#?}");
    assert_eq!(env.get("LATE_PORT"), Some(&format!("tcp://{late_ip}:82")), "{env:#?}");
    assert_eq!(env.get("MY_DB_SERVICE_HOST"), Some(&db_ip), "{env:#?}");
    cluster.stop();
}

#[test]
fn a_restarted_container_picks_up_a_new_service() {
    let mut cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    k.ok(&["create", "namespace", NS]);
    // Prints its service variables, then exits after a while; restartPolicy Always starts it again.
    create(
        &k,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: printer, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "env; echo done; sleep 2"]
"#
        ),
    );
    let first = eventually("the first run's output", WAIT, || {
        let out = k.run(&["logs", "-n", NS, "printer"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("done").then(|| service_vars(&text)).ok_or(text)
    });
    assert!(first.contains_key("KUBERNETES_SERVICE_HOST"), "{first:#?}");
    assert!(!first.contains_key("LATE_SERVICE_HOST"), "{first:#?}");
    create(
        &k,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {NS}}}\nspec:\n  ports: [{{port: 82}}]\n"
        ),
    );
    let late_ip = cluster_ip(&k, NS, "late");
    eventually("a restart of the container to see service late", WAIT, || {
        let out = k.run(&["logs", "-n", NS, "printer"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let vars = service_vars(&text);
        (text.contains("done") && vars.get("LATE_SERVICE_HOST") == Some(&late_ip)).then_some(()).ok_or(text)
    });
    cluster.stop();
}
