//! ControllerRef management (upstream `controller_ref_manager.go`): which pods a controller owns, adopts or releases,
//! and the strategic-merge patches that adopt and release.

use ferry_apimachinery::selector::LabelSelector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{json, Value};

use crate::pods::controller_of;

/// What to do about one pod (upstream `ClaimObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and selected: it counts.
    Owned,
    /// An orphan we select: adopt it (after re-checking the owner is not being deleted); it counts once adopted.
    Adopt,
    /// Ours but no longer selected: release it (remove our reference); it does not count.
    Release,
    /// Someone else's, unselected, or we may not act on it.
    Ignore,
}

/// The owner side of a claim.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    /// The owner has a deletion timestamp: it neither adopts nor releases.
    pub deleting: bool,
    pub selector: &'a LabelSelector,
}

/// Decides what `claimant` does with `pod`.
pub fn decide(claimant: &Claimant<'_>, pod: &Pod) -> Claim {
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let selected = claimant.selector.matches(labels);
    if let Some(reference) = controller_of(&pod.metadata) {
        if reference.uid != claimant.uid {
            return Claim::Ignore;
        }
        if selected {
            return Claim::Owned;
        }
        if claimant.deleting {
            return Claim::Ignore;
        }
        return Claim::Release;
    }
    if claimant.deleting || !selected {
        return Claim::Ignore;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Claim::Ignore;
    }
    if !claimant.namespace.is_empty() && pod.metadata.namespace.as_deref().unwrap_or("") != claimant.namespace {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// Upstream `ownerRefControllerPatch`: adds `controller_ref` (merged by uid); the pod's uid is a precondition.
pub fn adopt_patch(controller_ref: &OwnerReference, pod_uid: &str) -> Value {
    json!({ "metadata": { "ownerReferences": [controller_ref], "uid": pod_uid } })
}

/// Upstream `GenerateDeleteOwnerRefStrategicMergeBytes`: removes the reference to `owner_uid`; the pod's uid is a
/// precondition.
pub fn release_patch(owner_uid: &str, pod_uid: &str) -> Value {
    json!({ "metadata": { "ownerReferences": [{ "$patch": "delete", "uid": owner_uid }], "uid": pod_uid } })
}

/// The reference a controller puts on its pods (upstream `NewControllerRef`).
pub fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::*;

    fn decide_for(pod: &Pod, deleting: bool) -> Claim {
        let selector = LabelSelector::from_set([("app", "test")]);
        decide(&Claimant { uid: "me", namespace: "default", deleting, selector: &selector }, pod)
    }

    #[test]
    fn owned_adopted_released_or_ignored() {
        let matching = with_labels(pod("a"), &[("app", "test"), ("extra", "x")]);
        let other = with_labels(pod("b"), &[("app", "foo")]);
        assert_eq!(decide_for(&owned_by(matching.clone(), "me"), false), Claim::Owned);
        assert_eq!(decide_for(&owned_by(matching.clone(), "me"), true), Claim::Owned);
        assert_eq!(decide_for(&owned_by(other.clone(), "me"), false), Claim::Release);
        assert_eq!(decide_for(&owned_by(other.clone(), "me"), true), Claim::Ignore, "a deleting owner keeps refs");
        assert_eq!(decide_for(&owned_by(matching.clone(), "someone"), false), Claim::Ignore);
        assert_eq!(decide_for(&matching, false), Claim::Adopt);
        assert_eq!(decide_for(&matching, true), Claim::Ignore, "a deleting owner adopts nothing");
        assert_eq!(decide_for(&other, false), Claim::Ignore);
        assert_eq!(decide_for(&deleting(matching.clone()), false), Claim::Ignore);
        let mut elsewhere = matching.clone();
        elsewhere.metadata.namespace = Some("other".into());
        assert_eq!(decide_for(&elsewhere, false), Claim::Ignore);
        assert_eq!(decide_for(&pod("unlabelled"), false), Claim::Ignore);
    }

    #[test]
    fn patches_add_and_remove_one_reference_by_uid() {
        let reference = controller_ref("apps/v1", "ReplicaSet", "kubia", "u1");
        assert_eq!(
            adopt_patch(&reference, "p1"),
            json!({"metadata": {"ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "kubia", "uid": "u1",
                "controller": true, "blockOwnerDeletion": true
            }], "uid": "p1"}})
        );
        assert_eq!(
            release_patch("u1", "p1"),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "u1"}], "uid": "p1"}})
        );
    }
}
