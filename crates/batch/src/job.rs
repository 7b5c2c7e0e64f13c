//! The Job controller (upstream `pkg/controller/job`): runs a job's pods to completion within its parallelism,
//! counts finished pods through `status.uncountedTerminatedPods` and the `batch.kubernetes.io/job-tracking` pod
//! finalizer, enforces `backoffLimit` and `activeDeadlineSeconds`, suspends and resumes, and marks the job
//! `SuccessCriteriaMet`/`Complete` or `FailureTarget`/`Failed` once no pod is left terminating.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferry_runtime::events::Recorder;
use ferry_runtime::{Change, Expectations, Informer, Key, Next, Reconciler};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;

use crate::jobutil::{self as util, BackoffRecord};
use crate::{WrittenVersions, STALE_RECHECK};

/// How long unmet pod creations/deletions hold a job back before the cache is trusted again.
const EXPECTATIONS_TTL: Duration = Duration::from_secs(300);
/// Concurrent requests per batch of finalizer removals and deletions.
const CONCURRENCY: usize = 16;
/// Upstream `SlowStartInitialBatchSize`.
const SLOW_START: usize = 1;

/// What failed while syncing a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("creating a pod of job {job}: {source}")]
    CreatePod { job: String, source: kube::Error },
    #[error("deleting pod {pod}: {source}")]
    DeletePod { pod: String, source: kube::Error },
    #[error("removing the tracking finalizer of pod {pod}: {source}")]
    RemoveFinalizer { pod: String, source: kube::Error },
    #[error("updating the status of job {job}: {source}")]
    UpdateStatus { job: String, source: kube::Error },
}

/// The reconciler; keys are jobs (namespace/name), also for pods that only point at a job by name.
pub struct JobController {
    client: Client,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    recorder: Recorder,
    expectations: Expectations<Key>,
    /// UIDs of pods whose tracking finalizer removal was sent but not yet seen in the cache.
    finalizers: HashMap<Key, HashSet<String>>,
    backoff: HashMap<Key, BackoffRecord>,
    written: WrittenVersions,
}

/// The key of the job controlling a pod (by name: the job may be gone, and its finalizers then still go).
fn job_key_of(pod: &Pod) -> Option<Key> {
    let r = util::controller_of(&pod.metadata, "Job")?;
    (r.api_version == "batch/v1").then(|| Key::new(pod.metadata.namespace.clone().unwrap_or_default(), r.name.clone()))
}

impl JobController {
    pub fn new(client: Client, jobs: Informer<Job>, pods: Informer<Pod>) -> JobController {
        JobController {
            recorder: Recorder::new(client.clone(), "job-controller"),
            client,
            jobs,
            pods,
            expectations: Expectations::new(EXPECTATIONS_TTL),
            finalizers: HashMap::new(),
            backoff: HashMap::new(),
            written: WrittenVersions::default(),
        }
    }

    /// Keys for a job change.
    pub fn job_changed(&mut self, change: &Change<Job>) -> Vec<Key> {
        change.object().map(Key::of).into_iter().collect()
    }

    /// Keys for a pod change; records what the cache now shows of this controller's writes.
    pub fn pod_changed(&mut self, change: &Change<Pod>) -> Vec<Key> {
        let (pod, old, deleted) = match change {
            Change::Applied { old, new } => (new.as_ref(), old.as_deref(), false),
            Change::Deleted(pod) => (pod.as_ref(), None, true),
            Change::Synced => return Vec::new(),
        };
        let Some(key) = job_key_of(pod) else { return Vec::new() };
        let deleting = pod.metadata.deletion_timestamp.is_some();
        match (deleted, old) {
            (true, _) => self.expectations.deletion_observed(&key),
            (false, None) if deleting => self.expectations.deletion_observed(&key),
            (false, None) => self.expectations.creation_observed(&key),
            (false, Some(old)) if deleting && old.metadata.deletion_timestamp.is_none() => {
                self.expectations.deletion_observed(&key)
            }
            _ => {}
        }
        if deleted || !util::has_tracking_finalizer(pod) {
            if let (Some(set), Some(uid)) = (self.finalizers.get_mut(&key), pod.metadata.uid.as_deref()) {
                set.remove(uid);
            }
        }
        vec![key]
    }

