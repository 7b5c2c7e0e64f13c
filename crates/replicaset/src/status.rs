//! The status a ReplicaSet or ReplicationController reports (upstream `calculateStatus` and the no-op check of
//! `updateReplicaSetStatus`).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_apimachinery::selector::LabelSelector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::owner::{ReplicaCondition, ReplicaStatus};
use crate::pods::{is_available, is_ready};

/// The condition type set while creating or deleting pods fails.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// `spec.replicas`.
    pub desired: i32,
    pub min_ready_seconds: i32,
    /// The template's labels (pods carrying all of them are "fully labeled").
    pub template_labels: &'a BTreeMap<String, String>,
    /// The active pods the owner claimed.
    pub pods: &'a [Arc<Pod>],
    /// Why managing the replicas failed this time, if it did.
    pub manage_error: Option<&'a str>,
    pub now: Timestamp,
}

/// The new status: counts from the pods, the ReplicaFailure condition added on a failure (if not already there)
/// and removed after a success. `observedGeneration` is kept; [`needs_update`] decides whether to write.
pub fn calculate(current: &ReplicaStatus, observed: &Observed<'_>) -> ReplicaStatus {
    let template = LabelSelector::from_set(observed.template_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut status = current.clone();
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    for pod in observed.pods {
        let empty = BTreeMap::new();
        if template.matches(pod.metadata.labels.as_ref().unwrap_or(&empty)) {
            fully_labeled += 1;
        }
        if is_ready(pod) {
            ready += 1;
            if is_available(pod, observed.min_ready_seconds, observed.now) {
                available += 1;
            }
        }
    }
    let has_failure = status.conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match observed.manage_error {
        Some(message) if !has_failure => {
            let diff = observed.pods.len() as i64 - i64::from(observed.desired);
            let reason = match diff {
                d if d < 0 => "FailedCreate",
                d if d > 0 => "FailedDelete",
                _ => "",
            };
            status.conditions.push(ReplicaCondition {
                type_: REPLICA_FAILURE.to_string(),
                status: "True".to_string(),
                last_transition_time: Some(Time(observed.now)),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
            });
        }
        None if has_failure => status.conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status.replicas = count(observed.pods.len());
    status.fully_labeled_replicas = fully_labeled;
    status.ready_replicas = ready;
    status.available_replicas = available;
    status
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Whether `new` must be written over `current` for an object at `generation` (upstream: any count, the
/// conditions, or an unobserved generation differs).
pub fn needs_update(current: &ReplicaStatus, new: &ReplicaStatus, generation: i64) -> bool {
    current.replicas != new.replicas
        || current.fully_labeled_replicas != new.fully_labeled_replicas
        || current.ready_replicas != new.ready_replicas
        || current.available_replicas != new.available_replicas
        || current.observed_generation != generation
        || current.conditions != new.conditions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn counts_fully_labeled_ready_and_available() {
        let template: BTreeMap<String, String> =
            [("app".to_string(), "test".to_string()), ("tier".to_string(), "web".to_string())].into();
        let pods: Vec<Arc<Pod>> = vec![
            Arc::new(ready_at(with_labels(pod("a"), &[("app", "test"), ("tier", "web")]), Some(at(0)))),
            Arc::new(ready_at(with_labels(pod("b"), &[("app", "test")]), Some(at(95)))),
            Arc::new(with_labels(pod("c"), &[("app", "test"), ("tier", "web"), ("x", "y")])),
        ];
        let observed = Observed {
            desired: 3,
            min_ready_seconds: 10,
            template_labels: &template,
            pods: &pods,
            manage_error: None,
            now: at(100),
        };
        let current = ReplicaStatus { observed_generation: 2, ..Default::default() };
        let status = calculate(&current, &observed);
        assert_eq!(
            status,
            ReplicaStatus {
                replicas: 3,
                fully_labeled_replicas: 2,
                ready_replicas: 2,
                available_replicas: 1,
                observed_generation: 2,
                conditions: vec![]
            }
        );
        assert!(needs_update(&current, &status, 2));
        assert!(!needs_update(&status, &status, 2));
        assert!(needs_update(&status, &status, 3), "a new generation is always recorded");
    }

    #[test]
    fn replica_failure_is_set_once_and_cleared_on_success() {
        let template = BTreeMap::new();
        let observed = Observed {
            desired: 2,
            min_ready_seconds: 0,
            template_labels: &template,
            pods: &[],
            manage_error: Some("pods \"x\" is forbidden: exceeded quota"),
            now: at(0),
        };
        let failed = calculate(&ReplicaStatus::default(), &observed);
        assert_eq!(failed.conditions.len(), 1);
        let cond = &failed.conditions[0];
        assert_eq!((cond.type_.as_str(), cond.status.as_str()), ("ReplicaFailure", "True"));
        assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(cond.message.as_deref(), Some("pods \"x\" is forbidden: exceeded quota"));
        assert_eq!(cond.last_transition_time, Some(Time(at(0))));

        let again = calculate(&failed, &Observed { manage_error: Some("other"), now: at(5), ..observed });
        assert_eq!(again.conditions, failed.conditions, "an existing failure condition is kept as is");

        let pods = vec![Arc::new(pod("a")), Arc::new(pod("b")), Arc::new(pod("c"))];
        let deleting = calculate(&ReplicaStatus::default(), &Observed { pods: &pods, ..observed });
        assert_eq!(deleting.conditions[0].reason.as_deref(), Some("FailedDelete"));

        let healed = calculate(&failed, &Observed { manage_error: None, ..observed });
        assert!(healed.conditions.is_empty());
    }
}
