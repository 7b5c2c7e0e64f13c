//! The cluster part of `ferry-bench-proxy`: a whole `ferry server` whose node agent runs the Service proxy (table
//! `<prefix>-proxy`), agnhost netexec backends, and from the host (a) closed-loop HTTP load through a ClusterIP
//! beside the same load to the pod IP (N1), and (b) network programming latency: a backend pod's label flips so
//! the endpoint controllers add it to (or drop it from) a Service's EndpointSlice, timed from the API write and
//! from the slice's watch event to the first connection that gets an answer (or a refusal) through the ClusterIP
//! (N5). Traffic goes only to the node's own Service and pod addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_bench::node::{host_footprint, ms, pick_network, ratio, sh, summary, wait_node_ready, Summary};
use ferry_bench::node::{PodWatch, Server};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::Args;

const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const NAMESPACE: &str = "default";
const PORT: u16 = 8080;
/// The longest anything in this part waits for one condition.
const WAIT: Duration = Duration::from_secs(60);

fn netexec_pod(name: &str, labels: serde_json::Value) -> Result<Pod> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "netexec", "image": IMAGE, "args": ["netexec", "--http-port", PORT.to_string()]}]
        }
    }))
    .context("pod manifest")
}

fn selector_service(name: &str, selector: serde_json::Value) -> Result<Service> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "protocol": "TCP", "targetPort": PORT}]}
    }))
    .context("service manifest")
}

/// One GET on an open connection; fails unless the answer is a 200 with a body of its Content-Length.
async fn http_get(stream: &mut TcpStream, buf: &mut Vec<u8>, close: bool) -> Result<()> {
    let request: &[u8] = if close {
        b"GET /hostname HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    } else {
        b"GET /hostname HTTP/1.1\r\nHost: bench\r\n\r\n"
    };
    stream.write_all(request).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let mut want = None;
    loop {
        if let Some(w) = want {
            if buf.len() >= w {
                return Ok(());
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        buf.extend_from_slice(&chunk[..n]);
        if want.is_none() {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]);
                if !head.starts_with("HTTP/1.1 200") {
                    bail!("unexpected response: {}", head.lines().next().unwrap_or(""));
                }
                let len = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .context("response without Content-Length")?;
                want = Some(end + 4 + len);
            }
        }
    }
}

/// What one closed-loop load run measured.
struct Load {
    requests: usize,
    errors: usize,
    latency: Summary,
    per_sec: f64,
}

/// `concurrency` clients, each sending one request after another for `secs`: over one kept-alive connection
/// each, or a new connection per request (the server closes it).
/// `linger_time_wait`: close new connections normally after the server's FIN (the backend keeps TIME_WAIT)
/// instead of with a reset.
async fn load(
    addr: SocketAddr,
    keep_alive: bool,
    linger_time_wait: bool,
    concurrency: usize,
    secs: f64,
) -> Result<Load> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(65_536);
            let mut errors = 0usize;
            let mut buf = Vec::with_capacity(1024);
            let mut conn: Option<TcpStream> = None;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let attempt = async {
                    if conn.is_none() {
                        let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
                        s.set_nodelay(true)?;
                        conn = Some(s);
                    }
                    let stream = conn.as_mut().context("connection")?;
                    http_get(stream, &mut buf, !keep_alive).await?;
                    if !keep_alive {
                        // After the server's FIN, close with a reset: no TIME_WAIT on either side, so a reused
                        // source port never meets an old connection's state after DNAT.
                        let mut rest = [0u8; 64];
                        let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut rest)).await;
                        if !linger_time_wait {
                            let _ = socket2::SockRef::from(&*stream).set_linger(Some(Duration::ZERO));
                        }
                        conn = None;
                    }
                    Ok::<_, anyhow::Error>(())
                };
                match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                    Ok(Ok(())) => latencies.push(t0.elapsed()),
                    _ => {
                        errors += 1;
                        conn = None;
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Load {
        requests: latencies.len(),
        errors,
        latency: summary(&latencies),
        per_sec: latencies.len() as f64 / elapsed,
    })
}

