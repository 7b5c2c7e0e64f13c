//! The nft backend on the real kernel: a private "node" network namespace with a bridge and two pod namespaces,
//! a table programmed in the node namespace, and real TCP connections through ClusterIPs and a NodePort.
//! Needs root, `ip`, `nft` and `python3`; skipped with a message otherwise. Everything it creates lives in
//! namespaces it creates (named `fpx<random hex>…`) and is removed by a drop guard, even on failure.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ready, service, slice};
use ferry_proxy::{BridgeHairpin, NftConfig, NftDataplane, Proxier, ProxyConfig};
use rand::Rng;
use serde_json::json;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Removes what the test made: the server process, then the namespaces (which takes their links and the table).
struct Guard {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

const CLIENT: &str = r#"
import socket, sys, time
s = socket.socket(); s.settimeout(3)
t = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    print(s.recv(64).decode(errors="replace").split("\r\n")[0])
except ConnectionRefusedError:
    print("refused %.3f" % (time.monotonic() - t))
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error", e)
"#;

/// Connects from namespace `ns` to `ip:port`; returns the HTTP status line or `refused <secs>` / `timeout`.
fn connect(ns: &str, ip: &str, port: u16) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", CLIENT, ip, &port.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn assert_ok(ns: &str, ip: &str, port: u16) {
    let got = connect(ns, ip, port);
    assert!(got.starts_with("HTTP/1.0 200"), "{ns} -> {ip}:{port}: {got}");
}

fn assert_refused_fast(ns: &str, ip: &str, port: u16) {
    let got = connect(ns, ip, port);
    let secs: f64 = got.strip_prefix("refused ").and_then(|s| s.parse().ok()).unwrap_or(f64::MAX);
    assert!(secs < 1.0, "{ns} -> {ip}:{port}: expected an immediate refusal, got {got}");
}

