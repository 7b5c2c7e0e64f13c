//! One sync of one Deployment, as upstream's `syncDeployment` after the ReplicaSets were claimed: pause, rollback,
//! scaling events, the RollingUpdate and Recreate rollouts, history cleanup and status with its conditions. Every
//! write goes through [`Writes`], so the whole decision procedure runs against an in-memory fake in tests.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use crate::util::{self, *};

/// Why a write failed, as far as the sync cares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

/// Why a sync stopped early (the key is retried with back-off).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("creating replica set {name}: {source}")]
    CreateReplicaSet { name: String, source: WriteError },
    #[error("updating replica set {name}: {source}")]
    UpdateReplicaSet { name: String, source: WriteError },
    #[error("deleting replica set {name}: {source}")]
    DeleteReplicaSet { name: String, source: WriteError },
    #[error("updating deployment status: {0}")]
    UpdateStatus(WriteError),
    #[error("updating deployment: {0}")]
    UpdateDeployment(WriteError),
    #[error("hash collision on replica set {0}; collisionCount bumped")]
    HashCollision(String),
    #[error("replica set {0} exists but is not in the cache yet")]
    NotCached(String),
    #[error("{0}")]
    Invalid(String),
}

/// The writes a sync makes (the API server in production, a model in tests).
#[allow(async_fn_in_trait)]
pub trait Writes {
    async fn create_replica_set(&mut self, rs: &ReplicaSet) -> Result<ReplicaSet, WriteError>;
    /// A full update with the given resourceVersion as precondition.
    async fn update_replica_set(&mut self, rs: &ReplicaSet) -> Result<ReplicaSet, WriteError>;
    async fn delete_replica_set(&mut self, namespace: &str, name: &str) -> Result<(), WriteError>;
    /// The status subresource, with `d`'s resourceVersion as precondition.
    async fn update_status(&mut self, d: &Deployment) -> Result<Deployment, WriteError>;
    /// Sets the Deployment's `deployment.kubernetes.io/revision` annotation (upstream writes it along with the
    /// status; ferry's status subresource keeps metadata, so it is a separate metadata write).
    async fn set_revision(&mut self, d: &Deployment, revision: &str) -> Result<Deployment, WriteError>;
    /// A full update of the Deployment (rollback).
    async fn update_deployment(&mut self, d: &Deployment) -> Result<Deployment, WriteError>;
    /// The cached ReplicaSet `namespace/name`.
    fn cached_replica_set(&self, namespace: &str, name: &str) -> Option<ReplicaSet>;
    async fn event(&mut self, d: &Deployment, type_: &str, reason: &str, message: &str);
}

/// Pods of the Deployment by the UID of the ReplicaSet controlling them.
pub type PodMap = HashMap<String, Vec<Pod>>;

/// What to do after the sync: re-check after a delay (progress deadline) or wait for changes.
pub type Requeue = Option<Duration>;

/// One sync of `d` (a copy of the cached object) given the ReplicaSets it owns, at `now`.
pub struct Syncer<'w, W: Writes> {
    w: &'w mut W,
    d: Deployment,
    now: Timestamp,
}

fn rs_name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

fn ns(d: &Deployment) -> String {
    d.metadata.namespace.clone().unwrap_or_default()
}

fn dname(d: &Deployment) -> String {
    d.metadata.name.clone().unwrap_or_default()
}

fn all_of(new_rs: &Option<ReplicaSet>, old_rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    let mut all = old_rss.to_vec();
    all.extend(new_rs.clone());
    all
}

/// Upstream `getRollbackTo`: the revision asked for by the deprecated rollback annotation.
pub fn rollback_to(d: &Deployment) -> Option<i64> {
    let value = d.metadata.annotations.as_ref()?.get(ROLLBACK_TO)?;
    if value.is_empty() {
        return None;
    }
    value.parse().ok()
}

