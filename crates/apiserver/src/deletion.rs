//! What a DELETE does to an object, as a pure decision: `DeleteOptions` and their validation,
//! each resource's default garbage-collection policy, graceful pod deletion, and the `orphan` /
//! `foregroundDeletion` finalizers that hand dependents to the garbage collector (upstream's
//! `rest.BeforeDelete`, `deletionFinalizersForGarbageCollection` and `markAsDeleting`, plus the
//! namespace registry's first-delete rule).

use ferry_apimachinery::field::FieldError;
use serde_json::{json, Value};

use crate::object::{self, meta_mut};
use crate::status::ApiError;

/// Finalizer asking the garbage collector to orphan the dependents first.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// Finalizer asking the garbage collector to delete the blocking dependents first.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// `DeleteOptions.propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    pub fn parse(s: &str) -> Option<Propagation> {
        match s {
            "Orphan" => Some(Propagation::Orphan),
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            _ => None,
        }
    }
}

/// What happens to dependents when the client names no policy (upstream `GarbageCollectionPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GcPolicy {
    /// Dependents are deleted (in the background).
    #[default]
    DeleteDependents,
    /// Dependents are orphaned: the object gets the `orphan` finalizer.
    OrphanDependents,
    /// The resource takes part in no garbage collection; delete never adds GC finalizers.
    Unsupported,
}

/// Upstream's `DefaultGarbageCollectionPolicy` for a resource requested at `group/version`:
/// older workload versions orphan for backward compatibility, as do `v1` ReplicationControllers
/// and `batch/v1` Jobs; Events take no part; everything else deletes dependents.
pub fn default_gc_policy(kind: &str, group: &str, version: &str) -> GcPolicy {
    match (kind, group, version) {
        ("Event", _, _) => GcPolicy::Unsupported,
        ("ReplicationController", "", "v1") => GcPolicy::OrphanDependents,
        ("ReplicaSet" | "Deployment" | "DaemonSet" | "StatefulSet", "extensions", "v1beta1")
        | ("ReplicaSet" | "Deployment" | "DaemonSet" | "StatefulSet", "apps", "v1beta1" | "v1beta2") => {
            GcPolicy::OrphanDependents
        }
        ("Job", "batch", "v1") => GcPolicy::OrphanDependents,
        ("CronJob", "batch", "v1beta1" | "v2alpha1") => GcPolicy::OrphanDependents,
        _ => GcPolicy::DeleteDependents,
    }
}

/// The warning upstream's Job storage adds when a delete leaves the batch/v1 default (orphan) in force.
pub const JOB_ORPHAN_WARNING: &str = "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning";

/// Options of a delete (`DeleteOptions`), already validated.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<Propagation>,
    /// The deprecated `orphanDependents`; never set together with `propagation_policy`.
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// The resource's default policy at the version the request came in on.
    pub default_gc: GcPolicy,
}

impl DeleteOptions {
    /// Whether the client named a policy (either field).
    pub fn explicit_policy(&self) -> bool {
        self.propagation_policy.is_some() || self.orphan_dependents.is_some()
    }
}

/// Upstream `ValidateDeleteOptions` for the two policy fields: the parsed policy, or 422 Invalid
/// on `DeleteOptions.meta.k8s.io` with one cause per problem.
pub fn validate_policy(policy: Option<&str>, orphan_dependents: Option<bool>) -> Result<Option<Propagation>, ApiError> {
    let mut errors = Vec::new();
    if let (Some(p), Some(_)) = (policy, orphan_dependents) {
        errors.push(FieldError::invalid(
            "propagationPolicy",
            p,
            "orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    let parsed = policy.map(|p| (p, Propagation::parse(p)));
    if let Some((p, None)) = parsed {
        errors.push(FieldError::not_supported("propagationPolicy", p, &["Foreground", "Background", "Orphan", "nil"]));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "DeleteOptions".into(),
            name: String::new(),
            errors,
        });
    }
    Ok(parsed.and_then(|(_, p)| p))
}

/// What a delete does to the stored object.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Nothing changes: a graceful deletion is already under way (its finalizers stay as they are).
    Unchanged,
    /// Write this object and keep it: finalizers are pending or a grace period runs.
    Pending(Value),
    /// Write this object (a graceful deletion with a zero period), then remove it.
    UpdateThenDelete(Value),
    /// Remove the object now.
    DeleteNow,
}

