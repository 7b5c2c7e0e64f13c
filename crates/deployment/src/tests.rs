//! Tests of the Deployment controller's logic: the pure arithmetic (hash, fenceposts, proportions, scale-down
//! budgets, conditions, cleanup) and whole rollouts driven against a model of the API server and of the ReplicaSet
//! controller (pods appear when a ReplicaSet grows and become available one step later).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSet, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::controller::{claim, Claim};
use crate::sync::*;
use crate::util::*;

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pod_template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels(&[("app", "web")])), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![Container { name: "web".into(), image: Some(image.into()), ..Default::default() }],
            ..Default::default()
        }),
    }
}

fn deployment(replicas: i32, image: &str, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() },
            template: pod_template(image),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn rs(name: &str, replicas: i32, available: i32, created: i64) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(pod_template("img:1")),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            available_replicas: Some(available),
            ready_replicas: Some(available),
            ..Default::default()
        }),
    }
}

fn annotate(mut rs: ReplicaSet, pairs: &[(&str, &str)]) -> ReplicaSet {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in pairs {
        a.insert(k.to_string(), v.to_string());
    }
    rs
}

fn t(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Hash
// ---------------------------------------------------------------------------------------------

#[test]
fn fnv32a_matches_the_reference_vectors() {
    let sum = |s: &str| {
        let mut h = Fnv32a::default();
        h.write(s.as_bytes());
        h.sum32()
    };
    assert_eq!(sum(""), 0x811c_9dc5);
    assert_eq!(sum("a"), 0xe40c_292c);
    assert_eq!(sum("foobar"), 0xbf9c_f968);
}

#[test]
fn safe_encoding_uses_the_vowel_free_alphabet() {
    // '0' is byte 48: 48 % 27 = 21 → '4'; '9' is 57 → 3 → 'f'.
    assert_eq!(safe_encode("0"), "4");
    assert_eq!(safe_encode("9"), "f");
    assert_eq!(safe_encode("1234567890"), "56789bcdf4");
}

#[test]
fn template_hash_is_stable_and_changes_with_template_and_collisions() {
    let a = compute_hash(&pod_template("img:1"), None);
    assert_eq!(a, compute_hash(&pod_template("img:1"), None));
    assert!(a.len() <= 10 && a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{a}");
    assert_ne!(a, compute_hash(&pod_template("img:2"), None));
    let one = compute_hash(&pod_template("img:1"), Some(1));
    assert_ne!(a, one);
    assert_ne!(one, compute_hash(&pod_template("img:1"), Some(2)));
    // The value is pinned so a change of the printed form (and so of every ReplicaSet name) is noticed.
    assert_eq!(a, "58d4d68cf7");
}

#[test]
fn templates_compare_equal_ignoring_the_hash_label_and_empty_fields() {
    let a = pod_template("img:1");
    let mut b = a.clone();
    b.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), "abc".into());
    b.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
    assert!(equal_ignore_hash(&a, &b));
    assert!(!equal_ignore_hash(&a, &pod_template("img:2")));
}

// ---------------------------------------------------------------------------------------------
// Fenceposts
// ---------------------------------------------------------------------------------------------

#[test]
fn surge_rounds_up_and_unavailable_rounds_down() {
    let cases = [
        // (desired, surge, unavailable) → (surge, unavailable)
        (3, pct("25%"), pct("25%"), (1, 0)),
        (10, pct("25%"), pct("25%"), (3, 2)),
        (4, pct("25%"), pct("25%"), (1, 1)),
        (2, pct("0%"), pct("1%"), (0, 1)),
        (2, pct("1%"), pct("25%"), (1, 0)),
        (5, IntOrString::Int(2), IntOrString::Int(0), (2, 0)),
        (0, pct("25%"), pct("25%"), (0, 1)),
    ];
    for (desired, surge, unavailable, want) in cases {
        assert_eq!(resolve_fenceposts(Some(&surge), Some(&unavailable), desired), Ok(want), "{desired} {surge:?}");
    }
    assert!(scaled_value(&pct("x%"), 3, true).is_err());
    assert!(scaled_value(&IntOrString::String("3".into()), 3, true).is_err());
}

