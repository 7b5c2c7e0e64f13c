//! Golden-text tests of the diagnosis and its rendering, built from k8s-openapi objects, plus the nft parsing,
//! the kubeconfig lookup and a real TCP dial.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use crate::cli::kubeconfig_path;
use crate::connect::{dial, targets, Attempt, Outcome, Target, TargetKind};
use crate::diagnose::{diagnose, Backends, Listing, Objects, Problem};
use crate::report::{assemble, render};
use crate::rules::{proxy_tables, service_keys, table_rules, ProxyRules, TableRules};

fn from<T: k8s_openapi::serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn web_service() -> Service {
    from(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"}],
            "sessionAffinity": "None",
            "externalTrafficPolicy": "Cluster"
        }
    }))
}

fn pod(name: &str, ip: Option<&str>, ready: bool, port_name: &str) -> Pod {
    let mut status = json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        "containerStatuses": [{
            "name": "main", "ready": ready, "restartCount": 0, "image": "agnhost", "imageID": "",
            "state": {"running": {}}
        }]
    });
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
    }
    from(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {
            "nodeName": "node-1",
            "containers": [{
                "name": "main", "image": "agnhost",
                "ports": [{"name": port_name, "containerPort": 8080}],
                "readinessProbe": {"exec": {"command": ["cat", "/nonexistent"]}}
            }]
        },
        "status": status
    }))
}

