//! `ferry-bench-proxy`: the Service proxy's numbers (perf-targets N1–N5), each beside a peer measured in the same
//! run. Part "scale" needs no cluster: in a network namespace it creates, it drives `ferry_proxy::Proxier` with an
//! `NftDataplane` over synthetic Services and EndpointSlices (1, 10 and N services, E endpoints each) and measures
//! the full sync, the cost of a one-endpoint change, and per-connection latency to the last service added (a TCP
//! backend in the namespace). The peer is the kube-proxy iptables-mode shape written as an nftables ruleset (one
//! rule per service in one chain, a chain per service picking an endpoint with one random rule per endpoint, a
//! chain per endpoint that DNATs), loaded with `nft -f`. Part "cluster" starts a whole `ferry server` (its node
//! agent runs the proxy) with agnhost netexec backends: requests per second and latency through a ClusterIP
//! beside the same load to a pod IP (keep-alive and one request per connection), and network programming latency
//! (EndpointSlice written → rule live, seen as the first successful connection). Prints markdown tables. A
//! benchmark, not a test: it reports numbers and never judges them. Needs root, `ip` and `nft`.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ferry_bench::node::{ms, ratio, require_root, summary, Summary};
use ferry_proxy::{render, NftConfig, NftDataplane, Proxier, ProxyConfig};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rand::Rng;

#[path = "proxy/cluster.rs"]
mod cluster;

#[derive(Parser, Debug, Clone)]
#[command(name = "ferry-bench-proxy", about = "Service proxy: data plane, rule programming, scale (N1–N5)")]
pub struct Args {
    /// The ferry binary to start for the cluster part (`ferry server ...`, `ferry agnhost netexec`).
    #[arg(long, default_value = "target/release/ferry")]
    pub ferry_bin: PathBuf,
    /// Services loaded in the scale part (N2–N4).
    #[arg(long, default_value_t = 10_000)]
    pub services: usize,
    /// Endpoints per service in the scale part.
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// Sequential connections per latency measurement in the scale part.
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Rounds of each connection-latency measurement (the median round is reported).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// One-endpoint changes timed per scale.
    #[arg(long, default_value_t = 20)]
    pub changes: usize,
    /// Which parts to run: `scale`, `cluster`, or `all`.
    #[arg(long, default_value = "all")]
    pub part: String,
    /// Seconds of load per data-plane run in the cluster part (N1).
    #[arg(long, default_value_t = 10)]
    pub load_secs: u64,
    /// Concurrent clients of the cluster part's load.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Endpoint changes timed in the cluster part (N5).
    #[arg(long, default_value_t = 30)]
    pub programming_changes: usize,
    /// Extra selector-less Services (one ready endpoint each, written as EndpointSlices) loaded into the cluster
    /// before the programming-latency run.
    #[arg(long, default_value_t = 1000)]
    pub background_services: usize,
    /// Where the server's data dir is made.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Give up (stopping everything started) after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
}

/// Set when the run gives up (timeout or Ctrl-C): the blocking scale part stops at its next step.
static CANCELLED: AtomicBool = AtomicBool::new(false);

fn check_cancelled() -> Result<()> {
    if CANCELLED.load(Ordering::Relaxed) {
        bail!("cancelled");
    }
    Ok(())
}

/// Port the namespace's backend listens on; every endpoint of the probed service points at it.
const BACKEND_PORT: u16 = 8080;
/// The probed service's endpoints: addresses on the namespace's loopback.
const PROBE_NET: [u8; 2] = [10, 255];

/// A network namespace this benchmark created; deleted (with every table and address in it) on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Result<Netns> {
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        // Service addresses need a route for connect() to reach the output hook, as a node's default route gives.
        run(&["ip", "-n", &ns.name, "link", "add", "svc0", "type", "veth", "peer", "name", "svc1"])?;
        run(&["ip", "-n", &ns.name, "link", "set", "svc1", "up"])?;
        run(&["ip", "-n", &ns.name, "link", "set", "svc0", "up"])?;
        run(&["ip", "-n", &ns.name, "route", "add", "172.16.0.0/12", "dev", "svc0"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

fn run(args: &[&str]) -> Result<String> {
    ferry_bench::node::sh(args[0], &args[1..])
}

/// Runs `f` on a new thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        f()
    })
}

fn join<T>(handle: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    handle.join().map_err(|_| anyhow::anyhow!("thread panicked"))?
}