#[test]
fn max_unavailable_is_capped_and_zero_for_recreate() {
    let d = deployment(3, "img:1", pct("0%"), IntOrString::Int(5));
    assert_eq!(max_unavailable(&d), 3);
    assert_eq!(max_surge(&d), 0);
    let mut r = deployment(3, "img:1", pct("25%"), pct("25%"));
    r.spec.as_mut().unwrap().strategy =
        Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
    assert_eq!((max_unavailable(&r), max_surge(&r)), (0, 0));
    let empty = deployment(0, "img:1", pct("25%"), pct("25%"));
    assert_eq!(max_unavailable(&empty), 0);
}

// ---------------------------------------------------------------------------------------------
// Rolling arithmetic
// ---------------------------------------------------------------------------------------------

#[test]
fn new_replica_set_grows_within_the_surge() {
    let d = deployment(10, "img:2", pct("25%"), pct("25%"));
    let old = rs("old", 10, 10, 1);
    let new = rs("new", 0, 0, 2);
    assert_eq!(new_rs_new_replicas(&d, &[old.clone(), new.clone()], &new), Ok(3));
    // At the surge limit nothing more.
    let new3 = rs("new", 3, 0, 2);
    assert_eq!(new_rs_new_replicas(&d, &[old, new3.clone()], &new3), Ok(3));
    // Never beyond spec.replicas.
    let old1 = rs("old", 1, 1, 1);
    let new9 = rs("new", 9, 9, 2);
    assert_eq!(new_rs_new_replicas(&d, &[old1, new9.clone()], &new9), Ok(10));
}

#[test]
fn old_replica_sets_shrink_within_the_availability_budget() {
    // 10 replicas, maxUnavailable 2, maxSurge 3 (upstream's worked example).
    let d = deployment(10, "img:2", IntOrString::Int(3), IntOrString::Int(2));
    let old = rs("old", 10, 10, 1);
    let new = rs("new", 3, 0, 2);
    let all = vec![old.clone(), new.clone()];
    // 13 pods - 8 min available - 3 unavailable new = 2.
    assert_eq!(max_scaled_down(&d, &all, &new), 2);
    assert_eq!(available_scale_downs(&d, &all, std::slice::from_ref(&old)), vec![(0, 8)]);
    // New pods crash-looping: no more room once old ones went down to 8.
    let old8 = rs("old", 8, 8, 1);
    let new5 = rs("new", 5, 0, 2);
    assert_eq!(max_scaled_down(&d, &[old8.clone(), new5.clone()], &new5), 0);
}

#[test]
fn unhealthy_old_replicas_go_first_up_to_the_limit() {
    let olds = vec![rs("a", 3, 1, 1), rs("b", 2, 2, 2), rs("c", 4, 0, 3)];
    assert_eq!(unhealthy_scale_downs(&olds, 10), vec![(0, 1), (2, 0)]);
    assert_eq!(unhealthy_scale_downs(&olds, 3), vec![(0, 1), (2, 3)]);
}

#[test]
fn available_scale_downs_take_the_oldest_first() {
    let d = deployment(4, "img:3", IntOrString::Int(1), IntOrString::Int(1));
    let olds = vec![rs("a", 1, 1, 1), rs("b", 3, 3, 2)];
    let mut all = olds.clone();
    all.push(rs("new", 1, 1, 3));
    // 5 available, 3 must stay: 2 may go, one from a then one from b.
    assert_eq!(available_scale_downs(&d, &all, &olds), vec![(0, 0), (1, 2)]);
}

#[test]
fn proportional_scaling_keeps_the_ratio_during_a_rollout() {
    // 10 → 20 replicas mid-rollout with 25% surge: old 8 and new 5, both sized for max 13.
    let d = deployment(20, "img:2", pct("25%"), pct("25%"));
    let old = annotate(rs("old", 8, 8, 1), &[(MAX_REPLICAS, "13"), (DESIRED_REPLICAS, "10")]);
    let new = annotate(rs("new", 5, 0, 2), &[(MAX_REPLICAS, "13"), (DESIRED_REPLICAS, "10")]);
    let (sizes, op) = proportional_sizes(&d, &[old, new]);
    assert_eq!(op, "up");
    let total: i32 = sizes.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 25);
    let map: BTreeMap<_, _> = sizes.into_iter().collect();
    // old: round(8 * 25 / 13) = 15; new: round(5 * 25 / 13) = 10.
    assert_eq!((map["old"], map["new"]), (15, 10));
    // And back down to zero removes everything.
    let d0 = deployment(0, "img:2", pct("25%"), pct("25%"));
    let old = annotate(rs("old", 16, 16, 1), &[(MAX_REPLICAS, "25")]);
    let new = annotate(rs("new", 9, 0, 2), &[(MAX_REPLICAS, "25")]);
    let (sizes, op) = proportional_sizes(&d0, &[old, new]);
    assert_eq!(op, "down");
    assert!(sizes.iter().all(|(_, n)| *n == 0), "{sizes:?}");
}

