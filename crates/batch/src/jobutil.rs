//! Pure rules of the Job controller (upstream `job_controller.go`, `indexed_job_utils.go`, `backoff_utils.go`): which
//! pods are active, failed or finished, how many pods a job wants, the pod-failure back-off, conditions, Indexed
//! completion indexes and the pods the controller creates. No IO: every function takes what it needs, `now` included.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

/// The finalizer that keeps a finished pod until the controller has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label holding an Indexed job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed job's containers read their index from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream `DefaultJobPodFailureBackOff` and `MaxJobPodFailureBackOff`.
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);
/// Upstream `MaxPodCreateDeletePerSync` and `MaxUncountedPods`.
pub const MAX_CREATE_DELETE_PER_SYNC: usize = 500;
pub const MAX_UNCOUNTED_PODS: usize = 500;

/// Condition types and reasons (batch/v1).
pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

/// Not finished and not being deleted (upstream `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted but not finished (upstream `CountTerminatingPods`).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// Only failed pods are replaced (not terminating ones): `podReplacementPolicy: Failed` or a pod failure policy.
pub fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Upstream `isPodFailed`: Failed, or (unless only failed pods are replaced) deleted before succeeding.
pub fn is_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && !is_succeeded(pod)
}

/// The controller reference of `obj` when it points to kind `kind`.
pub fn controller_of<'a>(meta: &'a ObjectMeta, kind: &str) -> Option<&'a OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true) && r.kind == kind)
}

/// Whether `pod` is controlled by `job` (same UID).
pub fn controlled_by(pod: &Pod, job: &Job) -> bool {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    controller_of(&pod.metadata, "Job").is_some_and(|r| r.uid == uid)
        && pod.metadata.namespace == job.metadata.namespace
}

/// A `True` condition of `type_`.
pub fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    condition(job, COMPLETE).is_some() || condition(job, FAILED).is_some()
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `ensureJobConditionStatus`: sets `type_` to `status`/`reason`/`message` (a new condition only when not
/// `False`); whether the list changed.
pub fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        let same = c.status == status
            && c.reason.as_deref().unwrap_or("") == reason
            && c.message.as_deref().unwrap_or("") == message;
        if same {
            return false;
        }
        *c = new_condition(type_, status, reason, message, now);
        return true;
    }
    if status == "False" {
        return false;
    }
    list.push(new_condition(type_, status, reason, message, now));
    true
}

/// How many pods should be running: `parallelism`, but never more than the completions still missing; a job without
/// `completions` keeps what runs once one pod succeeded.
pub fn want_active(completions: Option<i32>, parallelism: i32, succeeded: i32, active: i32) -> i32 {
    match completions {
        None if succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism.max(0)),
    }
}

/// Whether a job with these counts is complete (no pod left running).
pub fn is_complete(completions: Option<i32>, succeeded: i32, active: i32) -> bool {
    match completions {
        None => succeeded > 0 && active == 0,
        Some(c) => succeeded >= c && active == 0,
    }
}

/// Upstream `pastBackoffLimitOnFailure`: with `restartPolicy: OnFailure`, container restarts of running and pending
/// pods count against the back-off limit.
pub fn past_backoff_limit_on_failure(job: &Job, pods: &[&Pod]) -> bool {
    let spec = job.spec.as_ref();
    let policy = spec.and_then(|s| s.template.spec.as_ref()).and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .map(|c| i64::from(c.restart_count))
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= i64::from(limit)
    }
}

/// Whether `activeDeadlineSeconds` passed since `startTime` (never while suspended).
pub fn past_active_deadline(job: &Job, now: Timestamp) -> bool {
    deadline_remaining(job, now).is_some_and(|d| d.is_zero())
}