/// Upstream `oldPodsRunning`: whether old ReplicaSets report pods or any pod outside the new one is not terminal.
pub fn old_pods_running(new_rs: Option<&ReplicaSet>, old_rss: &[ReplicaSet], pods: &PodMap) -> bool {
    if actual_replica_count(old_rss) > 0 {
        return true;
    }
    let new_uid = new_rs.and_then(|rs| rs.metadata.uid.clone());
    pods.iter().filter(|(uid, _)| Some(*uid) != new_uid.as_ref()).any(|(_, list)| {
        list.iter().any(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
            !matches!(phase, "Failed" | "Succeeded")
        })
    })
}

/// Upstream `calculateStatus`: counts from the ReplicaSets, the Available condition from the availability budget.
pub fn calculate_status(
    all_rss: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replica_count(all_rss);
    let total = replica_count(all_rss);
    let unavailable = (total - available).max(0);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: Some(generation(d)),
        replicas: Some(actual_replica_count(all_rss)),
        updated_replicas: Some(new_rs.map(rs_actual).unwrap_or(0)),
        ready_replicas: Some(ready_replica_count(all_rss)),
        available_replicas: Some(available),
        unavailable_replicas: Some(unavailable),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    let condition = if available >= replicas(d) - max_unavailable(d) {
        new_condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, "Deployment has minimum availability.", now)
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, condition);
    normalized(&status)
}