#[test]
fn scaling_events_are_seen_in_the_desired_annotation() {
    let d = deployment(5, "img:1", pct("25%"), pct("25%"));
    let sized_for_3 = annotate(rs("a", 3, 3, 1), &[(DESIRED_REPLICAS, "3")]);
    assert!(is_scaling_event(&d, std::slice::from_ref(&sized_for_3)));
    let sized_for_5 = annotate(rs("a", 3, 3, 1), &[(DESIRED_REPLICAS, "5")]);
    assert!(!is_scaling_event(&d, &[sized_for_5]));
}

// ---------------------------------------------------------------------------------------------
// Annotations, revisions, conditions, cleanup, claims
// ---------------------------------------------------------------------------------------------

#[test]
fn reused_replica_set_records_its_revision_history() {
    let mut d = deployment(3, "img:1", pct("25%"), pct("25%"));
    d.metadata.annotations = Some(labels(&[("kubernetes.io/change-cause", "v1"), (LAST_APPLIED, "{}")]));
    let mut old = annotate(rs("a", 0, 0, 1), &[(REVISION, "1")]);
    assert!(set_new_replica_set_annotations(&d, &mut old, "3", true, MAX_REV_HISTORY_CHARS));
    let a = old.metadata.annotations.clone().unwrap();
    assert_eq!(a[REVISION], "3");
    assert_eq!(a[REVISION_HISTORY], "1");
    assert_eq!(a["kubernetes.io/change-cause"], "v1");
    assert!(!a.contains_key(LAST_APPLIED));
    assert!(!a.contains_key(DESIRED_REPLICAS), "existing replica sets keep their replica annotations");
    assert!(set_new_replica_set_annotations(&d, &mut old, "5", true, MAX_REV_HISTORY_CHARS));
    assert_eq!(old.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY], "1,3");
    // No change when already current.
    assert!(!set_new_replica_set_annotations(&d, &mut old, "5", true, MAX_REV_HISTORY_CHARS));
    // Revisions: max and second max.
    let rss = vec![annotate(rs("a", 0, 0, 1), &[(REVISION, "4")]), annotate(rs("b", 0, 0, 2), &[(REVISION, "7")])];
    assert_eq!((max_revision(&rss), last_revision(&rss)), (7, 4));
}

#[test]
fn new_replica_set_object_carries_hash_owner_and_annotations() {
    let d = deployment(3, "img:1", pct("25%"), pct("25%"));
    let created = new_replica_set_object(&d, &[], "1");
    let hash = compute_hash(&pod_template("img:1"), None);
    assert_eq!(created.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(3), "a first rollout starts at full size (surge allows it)");
    assert_eq!(spec.selector.match_labels.unwrap()[POD_TEMPLATE_HASH], hash);
    assert_eq!(spec.template.unwrap().metadata.unwrap().labels.unwrap()[POD_TEMPLATE_HASH], hash);
    assert_eq!(created.metadata.labels.clone().unwrap()[POD_TEMPLATE_HASH], hash);
    let owner = &created.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
        ("Deployment", Some(true), Some(true))
    );
    let a = created.metadata.annotations.unwrap();
    assert_eq!((a[REVISION].as_str(), a[DESIRED_REPLICAS].as_str(), a[MAX_REPLICAS].as_str()), ("1", "3", "4"));
}

#[test]
fn conditions_keep_transition_time_unless_status_changes() {
    let mut status = DeploymentStatus::default();
    set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_REPLICA_SET, "a", t(0)));
    set_condition(&mut status, new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "b", t(10)));
    let c = get_condition(Some(&status), PROGRESSING).unwrap().clone();
    assert_eq!(reason(&c), REPLICA_SET_UPDATED);
    assert_eq!((c.last_transition_time.unwrap().0, c.last_update_time.unwrap().0), (t(0), t(10)));
    // Same status and reason: nothing changes at all.
    set_condition(&mut status, new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "c", t(20)));
    assert_eq!(get_condition(Some(&status), PROGRESSING).unwrap().message.as_deref(), Some("b"));
    set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, "d", t(30)));
    assert_eq!(get_condition(Some(&status), PROGRESSING).unwrap().last_transition_time.clone().unwrap().0, t(30));
}

