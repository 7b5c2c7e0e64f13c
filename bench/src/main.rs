//! `ferry-bench`: measures ferry's API server and store beside a raw etcd on the same disk, in
//! the same run, and prints a markdown table (optionally JSON). A benchmark, not a test: it
//! reports numbers and never judges them.
#![forbid(unsafe_code)]

mod bench;
mod client;
mod procs;
mod report;
mod stats;
mod systems;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::bench::Write;
use crate::client::{EtcdHttp, FerryHttp};
use crate::procs::ChildGuard;
use crate::report::{Better, Report};
use crate::systems::{EtcdSystem, FerrySystem, System};

#[derive(Parser, Debug, Clone)]
#[command(name = "ferry-bench", about = "Benchmark ferry's API server and store beside raw etcd")]
struct Args {
    /// The ferry binary to start (`ferry server ...`).
    #[arg(long, default_value = "target/release/ferry")]
    ferry_bin: PathBuf,
    /// The etcd binary used as the peer; when missing, only ferry is measured.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// ferry's datastore (`redb` is durable; `memory` is not, so its numbers are not comparable).
    #[arg(long, default_value = "redb")]
    datastore: String,
    /// Sequential creates, each timed.
    #[arg(long, default_value_t = 1000)]
    creates: usize,
    /// Creates spread over `--clients` concurrent clients (throughput run).
    #[arg(long, default_value_t = 10_000)]
    concurrent_creates: usize,
    /// Concurrent clients for the throughput runs.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Services created for the LIST benchmark.
    #[arg(long, default_value_t = 10_000)]
    list_size: usize,
    /// Full LISTs timed (the median is reported).
    #[arg(long, default_value_t = 5)]
    list_runs: usize,
    /// Watchers the one update is fanned out to.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Where the temporary data dirs of both systems are made (the same disk for both).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Give up (stopping everything started) after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
}

/// Warm-up writes (not timed) before the sequential run, so connections and caches exist.
const WARMUP: usize = 20;

/// What one system's run measured.
struct Measured {
    sequential: stats::Latency,
    concurrent: Duration,
    concurrent_cpu: Option<f64>,
    list_create: Duration,
    list: bench::ListRuns,
    fanout: bench::Fanout,
    rss_mib: Option<f64>,
}

/// Resident memory of a process, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs every workload against `sys`, whose server process is `guard`.
async fn measure(name: &str, sys: Arc<dyn System>, guard: &mut ChildGuard, args: &Args) -> Result<Measured> {
    let step = |what: &str| eprintln!("ferry-bench: {name}: {what}");
    step("warm-up");
    bench::sequential_writes(sys.as_ref(), "bench-warm", WARMUP).await?;

    step(&format!("{} sequential creates", args.creates));
    let sequential = stats::latency(&bench::sequential_writes(sys.as_ref(), "bench-seq", args.creates).await?);
    guard.check_running()?;

    let (n, c) = (args.concurrent_creates, args.clients);
    step(&format!("{n} creates from {c} clients"));
    let cpu0 = guard.cpu_seconds();
    let concurrent = bench::concurrent_writes(sys.clone(), Write::Small, "bench-par", n, c).await?;
    let concurrent_cpu = cpu0.zip(guard.cpu_seconds()).map(|(a, b)| b - a);
    guard.check_running()?;

    step(&format!("{} Services for LIST from {} clients", args.list_size, args.clients));
    let list_create =
        bench::concurrent_writes(sys.clone(), Write::Listed, "bench-svc", args.list_size, args.clients).await?;
    step(&format!("{} full LISTs", args.list_runs));
    let list = bench::lists(sys.as_ref(), args.list_runs).await?;
    guard.check_running()?;

    step(&format!("one update to {} watchers", args.watchers));
    let fanout = bench::fanout(sys.clone(), args.watchers, 1).await?;
    guard.check_running()?;
    let rss_mib = rss_mib(guard.pid());
    Ok(Measured { sequential, concurrent, concurrent_cpu, list_create, list, fanout, rss_mib })
}

/// Fills one column of the report from a system's measurements.
fn fill(report: &mut Report, m: &Measured, args: &Args, pick: fn(&mut report::Row) -> &mut Option<f64>) {
    let n = args.creates;
    let c = args.clients;
    let mut set = |metric: String, unit: &'static str, better: Better, v: Option<f64>| {
        *pick(report.row(metric, unit, better)) = v;
    };
    set(format!("create latency p50, {n} sequential"), "ms", Better::Lower, Some(stats::ms(m.sequential.p50)));
    set(format!("create latency p99, {n} sequential"), "ms", Better::Lower, Some(stats::ms(m.sequential.p99)));
    let p = args.concurrent_creates;
    set(format!("creates/s, {p} from {c} clients"), "objects/s", Better::Higher, Some(stats::rate(p, m.concurrent)));
    let per_cpu = m.concurrent_cpu.filter(|&s| s > 0.0).map(|s| p as f64 / s);
    set(format!("creates per server CPU-second, {p} from {c} clients"), "objects/CPU-s", Better::Higher, per_cpu);
    let svc = args.list_size;
    set(
        format!("Service creates/s for the LIST fixture ({svc}, {c} clients)"),
        "objects/s",
        Better::Higher,
        Some(stats::rate(svc, m.list_create)),
    );
    let runs = m.list.times.len();
    set(
        format!("LIST {svc} Services, median of {runs}"),
        "ms",
        Better::Lower,
        Some(stats::ms(stats::median(&m.list.times))),
    );
    set(format!("LIST {svc} Services, response size"), "MiB", Better::Lower, Some(m.list.bytes as f64 / 1048576.0));
    let w = args.watchers;
    let spread = stats::spread(&m.fanout.after_response_ms());
    let after = "after the write's response (negative: before it)";
    set(format!("watch fan-out to {w}, p50 {after}"), "ms", Better::Lower, spread.map(|s| s.0));
    set(format!("watch fan-out to {w}, p99 {after}"), "ms", Better::Lower, spread.map(|s| s.1));
    set(format!("watch fan-out to {w}, max {after}"), "ms", Better::Lower, spread.map(|s| s.2));
    let last = m.fanout.from_sent.iter().max().copied().unwrap_or_default();
    set(format!("watch fan-out to {w}, write sent to last receipt"), "ms", Better::Lower, Some(stats::ms(last)));
    set("the watched write (PUT) itself".into(), "ms", Better::Lower, Some(stats::ms(m.fanout.write)));
    set("server RSS at the end".into(), "MiB", Better::Lower, m.rss_mib);
}

