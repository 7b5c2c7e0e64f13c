//! Service semantics (spec §5) checked by tracing packets through the fake data plane's model of the table.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ferry_proxy::{Origin, Packet, SeededNumgen, Verdict};
use serde_json::json;

const CIP: &str = "10.96.0.10";

fn dnat_target(v: Verdict) -> (std::net::Ipv4Addr, u16) {
    match v {
        Verdict::Dnat { ip, port, .. } => (ip, port),
        other => panic!("expected DNAT, got {other:?}"),
    }
}

#[test]
fn cluster_ip_spreads_over_three_ready_endpoints() {
    let mut p = proxier();
    p.on_service(None, Some(&service("default", "web", CIP, json!({}))));
    let eps = [ready("10.244.1.5", NODE), ready("10.244.2.6", "node-b"), ready("10.244.3.7", "node-c")];
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &eps)));
    p.sync().unwrap();
    let mut hits: BTreeMap<std::net::Ipv4Addr, usize> = BTreeMap::new();
    for i in 0..300u32 {
        let src = std::net::Ipv4Addr::from(u32::from(ip("10.244.1.100")) + (i % 50));
        let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, src, ip(CIP), 80));
        let (target, port) = dnat_target(v);
        assert_eq!(port, 8080);
        *hits.entry(target).or_default() += 1;
    }
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.values().all(|n| *n >= 60), "uneven spread {hits:?}");
    // Host traffic is DNATed too (output hook), and masqueraded because it does not come from the pod network.
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::Host, NODE_IP, ip(CIP), 80));
    assert!(matches!(v, Verdict::Dnat { masquerade: true, port: 8080, .. }), "{v:?}");
    // Another port of the ClusterIP is not service traffic.
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.100"), ip(CIP), 81));
    assert_eq!(v, Verdict::Accept);
}

#[test]
fn pod_to_service_on_same_bridge_is_masqueraded_only_by_the_hairpin_rule() {
    let mut p = proxier();
    p.on_service(None, Some(&service("default", "web", CIP, json!({}))));
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.1.5", NODE)])));
    p.sync().unwrap();
    // A pod of this node reaching a local endpoint: the reply would bypass conntrack over the bridge.
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80));
    assert_eq!(v, Verdict::Dnat { ip: ip("10.244.1.5"), port: 8080, masquerade: true });
    // A pod of another node (routed here) reaching it keeps its source.
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::External, ip("10.244.7.9"), ip(CIP), 80));
    assert_eq!(v, Verdict::Dnat { ip: ip("10.244.1.5"), port: 8080, masquerade: false });
}

#[test]
fn hairpin_traffic_is_masqueraded() {
    let mut cfg = config();
    cfg.bridge_hairpin = None;
    let mut p = ferry_proxy::Proxier::new(cfg, NODE, fake());
    p.on_service(None, Some(&service("default", "web", CIP, json!({}))));
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.1.5", NODE)])));
    p.sync().unwrap();
    let me = ip("10.244.1.5");
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, me, ip(CIP), 80));
    assert_eq!(v, Verdict::Dnat { ip: me, port: 8080, masquerade: true });
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.6"), ip(CIP), 80));
    assert_eq!(v, Verdict::Dnat { ip: me, port: 8080, masquerade: false });
}

#[test]
fn client_ip_affinity_sticks_until_timeout() {
    let mut p = proxier();
    let spec = json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}});
    p.on_service(None, Some(&service("default", "web", CIP, spec)));
    let eps = [ready("10.244.1.5", NODE), ready("10.244.2.6", "node-b"), ready("10.244.3.7", "node-c")];
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &eps)));
    p.sync().unwrap();
    let fake = p.dataplane_mut();
    let client = ip("10.244.1.100");
    let first = dnat_target(fake.trace(Packet::tcp(Origin::Pod, client, ip(CIP), 80)));
    for _ in 0..50 {
        assert_eq!(dnat_target(fake.trace(Packet::tcp(Origin::Pod, client, ip(CIP), 80))), first);
        fake.advance(Duration::from_secs(30));
    }
    // Other clients still spread.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..60u32 {
        let src = std::net::Ipv4Addr::from(u32::from(ip("10.244.1.150")) + i);
        seen.insert(dnat_target(fake.trace(Packet::tcp(Origin::Pod, src, ip(CIP), 80))));
    }
    assert_eq!(seen.len(), 3);
    // After the timeout without traffic the entry is gone.
    fake.advance(Duration::from_secs(61));
    let set = format!("aff-60-default/web/tcp/___{}/{}", first.0, first.1);
    assert!(!fake.set_members(&set).contains(&client));
}

