//! `ferry explain service` against a real single-node cluster: two ready pods, one failing its readiness probe and
//! one without the named targetPort are each explained, the ready endpoints answer a live TCP connect, a selector
//! matching nothing says so, and a missing service is an error naming the namespace's services. The proxy's rules
//! and the ClusterIP connection are checked in the node's proxy table.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ferry_testkit::{eventually, unique_name, Cluster, Kubectl};

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(90);

fn agnhost(name: &str, port_name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: ["netexec", "--http-port=8080"]
    ports: [{{name: {port_name}, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
"#
    )
}

const NEVER_READY: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: flip
  labels: {app: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "sleep 3600"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      exec:
        command: ["cat", "/nonexistent"]
      periodSeconds: 1
      failureThreshold: 1
"#;

const SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  selector: {app: kubia}
  ports: [{port: 80, targetPort: 8080}]
"#;

fn explain(cluster: &Cluster, ns: &str, service: &str) -> Output {
    let kubeconfig = cluster.kubeconfig().to_str().unwrap();
    Command::new(ferry())
        .args(["explain", "service", service, "-n", ns, "--kubeconfig", kubeconfig])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn explain_ok(cluster: &Cluster, ns: &str, service: &str) -> String {
    let out = explain(cluster, ns, service);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn pod_ip(k: &Kubectl, ns: &str, pod: &str) -> Result<String, String> {
    let ip = k.jsonpath(&["get", "pod", pod, "-n", ns], "{.status.podIP}");
    if ip.is_empty() {
        Err(format!("{pod} has no IP yet"))
    } else {
        Ok(ip)
    }
}

/// The words of the pod table's row for `pod` (NAME IP NODE ENDPOINT... PORTS).
fn pod_row(text: &str, pod: &str) -> Option<String> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(pod))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The ENDPOINT column of a pod row (`ready`, `not ready` or `absent`).
fn endpoint_column(row: &str) -> String {
    let words: Vec<&str> = row.split_whitespace().collect();
    match words.get(3) {
        Some(&"not") => "not ready".into(),
        Some(word) => word.to_string(),
        None => String::new(),
    }
}

/// The lines of the "Verdict" section.
fn verdicts(text: &str) -> Vec<String> {
    let section = text.split("\nVerdict\n").nth(1).unwrap_or_default();
    section.lines().map(|l| l.trim().trim_start_matches("- ").to_string()).collect()
}

#[test]
fn explains_each_pod_of_a_service() {
    let cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    let ns = unique_name("explain");
    k.ok(&["create", "namespace", &ns]);
    let pods = [agnhost("web-a", "http"), agnhost("web-b", "http"), NEVER_READY.to_string(), agnhost("noport", "web")];
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], pods.join("---\n").as_bytes());
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], SERVICES.as_bytes());
    let a = eventually("web-a's IP", WAIT, || pod_ip(&k, &ns, "web-a"));
    let b = eventually("web-b's IP", WAIT, || pod_ip(&k, &ns, "web-b"));

    let text = eventually("explain to show every pod's state", WAIT, || {
        let text = explain_ok(&cluster, &ns, "web");
        let rows = ["web-a", "web-b", "flip", "noport"].map(|p| pod_row(&text, p).unwrap_or_default());
        let settled = endpoint_column(&rows[0]) == "ready"
            && endpoint_column(&rows[1]) == "ready"
            && endpoint_column(&rows[2]) == "not ready"
            && text.contains("readiness probe failed")
            && endpoint_column(&rows[3]) == "absent";
        settled.then_some(text.clone()).ok_or(text)
    });
    assert!(text.starts_with(&format!("Service {ns}/web\n")), "{text}");
    assert!(text.contains("ports:            http 80/TCP -> targetPort http"), "{text}");
    assert!(text.contains("selector:         app=web"), "{text}");
    assert!(text.contains("Pods matching app=web: 4"), "{text}");
    let row_a = pod_row(&text, "web-a").unwrap();
    assert!(row_a.starts_with(&format!("web-a {a} ")) && row_a.ends_with(" http->8080"), "{text}");
    let row_noport = pod_row(&text, "noport").unwrap();
    assert!(row_noport.ends_with(" absent -"), "{text}");
    assert!(text.contains("no container port named 'http' (TCP)"), "{text}");

    let verdict = verdicts(&text);
    let flip = verdict.iter().find(|v| v.starts_with("pod flip is not ready: readiness probe failed: "));
    assert!(flip.is_some(), "{text}");
    assert!(verdict.contains(&"targetPort 'http' not found in pod noport".to_string()), "{text}");
    assert!(!verdict.iter().any(|v| v.contains("web-a") || v.contains("web-b")), "{text}");

    // The ready endpoints answer; the unready one is dialled too (busybox listens on nothing).
    for (pod, ip) in [("web-a", &a), ("web-b", &b)] {
        let endpoint = format!("endpoint {ip}:8080 ");
        let line =
            text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).find(|l| l.starts_with(&endpoint));
        assert!(line.is_some_and(|l| l.starts_with(&format!("{endpoint}{pod} connected "))), "{text}");
    }
    let flip_line = text.lines().find(|l| l.contains("flip (not ready)")).unwrap_or_default();
    assert!(flip_line.split_whitespace().any(|w| w == "refused"), "{text}");

    // Kernel rules and the ClusterIP, once the node's proxy (always run with the node) programs this cluster's table.
    let table = format!("{}-proxy", cluster.network_prefix().unwrap());
    let text = eventually("the proxy to carry the service", WAIT, || {
        let text = explain_ok(&cluster, &ns, "web");
        let connected = text.lines().any(|l| l.trim_start().starts_with("clusterIP") && l.contains(" connected "));
        (text.contains(&format!("table ip {table}")) && connected).then_some(text.clone()).ok_or(text)
    });
    assert!(text.contains(&format!("chain svc-{ns}/web/tcp/http")), "{text}");
    assert!(text.contains(&format!("dnat to {a}:8080")), "{text}");
    assert!(!verdicts(&text).iter().any(|v| v.starts_with("ClusterIP")), "{text}");

    // A selector that matches nothing.
    let text = explain_ok(&cluster, &ns, "nobody");
    assert!(text.contains("Pods matching app=kubia: 0\n  (none)"), "{text}");
    assert_eq!(verdicts(&text).first().map(String::as_str), Some("no pod matches selector app=kubia"), "{text}");

    // No such service: an error naming the namespace's services.
    let out = explain(&cluster, &ns, "missing");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("service \"missing\" not found in namespace \"{ns}\" (its services: ")),
        "{stderr}"
    );
    assert!(stderr.contains("nobody") && stderr.contains("web"), "{stderr}");
}