/// Decide what deleting `cur` (of `kind`) with `opts` at `now` does.
pub fn decide(kind: &str, cur: &Value, opts: &DeleteOptions, now: jiff::Timestamp) -> Outcome {
    if kind == "Namespace" {
        if object::deletion_timestamp(cur).is_none() {
            return Outcome::Pending(start_namespace_deletion(cur, opts, now));
        }
        // Final deletion waits for spec.finalizers (the namespace controller) to be empty.
        let spec_fins = cur.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if spec_fins {
            return Outcome::Unchanged;
        }
    }
    let (graceful, mut obj) = match before_delete(kind == "Pod", cur, opts, now) {
        Before::AlreadyPending => return Outcome::Unchanged,
        Before::NotGraceful => (None, cur.clone()),
        Before::Graceful(obj, period) => (Some(period), obj),
    };
    let had_finalizers = !object::finalizers(cur).is_empty();
    let new_finalizers = gc_finalizers(&object::finalizers(&obj), opts);
    if graceful.is_none() && !had_finalizers && new_finalizers.is_none() {
        return Outcome::DeleteNow;
    }
    if let Some(f) = new_finalizers {
        set_finalizers(&mut obj, f);
    }
    let pending_finalizers = !object::finalizers(&obj).is_empty();
    match graceful {
        None if pending_finalizers => {
            mark_as_deleting(&mut obj, now);
            Outcome::Pending(obj)
        }
        None => Outcome::DeleteNow,
        Some(period) if pending_finalizers || period > 0 => Outcome::Pending(obj),
        Some(_) => Outcome::UpdateThenDelete(obj),
    }
}

enum Before {
    /// The object is already being deleted gracefully and the request does not shorten it.
    AlreadyPending,
    /// No graceful deletion: delete now unless finalizers hold the object.
    NotGraceful,
    /// A graceful deletion starts (or is shortened) with this period; the object carries the new marks.
    Graceful(Value, i64),
}

/// Upstream `rest.BeforeDelete` with the pod strategy's `CheckGracefulDelete` (pods are the only
/// kind served here that deletes gracefully).
fn before_delete(graceful_kind: bool, cur: &Value, opts: &DeleteOptions, now: jiff::Timestamp) -> Before {
    if !graceful_kind {
        return Before::NotGraceful;
    }
    // Negative periods count as one second.
    let requested = opts.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
    let mut obj = cur.clone();
    if let Some(ts) = object::deletion_timestamp(cur) {
        let existing =
            cur.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .map(|g| if g < 0 { 1 } else { g });
        let Some(existing) = existing.filter(|g| *g != 0) else {
            // Marked with a zero period earlier (finalizers, or a failed final delete): go on.
            return Before::NotGraceful;
        };
        // Only a shorter period may be asked for.
        return match requested {
            Some(p) if p < existing => {
                let start = ts
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|t| t.checked_sub(jiff::SignedDuration::from_secs(existing)).ok())
                    .unwrap_or(now);
                let at = start.checked_add(jiff::SignedDuration::from_secs(p)).unwrap_or(start);
                let m = meta_mut(&mut obj);
                m.insert("deletionTimestamp".into(), json!(object::rfc3339(at)));
                m.insert("deletionGracePeriodSeconds".into(), json!(p));
                Before::Graceful(obj, p)
            }
            _ => Before::AlreadyPending,
        };
    }
    // The pod strategy's CheckGracefulDelete: the requested period, else the pod's own, and zero
    // for pods never scheduled or already finished.
    let mut period =
        requested.or_else(|| cur.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(0);
    let bound = cur.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let finished = matches!(cur.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    if !bound || finished {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    let at = now.checked_add(jiff::SignedDuration::from_secs(period)).unwrap_or(now);
    let m = meta_mut(&mut obj);
    m.insert("deletionTimestamp".into(), json!(object::rfc3339(at)));
    m.insert("deletionGracePeriodSeconds".into(), json!(period));
    bump_generation(m);
    Before::Graceful(obj, period)
}

fn bump_generation(m: &mut serde_json::Map<String, Value>) {
    if let Some(g) = m.get("generation").and_then(Value::as_i64).filter(|g| *g > 0) {
        m.insert("generation".into(), json!(g + 1));
    }
}

/// Upstream `markAsDeleting`: a deletion timestamp no later than now, a zero grace period, and a
/// generation bump when deletion starts here.
fn mark_as_deleting(obj: &mut Value, now: jiff::Timestamp) {
    let existing = object::deletion_timestamp(obj).map(|ts| ts.parse::<jiff::Timestamp>().ok());
    let m = meta_mut(obj);
    if existing.is_none() {
        bump_generation(m);
    }
    match existing {
        Some(Some(ts)) if ts <= now => {}
        _ => {
            m.insert("deletionTimestamp".into(), json!(object::rfc3339(now)));
        }
    }
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
}

fn set_finalizers(obj: &mut Value, finalizers: Vec<String>) {
    let m = meta_mut(obj);
    if finalizers.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(finalizers));
    }
}