#[test]
fn switching_session_affinity_changes_behaviour_live() {
    let mut p = ferry_proxy::Proxier::new(config(), NODE, fake().with_numgen(Box::new(SeededNumgen::new(11))));
    let none = service("default", "web", CIP, json!({}));
    let client_ip = service("default", "web", CIP, json!({"sessionAffinity": "ClientIP"}));
    let eps = [ready("10.244.1.5", NODE), ready("10.244.2.6", "node-b"), ready("10.244.3.7", "node-c")];
    p.on_service(None, Some(&none));
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &eps)));
    p.sync().unwrap();
    let client = ip("10.244.1.100");
    let distinct = |p: &mut ferry_proxy::Proxier<ferry_proxy::FakeDataplane>| {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..12 {
            seen.insert(dnat_target(p.dataplane_mut().trace(Packet::tcp(Origin::Pod, client, ip(CIP), 80))));
        }
        seen.len()
    };
    assert!(distinct(&mut p) >= 2);
    p.on_service(Some(&none), Some(&client_ip));
    let stats = p.sync().unwrap();
    assert!(!stats.full && stats.ops > 0);
    assert_eq!(distinct(&mut p), 1);
    p.on_service(Some(&client_ip), Some(&none));
    p.sync().unwrap();
    assert!(distinct(&mut p) >= 2);
    p.on_service(Some(&none), Some(&client_ip));
    p.sync().unwrap();
    assert_eq!(distinct(&mut p), 1);
    assert!(p.dataplane().matches(p.ruleset()));
}

#[test]
fn no_endpoints_rejects_at_once() {
    let mut p = proxier();
    let svc = service("default", "web", CIP, json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
    p.on_service(None, Some(&svc));
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[])));
    p.sync().unwrap();
    let f = p.dataplane_mut();
    assert_eq!(f.trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80)), Verdict::Reject);
    assert_eq!(f.trace(Packet::tcp(Origin::Host, NODE_IP, ip(CIP), 80)), Verdict::Reject);
    assert_eq!(f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), NODE_IP, 30080)), Verdict::Reject);
    assert_eq!(f.trace(Packet::udp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80)), Verdict::Accept);
    // Only not-ready, not-serving endpoints: still nothing usable.
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[("10.244.1.5", NODE, false, false, false)])));
    p.sync().unwrap();
    assert_eq!(p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80)), Verdict::Reject);
    // Once an endpoint is ready the reject entry is gone.
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.1.5", NODE)])));
    p.sync().unwrap();
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80));
    assert_eq!(dnat_target(v), (ip("10.244.1.5"), 8080));
}

#[test]
fn terminating_endpoints_are_a_fallback_only() {
    let mut p = proxier();
    p.on_service(None, Some(&service("default", "web", CIP, json!({}))));
    let eps = [("10.244.1.5", NODE, false, true, true), ("10.244.1.6", NODE, false, false, true)];
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &eps)));
    p.sync().unwrap();
    for _ in 0..20 {
        let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80));
        assert_eq!(dnat_target(v).0, ip("10.244.1.5"));
    }
    let eps = [("10.244.1.5", NODE, false, true, true), ready("10.244.2.8", "node-b")];
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &eps)));
    p.sync().unwrap();
    for _ in 0..20 {
        let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80));
        assert_eq!(dnat_target(v).0, ip("10.244.2.8"));
    }
}

fn nodeport_service(policy: &str) -> k8s_openapi::api::core::v1::Service {
    service(
        "default",
        "web",
        CIP,
        json!({"type": "NodePort", "externalTrafficPolicy": policy, "ports": [{"port": 80, "nodePort": 30080}]}),
    )
}

