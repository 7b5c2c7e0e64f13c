//! Incremental updates: a sync emits only the changed Services' ops, and the table they produce equals a full
//! recomputation.

mod common;

use common::*;
use ferry_proxy::dataplane::{Dataplane, Transaction};
use ferry_proxy::ruleset::{MapVerdict, Op};
use ferry_proxy::{desired, render, FakeDataplane, Proxier, Ruleset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

fn cluster_ip(i: usize) -> String {
    format!("10.96.{}.{}", i / 200, i % 200 + 1)
}

fn endpoints(i: usize, n: usize) -> Vec<(String, String)> {
    (0..n).map(|j| (format!("10.244.{}.{}", j % 4 + 1, i % 250 + 1), format!("node-{}", j % 4))).collect()
}

fn svc(i: usize) -> k8s_openapi::api::core::v1::Service {
    service("default", &format!("svc-{i}"), &cluster_ip(i), json!({}))
}

fn slice_of(i: usize, eps: &[(String, String)]) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let eps: Vec<Ep<'_>> = eps.iter().map(|(ip, node)| ready(ip, node)).collect();
    slice("default", &format!("svc-{i}"), &format!("svc-{i}-x"), 8080, &eps)
}

fn op_mentions(op: &Op, needle: &str) -> bool {
    match op {
        Op::AddSet { name, .. }
        | Op::AddChain { name }
        | Op::FillChain { name, .. }
        | Op::FlushChain { name }
        | Op::DeleteChain { name }
        | Op::DeleteSet { name } => name.contains(needle),
        Op::AddElement { verdict: MapVerdict::Goto(chain), .. } => chain.contains(needle),
        Op::AddElement { .. } | Op::DeleteElement { .. } => true,
    }
}

#[test]
fn one_endpoint_change_rewrites_only_that_service() {
    let mut p = proxier();
    for i in 0..50 {
        let eps = endpoints(i, 3);
        p.on_service(None, Some(&svc(i)));
        p.on_slice(None, Some(&slice_of(i, &eps)));
    }
    let first = p.sync().unwrap();
    assert!(first.full);
    assert_eq!(first.services_changed, 50);
    let mut eps = endpoints(17, 3);
    eps[1].0 = "10.244.9.9".into();
    p.on_slice(None, Some(&slice_of(17, &eps)));
    let stats = p.sync().unwrap();
    assert!(!stats.full);
    assert_eq!(stats.services_changed, 1);
    let ops = {
        // Recompute the same change against a copy to inspect the ops themselves.
        let before = {
            let mut q = proxier();
            for i in 0..50 {
                let e = endpoints(i, 3);
                q.on_service(None, Some(&svc(i)));
                q.on_slice(None, Some(&slice_of(i, &e)));
            }
            q.sync().unwrap();
            q.ruleset().clone()
        };
        Ruleset::diff(&before, p.ruleset())
    };
    assert_eq!(ops.len(), stats.ops);
    // With the bridge hairpin rule and no affinity, endpoints are DNAT rules in the service chain: one refill.
    assert_eq!(ops.len(), 1, "{ops:#?}");
    assert!(ops.iter().all(|op| op_mentions(op, "default/svc-17/")), "{ops:#?}");
    let script = render::ops_script("t", &ops);
    assert!(!script.contains("table"), "{script}");
    assert!(script.starts_with("flush chain ip t svc-default/svc-17/tcp/_\n"), "{script}");
    assert!(script.contains("dnat to 10.244.9.9:8080"), "{script}");
    assert!(p.dataplane().matches(p.ruleset()));
}

#[test]
fn unchanged_input_produces_no_ops_and_no_apply() {
    let mut p = proxier();
    let eps = endpoints(1, 2);
    p.on_service(None, Some(&svc(1)));
    p.on_slice(None, Some(&slice_of(1, &eps)));
    p.sync().unwrap();
    let applies = p.dataplane().stats();
    // Re-delivered identical objects (a resync) change nothing.
    assert!(!p.on_service(Some(&svc(1)), Some(&svc(1))));
    assert!(!p.on_slice(Some(&slice_of(1, &eps)), Some(&slice_of(1, &eps))));
    let stats = p.sync().unwrap();
    assert_eq!((stats.services_changed, stats.ops), (0, 0));
    assert_eq!(p.dataplane().stats(), applies);
    assert!(Ruleset::diff(p.ruleset(), p.ruleset()).is_empty());
}

#[test]
fn a_failed_apply_is_followed_by_a_full_rewrite() {
    let mut p = proxier();
    let eps = endpoints(1, 2);
    p.on_service(None, Some(&svc(1)));
    p.on_slice(None, Some(&slice_of(1, &eps)));
    p.sync().unwrap();
    p.dataplane_mut().fail_next_apply();
    p.on_slice(None, Some(&slice_of(1, &endpoints(1, 3))));
    assert!(p.sync().is_err());
    assert!(!p.dataplane().matches(p.ruleset()));
    let stats = p.sync().unwrap();
    assert!(stats.full);
    assert!(p.dataplane().matches(p.ruleset()));
}