/// Time left before the active deadline, if one applies.
pub fn deadline_remaining(job: &Job, now: Timestamp) -> Option<Duration> {
    let ads = job.spec.as_ref()?.active_deadline_seconds?;
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    if is_suspended(job) {
        return None;
    }
    let end = start.checked_add(SignedDuration::from_secs(ads)).ok()?;
    Some(Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// When a pod finished (upstream `getFinishedTime`): its last container's end, else when it stopped being ready,
/// else its deletion, else its creation.
pub fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let from_containers = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let from_ready = || {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "False"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    from_containers
        .or_else(from_ready)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Upstream's pod-failure back-off record of one job: failures since the last success and when the last one was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: i32,
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after these newly finished pods (upstream `newBackoffRecord`).
    pub fn after(&self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> BackoffRecord {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
        failed.sort();
        let last_success = new_succeeded.iter().map(|p| finished_time(p)).max();
        match last_success {
            None => match failed.last() {
                None => self.clone(),
                Some(last) => BackoffRecord {
                    failures_after_last_success: self.failures_after_last_success + failed.len() as i32,
                    last_failure: Some(*last),
                },
            },
            Some(success) => {
                let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > success).collect();
                BackoffRecord {
                    failures_after_last_success: after.len() as i32,
                    last_failure: after.last().copied().copied(),
                }
            }
        }
    }

    /// How long pod creation waits: 10 s doubled per failure after the first, at most 6 min, since the last one.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else { return Duration::ZERO };
        if self.failures_after_last_success <= 0 {
            return Duration::ZERO;
        }
        let mut backoff = POD_FAILURE_BACKOFF;
        for _ in 1..self.failures_after_last_success {
            backoff = backoff.saturating_mul(2);
            if backoff >= MAX_POD_FAILURE_BACKOFF {
                backoff = MAX_POD_FAILURE_BACKOFF;
                break;
            }
        }
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        backoff.saturating_sub(elapsed)
    }
}

/// The order in which active pods are removed (upstream `controller.ActivePods`): unscheduled before scheduled,
/// pending before running, not ready before ready, more restarts first, newer first.
pub fn sort_for_removal(pods: &mut [&Pod]) {
    fn rank(p: &Pod) -> (bool, u8, bool, std::cmp::Reverse<i32>, std::cmp::Reverse<Option<Timestamp>>) {
        let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let phase = match phase(p) {
            "Pending" => 0,
            "Unknown" => 1,
            "Running" => 2,
            _ => 3,
        };
        let restarts = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0);
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (scheduled, phase, is_ready(p), std::cmp::Reverse(restarts), std::cmp::Reverse(created))
    }
    pods.sort_by_key(|p| rank(p));
}

// ---------------------------------------------------------------------------------------------------------------
// Indexed jobs
// ---------------------------------------------------------------------------------------------------------------

/// A pod's completion index from its annotation (`None` when missing or not a number).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?.parse().ok().filter(|i: &i32| *i >= 0)
}

/// Parses a `completedIndexes` string like `1,3-5` (indexes at or above `completions` are dropped).
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else { continue };
        for i in first.max(0)..=last.min(completions - 1) {
            out.insert(i);
        }
    }
    out
}

/// Formats indexes as upstream does: runs of three or more as `a-b`, pairs as `a,b`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|&(a, b)| match b - a {
            0 => a.to_string(),
            1 => format!("{a},{b}"),
            _ => format!("{a}-{b}"),
        })
        .collect();
    parts.join(",")
}

/// The lowest `count` indexes below `completions` that neither succeeded nor have an active pod.
pub fn first_pending_indexes(succeeded: &BTreeSet<i32>, active: &[&Pod], count: usize, completions: i32) -> Vec<i32> {
    let taken: BTreeSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    (0..completions).filter(|i| !succeeded.contains(i) && !taken.contains(i)).take(count).collect()
}

/// Active pods an Indexed job removes regardless of counts: without a valid index, or a second pod of an index.
pub fn duplicate_index_pods<'a>(active: &[&'a Pod], completions: i32) -> (Vec<&'a Pod>, Vec<&'a Pod>) {
    let mut sorted: Vec<&Pod> = active.to_vec();
    sorted.sort_by_key(|p| (completion_index(p), p.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let mut seen = BTreeSet::new();
    let (mut remove, mut keep) = (Vec::new(), Vec::new());
    for p in sorted {
        match completion_index(p) {
            Some(i) if i < completions && seen.insert(i) => keep.push(p),
            _ => remove.push(p),
        }
    }
    (remove, keep)
}

/// Adds `JOB_COMPLETION_INDEX` (from the pod's completion-index annotation) to every container without one.
pub fn add_completion_index_env(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else { return };
    let env = EnvVar {
        name: COMPLETION_INDEX_ENV.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    };
    for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        let vars = c.env.get_or_insert_with(Vec::new);
        if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
            vars.push(env.clone());
        }
    }
}

