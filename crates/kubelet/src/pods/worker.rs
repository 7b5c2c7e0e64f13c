//! One pod's worker: owns the pod's sandbox and containers from admission to removal. It runs
//! init containers in order, then the containers; restarts them per `restartPolicy` with
//! upstream's back-off (10 s doubling to 5 min, CrashLoopBackOff); runs liveness, readiness and
//! startup probes; reports status when it changes; and on deletion runs preStop hooks, SIGTERM,
//! SIGKILL at the grace deadline, tears the sandbox down and removes the pod.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Probe, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::Client;
use serde_json::json;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use super::probe::{run_probe, ProbeOutcome, ProbeTarget};
use super::runtime::{ContainerRuntime, RtStatus, StartSpec};
use super::service_env::ServiceEnv;
use super::Shared;
use crate::events::Recorder;
use crate::podstatus::{pod_status, CState, ContainerRecord, PodRecord};
use ferry_containers::image::Plan;

const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const TICK: Duration = Duration::from_millis(250);
/// The waiting reason of a container whose environment could not be built (upstream's).
const CONFIG_ERROR: &str = "CreateContainerConfigError";

/// Probe bookkeeping for one probe of one container.
#[derive(Debug, Default)]
struct ProbeState {
    successes: i32,
    failures: i32,
    next: Option<Instant>,
    last_message: String,
}

#[derive(Debug)]
struct Ctr {
    spec: Container,
    init: bool,
    plan: Option<Plan>,
    id: Option<String>,
    /// The instance before `id`, kept (with its log) for `kubectl logs --previous`.
    prev_id: Option<String>,
    restart_count: i32,
    state: CState,
    last_state: Option<CState>,
    next_start: Option<Instant>,
    backoff: Duration,
    /// The back-off of the pending restart (what CrashLoopBackOff reports).
    wait: Duration,
    /// When a container told to stop (failed probe) gets SIGKILL if it is still running.
    kill_at: Option<Instant>,
    ready: bool,
    started: bool,
    liveness: ProbeState,
    readiness: ProbeState,
    startup: ProbeState,
    started_once: bool,
}

impl Ctr {
    fn new(spec: Container, init: bool) -> Ctr {
        Ctr {
            spec,
            init,
            plan: None,
            id: None,
            prev_id: None,
            restart_count: 0,
            state: CState::Waiting {
                reason: if init { "PodInitializing".into() } else { "ContainerCreating".into() },
                message: None,
            },
            last_state: None,
            next_start: None,
            backoff: Duration::ZERO,
            wait: Duration::ZERO,
            kill_at: None,
            ready: false,
            started: false,
            liveness: ProbeState::default(),
            readiness: ProbeState::default(),
            startup: ProbeState::default(),
            started_once: false,
        }
    }
    fn record(&self) -> ContainerRecord {
        ContainerRecord {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            state: self.state.clone(),
            last_state: self.last_state.clone(),
            restart_count: self.restart_count,
            ready: self.ready,
            started: matches!(self.state, CState::Running { .. }).then_some(self.started),
            container_id: self.id.as_ref().map(|id| format!("ferry://{id}")),
        }
    }
}

/// Everything a worker needs besides its pod.
pub struct WorkerEnv {
    pub client: Client,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub shared: Arc<Shared>,
    pub events: Arc<Mutex<Recorder>>,
}

impl WorkerEnv {
    /// Record an event about `pod` (optionally one of its containers).
    async fn event(&self, pod: &Pod, type_: &str, reason: &str, message: &str, container: Option<&str>) {
        self.events.lock().await.pod_event(pod, type_, reason, message, container).await;
    }
}