fn unhealthy(pod: &str, at: &str, message: &str) -> Event {
    from(json!({
        "metadata": {"name": format!("{pod}.{at}"), "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "shop", "uid": format!("uid-{pod}")},
        "reason": "Unhealthy", "type": "Warning", "message": message,
        "lastTimestamp": at
    }))
}

fn slice(endpoints: &[(&str, &str, bool)]) -> EndpointSlice {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(ip, pod, ready)| {
            json!({"addresses": [ip], "conditions": {"ready": ready}, "nodeName": "node-1",
                   "targetRef": {"kind": "Pod", "name": pod, "namespace": "shop"}})
        })
        .collect();
    from(json!({
        "metadata": {"name": "web-abcde", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
}

fn endpoints(ready: &[(&str, &str)], not_ready: &[(&str, &str)]) -> Endpoints {
    let list = |items: &[(&str, &str)]| -> Vec<Value> {
        items
            .iter()
            .map(|(ip, pod)| json!({"ip": ip, "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": pod}}))
            .collect()
    };
    from(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "subsets": [{
            "addresses": list(ready), "notReadyAddresses": list(not_ready),
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }]
    }))
}

fn attempt(kind: TargetKind, addr: &str, outcome: Outcome, micros: u64) -> Attempt {
    Attempt { target: Target { kind, addr: addr.parse().unwrap() }, outcome, elapsed: Duration::from_micros(micros) }
}

fn endpoint(pod: &str, ready: bool) -> TargetKind {
    TargetKind::Endpoint { pod: Some(pod.into()), ready }
}

const TIMEOUT: Duration = Duration::from_secs(1);

#[test]
fn pods_with_every_reason() {
    let mut unscheduled = pod("web-pending", None, false, "http");
    unscheduled.spec.as_mut().unwrap().node_name = None;
    unscheduled.status = Some(from(json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) had untolerated taint."}]})));
    let mut leaving = pod("web-old", Some("10.42.0.4"), true, "http");
    leaving.metadata.deletion_timestamp = Some(from(json!("2025-01-01T00:00:00Z")));
    let mut other = pod("db", Some("10.42.0.9"), true, "http");
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let objects = Objects {
        service: web_service(),
        endpoints: Some(endpoints(&[("10.42.0.5", "web-a")], &[("10.42.0.6", "web-flip")])),
        slices: vec![slice(&[("10.42.0.5", "web-a", true), ("10.42.0.6", "web-flip", false)])],
        pods: vec![
            pod("web-a", Some("10.42.0.5"), true, "http"),
            pod("web-flip", Some("10.42.0.6"), false, "http"),
            pod("web-noport", Some("10.42.0.7"), true, "web"),
            unscheduled,
            leaving,
            other,
        ],
        events: vec![
            unhealthy("web-flip", "2025-01-01T00:00:01Z", "Readiness probe failed: old failure"),
            unhealthy("web-flip", "2025-01-01T00:00:09Z", "Readiness probe failed: cat: can't open '/nonexistent'"),
            unhealthy("web-a", "2025-01-01T00:00:02Z", "Liveness probe failed: ignored"),
        ],
    };
    let diagnosis = diagnose(&objects);
    let dialled: Vec<String> = targets(&diagnosis).iter().map(|t| t.addr.to_string()).collect();
    assert_eq!(dialled, ["10.42.0.5:8080", "10.42.0.6:8080", "10.43.0.20:80"]);
    let rules = ProxyRules::Found {
        tables: vec!["ferry-proxy".into()],
        carrying: vec![TableRules {
            table: "ferry-proxy".into(),
            elements: vec![
                "service-ips: 10.43.0.20 . tcp . 80 : goto svc-shop/web/tcp/http".into(),
                "service-nodeports: tcp . 30080 : goto ext-shop/web/tcp/http".into(),
            ],
            chains: vec![
                ("svc-shop/web/tcp/http".into(), vec!["meta l4proto tcp dnat to 10.42.0.5:8080".into()]),
                (
                    "ext-shop/web/tcp/http".into(),
                    vec!["jump mark-for-masquerade".into(), "goto svc-shop/web/tcp/http".into()],
                ),
            ],
        }],
    };
    let attempts = vec![
        attempt(endpoint("web-a", true), "10.42.0.5:8080", Outcome::Connected, 312),
        attempt(endpoint("web-flip", false), "10.42.0.6:8080", Outcome::Refused, 95),
        attempt(TargetKind::ClusterIp { port_name: "http".into() }, "10.43.0.20:80", Outcome::TimedOut, 1_000_400),
    ];
    let text = render(&assemble(diagnosis, rules, attempts, TIMEOUT));
    let expected = r#"Service shop/web
  type:                   NodePort
  clusterIPs:             10.43.0.20
  ports:                  http 80/TCP -> targetPort http, nodePort 30080
  sessionAffinity:        None
  externalTrafficPolicy:  Cluster
  selector:               app=web

Pods matching app=web: 5
  NAME         IP         NODE    ENDPOINT   PORTS
  web-a        10.42.0.5  node-1  ready      http->8080
  web-flip     10.42.0.6  node-1  not ready  http->8080
      not ready: readiness probe failed: cat: can't open '/nonexistent'
  web-noport   10.42.0.7  node-1  absent     -
      no container port named 'http' (TCP)
  web-old      10.42.0.4  node-1  absent     http->8080
      terminating
  web-pending  -          -       absent     http->8080
      not scheduled: 0/1 nodes are available: 1 node(s) had untolerated taint.

Proxy rules
  table ip ferry-proxy
    map service-ips: 10.43.0.20 . tcp . 80 : goto svc-shop/web/tcp/http
    map service-nodeports: tcp . 30080 : goto ext-shop/web/tcp/http
    chain svc-shop/web/tcp/http
      meta l4proto tcp dnat to 10.42.0.5:8080
    chain ext-shop/web/tcp/http
      jump mark-for-masquerade
      goto svc-shop/web/tcp/http

Connections (TCP from this host, 1s timeout)
  endpoint   10.42.0.5:8080  web-a                 connected  0.3 ms
  endpoint   10.42.0.6:8080  web-flip (not ready)  refused    0.1 ms
  clusterIP  10.43.0.20:80   http                  timed out  1000.4 ms

Verdict
  - pod web-flip is not ready: readiness probe failed: cat: can't open '/nonexistent'
  - targetPort 'http' not found in pod web-noport
  - pod web-old is terminating
  - pod web-pending is not scheduled: 0/1 nodes are available: 1 node(s) had untolerated taint.
  - ClusterIP 10.43.0.20:80 (http): no answer within 1s
"#;
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn selector_matching_nothing() {
    let mut service = web_service();
    let spec = service.spec.as_mut().unwrap();
    spec.type_ = Some("ClusterIP".into());
    spec.external_traffic_policy = None;
    spec.selector = Some([("app".to_string(), "kubia".to_string())].into());
    spec.ports = Some(vec![from(json!({"port": 80, "targetPort": 8080, "protocol": "TCP"}))]);
    let objects = Objects {
        service,
        endpoints: Some(from(json!({"metadata": {"name": "web", "namespace": "shop"}}))),
        pods: vec![pod("web-a", Some("10.42.0.5"), true, "http")],
        ..Objects::default()
    };
    let diagnosis = diagnose(&objects);
    let text = render(&assemble(
        diagnosis,
        ProxyRules::Found { tables: Vec::new(), carrying: Vec::new() },
        vec![attempt(TargetKind::ClusterIp { port_name: String::new() }, "10.43.0.20:80", Outcome::Refused, 200)],
        TIMEOUT,
    ));
    let expected = r#"Service shop/web
  type:             ClusterIP
  clusterIPs:       10.43.0.20
  ports:            80/TCP -> targetPort 8080
  sessionAffinity:  None
  selector:         app=kubia

Pods matching app=kubia: 0
  (none)

Proxy rules
  no proxy table (nftables `ip *-proxy`) on this host

Connections (TCP from this host, 1s timeout)
  clusterIP  10.43.0.20:80  -  refused  0.2 ms

Verdict
  - no pod matches selector app=kubia
  - no service proxy table (nftables `ip *-proxy`) on this host: is the proxy running?
"#;
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn hand_written_endpoints_without_selector() {
    let service: Service = from(json!({
        "metadata": {"name": "external-service", "namespace": "shop"},
        "spec": {"clusterIP": "10.43.0.30", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}
    }));
    let eps: Endpoints = from(json!({
        "metadata": {"name": "external-service", "namespace": "shop"},
        "subsets": [{"addresses": [{"ip": "11.11.11.11"}, {"ip": "22.22.22.22"}], "ports": [{"port": 80}]}]
    }));
    let objects = Objects { service, endpoints: Some(eps), ..Objects::default() };
    let diagnosis = diagnose(&objects);
    assert_eq!(targets(&diagnosis).len(), 3);
    let attempts = vec![
        attempt(TargetKind::Endpoint { pod: None, ready: true }, "11.11.11.11:80", Outcome::Connected, 1500),
        attempt(TargetKind::Endpoint { pod: None, ready: true }, "22.22.22.22:80", Outcome::TimedOut, 1_000_000),
    ];
    let rules = ProxyRules::Unavailable("running nft: No such file or directory".into());
    let text = render(&assemble(diagnosis, rules, attempts, TIMEOUT));
    let expected = r#"Service shop/external-service
  type:             ClusterIP
  clusterIPs:       10.43.0.30
  ports:            80/TCP -> targetPort 80
  sessionAffinity:  None
  selector:         <none>

Endpoints (no selector: written by hand): 2
  IP           TARGET  NODE  ENDPOINT  PORTS
  11.11.11.11  -       -     ready     80/TCP
  22.22.22.22  -       -     ready     80/TCP

Proxy rules
  not read: running nft: No such file or directory

Connections (TCP from this host, 1s timeout)
  endpoint  11.11.11.11:80  -  connected  1.5 ms
  endpoint  22.22.22.22:80  -  timed out  1000.0 ms

Verdict
  - could not read the nftables rules: running nft: No such file or directory
  - endpoint 22.22.22.22:80: no answer within 1s
"#;
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn selectorless_service_without_endpoints_and_external_names() {
    let service: Service = from(json!({
        "metadata": {"name": "manual", "namespace": "shop"},
        "spec": {"clusterIP": "10.43.0.31", "ports": [{"port": 80}]}
    }));
    let diagnosis = diagnose(&Objects { service, ..Objects::default() });
    assert_eq!(diagnosis.problems, [Problem::NoEndpointsObject]);

    let alias: Service = from(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }));
    let diagnosis = diagnose(&Objects { service: alias.clone(), ..Objects::default() });
    assert!(targets(&diagnosis).is_empty());
    assert_eq!(service_keys(&alias), Default::default());
    let text = render(&assemble(diagnosis, ProxyRules::NotProxied, Vec::new(), TIMEOUT));
    assert!(text.contains("ExternalName: a DNS alias for db.example.com"), "{text}");
    assert!(text.ends_with("Verdict\n  no problem found\n"), "{text}");
}

#[test]
fn unready_pod_explained_by_its_container_when_no_event_says_why() {
    let mut crashing = pod("web-crash", Some("10.42.0.8"), false, "http");
    let status = crashing.status.as_mut().unwrap();
    status.container_statuses.as_mut().unwrap()[0].state = Some(from(json!({"waiting": {
        "reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}})));
    let waiting = pod("web-slow", Some("10.42.0.9"), false, "http");
    let objects = Objects {
        service: web_service(),
        endpoints: Some(endpoints(&[], &[("10.42.0.8", "web-crash"), ("10.42.0.9", "web-slow")])),
        pods: vec![crashing, waiting],
        ..Objects::default()
    };
    let problems: Vec<String> = diagnose(&objects).problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "pod web-crash is not ready: container main is waiting: CrashLoopBackOff: back-off 10s restarting failed \
             container",
            "pod web-slow is not ready: container main's readiness probe has not succeeded yet",
            "the service has no ready endpoint: connections to it are rejected",
        ]
    );
}

#[test]
fn ready_pod_missing_from_endpoints_and_stray_addresses() {
    let objects = Objects {
        service: web_service(),
        endpoints: Some(endpoints(&[("10.42.0.99", "web-gone")], &[])),
        pods: vec![pod("web-a", Some("10.42.0.5"), true, "http")],
        ..Objects::default()
    };
    let problems: Vec<String> = diagnose(&objects).problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "pod web-a is ready but not an endpoint (is the endpoints controller running?)",
            "endpoint 10.42.0.99 (web-gone) belongs to no pod the selector matches",
        ]
    );
}

/// `nft -j list table` and `nft list table` output as nft 1.0 prints a ferry proxy table.
const TABLE_JSON: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "ip", "name": "ab-proxy", "handle": 1}},
 {"map": {"family": "ip", "name": "service-ips", "table": "ab-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"],
   "handle": 3, "map": "verdict", "elem": [
     [{"concat": ["10.43.0.20", "tcp", 80]}, {"goto": {"target": "svc-shop/web/tcp/http"}}],
     [{"concat": ["10.43.0.1", "tcp", 443]}, {"goto": {"target": "svc-default/kubernetes/tcp/https"}}]]}},
 {"map": {"family": "ip", "name": "no-endpoint-nodeports", "table": "ab-proxy", "type": ["inet_proto", "inet_service"],
   "handle": 4, "map": "verdict", "elem": [[{"concat": ["tcp", 30080]}, {"drop": null}]]}},
 {"chain": {"family": "ip", "table": "ab-proxy", "name": "services", "handle": 1}},
 {"chain": {"family": "ip", "table": "ab-proxy", "name": "svc-shop/web/tcp/http", "handle": 5}},
 {"chain": {"family": "ip", "table": "ab-proxy", "name": "ep-shop/web/tcp/http__10.42.0.5/8080", "handle": 6}},
 {"chain": {"family": "ip", "table": "ab-proxy", "name": "svc-shop/web2/tcp/http", "handle": 7}}]}"#;