    fn pods_api(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Removes the tracking finalizer from pods (concurrently); the UIDs whose finalizer is gone and the first error.
    async fn remove_finalizers(&mut self, key: &Key, pods: &[Arc<Pod>]) -> (HashSet<String>, Option<JobError>) {
        let api = self.pods_api(&key.namespace);
        let expected = self.finalizers.entry(key.clone()).or_default();
        for p in pods {
            expected.insert(p.metadata.uid.clone().unwrap_or_default());
        }
        let patch = util::remove_finalizer_patch();
        let owned: Vec<Arc<Pod>> = pods.to_vec();
        let results: Vec<(String, String, Result<(), kube::Error>)> = futures::stream::iter(owned)
            .map(|p| {
                let (api, patch) = (api.clone(), patch.clone());
                async move {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    let result = api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await;
                    (name, uid, result.map(|_| ()))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut removed = HashSet::new();
        let mut first_error = None;
        for (name, uid, result) in results {
            match result {
                Ok(()) => {
                    removed.insert(uid);
                }
                Err(e) => {
                    if let Some(set) = self.finalizers.get_mut(key) {
                        set.remove(&uid);
                    }
                    if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                        removed.insert(uid);
                    } else if first_error.is_none() {
                        first_error = Some(JobError::RemoveFinalizer { pod: name, source: e });
                    }
                }
            }
        }
        (removed, first_error)
    }

    /// Finalizers of pods whose job is gone, replaced (another UID) or finished: nobody will count them any more.
    async fn release_pods(&mut self, key: &Key, live: Option<&Job>) -> Result<(), JobError> {
        let stale: Vec<Arc<Pod>> = self
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
            .filter(|p| util::has_tracking_finalizer(p))
            .filter(|p| job_key_of(p).as_ref() == Some(key))
            .filter(|p| match live {
                None => true,
                Some(job) => util::is_finished(job) || !util::controlled_by(p, job),
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let (_, error) = self.remove_finalizers(key, &stale).await;
        error.map_or(Ok(()), Err)
    }

    async fn write_status(&mut self, job: &Job) -> Result<Job, JobError> {
        let name = job.metadata.name.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace.as_deref().unwrap_or_default());
        let written = api
            .replace_status(&name, &PostParams::default(), job)
            .await
            .map_err(|source| JobError::UpdateStatus { job: name, source })?;
        self.written.wrote(&Key::of(job), &written.metadata);
        Ok(written)
    }

    /// Deletes pods (after dropping their finalizer when `release`); returns (ready deleted, deleted, first error).
    async fn delete_pods(&mut self, job: &Job, pods: &[&Pod], release: bool) -> (i32, i32, Option<JobError>) {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let api = self.pods_api(&namespace);
        let owned: Vec<(Pod, bool)> = pods.iter().map(|p| ((*p).clone(), util::is_ready(p))).collect();
        let results: Vec<(String, bool, Result<(), kube::Error>)> = futures::stream::iter(owned)
            .map(|(p, ready)| {
                let api = api.clone();
                async move {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if release && util::has_tracking_finalizer(&p) {
                        let patch = util::remove_finalizer_patch();
                        if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                            return (name, ready, Err(e));
                        }
                    }
                    let result = api.delete(&name, &DeleteParams::default()).await.map(|_| ());
                    (name, ready, result)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let key = Key::of(job);
        let (mut ready_deleted, mut deleted, mut first_error) = (0, 0, None);
        for (name, ready, result) in results {
            match result {
                Ok(()) => {
                    deleted += 1;
                    ready_deleted += i32::from(ready);
                    self.recorder.normal(job, "SuccessfulDelete", &format!("Deleted pod: {name}")).await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    deleted += 1;
                    ready_deleted += i32::from(ready);
                    self.expectations.deletion_observed(&key);
                }
                Err(e) => {
                    self.expectations.deletion_observed(&key);
                    self.recorder.warning(job, "FailedDelete", &format!("Error deleting: {e}")).await;
                    first_error.get_or_insert(JobError::DeletePod { pod: name, source: e });
                }
            }
        }
        (ready_deleted, deleted, first_error)
    }

    /// Creates `count` pods (with these indexes when Indexed) in slow-start batches 1, 2, 4, ...; how many were
    /// created and the first error.
    async fn create_pods(&mut self, job: &Job, count: usize, indexes: Vec<i32>) -> (i32, Option<JobError>) {
        let key = Key::of(job);
        let name = job.metadata.name.clone().unwrap_or_default();
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let api = self.pods_api(&namespace);
        let mut template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let indexed = util::is_indexed(job);
        if indexed {
            util::add_completion_index_env(&mut template);
        }
        let mut planned: Vec<Pod> = if indexed {
            indexes.iter().map(|i| util::pod_from_template(job, &template, Some(*i))).collect()
        } else {
            (0..count).map(|_| util::pod_from_template(job, &template, None)).collect()
        };
        self.expectations.expect(key.clone(), planned.len(), 0);
        let mut created = 0;
        let mut batch = SLOW_START.min(planned.len());
        while !planned.is_empty() {
            let now: Vec<Pod> = planned.drain(..batch.min(planned.len())).collect();
            let results: Vec<Result<Pod, kube::Error>> = futures::future::join_all(now.iter().map(|p| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), p).await }
            }))
            .await;
            let mut failed = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        created += 1;
                        let pod_name = pod.metadata.name.unwrap_or_default();
                        self.recorder.normal(job, "SuccessfulCreate", &format!("Created pod: {pod_name}")).await;
                    }
                    Err(e) => {
                        self.expectations.creation_observed(&key);
                        self.recorder.warning(job, "FailedCreate", &format!("Error creating: {e}")).await;
                        failed.get_or_insert(JobError::CreatePod { job: name.clone(), source: e });
                    }
                }
            }
            if let Some(e) = failed {
                // The rest is retried on the next sync; they will never show in the cache.
                for _ in 0..planned.len() {
                    self.expectations.creation_observed(&key);
                }
                return (created, Some(e));
            }
            batch = (batch * 2).min(planned.len().max(1));
        }
        (created, None)
    }
}