/// Random churn: after every sync the fake (which checks ordering and references like the kernel) holds the
/// same table as a from-scratch computation, and `Ruleset::diff` between consecutive states replays cleanly.
#[test]
fn random_churn_keeps_the_incremental_table_equal_to_a_full_recomputation() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut p = proxier();
    let mut replay = FakeDataplane::new();
    let mut previous = p.ruleset().clone();
    replay.apply(&Transaction { ruleset: &previous, ops: &[], full: true, stale_udp_endpoints: &[] }).unwrap();
    let mut services: Vec<Option<k8s_openapi::api::core::v1::Service>> = vec![None; 12];
    let mut slices: Vec<Option<k8s_openapi::api::discovery::v1::EndpointSlice>> = vec![None; 12];
    let mut total_ops = 0;
    for round in 0..200 {
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..12);
            match rng.random_range(0..6) {
                0 => {
                    let old = services[i].take();
                    p.on_service(old.as_ref(), None);
                }
                1 | 2 => {
                    let spec = match rng.random_range(0..5) {
                        0 => json!({"sessionAffinity": "ClientIP",
                                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": rng.random_range(1..4) * 100}}}),
                        1 => json!({"type": "NodePort", "externalTrafficPolicy": "Local",
                                    "ports": [{"port": 80, "nodePort": 30000 + i}]}),
                        2 => json!({"internalTrafficPolicy": "Local", "externalIPs": ["198.51.100.7"]}),
                        3 => {
                            json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 53, "protocol": "UDP"}]})
                        }
                        _ => json!({}),
                    };
                    let new = service("default", &format!("svc-{i}"), &cluster_ip(i), spec);
                    p.on_service(services[i].as_ref(), Some(&new));
                    services[i] = Some(new);
                }
                3 => {
                    let old = slices[i].take();
                    p.on_slice(old.as_ref(), None);
                }
                _ => {
                    let n = rng.random_range(0..5);
                    let eps: Vec<(String, String, bool, bool, bool)> = (0..n)
                        .map(|j| {
                            let ip = format!("10.244.{}.{}", rng.random_range(1..4), j + 10);
                            let node = if rng.random_bool(0.5) { NODE.to_string() } else { "node-b".to_string() };
                            let ready = rng.random_bool(0.7);
                            (ip, node, ready, ready || rng.random_bool(0.5), !ready)
                        })
                        .collect();
                    let refs: Vec<Ep<'_>> =
                        eps.iter().map(|(ip, node, r, s, t)| (ip.as_str(), node.as_str(), *r, *s, *t)).collect();
                    let new = slice("default", &format!("svc-{i}"), &format!("svc-{i}-x"), 8080, &refs);
                    p.on_slice(slices[i].as_ref(), Some(&new));
                    slices[i] = Some(new);
                }
            }
        }
        total_ops += p.sync().unwrap_or_else(|e| panic!("round {round}: {e}")).ops;
        assert!(p.dataplane().matches(p.ruleset()), "round {round}: fake differs from the ruleset");
        let infos: Vec<_> = p.tracker().services().flat_map(|(_, ports)| ports.iter().cloned()).collect();
        let eps: Vec<_> = infos.iter().map(|s| p.tracker().endpoints(s)).collect();
        let full = desired(&config(), NODE, infos.iter().zip(eps.iter().map(Vec::as_slice)));
        assert_eq!(&full, p.ruleset(), "round {round}: incremental ruleset differs from a full recomputation");
        let ops = Ruleset::diff(&previous, p.ruleset());
        let tx = Transaction { ruleset: p.ruleset(), ops: &ops, full: false, stale_udp_endpoints: &[] };
        replay.apply(&tx).unwrap_or_else(|e| panic!("round {round}: replaying diff: {e}"));
        assert!(replay.matches(p.ruleset()), "round {round}");
        previous = p.ruleset().clone();
    }
    assert!(total_ops > 1000, "churn too tame: {total_ops} ops");
}

#[test]
fn desired_state_for_ten_thousand_services_is_fast() {
    // A smoke check of the bench-scale path (the lead's bench measures it properly): 10k services with 10
    // endpoints each, built and rendered in one pass.
    let infos: Vec<ferry_proxy::ServiceInfo> =
        (0..10_000).flat_map(|i| ferry_proxy::ServiceInfo::from_service(&svc(i), None)).collect();
    let eps: Vec<Vec<ferry_proxy::EndpointInfo>> = (0..10_000)
        .map(|i| {
            (0..10u32)
                .map(|j| {
                    ferry_proxy::EndpointInfo::ready(
                        std::net::Ipv4Addr::from(0x0af4_0000 + i * 16 + j),
                        8080,
                        Some("n"),
                    )
                })
                .collect()
        })
        .collect();
    let start = std::time::Instant::now();
    let ruleset = desired(&config(), NODE, infos.iter().zip(eps.iter().map(Vec::as_slice)));
    let script = render::full_script("t", &ruleset);
    let elapsed = start.elapsed();
    assert_eq!(ruleset.service_ports(), 10_000);
    assert!(script.lines().count() > 100_000);
    assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
    let _ = Proxier::new(config(), NODE, FakeDataplane::new());
}