const TABLE_TEXT: &str = "table ip ab-proxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.43.0.20 . tcp . 80 : goto svc-shop/web/tcp/http,
\t\t\t     10.43.0.1 . tcp . 443 : goto svc-default/kubernetes/tcp/https }
\t}

\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t}

\tchain svc-shop/web/tcp/http {
\t\tip daddr 10.43.0.20 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade
\t\tgoto ep-shop/web/tcp/http__10.42.0.5/8080
\t}

\tchain ep-shop/web/tcp/http__10.42.0.5/8080 {
\t\tip saddr 10.42.0.5 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 10.42.0.5:8080
\t}

\tchain svc-shop/web2/tcp/http {
\t}
}
";

#[test]
fn picks_the_service_out_of_a_proxy_table() {
    let tables = r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "ab-proxy", "handle": 1}},
        {"table": {"family": "inet", "name": "cd-proxy", "handle": 2}}, {"table": {"family": "ip", "name": "nat"}}]}"#;
    assert_eq!(proxy_tables(tables).unwrap(), ["ab-proxy"]);
    let keys = service_keys(&web_service());
    let rules = table_rules("ab-proxy", TABLE_JSON, TABLE_TEXT, &keys).unwrap().unwrap();
    assert_eq!(
        rules.elements,
        [
            "service-ips: 10.43.0.20 . tcp . 80 : goto svc-shop/web/tcp/http",
            "no-endpoint-nodeports: tcp . 30080 : drop",
        ]
    );
    let chains: Vec<(&str, usize)> = rules.chains.iter().map(|(n, r)| (n.as_str(), r.len())).collect();
    assert_eq!(chains, [("svc-shop/web/tcp/http", 2), ("ep-shop/web/tcp/http__10.42.0.5/8080", 2)]);
    assert_eq!(rules.chains[1].1[1], "meta l4proto tcp dnat to 10.42.0.5:8080");

    let mut elsewhere = web_service();
    elsewhere.metadata.namespace = Some("other".into());
    let spec = elsewhere.spec.as_mut().unwrap();
    spec.cluster_ip = Some("10.43.0.77".into());
    spec.cluster_ips = Some(vec!["10.43.0.77".into()]);
    spec.ports.as_mut().unwrap()[0].node_port = Some(30999);
    assert_eq!(table_rules("ab-proxy", TABLE_JSON, TABLE_TEXT, &service_keys(&elsewhere)).unwrap(), None);
}

