//! In-process tests of the stand-ins for the book's images: `kubia` and `kubia-unhealthy` on a 127.0.0.1 ephemeral
//! port driven by a raw HTTP client; `ssd-monitor` and `batch-job` writing into a buffer under paused time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ferry_agnhost::book_scripts::{batch_job, ssd_monitor, BATCH_JOB_DEFAULT, SSD_MONITOR_INTERVAL};
use ferry_agnhost::kubia::{Kubia, KubiaVariant};
use ferry_agnhost::{BindHost, HostnameSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// One GET with `Connection: close`: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn start(variant: KubiaVariant) -> SocketAddr {
    let loopback = BindHost::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let app = Kubia::bind(loopback, 0, variant, HostnameSource::Fixed("kubia-x7".into())).await.unwrap();
    let addr = app.addr().unwrap();
    tokio::spawn(app.run());
    addr
}

#[tokio::test]
async fn kubia_answers_every_request_with_the_hostname() {
    let addr = start(KubiaVariant::Healthy).await;
    for path in ["/", "/anything", "/healthz", "/", "/", "/", "/"] {
        assert_eq!(get(addr, path).await, (200, "You've hit kubia-x7\n".to_string()), "{path}");
    }
}

#[tokio::test]
async fn kubia_unhealthy_fails_from_the_sixth_request_on() {
    let addr = start(KubiaVariant::Unhealthy).await;
    for _ in 0..5 {
        assert_eq!(get(addr, "/").await, (200, "You've hit kubia-x7\n".to_string()));
    }
    for _ in 0..3 {
        assert_eq!(get(addr, "/").await, (500, "I'm not well. Please restart me!".to_string()));
    }
}

#[tokio::test(start_paused = true)]
async fn ssd_monitor_prints_ssd_ok_every_five_seconds() {
    assert_eq!(SSD_MONITOR_INTERVAL, Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    assert_eq!(ssd_monitor(&mut out, SSD_MONITOR_INTERVAL, Some(3)).await, 0);
    assert_eq!(String::from_utf8(out).unwrap(), "SSD OK\nSSD OK\nSSD OK\n");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn batch_job_reports_start_and_end_and_exits_zero() {
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    assert_eq!(batch_job(&mut out, BATCH_JOB_DEFAULT).await, 0);
    assert_eq!(started.elapsed(), Duration::from_secs(120));
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(" UTC "), "{text}");
    assert!(lines[0].ends_with(" Batch job starting"), "{text}");
    assert!(lines[1].ends_with(" Finished succesfully"), "{text}");
}
