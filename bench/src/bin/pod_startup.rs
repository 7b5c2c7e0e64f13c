//! `ferry-bench-pods`: pod startup latency. Starts a whole single-node `ferry server` (API server, scheduler, node
//! agent) on a pod network no other cluster on the host uses, creates N pods (built-in agnhost `pause`) at a fixed
//! rate, and measures each pod's create-to-Running latency: from the POST's response to the watch event that shows
//! phase Running with every container ready. In the same run it measures the bare process path: `unshare --net
//! --fork` + exec of the same process (`ferry agnhost pause`), from spawn to its `Paused` line. Prints a markdown
//! table. A benchmark, not a test: it reports numbers and never judges them. Needs root.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ferry_bench::node::{cpu_seconds, host_footprint, ms, pick_network, require_root, sh, summary, wait_node_ready};
use ferry_bench::node::{ratio, PodWatch, Server};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

#[derive(Parser, Debug, Clone)]
#[command(name = "ferry-bench-pods", about = "Pod create-to-Running latency beside a bare unshare --net + exec")]
struct Args {
    /// The ferry binary to start (`ferry server ...`); also provides `ferry agnhost pause` for the baseline.
    #[arg(long, default_value = "target/release/ferry")]
    ferry_bin: PathBuf,
    /// Pods created (and bare processes started).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods created per second (P1's load: 10/s); 0 creates one at a time, each after the previous one runs.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Where the server's data dir is made.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Give up (stopping everything started) after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

/// The image every pod runs: ferry's built-in agnhost, `pause` subcommand.
const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
/// Pods started (and removed) before the timed run, so connections and caches exist.
const WARMUP: usize = 3;
const NAMESPACE: &str = "default";

fn pod_manifest(name: &str) -> Result<Pod> {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "pause", "image": IMAGE, "args": ["pause"]}]
        }
    });
    serde_json::from_value(pod).context("pod manifest")
}

/// What one run of the pod path measured.
struct PodRun {
    latencies: Vec<Duration>,
    missing: Vec<String>,
    wall: Duration,
    cpu: Option<f64>,
    delete_all: Duration,
}

async fn pod_run(args: &Args, server: &Server, node: &str) -> Result<PodRun> {
    let client = ferry_client::connect(&server.kubeconfig).await?;
    wait_node_ready(&client, node, Duration::from_secs(60)).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let watch = PodWatch::start(api.clone(), "app=bench-pods").await?;
    let all_running = |names: &[String]| {
        let names = names.to_vec();
        move |s: &ferry_bench::node::PodWatchState| names.iter().all(|n| s.running.contains_key(n))
    };

    eprintln!("ferry-bench-pods: {WARMUP} warm-up pods");
    let warm: Vec<String> = (0..WARMUP).map(|i| format!("bench-warm-{i}")).collect();
    for name in &warm {
        api.create(&PostParams::default(), &pod_manifest(name)?).await?;
    }
    watch.wait_until(Duration::from_secs(60), all_running(&warm)).await?;
    for name in &warm {
        api.delete(name, &DeleteParams::default()).await?;
    }
    wait_gone(&watch, Duration::from_secs(60)).await?;

    eprintln!("ferry-bench-pods: {} pods at {} per second", args.pods, args.rate);
    let names: Vec<String> = (0..args.pods).map(|i| format!("bench-pod-{i:03}")).collect();
    let cpu0 = cpu_seconds(server.pid());
    let t0 = Instant::now();
    let mut created: HashMap<String, Instant> = HashMap::new();
    if args.rate > 0.0 {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        let mut posts = tokio::task::JoinSet::new();
        for name in &names {
            tick.tick().await;
            let (api, name, pod) = (api.clone(), name.clone(), pod_manifest(name)?);
            posts.spawn(async move {
                let r = api.create(&PostParams::default(), &pod).await;
                (name, Instant::now(), r.map(|_| ()))
            });
        }
        while let Some(done) = posts.join_next().await {
            let (name, at, result) = done?;
            result.with_context(|| format!("creating {name}"))?;
            created.insert(name, at);
        }
    } else {
        for name in &names {
            api.create(&PostParams::default(), &pod_manifest(name)?).await?;
            created.insert(name.clone(), Instant::now());
            watch.wait_until(Duration::from_secs(60), all_running(std::slice::from_ref(name))).await?;
        }
    }
    watch.wait_until(Duration::from_secs(120), all_running(&names)).await?;
    let wall = t0.elapsed();
    let cpu = cpu0.zip(cpu_seconds(server.pid())).map(|(a, b)| b - a);
    let running_at = watch.with(|s| s.running.clone());
    let mut latencies = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        match (created.get(name), running_at.get(name)) {
            (Some(c), Some(r)) => latencies.push(r.saturating_duration_since(*c)),
            _ => missing.push(name.clone()),
        }
    }

    eprintln!("ferry-bench-pods: deleting the pods");
    let t_del = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("app=bench-pods")).await?;
    wait_gone(&watch, Duration::from_secs(120)).await?;
    let delete_all = t_del.elapsed();
    Ok(PodRun { latencies, missing, wall, cpu, delete_all })
}