/// Everything one sync computed about a job (upstream `syncJobCtx`).
struct SyncCtx {
    pods: Vec<Arc<Pod>>,
    expected_rm: HashSet<String>,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    finished: Option<JobCondition>,
    prev_succeeded_indexes: BTreeSet<i32>,
    succeeded_indexes: BTreeSet<i32>,
    terminating: i32,
    backoff: BackoffRecord,
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// Moves UIDs whose finalizer is gone from the uncounted lists into the counters; whether anything changed.
fn count_released(job: &mut Job, with_finalizer: &HashSet<String>) -> bool {
    let status = job.status.get_or_insert_with(Default::default);
    let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
    let mut changed = false;
    let split = |list: &mut Option<Vec<String>>| -> i32 {
        let all = list.take().unwrap_or_default();
        let before = all.len();
        let kept: Vec<String> = all.into_iter().filter(|u| with_finalizer.contains(u)).collect();
        let released = (before - kept.len()) as i32;
        *list = (!kept.is_empty()).then_some(kept);
        released
    };
    let succeeded = split(&mut uncounted.succeeded);
    let failed = split(&mut uncounted.failed);
    if succeeded > 0 {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + succeeded);
        changed = true;
    }
    if failed > 0 {
        status.failed = Some(status.failed.unwrap_or(0) + failed);
        changed = true;
    }
    changed
}

fn none_if_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

impl Reconciler for JobController {
    type Key = Key;
    type Error = JobError;