/// Upstream `deletionFinalizersForGarbageCollection`: the finalizers the object should carry
/// after this delete, or `None` when they stay as they are (compared as sets).
pub fn gc_finalizers(current: &[String], opts: &DeleteOptions) -> Option<Vec<String>> {
    let (orphan, foreground) = if opts.default_gc == GcPolicy::Unsupported {
        (false, false)
    } else {
        // An explicit option wins, then a GC finalizer already present, then the default.
        let present = current.iter().find_map(|f| match f.as_str() {
            FINALIZER_ORPHAN => Some(Propagation::Orphan),
            FINALIZER_FOREGROUND => Some(Propagation::Foreground),
            _ => None,
        });
        match (opts.orphan_dependents, opts.propagation_policy, present) {
            (Some(o), _, _) => (o, false),
            (None, Some(p), _) | (None, None, Some(p)) => (p == Propagation::Orphan, p == Propagation::Foreground),
            (None, None, None) => (opts.default_gc == GcPolicy::OrphanDependents, false),
        }
    };
    let mut next: Vec<String> =
        current.iter().filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND).cloned().collect();
    if orphan {
        next.push(FINALIZER_ORPHAN.into());
    }
    if foreground {
        next.push(FINALIZER_FOREGROUND.into());
    }
    let as_set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    (as_set(current) != as_set(&next)).then_some(next)
}

