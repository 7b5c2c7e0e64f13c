//! Pure helpers of the Deployment controller (upstream `pkg/controller/deployment/util`): well-known annotations and
//! condition reasons, maxSurge/maxUnavailable resolution, the pod-template hash, revisions, replica-set annotations,
//! conditions, template equality, the new/old replica set split, counts, orderings and progress predicates.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// The label every ReplicaSet (and its pods) of a Deployment carries: the hash of its pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The rollout sequence number of a ReplicaSet (and of its Deployment).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions a reused ReplicaSet served, comma separated.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when the ReplicaSet was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when the ReplicaSet was last sized.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The extensions/v1beta1 rollback request (`spec.rollbackTo` of old API versions), still honoured.
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// `kubectl apply`'s annotation, never copied to ReplicaSets.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Longest `revision-history` annotation kept.
pub const MAX_REV_HISTORY_CHARS: usize = 2000;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

pub const ROLLBACK_REVISION_NOT_FOUND: &str = "DeploymentRollbackRevisionNotFound";
pub const ROLLBACK_TEMPLATE_UNCHANGED: &str = "DeploymentRollbackTemplateUnchanged";
pub const ROLLBACK_DONE: &str = "DeploymentRollback";

const MAX_INT32: i32 = i32::MAX;

// ---------------------------------------------------------------------------------------------
// Accessors (defaulted fields read as the API server defaults them)
// ---------------------------------------------------------------------------------------------

/// `spec.replicas` of a Deployment (defaulted to 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet (defaulted to 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Sets `spec.replicas` of a ReplicaSet.
pub fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

/// `status.replicas` of a ReplicaSet.
pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

/// `status.readyReplicas` of a ReplicaSet.
pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// `status.availableReplicas` of a ReplicaSet.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// The pod template of a ReplicaSet (empty if absent).
pub fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default()
}

/// The pod template of a Deployment.
pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

/// `spec.minReadySeconds` of a Deployment.
pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// Whether `spec.paused` is set.
pub fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// The strategy type (`RollingUpdate` when unset, as defaulting makes it).
pub fn strategy_type(d: &Deployment) -> &str {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
}

/// Upstream `IsRollingUpdate`.
pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

/// Upstream `HasProgressDeadline`: set and not MaxInt32.
pub fn has_progress_deadline(d: &Deployment) -> bool {
    progress_deadline(d).is_some()
}

/// `spec.progressDeadlineSeconds` when it sets a deadline.
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != MAX_INT32)
}

/// `spec.revisionHistoryLimit` when it limits anything (upstream `HasRevisionHistoryLimit`).
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.revision_history_limit).filter(|s| *s != MAX_INT32)
}

/// `metadata.generation` of a Deployment.
pub fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or(0)
}

/// The controller owner reference of an object's metadata, if any.
pub fn controller_of(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

/// The ownerReference a Deployment puts on its ReplicaSets.
pub fn controller_ref(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_string(),
        kind: "Deployment".to_string(),
        name: d.metadata.name.clone().unwrap_or_default(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `rs` is controlled by `d` (same UID).
pub fn is_controlled_by(rs: &ReplicaSet, d: &Deployment) -> bool {
    let uid = d.metadata.uid.as_deref().unwrap_or_default();
    controller_of(rs.metadata.owner_references.as_ref()).is_some_and(|r| !uid.is_empty() && r.uid == uid)
}

// ---------------------------------------------------------------------------------------------
// maxSurge / maxUnavailable
// ---------------------------------------------------------------------------------------------

/// Why an int-or-percent value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for IntOrString: {0}")]
pub struct IntOrPercentError(String);

/// Upstream `intstr.GetScaledValueFromIntOrPercent`: an integer as is, or `p%` of `total` rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, IntOrPercentError> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(IntOrPercentError(format!("invalid type: string is not a percentage: {s:?}")));
            };
            let percent: i64 = number.parse().map_err(|_| IntOrPercentError(format!("invalid value {s:?}")))?;
            let exact = percent as f64 * f64::from(total) / 100.0;
            let rounded = if round_up { exact.ceil() } else { exact.floor() };
            Ok(rounded as i32)
        }
    }
}

/// Upstream `ResolveFenceposts`: (maxSurge rounded up, maxUnavailable rounded down); when both come out 0,
/// maxUnavailable becomes 1 so a rollout can always progress.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), IntOrPercentError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn rolling_params(d: &Deployment) -> (Option<&IntOrString>, Option<&IntOrString>) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    (ru.and_then(|r| r.max_surge.as_ref()), ru.and_then(|r| r.max_unavailable.as_ref()))
}