    fn name(&self) -> &'static str {
        "job"
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, JobError> {
        let Some(shared) = self.jobs.get(&key.namespace, &key.name) else {
            self.expectations.forget(key);
            self.backoff.remove(key);
            self.release_pods(key, None).await?;
            self.finalizers.remove(key);
            self.written.forget(key);
            return Ok(Next::Done);
        };
        if !self.written.caught_up(key, &shared.metadata) {
            // The job's own watch event will bring the status this controller wrote.
            return Ok(Next::After(STALE_RECHECK));
        }
        if util::is_finished(&shared) {
            self.backoff.remove(key);
            self.release_pods(key, Some(&shared)).await?;
            return Ok(Next::Done);
        }
        // Pods of an earlier job of the same name.
        self.release_pods(key, Some(&shared)).await?;
        let span = tracing::debug_span!("sync job", job = %key);
        let _guard = span.enter();
        self.sync(key, (*shared).clone()).await
    }
}

impl JobController {
    async fn sync(&mut self, key: &Key, mut job: Job) -> Result<Next, JobError> {
        let now = Timestamp::now();
        let spec = job.spec.clone().unwrap_or_default();
        let status = job.status.get_or_insert_with(Default::default);
        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default).clone();

        // Expectations first: a pod created after this check is seen by the next sync.
        let satisfied = self.expectations.satisfied(key);
        let pods: Vec<Arc<Pod>> =
            self.pods.store().state().into_iter().filter(|p| util::controlled_by(p, &job)).collect();
        let active_pods: Vec<&Pod> = pods.iter().map(Arc::as_ref).filter(|p| util::is_active(p)).collect();
        let mut ctx = SyncCtx {
            expected_rm: self.finalizers.get(key).cloned().unwrap_or_default(),
            uncounted_succeeded: uncounted.succeeded.iter().flatten().cloned().collect(),
            uncounted_failed: uncounted.failed.iter().flatten().cloned().collect(),
            finished: None,
            prev_succeeded_indexes: BTreeSet::new(),
            succeeded_indexes: BTreeSet::new(),
            terminating: pods.iter().filter(|p| util::is_terminating(p)).count() as i32,
            backoff: BackoffRecord::default(),
            pods: pods.clone(),
        };
        let mut ready = active_pods.iter().filter(|p| util::is_ready(p)).count() as i32;
        let mut active = active_pods.len() as i32;

        // Finished pods not counted yet: still holding the finalizer and not in the uncounted lists.
        let fresh = |p: &&Pod, uncounted: &HashSet<String>| {
            util::has_tracking_finalizer(p) && !uncounted.contains(&uid(p)) && !ctx.expected_rm.contains(&uid(p))
        };
        let valid_index = |p: &Pod| {
            !util::is_indexed(&job) || util::completion_index(p).is_some_and(|i| i < spec.completions.unwrap_or(0))
        };
        let new_succeeded: Vec<&Pod> = pods
            .iter()
            .map(Arc::as_ref)
            .filter(|p| fresh(p, &ctx.uncounted_succeeded) && valid_index(p) && util::is_succeeded(p))
            .collect();
        let new_failed: Vec<&Pod> = pods
            .iter()
            .map(Arc::as_ref)
            .filter(|p| fresh(p, &ctx.uncounted_failed) && valid_index(p) && util::is_failed(p, &job))
            .collect();
        let status = job.status.get_or_insert_with(Default::default);
        let mut succeeded =
            status.succeeded.unwrap_or(0) + new_succeeded.len() as i32 + ctx.uncounted_succeeded.len() as i32;
        let failed = status.failed.unwrap_or(0) + new_failed.len() as i32 + ctx.uncounted_failed.len() as i32;
        if status.start_time.is_none() && !util::is_suspended(&job) {
            job.status.get_or_insert_with(Default::default).start_time = Some(Time(now));
        }
        ctx.backoff = self.backoff.get(key).cloned().unwrap_or_default().after(&new_succeeded, &new_failed);