/// Polls `nft list table` (every 20 ms, at most [`WAIT`]) until it mentions `needle`.
async fn wait_in_table(table: &str, needle: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let listing = sh("nft", &["list", "table", "ip", table]).unwrap_or_default();
        if listing.contains(needle) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{needle} not in table {table} after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to `addr` every millisecond (at most [`WAIT`]) until a GET is answered (`want_answer`) or the
/// connection is refused (the proxy's reject rule for a Service without endpoints).
async fn wait_reachable(addr: SocketAddr, want_answer: bool) -> Result<Instant> {
    let deadline = Instant::now() + WAIT;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let attempt = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await;
        let (answered, refused) = match attempt {
            Ok(Ok(mut s)) => {
                let _ = s.set_nodelay(true);
                let got = tokio::time::timeout(Duration::from_secs(1), http_get(&mut s, &mut buf, true)).await;
                (got.is_ok_and(|r| r.is_ok()), false)
            }
            Ok(Err(e)) => (false, e.kind() == std::io::ErrorKind::ConnectionRefused),
            Err(_) => (false, false),
        };
        if (want_answer && answered) || (!want_answer && refused) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("{addr}: still {} after {WAIT:?}", if want_answer { "not answering" } else { "answering" });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Sends (arrival time, ready endpoints) for every watch event of the Service's EndpointSlices.
async fn watch_slices(
    api: Api<EndpointSlice>,
    service: String,
    tx: mpsc::UnboundedSender<(Instant, usize)>,
) -> Result<()> {
    let selector = format!("kubernetes.io/service-name={service}");
    let params = WatchParams::default().labels(&selector).timeout(290);
    let mut stream = api.watch(&params, "0").await?.boxed();
    while let Some(event) = stream.try_next().await? {
        let at = Instant::now();
        if let WatchEvent::Added(s) | WatchEvent::Modified(s) = event {
            let ready =
                s.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)).count();
            if tx.send((at, ready)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn cluster_ip(svc: &Service) -> Result<Ipv4Addr> {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_ref()).context("no clusterIP")?.parse().context("clusterIP")
}

fn pod_ip(pod: &Pod) -> Result<Ipv4Addr> {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).context("no podIP")?.parse().context("podIP")
}

struct Programming {
    from_write: Vec<Duration>,
    from_slice: Vec<Duration>,
    removal_from_write: Vec<Duration>,
}

/// Selector-less Services with one EndpointSlice each (one ready endpoint on an address nothing uses), so the
/// proxy's table holds `n` more services while the programming latency is measured.
async fn background_services(client: &kube::Client, n: usize, octet: u32) -> Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= 16 {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
        let (services, slices) = (services.clone(), slices.clone());
        tasks.spawn(async move {
            let name = format!("bench-bg-{i}");
            let svc: Service = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": PORT}]}
            }))?;
            services.create(&PostParams::default(), &svc).await?;
            // Addresses in the pod network's top /17, which the node agent does not hand out here.
            let ip = Ipv4Addr::new(10, octet as u8, 128 + (i / 250) as u8, (i % 250 + 1) as u8);
            let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
                "ports": [{"name": "", "port": PORT, "protocol": "TCP"}]
            }))?;
            slices.create(&PostParams::default(), &slice).await?;
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

async fn programming(client: &kube::Client, table: &str, changes: usize) -> Result<Programming> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let svc = services
        .create(&PostParams::default(), &selector_service("bench-prog", serde_json::json!({"prog": "on"}))?)
        .await?;
    let ip = cluster_ip(&svc)?;
    let addr = SocketAddr::from((ip, 80));
    // No endpoints yet: once the reject rule for its address is in the table, connections are refused locally.
    wait_in_table(table, &ip.to_string()).await?;
    wait_reachable(addr, false).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let watcher = tokio::spawn(watch_slices(slices, "bench-prog".into(), tx));
    let mut out = Programming { from_write: Vec::new(), from_slice: Vec::new(), removal_from_write: Vec::new() };
    let label =
        |on: bool| Patch::Merge(serde_json::json!({"metadata": {"labels": {"prog": if on { "on" } else { "off" }}}}));
    for _ in 0..changes {
        while rx.try_recv().is_ok() {}
        pods.patch("bench-netexec-1", &PatchParams::default(), &label(true)).await?;
        let written = Instant::now();
        let live = wait_reachable(addr, true).await?;
        out.from_write.push(live.saturating_duration_since(written));
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some((at, ready))) if ready > 0 => {
                    out.from_slice.push(live.saturating_duration_since(at));
                    break;
                }
                Ok(Some(_)) => {}
                _ => bail!("no EndpointSlice event with a ready endpoint for bench-prog"),
            }
        }
        pods.patch("bench-netexec-1", &PatchParams::default(), &label(false)).await?;
        let removed_written = Instant::now();
        let gone = wait_reachable(addr, false).await?;
        out.removal_from_write.push(gone.saturating_duration_since(removed_written));
    }
    watcher.abort();
    Ok(out)
}

