//! The healthCheckNodePort server answers upstream's way and follows the reconciled target set.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ferry_proxy::{HealthServer, HealthTarget, ServiceName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn free_port() -> u16 {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    socket.local_addr().unwrap().port()
}

async fn get(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out)).await??;
    Ok(out)
}

#[tokio::test]
async fn health_port_reports_local_endpoints_and_follows_reconcile() {
    let port = free_port().await;
    let mut server = HealthServer::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let target = |n| HealthTarget { service: ServiceName::new("shop", "front"), local_endpoints: n };
    let mut targets = BTreeMap::from([(port, target(0))]);
    assert!(server.reconcile(&targets).await.is_empty());
    assert_eq!(server.ports(), vec![port]);

    let response = get(port).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"service": {"namespace": "shop", "name": "front"}, "localEndpoints": 0, "serviceProxyHealthy": true})
    );

    targets.insert(port, target(2));
    assert!(server.reconcile(&targets).await.is_empty());
    let response = get(port).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"localEndpoints\":2"), "{response}");

    server.reconcile(&BTreeMap::new()).await;
    assert!(server.ports().is_empty());
    let mut refused = false;
    for _ in 0..50 {
        if get(port).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener still answering after it was removed");
    server.shutdown().await;
}