#[test]
fn available_condition_follows_the_availability_budget() {
    let d = deployment(4, "img:1", pct("25%"), pct("25%"));
    let status = calculate_status(&[rs("a", 4, 3, 1)], None, &d, t(0));
    let c = get_condition(Some(&status), AVAILABLE).unwrap();
    assert_eq!((c.status.as_str(), reason(c)), ("True", MINIMUM_REPLICAS_AVAILABLE));
    assert_eq!(status.unavailable_replicas, Some(1));
    let status = calculate_status(&[rs("a", 4, 2, 1)], None, &d, t(0));
    let c = get_condition(Some(&status), AVAILABLE).unwrap();
    assert_eq!((c.status.as_str(), reason(c)), ("False", MINIMUM_REPLICAS_UNAVAILABLE));
}

#[test]
fn progress_times_out_after_the_deadline_without_progress() {
    let mut d = deployment(2, "img:2", pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
    let new = rs("new", 2, 0, 1);
    let mut status = calculate_status(std::slice::from_ref(&new), Some(&new), &d, t(0));
    set_condition(&mut status, new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "x", t(0)));
    d.status = Some(status.clone());
    assert!(!deployment_timed_out(&d, &status, t(30)));
    assert!(deployment_timed_out(&d, &status, t(31)));
    assert_eq!(requeue_stuck(&d, &status, t(10)), Some(std::time::Duration::from_secs(21)));
    let out = rollout_status(std::slice::from_ref(&new), Some(&new), &d, t(31));
    let c = get_condition(Some(&out), PROGRESSING).unwrap();
    assert_eq!((c.status.as_str(), reason(c)), ("False", TIMED_OUT));
    assert_eq!(c.message.as_deref(), Some("ReplicaSet \"new\" has timed out progressing."));
}