struct ClusterResults {
    pod: [Load; 3],
    svc: [Load; 3],
    prog: Programming,
    background: usize,
}

async fn measure(args: &Args, server: &Server, node: &str, table: &str, octet: u32) -> Result<ClusterResults> {
    let client = ferry_client::connect(&server.kubeconfig).await?;
    wait_node_ready(&client, node, WAIT).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let watch = PodWatch::start(pods.clone(), "bench=proxy").await?;
    for (name, labels) in [
        ("bench-netexec-0", serde_json::json!({"bench": "proxy", "role": "n1"})),
        ("bench-netexec-1", serde_json::json!({"bench": "proxy", "prog": "off"})),
    ] {
        pods.create(&PostParams::default(), &netexec_pod(name, labels)?).await?;
    }
    if !watch.wait_until(WAIT, |s| s.running.len() == 2).await? {
        bail!("netexec pods not running after {WAIT:?}");
    }
    let backend = pods.get("bench-netexec-0").await?;
    let pod_addr = SocketAddr::from((pod_ip(&backend)?, PORT));
    let svc = services
        .create(&PostParams::default(), &selector_service("bench-n1", serde_json::json!({"role": "n1"}))?)
        .await?;
    let svc_addr = SocketAddr::from((cluster_ip(&svc)?, 80));
    // Its endpoint must be programmed before anything is sent to the address.
    wait_in_table(table, &format!("{}:{PORT}", pod_addr.ip())).await?;
    wait_in_table(table, &svc_addr.ip().to_string()).await?;
    wait_reachable(svc_addr, true).await?;

    eprintln!("ferry-bench-proxy: N1 load, {} clients × {} s per run", args.concurrency, args.load_secs);
    let secs = args.load_secs.max(1) as f64;
    load(pod_addr, true, false, args.concurrency, 1.0).await?;
    load(svc_addr, true, false, args.concurrency, 1.0).await?;
    let pod_ka = load(pod_addr, true, false, args.concurrency, secs).await?;
    let svc_ka = load(svc_addr, true, false, args.concurrency, secs).await?;
    let pod_nc = load(pod_addr, false, false, args.concurrency, secs).await?;
    let svc_nc = load(svc_addr, false, false, args.concurrency, secs).await?;
    let pod_tw = load(pod_addr, false, true, args.concurrency, secs).await?;
    let svc_tw = load(svc_addr, false, true, args.concurrency, secs).await?;

    eprintln!("ferry-bench-proxy: {} background services with one endpoint each", args.background_services);
    background_services(&client, args.background_services, octet).await?;
    if args.background_services > 0 {
        let last = services.get(&format!("bench-bg-{}", args.background_services - 1)).await?;
        wait_in_table(table, &cluster_ip(&last)?.to_string()).await?;
    }
    eprintln!("ferry-bench-proxy: N5 programming latency, {} endpoint changes", args.programming_changes);
    let prog = programming(&client, table, args.programming_changes).await?;
    Ok(ClusterResults {
        pod: [pod_ka, pod_nc, pod_tw],
        svc: [svc_ka, svc_nc, svc_tw],
        prog,
        background: args.background_services,
    })
}

pub async fn run(args: &Args) -> Result<String> {
    if !args.ferry_bin.exists() {
        bail!("{} does not exist; build it with `cargo build --release -p ferry`", args.ferry_bin.display());
    }
    let ferry = std::fs::canonicalize(&args.ferry_bin)?;
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new().prefix("ferry-bench-proxy-").tempdir_in(&base)?;
    let (prefix, octet) = pick_network()?;
    let node = format!("bench-{}", &prefix[2..]);
    let table = format!("{prefix}-proxy");
    eprintln!("ferry-bench-proxy: starting {} (pods on 10.{octet}.0.0/16, names {prefix}*)", ferry.display());
    let mut server = Server::start(&ferry, &work.path().join("ferry"), &prefix, octet, &node, &[])?;
    let r = match measure(args, &server, &node, &table, octet).await {
        Ok(r) => r,
        Err(e) => bail!("{e:#}\nferry's log ends with:\n{}", server.log_tail()),
    };
    let status = server.stop()?;
    let left = host_footprint(&prefix)?;
    let table_left = sh("nft", &["list", "table", "ip", &table]).is_ok();
    Ok(render(args, &r, &status.to_string(), left, table_left))
}

