//! The TTL-after-finished controller (upstream `pkg/controller/ttlafterfinished`): deletes a finished Job
//! `ttlSecondsAfterFinished` after its Complete/Failed condition, with background propagation, re-checking the live
//! object (its TTL may have changed) before deleting it with UID and resourceVersion preconditions.

use std::time::Duration;

use ferry_runtime::{Change, Informer, Key, Next, Reconciler};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::Client;

use crate::jobutil as util;

/// What failed while expiring a job.
#[derive(Debug, thiserror::Error)]
pub enum TtlError {
    #[error("getting job {job}: {source}")]
    Get { job: String, source: kube::Error },
    #[error("deleting job {job}: {source}")]
    Delete { job: String, source: kube::Error },
}

/// When a finished job with a TTL expires: its finish time (the Complete/Failed condition's transition) plus the
/// TTL. `None` for jobs without a TTL, unfinished, or being deleted.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = util::condition(job, util::COMPLETE).or_else(|| util::condition(job, util::FAILED))?;
    let at = finished.last_transition_time.as_ref()?.0;
    at.checked_add(SignedDuration::from_secs(i64::from(ttl))).ok()
}

/// How long until `job` expires (zero when it has), or `None` if it never does.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let at = expires_at(job)?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// The reconciler; keys are jobs.
pub struct TtlController {
    client: Client,
    jobs: Informer<Job>,
}

impl TtlController {
    pub fn new(client: Client, jobs: Informer<Job>) -> TtlController {
        TtlController { client, jobs }
    }

    /// Keys for a job change: only jobs that will expire.
    pub fn job_changed(&mut self, change: &Change<Job>) -> Vec<Key> {
        match change {
            Change::Applied { new, .. } if expires_at(new).is_some() => vec![Key::of(new.as_ref())],
            _ => Vec::new(),
        }
    }
}

impl Reconciler for TtlController {
    type Key = Key;
    type Error = TtlError;

    fn name(&self) -> &'static str {
        "ttl-after-finished"
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, TtlError> {
        let Some(cached) = self.jobs.get(&key.namespace, &key.name) else { return Ok(Next::Done) };
        let Some(left) = time_left(&cached, Timestamp::now()) else { return Ok(Next::Done) };
        if !left.is_zero() {
            return Ok(Next::After(left));
        }
        // The cache may be stale: the live job decides.
        let api: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        let fresh = match api.get_opt(&key.name).await {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(Next::Done),
            Err(source) => return Err(TtlError::Get { job: key.to_string(), source }),
        };
        match time_left(&fresh, Timestamp::now()) {
            None => return Ok(Next::Done),
            Some(left) if !left.is_zero() => return Ok(Next::After(left)),
            Some(_) => {}
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: fresh.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        tracing::info!(job = %key, "deleting a finished job whose TTL expired");
        match api.delete(&key.name, &params).await {
            Ok(_) => Ok(Next::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Next::Done),
            Err(source) => Err(TtlError::Delete { job: key.to_string(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finished_jobs_expire_ttl_after_their_final_condition() {
        let job = |ttl: serde_json::Value, cond: &str| -> Job {
            serde_json::from_value(json!({"spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
                "status": {"conditions": [{"type": cond, "status": "True",
                    "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}))
            .unwrap()
        };
        let now: Timestamp = "2024-01-01T00:00:40Z".parse().unwrap();
        assert_eq!(time_left(&job(json!(100), "Complete"), now), Some(Duration::from_secs(60)));
        assert_eq!(time_left(&job(json!(10), "Failed"), now), Some(Duration::ZERO));
        assert_eq!(time_left(&job(json!(10), "SuccessCriteriaMet"), now), None);
        assert_eq!(time_left(&job(json!(null), "Complete"), now), None);
    }
}
