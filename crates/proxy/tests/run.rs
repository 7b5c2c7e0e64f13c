//! The event loop: events in, batched syncs out, the proxier handed back when the channel closes.

mod common;

use std::time::Duration;

use common::*;
use ferry_proxy::{run, Origin, Packet, ProxyEvent, RunConfig, Verdict};
use serde_json::json;

#[tokio::test]
async fn run_applies_events_and_returns_the_proxier_when_the_channel_closes() {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let timing = RunConfig { min_sync_interval: Duration::from_millis(1), retry_interval: Duration::from_millis(1) };
    let task = tokio::spawn(run(proxier(), rx, None, timing));
    let svc = service("default", "web", "10.96.0.10", json!({}));
    tx.send(ProxyEvent::Service { old: None, new: Some(Box::new(svc)) }).await.unwrap();
    let eps = slice("default", "web", "web-1", 8080, &[ready("10.244.1.5", NODE)]);
    tx.send(ProxyEvent::Slice { old: None, new: Some(Box::new(eps)) }).await.unwrap();
    drop(tx);
    let mut proxier = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert!(!proxier.has_pending());
    let v = proxier.dataplane_mut().trace(Packet::tcp(Origin::Pod, ip("10.244.1.9"), ip("10.96.0.10"), 80));
    assert!(matches!(v, Verdict::Dnat { port: 8080, .. }), "{v:?}");
}