/// A one-request-per-connection HTTP backend on a thread inside a namespace; stopped on drop.
struct Backend {
    ns: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Backend {
    fn start(ns: &str) -> Result<Backend> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = in_netns(ns, move || {
            let listener = TcpListener::bind(("0.0.0.0", BACKEND_PORT)).context("binding the backend")?;
            let _ = tx.send(());
            let mut buf = [0u8; 1024];
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 8192 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
            Ok(())
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            bail!("backend did not start: {:?}", join(thread).err());
        }
        Ok(Backend { ns: ns.to_string(), stop, thread: Some(thread) })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // One connection wakes the accept loop so it sees the flag.
        let _ = join(in_netns(&self.ns, || {
            let addr = SocketAddr::from(([127, 0, 0, 1], BACKEND_PORT));
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            Ok(())
        }));
        if let Some(t) = self.thread.take() {
            let _ = join(t);
        }
    }
}

/// [`connection_latencies`] in `rounds` rounds: the median round's p50 and p99 and its connections per second
/// (medians taken separately), so one disturbed round on a shared machine does not decide the result.
fn connection_rounds(ns: &str, addr: SocketAddrV4, count: usize, rounds: usize) -> Result<(Summary, f64)> {
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxes = Vec::new();
    let mut rates = Vec::new();
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let samples = connection_latencies(ns, addr, count)?;
        rates.push(samples.len() as f64 / t.elapsed().as_secs_f64());
        let s = summary(&samples);
        p50s.push(s.p50);
        p99s.push(s.p99);
        maxes.push(s.max);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    rates.sort_by(f64::total_cmp);
    let rate = rates[rates.len() / 2];
    Ok((Summary { p50: median(p50s), p99: median(p99s), max: median(maxes) }, rate))
}

/// `count` sequential connections from inside `ns` to `addr`, each one GET and its response: the time of each.
fn connection_latencies(ns: &str, addr: SocketAddrV4, count: usize) -> Result<Vec<Duration>> {
    join(in_netns(ns, move || {
        let mut out = Vec::with_capacity(count);
        let mut response = Vec::with_capacity(128);
        for i in 0..count + count / 10 {
            check_cancelled()?;
            let t0 = Instant::now();
            let mut conn = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(2))
                .with_context(|| format!("connecting to {addr}"))?;
            conn.set_nodelay(true)?;
            conn.set_read_timeout(Some(Duration::from_secs(2)))?;
            conn.write_all(b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n")?;
            response.clear();
            conn.read_to_end(&mut response)?;
            let took = t0.elapsed();
            // Close with a reset: no TIME_WAIT on either side, so a reused source port never meets an old
            // connection's state after DNAT (which the kernel's port choice, made before DNAT, cannot see).
            let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
            drop(conn);
            if !response.starts_with(b"HTTP/1.1 200") {
                bail!("{addr}: unexpected response {:?}", String::from_utf8_lossy(&response));
            }
            // The first tenth warms caches and is not counted.
            if i >= count / 10 {
                out.push(took);
            }
        }
        Ok(out)
    }))
}

fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 20 + (i / 62_500) as u8, ((i / 250) % 250) as u8, (i % 250 + 1) as u8)
}

/// Endpoint `j` of service `i`: the probe (the last service) uses the namespace's loopback addresses; every
/// other service gets addresses nothing answers on.
fn endpoint_ip(i: usize, j: usize, probe: bool) -> Ipv4Addr {
    if probe {
        return Ipv4Addr::new(PROBE_NET[0], PROBE_NET[1], 0, (j + 1) as u8);
    }
    let n = (i * 64 + j) as u32;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + n)
}

fn service(i: usize) -> Result<Service> {
    let ip = cluster_ip(i).to_string();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {
            "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": BACKEND_PORT}]
        }
    }))
    .context("service")
}

