//! The CronJob controller (upstream `cronjob_controllerv2.go` and `utils.go`): creates a Job named
//! `<cronjob>-<scheduled minute since the epoch>` at each scheduled time (within `startingDeadlineSeconds`), honours
//! `concurrencyPolicy` and `suspend`, keeps `status.active`/`lastScheduleTime`/`lastSuccessfulTime`, prunes finished
//! jobs beyond the history limits, and re-checks at the next scheduled time. The time arithmetic is pure (`plan`).

use std::sync::Arc;
use std::time::Duration;

use ferry_runtime::events::Recorder;
use ferry_runtime::{Change, Informer, Key, Next, Reconciler};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::Client;

use crate::jobutil::{self as util};
use crate::schedule::{Schedule, ScheduleError};
use crate::{WrittenVersions, STALE_RECHECK};

/// Annotation with the time a job was scheduled for (RFC 3339, in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream `nextScheduleDelta`: the requeue lands a little after the scheduled time.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// How many schedule times were missed since the last one (upstream `missedSchedulesType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100: a warning event `TooManyMissedTimes`.
    Many,
}

/// What the scheduling arithmetic needs from a CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronTimes {
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
}

impl CronTimes {
    pub fn of(cj: &CronJob) -> CronTimes {
        CronTimes {
            created: cj.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            last_schedule: cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0),
            starting_deadline_seconds: cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds),
        }
    }
}

/// Upstream `mostRecentScheduleTime`: the time counted from (last schedule or creation, or the starting deadline
/// when `with_deadline`), the latest schedule time not after `now` (if any) and how many were missed.
pub fn most_recent_schedule_time(
    times: &CronTimes,
    now: Timestamp,
    schedule: &Schedule,
    with_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), ScheduleError> {
    let mut earliest = times.last_schedule.unwrap_or(times.created);
    if let (true, Some(sds)) = (with_deadline, times.starting_deadline_seconds) {
        let deadline = now.checked_sub(SignedDuration::from_secs(sds)).unwrap_or(Timestamp::MIN);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let Some(t1) = schedule.next_after(earliest) else { return Ok((earliest, None, Missed::None)) };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = schedule.next_after(t1) else { return Ok((earliest, Some(t1), Missed::None)) };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.duration_since(t1).round(jiff::Unit::Second).map_or(0, |d| d.as_secs());
    if between < 1 {
        return Err(ScheduleError("time difference between two schedules is less than 1 second".into()));
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Start one interval before the estimated latest and let the schedule find the exact time.
    let potential = t1.checked_add(SignedDuration::from_secs((missed - 2).saturating_mul(between))).unwrap_or(t1);
    let mut most_recent = None;
    let mut t = schedule.next_after(potential);
    while let Some(at) = t.filter(|at| *at <= now) {
        most_recent = Some(at);
        t = schedule.next_after(at);
    }
    let kind = if missed > 100 { Missed::Many } else { Missed::Few };
    Ok((earliest, most_recent, kind))
}

/// Upstream `nextScheduleTimeDuration`: how long until the next schedule time after the most recent one (plus
/// 100 ms), or `None` when the schedule never fires again.
pub fn next_schedule_delay(times: &CronTimes, now: Timestamp, schedule: &Schedule) -> Option<Duration> {
    let from = match most_recent_schedule_time(times, now, schedule, false) {
        Err(_) => now,
        Ok((_, Some(recent), _)) => recent,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = schedule.next_after(from)?;
    let delay = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(delay + NEXT_SCHEDULE_DELTA)
}

/// Upstream `nextScheduleTime`: the schedule time a job is due for now (if any) and how many were missed.
pub fn next_schedule_time(
    times: &CronTimes,
    now: Timestamp,
    schedule: &Schedule,
) -> Result<(Option<Timestamp>, Missed), ScheduleError> {
    let (_, recent, missed) = most_recent_schedule_time(times, now, schedule, true)?;
    Ok((recent.filter(|t| *t <= now), missed))
}

/// `<cronjob>-<minutes since the epoch of the scheduled time>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Go's RFC 3339 format: `Z` for a zero offset, `±hh:mm` otherwise.
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    let offset = z.offset().seconds();
    let base = z.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if offset == 0 {
        format!("{base}Z")
    } else {
        format!("{base}{}", z.strftime("%:z"))
    }
}

/// Go's `time.RFC1123Z` in UTC (`Mon, 02 Jan 2006 15:04:05 +0000`), as the MissSchedule event prints it.
fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC).strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// The time zone of `spec.timeZone`: `None` is the controller's local zone, as upstream reads schedules.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, jiff::Error> {
    match name {
        None => Ok(TimeZone::system()),
        Some("UTC") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name),
    }
}

