//! A whole single-node `ferry server` for benchmarks: a pod network and name prefix no other cluster on the host
//! uses, the server process (stopped on drop), a pod watch that timestamps each pod's arrival at Running, the API
//! server's per-client request counts (`/metrics`), and the percentile and ratio helpers the tables use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p99 and max of some samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn summary(samples: &[Duration]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Summary {
        p50: percentile(&sorted, 50.0),
        p99: percentile(&sorted, 99.0),
        max: sorted.last().copied().unwrap_or_default(),
    }
}

/// `a / b` as `1.2×`, or `n/a` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Runs `program args`; its stdout, or an error with its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails unless the process runs as root (network namespaces, nftables).
pub fn require_root() -> Result<()> {
    // /proc/self belongs to the process's effective user.
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?) != 0 {
        bail!("needs root (network namespaces)");
    }
    Ok(())
}

/// A name prefix and `10.<n>.0.0/16` pod network that no route or link on the host uses yet.
pub fn pick_network() -> Result<(String, u32)> {
    let routes = sh("ip", &["-4", "route"])?;
    let links = sh("ip", &["-o", "link"])?;
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    (0..4096u32)
        .map(|i| {
            let n = seed.wrapping_add(i.wrapping_mul(40_503));
            (format!("fb{:04x}", n & 0xffff), 120 + (n >> 16) % 130)
        })
        .find(|(prefix, octet)| !routes.contains(&format!("10.{octet}.")) && !links.contains(&format!(": {prefix}")))
        .context("no free pod network")
}

/// What the node agent holds on the host: (network namespaces, links) named with `prefix`.
pub fn host_footprint(prefix: &str) -> Result<(usize, usize)> {
    let netns = sh("ip", &["netns", "list"])?.lines().filter(|l| l.starts_with(&format!("{prefix}-"))).count();
    let links = sh("ip", &["-o", "link"])?.lines().filter(|l| l.contains(&format!(": {prefix}"))).count();
    Ok((netns, links))
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The running server; dropped, it gets SIGTERM (the node agent removes its pods) and 60 s before SIGKILL.
pub struct Server {
    child: Child,
    pub kubeconfig: PathBuf,
    pub url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `ferry server` on loopback with a node named `node`, pods on `10.<octet>.0.0/16` and host names
    /// prefixed `prefix`, plus `extra` arguments; returns once it prints its ready line.
    pub fn start(
        ferry: &Path,
        data_dir: &Path,
        prefix: &str,
        octet: u32,
        node: &str,
        extra: &[&str],
    ) -> Result<Server> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let mut child = Command::new(ferry)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind-address", "127.0.0.1", "--https-port", "0", "--kubelet-port", "0"])
            .args(["--network-prefix", prefix, "--node-name", node])
            .arg("--cluster-cidr")
            .arg(format!("10.{octet}.0.0/16"))
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", ferry.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ferry server ready: kubeconfig=") {
                    if let (Some(tx), Some((path, url))) = (tx.take(), rest.split_once(" url=")) {
                        let _ = tx.send((PathBuf::from(path), url.trim().to_string()));
                    }
                }
            }
        });
        let mut server = Server { child, kubeconfig: PathBuf::new(), url: String::new(), log };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok((path, url)) => (server.kubeconfig, server.url) = (path, url),
            Err(_) => bail!("ferry printed no ready line; its log ends with:\n{}", server.log_tail()),
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last 30 lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM and wait (at most 60 s) for a clean exit.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.pid()).context("pid")?);
        kill(pid, Signal::SIGTERM).context("SIGTERM to ferry")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("ferry did not exit within 60 s of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("ferry-bench: stopping ferry: {e}");
        }
    }
}