/// The slice of service `i` with `n` endpoints; `not_ready` marks one of them not ready (the one-endpoint change).
fn slice(i: usize, n: usize, probe: bool, not_ready: Option<usize>) -> Result<EndpointSlice> {
    let endpoints: Vec<serde_json::Value> = (0..n)
        .map(|j| {
            serde_json::json!({
                "addresses": [endpoint_ip(i, j, probe).to_string()],
                "conditions": {"ready": not_ready != Some(j), "serving": true, "terminating": false},
                "nodeName": "bench-node"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-abc"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "", "port": BACKEND_PORT, "protocol": "TCP"}]
    }))
    .context("endpointslice")
}

/// What one scale of ferry's proxy measured.
struct FerryScale {
    services: usize,
    full_sync: Duration,
    script_bytes: usize,
    script_lines: usize,
    /// `nft -f` of the identical full script (the table replaced in one transaction).
    nft_same_script: Duration,
    /// `nft -f` of a two-line script (add and delete an empty chain) against the loaded table.
    nft_tiny_script: Duration,
    change: Summary,
    change_ops: usize,
    conn: Summary,
    conn_per_sec: f64,
}

fn ferry_scale(ns: &str, table: &str, args: &Args, n: usize) -> Result<FerryScale> {
    let config =
        NftConfig { table: table.to_string(), netns: Some(ns.to_string()), nft: "nft".into(), conntrack: None };
    let mut proxier = Proxier::new(ProxyConfig::default(), "bench-node", NftDataplane::new(config.clone()));
    let result = ferry_scale_with(&mut proxier, ns, args, n);
    let cleaned = proxier.cleanup();
    let r = result?;
    cleaned.context("removing the table")?;
    Ok(r)
}

fn ferry_scale_with(proxier: &mut Proxier<NftDataplane>, ns: &str, args: &Args, n: usize) -> Result<FerryScale> {
    let e = args.endpoints;
    let probe = n - 1;
    for i in 0..n {
        proxier.on_service(None, Some(&service(i)?));
        proxier.on_slice(None, Some(&slice(i, e, i == probe, None)?));
    }
    let stats = proxier.sync().context("full sync")?;
    let script = render::full_script(&proxier.dataplane().config().table, proxier.ruleset());
    let t = Instant::now();
    proxier.dataplane().run_script(&script).context("nft -f of the same script")?;
    let nft_same_script = t.elapsed();
    let table = proxier.dataplane().config().table.clone();
    let t = Instant::now();
    let tiny = format!("add chain ip {table} bench-probe\ndelete chain ip {table} bench-probe\n");
    proxier.dataplane().run_script(&tiny).context("nft -f of a two-line script")?;
    let nft_tiny_script = t.elapsed();

    // One endpoint of one service (the first, or the probe when it is the only one) flips ready and back.
    let changed = 0;
    let mut current = slice(changed, e, changed == probe, None)?;
    let mut samples = Vec::with_capacity(args.changes);
    let mut ops = 0;
    for k in 0..args.changes.max(2).next_multiple_of(2) {
        check_cancelled()?;
        let next = slice(changed, e, changed == probe, (k % 2 == 0).then_some(0))?;
        proxier.on_slice(Some(&current), Some(&next));
        let s = proxier.sync().context("one-endpoint sync")?;
        samples.push(s.elapsed);
        ops = ops.max(s.ops);
        current = next;
    }

    let (conn, conn_per_sec) =
        connection_rounds(ns, SocketAddrV4::new(cluster_ip(probe), 80), args.connections, args.rounds)?;
    Ok(FerryScale {
        services: n,
        full_sync: stats.elapsed,
        script_bytes: script.len(),
        script_lines: script.lines().count(),
        nft_same_script,
        nft_tiny_script,
        change: summary(&samples),
        change_ops: ops,
        conn,
        conn_per_sec,
    })
}

/// The kube-proxy iptables-mode shape in nftables syntax for `n` services of `e` endpoints.
fn linear_script(table: &str, n: usize, e: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(n * e * 120);
    let _ = writeln!(out, "add table ip {table}\ndelete table ip {table}\nadd table ip {table}");
    let _ = writeln!(out, "add chain ip {table} output {{ type nat hook output priority -100 ; }}");
    let _ = writeln!(out, "add chain ip {table} services");
    let _ = writeln!(out, "add rule ip {table} output jump services");
    for i in 0..n {
        let probe = i == n - 1;
        let _ = writeln!(out, "add chain ip {table} svc-{i}");
        for j in 0..e {
            let _ = writeln!(out, "add chain ip {table} sep-{i}-{j}");
            let _ = writeln!(
                out,
                "add rule ip {table} sep-{i}-{j} meta l4proto tcp dnat to {}:{BACKEND_PORT}",
                endpoint_ip(i, j, probe)
            );
            if j + 1 < e {
                let _ = writeln!(out, "add rule ip {table} svc-{i} numgen random mod {} 0 jump sep-{i}-{j}", e - j);
            } else {
                let _ = writeln!(out, "add rule ip {table} svc-{i} jump sep-{i}-{j}");
            }
        }
        let _ = writeln!(out, "add rule ip {table} services ip daddr {} tcp dport 80 jump svc-{i}", cluster_ip(i));
    }
    out
}

struct LinearScale {
    load: Duration,
    script_lines: usize,
    conn: Summary,
    conn_per_sec: f64,
}

fn linear_scale(ns: &str, table: &str, args: &Args, n: usize) -> Result<LinearScale> {
    let dataplane = NftDataplane::new(NftConfig {
        table: table.into(),
        netns: Some(ns.into()),
        nft: "nft".into(),
        conntrack: None,
    });
    let script = linear_script(table, n, args.endpoints);
    let t = Instant::now();
    dataplane.run_script(&script).context("nft -f of the linear ruleset")?;
    let load = t.elapsed();
    let measured = connection_rounds(ns, SocketAddrV4::new(cluster_ip(n - 1), 80), args.connections, args.rounds);
    let cleaned = dataplane.run_script(&format!("delete table ip {table}\n"));
    let (conn, conn_per_sec) = measured?;
    cleaned.context("removing the linear table")?;
    Ok(LinearScale { load, script_lines: script.lines().count(), conn, conn_per_sec })
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn scale_part(args: &Args) -> Result<String> {
    let tag = format!("fbp{:06x}", rand::rng().random_range(0..0x100_0000u32));
    let netns = Netns::create(tag.clone())?;
    for j in 0..args.endpoints {
        let ip = endpoint_ip(0, j, true);
        run(&["ip", "-n", &netns.name, "addr", "add", &format!("{ip}/32"), "dev", "lo"])?;
    }
    let _backend = Backend::start(&netns.name)?;
    let n = args.services.max(10);
    eprintln!("ferry-bench-proxy: direct connections to the backend (no table)");
    let direct_addr = SocketAddrV4::new(endpoint_ip(0, 0, true), BACKEND_PORT);
    let (direct, direct_rate) = connection_rounds(&netns.name, direct_addr, args.connections, args.rounds)?;
    let mut ferry = Vec::new();
    let mut linear = Vec::new();
    for scale in [1, 10, n] {
        check_cancelled()?;
        eprintln!("ferry-bench-proxy: ferry proxier, {scale} services × {} endpoints", args.endpoints);
        ferry.push(ferry_scale(&netns.name, &format!("{tag}-ferry"), args, scale)?);
        if scale != 10 {
            eprintln!("ferry-bench-proxy: linear-chain ruleset, {scale} services × {} endpoints", args.endpoints);
            linear.push(linear_scale(&netns.name, &format!("{tag}-linear"), args, scale)?);
        }
    }
    let (f1, f10, fnn) = (&ferry[0], &ferry[1], &ferry[2]);
    let (l1, ln) = (&linear[0], &linear[1]);
    let e = args.endpoints;
    let mut out = String::new();
    out.push_str(&format!(
        "| {n} services × {e} endpoints | ferry proxier (nft vmap) | iptables-shaped linear chain (`nft -f`) | ratio |\n"
    ));
    out.push_str("|---|---:|---:|---:|\n");
    out.push_str(&format!(
        "| full load (ms): ferry sync (diff, render, `nft -f`) / `nft -f` of the linear ruleset (N3) | {:.1} | {:.1} | {} |\n",
        ms(fnn.full_sync),
        ms(ln.load),
        ratio(ms(fnn.full_sync), ms(ln.load))
    ));
    out.push_str(&format!(
        "| `nft -f` of ferry's identical full script (ms) | {:.1} | – | {} vs ferry sync |\n",
        ms(fnn.nft_same_script),
        ratio(ms(fnn.full_sync), ms(fnn.nft_same_script))
    ));
    out.push_str(&format!("| script lines | {} | {} | |\n", fnn.script_lines, ln.script_lines));
    out.push_str(&format!(
        "| one-endpoint change, sync p50 / p99 (ms) (N4) | {:.2} / {:.2} | full reload | |\n",
        ms(fnn.change.p50),
        ms(fnn.change.p99)
    ));
    out.push_str(&format!(
        "| `nft -f` of a 2-line script (add + delete an empty chain) against the loaded table (ms) | {:.1} | | \
         {:.1} at 10 services |\n",
        ms(fnn.nft_tiny_script),
        ms(f10.nft_tiny_script)
    ));
    out.push_str(&format!(
        "| same change at 10 services, p50 / p99 (ms); ratio {n} vs 10 | {:.2} / {:.2} | | {} |\n",
        ms(f10.change.p50),
        ms(f10.change.p99),
        ratio(ms(fnn.change.p50), ms(f10.change.p50))
    ));
    out.push_str(&format!(
        "| per-connection latency to the last service, p50 / p99 (µs) (N2) | {} / {} | {} / {} | {} |\n",
        us(fnn.conn.p50),
        us(fnn.conn.p99),
        us(ln.conn.p50),
        us(ln.conn.p99),
        ratio(ms(fnn.conn.p50), ms(ln.conn.p50))
    ));
    out.push_str(&format!(
        "| sequential connections per second to the last service | {:.0} | {:.0} | {} |\n",
        fnn.conn_per_sec,
        ln.conn_per_sec,
        ratio(fnn.conn_per_sec, ln.conn_per_sec)
    ));
    out.push_str(&format!(
        "| same at 1 service, p50 / p99 (µs); conn/s | {} / {}; {:.0} | {} / {}; {:.0} | |\n",
        us(f1.conn.p50),
        us(f1.conn.p99),
        f1.conn_per_sec,
        us(l1.conn.p50),
        us(l1.conn.p99),
        l1.conn_per_sec
    ));
    out.push_str(&format!(
        "| {n} vs 1 service: conn/s ratio (scale invariance) | {} | {} | |\n",
        ratio(fnn.conn_per_sec, f1.conn_per_sec),
        ratio(ln.conn_per_sec, l1.conn_per_sec)
    ));
    out.push_str(&format!(
        "| full load at 1 / 10 services (ms) | {:.1} / {:.1} | {:.1} / – | |\n",
        ms(f1.full_sync),
        ms(f10.full_sync),
        ms(l1.load)
    ));
    out.push('\n');
    out.push_str(&format!(
        "- direct to the backend address (no table): p50 / p99 {} / {} µs, {direct_rate:.0} connections/s\n",
        us(direct.p50),
        us(direct.p99)
    ));
    out.push_str(&format!(
        "- one-endpoint change: one endpoint of one service flips ready ↔ not ready, then `Proxier::sync` (change \
         tracking, fragment diff, `nft -f -` of the ops; up to {} ops at {n} services); {} changes per scale\n",
        fnn.change_ops, args.changes
    ));
    out.push_str(&format!(
        "- connections: {} rounds of {} sequential TCP connections (median round's p50, p99 and rate) from inside the namespace (connect, one HTTP GET, response, \
         reset-close after the server's FIN so no TIME_WAIT is left; a tenth more first as warm-up) to the last service's ClusterIP, DNATed by the output hook to one \
         of {e} endpoints on the namespace's loopback served by one in-process backend thread\n",
        args.rounds,
        args.connections
    ));
    out.push_str(&format!(
        "- scripts: ferry's full script is {:.1} MB; every `nft` run is `ip netns exec {tag} nft -f -` (same \
         process overhead on both sides); the linear peer has one `ip daddr . tcp dport` rule per service in one \
         chain, per-service chains with `numgen random` rules and per-endpoint DNAT chains (no masquerade rules)\n",
        fnn.script_bytes as f64 / 1e6
    ));
    out.push_str(&format!("- services {}, {} and {n}; cpus: {}\n", f1.services, f10.services, cpus()));
    Ok(out)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

async fn run_parts(args: &Args) -> Result<String> {
    require_root()?;
    let mut out = String::new();
    if args.part == "scale" || args.part == "all" {
        let a = args.clone();
        out.push_str(&tokio::task::spawn_blocking(move || scale_part(&a)).await??);
        out.push('\n');
    }
    if args.part == "cluster" || args.part == "all" {
        out.push_str(&cluster::run(args).await?);
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let table = rt.block_on(async {
        let limit = Duration::from_secs(args.timeout_secs.max(1));
        let result = tokio::select! {
            r = tokio::time::timeout(limit, run_parts(&args)) => match r {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("gave up after {limit:?} (--timeout-secs); everything started was stopped")),
            },
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; everything started was stopped")),
        };
        // A blocking part still running stops at its next step (its guards clean up) before the runtime ends.
        CANCELLED.store(true, Ordering::Relaxed);
        result
    })?;
    rt.shutdown_timeout(Duration::from_secs(5));
    print!("{table}");
    Ok(())
}