/// Upstream `MaxSurge`: 0 unless RollingUpdate.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    resolve_fenceposts(surge, unavailable, replicas(d)).map(|(s, _)| s).unwrap_or(0)
}

/// Upstream `MaxUnavailable`: 0 unless RollingUpdate with replicas, at most `spec.replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = replicas(d);
    if !is_rolling_update(d) || desired == 0 {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    let value = resolve_fenceposts(surge, unavailable, desired).map(|(_, u)| u).unwrap_or(0);
    value.min(desired)
}

/// The raw maxSurge of a RollingUpdate Deployment resolved against `spec.replicas` (upstream `NewRSNewReplicas`
/// reads it without the fencepost fix-up).
pub fn raw_max_surge(d: &Deployment) -> Result<i32, IntOrPercentError> {
    let (surge, _) = rolling_params(d);
    scaled_value(surge.unwrap_or(&IntOrString::Int(0)), replicas(d), true)
}

// ---------------------------------------------------------------------------------------------
// The pod-template hash
// ---------------------------------------------------------------------------------------------

const FNV32_OFFSET: u32 = 2_166_136_261;
const FNV32_PRIME: u32 = 16_777_619;

/// FNV-1a, 32 bits.
#[derive(Debug, Clone, Copy)]
pub struct Fnv32a(u32);

impl Default for Fnv32a {
    fn default() -> Self {
        Fnv32a(FNV32_OFFSET)
    }
}

impl Fnv32a {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(FNV32_PRIME);
        }
    }

    pub fn sum32(&self) -> u32 {
        self.0
    }
}

/// The alphabet of upstream `rand.SafeEncodeString`: no vowels (no words), no look-alikes (0/o, 1/l, 3/e).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Upstream `rand.SafeEncodeString`: every byte of `s` mapped onto the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char).collect()
}

/// Upstream `controller.ComputeHash`: FNV-32a over a deterministic deep print of the template, then the collision
/// count (8 bytes, little-endian uint32 first), the decimal sum rendered with [`safe_encode`]. The deep print is
/// the template's JSON (upstream prints Go structs with `spew`), so the string differs from upstream's for the same
/// template while having the same properties: stable, changed by any template change or collision-count bump.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hasher = Fnv32a::default();
    let printed = serde_json::to_vec(template).unwrap_or_default();
    hasher.write(&printed);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hasher.write(&bytes);
    }
    safe_encode(&hasher.sum32().to_string())
}

// ---------------------------------------------------------------------------------------------
// Template equality
// ---------------------------------------------------------------------------------------------

/// Drops nulls, empty lists and empty maps everywhere (upstream's semantic DeepEqual treats nil and empty alike).
fn prune(value: &mut Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
            !items.is_empty()
        }
        Value::Object(map) => {
            map.retain(|_, v| prune(v));
            !map.is_empty()
        }
        _ => true,
    }
}

fn comparable(template: &PodTemplateSpec) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let mut value = serde_json::to_value(&t).unwrap_or(Value::Null);
    prune(&mut value);
    value
}

/// Upstream `EqualIgnoreHash`: templates equal apart from the `pod-template-hash` label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    comparable(a) == comparable(b)
}

// ---------------------------------------------------------------------------------------------
// Orderings and sets of replica sets
// ---------------------------------------------------------------------------------------------

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or_default()
}

/// Upstream `ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a).cmp(&created(b)).then_with(|| name(a).cmp(name(b)))
}

/// Upstream `ReplicaSetsBySizeOlder`: largest first, older first among equals.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(a, b))
}

/// Upstream `ReplicaSetsBySizeNewer`: largest first, newer first among equals.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(b, a))
}

/// Upstream `ReplicaSetsByRevision`: lowest revision first, then by creation.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a).unwrap_or(0).cmp(&revision(b).unwrap_or(0)).then_with(|| by_creation(a, b))
}

/// Upstream `FilterActiveReplicaSets`: those with `spec.replicas > 0`.
pub fn active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect()
}

/// Upstream `FindNewReplicaSet`: the oldest ReplicaSet whose template equals the Deployment's.
pub fn find_new_replica_set(d: &Deployment, rs_list: &[ReplicaSet]) -> Option<ReplicaSet> {
    let wanted = template(d);
    let mut sorted: Vec<&ReplicaSet> = rs_list.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted.into_iter().find(|rs| equal_ignore_hash(&rs_template(rs), &wanted)).cloned()
}