/// Run the worker until the pod is gone or `stop` asks to tear everything down.
pub async fn run(
    env: WorkerEnv,
    mut pod: Pod,
    mut updates: mpsc::Receiver<Option<Pod>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let api: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut ctrs: Vec<Ctr> = spec
        .init_containers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| Ctr::new(c, true))
        .chain(spec.containers.clone().into_iter().map(|c| Ctr::new(c, false)))
        .collect();
    let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
    let start_time = jiff::Timestamp::now();
    let mut sandbox: Option<super::Sandbox> = None;
    let mut gone = false;
    let mut deadline: Option<Instant> = None;
    let mut last_status = serde_json::Value::Null;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            u = updates.recv() => match u {
                // Never step back: an event older than the pod this worker already holds (e.g. from before its own
                // last status write) would make it recompute conditions against stale ones and write again.
                Some(Some(p)) => if !older(&p, &pod) { pod = p },
                Some(None) | None => gone = true,
            },
            _ = stop.changed() => {
                // The agent is shutting down: stop everything now, leave nothing behind.
                for c in ctrs.iter() {
                    for id in c.id.iter().chain(c.prev_id.iter()) {
                        env.runtime.remove(id).await;
                    }
                }
                if let Some(sb) = sandbox.take() {
                    env.shared.teardown_sandbox(&sb).await;
                }
                env.shared.directory.remove_pod(&ns, &name);
                return;
            }
            _ = tick.tick() => {}
        }
        let deleting = gone || pod.metadata.deletion_timestamp.is_some();
        if deleting {
            // Termination: preStop + SIGTERM once, SIGKILL at the deadline, then clean up.
            if deadline.is_none() {
                let grace = if gone { 0 } else { pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) };
                deadline = Some(Instant::now() + Duration::from_secs(grace as u64));
                for c in ctrs.iter().filter(|c| matches!(c.state, CState::Running { .. })) {
                    let Some(id) = &c.id else { continue };
                    env.event(
                        &pod,
                        "Normal",
                        "Killing",
                        &format!("Stopping container {}", c.spec.name),
                        Some(&c.spec.name),
                    )
                    .await;
                    if grace > 0 {
                        if let Some(cmd) = c
                            .spec
                            .lifecycle
                            .as_ref()
                            .and_then(|l| l.pre_stop.as_ref())
                            .and_then(|h| h.exec.as_ref())
                            .and_then(|e| e.command.clone())
                        {
                            let _ = env.runtime.exec(id, &cmd, Duration::from_secs(grace as u64)).await;
                        }
                    }
                    env.runtime.signal(id, 15).await;
                }
            }
            let mut all_exited = true;
            for c in ctrs.iter() {
                if let Some(id) = &c.id {
                    if matches!(env.runtime.status(id).await, RtStatus::Running { .. }) {
                        all_exited = false;
                    }
                }
            }
            if !all_exited && deadline.is_some_and(|d| Instant::now() >= d) {
                for c in ctrs.iter() {
                    if let Some(id) = &c.id {
                        env.runtime.signal(id, 9).await;
                    }
                }
                continue;
            }
            if all_exited {
                for c in ctrs.iter() {
                    for id in c.id.iter().chain(c.prev_id.iter()) {
                        env.runtime.remove(id).await;
                    }
                }
                if let Some(sb) = sandbox.take() {
                    env.shared.teardown_sandbox(&sb).await;
                }
                env.events.lock().await.forget(&uid);
                env.shared.directory.remove_pod(&ns, &name);
                if !gone {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                        ..Default::default()
                    };
                    if let Err(e) = api.delete(&name, &dp).await {
                        tracing::debug!(pod = %name, error = %e, "final delete");
                    }
                }
                return;
            }
            continue;
        }

        // Sandbox first.
        if sandbox.is_none() {
            match env.shared.setup_sandbox(&pod).await {
                Ok(sb) => sandbox = Some(sb),
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "creating pod sandbox");
                    env.event(
                        &pod,
                        "Warning",
                        "FailedCreatePodSandBox",
                        &format!("Failed to create pod sandbox: {e}"),
                        None,
                    )
                    .await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            }
        }
        let Some(sb) = sandbox.as_ref() else { continue };

        // Observe exits; SIGKILL containers past their stop deadline.
        for c in ctrs.iter_mut() {
            let Some(id) = c.id.clone() else { continue };
            if c.kill_at.is_some_and(|t| Instant::now() >= t) {
                c.kill_at = None;
                env.runtime.signal(&id, 9).await;
            }
            if let (CState::Running { .. }, RtStatus::Exited { code, started_at, finished_at }) =
                (&c.state, env.runtime.status(&id).await)
            {
                let reason = if code == 0 { "Completed" } else { "Error" };
                c.state = CState::Terminated {
                    exit_code: code,
                    reason: reason.into(),
                    message: None,
                    started_at,
                    finished_at,
                };
                c.ready = false;
                c.started = false;
                c.kill_at = None;
                let restart = !c.init && (restart_policy == "Always" || (restart_policy == "OnFailure" && code != 0))
                    || c.init && code != 0 && restart_policy != "Never";
                if restart {
                    // The first restart is immediate; then 10 s, doubling to 5 min (upstream).
                    c.wait = c.backoff;
                    c.next_start = Some(Instant::now() + c.wait);
                    c.backoff = if c.backoff.is_zero() { INITIAL_BACKOFF } else { (c.backoff * 2).min(MAX_BACKOFF) };
                }
            }
        }

        // Start what should run: init containers one by one, then all containers.
        let init_blocking =
            ctrs.iter().position(|c| c.init && !matches!(c.state, CState::Terminated { exit_code: 0, .. }));
        let init_failed_for_good = restart_policy == "Never"
            && ctrs.iter().any(|c| c.init && matches!(c.state, CState::Terminated { exit_code, .. } if exit_code != 0));
        let candidates: Vec<usize> = match init_blocking {
            _ if init_failed_for_good => vec![],
            Some(i) => vec![i],
            None => (0..ctrs.len()).filter(|i| !ctrs[*i].init).collect(),
        };
        for i in candidates {
            let c = &mut ctrs[i];
            let now = Instant::now();
            let due = match &c.state {
                CState::Running { .. } => false,
                CState::Waiting { .. } => c.next_start.is_none_or(|t| now >= t),
                CState::Terminated { .. } => match c.next_start {
                    None => false,
                    Some(t) if now >= t => true,
                    Some(_) => {
                        let name_c = c.spec.name.clone();
                        c.last_state = Some(c.state.clone());
                        c.state = CState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: Some(format!(
                                "back-off {}s restarting failed container={name_c} pod={name}_{ns}({uid})",
                                c.wait.as_secs()
                            )),
                        };
                        env.event(&pod, "Warning", "BackOff", "Back-off restarting failed container", Some(&name_c))
                            .await;
                        false
                    }
                },
            };
            if !due {
                continue;
            }
            let plan = match &c.plan {
                Some(p) => p.clone(),
                None => {
                    let p = env.shared.resolve(&c.spec);
                    c.plan = Some(p.clone());
                    p
                }
            };
            match plan {
                Plan::NotRunnable { reason, message, .. } => {
                    let first = !matches!(&c.state, CState::Waiting { reason: r, .. } if r == "ErrImagePull" || r == "ImagePullBackOff");
                    if first {
                        c.state = CState::Waiting { reason: reason.clone(), message: Some(message.clone()) };
                        env.event(
                            &pod,
                            "Warning",
                            "Failed",
                            &format!("Failed to pull image {:?}: {message}", c.spec.image.clone().unwrap_or_default()),
                            Some(&c.spec.name),
                        )
                        .await;
                        c.next_start = Some(Instant::now() + INITIAL_BACKOFF);
                    } else if c.next_start.is_some_and(|t| Instant::now() >= t) {
                        c.state = CState::Waiting {
                            reason: "ImagePullBackOff".into(),
                            message: Some(format!(
                                "Back-off pulling image {:?}: {message}",
                                c.spec.image.clone().unwrap_or_default()
                            )),
                        };
                        env.event(
                            &pod,
                            "Normal",
                            "BackOff",
                            &format!("Back-off pulling image {:?}", c.spec.image.clone().unwrap_or_default()),
                            Some(&c.spec.name),
                        )
                        .await;
                        c.next_start = Some(Instant::now() + MAX_BACKOFF);
                    }
                }
                Plan::Run { .. } => {
                    // The environment is built at each start, from the Services cached right now.
                    let own_env = match env.shared.container_env(&pod, &c.spec, sb).await {
                        Ok(e) => e,
                        Err(e) => {
                            let first = !matches!(&c.state, CState::Waiting { reason: r, .. } if r == CONFIG_ERROR);
                            if matches!(c.state, CState::Terminated { .. }) {
                                c.last_state = Some(c.state.clone());
                            }
                            c.state = CState::Waiting { reason: CONFIG_ERROR.into(), message: Some(e.to_string()) };
                            c.next_start = Some(Instant::now() + Duration::from_secs(1));
                            if first {
                                env.event(&pod, "Warning", "Failed", &format!("Error: {e}"), Some(&c.spec.name)).await;
                            }
                            continue;
                        }
                    };
                    // `$(VAR)` in command and args refers to the final environment.
                    let run = env.shared.resolve(&expand_command_and_args(&c.spec, &own_env));
                    let Plan::Run { argv, image_env, .. } = &run else { continue };
                    let description = run.describe();
                    let argv = argv.clone();
                    if let Some(old) = c.id.take() {
                        if let Some(older) = c.prev_id.replace(old) {
                            env.runtime.remove(&older).await;
                        }
                    }
                    if c.started_once {
                        c.restart_count += 1;
                        if matches!(c.state, CState::Terminated { .. }) {
                            c.last_state = Some(c.state.clone());
                        }
                    }
                    let id = format!("{}-{}-{}", uid, c.spec.name, c.restart_count);
                    let mut envs = image_env.clone();
                    for (k, v) in own_env {
                        envs.retain(|(ek, _)| *ek != k);
                        envs.push((k, v));
                    }
                    let spec = StartSpec {
                        id: id.clone(),
                        pod_uid: uid.clone(),
                        container: c.spec.name.clone(),
                        argv,
                        env: envs,
                        working_dir: c.spec.working_dir.clone().map(Into::into),
                        netns: Some(sb.netns_path.clone()),
                        hostname: sb.hostname.clone(),
                        hosts_file: sb.hosts.clone(),
                        resolv_conf: sb.resolv.clone(),
                        log_path: env.shared.log_path(&ns, &name, &uid, &c.spec.name, c.restart_count),
                    };
                    if !c.started_once {
                        env.event(
                            &pod,
                            "Normal",
                            "Pulled",
                            &format!(
                                "Container image {:?} already present on machine ({description})",
                                c.spec.image.clone().unwrap_or_default()
                            ),
                            Some(&c.spec.name),
                        )
                        .await;
                    }
                    let log_path = spec.log_path.clone();
                    match env.runtime.start(&spec).await {
                        Ok(()) => {
                            let previous_log_path = (c.restart_count > 0)
                                .then(|| env.shared.log_path(&ns, &name, &uid, &c.spec.name, c.restart_count - 1));
                            env.shared.directory.set(
                                &ns,
                                &name,
                                &c.spec.name,
                                crate::server::RunningContainer {
                                    id: id.clone(),
                                    pod_ip: sb.ip,
                                    log_path,
                                    previous_log_path,
                                },
                            );
                            c.id = Some(id);
                            c.started_once = true;
                            c.next_start = None;
                            c.state = CState::Running { started_at: jiff::Timestamp::now() };
                            c.liveness = ProbeState::default();
                            c.readiness = ProbeState::default();
                            c.startup = ProbeState::default();
                            c.started = c.spec.startup_probe.is_none();
                            c.ready = c.spec.readiness_probe.is_none() && c.started && !c.init;
                            env.event(
                                &pod,
                                "Normal",
                                "Created",
                                &format!("Created container {}", c.spec.name),
                                Some(&c.spec.name),
                            )
                            .await;
                            env.event(
                                &pod,
                                "Normal",
                                "Started",
                                &format!("Started container {}", c.spec.name),
                                Some(&c.spec.name),
                            )
                            .await;
                        }
                        Err(e) => {
                            c.state =
                                CState::Waiting { reason: "RunContainerError".into(), message: Some(e.to_string()) };
                            c.next_start = Some(Instant::now() + INITIAL_BACKOFF);
                            env.event(&pod, "Warning", "Failed", &format!("Error: {e}"), Some(&c.spec.name)).await;
                        }
                    }
                }
            }
        }

        // Probes of running containers.
        let pod_ip = sb.ip;
        for c in ctrs.iter_mut().filter(|c| !c.init) {
            let (CState::Running { .. }, Some(id)) = (&c.state, c.id.clone()) else { continue };
            let target =
                ProbeTarget { runtime: env.runtime.clone(), id: id.clone(), pod_ip, container: c.spec.clone() };
            if let Some(p) = c.spec.startup_probe.clone() {
                if !c.started {
                    match step_probe(&mut c.startup, &p, &target).await {
                        Some(ProbeVerdict::Pass) => c.started = true,
                        Some(ProbeVerdict::Fail) => {
                            let message = c.startup.last_message.clone();
                            c.kill_at =
                                Some(restart_for_probe(&env, &pod, &c.spec.name, &id, "Startup", &message).await);
                        }
                        None => {}
                    }
                    continue;
                }
            }
            if let Some(p) = c.spec.liveness_probe.clone() {
                if let Some(ProbeVerdict::Fail) = step_probe(&mut c.liveness, &p, &target).await {
                    let message = c.liveness.last_message.clone();
                    c.kill_at = Some(restart_for_probe(&env, &pod, &c.spec.name, &id, "Liveness", &message).await);
                    c.liveness = ProbeState::default();
                }
            }
            if let Some(p) = c.spec.readiness_probe.clone() {
                match step_probe(&mut c.readiness, &p, &target).await {
                    Some(ProbeVerdict::Pass) => c.ready = true,
                    Some(ProbeVerdict::Fail) => {
                        if c.ready || c.readiness.failures == p.failure_threshold.unwrap_or(3) {
                            env.event(
                                &pod,
                                "Warning",
                                "Unhealthy",
                                &format!("Readiness probe failed: {}", c.readiness.last_message),
                                Some(&c.spec.name),
                            )
                            .await;
                        }
                        c.ready = false;
                    }
                    None => {}
                }
            }
        }

        // Report status when it changed.
        let old_conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let carried: Vec<_> = old_conditions.iter().filter(|c| c.type_ == "PodScheduled").cloned().collect();
        let rec = PodRecord {
            init_containers: ctrs.iter().filter(|c| c.init).map(Ctr::record).collect(),
            containers: ctrs.iter().filter(|c| !c.init).map(Ctr::record).collect(),
            pod_ip: Some(sb.ip.to_string()),
            host_ip: Some(env.shared.node_ip.to_string()),
            start_time: Some(start_time),
            restart_policy: restart_policy.clone(),
            sandbox_ready: true,
            carried_conditions: carried,
            now: None,
        };
        let mut status = serde_json::to_value(pod_status(&rec, &old_conditions)).unwrap_or_default();
        if let Some(qos) = pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
            status["qosClass"] = json!(qos);
        }
        if status != last_status {
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
                Ok(p) => {
                    last_status = status;
                    // The written pod is the newest this worker knows: later computations start from it.
                    if !older(&p, &pod) {
                        pod = p;
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => gone = true,
                Err(e) => tracing::debug!(pod = %name, error = %e, "posting pod status"),
            }
        }
    }
}