/// Notes on one system's run that the numbers alone do not show.
fn anomalies(name: &str, m: &Measured, args: &Args, notes: &mut Vec<String>) {
    if m.list.items != args.list_size {
        notes.push(format!("{name}: the LIST returned {} items, not {}", m.list.items, args.list_size));
    }
    let early = m.fanout.early();
    if early > 0 {
        notes.push(format!(
            "{name}: {early} of {} watchers received the event before the write's response arrived",
            m.fanout.from_sent.len()
        ));
    }
}

fn filesystem_of(path: &Path) -> String {
    let out = std::process::Command::new("df").arg("-T").arg(path).output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

async fn run(args: &Args) -> Result<Report> {
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    // Declared first so it is removed last, after both servers have stopped.
    let work = tempfile::Builder::new().prefix("ferry-bench-").tempdir_in(&base).context("making the work dir")?;
    let result = run_in(args, work.path()).await;
    if result.is_err() {
        for log in ["ferry.log", "etcd.log"] {
            let path = work.path().join(log);
            if path.exists() {
                eprintln!("--- last lines of {log} ---\n{}", procs::tail(&path, 30));
            }
        }
    }
    result
}

async fn run_in(args: &Args, work: &Path) -> Result<Report> {
    let config = vec![
        ("ferry_bin".into(), args.ferry_bin.display().to_string()),
        ("etcd_bin".into(), args.etcd_bin.display().to_string()),
        ("datastore".into(), args.datastore.clone()),
        ("creates".into(), args.creates.to_string()),
        ("concurrent_creates".into(), args.concurrent_creates.to_string()),
        ("clients".into(), args.clients.to_string()),
        ("list_size".into(), args.list_size.to_string()),
        ("list_runs".into(), args.list_runs.to_string()),
        ("watchers".into(), args.watchers.to_string()),
        ("work_dir".into(), work.display().to_string()),
        ("filesystem".into(), filesystem_of(work)),
        ("cpus".into(), std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string()),
    ];
    let mut report = Report { config, ..Report::default() };
    if !args.ferry_bin.exists() {
        bail!("{} does not exist; build it with `cargo build --release -p ferry`", args.ferry_bin.display());
    }

    // ferry and etcd run in turn, each alone on the machine, on sibling dirs of one disk.
    let ferry_dir = work.join("ferry");
    std::fs::create_dir_all(&ferry_dir)?;
    eprintln!("ferry-bench: starting {}", args.ferry_bin.display());
    let mut ferry = procs::start_ferry(&args.ferry_bin, &ferry_dir, &args.datastore, &work.join("ferry.log")).await?;
    let kc_text = std::fs::read_to_string(&ferry.kubeconfig)
        .with_context(|| format!("reading {}", ferry.kubeconfig.display()))?;
    let kc = client::parse_kubeconfig(&kc_text)?;
    let ferry_sys = Arc::new(FerrySystem::new(FerryHttp::ferry(&kc, &ferry.url)?).await?);
    let ferry_m = measure("ferry", ferry_sys.clone(), &mut ferry.guard, args).await?;
    drop(ferry);

    let small = systems::small_size();
    let service = ferry_sys.service_size();
    drop(ferry_sys);
    report.config.push(("small_value_bytes".into(), small.to_string()));
    report.config.push(("service_value_bytes".into(), service.to_string()));
    fill(&mut report, &ferry_m, args, |r| &mut r.ferry);
    let mut notes = Vec::new();
    anomalies("ferry", &ferry_m, args, &mut notes);

    if args.etcd_bin.exists() {
        let etcd_dir = work.join("etcd");
        eprintln!("ferry-bench: starting {}", args.etcd_bin.display());
        let mut etcd = procs::start_etcd(&args.etcd_bin, &etcd_dir, &work.join("etcd.log")).await?;
        let etcd_sys = Arc::new(EtcdSystem::new(EtcdHttp::etcd(&etcd.url), small, service));
        let etcd_m = measure("etcd", etcd_sys, &mut etcd.guard, args).await?;
        drop(etcd);
        fill(&mut report, &etcd_m, args, |r| &mut r.etcd);
        anomalies("etcd", &etcd_m, args, &mut notes);
    } else {
        let msg = format!("peer unavailable: {} not found; measured ferry only", args.etcd_bin.display());
        eprintln!("ferry-bench: {msg}");
        notes.push(msg);
    }
    notes.push(format!(
        "etcd values are sized like ferry's objects: {small} B per small write (the ConfigMap body), {service} B per \
         Service (ferry's stored Service as returned by its create)"
    ));
    notes.push(
        "ferry creates are Kubernetes creates (decode, default, validate, allocate a ClusterIP, store if absent); \
         etcd writes are plain gateway puts; etcd's LIST is one gateway range (values base64 in JSON)"
            .into(),
    );
    report.notes.extend(notes);
    Ok(report)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let report = ferry_bench::run_bounded(args.timeout_secs, run(&args))?;
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
