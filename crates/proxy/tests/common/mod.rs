//! Fixtures shared by the proxy's integration tests: Services and EndpointSlices built from JSON.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use ferry_proxy::{BridgeHairpin, FakeDataplane, Ipv4Net, Proxier, ProxyConfig};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

pub const NODE: &str = "node-a";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 5, 10);
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const POD_CIDR: &str = "10.244.1.0/24";
pub const BRIDGE: &str = "ferry0";

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn config() -> ProxyConfig {
    ProxyConfig {
        cluster_cidr: Some(CLUSTER_CIDR.parse().unwrap()),
        bridge_hairpin: Some(BridgeHairpin { bridge: BRIDGE.into(), pod_cidr: POD_CIDR.parse().unwrap() }),
        ..ProxyConfig::default()
    }
}

pub fn fake() -> FakeDataplane {
    FakeDataplane::new()
        .with_local_addrs([NODE_IP, ip("10.244.1.1")])
        .with_route(POD_CIDR.parse::<Ipv4Net>().unwrap(), BRIDGE)
}

pub fn proxier() -> Proxier<FakeDataplane> {
    Proxier::new(config(), NODE, fake())
}

/// A Service `ns/name` with `spec` merged over a single-port ClusterIP default.
pub fn service(ns: &str, name: &str, cluster_ip: &str, spec: Value) -> Service {
    let mut base = json!({
        "clusterIP": cluster_ip,
        "clusterIPs": [cluster_ip],
        "type": "ClusterIP",
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
        "sessionAffinity": "None",
    });
    merge(&mut base, spec);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": base,
    }))
    .unwrap()
}

pub fn with_status(mut svc: Service, status: Value) -> Service {
    svc.status = Some(serde_json::from_value(status).unwrap());
    svc
}

fn merge(base: &mut Value, over: Value) {
    if let (Some(b), Value::Object(o)) = (base.as_object_mut(), over) {
        for (k, v) in o {
            b.insert(k, v);
        }
    }
}

/// An endpoint: (ip, node, ready, serving, terminating).
pub type Ep<'a> = (&'a str, &'a str, bool, bool, bool);

pub fn ready<'a>(ip: &'a str, node: &'a str) -> Ep<'a> {
    (ip, node, true, true, false)
}

/// A slice of `service` with one unnamed TCP port `port`.
pub fn slice(ns: &str, service: &str, slice_name: &str, port: u16, eps: &[Ep<'_>]) -> EndpointSlice {
    slice_ports(ns, service, slice_name, json!([{"name": "", "port": port, "protocol": "TCP"}]), eps)
}

pub fn slice_ports(ns: &str, service: &str, slice_name: &str, ports: Value, eps: &[Ep<'_>]) -> EndpointSlice {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, node, ready, serving, terminating)| {
            json!({
                "addresses": [ip],
                "nodeName": node,
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": slice_name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .unwrap()
}