/// Whether `candidate` is an older version of `current` (store revisions as resourceVersions).
fn older(candidate: &Pod, current: &Pod) -> bool {
    let rv = |p: &Pod| p.metadata.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok());
    match (rv(candidate), rv(current)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

/// A liveness or startup probe gave up: record it and stop the container (SIGTERM now); the
/// returned instant is when it gets SIGKILL if still running (the pod's grace period).
async fn restart_for_probe(env: &WorkerEnv, pod: &Pod, name: &str, id: &str, probe: &str, message: &str) -> Instant {
    env.event(pod, "Warning", "Unhealthy", &format!("{probe} probe failed: {message}"), Some(name)).await;
    let why = format!("Container {name} failed {} probe, will be restarted", probe.to_lowercase());
    env.event(pod, "Normal", "Killing", &why, Some(name)).await;
    env.runtime.signal(id, 15).await;
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0);
    Instant::now() + Duration::from_secs(grace as u64)
}

enum ProbeVerdict {
    Pass,
    Fail,
}

/// Run a probe when it is due and apply its thresholds; `Some` when the verdict flips to a
/// reportable outcome (threshold reached).
async fn step_probe(st: &mut ProbeState, p: &Probe, target: &ProbeTarget) -> Option<ProbeVerdict> {
    let now = Instant::now();
    let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
    match st.next {
        None => {
            st.next = Some(now + Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64));
            if p.initial_delay_seconds.unwrap_or(0) > 0 {
                return None;
            }
        }
        Some(t) if now < t => return None,
        _ => {}
    }
    st.next = Some(now + period);
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    match run_probe(p, target, timeout).await {
        ProbeOutcome::Success => {
            st.failures = 0;
            st.successes += 1;
            (st.successes >= p.success_threshold.unwrap_or(1)).then_some(ProbeVerdict::Pass)
        }
        ProbeOutcome::Failure(msg) => {
            st.successes = 0;
            st.failures += 1;
            st.last_message = msg;
            (st.failures >= p.failure_threshold.unwrap_or(3)).then(|| {
                let v = ProbeVerdict::Fail;
                if st.failures > p.failure_threshold.unwrap_or(3) {
                    st.failures = p.failure_threshold.unwrap_or(3);
                }
                v
            })
        }
    }
}

