//! Pod rules of upstream's `controller_utils` and `podutil` this controller needs: which pods count (active), ready
//! and available (minReadySeconds), the controller reference, and the pod a template makes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The owner reference marked `controller: true`, if any (upstream `GetControllerOf`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// `status.phase` ("" when absent).
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Upstream `IsPodActive`: not Succeeded, not Failed, and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's `Ready` condition.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
}

/// The `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod became ready (the `Ready` condition's transition time), for a ready pod that records it.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod).filter(|c| c.status == "True").and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

/// Upstream `IsPodAvailable`: ready, and (with `min_ready_seconds`) ready for longer than that.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(since) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) < now,
        None => false,
    }
}

/// How long until a ready but not yet available pod becomes available; `None` if that is not pending.
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if min_ready_seconds <= 0 || !is_ready(pod) || is_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = ready_since(pod)?;
    let at = since + SignedDuration::from_secs(i64::from(min_ready_seconds));
    let left = at.duration_since(now);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// Upstream `getPodsPrefix`: `<owner>-` (the name with the dash stays a valid generateName for any valid owner).
pub fn generate_name(owner: &str) -> String {
    format!("{owner}-")
}

/// Upstream `GetPodFromTemplate`: the template's labels, annotations, finalizers and spec, `generateName` from the
/// owner's name, and the controller reference.
pub fn pod_from_template(template: &PodTemplateSpec, owner_name: &str, controller_ref: OwnerReference) -> Pod {
    let meta = template.metadata.as_ref();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(owner_name)),
            labels: meta.and_then(|m| m.labels.clone()),
            annotations: meta.and_then(|m| m.annotations.clone()),
            finalizers: meta.and_then(|m| m.finalizers.clone()),
            owner_references: Some(vec![controller_ref]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Pod builders for the unit tests.
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus::default()),
        }
    }

    pub fn with_labels(mut p: Pod, pairs: &[(&str, &str)]) -> Pod {
        p.metadata.labels = Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        p
    }

    pub fn on_node(mut p: Pod, node: &str) -> Pod {
        p.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
        p
    }

    pub fn in_phase(mut p: Pod, phase: &str) -> Pod {
        p.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        p
    }

    pub fn ready_at(mut p: Pod, at: Option<Timestamp>) -> Pod {
        let cond = PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: at.map(Time),
            ..Default::default()
        };
        p.status.get_or_insert_with(Default::default).conditions = Some(vec![cond]);
        p
    }

    pub fn created_at(mut p: Pod, at: Timestamp) -> Pod {
        p.metadata.creation_timestamp = Some(Time(at));
        p
    }

    pub fn restarted(mut p: Pod, count: i32) -> Pod {
        let status = ContainerStatus { name: "c".into(), restart_count: count, ..Default::default() };
        p.status.get_or_insert_with(Default::default).container_statuses = Some(vec![status]);
        p
    }

    pub fn deleting(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        p
    }

    pub fn owned_by(mut p: Pod, uid: &str) -> Pod {
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn activity_readiness_and_availability() {
        assert!(is_active(&pod("a")));
        assert!(is_active(&in_phase(pod("a"), "Running")));
        assert!(!is_active(&in_phase(pod("a"), "Succeeded")));
        assert!(!is_active(&in_phase(pod("a"), "Failed")));
        assert!(!is_active(&deleting(pod("a"))));

        let p = ready_at(pod("a"), Some(at(0)));
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, at(0)));
        assert!(!is_available(&p, 10, at(10)), "available only strictly after minReadySeconds");
        assert!(is_available(&p, 10, at(11)));
        assert_eq!(until_available(&p, 10, at(4)), Some(Duration::from_secs(6)));
        assert_eq!(until_available(&p, 10, at(11)), None);
        assert_eq!(until_available(&p, 0, at(0)), None);
        assert!(!is_available(&ready_at(pod("a"), None), 5, at(100)));
        assert!(!is_available(&pod("a"), 0, at(0)));
    }

    #[test]
    fn template_makes_an_owned_pod_with_generate_name() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                name: Some("ignored".into()),
                labels: Some([("app".to_string(), "test".to_string())].into()),
                annotations: Some([("a".to_string(), "b".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec { node_name: Some("n".into()), ..Default::default() }),
        };
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "ReplicationController".into(),
            name: "kubia".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let p = pod_from_template(&template, "kubia", owner.clone());
        assert_eq!(p.metadata.generate_name.as_deref(), Some("kubia-"));
        assert_eq!(p.metadata.name, None);
        assert_eq!(p.metadata.labels, template.metadata.as_ref().unwrap().labels);
        assert_eq!(p.metadata.annotations, template.metadata.as_ref().unwrap().annotations);
        assert_eq!(p.metadata.owner_references, Some(vec![owner]));
        assert_eq!(controller_of(&p.metadata).map(|r| r.uid.as_str()), Some("u1"));
        assert_eq!(p.spec, template.spec);
    }
}