/// Upstream `getJobFromTemplate2`: the Job for `scheduled` from the CronJob's template.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Result<Job, jiff::Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    // The annotation is written in the job's zone; without `timeZone` Go's `LoadLocation("")` is UTC.
    let zone = match spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(name) => time_zone(Some(name))?,
    };
    annotations.insert(SCHEDULED_TIMESTAMP.to_string(), rfc3339_in(scheduled, &zone));
    let name = cj.metadata.name.clone().unwrap_or_default();
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: Some(annotations),
            creation_timestamp: Some(Time(scheduled)),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name,
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// Upstream `byJobStartTime`: started jobs by start time (then name), unstarted last.
fn by_start_time(a: &Job, b: &Job) -> std::cmp::Ordering {
    let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    }
}

/// Upstream `cleanupFinishedJobs`: the oldest finished jobs beyond `successfulJobsHistoryLimit` (Complete) and
/// `failedJobsHistoryLimit` (Failed); an unset limit keeps everything of its kind.
pub fn jobs_to_prune(jobs: &[Arc<Job>], successful_limit: Option<i32>, failed_limit: Option<i32>) -> Vec<Arc<Job>> {
    let mut out = Vec::new();
    for (type_, limit) in [(util::COMPLETE, successful_limit), (util::FAILED, failed_limit)] {
        let Some(limit) = limit else { continue };
        let mut of_type: Vec<Arc<Job>> = jobs.iter().filter(|j| finished_as(j) == Some(type_)).cloned().collect();
        let excess = of_type.len().saturating_sub(limit.max(0) as usize);
        of_type.sort_by(|a, b| by_start_time(a, b));
        out.extend(of_type.into_iter().take(excess));
    }
    out
}

/// `Complete` or `Failed`, whichever is `True` first in the job's conditions.
fn finished_as(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
        "Complete" => Some(util::COMPLETE),
        "Failed" => Some(util::FAILED),
        _ => None,
    })
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// What failed while syncing a CronJob.
#[derive(Debug, thiserror::Error)]
pub enum CronJobError {
    #[error("getting job {job}: {source}")]
    GetJob { job: String, source: kube::Error },
    #[error("creating job {job}: {source}")]
    CreateJob { job: String, source: kube::Error },
    #[error("deleting job {job}: {source}")]
    DeleteJob { job: String, source: kube::Error },
    #[error("updating the status of cronjob {cronjob}: {source}")]
    UpdateStatus { cronjob: String, source: kube::Error },
    #[error("making the job of cronjob {cronjob}: {source}")]
    Template { cronjob: String, source: jiff::Error },
}

/// The reconciler; keys are CronJobs.
pub struct CronJobController {
    client: Client,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
    recorder: Recorder,
    written: WrittenVersions,
}

impl CronJobController {
    pub fn new(client: Client, cronjobs: Informer<CronJob>, jobs: Informer<Job>) -> CronJobController {
        CronJobController {
            recorder: Recorder::new(client.clone(), "cronjob-controller"),
            client,
            cronjobs,
            jobs,
            written: WrittenVersions::default(),
        }
    }