/// Upstream `podGenerateNameWithIndex`: `<job>-<index>-`, the job name cut so the prefix fits 58 characters.
pub fn generate_name_with_index(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let room = 58usize.saturating_sub(suffix.len());
    let mut end = job.len().min(room);
    while !job.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &job[..end])
}

/// The pod the controller creates for `job` from `template` (the index, when Indexed): the template's labels,
/// annotations and finalizers plus the tracking finalizer, the job as controller owner, `<job>-` as name prefix.
pub fn pod_from_template(job: &Job, template: &PodTemplateSpec, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    let mut spec = template.spec.clone();
    let generate_name = match index {
        Some(i) => {
            annotations.insert(COMPLETION_INDEX.to_string(), i.to_string());
            labels.insert(COMPLETION_INDEX.to_string(), i.to_string());
            if let Some(s) = spec.as_mut() {
                s.hostname = Some(format!("{name}-{i}"));
            }
            generate_name_with_index(&name, i)
        }
        None => format!("{name}-"),
    };
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name,
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// The JSON strategic-merge patch removing the tracking finalizer.
pub fn remove_finalizer_patch() -> serde_json::Value {
    serde_json::json!({ "metadata": { "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER] } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus};
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(v).unwrap()
    }

    fn failed_at(t: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            finished_at: Some(Time(ts(t))),
                            exit_code: 1,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn parallelism_is_capped_by_remaining_completions() {
        // completions 5, parallelism 2: two at a time, then one for the last completion.
        assert_eq!(want_active(Some(5), 2, 0, 0), 2);
        assert_eq!(want_active(Some(5), 2, 4, 0), 1);
        assert_eq!(want_active(Some(5), 2, 5, 0), 0);
        assert_eq!(want_active(Some(5), 2, 7, 0), 0);
        // Work queue: parallelism until one succeeds, then whatever runs.
        assert_eq!(want_active(None, 3, 0, 1), 3);
        assert_eq!(want_active(None, 3, 1, 2), 2);
        assert!(is_complete(None, 1, 0) && !is_complete(None, 1, 1));
        assert!(is_complete(Some(5), 5, 0) && !is_complete(Some(5), 4, 0));
    }

    #[test]
    fn failure_back_off_doubles_from_ten_seconds_and_resets_on_success() {
        let none = BackoffRecord::default();
        assert_eq!(none.remaining(ts("2024-01-01T00:00:00Z")), Duration::ZERO);
        let (a, b) = (failed_at("2024-01-01T00:00:00Z"), failed_at("2024-01-01T00:00:05Z"));
        let one = none.after(&[], &[&a]);
        assert_eq!(one.failures_after_last_success, 1);
        assert_eq!(one.remaining(ts("2024-01-01T00:00:04Z")), Duration::from_secs(6));
        let two = one.after(&[], &[&b]);
        assert_eq!(two.remaining(ts("2024-01-01T00:00:05Z")), Duration::from_secs(20));
        assert_eq!(two.remaining(ts("2024-01-01T00:01:00Z")), Duration::ZERO);
        let many = BackoffRecord { failures_after_last_success: 10, last_failure: Some(ts("2024-01-01T00:00:00Z")) };
        assert_eq!(many.remaining(ts("2024-01-01T00:00:00Z")), MAX_POD_FAILURE_BACKOFF);
        let mut ok = failed_at("2024-01-01T00:00:03Z");
        ok.status.as_mut().unwrap().phase = Some("Succeeded".into());
        // Only failures after the last success count.
        assert_eq!(
            two.after(&[&ok], &[&a, &b]),
            BackoffRecord { failures_after_last_success: 1, last_failure: b_time() }
        );
        fn b_time() -> Option<Timestamp> {
            Some(ts("2024-01-01T00:00:05Z"))
        }
    }

    #[test]
    fn restarts_count_against_the_limit_with_on_failure() {
        let j = |policy: &str, limit: i32| {
            job(
                json!({"spec": {"backoffLimit": limit, "template": {"spec": {"restartPolicy": policy, "containers": []}}}}),
            )
        };
        let running = pod(json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "a", "image": "i", "imageID": "", "ready": false, "restartCount": 2}]}}));
        assert!(past_backoff_limit_on_failure(&j("OnFailure", 2), &[&running]));
        assert!(!past_backoff_limit_on_failure(&j("OnFailure", 3), &[&running]));
        assert!(!past_backoff_limit_on_failure(&j("Never", 1), &[&running]));
        assert!(past_backoff_limit_on_failure(&j("OnFailure", 0), &[&running]));
    }

    #[test]
    fn active_deadline_counts_from_start_time() {
        let j = job(json!({"spec": {"activeDeadlineSeconds": 10, "template": {}},
            "status": {"startTime": "2024-01-01T00:00:00Z"}}));
        assert_eq!(deadline_remaining(&j, ts("2024-01-01T00:00:04Z")), Some(Duration::from_secs(6)));
        assert!(!past_active_deadline(&j, ts("2024-01-01T00:00:09Z")));
        assert!(past_active_deadline(&j, ts("2024-01-01T00:00:10Z")));
    }

    #[test]
    fn completed_indexes_format_like_upstream() {
        let set = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
        assert_eq!(format_indexes(&set(&[1, 3, 4, 5])), "1,3-5");
        assert_eq!(format_indexes(&set(&[0, 1, 3])), "0,1,3");
        assert_eq!(format_indexes(&set(&[])), "");
        assert_eq!(parse_indexes("1,3-5,9", 6), set(&[1, 3, 4, 5]));
        let active = [&pod(json!({"metadata": {"annotations": {COMPLETION_INDEX: "0"}}}))];
        assert_eq!(first_pending_indexes(&set(&[1, 3]), &active, 2, 5), [2, 4]);
        assert_eq!(generate_name_with_index("job", 3), "job-3-");
        assert_eq!(generate_name_with_index(&"j".repeat(60), 12).len(), 58);
    }

    #[test]
    fn indexed_pods_get_index_hostname_env_and_owner() {
        let j = job(json!({"metadata": {"name": "idx", "namespace": "ns", "uid": "u-1"},
            "spec": {"completionMode": "Indexed", "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"subdomain": "svc", "containers": [{"name": "c", "image": "busybox"}]}}}}));
        let mut template = j.spec.as_ref().unwrap().template.clone();
        add_completion_index_env(&mut template);
        add_completion_index_env(&mut template);
        let p = pod_from_template(&j, &template, Some(2));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["metadata"]["generateName"], "idx-2-");
        assert_eq!(v["metadata"]["annotations"][COMPLETION_INDEX], "2");
        assert_eq!(v["metadata"]["labels"], json!({"app": "x", COMPLETION_INDEX: "2"}));
        assert_eq!(v["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
        assert_eq!(
            v["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "idx", "uid": "u-1",
                "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!((v["spec"]["hostname"].as_str(), v["spec"]["subdomain"].as_str()), (Some("idx-2"), Some("svc")));
        assert_eq!(
            v["spec"]["containers"][0]["env"],
            json!([{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef":
                {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}])
        );
    }

    #[test]
    fn removal_prefers_unscheduled_pending_unready_pods() {
        let running = pod(json!({"spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running"}}));
        let pending = pod(json!({"spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Pending"}}));
        let unscheduled = pod(json!({"spec": {"containers": []}, "status": {"phase": "Pending"}}));
        let mut pods = vec![&running, &pending, &unscheduled];
        sort_for_removal(&mut pods);
        assert!(std::ptr::eq(pods[0], &unscheduled) && std::ptr::eq(pods[1], &pending));
    }

    #[test]
    fn conditions_are_set_once_and_false_is_not_added() {
        let now = ts("2024-01-01T00:00:00Z");
        let mut list = Vec::new();
        assert!(!ensure_condition(&mut list, SUSPENDED, "False", "JobResumed", "Job resumed", now));
        assert!(ensure_condition(&mut list, SUSPENDED, "True", "JobSuspended", "Job suspended", now));
        assert!(!ensure_condition(&mut list, SUSPENDED, "True", "JobSuspended", "Job suspended", now));
        assert!(ensure_condition(&mut list, SUSPENDED, "False", "JobResumed", "Job resumed", now));
        assert_eq!(list.len(), 1);
    }
}