/// Upstream `FindOldReplicaSets`: (old ones with replicas, all old ones).
pub fn find_old_replica_sets(d: &Deployment, rs_list: &[ReplicaSet]) -> (Vec<ReplicaSet>, Vec<ReplicaSet>) {
    let new_uid = find_new_replica_set(d, rs_list).and_then(|rs| rs.metadata.uid);
    let all: Vec<ReplicaSet> =
        rs_list.iter().filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid).cloned().collect();
    let required = active(&all);
    (required, all)
}

/// Upstream `FindActiveOrLatest`: the only active ReplicaSet, or the newest when none is active; `None` when
/// several are active (they must be scaled proportionally).
pub fn find_active_or_latest(new_rs: Option<&ReplicaSet>, old_rss: &[ReplicaSet]) -> Option<ReplicaSet> {
    if new_rs.is_none() && old_rss.is_empty() {
        return None;
    }
    let mut olds = old_rss.to_vec();
    olds.sort_by(|a, b| by_creation(b, a));
    let mut all = olds.clone();
    all.extend(new_rs.cloned());
    let actives = active(&all);
    match actives.len() {
        0 => new_rs.cloned().or_else(|| olds.first().cloned()),
        1 => actives.into_iter().next(),
        _ => None,
    }
}

/// Sum of `spec.replicas`.
pub fn replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_replicas).sum()
}

/// Sum of `status.replicas`.
pub fn actual_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_actual).sum()
}

/// Sum of `status.readyReplicas`.
pub fn ready_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_ready).sum()
}

/// Sum of `status.availableReplicas`.
pub fn available_replica_count(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(rs_available).sum()
}

// ---------------------------------------------------------------------------------------------
// Revisions and annotations
// ---------------------------------------------------------------------------------------------

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision annotation of a ReplicaSet: `Some(0)` when absent, `None` when it does not parse.
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(rs, REVISION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// Upstream `MaxRevision` (unparsable revisions are skipped).
pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().filter_map(revision).max().unwrap_or(0).max(0)
}

/// Upstream `LastRevision`: the second highest revision.
pub fn last_revision(rss: &[ReplicaSet]) -> i64 {
    let (mut max, mut second) = (0i64, 0i64);
    for v in rss.iter().filter_map(revision) {
        if v >= max {
            second = max;
            max = v;
        } else if v > second {
            second = v;
        }
    }
    second
}

/// Upstream `SetDeploymentRevision`: whether the Deployment's revision annotation changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let annotations = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION).map(String::as_str) == Some(revision) {
        return false;
    }
    annotations.insert(REVISION.to_string(), revision.to_string());
    true
}

/// Annotations of a Deployment that never go to (or come back from) its ReplicaSets.
pub fn skip_copy_annotation(key: &str) -> bool {
    matches!(key, LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO)
}

fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let target = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || target.get(k) == Some(v) {
            continue;
        }
        target.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Upstream `SetDeploymentAnnotationsTo`: the Deployment takes the rollback target's annotations (keeping its own
/// skipped ones).
pub fn set_deployment_annotations_to(d: &mut Deployment, rs: &ReplicaSet) {
    let mut kept: BTreeMap<String, String> =
        d.metadata.annotations.iter().flatten().filter(|(k, _)| skip_copy_annotation(k)).map(clone_pair).collect();
    for (k, v) in rs.metadata.annotations.iter().flatten() {
        if !skip_copy_annotation(k) {
            kept.insert(k.clone(), v.clone());
        }
    }
    d.metadata.annotations = Some(kept);
}

fn clone_pair((k, v): (&String, &String)) -> (String, String) {
    (k.clone(), v.clone())
}