    /// Keys for a job change: its controlling CronJob.
    pub fn job_changed(&mut self, change: &Change<Job>) -> Vec<Key> {
        let mut keys = Vec::new();
        for job in change.object().into_iter().chain(change.old()) {
            if let Some(r) = util::controller_of(&job.metadata, "CronJob") {
                let key = Key::new(job.metadata.namespace.clone().unwrap_or_default(), r.name.clone());
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    fn jobs_api(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn delete_job(&mut self, cj: &mut CronJob, job: &Job) -> Result<(), CronJobError> {
        let name = job.metadata.name.clone().unwrap_or_default();
        let api = self.jobs_api(job.metadata.namespace.as_deref().unwrap_or_default());
        let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                self.recorder.warning(&*cj, "FailedDelete", &format!("Deleted job: {e}")).await;
                return Err(CronJobError::DeleteJob { job: name, source: e });
            }
        }
        remove_active(cj, job.metadata.uid.as_deref().unwrap_or_default());
        self.recorder.normal(&*cj, "SuccessfulDelete", &format!("Deleted job {name}")).await;
        Ok(())
    }

    /// Upstream `syncCronJob`: returns when to look again and whether the status changed.
    async fn sync_cronjob(
        &mut self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
        now: Timestamp,
    ) -> Result<(Option<Duration>, bool), CronJobError> {
        let mut update = false;
        for j in jobs {
            let uid = j.metadata.uid.as_deref().unwrap_or_default();
            let found = in_active(cj, uid);
            let name = j.metadata.name.clone().unwrap_or_default();
            if !found && !util::is_finished(j) {
                let message = format!("Saw a job that the controller did not create or forgot: {name}");
                self.recorder.warning(&*cj, "UnexpectedJob", &message).await;
            } else if let Some(kind) = finished_as(j) {
                if found {
                    remove_active(cj, uid);
                    let message = format!("Saw completed job: {name}, condition: {kind}");
                    self.recorder.normal(&*cj, "SawCompletedJob", &message).await;
                    update = true;
                }
                if kind == util::COMPLETE {
                    let completed = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    let status = cj.status.get_or_insert_with(Default::default);
                    let later = match (&status.last_successful_time, &completed) {
                        (None, _) => true,
                        (Some(last), Some(c)) => c.0 > last.0,
                        (Some(_), None) => false,
                    };
                    if later && status.last_successful_time != completed {
                        status.last_successful_time = completed;
                        update = true;
                    }
                }
            }
        }
        // Active jobs that are gone (checked against the API server: the cache may lag).
        let active: Vec<ObjectReference> = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
        for r in active {
            if jobs.iter().any(|j| j.metadata.uid == r.uid) {
                continue;
            }
            let name = r.name.clone().unwrap_or_default();
            let api = self.jobs_api(r.namespace.as_deref().unwrap_or_default());
            match api.get_opt(&name).await {
                Ok(None) => {
                    self.recorder.normal(&*cj, "MissingJob", &format!("Active job went missing: {name}")).await;
                    remove_active(cj, r.uid.as_deref().unwrap_or_default());
                    update = true;
                }
                Ok(Some(_)) => {}
                Err(e) => return Err(CronJobError::GetJob { job: name, source: e }),
            }
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok((None, update));
        }
        let spec = cj.spec.clone().unwrap_or_default();
        let zone = match time_zone(spec.time_zone.as_deref()) {
            Ok(z) => z,
            Err(e) => {
                let tz = spec.time_zone.clone().unwrap_or_default();
                self.recorder.warning(&*cj, "UnknownTimeZone", &format!("invalid timeZone: {tz:?}: {e}")).await;
                return Ok((None, update));
            }
        };
        if spec.suspend == Some(true) {
            return Ok((None, update));
        }
        let schedule = match Schedule::parse(&spec.schedule, zone) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("unparseable schedule: {:?} : {e}", spec.schedule);
                self.recorder.warning(&*cj, "UnparseableSchedule", &message).await;
                return Ok((None, update));
            }
        };
        let times = CronTimes::of(cj);
        let scheduled = match next_schedule_time(&times, now, &schedule) {
            Err(e) => {
                let message = format!("invalid schedule: {} : {e}", spec.schedule);
                self.recorder.warning(&*cj, "InvalidSchedule", &message).await;
                return Ok((None, update));
            }
            Ok((scheduled, missed)) => {
                if missed == Missed::Many && scheduled.is_some() {
                    let message = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
                    self.recorder.warning(&*cj, "TooManyMissedTimes", message).await;
                }
                scheduled
            }
        };
        let next = next_schedule_delay(&times, now, &schedule);
        let Some(scheduled) = scheduled else { return Ok((next, update)) };
        if let Some(sds) = spec.starting_deadline_seconds {
            let too_late = scheduled.checked_add(SignedDuration::from_secs(sds)).is_ok_and(|end| end < now);
            if too_late {
                let message = format!("Missed scheduled time to start a job: {}", rfc1123z(scheduled));
                self.recorder.warning(&*cj, "MissSchedule", &message).await;
                return Ok((next, update));
            }
        }
        let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled);
        let active_refs = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
        let already = active_refs.iter().any(|r| r.name.as_deref() == Some(name.as_str()))
            || cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).is_some_and(|t| t.0 == scheduled);
        if already {
            return Ok((next, update));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active_refs.is_empty() {
            let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
            self.recorder.normal(&*cj, "JobAlreadyActive", message).await;
            return Ok((next, update));
        }
        if policy == "Replace" {
            for r in &active_refs {
                let job_name = r.name.clone().unwrap_or_default();
                let api = self.jobs_api(r.namespace.as_deref().unwrap_or_default());
                let job = match api.get(&job_name).await {
                    Ok(j) => j,
                    Err(e) => {
                        self.recorder.warning(&*cj, "FailedGet", &format!("Get job: {e}")).await;
                        return Err(CronJobError::GetJob { job: job_name, source: e });
                    }
                };
                self.delete_job(cj, &job).await?;
                update = true;
            }
        }
        let cj_name = cj.metadata.name.clone().unwrap_or_default();
        let request = job_from_template(cj, scheduled)
            .map_err(|source| CronJobError::Template { cronjob: cj_name.clone(), source })?;
        let api = self.jobs_api(cj.metadata.namespace.as_deref().unwrap_or_default());
        let created = match api.create(&PostParams::default(), &request).await {
            Ok(job) => {
                let message = format!("Created job {}", job.metadata.name.as_deref().unwrap_or_default());
                self.recorder.normal(&*cj, "SuccessfulCreate", &message).await;
                job
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing =
                    api.get(&name).await.map_err(|source| CronJobError::GetJob { job: name.clone(), source })?;
                let ours = util::controller_of(&existing.metadata, "CronJob")
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                if !ours || in_active(cj, existing.metadata.uid.as_deref().unwrap_or_default()) {
                    return Ok((None, update));
                }
                existing
            }
            Err(e) => {
                self.recorder.warning(&*cj, "FailedCreate", &format!("Error creating job: {e}")).await;
                return Err(CronJobError::CreateJob { job: name, source: e });
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status.active.get_or_insert_with(Vec::new).push(job_ref(&created));
        status.last_schedule_time = Some(Time(scheduled));
        let times = CronTimes::of(cj);
        Ok((next_schedule_delay(&times, now, &schedule), true))
    }
}

fn in_active(cj: &CronJob, uid: &str) -> bool {
    cj.status.as_ref().and_then(|s| s.active.as_ref()).is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn remove_active(cj: &mut CronJob, uid: &str) {
    if let Some(active) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

impl Reconciler for CronJobController {
    type Key = Key;
    type Error = CronJobError;

    fn name(&self) -> &'static str {
        "cronjob"
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, CronJobError> {
        let Some(shared) = self.cronjobs.get(&key.namespace, &key.name) else {
            self.written.forget(key);
            return Ok(Next::Done);
        };
        if !self.written.caught_up(key, &shared.metadata) {
            return Ok(Next::After(STALE_RECHECK));
        }
        let span = tracing::debug_span!("sync cronjob", cronjob = %key);
        let _guard = span.enter();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .store()
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
            .filter(|j| util::controller_of(&j.metadata, "CronJob").is_some_and(|r| r.name == key.name))
            .collect();
        let mut cj = (*shared).clone();
        let now = Timestamp::now();

        // History limits first (upstream `cleanupFinishedJobs`).
        let spec = cj.spec.clone().unwrap_or_default();
        let mut update = false;
        for job in jobs_to_prune(&jobs, spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) {
            if self.delete_job(&mut cj, &job).await.is_ok() {
                update = true;
            }
        }
        let result = self.sync_cronjob(&mut cj, &jobs, now).await;
        let (requeue, synced_update, error) = match result {
            Ok((requeue, changed)) => (requeue, changed, None),
            Err(e) => (None, false, Some(e)),
        };
        if update || synced_update {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), &key.namespace);
            let written = api
                .replace_status(&key.name, &PostParams::default(), &cj)
                .await
                .map_err(|source| CronJobError::UpdateStatus { cronjob: key.name.clone(), source })?;
            self.written.wrote(key, &written.metadata);
        }
        match (requeue, error) {
            (Some(d), _) => Ok(Next::After(d)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(Next::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(spec: &str) -> Schedule {
        Schedule::parse(spec, TimeZone::UTC).unwrap()
    }

    fn times(created: &str, last: Option<&str>, sds: Option<i64>) -> CronTimes {
        CronTimes { created: ts(created), last_schedule: last.map(ts), starting_deadline_seconds: sds }
    }

    #[test]
    fn nothing_is_due_before_the_first_schedule_time() {
        let t = times("2024-01-01T00:00:30Z", None, None);
        let s = utc("*/1 * * * *");
        assert_eq!(next_schedule_time(&t, ts("2024-01-01T00:00:59Z"), &s).unwrap(), (None, Missed::None));
        // The requeue lands 100 ms after the next minute.
        assert_eq!(
            next_schedule_delay(&t, ts("2024-01-01T00:00:59Z"), &s),
            Some(Duration::from_secs(1) + Duration::from_millis(100))
        );
    }

    #[test]
    fn the_most_recent_missed_time_is_due() {
        let t = times("2024-01-01T00:00:00Z", Some("2024-01-01T00:15:00Z"), None);
        let s = utc("0,15,30,45 * * * *");
        // 00:30 passed: due. 00:45 and 01:00 passed too: only the latest (01:00) is due, a few were missed.
        assert_eq!(
            next_schedule_time(&t, ts("2024-01-01T00:31:00Z"), &s).unwrap(),
            (Some(ts("2024-01-01T00:30:00Z")), Missed::None)
        );
        assert_eq!(
            next_schedule_time(&t, ts("2024-01-01T01:05:00Z"), &s).unwrap(),
            (Some(ts("2024-01-01T01:00:00Z")), Missed::Few)
        );
        // Irregular schedules find the exact latest time.
        let irregular = utc("30 6-16/4 * * 1-5");
        let t = times("2024-01-01T00:00:00Z", None, None);
        assert_eq!(
            next_schedule_time(&t, ts("2024-01-03T12:00:00Z"), &irregular).unwrap().0,
            Some(ts("2024-01-03T10:30:00Z"))
        );
    }

    #[test]
    fn more_than_a_hundred_missed_times_is_many_and_the_deadline_bounds_the_search() {
        let s = utc("*/1 * * * *");
        let t = times("2024-01-01T00:00:00Z", None, None);
        let now = ts("2024-01-01T03:00:30Z");
        assert_eq!(next_schedule_time(&t, now, &s).unwrap(), (Some(ts("2024-01-01T03:00:00Z")), Missed::Many));
        let bounded = times("2024-01-01T00:00:00Z", None, Some(200));
        assert_eq!(next_schedule_time(&bounded, now, &s).unwrap(), (Some(ts("2024-01-01T03:00:00Z")), Missed::Few));
        // A schedule that never fires twice in a row within the search is an error, not a loop.
        assert!(next_schedule_delay(&t, now, &utc("0 0 30 2 *")).is_none());
    }

    #[test]
    fn job_names_and_the_scheduled_annotation() {
        assert_eq!(job_name("hello", ts("2024-01-01T00:05:00Z")), "hello-28401125");
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "cj-1"},
            "spec": {"schedule": "*/5 * * * *", "timeZone": "Asia/Tokyo", "jobTemplate": {
                "metadata": {"labels": {"app": "x"}, "annotations": {"note": "y"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}}}}))
        .unwrap();
        let job = job_from_template(&cj, ts("2024-01-01T00:05:00Z")).unwrap();
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["metadata"]["name"], "hello-28401125");
        assert_eq!(v["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(
            v["metadata"]["annotations"],
            json!({"note": "y", SCHEDULED_TIMESTAMP: "2024-01-01T09:05:00+09:00"})
        );
        assert_eq!(
            v["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello", "uid": "cj-1",
                "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(rfc3339_in(ts("2024-01-01T00:05:00Z"), &TimeZone::UTC), "2024-01-01T00:05:00Z");
        assert_eq!(rfc1123z(ts("2024-01-01T00:05:00Z")), "Mon, 01 Jan 2024 00:05:00 +0000");
    }

    fn finished(name: &str, type_: &str, start: Option<&str>) -> Arc<Job> {
        let mut status = json!({"conditions": [{"type": type_, "status": "True"}]});
        if let Some(s) = start {
            status["startTime"] = json!(s);
        }
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap())
    }

    #[test]
    fn history_limits_prune_the_oldest_finished_jobs() {
        let jobs = vec![
            finished("ok-3", "Complete", Some("2024-01-01T00:03:00Z")),
            finished("ok-1", "Complete", Some("2024-01-01T00:01:00Z")),
            finished("ok-4", "Complete", Some("2024-01-01T00:04:00Z")),
            finished("ok-2", "Complete", Some("2024-01-01T00:02:00Z")),
            finished("bad-1", "Failed", Some("2024-01-01T00:01:30Z")),
            finished("bad-2", "Failed", None),
            Arc::new(serde_json::from_value(json!({"metadata": {"name": "running"}})).unwrap()),
        ];
        let names = |v: Vec<Arc<Job>>| v.iter().map(|j| j.metadata.name.clone().unwrap()).collect::<Vec<_>>();
        // Defaults 3 and 1: the oldest success and the started failure go (unstarted jobs sort last).
        assert_eq!(names(jobs_to_prune(&jobs, Some(3), Some(1))), ["ok-1", "bad-1"]);
        assert_eq!(names(jobs_to_prune(&jobs, Some(0), Some(0))), ["ok-1", "ok-2", "ok-3", "ok-4", "bad-1", "bad-2"]);
        assert!(jobs_to_prune(&jobs, None, None).is_empty());
    }
}