#[test]
fn cleanup_deletes_the_oldest_revisions_beyond_the_limit_that_are_empty() {
    let mut d = deployment(1, "img:9", pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let olds = vec![
        annotate(rs("r1", 0, 0, 1), &[(REVISION, "1")]),
        annotate(rs("r3", 0, 0, 3), &[(REVISION, "3")]),
        annotate(rs("r2", 1, 1, 2), &[(REVISION, "2")]),
    ];
    let names: Vec<_> = cleanup_victims(&olds, &d).into_iter().map(|r| r.metadata.name.unwrap()).collect();
    // r1 and r2 are beyond the limit; r2 still has a replica.
    assert_eq!(names, vec!["r1"]);
    d.spec.as_mut().unwrap().revision_history_limit = Some(5);
    assert!(cleanup_victims(&olds, &d).is_empty());
}

#[test]
fn claims_adopt_orphans_and_release_unselected() {
    let d = deployment(1, "img:1", pct("25%"), pct("25%"));
    let orphan = rs("o", 1, 1, 1);
    assert_eq!(claim(&d, &orphan, true), Claim::Adopt);
    assert_eq!(claim(&d, &orphan, false), Claim::Ignore);
    let mut ours = orphan.clone();
    ours.metadata.owner_references = Some(vec![controller_ref(&d)]);
    assert_eq!(claim(&d, &ours, true), Claim::Owned);
    assert_eq!(claim(&d, &ours, false), Claim::Release);
    let mut theirs = ours.clone();
    theirs.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
    assert_eq!(claim(&d, &theirs, true), Claim::Ignore);
}

// ---------------------------------------------------------------------------------------------
// Whole rollouts against a model
// ---------------------------------------------------------------------------------------------

/// A model of the API server for one Deployment and its ReplicaSets, plus the ReplicaSet controller: each
/// [`Model::tick`] makes every ReplicaSet's pod count match its spec (unavailable pods removed first) and makes
/// pods from earlier ticks available (`hold` keeps new pods of one template unavailable).
struct Model {
    d: Deployment,
    rss: BTreeMap<String, ReplicaSet>,
    /// Per ReplicaSet: ages of its pods (ticks).
    pods: BTreeMap<String, Vec<u32>>,
    events: Vec<String>,
    version: u64,
    clock: i64,
    hold: Option<String>,
}

impl Model {
    fn new(d: Deployment) -> Model {
        Model { d, rss: BTreeMap::new(), pods: BTreeMap::new(), events: Vec::new(), version: 10, clock: 0, hold: None }
    }

    fn bump(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    fn now(&self) -> Timestamp {
        t(self.clock)
    }

    fn set_image(&mut self, image: &str) {
        let spec = self.d.spec.as_mut().unwrap();
        spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap() + 1);
        self.d.metadata.resource_version = Some(self.bump());
    }

    fn set_replicas(&mut self, n: i32) {
        self.d.spec.as_mut().unwrap().replicas = Some(n);
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap() + 1);
        self.d.metadata.resource_version = Some(self.bump());
    }

    fn set_paused(&mut self, paused: bool) {
        self.d.spec.as_mut().unwrap().paused = Some(paused);
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap() + 1);
        self.d.metadata.resource_version = Some(self.bump());
    }

    async fn reconcile(&mut self) -> Requeue {
        let d = self.d.clone();
        let rs_list: Vec<ReplicaSet> = self.rss.values().filter(|rs| is_controlled_by(rs, &d)).cloned().collect();
        let pods = PodMap::new();
        let now = self.now();
        Syncer::new(self, d, now).run(rs_list, &pods).await.unwrap()
    }

    fn image_of(rs: &ReplicaSet) -> String {
        rs_template(rs).spec.unwrap().containers[0].image.clone().unwrap()
    }

    fn tick(&mut self) {
        self.clock += 1;
        for (name, rs) in self.rss.iter_mut() {
            let want = rs_replicas(rs) as usize;
            let held = self.hold.as_deref() == Some(Model::image_of(rs).as_str());
            let pods = self.pods.entry(name.clone()).or_default();
            for age in pods.iter_mut() {
                if !held {
                    *age += 1;
                }
            }
            // Remove unavailable (young) pods first, as the ReplicaSet controller ranks them.
            pods.sort_unstable_by(|a, b| b.cmp(a));
            pods.truncate(want);
            while pods.len() < want {
                pods.push(0);
            }
            let available = pods.iter().filter(|a| **a >= 1).count() as i32;
            let status = rs.status.get_or_insert_with(Default::default);
            status.replicas = pods.len() as i32;
            status.ready_replicas = Some(available);
            status.available_replicas = Some(available);
            status.observed_generation = rs.metadata.generation;
            rs.metadata.resource_version = Some({
                self.version += 1;
                self.version.to_string()
            });
        }
    }

    fn available(&self) -> i32 {
        self.rss.values().map(rs_available).sum()
    }

    fn total_pods(&self) -> i32 {
        self.pods.values().map(|p| p.len() as i32).sum()
    }

    fn sizes(&self) -> Vec<(String, i32)> {
        self.rss.values().map(|rs| (Model::image_of(rs), rs_replicas(rs))).collect()
    }

    fn rs_of(&self, image: &str) -> ReplicaSet {
        self.rss.values().find(|rs| Model::image_of(rs) == image).cloned().unwrap()
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    /// Reconciles and ticks until the rollout is complete (or `limit` rounds), checking `each` every round.
    async fn run_until_complete(&mut self, limit: usize, mut each: impl FnMut(&Model)) {
        for _ in 0..limit {
            self.reconcile().await;
            each(self);
            self.tick();
            each(self);
            let status = self.status();
            if deployment_complete(&self.d, &status)
                && get_condition(Some(&status), PROGRESSING).is_some_and(|c| reason(c) == NEW_RS_AVAILABLE)
                && self.rss.values().filter(|rs| rs_replicas(rs) > 0).count() == 1
            {
                return;
            }
        }
        panic!("rollout did not complete: {:?} status {:?}", self.sizes(), self.status());
    }
}

impl Writes for Model {
    async fn create_replica_set(&mut self, rs: &ReplicaSet) -> Result<ReplicaSet, WriteError> {
        let name = rs.metadata.name.clone().unwrap();
        if self.rss.contains_key(&name) {
            return Err(WriteError::AlreadyExists);
        }
        let mut created = rs.clone();
        created.metadata.uid = Some(format!("{name}-uid"));
        created.metadata.generation = Some(1);
        created.metadata.creation_timestamp = Some(Time(self.now()));
        created.metadata.resource_version = Some(self.bump());
        self.rss.insert(name, created.clone());
        Ok(created)
    }