#[test]
fn kubeconfig_from_flag_then_env_then_data_dir() {
    let data = Path::new("/var/lib/ferry");
    let flag = PathBuf::from("/tmp/k.yaml");
    assert_eq!(kubeconfig_path(Some(&flag), Some(OsString::from("/env/a")), data), flag);
    assert_eq!(kubeconfig_path(None, Some(OsString::from("/env/a:/env/b")), data), PathBuf::from("/env/a"));
    assert_eq!(kubeconfig_path(None, Some(OsString::new()), data), data.join("kubeconfig.yaml"));
    assert_eq!(kubeconfig_path(None, None, data), data.join("kubeconfig.yaml"));
}

#[tokio::test]
async fn dials_open_and_closed_ports() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let kind = TargetKind::ClusterIp { port_name: String::new() };
    let a = dial(Target { kind: kind.clone(), addr: open }, TIMEOUT).await;
    assert_eq!(a.outcome, Outcome::Connected);
    let b = dial(Target { kind, addr: closed }, TIMEOUT).await;
    assert_eq!(b.outcome, Outcome::Refused);
}

#[test]
fn pod_in_a_portless_slice_is_not_an_endpoint() {
    // Upstream files a pod whose named port resolves nowhere in a slice without ports.
    let mut portless = slice(&[("10.42.0.7", "web-noport", true)]);
    portless.metadata.name = Some("web-xyz".into());
    portless.ports = Some(Vec::new());
    let objects = Objects {
        service: web_service(),
        slices: vec![slice(&[("10.42.0.5", "web-a", true)]), portless],
        pods: vec![pod("web-a", Some("10.42.0.5"), true, "http"), pod("web-noport", Some("10.42.0.7"), true, "web")],
        ..Objects::default()
    };
    let diagnosis = diagnose(&objects);
    let problems: Vec<String> = diagnosis.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems, ["targetPort 'http' not found in pod web-noport"]);
    let Backends::Selector { pods, strays } = &diagnosis.backends else { panic!("{diagnosis:?}") };
    assert_eq!(pods.iter().map(|p| p.listing()).collect::<Vec<_>>(), [Listing::Ready, Listing::Absent]);
    assert!(strays.is_empty());
    let dialled: Vec<String> = targets(&diagnosis).iter().map(|t| t.addr.to_string()).collect();
    assert_eq!(dialled, ["10.42.0.5:8080", "10.43.0.20:80"]);
}
