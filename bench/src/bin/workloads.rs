//! `ferry-bench-workloads`: the controller's cost. Starts a whole single-node `ferry server` (as
//! `ferry-bench-pods` does), scales a ReplicaSet of built-in agnhost `pause` pods from 0 to N through the scale
//! subresource and measures the time from the scale PATCH to all N pods Running (seen on a watch) and the API
//! requests each component made meanwhile (deltas of the API server's `/metrics`, by client identity); then the
//! idle request rate of every component with the N pods present, and the scale back to 0 (time until no pod is
//! left). Baseline in the same run: the same N pods created directly by the benchmark client (no controller),
//! and deleted with one delete-collection. Prints markdown tables. A benchmark, not a test: it reports numbers and
//! never judges them. Needs root.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ferry_bench::node::{allocatable_pods, client_label, cpu_seconds, host_footprint, pick_network, ratio};
use ferry_bench::node::{require_root, wait_node_ready, PodWatch, RequestCounts, Server};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

#[derive(Parser, Debug, Clone)]
#[command(name = "ferry-bench-workloads", about = "ReplicaSet scale 0→N→0 and API request accounting")]
struct Args {
    /// The ferry binary to start (`ferry server ...`).
    #[arg(long, default_value = "target/release/ferry")]
    ferry_bin: PathBuf,
    /// Pods (ReplicaSet replicas, and direct creates for the baseline); the server gets `--max-pods` to fit them.
    #[arg(long, default_value_t = 500)]
    pods: usize,
    /// Seconds the idle request rate is measured over.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Creates the benchmark client keeps in flight for the direct baseline.
    #[arg(long, default_value_t = 32)]
    client_concurrency: usize,
    /// Where the server's data dir is made.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Give up (stopping everything started) after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const NAMESPACE: &str = "default";
/// Every pod this benchmark makes carries `bench=workloads`; names say which phase made it.
const SELECTOR: &str = "bench=workloads";
const RS_NAME: &str = "bench-rs";
const DIRECT_PREFIX: &str = "bench-direct-";
const WARM_PREFIX: &str = "bench-warm-";
/// The longest any one phase may take to converge.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

fn pod_template(app: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"labels": {"bench": "workloads", "app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "pause", "image": IMAGE, "args": ["pause"]}]
        }
    })
}

fn direct_pod(name: &str) -> Result<Pod> {
    let mut pod = pod_template("bench-direct");
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    pod["metadata"]["name"] = name.into();
    serde_json::from_value(pod).context("pod manifest")
}

fn replica_set() -> Result<ReplicaSet> {
    let rs = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": RS_NAME},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"bench": "workloads", "app": RS_NAME}},
            "template": pod_template(RS_NAME)
        }
    });
    serde_json::from_value(rs).context("replicaset manifest")
}

/// What one converging phase measured.
#[derive(Default)]
struct Phase {
    /// Start to the last pod Running (scale-ups) or gone (scale-downs).
    total: Duration,
    /// Start to the first and to the median pod Running (scale-ups only).
    first: Option<Duration>,
    half: Option<Duration>,
    requests: RequestCounts,
    cpu: Option<f64>,
}

/// Measures one phase: `start` kicks it off, then waits (bounded) until `done` holds.
async fn phase<F>(
    server: &Server,
    client: &kube::Client,
    watch: &PodWatch,
    what: &str,
    start: F,
    done: impl Fn(&ferry_bench::node::PodWatchState) -> bool,
) -> Result<(Phase, Instant)>
where
    F: std::future::Future<Output = Result<()>>,
{
    let before = RequestCounts::scrape(client).await?;
    let cpu0 = cpu_seconds(server.pid());
    let t0 = Instant::now();
    start.await?;
    if !watch.wait_until(PHASE_LIMIT, done).await? {
        bail!("{what}: not done after {PHASE_LIMIT:?}");
    }
    let total = t0.elapsed();
    let cpu = cpu0.zip(cpu_seconds(server.pid())).map(|(a, b)| b - a);
    let after = RequestCounts::scrape(client).await?;
    Ok((Phase { total, requests: after.since(&before), cpu, ..Phase::default() }, t0))
}

/// Fills in first/half Running times of pods named `prefix…` relative to `t0`.
fn with_running_times(mut p: Phase, watch: &PodWatch, prefix: &str, t0: Instant) -> Phase {
    let times = watch.with(|s| s.running_times(prefix));
    p.first = times.first().map(|t| t.saturating_duration_since(t0));
    p.half = times.get(times.len().saturating_sub(1) / 2).map(|t| t.saturating_duration_since(t0));
    if let Some(last) = times.last() {
        p.total = last.saturating_duration_since(t0);
    }
    p
}

struct Results {
    rs_up: Phase,
    rs_down: Phase,
    direct_up: Phase,
    direct_down: Phase,
    idle: RequestCounts,
    idle_secs: f64,
    idle_cpu: Option<f64>,
    node_user: String,
}