/// Values for env `fieldRef`s.
pub fn field_ref(pod: &Pod, path: &str, pod_ip: Ipv4Addr, host_ip: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => m.name.clone()?,
        "metadata.namespace" => m.namespace.clone()?,
        "metadata.uid" => m.uid.clone()?,
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?.service_account_name.clone().unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        p => {
            let (map, key) = if let Some(k) = p.strip_prefix("metadata.labels['").and_then(|r| r.strip_suffix("']")) {
                (m.labels.as_ref(), k)
            } else if let Some(k) = p.strip_prefix("metadata.annotations['").and_then(|r| r.strip_suffix("']")) {
                (m.annotations.as_ref(), k)
            } else {
                return None;
            };
            map.and_then(|l| l.get(key)).cloned().unwrap_or_default()
        }
    })
}

/// The environment of a container: its `env` and `envFrom` resolved (ConfigMaps and Secrets
/// read through the API), plus the PATH and HOSTNAME a container image would set. `$(VAR)` in an
/// `env[].value` refers to the variables defined before it, else to the service variables.
pub async fn resolve_env(
    client: &Client,
    pod: &Pod,
    c: &Container,
    pod_ip: Ipv4Addr,
    host_ip: &str,
    hostname: &str,
    services: &ServiceEnv,
) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: String, v: String, out: &mut BTreeMap<String, String>| {
        if !out.contains_key(&k) {
            order.push(k.clone());
        }
        out.insert(k, v);
    };
    set("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(), &mut out);
    set("HOSTNAME".into(), hostname.to_string(), &mut out);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for from in c.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            if let Ok(cm) = cms.get(&r.name).await {
                for (k, v) in cm.data.unwrap_or_default() {
                    set(format!("{prefix}{k}"), v, &mut out);
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            if let Ok(s) = secrets.get(&r.name).await {
                for (k, v) in s.data.unwrap_or_default() {
                    set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned(), &mut out);
                }
            }
        }
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => {
                Some(expand_with(v, |name| out.get(name).map(String::as_str).or_else(|| services.get(name))))
            }
            (None, Some(vf)) => {
                if let Some(f) = &vf.field_ref {
                    field_ref(pod, &f.field_path, pod_ip, host_ip)
                } else if let Some(k) = &vf.config_map_key_ref {
                    cms.get(&k.name).await.ok().and_then(|cm| cm.data.and_then(|d| d.get(&k.key).cloned()))
                } else if let Some(k) = &vf.secret_key_ref {
                    secrets.get(&k.name).await.ok().and_then(|s| {
                        s.data.and_then(|d| d.get(&k.key).map(|v| String::from_utf8_lossy(&v.0).into_owned()))
                    })
                } else {
                    None
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            set(e.name.clone(), v, &mut out);
        }
    }
    order.into_iter().filter_map(|k| out.get(&k).map(|v| (k.clone(), v.clone()))).collect()
}

