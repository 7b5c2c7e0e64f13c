//! kubectl 1.20's Service commands against a real single-node `ferry server`: `kubectl expose` of a pod, an rc, an
//! rs, a deployment and a service (selector and ports as upstream's generator writes them, and each new Service
//! answers through its ClusterIP), `kubectl create service clusterip|nodeport|loadbalancer|externalname` as
//! `get svc` shows them, `kubectl port-forward svc/NAME`, and the endpoints views (`get ep`, `get endpointslices`,
//! `describe svc`).
//!
//! Needs root (network namespaces, nftables).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_testkit::{eventually, lock_node_address_ports, seed_fixture, squash, Cluster, Kubectl, LineReader, Table};
use serde_json::{json, Value};

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(90);

fn seed(name: &str) -> String {
    seed_fixture(name).to_str().unwrap().to_string()
}

/// `curl` from the host: the body of a 200, or what went wrong.
fn http_get(url: &str) -> Result<String, String> {
    let out = Command::new("curl").args(["-sS", "--max-time", "3", "-w", "\n%{http_code}", url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.rsplit_once('\n') {
        Some((body, "200")) if out.status.success() => Ok(body.to_string()),
        _ => Err(format!("curl {url}: {} {text}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// Ready pods matching `selector` in `ns`: name → IP, once there are `n`.
fn ready_pods(k: &Kubectl, ns: &str, selector: &str, n: usize) -> BTreeMap<String, String> {
    eventually(&format!("{n} ready pods {selector} in {ns}"), WAIT, || {
        let list = k.json(&["get", "pods", "-n", ns, "-l", selector]);
        let ready: BTreeMap<String, String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .map(|p| {
                let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
                (name, p["status"]["podIP"].as_str().unwrap_or_default().to_string())
            })
            .collect();
        (ready.len() == n).then_some(ready.clone()).ok_or(format!("{ready:?}"))
    })
}

/// The service's selector and (port, targetPort, protocol) list.
fn shape(k: &Kubectl, ns: &str, svc: &str) -> (Value, Vec<(Value, Value, Value)>) {
    let s = k.json(&["get", "svc", svc, "-n", ns]);
    let ports = s["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].clone(), p["targetPort"].clone(), p["protocol"].clone()))
        .collect();
    (s["spec"]["selector"].clone(), ports)
}

/// Waits until `svc` answers on its ClusterIP with the kubia greeting of one of `pods`.
fn answers(k: &Kubectl, ns: &str, svc: &str, port: u16, pods: &BTreeMap<String, String>) {
    let ip = k.jsonpath(&["get", "svc", svc, "-n", ns], "{.spec.clusterIP}");
    let url = format!("http://{ip}:{port}/");
    eventually(&format!("{ns}/{svc} to answer on {url}"), WAIT, || {
        let body = http_get(&url)?;
        let who = body.trim().strip_prefix("You've hit ").unwrap_or_default();
        pods.contains_key(who).then_some(()).ok_or(format!("{body:?} is not from one of {pods:?}"))
    });
}

fn endpoint_set(cell: &str) -> BTreeSet<String> {
    cell.split(',').map(|s| s.trim().to_string()).collect()
}

#[test]
fn expose_port_forward_and_endpoint_views() {
    let cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    let tcp = |p: u16, t: u16| (json!(p), json!(t), json!("TCP"));

    // A pod (default namespace); the seeds' rc and rs (the same labels, so each in its own namespace).
    k.ok(&["apply", "-f", &seed("003-pod-kubia-manual.yaml")]);
    k.ok(&["create", "namespace", "rc"]);
    k.ok(&["create", "namespace", "rs"]);
    k.ok(&["apply", "-n", "rc", "-f", &seed("003-rc-kubia.yaml")]);
    k.ok(&["apply", "-n", "rs", "-f", &seed("003-rs-kubia-apps-v1beta2.yaml")]);
    k.ok(&["create", "deployment", "web", "--image=luksa/kubia"]);

    let out = k.ok(&["expose", "pod", "kubia-manual", "--port=80", "--target-port=8080", "--name=kubia-manual-svc"]);
    assert_eq!(out.trim(), "service/kubia-manual-svc exposed");
    assert_eq!(
        shape(&k, "default", "kubia-manual-svc"),
        (json!({"app": "test", "noderole": "master"}), vec![tcp(80, 8080)])
    );
    let out = k.ok(&["expose", "rc", "kubia", "-n", "rc", "--port=80", "--target-port=8080"]);
    assert_eq!(out.trim(), "service/kubia exposed");
    assert_eq!(shape(&k, "rc", "kubia"), (json!({"app": "test"}), vec![tcp(80, 8080)]));
    let out = k.ok(&["expose", "rs", "kubia", "-n", "rs", "--port=80", "--target-port=8080"]);
    assert_eq!(out.trim(), "service/kubia exposed");
    assert_eq!(shape(&k, "rs", "kubia"), (json!({"app": "test"}), vec![tcp(80, 8080)]));
    let out = k.ok(&["expose", "deploy", "web", "--port=80", "--target-port=8080"]);
    assert_eq!(out.trim(), "service/web exposed");
    assert_eq!(shape(&k, "default", "web"), (json!({"app": "web"}), vec![tcp(80, 8080)]));
    let out = k.ok(&["expose", "svc", "kubia-manual-svc", "--name=kubia-again", "--port=8000", "--target-port=8080"]);
    assert_eq!(out.trim(), "service/kubia-again exposed");
    assert_eq!(
        shape(&k, "default", "kubia-again"),
        (json!({"app": "test", "noderole": "master"}), vec![tcp(8000, 8080)])
    );

    let manual = ready_pods(&k, "default", "app=test", 1);
    let rc = ready_pods(&k, "rc", "app=test", 3);
    let rs = ready_pods(&k, "rs", "app=test", 3);
    let web = ready_pods(&k, "default", "app=web", 1);
    answers(&k, "default", "kubia-manual-svc", 80, &manual);
    answers(&k, "rc", "kubia", 80, &rc);
    answers(&k, "rs", "kubia", 80, &rs);
    answers(&k, "default", "web", 80, &web);
    answers(&k, "default", "kubia-again", 8000, &manual);

    // get ep: the ready addresses with the target port.
    let want: BTreeSet<String> = rc.values().map(|ip| format!("{ip}:8080")).collect();
    let table = Table::parse(&k.ok(&["get", "ep", "kubia", "-n", "rc"]));
    assert_eq!(endpoint_set(table.cell("kubia", "ENDPOINTS")), want, "{table:?}");
    let table = Table::parse(&k.ok(&["get", "ep", "kubia-manual-svc"]));
    let manual_ip = manual.values().next().unwrap();
    assert_eq!(table.cell("kubia-manual-svc", "ENDPOINTS"), format!("{manual_ip}:8080"), "{table:?}");

    // get endpointslices: one IPv4 slice with port 8080 and the three addresses.
    let table = Table::parse(&k.ok(&["get", "endpointslices", "-n", "rc", "-l", "kubernetes.io/service-name=kubia"]));
    assert_eq!(table.rows.len(), 1, "{table:?}");
    let name = table.rows[0][0].clone();
    assert!(name.starts_with("kubia-"), "{table:?}");
    assert_eq!(table.cell(&name, "ADDRESSTYPE"), "IPv4", "{table:?}");
    assert_eq!(table.cell(&name, "PORTS"), "8080", "{table:?}");
    assert_eq!(endpoint_set(table.cell(&name, "ENDPOINTS")), rc.values().cloned().collect(), "{table:?}");

    // describe svc: the Endpoints line lists the pod addresses.
    let describe = squash(&k.ok(&["describe", "svc", "kubia", "-n", "rc"]));
    let line = describe.split("Endpoints: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
    assert_eq!(endpoint_set(line), want, "{describe}");
    assert!(describe.contains("Selector: app=test"), "{describe}");
    assert!(describe.contains("TargetPort: 8080/TCP"), "{describe}");

    // port-forward svc/NAME LOCAL:PORT, then a request on localhost.
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = k
        .command(&["port-forward", "svc/kubia-manual-svc", &format!("{local}:80")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = LineReader::new(child.stdout.take().unwrap());
    let forwarding = lines.wait_for(Duration::from_secs(30), |l| l.starts_with("Forwarding from 127.0.0.1"));
    let result = forwarding.map_err(|seen| format!("{seen:?}")).and_then(|line| {
        assert_eq!(line, format!("Forwarding from 127.0.0.1:{local} -> 8080"));
        http_get(&format!("http://127.0.0.1:{local}/"))
    });
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let body = result.unwrap_or_else(|e| panic!("port-forward svc/kubia-manual-svc: {e}\nstderr: {stderr}"));
    assert_eq!(body.trim(), "You've hit kubia-manual", "through port-forward");
}

#[test]
fn create_service_of_every_type() {
    let _ports = lock_node_address_ports();
    let cluster = Cluster::start_with_node(ferry());
    let k = cluster.kubectl();
    for (args, created) in [
        (vec!["clusterip", "my-cs", "--tcp=5678:8080"], "service/my-cs created"),
        (vec!["nodeport", "my-ns", "--tcp=5679:8080"], "service/my-ns created"),
        (vec!["loadbalancer", "my-lbs", "--tcp=5680:8080"], "service/my-lbs created"),
        (vec!["externalname", "my-ext", "--external-name", "bar.com"], "service/my-ext created"),
    ] {
        let mut all = vec!["create", "service"];
        all.extend(args);
        assert_eq!(k.ok(&all).trim(), created);
    }
    let node = cluster.node_name().unwrap();
    let node_ip = k.jsonpath(&["get", "node", &node], r#"{.status.addresses[?(@.type=="InternalIP")].address}"#);
    let node_port = |svc: &str| k.jsonpath(&["get", "svc", svc], "{.spec.ports[0].nodePort}");
    let table = eventually("my-lbs to get an address", WAIT, || {
        let table = Table::parse(&k.ok(&["get", "svc", "-o", "wide"]));
        (table.cell("my-lbs", "EXTERNAL-IP") != "<pending>").then_some(table.clone()).ok_or(format!("{table:?}"))
    });
    let ip = |svc: &str| table.cell(svc, "CLUSTER-IP").parse::<std::net::Ipv4Addr>().is_ok();
    let row = |svc: &str| -> Vec<String> {
        ["TYPE", "EXTERNAL-IP", "PORT(S)", "SELECTOR"].iter().map(|h| table.cell(svc, h).to_string()).collect()
    };
    assert!(ip("my-cs") && ip("my-ns") && ip("my-lbs"), "{table:?}");
    assert_eq!(row("my-cs"), ["ClusterIP", "<none>", "5678/TCP", "app=my-cs"], "{table:?}");
    assert_eq!(
        row("my-ns"),
        ["NodePort".to_string(), "<none>".into(), format!("5679:{}/TCP", node_port("my-ns")), "app=my-ns".into()],
        "{table:?}"
    );
    assert_eq!(
        row("my-lbs"),
        ["LoadBalancer".to_string(), node_ip, format!("5680:{}/TCP", node_port("my-lbs")), "app=my-lbs".into()],
        "{table:?}"
    );
    assert_eq!(table.cell("my-ext", "CLUSTER-IP"), "<none>", "{table:?}");
    assert_eq!(row("my-ext"), ["ExternalName", "bar.com", "<none>", "app=my-ext"], "{table:?}");
    let ports = k.json(&["get", "svc", "my-cs"])["spec"]["ports"].clone();
    assert_eq!(ports, json!([{"name": "5678-8080", "port": 5678, "protocol": "TCP", "targetPort": 8080}]));
}