async fn measure(args: &Args, server: &Server, node: &str) -> Result<Results> {
    let client = ferry_client::connect(&server.kubeconfig).await?;
    let node_obj = wait_node_ready(&client, node, Duration::from_secs(60)).await?;
    let capacity = allocatable_pods(&node_obj).unwrap_or(0);
    if args.pods > capacity {
        bail!("--pods {} is more than node {node} accepts ({capacity} pods)", args.pods);
    }
    let n = args.pods;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let watch = PodWatch::start(pods.clone(), SELECTOR).await?;

    eprintln!("ferry-bench-workloads: 3 warm-up pods");
    for i in 0..3 {
        pods.create(&PostParams::default(), &direct_pod(&format!("{WARM_PREFIX}{i}"))?).await?;
    }
    watch.wait_until(Duration::from_secs(60), |s| s.running_with(WARM_PREFIX) == 3).await?;
    pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels(SELECTOR)).await?;
    watch.wait_until(Duration::from_secs(60), |s| s.present.is_empty()).await?;

    // The ReplicaSet at 0 replicas first, so the scale-up is the only thing the controller does.
    sets.create(&PostParams::default(), &replica_set()?).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rs_prefix = format!("{RS_NAME}-");
    eprintln!("ferry-bench-workloads: ReplicaSet scale 0 → {n}");
    let scale = |replicas: usize| {
        let sets = sets.clone();
        async move {
            let patch = Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}));
            sets.patch_scale(RS_NAME, &PatchParams::default(), &patch).await.context("PATCH scale")?;
            Ok(())
        }
    };
    let (up, t0) = phase(server, &client, &watch, "scale up", scale(n), |s| s.running_with(&rs_prefix) >= n).await?;
    let rs_up = with_running_times(up, &watch, &rs_prefix, t0);

    // Let status writes and the like settle, then count what every component does with nothing to do.
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("ferry-bench-workloads: idle for {} s with {n} pods", args.idle_secs);
    let before = RequestCounts::scrape(&client).await?;
    let cpu0 = cpu_seconds(server.pid());
    let t_idle = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle_secs = t_idle.elapsed().as_secs_f64();
    let idle_cpu = cpu0.zip(cpu_seconds(server.pid())).map(|(a, b)| b - a);
    let idle = RequestCounts::scrape(&client).await?.since(&before);

    eprintln!("ferry-bench-workloads: ReplicaSet scale {n} → 0");
    let (rs_down, _) =
        phase(server, &client, &watch, "scale down", scale(0), |s| s.present_with(&rs_prefix) == 0).await?;
    sets.delete(RS_NAME, &DeleteParams::default()).await?;

    eprintln!("ferry-bench-workloads: {n} pods created directly ({} in flight)", args.client_concurrency);
    let create_all = {
        let pods = pods.clone();
        let concurrency = args.client_concurrency.max(1);
        async move {
            let mut posts = tokio::task::JoinSet::new();
            for i in 0..n {
                if posts.len() >= concurrency {
                    if let Some(r) = posts.join_next().await {
                        r??;
                    }
                }
                let (pods, pod) = (pods.clone(), direct_pod(&format!("{DIRECT_PREFIX}{i:03}"))?);
                posts.spawn(async move { pods.create(&PostParams::default(), &pod).await.map(|_| ()) });
            }
            while let Some(r) = posts.join_next().await {
                r??;
            }
            Ok(())
        }
    };
    let (up, t0) =
        phase(server, &client, &watch, "direct creates", create_all, |s| s.running_with(DIRECT_PREFIX) >= n).await?;
    let direct_up = with_running_times(up, &watch, DIRECT_PREFIX, t0);
    eprintln!("ferry-bench-workloads: delete-collection of the {n} direct pods");
    let delete_all = async {
        let params = ListParams::default().labels("app=bench-direct");
        pods.delete_collection(&DeleteParams::default(), &params).await.context("delete collection")?;
        Ok(())
    };
    let (direct_down, _) =
        phase(server, &client, &watch, "direct delete", delete_all, |s| s.present_with(DIRECT_PREFIX) == 0).await?;

    Ok(Results {
        rs_up,
        rs_down,
        direct_up,
        direct_down,
        idle,
        idle_secs,
        idle_cpu,
        node_user: format!("system:node:{node}"),
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn render(args: &Args, r: &Results, status: &str, left: (usize, usize)) -> String {
    let n = args.pods;
    let mut out = String::new();
    out.push_str(&format!(
        "| {n} pods (agnhost pause) | ReplicaSet (controller) | direct creates by the client | ratio |\n"
    ));
    out.push_str("|---|---:|---:|---:|\n");
    let row = |label: &str, a: Option<Duration>, b: Option<Duration>| {
        let r = match (a, b) {
            (Some(a), Some(b)) => ratio(a.as_secs_f64(), b.as_secs_f64()),
            _ => "–".into(),
        };
        format!("| {label} | {} | {} | {r} |\n", secs(a), secs(b))
    };
    out.push_str(&row("first pod Running (s)", r.rs_up.first, r.direct_up.first));
    out.push_str(&row("half the pods Running (s)", r.rs_up.half, r.direct_up.half));
    out.push_str(&row("all pods Running (s)", Some(r.rs_up.total), Some(r.direct_up.total)));
    out.push_str(&row(
        "all pods gone after scale to 0 / delete-collection (s)",
        Some(r.rs_down.total),
        Some(r.direct_down.total),
    ));
    let cpu = |p: &Phase| p.cpu.map_or("–".into(), |c| format!("{c:.2}"));
    out.push_str(&format!(
        "| ferry server CPU, up (s) | {} | {} | {} |\n",
        cpu(&r.rs_up),
        cpu(&r.direct_up),
        match (r.rs_up.cpu, r.direct_up.cpu) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "–".into(),
        }
    ));
    let clients = [
        "system:kube-controller-manager",
        "system:kube-scheduler",
        r.node_user.as_str(),
        "system:kube-proxy",
        "system:admin",
    ];
    for user in clients {
        let a = r.rs_up.requests.by_client().get(user).copied().unwrap_or(0);
        let b = r.direct_up.requests.by_client().get(user).copied().unwrap_or(0);
        out.push_str(&format!(
            "| API requests up, {} | {a} | {b} | {} |\n",
            client_label(user),
            ratio(a as f64, b as f64)
        ));
    }
    for user in clients {
        let a = r.rs_down.requests.by_client().get(user).copied().unwrap_or(0);
        let b = r.direct_down.requests.by_client().get(user).copied().unwrap_or(0);
        out.push_str(&format!(
            "| API requests down, {} | {a} | {b} | {} |\n",
            client_label(user),
            ratio(a as f64, b as f64)
        ));
    }
    out.push('\n');

    out.push_str(&format!("| idle {:.0} s with {n} pods | requests | per second | what |\n", r.idle_secs));
    out.push_str("|---|---:|---:|---|\n");
    let idle = r.idle.by_client();
    let mut users: Vec<&str> = clients.to_vec();
    for user in idle.keys() {
        if !users.contains(&user.as_str()) {
            users.push(user);
        }
    }
    for user in users {
        let count = idle.get(user).copied().unwrap_or(0);
        out.push_str(&format!(
            "| {} | {count} | {:.2} | {} |\n",
            client_label(user),
            count as f64 / r.idle_secs.max(f64::MIN_POSITIVE),
            r.idle.breakdown(user, 6)
        ));
    }
    out.push('\n');
    out.push_str("- per-component request breakdown during the scale-up (ReplicaSet / direct):\n");
    for user in clients {
        out.push_str(&format!(
            "  - {}: {} / {}\n",
            client_label(user),
            r.rs_up.requests.breakdown(user, 6),
            r.direct_up.requests.breakdown(user, 6)
        ));
    }
    if let Some(cpu) = r.idle_cpu {
        out.push_str(&format!("- ferry server CPU while idle: {cpu:.2} s over {:.0} s\n", r.idle_secs));
    }
    out.push_str(&format!(
        "- ReplicaSet: from the scale PATCH (0 → {n}) to each pod's first watch event with phase Running and all \
         containers ready; scale down: from the PATCH to 0 until the watch has seen every pod deleted. Direct: \
         the client POSTs {n} pods, {} in flight, timed from the first POST; deleted with one delete-collection. \
         Order: warm-up (3 pods), ReplicaSet up, idle, ReplicaSet down, direct up, direct down\n",
        args.client_concurrency
    ));
    out.push_str(
        "- API requests: deltas of `apiserver_request_total` by client certificate user (controller manager, \
         scheduler, node agent) and the bench's admin client (its own PATCH/POSTs and two `/metrics` scrapes per \
         phase); watches count once when opened\n",
    );
    out.push_str(&format!(
        "- ferry exited with {status} after SIGTERM; network namespaces and links left: {} and {}\n",
        left.0, left.1
    ));
    out.push_str(&format!("- cpus: {}\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)));
    out
}

async fn run(args: &Args) -> Result<String> {
    require_root()?;
    if !args.ferry_bin.exists() {
        bail!("{} does not exist; build it with `cargo build --release -p ferry`", args.ferry_bin.display());
    }
    let ferry = std::fs::canonicalize(&args.ferry_bin)?;
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new().prefix("ferry-bench-workloads-").tempdir_in(&base)?;
    let (prefix, octet) = pick_network()?;
    let node = format!("bench-{}", &prefix[2..]);
    eprintln!("ferry-bench-workloads: starting {} (pods on 10.{octet}.0.0/16, names {prefix}*)", ferry.display());
    // Room for N pods on the one node: capacity and a pod CIDR big enough (/22: 1022 addresses).
    let max_pods = (args.pods + 10).max(110).to_string();
    let extra = ["--max-pods", max_pods.as_str(), "--node-cidr-mask-size", "22"];
    let mut server = Server::start(&ferry, &work.path().join("ferry"), &prefix, octet, &node, &extra)?;
    let results = match measure(args, &server, &node).await {
        Ok(r) => r,
        Err(e) => bail!("{e:#}\nferry's log ends with:\n{}", server.log_tail()),
    };
    let status = server.stop()?;
    let left = host_footprint(&prefix)?;
    Ok(render(args, &results, &status.to_string(), left))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let table = ferry_bench::run_bounded(args.timeout_secs, run(&args))?;
    print!("{table}");
    Ok(())
}