    async fn update_replica_set(&mut self, rs: &ReplicaSet) -> Result<ReplicaSet, WriteError> {
        let name = rs.metadata.name.clone().unwrap();
        let version = self.bump();
        let stored = self.rss.get_mut(&name).ok_or(WriteError::NotFound)?;
        if stored.metadata.resource_version != rs.metadata.resource_version {
            return Err(WriteError::Conflict(name));
        }
        let mut updated = rs.clone();
        if updated.spec != stored.spec {
            updated.metadata.generation = Some(stored.metadata.generation.unwrap_or(0) + 1);
        }
        updated.status = stored.status.clone();
        updated.metadata.resource_version = Some(version);
        *stored = updated.clone();
        Ok(updated)
    }

    async fn delete_replica_set(&mut self, _namespace: &str, name: &str) -> Result<(), WriteError> {
        self.rss.remove(name).map(|_| ()).ok_or(WriteError::NotFound)
    }

    async fn update_status(&mut self, d: &Deployment) -> Result<Deployment, WriteError> {
        if d.metadata.resource_version != self.d.metadata.resource_version {
            return Err(WriteError::Conflict("deployment".into()));
        }
        self.d.status = d.status.clone();
        self.d.metadata.resource_version = Some(self.bump());
        Ok(self.d.clone())
    }

    async fn set_revision(&mut self, _d: &Deployment, revision: &str) -> Result<Deployment, WriteError> {
        self.d.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(REVISION.into(), revision.into());
        self.d.metadata.resource_version = Some(self.bump());
        Ok(self.d.clone())
    }

    async fn update_deployment(&mut self, d: &Deployment) -> Result<Deployment, WriteError> {
        if d.metadata.resource_version != self.d.metadata.resource_version {
            return Err(WriteError::Conflict("deployment".into()));
        }
        let mut updated = d.clone();
        if updated.spec != self.d.spec {
            updated.metadata.generation = Some(generation(&self.d) + 1);
        }
        updated.status = self.d.status.clone();
        updated.metadata.resource_version = Some(self.bump());
        self.d = updated.clone();
        Ok(updated)
    }

    fn cached_replica_set(&self, _namespace: &str, name: &str) -> Option<ReplicaSet> {
        self.rss.get(name).cloned()
    }

    async fn event(&mut self, _d: &Deployment, type_: &str, reason: &str, message: &str) {
        self.events.push(format!("{type_} {reason} {message}"));
    }
}

async fn rolled_out(d: Deployment) -> Model {
    let mut m = Model::new(d);
    m.run_until_complete(20, |_| {}).await;
    m
}

#[tokio::test]
async fn first_rollout_creates_a_full_replica_set_and_completes() {
    let m = rolled_out(deployment(3, "img:1", pct("25%"), pct("25%"))).await;
    let rs = m.rs_of("img:1");
    assert_eq!(rs_replicas(&rs), 3);
    assert_eq!(m.d.metadata.annotations.as_ref().unwrap()[REVISION], "1");
    let status = m.status();
    assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (Some(3), Some(3), Some(3)));
    assert_eq!(status.observed_generation, Some(1));
    let hash = compute_hash(&pod_template("img:1"), None);
    assert!(
        m.events.contains(&format!("Normal ScalingReplicaSet Scaled up replica set web-{hash} to 3")),
        "{:?}",
        m.events
    );
    let created = get_condition(Some(&status), PROGRESSING).unwrap();
    assert_eq!(
        created.message.as_deref(),
        Some(format!("ReplicaSet \"web-{hash}\" has successfully progressed.").as_str())
    );
}

