//! The batch/v1 controllers, as upstream's kube-controller-manager runs them: the Job controller ([`job`]), the
//! CronJob controller ([`cronjob`], on the pure [`schedule`] arithmetic) and the TTL-after-finished controller
//! ([`ttl`]). All three read the shared Job informer; the Job controller also the Pod one.
#![forbid(unsafe_code)]

pub mod cronjob;
pub mod job;
pub mod jobutil;
pub mod schedule;
pub mod ttl;

use ferry_runtime::{Controller, Informers, Task};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;

use crate::cronjob::CronJobController;
use crate::job::JobController;
use crate::ttl::TtlController;

/// The resourceVersions of the statuses a controller wrote, per object: until its cache shows at least that
/// version, the cached object is older than what the controller already decided on and must not be acted on (it would
/// count pods twice or create a job again).
#[derive(Debug, Default)]
pub struct WrittenVersions {
    by_key: std::collections::HashMap<ferry_runtime::Key, u64>,
}

impl WrittenVersions {
    /// Remembers the version a write returned.
    pub fn wrote(
        &mut self,
        key: &ferry_runtime::Key,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) {
        if let Some(rv) = ferry_runtime::revision(meta) {
            self.by_key.insert(key.clone(), rv);
        }
    }

    /// Whether the cached object `meta` is at least as new as the last write (forgetting the write once it is).
    pub fn caught_up(
        &mut self,
        key: &ferry_runtime::Key,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> bool {
        let Some(written) = self.by_key.get(key).copied() else { return true };
        match ferry_runtime::revision(meta) {
            Some(cached) if cached < written => false,
            _ => {
                self.by_key.remove(key);
                true
            }
        }
    }

    pub fn forget(&mut self, key: &ferry_runtime::Key) {
        self.by_key.remove(key);
    }
}

/// How long a controller waits for its cache to show its own write before looking again anyway.
pub(crate) const STALE_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The control loops of this crate, subscribed to `informers`; the caller polls them.
pub fn controllers(informers: &mut Informers) -> Vec<Task> {
    let client = informers.client();
    let jobs = informers.get::<Job>();
    let pods = informers.get::<Pod>();
    let cronjobs = informers.get::<CronJob>();

    let job = Controller::new(JobController::new(client.clone(), jobs.clone(), pods.clone()))
        .watch(&jobs, |r: &mut JobController, change| r.job_changed(change))
        .watch(&pods, |r: &mut JobController, change| r.pod_changed(change));
    let cron = Controller::new(CronJobController::new(client.clone(), cronjobs.clone(), jobs.clone()))
        .watch(&cronjobs, |_: &mut CronJobController, change| {
            change.object().map(ferry_runtime::Key::of).into_iter().collect()
        })
        .watch(&jobs, |r: &mut CronJobController, change| r.job_changed(change));
    let ttl = Controller::new(TtlController::new(client, jobs.clone()))
        .watch(&jobs, |r: &mut TtlController, change| r.job_changed(change));
    vec![Box::pin(job.run()), Box::pin(cron.run()), Box::pin(ttl.run())]
}