        let mut requeue: Option<Duration> = None;
        let mut want_requeue = |d: Duration| {
            let d = d.max(Duration::from_secs(1));
            requeue = Some(requeue.map_or(d, |r: Duration| r.min(d)));
        };
        ctx.finished = util::condition(&job, util::SUCCESS_CRITERIA_MET).cloned();
        if ctx.finished.is_none() {
            if let Some(target) = util::condition(&job, util::FAILURE_TARGET) {
                let (reason, message) = (target.reason.clone(), target.message.clone());
                ctx.finished = Some(util::new_condition(
                    util::FAILED,
                    "True",
                    reason.as_deref().unwrap_or(""),
                    message.as_deref().unwrap_or(""),
                    now,
                ));
            }
        }
        if ctx.finished.is_none() {
            let backoff_limit = spec.backoff_limit.unwrap_or(6);
            let all: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
            if failed > backoff_limit || util::past_backoff_limit_on_failure(&job, &all) {
                ctx.finished = Some(util::new_condition(
                    util::FAILURE_TARGET,
                    "True",
                    util::REASON_BACKOFF_LIMIT,
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if util::past_active_deadline(&job, now) {
                ctx.finished = Some(util::new_condition(
                    util::FAILURE_TARGET,
                    "True",
                    util::REASON_DEADLINE,
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else if let Some(left) = util::deadline_remaining(&job, now) {
                want_requeue(left);
            }
        }
        if util::is_indexed(&job) {
            let completions = spec.completions.unwrap_or(0);
            let status = job.status.as_ref();
            ctx.prev_succeeded_indexes =
                util::parse_indexes(status.and_then(|s| s.completed_indexes.as_deref()).unwrap_or(""), completions);
            ctx.succeeded_indexes = ctx.prev_succeeded_indexes.clone();
            for p in &pods {
                if let Some(i) = util::completion_index(p) {
                    if util::is_succeeded(p) && i < completions && util::has_tracking_finalizer(p) {
                        ctx.succeeded_indexes.insert(i);
                    }
                }
            }
            succeeded = ctx.succeeded_indexes.len() as i32;
        }

        let mut suspend_changed = false;
        let mut manage_error = None;
        if ctx.finished.is_some() {
            // Terminate what still runs; the pods keep their finalizer until counted below.
            let (ready_deleted, deleted, error) = self.delete_pods(&job, &active_pods, false).await;
            if deleted != active || !satisfied {
                ctx.finished = None;
            }
            active -= deleted;
            ctx.terminating += deleted;
            ready -= ready_deleted;
            manage_error = error;
        } else {
            let mut managed = false;
            if satisfied && job.metadata.deletion_timestamp.is_none() {
                let outcome = self.manage(&job, &mut ctx, &active_pods, succeeded, now).await;
                active = outcome.active;
                ready -= outcome.ready_deleted;
                if let Some(d) = outcome.requeue {
                    want_requeue(d);
                }
                manage_error = outcome.error;
                managed = true;
            } else if let Some(deadline) = self.expectations.deadline(key) {
                want_requeue(deadline.saturating_duration_since(tokio::time::Instant::now()));
            }
            if util::is_complete(spec.completions, succeeded, active) {
                ctx.finished = Some(util::new_condition(
                    util::SUCCESS_CRITERIA_MET,
                    "True",
                    util::REASON_COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if managed {
                let suspended = util::is_suspended(&job);
                let conditions =
                    job.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
                let changed = if suspended {
                    util::ensure_condition(conditions, util::SUSPENDED, "True", "JobSuspended", "Job suspended", now)
                } else {
                    util::ensure_condition(conditions, util::SUSPENDED, "False", "JobResumed", "Job resumed", now)
                };
                if changed {
                    suspend_changed = true;
                    if suspended {
                        self.recorder.normal(&job, "Suspended", "Job suspended").await;
                    } else {
                        self.recorder.normal(&job, "Resumed", "Job resumed").await;
                        // activeDeadlineSeconds counts continuous activity: from the resume.
                        job.status.get_or_insert_with(Default::default).start_time = Some(Time(now));
                    }
                }
            }
        }

        let status = job.status.get_or_insert_with(Default::default);
        let needs_update = suspend_changed
            || status.active.unwrap_or(0) != active
            || status.ready != Some(ready)
            || status.terminating != Some(ctx.terminating);
        status.active = none_if_zero(active);
        status.ready = Some(ready);
        status.terminating = Some(ctx.terminating);
        self.track(key, job, ctx, needs_update, now).await?;
        match manage_error {
            Some(e) => Err(e),
            None => Ok(requeue.map_or(Next::Done, Next::After)),
        }
    }

    /// Upstream `manageJob`: deletes surplus pods or creates missing ones (after the failure back-off).
    async fn manage(
        &mut self,
        job: &Job,
        ctx: &mut SyncCtx,
        active_pods: &[&Pod],
        succeeded: i32,
        now: Timestamp,
    ) -> Managed {
        let spec = job.spec.clone().unwrap_or_default();
        let active = active_pods.len() as i32;
        let key = Key::of(job);
        if util::is_suspended(job) {
            self.expectations.expect(key, 0, active_pods.len());
            let (ready_deleted, deleted, error) = self.delete_pods(job, active_pods, true).await;
            ctx.terminating += deleted;
            return Managed { active: active - deleted, ready_deleted, requeue: None, error };
        }
        let parallelism = spec.parallelism.unwrap_or(1);
        let want = util::want_active(spec.completions, parallelism, succeeded, active);
        let remove_at_least = (active - want).max(0) as usize;
        let mut remove: Vec<&Pod> = Vec::new();
        let mut left: Vec<&Pod> = active_pods.to_vec();
        if util::is_indexed(job) {
            (remove, left) = util::duplicate_index_pods(active_pods, spec.completions.unwrap_or(0));
        }
        if remove.len() < remove_at_least {
            util::sort_for_removal(&mut left);
            let more = remove_at_least - remove.len();
            remove.extend(left.into_iter().take(more));
        }
        remove.truncate(util::MAX_CREATE_DELETE_PER_SYNC);
        if !remove.is_empty() {
            self.expectations.expect(key, 0, remove.len());
            let (ready_deleted, deleted, error) = self.delete_pods(job, &remove, true).await;
            ctx.terminating += deleted;
            return Managed { active: active - deleted, ready_deleted, requeue: None, error };
        }
        let terminating = if util::only_replace_failed(job) { ctx.terminating } else { 0 };
        let diff = want - terminating - active;
        if diff <= 0 {
            return Managed { active, ready_deleted: 0, requeue: None, error: None };
        }
        let wait = ctx.backoff.remaining(now);
        if !wait.is_zero() {
            return Managed { active, ready_deleted: 0, requeue: Some(wait), error: None };
        }
        let count = (diff as usize).min(util::MAX_CREATE_DELETE_PER_SYNC);
        let indexes = if util::is_indexed(job) {
            util::first_pending_indexes(&ctx.succeeded_indexes, active_pods, count, spec.completions.unwrap_or(0))
        } else {
            Vec::new()
        };
        let (created, error) = self.create_pods(job, count, indexes).await;
        Managed { active: active + created, ready_deleted: 0, requeue: None, error }
    }

    /// Upstream `trackJobStatusAndRemoveFinalizers`: records finished pods as uncounted, removes their finalizers,
    /// counts them, and sets the final condition once nothing is uncounted or terminating.
    async fn track(
        &mut self,
        key: &Key,
        mut job: Job,
        mut ctx: SyncCtx,
        mut needs_flush: bool,
        now: Timestamp,
    ) -> Result<(), JobError> {
        let indexed = util::is_indexed(&job);
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
        if indexed {
            ctx.pods.sort_by_key(|p| util::completion_index(p));
        }
        let mut with_finalizer: HashSet<String> = ctx
            .pods
            .iter()
            .filter(|p| util::has_tracking_finalizer(p) && !ctx.expected_rm.contains(&uid(p)))
            .map(|p| uid(p))
            .collect();
        needs_flush |= count_released(&mut job, &with_finalizer);
        let job_deleting = job.metadata.deletion_timestamp.is_some();
        let finishing_unsuccessfully =
            ctx.finished.as_ref().is_some_and(|c| c.type_ != util::SUCCESS_CRITERIA_MET && c.type_ != util::COMPLETE);
        let mut release: Vec<Arc<Pod>> = Vec::new();
        let mut new_indexes: Vec<i32> = Vec::new();
        let mut reached_max = false;
        let failed_flags: Vec<bool> = ctx.pods.iter().map(|p| util::is_failed(p, &job)).collect();
        {
            let status = job.status.get_or_insert_with(Default::default);
            let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
            for (pod, considered_failed) in ctx.pods.iter().zip(failed_flags) {
                let id = uid(pod);
                if !util::has_tracking_finalizer(pod) || ctx.expected_rm.contains(&id) {
                    continue;
                }
                let removable = job_deleting || ctx.finished.is_some() || util::is_succeeded(pod) || considered_failed;
                if !removable {
                    continue;
                }
                release.push(pod.clone());
                let index_ok = util::completion_index(pod).is_some_and(|i| i < completions);
                if util::is_succeeded(pod) && !ctx.uncounted_failed.contains(&id) {
                    if indexed {
                        if let Some(i) = util::completion_index(pod).filter(|_| index_ok) {
                            if !ctx.prev_succeeded_indexes.contains(&i) {
                                new_indexes.push(i);
                                needs_flush = true;
                            }
                        }
                    } else if !ctx.uncounted_succeeded.contains(&id) {
                        uncounted.succeeded.get_or_insert_with(Vec::new).push(id);
                        needs_flush = true;
                    }
                } else if (considered_failed || finishing_unsuccessfully)
                    && !ctx.uncounted_failed.contains(&pod.metadata.uid.clone().unwrap_or_default())
                    && (!indexed || index_ok)
                {
                    uncounted.failed.get_or_insert_with(Vec::new).push(uid(pod));
                    needs_flush = true;
                }
                let pending = new_indexes.len()
                    + uncounted.succeeded.as_ref().map_or(0, Vec::len)
                    + uncounted.failed.as_ref().map_or(0, Vec::len);
                if pending >= util::MAX_UNCOUNTED_PODS {
                    reached_max = true;
                    break;
                }
            }
            if indexed {
                ctx.succeeded_indexes.extend(new_indexes.iter().copied());
                let shown = util::format_indexes(&ctx.succeeded_indexes);
                if status.completed_indexes.as_deref().unwrap_or("") != shown {
                    needs_flush = true;
                }
                status.succeeded = none_if_zero(ctx.succeeded_indexes.len() as i32);
                status.completed_indexes = Some(shown);
            }
            // The interim condition is written before the finalizers go, the final one once nothing is pending.
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            if let Some(target) = ctx.finished.clone().filter(|c| c.type_ == util::FAILURE_TARGET) {
                conditions.push(target.clone());
                needs_flush = true;
                ctx.finished = Some(util::new_condition(
                    util::FAILED,
                    "True",
                    target.reason.as_deref().unwrap_or(""),
                    target.message.as_deref().unwrap_or(""),
                    now,
                ));
            }
            if let Some(met) = ctx.finished.clone().filter(|c| c.type_ == util::SUCCESS_CRITERIA_MET) {
                if !conditions.iter().any(|c| c.type_ == util::SUCCESS_CRITERIA_MET && c.status == "True") {
                    conditions.push(met.clone());
                    needs_flush = true;
                }
                ctx.finished = Some(util::new_condition(
                    util::COMPLETE,
                    "True",
                    met.reason.as_deref().unwrap_or(""),
                    met.message.as_deref().unwrap_or(""),
                    now,
                ));
            }
        }

        // Flush what is about to be counted, then release the pods and count them.
        if needs_flush {
            job = self.write_status(&job).await?;
            self.backoff.insert(key.clone(), ctx.backoff.clone());
            needs_flush = false;
        }
        let mut release_error = None;
        if !release.is_empty() {
            let (removed, error) = self.remove_finalizers(key, &release).await;
            with_finalizer.retain(|u| !removed.contains(u));
            release_error = error;
        }
        needs_flush |= count_released(&mut job, &with_finalizer);
        if let Some(e) = release_error {
            if needs_flush {
                self.write_status(&job).await?;
            }
            return Err(e);
        }
        let finished = !reached_max && enact_finished(&mut job, ctx.finished.as_ref(), ctx.terminating, now);
        if finished || needs_flush {
            let written = self.write_status(&job).await?;
            if let (true, Some(cond)) = (finished, ctx.finished.as_ref()) {
                self.record_finished(&written, cond).await;
            }
        }
        Ok(())
    }

    async fn record_finished(&mut self, job: &Job, cond: &JobCondition) {
        if cond.type_ == util::COMPLETE {
            let spec = job.spec.as_ref();
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if spec.and_then(|s| s.completions).is_some_and(|c| succeeded > c) {
                let message = "Too many succeeded pods running after completion count reached";
                self.recorder.warning(job, "TooManySucceededPods", message).await;
            }
            self.recorder.normal(job, "Completed", "Job completed").await;
        } else {
            let reason = cond.reason.clone().unwrap_or_default();
            self.recorder.warning(job, &reason, cond.message.as_deref().unwrap_or("")).await;
        }
    }
}

/// What `manage` did.
struct Managed {
    active: i32,
    ready_deleted: i32,
    requeue: Option<Duration>,
    error: Option<JobError>,
}

/// Upstream `enactJobFinished`: sets the final condition (and `completionTime`) when nothing is uncounted and no pod
/// is terminating; whether it did.
fn enact_finished(job: &mut Job, finished: Option<&JobCondition>, terminating: i32, now: Timestamp) -> bool {
    let Some(cond) = finished else { return false };
    let status = job.status.get_or_insert_with(Default::default);
    let uncounted = status.uncounted_terminated_pods.as_ref();
    let pending =
        uncounted.map_or(0, |u| u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len));
    if pending > 0 || terminating > 0 {
        return false;
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let reason = cond.reason.as_deref().unwrap_or("");
    let message = cond.message.as_deref().unwrap_or("");
    util::ensure_condition(conditions, &cond.type_, &cond.status, reason, message, now);
    if cond.type_ == util::COMPLETE {
        status.completion_time = Some(Time(now));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn released_pods_move_from_uncounted_to_counters() {
        let mut j = job(json!({"status": {"succeeded": 2, "uncountedTerminatedPods": {
            "succeeded": ["a", "b"], "failed": ["c"]}}}));
        let still = HashSet::from(["b".to_string()]);
        assert!(count_released(&mut j, &still));
        let v = serde_json::to_value(&j.status).unwrap();
        assert_eq!(v, json!({"succeeded": 3, "failed": 1, "uncountedTerminatedPods": {"succeeded": ["b"]}}));
        assert!(!count_released(&mut j, &still));
    }

    #[test]
    fn the_final_condition_waits_for_uncounted_and_terminating_pods() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let complete = util::new_condition(util::COMPLETE, "True", util::REASON_COMPLETIONS_REACHED, "m", now);
        let mut j = job(json!({"status": {"uncountedTerminatedPods": {"succeeded": ["a"]}}}));
        assert!(!enact_finished(&mut j, Some(&complete), 0, now));
        let mut j = job(json!({"status": {"uncountedTerminatedPods": {}}}));
        assert!(!enact_finished(&mut j, Some(&complete), 1, now));
        assert!(enact_finished(&mut j, Some(&complete), 0, now));
        let status = j.status.unwrap();
        assert_eq!(status.completion_time, Some(Time(now)));
        assert_eq!(status.conditions.unwrap()[0].type_, "Complete");
    }
}