fn render(args: &Args, r: &ClusterResults, status: &str, left: (usize, usize), table_left: bool) -> String {
    let c = args.concurrency;
    let mut out = String::new();
    out.push_str(&format!(
        "| HTTP GET /hostname from the host, {c} closed-loop clients, {} s | pod IP (direct) | ClusterIP (ferry nft \
         proxy) | ratio |\n",
        args.load_secs
    ));
    out.push_str("|---|---:|---:|---:|\n");
    let modes = ["keep-alive", "new connection per request", "new connection, backend keeps TIME_WAIT"];
    for (i, mode) in modes.iter().enumerate() {
        let (p, s) = (&r.pod[i], &r.svc[i]);
        out.push_str(&format!(
            "| {mode}: requests/s | {:.0} | {:.0} | {} |\n",
            p.per_sec,
            s.per_sec,
            ratio(s.per_sec, p.per_sec)
        ));
        out.push_str(&format!(
            "| {mode}: latency p50 / p99 / max (ms) | {:.3} / {:.3} / {:.1} | {:.3} / {:.3} / {:.1} | {} |\n",
            ms(p.latency.p50),
            ms(p.latency.p99),
            ms(p.latency.max),
            ms(s.latency.p50),
            ms(s.latency.p99),
            ms(s.latency.max),
            ratio(ms(s.latency.p50), ms(p.latency.p50))
        ));
        out.push_str(&format!(
            "| {mode}: requests / errors | {} / {} | {} / {} | |\n",
            p.requests, p.errors, s.requests, s.errors
        ));
    }
    out.push('\n');
    let (w, sl, rm) = (summary(&r.prog.from_write), summary(&r.prog.from_slice), summary(&r.prog.removal_from_write));
    out.push_str(&format!(
        "| network programming, {} changes, {} other services loaded (ms) | p50 | p99 | max |\n",
        r.prog.from_write.len(),
        r.background + 1
    ));
    out.push_str("|---|---:|---:|---:|\n");
    for (label, s) in [
        ("endpoint added: pod label PATCH → first answer via ClusterIP", w),
        ("endpoint added: EndpointSlice watch event → first answer (N5)", sl),
        ("endpoint removed: pod label PATCH → first refusal via ClusterIP", rm),
    ] {
        out.push_str(&format!("| {label} | {:.1} | {:.1} | {:.1} |\n", ms(s.p50), ms(s.p99), ms(s.max)));
    }
    out.push('\n');
    out.push_str(
        "- load: our own closed-loop HTTP/1.1 client in the bench process (tokio), same host, 1 s warm-up per \
         target; the backend is one agnhost netexec pod; the ClusterIP has that pod as its only endpoint; new \
         connections send `Connection: close`, wait for the server's FIN and close with a reset (no TIME_WAIT); the \
         TIME_WAIT rows close normally instead, so the backend keeps TIME_WAIT for each client port\n",
    );
    out.push_str(
        "- programming: a second netexec pod's label is flipped so it joins (or leaves) Service `bench-prog`'s \
         selector; the endpoint controllers rewrite the EndpointSlice and the proxy programs the table; liveness is \
         probed by connecting to the ClusterIP every 1 ms (refused by the proxy's reject rule while the Service has \
         no endpoint). The slice-event column is measured from the bench's own watch, so it includes watch delivery \
         to the bench but not to the proxy\n",
    );
    out.push_str(&format!(
        "- ferry exited with {status} after SIGTERM; network namespaces and links left: {} and {}; proxy table \
         left: {}\n",
        left.0,
        left.1,
        if table_left { "yes" } else { "no" }
    ));
    out.push_str(&format!("- cpus: {}\n", crate::cpus()));
    out
}