/// The namespace registry's first delete: deletion timestamp, phase Terminating, and the GC
/// finalizers the options ask for (kept as they are when the options name no policy).
fn start_namespace_deletion(cur: &Value, opts: &DeleteOptions, now: jiff::Timestamp) -> Value {
    let mut obj = cur.clone();
    let current = object::finalizers(cur);
    let have = |f: &str| current.iter().any(|c| c == f);
    let want_orphan = match (opts.orphan_dependents, opts.propagation_policy) {
        (Some(o), _) => o,
        (None, Some(p)) => p == Propagation::Orphan,
        (None, None) => have(FINALIZER_ORPHAN),
    };
    let want_foreground = match (opts.orphan_dependents, opts.propagation_policy) {
        (Some(o), _) => !o,
        (None, Some(p)) => p == Propagation::Foreground,
        (None, None) => have(FINALIZER_FOREGROUND),
    };
    let mut next: Vec<String> =
        current.iter().filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND).cloned().collect();
    if want_orphan {
        next.push(FINALIZER_ORPHAN.into());
    }
    if want_foreground {
        next.push(FINALIZER_FOREGROUND.into());
    }
    if next.len() != current.len() || next.iter().any(|f| !current.contains(f)) {
        set_finalizers(&mut obj, next);
    }
    let m = meta_mut(&mut obj);
    m.insert("deletionTimestamp".into(), json!(object::rfc3339(now)));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    obj["status"] = json!({"phase": "Terminating"});
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(policy: Option<Propagation>, orphan: Option<bool>, default_gc: GcPolicy) -> DeleteOptions {
        DeleteOptions { propagation_policy: policy, orphan_dependents: orphan, default_gc, ..Default::default() }
    }

    fn now() -> jiff::Timestamp {
        "2025-01-02T03:04:05Z".parse().unwrap()
    }

    fn rc(finalizers: &[&str], deleting: bool) -> Value {
        let mut v =
            json!({"metadata": {"name": "kubia", "namespace": "default", "uid": "u1", "generation": 3}, "spec": {}});
        if !finalizers.is_empty() {
            v["metadata"]["finalizers"] = json!(finalizers);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
            v["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        v
    }

    #[test]
    fn default_policies_follow_upstream_per_version() {
        use GcPolicy::*;
        let cases = [
            ("ReplicationController", "", "v1", OrphanDependents),
            ("ReplicaSet", "apps", "v1", DeleteDependents),
            ("ReplicaSet", "apps", "v1beta2", OrphanDependents),
            ("DaemonSet", "apps", "v1beta2", OrphanDependents),
            ("Deployment", "extensions", "v1beta1", OrphanDependents),
            ("Deployment", "apps", "v1", DeleteDependents),
            ("Job", "batch", "v1", OrphanDependents),
            ("CronJob", "batch", "v1", DeleteDependents),
            ("CronJob", "batch", "v1beta1", OrphanDependents),
            ("Event", "", "v1", Unsupported),
            ("Pod", "", "v1", DeleteDependents),
            ("ConfigMap", "", "v1", DeleteDependents),
        ];
        for (kind, group, version, want) in cases {
            assert_eq!(default_gc_policy(kind, group, version), want, "{kind} {group}/{version}");
        }
    }

    #[test]
    fn policy_validation_is_upstreams() {
        assert_eq!(validate_policy(Some("Orphan"), None).unwrap(), Some(Propagation::Orphan));
        assert_eq!(validate_policy(None, Some(true)).unwrap(), None);
        let e = validate_policy(Some("Sideways"), None).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_string(),
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        );
        let e = validate_policy(Some("Foreground"), Some(false)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Foreground\": orphanDependents and deletionPropagation cannot be both set"
        );
        let status: Value = serde_json::from_slice(&e.to_status_bytes()).unwrap();
        assert_eq!(status["details"]["group"], "meta.k8s.io");
        assert_eq!(status["details"]["kind"], "DeleteOptions");
        assert_eq!(status["details"]["causes"][0]["field"], "propagationPolicy");
        assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueInvalid");
    }

    #[test]
    fn orphan_adds_the_finalizer_and_marks_deletion() {
        let o = opts(Some(Propagation::Orphan), None, GcPolicy::DeleteDependents);
        let Outcome::Pending(obj) = decide("ReplicationController", &rc(&[], false), &o, now()) else { panic!() };
        assert_eq!(obj["metadata"]["finalizers"], json!(["orphan"]));
        assert_eq!(obj["metadata"]["deletionTimestamp"], "2025-01-02T03:04:05Z");
        assert_eq!(obj["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(obj["metadata"]["generation"], 4);
        // The legacy flag means the same.
        let o = opts(None, Some(true), GcPolicy::DeleteDependents);
        let Outcome::Pending(obj) = decide("ReplicationController", &rc(&[], false), &o, now()) else { panic!() };
        assert_eq!(obj["metadata"]["finalizers"], json!(["orphan"]));
    }

    #[test]
    fn foreground_adds_its_finalizer_and_background_deletes_now() {
        let o = opts(Some(Propagation::Foreground), None, GcPolicy::OrphanDependents);
        let Outcome::Pending(obj) = decide("ReplicaSet", &rc(&[], false), &o, now()) else { panic!() };
        assert_eq!(obj["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        let o = opts(Some(Propagation::Background), None, GcPolicy::OrphanDependents);
        assert_eq!(decide("ReplicaSet", &rc(&[], false), &o, now()), Outcome::DeleteNow);
        let o = opts(None, Some(false), GcPolicy::OrphanDependents);
        assert_eq!(decide("ReplicaSet", &rc(&[], false), &o, now()), Outcome::DeleteNow);
    }

    #[test]
    fn defaults_apply_when_no_policy_is_named() {
        let o = opts(None, None, GcPolicy::OrphanDependents);
        let Outcome::Pending(obj) = decide("Job", &rc(&[], false), &o, now()) else { panic!() };
        assert_eq!(obj["metadata"]["finalizers"], json!(["orphan"]));
        let o = opts(None, None, GcPolicy::DeleteDependents);
        assert_eq!(decide("Deployment", &rc(&[], false), &o, now()), Outcome::DeleteNow);
        // Events never get GC finalizers, whatever is asked.
        let o = opts(Some(Propagation::Orphan), None, GcPolicy::Unsupported);
        assert_eq!(decide("Event", &rc(&[], false), &o, now()), Outcome::DeleteNow);
    }

    #[test]
    fn a_gc_finalizer_already_present_wins_over_the_default() {
        let o = opts(None, None, GcPolicy::DeleteDependents);
        let Outcome::Pending(obj) = decide("ReplicaSet", &rc(&["orphan"], false), &o, now()) else { panic!() };
        assert_eq!(obj["metadata"]["finalizers"], json!(["orphan"]));
    }

    #[test]
    fn a_second_delete_switches_or_drops_the_gc_finalizer() {
        let being_orphaned = rc(&["example.com/keep", "orphan"], true);
        let o = opts(Some(Propagation::Foreground), None, GcPolicy::DeleteDependents);
        let Outcome::Pending(obj) = decide("ReplicationController", &being_orphaned, &o, now()) else { panic!() };
        assert_eq!(obj["metadata"]["finalizers"], json!(["example.com/keep", "foregroundDeletion"]));
        // The earlier deletion timestamp stays, and the generation moves only once.
        assert_eq!(obj["metadata"]["deletionTimestamp"], "2025-01-01T00:00:00Z");
        assert_eq!(obj["metadata"]["generation"], 3);
        // Background drops the GC finalizer; the other one still holds the object.
        let o = opts(Some(Propagation::Background), None, GcPolicy::DeleteDependents);
        let Outcome::Pending(obj) = decide("ReplicationController", &being_orphaned, &o, now()) else { panic!() };
        assert_eq!(obj["metadata"]["finalizers"], json!(["example.com/keep"]));
        // With nothing else holding it, Background deletes it now.
        assert_eq!(decide("ReplicationController", &rc(&["orphan"], true), &o, now()), Outcome::DeleteNow);
        // The same policy again changes nothing.
        let o = opts(Some(Propagation::Orphan), None, GcPolicy::DeleteDependents);
        assert_eq!(
            decide("ReplicationController", &rc(&["orphan"], true), &o, now()),
            Outcome::Pending(rc(&["orphan"], true))
        );
    }

    fn pod(node: Option<&str>, grace: i64) -> Value {
        let mut p = json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": {"terminationGracePeriodSeconds": grace}, "status": {"phase": "Running"}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    #[test]
    fn pods_delete_gracefully_and_may_only_shorten_the_period() {
        let o = DeleteOptions::default();
        let Outcome::Pending(p) = decide("Pod", &pod(Some("n1"), 30), &o, now()) else { panic!() };
        assert_eq!(p["metadata"]["deletionTimestamp"], "2025-01-02T03:04:35Z");
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
        // Again without a period: nothing changes; a longer one neither.
        assert_eq!(decide("Pod", &p, &o, now()), Outcome::Unchanged);
        let longer = DeleteOptions { grace_period_seconds: Some(60), ..Default::default() };
        assert_eq!(decide("Pod", &p, &longer, now()), Outcome::Unchanged);
        // A shorter one moves the timestamp back from the original start.
        let shorter = DeleteOptions { grace_period_seconds: Some(5), ..Default::default() };
        let Outcome::Pending(q) = decide("Pod", &p, &shorter, now()) else { panic!() };
        assert_eq!(q["metadata"]["deletionTimestamp"], "2025-01-02T03:04:10Z");
        // Zero: the marks are written, then the pod goes.
        let zero = DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
        assert!(matches!(decide("Pod", &p, &zero, now()), Outcome::UpdateThenDelete(_)));
        // Unscheduled pods have no grace period.
        assert!(matches!(decide("Pod", &pod(None, 30), &o, now()), Outcome::UpdateThenDelete(_)));
    }

    #[test]
    fn a_pod_with_finalizers_stays_after_its_grace_period() {
        let mut p = pod(None, 30);
        p["metadata"]["finalizers"] = json!(["example.com/hold"]);
        let o = opts(Some(Propagation::Foreground), None, GcPolicy::DeleteDependents);
        let Outcome::Pending(p) = decide("Pod", &p, &o, now()) else { panic!() };
        assert_eq!(p["metadata"]["finalizers"], json!(["example.com/hold", "foregroundDeletion"]));
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 0);
    }

    #[test]
    fn namespaces_take_gc_finalizers_on_the_first_delete_only() {
        let ns = json!({"metadata": {"name": "n", "uid": "u"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let o = opts(Some(Propagation::Orphan), None, GcPolicy::DeleteDependents);
        let Outcome::Pending(t) = decide("Namespace", &ns, &o, now()) else { panic!() };
        assert_eq!(t["metadata"]["finalizers"], json!(["orphan"]));
        assert_eq!(t["status"]["phase"], "Terminating");
        assert_eq!(decide("Namespace", &t, &o, now()), Outcome::Unchanged);
        let none = DeleteOptions::default();
        let Outcome::Pending(t) = decide("Namespace", &ns, &none, now()) else { panic!() };
        assert!(t["metadata"].get("finalizers").is_none());
    }
}