async fn wait_gone(watch: &PodWatch, limit: Duration) -> Result<()> {
    if !watch.wait_until(limit, |s| s.present.is_empty()).await? {
        bail!("{} pods still exist after {limit:?}", watch.with(|s| s.present.len()));
    }
    Ok(())
}

/// The bare path: `unshare --net --kill-child -- <ferry> agnhost pause`, spawn to its `Paused` line, one at a time.
fn bare_run(ferry: &Path, n: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        out.push(time_to_paused(Command::new("unshare").args(["--net", "--kill-child", "--"]), ferry, t0)?);
    }
    Ok(out)
}

/// The same sandbox by hand with iproute2 (as ferry's node agent builds it: network namespace, veth pair, address,
/// links up, default route; no bridge), then `ip netns exec ... ferry agnhost pause`, spawn to `Paused`; one at a
/// time, each torn down (`ip link del`, `ip netns del`) before the next.
fn bare_sandbox_run(ferry: &Path, prefix: &str, octet: u32, n: usize) -> Result<Vec<Duration>> {
    let netns = format!("{prefix}-bare");
    let veth = format!("{prefix}bare");
    let addr = format!("10.{octet}.0.2/24");
    let gateway = format!("10.{octet}.0.1");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let built = sh("ip", &["netns", "add", &netns])
            .and_then(|_| sh("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]))
            .and_then(|_| sh("ip", &["link", "set", &veth, "up"]))
            .and_then(|_| sh("ip", &["-n", &netns, "link", "set", "lo", "up"]))
            .and_then(|_| sh("ip", &["-n", &netns, "addr", "add", &addr, "dev", "eth0"]))
            .and_then(|_| sh("ip", &["-n", &netns, "link", "set", "eth0", "up"]))
            .and_then(|_| sh("ip", &["-n", &netns, "route", "add", "default", "via", &gateway]));
        let result = built.and_then(|_| time_to_paused(Command::new("ip").args(["netns", "exec", &netns]), ferry, t0));
        // The veth first: it goes at once, while a deleted namespace's links are removed asynchronously.
        let removed = sh("ip", &["link", "del", &veth]).and_then(|_| sh("ip", &["netns", "del", &netns]));
        out.push(result?);
        removed?;
    }
    Ok(out)
}

async fn run(args: &Args) -> Result<String> {
    require_root()?;
    if !args.ferry_bin.exists() {
        bail!("{} does not exist; build it with `cargo build --release -p ferry`", args.ferry_bin.display());
    }
    let ferry = std::fs::canonicalize(&args.ferry_bin)?;
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new().prefix("ferry-bench-pods-").tempdir_in(&base)?;
    let (prefix, octet) = pick_network()?;
    let node = format!("bench-{}", &prefix[2..]);
    eprintln!("ferry-bench-pods: starting {} (pods on 10.{octet}.0.0/16, names {prefix}*)", ferry.display());
    let mut server = Server::start(&ferry, &work.path().join("ferry"), &prefix, octet, &node, &[])?;
    let pods = match pod_run(args, &server, &node).await {
        Ok(r) => r,
        Err(e) => bail!("{e:#}\nferry's log ends with:\n{}", server.log_tail()),
    };
    let status = server.stop()?;
    let left = host_footprint(&prefix)?;

    eprintln!("ferry-bench-pods: {} bare `unshare --net` + exec runs", args.pods);
    let bare = bare_run(&ferry, args.pods)?;
    eprintln!("ferry-bench-pods: {} iproute2 sandbox + `ip netns exec` runs", args.pods);
    let by_hand = bare_sandbox_run(&ferry, &prefix, octet, args.pods)?;

    let p = summary(&pods.latencies);
    let b = summary(&bare);
    let h = summary(&by_hand);
    let n = args.pods;
    let mut out = String::new();
    out.push_str(&format!(
        "| create → Running, {n} pods (ms) | ferry pod (agnhost pause) | bare `unshare --net` + exec | ratio | \
         iproute2 sandbox + `ip netns exec` | ratio |\n"
    ));
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for (label, a, c, d) in [("p50", p.p50, b.p50, h.p50), ("p99", p.p99, b.p99, h.p99), ("max", p.max, b.max, h.max)] {
        out.push_str(&format!(
            "| {label} | {:.1} | {:.1} | {} | {:.1} | {} |\n",
            ms(a),
            ms(c),
            ratio(ms(a), ms(c)),
            ms(d),
            ratio(ms(a), ms(d))
        ));
    }
    out.push('\n');
    let rate = if args.rate > 0.0 { format!("{} pods/s", args.rate) } else { "one at a time".into() };
    out.push_str(&format!("- pods created at {rate}; {} of {n} seen Running\n", pods.latencies.len()));
    if !pods.missing.is_empty() {
        out.push_str(&format!("- never seen Running: {}\n", pods.missing.join(", ")));
    }
    out.push_str(&format!("- first POST to last pod Running: {:.2} s\n", pods.wall.as_secs_f64()));
    if let Some(cpu) = pods.cpu {
        out.push_str(&format!(
            "- ferry server CPU during the run: {cpu:.2} s ({:.1} ms per pod; shims and containers not counted)\n",
            cpu * 1000.0 / n.max(1) as f64
        ));
    }
    out.push_str(&format!("- delete of all {n} pods until none is left: {:.2} s\n", pods.delete_all.as_secs_f64()));
    out.push_str(&format!(
        "- ferry exited with {status} after SIGTERM; network namespaces and links left: {} and {}\n",
        left.0, left.1
    ));
    out.push_str(
        "- ferry pod: from the POST's response to the watch event with phase Running and all containers ready \
         (scheduling, network namespace + veth + IP, shim, mount/UTS/PID namespaces, exec, status write, watch); \
         bare: spawn of `unshare --net --kill-child -- ferry agnhost pause` to its `Paused` line; iproute2: the same \
         sandbox as the node agent builds (netns, veth, address, links up, default route; no bridge) with 7 `ip` \
         commands, then `ip netns exec` of the same process to its `Paused` line; both one at a time\n",
    );
    out.push_str("- targets (perf-targets.md): P1 p50 ≤ 100 ms, p99 ≤ 500 ms at 10 pods/s; P2 overhead ≤ 2× bare\n");
    out.push_str(&format!("- cpus: {}\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)));
    Ok(out)
}

/// Run `ferry agnhost pause` under `wrapper` and measure from `t0` until it prints `Paused`.
fn time_to_paused(wrapper: &mut Command, ferry: &Path, t0: Instant) -> Result<Duration> {
    let mut child = wrapper
        .arg(ferry)
        .args(["agnhost", "pause"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {:?}", wrapper.get_program()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("stdout")?;
    BufReader::new(stdout).read_line(&mut line)?;
    let took = t0.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    if line.trim() != "Paused" {
        bail!("{:?} {} agnhost pause printed {line:?}", wrapper.get_program(), ferry.display());
    }
    Ok(took)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let table = ferry_bench::run_bounded(args.timeout_secs, run(&args))?;
    print!("{table}");
    Ok(())
}