/// `$(VAR)` expansion of env values as upstream (`$$` escapes, unknown references stay).
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    expand_with(s, |name| vars.get(name).map(String::as_str))
}

/// A container's `command` and `args` with `$(VAR)` references to its final environment expanded (upstream
/// `ExpandContainerCommandAndArgs`).
pub fn expand_command_and_args(c: &Container, env: &[(String, String)]) -> Container {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let expand_all = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.iter().map(|a| expand(a, &vars)).collect());
    Container { command: expand_all(&c.command), args: expand_all(&c.args), ..c.clone() }
}

/// [`expand`] with a lookup function.
pub fn expand_with<'a>(s: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(j) => {
                    let name = &body[..j];
                    match lookup(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[j + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion_as_upstream() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)", &vars), "x-$(B)-$(A)");
        assert_eq!(expand("plain", &vars), "plain");
    }

    fn offline_client() -> Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn env_values_may_refer_to_service_variables_and_own_definitions_come_first() {
        use super::super::service_env::{service_env, with_service_env};
        use k8s_openapi::api::core::v1::{EnvVar, Service};
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "kubia", "namespace": "ns"},
            "spec": {"clusterIP": "10.43.0.5", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        }))
        .unwrap();
        let services = service_env([&svc], "ns", true);
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}})).unwrap();
        let var = |n: &str, v: &str| EnvVar { name: n.into(), value: Some(v.into()), value_from: None };
        let c = Container {
            name: "c".into(),
            env: Some(vec![
                var("URL", "http://$(KUBIA_SERVICE_HOST):$(KUBIA_SERVICE_PORT_HTTP)/"),
                // Defined after URL: URL still saw the service's value; the container then sees its own.
                var("KUBIA_SERVICE_PORT_HTTP", "8080"),
                var("AGAIN", "$(KUBIA_SERVICE_PORT_HTTP)"),
            ]),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec!["echo $(KUBIA_PORT) $(AGAIN) $(MISSING)".into()]),
            ..Default::default()
        };
        let own =
            resolve_env(&offline_client(), &pod, &c, Ipv4Addr::new(10, 42, 0, 5), "10.0.0.1", "p", &services).await;
        let all = with_service_env(own, &services);
        let get = |k: &str| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("URL"), Some("http://10.43.0.5:80/"));
        assert_eq!(get("KUBIA_SERVICE_PORT_HTTP"), Some("8080"));
        assert_eq!(all.iter().filter(|(n, _)| n == "KUBIA_SERVICE_PORT_HTTP").count(), 1);
        assert_eq!(get("AGAIN"), Some("8080"));
        assert_eq!(get("KUBIA_PORT_80_TCP_ADDR"), Some("10.43.0.5"));
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..5], ["PATH", "HOSTNAME", "URL", "KUBIA_SERVICE_PORT_HTTP", "AGAIN"]);
        let expanded = expand_command_and_args(&c, &all);
        assert_eq!(expanded.args.unwrap(), ["echo tcp://10.43.0.5:80 8080 $(MISSING)"]);
        assert_eq!(expanded.command.unwrap(), ["sh", "-c"]);
    }
}