#[test]
fn node_port_reaches_every_endpoint_with_masquerade_under_cluster_policy() {
    let mut p = proxier();
    p.on_service(None, Some(&nodeport_service("Cluster")));
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.2.6", "node-b")])));
    p.sync().unwrap();
    let f = p.dataplane_mut();
    let v = f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), NODE_IP, 30080));
    assert_eq!(v, Verdict::Dnat { ip: ip("10.244.2.6"), port: 8080, masquerade: true });
    // Any local address, but not loopback and not someone else's address.
    let v = f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), ip("10.244.1.1"), 30080));
    assert!(matches!(v, Verdict::Dnat { .. }));
    assert_eq!(f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), ip("192.168.5.99"), 30080)), Verdict::Accept);
    assert_eq!(f.trace(Packet::tcp(Origin::Host, ip("127.0.0.1"), ip("127.0.0.1"), 30080)), Verdict::Accept);
}

#[test]
fn external_traffic_policy_local_keeps_the_source_and_drops_without_local_endpoints() {
    let mut p = proxier();
    p.on_service(None, Some(&nodeport_service("Local")));
    let eps = [ready("10.244.1.5", NODE), ready("10.244.2.6", "node-b")];
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &eps)));
    p.sync().unwrap();
    for _ in 0..20 {
        let v = p.dataplane_mut().trace(Packet::tcp(Origin::External, ip("203.0.113.9"), NODE_IP, 30080));
        assert_eq!(v, Verdict::Dnat { ip: ip("10.244.1.5"), port: 8080, masquerade: false });
    }
    // Only a remote endpoint left: external traffic is dropped (not rejected), so a load balancer retries.
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.2.6", "node-b")])));
    p.sync().unwrap();
    let f = p.dataplane_mut();
    assert_eq!(f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), NODE_IP, 30080)), Verdict::Drop);
    // Pods and the host are short-circuited to all endpoints; the host is masqueraded.
    let v = f.trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), NODE_IP, 30080));
    assert_eq!(dnat_target(v), (ip("10.244.2.6"), 8080));
    let v = f.trace(Packet::tcp(Origin::Host, NODE_IP, NODE_IP, 30080));
    assert_eq!(v, Verdict::Dnat { ip: ip("10.244.2.6"), port: 8080, masquerade: true });
    // ClusterIP traffic is unaffected by the external policy.
    let v = f.trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80));
    assert_eq!(dnat_target(v), (ip("10.244.2.6"), 8080));
    // No endpoints anywhere: reject.
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[])));
    p.sync().unwrap();
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::External, ip("203.0.113.9"), NODE_IP, 30080));
    assert_eq!(v, Verdict::Reject);
}

#[test]
fn load_balancer_ips_and_external_ips_are_captured() {
    let mut p = proxier();
    let svc = service(
        "default",
        "web",
        CIP,
        json!({"type": "LoadBalancer", "externalIPs": ["198.51.100.7"], "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let svc = with_status(
        svc,
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.20"}, {"ip": "198.51.100.21", "ipMode": "Proxy"}]}}),
    );
    p.on_service(None, Some(&svc));
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.2.6", "node-b")])));
    p.sync().unwrap();
    let f = p.dataplane_mut();
    let expect = Verdict::Dnat { ip: ip("10.244.2.6"), port: 8080, masquerade: true };
    assert_eq!(f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), ip("198.51.100.20"), 80)), expect);
    assert_eq!(f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), ip("198.51.100.7"), 80)), expect);
    assert_eq!(f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), ip("198.51.100.21"), 80)), Verdict::Accept);
    assert_eq!(f.trace(Packet::tcp(Origin::External, ip("203.0.113.9"), ip("198.51.100.7"), 81)), Verdict::Accept);
}

#[test]
fn internal_traffic_policy_local_uses_local_endpoints_or_drops() {
    let mut p = proxier();
    p.on_service(None, Some(&service("default", "web", CIP, json!({"internalTrafficPolicy": "Local"}))));
    let eps = [ready("10.244.1.5", NODE), ready("10.244.2.6", "node-b")];
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &eps)));
    p.sync().unwrap();
    for _ in 0..20 {
        let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80));
        assert_eq!(dnat_target(v).0, ip("10.244.1.5"));
    }
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.2.6", "node-b")])));
    p.sync().unwrap();
    assert_eq!(p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80)), Verdict::Drop);
    // The node name decides locality.
    p.set_node("node-b");
    p.sync().unwrap();
    let v = p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80));
    assert_eq!(dnat_target(v).0, ip("10.244.2.6"));
}