/// Upstream `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the revision to
/// `new_revision` (recording the replaced one in `revision-history` when the ReplicaSet is reused), and for a
/// ReplicaSet about to be created sets the replica annotations. Returns whether anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
    history_limit: usize,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old_revision = annotations.get(REVISION).cloned();
    let old_value: i64 = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    let Ok(new_value) = new_revision.parse::<i64>() else { return false };
    if old_value < new_value {
        annotations.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old_revision {
            let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.to_string(), old);
            } else {
                let mut entries: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > history_limit && start < entries.len() {
                    total -= entries[start].len() + 1;
                    start += 1;
                }
                if total <= history_limit {
                    entries = entries.split_off(start);
                    entries.push(&old);
                    let joined = entries.join(",");
                    annotations.insert(REVISION_HISTORY.to_string(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Upstream `SetReplicasAnnotations`: whether either annotation changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Upstream `ReplicasAnnotationsNeedUpdate`.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

/// Upstream `GetDesiredReplicasAnnotation`.
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS)
}

/// Upstream `IsSaturated`: the ReplicaSet holds (and believes it should hold) every replica, all available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let Some(desired) = desired_replicas_annotation(rs) else { return false };
    let want = replicas(d);
    rs_replicas(rs) == want && desired == want && rs_available(rs) == want
}

/// Upstream `GetProportion`: how many replicas `rs` gets of `to_add` (negative: removes), given `added` so far.
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let current = rs_replicas(rs);
    if replicas(d) == 0 {
        return -current;
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated =
        int_annotation(rs, MAX_REPLICAS).unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(current) * f64::from(deployment_replicas) / f64::from(annotated);
    // Go's math.Round: half away from zero.
    size.round() as i32 - current
}

/// Upstream `NewRSNewReplicas`: the size the new ReplicaSet may have now.
pub fn new_rs_new_replicas(d: &Deployment, all_rss: &[ReplicaSet], new_rs: &ReplicaSet) -> Result<i32, String> {
    match strategy_type(d) {
        "RollingUpdate" => {
            let surge = raw_max_surge(d).map_err(|e| e.to_string())?;
            let current = replica_count(all_rss);
            let max_total = replicas(d) + surge;
            let new_count = rs_replicas(new_rs);
            if current >= max_total {
                return Ok(new_count);
            }
            let scale_up = (max_total - current).min(replicas(d) - new_count);
            Ok(new_count + scale_up)
        }
        "Recreate" => Ok(replicas(d)),
        other => Err(format!("deployment type {other} isn't supported")),
    }
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

/// `now` as the API stores it (whole seconds), so conditions compare equal after a round trip.
pub fn api_now(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Upstream `NewDeploymentCondition`.
pub fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_update_time: Some(api_now(now)),
        last_transition_time: Some(api_now(now)),
    }
}

/// Upstream `GetDeploymentCondition`.
pub fn get_condition<'a>(status: Option<&'a DeploymentStatus>, type_: &str) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The reason of a condition ("" when unset).
pub fn reason(c: &DeploymentCondition) -> &str {
    c.reason.as_deref().unwrap_or_default()
}

/// Upstream `SetDeploymentCondition`: no-op when status and reason are unchanged; keeps lastTransitionTime when
/// only the reason changes; the condition moves to the end.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(Some(status), &condition.type_) {
        if current.status == condition.status && reason(current) == reason(&condition) {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(condition);
}

/// Upstream `RemoveDeploymentCondition`.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Upstream `ReplicaSetToDeploymentCondition`.
pub fn replica_set_to_deployment_condition(c: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
    }
}

fn count(value: Option<i32>) -> i32 {
    value.unwrap_or(0)
}

/// Upstream `DeploymentComplete`: every desired replica updated and available, no old ones, generation observed.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    count(status.updated_replicas) == want
        && count(status.replicas) == want
        && count(status.available_replicas) == want
        && status.observed_generation.unwrap_or(0) >= generation(d)
}

/// Upstream `DeploymentProgressing`: new pods updated/ready/available or old pods gone since the last status.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Upstream `DeploymentTimedOut`: the Progressing condition was last updated more than the deadline ago.
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else { return false };
    let Some(condition) = get_condition(Some(new), PROGRESSING) else { return false };
    match reason(condition) {
        NEW_RS_AVAILABLE => false,
        TIMED_OUT => true,
        _ => {
            let Some(from) = condition.last_update_time.as_ref() else { return false };
            from.0.as_second() + i64::from(deadline) < now.as_second()
                || (from.0.as_second() + i64::from(deadline) == now.as_second() && now.subsec_nanosecond() > 0)
        }
    }
}

/// A status as upstream's JSON carries it: zero counts omitted, no empty condition list.
pub fn normalized(status: &DeploymentStatus) -> DeploymentStatus {
    let nz = |v: Option<i32>| v.filter(|n| *n != 0);
    DeploymentStatus {
        available_replicas: nz(status.available_replicas),
        collision_count: status.collision_count,
        conditions: status.conditions.clone().filter(|c| !c.is_empty()),
        observed_generation: status.observed_generation.filter(|g| *g != 0),
        ready_replicas: nz(status.ready_replicas),
        replicas: nz(status.replicas),
        terminating_replicas: status.terminating_replicas,
        unavailable_replicas: nz(status.unavailable_replicas),
        updated_replicas: nz(status.updated_replicas),
    }
}