#[tokio::test]
async fn rolling_update_keeps_availability_and_surge_bounds() {
    for (replicas, surge, unavailable) in [
        (3, pct("25%"), pct("25%")),
        (10, pct("25%"), pct("25%")),
        (5, IntOrString::Int(0), IntOrString::Int(1)),
        (4, IntOrString::Int(2), IntOrString::Int(0)),
    ] {
        let d = deployment(replicas, "img:1", surge, unavailable);
        let (max_s, max_u) = (max_surge(&d), max_unavailable(&d));
        let mut m = rolled_out(d).await;
        m.set_image("img:2");
        m.run_until_complete(60, |m| {
            assert!(
                m.available() >= replicas - max_u,
                "available {} < {replicas} - {max_u}: {:?}",
                m.available(),
                m.sizes()
            );
            let planned: i32 = m.rss.values().map(rs_replicas).sum();
            assert!(planned <= replicas + max_s, "{planned} pods planned > {replicas} + {max_s}: {:?}", m.sizes());
        })
        .await;
        assert_eq!(rs_replicas(&m.rs_of("img:2")), replicas);
        assert_eq!(rs_replicas(&m.rs_of("img:1")), 0);
        assert_eq!(m.total_pods(), replicas);
        assert_eq!(m.d.metadata.annotations.as_ref().unwrap()[REVISION], "2");
        assert_eq!(m.rs_of("img:2").metadata.annotations.unwrap()[REVISION], "2");
        assert!(m.events.iter().any(|e| e.starts_with("Normal ScalingReplicaSet Scaled down replica set web-")));
    }
}

#[tokio::test]
async fn going_back_to_an_old_template_reuses_its_replica_set_with_a_new_revision() {
    let mut m = rolled_out(deployment(3, "img:1", pct("25%"), pct("25%"))).await;
    let first = m.rs_of("img:1").metadata.name.unwrap();
    m.set_image("img:2");
    m.run_until_complete(40, |_| {}).await;
    m.set_image("img:1");
    m.run_until_complete(40, |_| {}).await;
    let back = m.rs_of("img:1");
    assert_eq!(back.metadata.name.as_deref(), Some(first.as_str()));
    let a = back.metadata.annotations.unwrap();
    assert_eq!((a[REVISION].as_str(), a[REVISION_HISTORY].as_str()), ("3", "1"));
    assert_eq!(m.rss.len(), 2);
    assert_eq!(rs_replicas(&m.rs_of("img:1")), 3);
}

#[tokio::test]
async fn deprecated_rollback_annotation_restores_the_old_template() {
    let mut m = rolled_out(deployment(2, "img:1", pct("25%"), pct("25%"))).await;
    m.set_image("img:2");
    m.run_until_complete(40, |_| {}).await;
    m.d.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(ROLLBACK_TO.into(), "0".into());
    m.reconcile().await;
    assert!(!m.d.metadata.annotations.as_ref().unwrap().contains_key(ROLLBACK_TO));
    assert_eq!(
        m.d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("img:1")
    );
    assert!(m.events.iter().any(|e| e.contains("DeploymentRollback Rolled back deployment \"web\" to revision 1")));
    m.run_until_complete(40, |_| {}).await;
    assert_eq!(rs_replicas(&m.rs_of("img:1")), 2);
}