#[test]
fn nft_backend_proxies_real_connections() {
    if !is_root() || !have("nft", "--version") || !have("ip", "-V") || !have("python3", "--version") {
        eprintln!("skipping: needs root, nft, ip and python3");
        return;
    }
    let mut rng = rand::rng();
    let tag = format!("fpx{:06x}", rng.random_range(0..0x100_0000u32));
    let octet = rng.random_range(200..250u8);
    let net = |rest: &str| format!("10.{octet}.{rest}");
    let (node, pod_a, pod_b) = (format!("{tag}n"), format!("{tag}a"), format!("{tag}b"));
    let bridge = format!("{tag}br");
    let mut guard = Guard { namespaces: Vec::new(), children: Vec::new() };
    for ns in [&node, &pod_a, &pod_b] {
        run(&["ip", "netns", "add", ns]);
        guard.namespaces.push(ns.clone());
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let gateway = net("1.1");
    run(&["ip", "-n", &node, "link", "add", &bridge, "type", "bridge"]);
    run(&["ip", "-n", &node, "addr", "add", &format!("{gateway}/24"), "dev", &bridge]);
    run(&["ip", "-n", &node, "link", "set", &bridge, "up"]);
    // The node's route to service addresses, as a default route would give on a real host.
    run(&["ip", "-n", &node, "route", "add", "default", "dev", &bridge]);
    run(&["ip", "netns", "exec", &node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    for (ns, host_ip, veth) in [(&pod_a, net("1.2"), format!("{tag}va")), (&pod_b, net("1.3"), format!("{tag}vb"))] {
        run(&["ip", "-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        run(&["ip", "-n", &node, "link", "set", &veth, "master", &bridge, "up"]);
        // With br_netfilter (loaded on this host), a pod's DNATed packet back to itself is bridged out of the
        // port it came in on, which a bridge port only allows in hairpin mode (kubelet's hairpin-veth).
        run(&["ip", "-n", &node, "link", "set", &veth, "type", "bridge_slave", "hairpin", "on"]);
        run(&["ip", "-n", ns, "addr", "add", &format!("{host_ip}/24"), "dev", "eth0"]);
        run(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", ns, "route", "add", "default", "via", &gateway]);
    }
    let server_ip = net("1.2");
    let server = Command::new("ip")
        .args(["netns", "exec", &pod_a, "python3", "-m", "http.server", "8080", "--bind", &server_ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    guard.children.push(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connect(&pod_b, &server_ip, 8080).starts_with("HTTP") {
        assert!(Instant::now() < deadline, "test server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let table = format!("{tag}-proxy");
    let mut nft = NftConfig::new(table.clone());
    nft.netns = Some(node.clone());
    let config = ProxyConfig {
        cluster_cidr: Some(net("0.0/16").parse().unwrap()),
        bridge_hairpin: Some(BridgeHairpin { bridge: bridge.clone(), pod_cidr: net("1.0/24").parse().unwrap() }),
        ..ProxyConfig::default()
    };
    let mut proxier = Proxier::new(config, "node-a", NftDataplane::new(nft));
    let (web_ip, empty_ip) = (net("200.10"), net("200.11"));
    let web =
        service("default", "web", &web_ip, json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
    let empty = service("default", "empty", &empty_ip, json!({}));
    proxier.on_service(None, Some(&web));
    proxier.on_service(None, Some(&empty));
    let web_slice = slice("default", "web", "web-1", 8080, &[ready(&server_ip, "node-a")]);
    proxier.on_slice(None, Some(&web_slice));
    proxier.on_slice(None, Some(&slice("default", "empty", "empty-1", 8080, &[])));
    let stats = proxier.sync().unwrap();
    assert!(stats.full);

    assert_ok(&node, &web_ip, 80); // host → ClusterIP (output hook)
    assert_ok(&pod_b, &web_ip, 80); // pod → ClusterIP → pod on the same bridge
    assert_ok(&pod_a, &web_ip, 80); // hairpin: the endpoint reaching itself
    assert_ok(&pod_b, &gateway, 30080); // NodePort on a node address
    assert_refused_fast(&node, &empty_ip, 80);
    assert_refused_fast(&pod_b, &empty_ip, 80);

    // Incremental updates: the empty service gains the endpoint, web switches to ClientIP affinity.
    proxier.on_slice(None, Some(&slice("default", "empty", "empty-1", 8080, &[ready(&server_ip, "node-a")])));
    let sticky = service(
        "default",
        "web",
        &web_ip,
        json!({"type": "NodePort", "sessionAffinity": "ClientIP", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    proxier.on_service(Some(&web), Some(&sticky));
    let stats = proxier.sync().unwrap();
    assert!(!stats.full && stats.ops > 0, "{stats:?}");
    assert_ok(&pod_b, &empty_ip, 80);
    assert_ok(&pod_b, &web_ip, 80);
    assert_ok(&pod_b, &web_ip, 80);

    // The web service loses its endpoint: refused at once, on the ClusterIP and the NodePort.
    proxier.on_slice(Some(&web_slice), Some(&slice("default", "web", "web-1", 8080, &[])));
    let stats = proxier.sync().unwrap();
    assert!(!stats.full);
    assert_refused_fast(&pod_b, &web_ip, 80);
    assert_refused_fast(&pod_b, &gateway, 30080);
    assert_ok(&pod_b, &empty_ip, 80);

    proxier.cleanup().unwrap();
    let out = Command::new("ip").args(["netns", "exec", &node, "nft", "list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&table));
}

/// Scale check on the real kernel (run by hand: `cargo test -p ferry-proxy --test linux -- --ignored`):
/// 10k Services × 10 endpoints written whole, then a one-endpoint change applied as a diff.
#[test]
#[ignore = "slow: programs 10k services into a private namespace"]
fn nft_backend_scale_full_and_incremental() {
    if !is_root() || !have("nft", "--version") || !have("ip", "-V") {
        eprintln!("skipping: needs root, nft and ip");
        return;
    }
    let tag = format!("fpx{:06x}", rand::rng().random_range(0..0x100_0000u32));
    let mut guard = Guard { namespaces: Vec::new(), children: Vec::new() };
    run(&["ip", "netns", "add", &tag]);
    guard.namespaces.push(tag.clone());
    let mut nft = NftConfig::new(format!("{tag}-proxy"));
    nft.netns = Some(tag.clone());
    // With a bridge hairpin rule endpoints are DNAT rules in the service chains (the common configuration).
    let config = ProxyConfig {
        bridge_hairpin: Some(BridgeHairpin { bridge: format!("{tag}br"), pod_cidr: "10.128.0.0/16".parse().unwrap() }),
        ..ProxyConfig::default()
    };
    let mut proxier = Proxier::new(config, "node-a", NftDataplane::new(nft));
    let ep = |i: u32, j: u32| std::net::Ipv4Addr::from(0x0a80_0000 + i * 16 + j).to_string();
    let slice_of = |i: u32, n: u32, shift: u32| {
        let ips: Vec<String> = (0..n).map(|j| ep(i, j + shift)).collect();
        let eps: Vec<common::Ep<'_>> = ips.iter().map(|ip| ready(ip, "node-b")).collect();
        slice("default", &format!("s{i}"), &format!("s{i}-x"), 8080, &eps)
    };
    for i in 0..10_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a60_0000 + i).to_string();
        proxier.on_service(None, Some(&service("default", &format!("s{i}"), &ip, json!({}))));
        proxier.on_slice(None, Some(&slice_of(i, 10, 0)));
    }
    let full = proxier.sync().unwrap();
    proxier.on_slice(None, Some(&slice_of(9_999, 10, 1)));
    let incremental = proxier.sync().unwrap();
    eprintln!("full: {full:?}\nincremental: {incremental:?}");
    assert_eq!(incremental.ops, 1);
}