/// Upstream `syncRolloutStatus` minus the write: the status with its Progressing and ReplicaFailure conditions.
pub fn rollout_status(
    all_rss: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(all_rss, new_rs, d, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = get_condition(d.status.as_ref(), PROGRESSING).cloned();
    let complete_before = count(status.replicas) == count(status.updated_replicas)
        && current.as_ref().is_some_and(|c| reason(c) == NEW_RS_AVAILABLE);
    if has_progress_deadline(d) && !complete_before {
        let subject = match new_rs {
            Some(rs) => format!("ReplicaSet {:?}", rs_name(rs)),
            None => format!("Deployment {:?}", dname(d)),
        };
        if deployment_complete(d, &status) {
            let msg = format!("{subject} has successfully progressed.");
            set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now));
        } else if deployment_progressing(d, &status) {
            let msg = format!("{subject} is progressing.");
            let mut condition = new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, &msg, now);
            if let Some(current) = &current {
                if current.status == "True" {
                    condition.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, condition);
        } else if deployment_timed_out(d, &status, now) {
            let msg = format!("{subject} has timed out progressing.");
            set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, &msg, now));
        }
    }
    let failures = replica_failures(all_rss, new_rs);
    match failures.into_iter().next() {
        Some(failure) => set_condition(&mut status, failure),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    normalized(&status)
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

fn replica_failures(
    all_rss: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> Vec<k8s_openapi::api::apps::v1::DeploymentCondition> {
    let failures_of = |rs: &ReplicaSet| -> Vec<k8s_openapi::api::apps::v1::DeploymentCondition> {
        rs.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .filter(|c| c.type_ == REPLICA_FAILURE)
            .map(replica_set_to_deployment_condition)
            .collect()
    };
    if let Some(new_rs) = new_rs {
        let found = failures_of(new_rs);
        if !found.is_empty() {
            return found;
        }
    }
    all_rss.iter().flat_map(failures_of).collect()
}

/// Upstream `requeueStuckDeployment`: when to look again for a progress deadline, if the rollout is under way.
pub fn requeue_stuck(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> Requeue {
    let deadline = progress_deadline(d)?;
    let current = get_condition(d.status.as_ref(), PROGRESSING)?;
    if deployment_complete(d, status) || reason(current) == TIMED_OUT {
        return None;
    }
    let updated = current.last_update_time.as_ref()?.0;
    let due_ms = (updated.as_millisecond() + i64::from(deadline) * 1000) - now.as_millisecond();
    if due_ms < 1000 {
        return Some(Duration::from_millis(500));
    }
    // A second more, so the check runs after the deadline rather than just before it.
    Some(Duration::from_millis(due_ms as u64) + Duration::from_secs(1))
}

/// Upstream `cleanupDeployment`'s choice: the oldest old ReplicaSets beyond the history limit that are scaled to
/// zero, have no pods and whose last change the ReplicaSet controller observed.
pub fn cleanup_victims(old_rss: &[ReplicaSet], d: &Deployment) -> Vec<ReplicaSet> {
    let Some(limit) = revision_history_limit(d) else { return Vec::new() };
    let mut cleanable: Vec<ReplicaSet> =
        old_rss.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).cloned().collect();
    let diff = cleanable.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    cleanable.sort_by(by_revision);
    cleanable
        .into_iter()
        .take(diff as usize)
        .filter(|rs| {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            rs_actual(rs) == 0 && rs_replicas(rs) == 0 && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .collect()
}

/// Upstream `scale`'s proportional distribution for a RollingUpdate with several active ReplicaSets: the new size
/// of every active ReplicaSet (name → size), and the direction ("up", "down" or "").
pub fn proportional_sizes(d: &Deployment, active_rss: &[ReplicaSet]) -> (Vec<(String, i32)>, &'static str) {
    let mut rss = active_rss.to_vec();
    let total = replica_count(&rss);
    let allowed = if replicas(d) > 0 { replicas(d) + max_surge(d) } else { 0 };
    let to_add = allowed - total;
    let op = match to_add.cmp(&0) {
        std::cmp::Ordering::Greater => {
            rss.sort_by(by_size_newer);
            "up"
        }
        std::cmp::Ordering::Less => {
            rss.sort_by(by_size_older);
            "down"
        }
        std::cmp::Ordering::Equal => "",
    };
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &rss {
        if to_add != 0 {
            let p = proportion(rs, d, to_add, added);
            sizes.push((rs_name(rs), rs_replicas(rs) + p));
            added += p;
        } else {
            sizes.push((rs_name(rs), rs_replicas(rs)));
        }
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    (sizes, op)
}

/// Upstream `cleanupUnhealthyReplicas`' arithmetic: (index into `old_rss` sorted by creation, new size) for the
/// old ReplicaSets whose unavailable replicas can go, at most `max_cleanup` in all.
pub fn unhealthy_scale_downs(old_rss: &[ReplicaSet], max_cleanup: i32) -> Vec<(usize, i32)> {
    let mut total = 0;
    let mut steps = Vec::new();
    for (i, rs) in old_rss.iter().enumerate() {
        if total >= max_cleanup {
            break;
        }
        let current = rs_replicas(rs);
        if current == 0 || current == rs_available(rs) {
            continue;
        }
        let down = (max_cleanup - total).min(current - rs_available(rs));
        steps.push((i, current - down));
        total += down;
    }
    steps
}

/// Upstream `scaleDownOldReplicaSetsForRollingUpdate`'s arithmetic: (index into `old_rss` sorted by creation, new
/// size) keeping at least `replicas - maxUnavailable` available pods across `all_rss`.
pub fn available_scale_downs(d: &Deployment, all_rss: &[ReplicaSet], old_rss: &[ReplicaSet]) -> Vec<(usize, i32)> {
    let min_available = replicas(d) - max_unavailable(d);
    let available = available_replica_count(all_rss);
    if available <= min_available {
        return Vec::new();
    }
    let budget = available - min_available;
    let mut total = 0;
    let mut steps = Vec::new();
    for (i, rs) in old_rss.iter().enumerate() {
        if total >= budget {
            break;
        }
        let current = rs_replicas(rs);
        if current == 0 {
            continue;
        }
        let down = current.min(budget - total);
        steps.push((i, current - down));
        total += down;
    }
    steps
}

/// Upstream `reconcileOldReplicaSets`' first check: how many old replicas may go at most (≤ 0: none).
pub fn max_scaled_down(d: &Deployment, all_rss: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    replica_count(all_rss) - min_available - new_unavailable
}

/// Upstream `isScalingEvent`: an active ReplicaSet was sized for another `spec.replicas`.
pub fn is_scaling_event(d: &Deployment, all_rss: &[ReplicaSet]) -> bool {
    active(all_rss).iter().filter_map(desired_replicas_annotation).any(|desired| desired != replicas(d))
}

/// The ReplicaSet a Deployment creates for its current template (name, labels, selector, annotations, owner).
pub fn new_replica_set_object(d: &Deployment, all_old: &[ReplicaSet], new_revision: &str) -> ReplicaSet {
    let template = template(d);
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = compute_hash(&template, collision);
    let mut rs_template = template.clone();
    let meta = rs_template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels.get_or_insert_with(Default::default).insert(POD_TEMPLATE_HASH.to_string(), hash.clone());
    let labels = meta.labels.clone();
    let mut selector: LabelSelector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    selector.match_labels.get_or_insert_with(Default::default).insert(POD_TEMPLATE_HASH.to_string(), hash.clone());
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", dname(d))),
            namespace: d.metadata.namespace.clone(),
            owner_references: Some(vec![controller_ref(d)]),
            labels,
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: Some(min_ready_seconds(d)),
            selector,
            template: Some(rs_template),
        }),
        status: None,
    };
    let mut all = all_old.to_vec();
    all.push(rs.clone());
    let count = new_rs_new_replicas(d, &all, &rs).unwrap_or(0);
    set_rs_replicas(&mut rs, count);
    set_new_replica_set_annotations(d, &mut rs, new_revision, false, MAX_REV_HISTORY_CHARS);
    rs
}

impl<'w, W: Writes> Syncer<'w, W> {
    pub fn new(w: &'w mut W, d: Deployment, now: Timestamp) -> Self {
        Syncer { w, d, now }
    }

    /// Upstream `syncDeployment` from the empty-selector check on.
    pub async fn run(mut self, mut rs_list: Vec<ReplicaSet>, pods: &PodMap) -> Result<Requeue, SyncError> {
        let selector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        {
            let msg = "This deployment is selecting all pods. A non-empty selector is required.";
            self.w.event(&self.d, "Warning", "SelectingAll", msg).await;
            let observed = self.d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if observed < generation(&self.d) {
                self.d.status.get_or_insert_with(Default::default).observed_generation = Some(generation(&self.d));
                // Best effort, as upstream.
                let _ = self.w.update_status(&self.d).await;
            }
            return Ok(None);
        }
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(rs_list).await;
        }
        self.check_paused_conditions().await?;
        if paused(&self.d) {
            return self.sync(rs_list).await;
        }
        if rollback_to(&self.d).is_some() {
            return self.rollback(rs_list).await;
        }
        let (new_rs, old_rss) = self.all_replica_sets_and_sync_revision(&mut rs_list, false).await?;
        if is_scaling_event(&self.d, &all_of(&new_rs, &old_rss)) {
            return self.sync(rs_list).await;
        }
        match strategy_type(&self.d) {
            "Recreate" => self.rollout_recreate(rs_list, pods).await,
            "RollingUpdate" => self.rollout_rolling(rs_list).await,
            other => Err(SyncError::Invalid(format!("unexpected deployment strategy type: {other}"))),
        }
    }

    async fn write_status(&mut self) -> Result<(), SyncError> {
        let updated = self.w.update_status(&self.d).await.map_err(SyncError::UpdateStatus)?;
        self.d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Writes the revision annotation (if it changed) and then the status.
    async fn write_revision_and_status(&mut self, revision_changed: bool) -> Result<(), SyncError> {
        if revision_changed {
            let revision = self.d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
            if let Some(revision) = revision {
                let updated = self.w.set_revision(&self.d, &revision).await.map_err(SyncError::UpdateDeployment)?;
                self.d.metadata.resource_version = updated.metadata.resource_version;
            }
        }
        self.write_status().await
    }

    async fn sync_status_only(mut self, mut rs_list: Vec<ReplicaSet>) -> Result<Requeue, SyncError> {
        let (new_rs, old_rss) = self.all_replica_sets_and_sync_revision(&mut rs_list, false).await?;
        self.sync_deployment_status(&all_of(&new_rs, &old_rss), new_rs.as_ref()).await?;
        Ok(None)
    }

    /// Upstream `sync`: scaling events and paused Deployments.
    async fn sync(mut self, mut rs_list: Vec<ReplicaSet>) -> Result<Requeue, SyncError> {
        let (new_rs, old_rss) = self.all_replica_sets_and_sync_revision(&mut rs_list, false).await?;
        self.scale(new_rs.as_ref(), &old_rss).await?;
        if paused(&self.d) && rollback_to(&self.d).is_none() {
            self.cleanup(&old_rss).await?;
        }
        self.sync_deployment_status(&all_of(&new_rs, &old_rss), new_rs.as_ref()).await?;
        Ok(None)
    }

    async fn check_paused_conditions(&mut self) -> Result<(), SyncError> {
        if !has_progress_deadline(&self.d) {
            return Ok(());
        }
        let current = get_condition(self.d.status.as_ref(), PROGRESSING).cloned();
        if current.as_ref().is_some_and(|c| reason(c) == TIMED_OUT) {
            return Ok(());
        }
        let paused_exists = current.as_ref().is_some_and(|c| reason(c) == PAUSED);
        let condition = if paused(&self.d) && !paused_exists {
            new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", self.now)
        } else if !paused(&self.d) && paused_exists {
            new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", self.now)
        } else {
            return Ok(());
        };
        set_condition(self.d.status.get_or_insert_with(Default::default), condition);
        self.write_status().await
    }

    /// Upstream `getAllReplicaSetsAndSyncRevision`: (new, all old), the new one created when `create`.
    async fn all_replica_sets_and_sync_revision(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        let (_, all_old) = find_old_replica_sets(&self.d, rs_list);
        let new_rs = self.new_replica_set(rs_list, &all_old, create).await?;
        // Later steps of this sync see what was just written, not the cache's older copy.
        if let Some(rs) = &new_rs {
            match rs_list.iter_mut().find(|r| r.metadata.name == rs.metadata.name) {
                Some(slot) => *slot = rs.clone(),
                None => rs_list.push(rs.clone()),
            }
        }
        Ok((new_rs, all_old))
    }

    /// Upstream `getNewReplicaSet`.
    async fn new_replica_set(
        &mut self,
        rs_list: &[ReplicaSet],
        old_rss: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, SyncError> {
        let existing = find_new_replica_set(&self.d, rs_list);
        let new_revision = (max_revision(old_rss) + 1).to_string();
        if let Some(existing) = existing {
            let mut copy = existing.clone();
            let annotations_updated =
                set_new_replica_set_annotations(&self.d, &mut copy, &new_revision, true, MAX_REV_HISTORY_CHARS);
            let min_ready = min_ready_seconds(&self.d);
            let min_ready_stale = copy.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0) != min_ready;
            if annotations_updated || min_ready_stale {
                copy.spec.get_or_insert_with(Default::default).min_ready_seconds = Some(min_ready);
                let name = rs_name(&copy);
                let updated = self
                    .w
                    .update_replica_set(&copy)
                    .await
                    .map_err(|source| SyncError::UpdateReplicaSet { name, source })?;
                return Ok(Some(updated));
            }
            let revision = copy.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned();
            let revision_changed = set_deployment_revision(&mut self.d, revision.as_deref().unwrap_or_default());
            let mut needs_update = revision_changed;
            if has_progress_deadline(&self.d) && get_condition(self.d.status.as_ref(), PROGRESSING).is_none() {
                let msg = format!("Found new replica set {:?}", rs_name(&copy));
                let condition = new_condition(PROGRESSING, "True", FOUND_NEW_RS, &msg, self.now);
                set_condition(self.d.status.get_or_insert_with(Default::default), condition);
                needs_update = true;
            }
            if needs_update {
                self.write_revision_and_status(revision_changed).await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }
        let new_rs = new_replica_set_object(&self.d, old_rss, &new_revision);
        let name = rs_name(&new_rs);
        let count = rs_replicas(&new_rs);
        let (created, already_existed) = match self.w.create_replica_set(&new_rs).await {
            Ok(created) => (created, false),
            Err(WriteError::AlreadyExists) => {
                let namespace = ns(&self.d);
                let Some(found) = self.w.cached_replica_set(&namespace, &name) else {
                    return Err(SyncError::NotCached(name));
                };
                if is_controlled_by(&found, &self.d) && equal_ignore_hash(&template(&self.d), &rs_template(&found)) {
                    (found, true)
                } else {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
                    let _ = self.write_status().await;
                    return Err(SyncError::HashCollision(name));
                }
            }
            Err(source) => {
                let msg = format!("Failed to create new replica set {name:?}: {source}");
                if has_progress_deadline(&self.d) {
                    let condition = new_condition(PROGRESSING, "False", FAILED_RS_CREATE, &msg, self.now);
                    set_condition(self.d.status.get_or_insert_with(Default::default), condition);
                    let _ = self.write_status().await;
                }
                self.w.event(&self.d, "Warning", FAILED_RS_CREATE, &msg).await;
                return Err(SyncError::CreateReplicaSet { name, source });
            }
        };
        if !already_existed && count > 0 {
            let msg = format!("Scaled up replica set {} to {count}", rs_name(&created));
            self.w.event(&self.d, "Normal", "ScalingReplicaSet", &msg).await;
        }
        let revision_changed = set_deployment_revision(&mut self.d, &new_revision);
        let mut needs_update = revision_changed;
        if !already_existed && has_progress_deadline(&self.d) {
            let msg = format!("Created new replica set {:?}", rs_name(&created));
            let condition = new_condition(PROGRESSING, "True", NEW_REPLICA_SET, &msg, self.now);
            set_condition(self.d.status.get_or_insert_with(Default::default), condition);
            needs_update = true;
        }
        if needs_update {
            self.write_revision_and_status(revision_changed).await?;
        }
        Ok(Some(created))
    }

    /// Upstream `scale`: the only active ReplicaSet takes all replicas; a saturated new one leaves the old ones at
    /// zero; otherwise RollingUpdate spreads the difference proportionally.
    async fn scale(&mut self, new_rs: Option<&ReplicaSet>, old_rss: &[ReplicaSet]) -> Result<(), SyncError> {
        let want = replicas(&self.d);
        if let Some(target) = find_active_or_latest(new_rs, old_rss) {
            if rs_replicas(&target) != want {
                self.scale_and_record(&target, want).await?;
            }
            return Ok(());
        }
        if is_saturated(&self.d, new_rs) {
            for old in active(old_rss) {
                self.scale_and_record(&old, 0).await?;
            }
            return Ok(());
        }
        if is_rolling_update(&self.d) {
            let mut all = old_rss.to_vec();
            all.extend(new_rs.cloned());
            let actives = active(&all);
            let (sizes, op) = proportional_sizes(&self.d, &actives);
            for (name, size) in sizes {
                let Some(rs) = actives.iter().find(|rs| rs_name(rs) == name) else { continue };
                self.scale_replica_set(rs, size, op).await?;
            }
        }
        Ok(())
    }

    /// Upstream `scaleReplicaSetAndRecordEvent`: nothing when the size is right already.
    async fn scale_and_record(&mut self, rs: &ReplicaSet, size: i32) -> Result<(bool, ReplicaSet), SyncError> {
        let current = rs_replicas(rs);
        if current == size {
            return Ok((false, rs.clone()));
        }
        let op = if current < size { "up" } else { "down" };
        self.scale_replica_set(rs, size, op).await
    }

    /// Upstream `scaleReplicaSet`: writes size and replica annotations; an event when the size changed.
    async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        size: i32,
        op: &str,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        let current = rs_replicas(rs);
        let want = replicas(&self.d);
        let max = want + max_surge(&self.d);
        let size_changed = current != size;
        if !size_changed && !replicas_annotations_need_update(rs, want, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        set_rs_replicas(&mut copy, size);
        set_replicas_annotations(&mut copy, want, max);
        let name = rs_name(rs);
        let updated = self
            .w
            .update_replica_set(&copy)
            .await
            .map_err(|source| SyncError::UpdateReplicaSet { name: name.clone(), source })?;
        if size_changed {
            let msg = format!("Scaled {op} replica set {name} to {size} from {current}");
            self.w.event(&self.d, "Normal", "ScalingReplicaSet", &msg).await;
        }
        Ok((size_changed, updated))
    }

    /// Upstream `cleanupDeployment`.
    async fn cleanup(&mut self, old_rss: &[ReplicaSet]) -> Result<(), SyncError> {
        for rs in cleanup_victims(old_rss, &self.d) {
            let name = rs_name(&rs);
            let namespace = rs.metadata.namespace.clone().unwrap_or_default();
            match self.w.delete_replica_set(&namespace, &name).await {
                Ok(()) | Err(WriteError::NotFound) => {}
                Err(source) => return Err(SyncError::DeleteReplicaSet { name, source }),
            }
        }
        Ok(())
    }

    /// Upstream `syncDeploymentStatus`.
    async fn sync_deployment_status(
        &mut self,
        all_rss: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<(), SyncError> {
        let status = calculate_status(all_rss, new_rs, &self.d, self.now);
        if self.d.status.as_ref().map(normalized) == Some(status.clone()) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    /// Upstream `syncRolloutStatus`: writes the status when it changed, otherwise says when to re-check progress.
    async fn sync_rollout_status(
        &mut self,
        all_rss: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<Requeue, SyncError> {
        let status = rollout_status(all_rss, new_rs, &self.d, self.now);
        if self.d.status.as_ref().map(normalized) == Some(status.clone()) {
            return Ok(requeue_stuck(&self.d, &status, self.now));
        }
        self.d.status = Some(status);
        self.write_status().await?;
        Ok(None)
    }

    /// Upstream `rolloutRolling`.
    async fn rollout_rolling(mut self, mut rs_list: Vec<ReplicaSet>) -> Result<Requeue, SyncError> {
        let (new_rs, mut old_rss) = self.all_replica_sets_and_sync_revision(&mut rs_list, true).await?;
        let Some(new_rs) = new_rs else {
            return Err(SyncError::Invalid("no new replica set after creation".to_string()));
        };
        let all = all_of(&Some(new_rs.clone()), &old_rss);
        if self.reconcile_new_replica_set(&all, &new_rs).await? {
            return self.sync_rollout_status(&all, Some(&new_rs)).await;
        }
        let scaled_down = self.reconcile_old_replica_sets(&all, active(&old_rss), &new_rs).await;
        if scaled_down {
            return self.sync_rollout_status(&all, Some(&new_rs)).await;
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            old_rss.sort_by(by_creation);
            self.cleanup(&old_rss).await?;
        }
        self.sync_rollout_status(&all, Some(&new_rs)).await
    }

    /// Upstream `reconcileNewReplicaSet`: whether the new ReplicaSet was scaled.
    async fn reconcile_new_replica_set(
        &mut self,
        all_rss: &[ReplicaSet],
        new_rs: &ReplicaSet,
    ) -> Result<bool, SyncError> {
        let want = replicas(&self.d);
        let current = rs_replicas(new_rs);
        if current == want {
            return Ok(false);
        }
        let size = if current > want {
            want
        } else {
            new_rs_new_replicas(&self.d, all_rss, new_rs).map_err(SyncError::Invalid)?
        };
        let (scaled, _) = self.scale_and_record(new_rs, size).await?;
        Ok(scaled)
    }

    /// Upstream `reconcileOldReplicaSets`: unhealthy old replicas first, then within the availability budget.
    /// Errors are swallowed (reported as "nothing scaled"), as upstream does.
    async fn reconcile_old_replica_sets(
        &mut self,
        all_rss: &[ReplicaSet],
        old_rss: Vec<ReplicaSet>,
        new_rs: &ReplicaSet,
    ) -> bool {
        if replica_count(&old_rss) == 0 {
            return false;
        }
        let max_down = max_scaled_down(&self.d, all_rss, new_rs);
        if max_down <= 0 {
            return false;
        }
        let mut olds = old_rss;
        olds.sort_by(by_creation);
        let mut cleaned = 0;
        for (i, size) in unhealthy_scale_downs(&olds, max_down) {
            let before = rs_replicas(&olds[i]);
            match self.scale_and_record(&olds[i].clone(), size).await {
                Ok((_, updated)) => {
                    cleaned += before - size;
                    olds[i] = updated;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cleaning up unhealthy replicas failed");
                    return false;
                }
            }
        }
        let mut all = olds.clone();
        all.push(new_rs.clone());
        let mut scaled = 0;
        for (i, size) in available_scale_downs(&self.d, &all, &olds) {
            let before = rs_replicas(&olds[i]);
            match self.scale_and_record(&olds[i].clone(), size).await {
                Ok((_, updated)) => {
                    scaled += before - size;
                    olds[i] = updated;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "scaling down old replica sets failed");
                    return false;
                }
            }
        }
        cleaned + scaled > 0
    }

    /// Upstream `rolloutRecreate`.
    async fn rollout_recreate(mut self, mut rs_list: Vec<ReplicaSet>, pods: &PodMap) -> Result<Requeue, SyncError> {
        let (mut new_rs, mut old_rss) = self.all_replica_sets_and_sync_revision(&mut rs_list, false).await?;
        let mut all = all_of(&new_rs, &old_rss);
        let mut scaled_down = false;
        for old in active(&old_rss) {
            let (scaled, _) = self.scale_and_record(&old, 0).await?;
            scaled_down |= scaled;
        }
        if scaled_down {
            return self.sync_rollout_status(&all, new_rs.as_ref()).await;
        }
        if old_pods_running(new_rs.as_ref(), &old_rss, pods) {
            return self.sync_rollout_status(&all, new_rs.as_ref()).await;
        }
        if new_rs.is_none() {
            let (created, olds) = self.all_replica_sets_and_sync_revision(&mut rs_list, true).await?;
            new_rs = created;
            old_rss = olds;
            all = all_of(&new_rs, &old_rss);
        }
        if let Some(rs) = &new_rs {
            self.scale_and_record(rs, replicas(&self.d)).await?;
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old_rss).await?;
        }
        self.sync_rollout_status(&all, new_rs.as_ref()).await
    }

    /// Upstream `rollback` (the extensions/v1beta1 rollback annotation).
    async fn rollback(mut self, mut rs_list: Vec<ReplicaSet>) -> Result<Requeue, SyncError> {
        let (new_rs, old_rss) = self.all_replica_sets_and_sync_revision(&mut rs_list, true).await?;
        let all = all_of(&new_rs, &old_rss);
        let mut wanted = rollback_to(&self.d).unwrap_or(0);
        if wanted == 0 {
            wanted = last_revision(&all);
            if wanted == 0 {
                self.w.event(&self.d, "Warning", ROLLBACK_REVISION_NOT_FOUND, "Unable to find last revision.").await;
                self.clear_rollback_to().await?;
                return Ok(None);
            }
        }
        let Some(target) = all.iter().find(|rs| util::revision(rs) == Some(wanted)).cloned() else {
            let msg = "Unable to find the revision to rollback to.";
            self.w.event(&self.d, "Warning", ROLLBACK_REVISION_NOT_FOUND, msg).await;
            self.clear_rollback_to().await?;
            return Ok(None);
        };
        let target_template = rs_template(&target);
        if equal_ignore_hash(&template(&self.d), &target_template) {
            let msg =
                format!("The rollback revision contains the same template as current deployment {:?}", dname(&self.d));
            self.w.event(&self.d, "Warning", ROLLBACK_TEMPLATE_UNCHANGED, &msg).await;
            self.clear_rollback_to().await?;
            return Ok(None);
        }
        let mut restored = target_template;
        if let Some(labels) = restored.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH);
        }
        if let Some(spec) = self.d.spec.as_mut() {
            spec.template = restored;
        }
        set_deployment_annotations_to(&mut self.d, &target);
        self.clear_rollback_to().await?;
        let msg = format!("Rolled back deployment {:?} to revision {wanted}", dname(&self.d));
        self.w.event(&self.d, "Normal", ROLLBACK_DONE, &msg).await;
        Ok(None)
    }

    async fn clear_rollback_to(&mut self) -> Result<(), SyncError> {
        if let Some(annotations) = self.d.metadata.annotations.as_mut() {
            annotations.remove(ROLLBACK_TO);
        }
        let updated = self.w.update_deployment(&self.d).await.map_err(SyncError::UpdateDeployment)?;
        self.d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }
}