/// Waits (at most `limit`) for node `name` to report Ready and returns it.
pub async fn wait_node_ready(client: &kube::Client, name: &str, limit: Duration) -> Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + limit;
    loop {
        if let Some(node) = nodes.get_opt(name).await? {
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            bail!("node {name} not Ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pods a node accepts (`status.allocatable.pods`).
pub fn allocatable_pods(node: &Node) -> Option<usize> {
    node.status.as_ref()?.allocatable.as_ref()?.get("pods")?.0.parse().ok()
}

/// Phase Running and every container ready.
pub fn is_running(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    let want = pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let ready = status.container_statuses.as_ref().map(|cs| cs.iter().filter(|c| c.ready).count()).unwrap_or(0);
    status.phase.as_deref() == Some("Running") && ready == want && want > 0
}

/// What a [`PodWatch`] has seen.
#[derive(Debug, Default)]
pub struct PodWatchState {
    /// When each pod was first seen running (kept after the pod is deleted).
    pub running: HashMap<String, Instant>,
    /// Pods that exist now.
    pub present: HashSet<String>,
    /// Why the watch stopped, if it did.
    pub failed: Option<String>,
}

impl PodWatchState {
    /// Pods whose name starts with `prefix` seen running.
    pub fn running_with(&self, prefix: &str) -> usize {
        self.running.keys().filter(|n| n.starts_with(prefix)).count()
    }
    /// Pods whose name starts with `prefix` that exist now.
    pub fn present_with(&self, prefix: &str) -> usize {
        self.present.iter().filter(|n| n.starts_with(prefix)).count()
    }
    /// The times pods named `prefix…` were first seen running, ascending.
    pub fn running_times(&self, prefix: &str) -> Vec<Instant> {
        let mut times: Vec<Instant> =
            self.running.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, at)| *at).collect();
        times.sort_unstable();
        times
    }
}

/// Watches a namespace's pods matching a label selector and timestamps each pod's arrival at Running as the
/// event arrives. The watch task ends when this is dropped.
pub struct PodWatch {
    state: Arc<Mutex<PodWatchState>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    /// Lists the matching pods (so every later event is seen), then watches from there.
    pub async fn start(api: Api<Pod>, selector: &str) -> Result<PodWatch> {
        let list = api.list(&ListParams::default().labels(selector)).await?;
        let state = Arc::new(Mutex::new(PodWatchState::default()));
        {
            let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            for pod in &list.items {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if is_running(pod) {
                    s.running.insert(name.clone(), now);
                }
                s.present.insert(name);
            }
        }
        let version = list.metadata.resource_version.unwrap_or_else(|| "0".into());
        let (selector, shared) = (selector.to_string(), state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = watch_loop(api, selector, version, shared.clone()).await {
                shared.lock().unwrap_or_else(PoisonError::into_inner).failed = Some(format!("{e:#}"));
            }
        });
        Ok(PodWatch { state, task })
    }

    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&PodWatchState) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Polls every 10 ms until `done` holds (true) or `limit` passes (false); fails if the watch failed.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&PodWatchState) -> bool) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            let (ok, failed) = self.with(|s| (done(s), s.failed.clone()));
            if ok {
                return Ok(true);
            }
            if let Some(e) = failed {
                bail!("pod watch failed: {e}");
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_loop(
    api: Api<Pod>,
    selector: String,
    mut version: String,
    state: Arc<Mutex<PodWatchState>>,
) -> Result<()> {
    loop {
        let params = WatchParams::default().labels(&selector).timeout(290);
        let mut stream = api.watch(&params, &version).await?.boxed();
        while let Some(event) = stream.try_next().await? {
            let at = Instant::now();
            let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
            match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                    version = p.metadata.resource_version.clone().unwrap_or(version);
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if is_running(&p) {
                        s.running.entry(name.clone()).or_insert(at);
                    }
                    s.present.insert(name);
                }
                WatchEvent::Deleted(p) => {
                    version = p.metadata.resource_version.clone().unwrap_or(version);
                    s.present.remove(&p.metadata.name.unwrap_or_default());
                }
                WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                WatchEvent::Error(e) => bail!("watch error: {e:?}"),
            }
        }
    }
}

/// One `apiserver_request_total` series: (client, verb, resource, subresource, code).
pub type RequestKey = (String, String, String, String, String);

/// A snapshot of the API server's request counters (`GET /metrics`).
#[derive(Clone, Debug, Default)]
pub struct RequestCounts(pub BTreeMap<RequestKey, u64>);

impl RequestCounts {
    /// Reads `/metrics` with `client`'s credentials.
    pub async fn scrape(client: &kube::Client) -> Result<RequestCounts> {
        let req = http::Request::get("/metrics").body(Vec::new()).context("metrics request")?;
        let text = client.request_text(req).await.context("GET /metrics")?;
        Ok(RequestCounts::parse(&text))
    }