#[test]
fn same_port_on_tcp_and_udp_and_ports_split_over_slices() {
    let mut p = proxier();
    let svc = service(
        "default",
        "dns",
        CIP,
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
    );
    p.on_service(None, Some(&svc));
    let udp = json!([{"name": "dns", "port": 1053, "protocol": "UDP"}]);
    let tcp = json!([{"name": "dns-tcp", "port": 2053, "protocol": "TCP"}]);
    p.on_slice(None, Some(&slice_ports("default", "dns", "dns-a", udp, &[ready("10.244.1.5", NODE)])));
    p.on_slice(None, Some(&slice_ports("default", "dns", "dns-b", tcp, &[ready("10.244.1.6", NODE)])));
    p.sync().unwrap();
    let f = p.dataplane_mut();
    assert_eq!(dnat_target(f.trace(Packet::udp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 53))), (ip("10.244.1.5"), 1053));
    assert_eq!(dnat_target(f.trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 53))), (ip("10.244.1.6"), 2053));
    // Removing the UDP port leaves TCP working.
    let tcp_only =
        service("default", "dns", CIP, json!({"ports": [{"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}));
    p.on_service(Some(&svc), Some(&tcp_only));
    p.sync().unwrap();
    let f = p.dataplane_mut();
    assert_eq!(f.trace(Packet::udp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 53)), Verdict::Accept);
    assert!(matches!(f.trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 53)), Verdict::Dnat { .. }));
}

#[test]
fn services_of_another_proxy_and_headless_services_are_ignored() {
    let mut p = proxier();
    let mut other = service("default", "web", CIP, json!({}));
    other.metadata.labels =
        Some([("service.kubernetes.io/service-proxy-name".to_string(), "other".to_string())].into());
    p.on_service(None, Some(&other));
    p.on_service(None, Some(&service("default", "headless", "None", json!({}))));
    p.on_slice(None, Some(&slice("default", "web", "web-1", 8080, &[ready("10.244.1.5", NODE)])));
    p.sync().unwrap();
    assert_eq!(p.ruleset().service_ports(), 0);
    assert_eq!(p.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip(CIP), 80)), Verdict::Accept);
}

#[test]
fn two_services_claiming_one_external_ip_do_not_break_the_table() {
    let mut p = proxier();
    let a = service("default", "a", "10.96.0.11", json!({"externalIPs": ["198.51.100.7"]}));
    let b = service("default", "b", "10.96.0.12", json!({"externalIPs": ["198.51.100.7"]}));
    p.on_service(None, Some(&a));
    p.on_service(None, Some(&b));
    p.on_slice(None, Some(&slice("default", "a", "a-1", 8080, &[ready("10.244.1.5", NODE)])));
    p.on_slice(None, Some(&slice("default", "b", "b-1", 8080, &[ready("10.244.1.6", NODE)])));
    p.sync().unwrap();
    let ext = Packet::tcp(Origin::External, ip("203.0.113.9"), ip("198.51.100.7"), 80);
    assert_eq!(dnat_target(p.dataplane_mut().trace(ext)).0, ip("10.244.1.5"));
    p.on_service(Some(&a), None);
    p.sync().unwrap();
    assert_eq!(dnat_target(p.dataplane_mut().trace(ext)).0, ip("10.244.1.6"));
    assert!(p.dataplane().matches(p.ruleset()));
}

#[test]
fn health_targets_count_local_endpoints_of_local_policy_load_balancers() {
    let mut p = proxier();
    let svc = service(
        "default",
        "lb",
        CIP,
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
               "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    p.on_service(None, Some(&svc));
    let eps = [ready("10.244.1.5", NODE), ready("10.244.1.6", NODE), ready("10.244.2.6", "node-b")];
    p.on_slice(None, Some(&slice("default", "lb", "lb-1", 8080, &eps)));
    p.sync().unwrap();
    let targets = p.health_targets();
    assert_eq!(targets.get(&32000).map(|t| t.local_endpoints), Some(2));
    p.on_service(Some(&svc), None);
    p.sync().unwrap();
    assert!(p.health_targets().is_empty());
}