#[tokio::test]
async fn recreate_scales_old_to_zero_before_creating_the_new_replica_set() {
    let mut d = deployment(3, "img:1", pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().strategy =
        Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
    let mut m = rolled_out(d).await;
    m.set_image("img:2");
    m.reconcile().await;
    assert_eq!(m.sizes(), vec![("img:1".to_string(), 0)], "old scaled down, new not created yet");
    // Old pods still reported: no new replica set yet.
    m.reconcile().await;
    assert_eq!(m.rss.len(), 1);
    m.tick();
    m.reconcile().await;
    assert_eq!(rs_replicas(&m.rs_of("img:2")), 3);
    m.run_until_complete(10, |m| {
        let old_pods = m.pods.iter().filter(|(n, _)| **n == m.rs_of("img:1").metadata.name.clone().unwrap());
        let new_pods = m.pods.get(&m.rs_of("img:2").metadata.name.clone().unwrap()).map(Vec::len).unwrap_or(0);
        assert!(old_pods.map(|(_, p)| p.len()).sum::<usize>() == 0 || new_pods == 0, "old and new pods together");
    })
    .await;
}

#[tokio::test]
async fn recreate_waits_for_old_pods_in_the_pod_map() {
    let mut d = deployment(1, "img:2", pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().strategy =
        Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
    let old = rs("old", 0, 0, 1);
    let running =
        Pod { status: Some(PodStatus { phase: Some("Running".into()), ..Default::default() }), ..Default::default() };
    let done =
        Pod { status: Some(PodStatus { phase: Some("Succeeded".into()), ..Default::default() }), ..Default::default() };
    let mut pods = PodMap::new();
    pods.insert("old-uid".into(), vec![running]);
    assert!(old_pods_running(None, std::slice::from_ref(&old), &pods));
    pods.insert("old-uid".into(), vec![done]);
    assert!(!old_pods_running(None, &[old], &pods));
}

#[tokio::test]
async fn paused_deployment_does_not_roll_out_but_scales_proportionally() {
    let mut m = rolled_out(deployment(10, "img:1", pct("25%"), pct("25%"))).await;
    m.set_image("img:2");
    // Part way: new replica set created and partly grown.
    m.reconcile().await;
    m.tick();
    m.set_paused(true);
    m.reconcile().await;
    let paused = get_condition(Some(&m.status()), PROGRESSING).unwrap().clone();
    assert_eq!((paused.status.as_str(), reason(&paused)), ("Unknown", PAUSED));
    let before = m.sizes();
    for _ in 0..5 {
        m.reconcile().await;
        m.tick();
    }
    assert_eq!(m.sizes(), before, "no rollout progress while paused");
    // Scaling while paused spreads the new size over both replica sets.
    m.set_replicas(20);
    m.reconcile().await;
    let total: i32 = m.sizes().iter().map(|(_, n)| n).sum();
    assert_eq!(total, 20 + 5, "20 replicas + 25% surge");
    assert!(m.sizes().iter().all(|(_, n)| *n > 0), "{:?}", m.sizes());
    m.set_paused(false);
    m.reconcile().await;
    assert_eq!(reason(get_condition(Some(&m.status()), PROGRESSING).unwrap()), RESUMED);
    m.run_until_complete(60, |_| {}).await;
    assert_eq!(rs_replicas(&m.rs_of("img:2")), 20);
}

#[tokio::test]
async fn history_limit_deletes_old_empty_replica_sets() {
    let mut d = deployment(1, "img:1", pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let mut m = rolled_out(d).await;
    for image in ["img:2", "img:3", "img:4"] {
        m.set_image(image);
        m.run_until_complete(30, |_| {}).await;
        m.reconcile().await;
    }
    let mut images: Vec<String> = m.rss.values().map(Model::image_of).collect();
    images.sort();
    assert_eq!(images, vec!["img:3", "img:4"]);
}

#[tokio::test]
async fn stuck_rollout_reports_progress_deadline_exceeded() {
    let mut d = deployment(2, "img:1", pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(5);
    let mut m = rolled_out(d).await;
    m.hold = Some("img:2".into());
    m.set_image("img:2");
    let mut requeues = Vec::new();
    for _ in 0..12 {
        requeues.push(m.reconcile().await);
        m.tick();
    }
    let c = get_condition(Some(&m.status()), PROGRESSING).unwrap().clone();
    assert_eq!((c.status.as_str(), reason(&c)), ("False", TIMED_OUT), "{requeues:?}");
    assert!(requeues.iter().any(|r| r.is_some()), "a progress check was scheduled");
    // Old pods keep serving: availability never dropped.
    assert!(m.available() >= 2 - max_unavailable(&m.d));
}

#[tokio::test]
async fn selecting_everything_is_refused_with_an_event() {
    let mut d = deployment(1, "img:1", pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().selector = LabelSelector::default();
    let mut m = Model::new(d);
    m.reconcile().await;
    assert!(m.rss.is_empty());
    assert_eq!(m.status().observed_generation, Some(1));
    assert!(m.events.iter().any(|e| e.starts_with("Warning SelectingAll")));
}

#[tokio::test]
async fn hash_collision_bumps_the_collision_count() {
    let d = deployment(1, "img:1", pct("25%"), pct("25%"));
    let mut m = Model::new(d.clone());
    let hash = compute_hash(&pod_template("img:1"), None);
    let mut squatter = rs(&format!("web-{hash}"), 0, 0, 0);
    squatter.spec.as_mut().unwrap().template = Some(pod_template("other"));
    m.rss.insert(format!("web-{hash}"), squatter);
    let rs_list = Vec::new();
    let now = m.now();
    let err = Syncer::new(&mut m, d, now).run(rs_list, &PodMap::new()).await.unwrap_err();
    assert!(matches!(err, SyncError::HashCollision(_)), "{err}");
    assert_eq!(m.status().collision_count, Some(1));
    m.reconcile().await;
    let with_collision = compute_hash(&pod_template("img:1"), Some(1));
    assert!(m.rss.contains_key(&format!("web-{with_collision}")));
}