    /// Parses the text format's `apiserver_request_total{...} N` lines; other lines are skipped.
    pub fn parse(text: &str) -> RequestCounts {
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else { continue };
            let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
            let Ok(value) = value.trim().parse::<u64>() else { continue };
            let labels = parse_labels(labels);
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            out.insert((get("client"), get("verb"), get("resource"), get("subresource"), get("code")), value);
        }
        RequestCounts(out)
    }

    /// What was counted after `earlier` (series with no new requests left out).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            let d = v.saturating_sub(earlier.0.get(k).copied().unwrap_or(0));
            if d > 0 {
                out.insert(k.clone(), d);
            }
        }
        RequestCounts(out)
    }

    /// Requests per client.
    pub fn by_client(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((client, ..), v) in &self.0 {
            *out.entry(client.clone()).or_insert(0) += v;
        }
        out
    }

    /// One client's requests as `VERB resource[/sub]×n`, largest first (at most `max` entries).
    pub fn breakdown(&self, client: &str, max: usize) -> String {
        let mut rows: BTreeMap<String, u64> = BTreeMap::new();
        for ((c, verb, resource, sub, code), v) in &self.0 {
            if c != client {
                continue;
            }
            let mut label = format!("{verb} {}", if resource.is_empty() { "-" } else { resource });
            if !sub.is_empty() {
                label.push('/');
                label.push_str(sub);
            }
            if !code.starts_with('2') {
                label.push_str(&format!(" ({code})"));
            }
            *rows.entry(label).or_insert(0) += v;
        }
        let mut rows: Vec<(String, u64)> = rows.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut parts: Vec<String> = rows.iter().take(max).map(|(l, n)| format!("{l} ×{n}")).collect();
        if rows.len() > max {
            parts.push(format!("… {} more kinds", rows.len() - max));
        }
        parts.join(", ")
    }
}

/// `a="x",b="y\"z"` into a map, undoing the text format's escapes.
fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim_matches(',').to_string();
        if name.is_empty() || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// A readable name for a client identity.
pub fn client_label(user: &str) -> String {
    match user {
        "system:kube-controller-manager" => "controller manager".into(),
        "system:kube-scheduler" => "scheduler".into(),
        "system:kube-proxy" => "service proxy".into(),
        "system:admin" => "bench client (admin)".into(),
        u => match u.strip_prefix("system:node:") {
            Some(node) => format!("node agent ({node})"),
            None => u.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_parse_and_subtract() {
        let a = RequestCounts::parse(
            "# TYPE apiserver_request_total counter\n\
             apiserver_request_total{client=\"system:kube-scheduler\",code=\"200\",resource=\"pods\",subresource=\"\",verb=\"LIST\"} 2\n\
             apiserver_request_total{client=\"o\\\"dd\",code=\"201\",resource=\"pods\",subresource=\"binding\",verb=\"POST\"} 1\n",
        );
        let b = RequestCounts::parse(
            "apiserver_request_total{client=\"system:kube-scheduler\",code=\"200\",resource=\"pods\",subresource=\"\",verb=\"LIST\"} 5\n\
             apiserver_request_total{client=\"o\\\"dd\",code=\"201\",resource=\"pods\",subresource=\"binding\",verb=\"POST\"} 1\n\
             apiserver_request_total{client=\"system:node:n\",code=\"404\",resource=\"leases\",subresource=\"\",verb=\"GET\"} 1\n",
        );
        assert_eq!(a.by_client().get("o\"dd"), Some(&1));
        let d = b.since(&a);
        assert_eq!(d.by_client(), BTreeMap::from([("system:kube-scheduler".into(), 3), ("system:node:n".into(), 1)]));
        assert_eq!(d.breakdown("system:node:n", 5), "GET leases (404) ×1");
        assert_eq!(a.breakdown("o\"dd", 5), "POST pods/binding ×1");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summary(&samples);
        assert_eq!(
            (s.p50, s.p99, s.max),
            (Duration::from_millis(50), Duration::from_millis(99), Duration::from_millis(100))
        );
    }
}
