//! The two kinds one controller implementation manages (apps/v1 ReplicaSet and core/v1 ReplicationController),
//! seen through one small trait: selector, replicas, template, minReadySeconds and a kind-neutral status.

use std::collections::BTreeMap;
use std::fmt::Debug;

use ferry_apimachinery::selector::{LabelSelector, SelectorError};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    PodTemplateSpec, ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A kind that keeps `replicas` pods made from a template running (upstream converts RCs to ReplicaSets on the way
/// in and out of one controller; here both kinds implement this trait instead).
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name: the `source.component` of its events and its log name.
    const COMPONENT: &'static str;

    /// The pod selector (upstream `LabelSelectorAsSelector`: absent selects nothing).
    fn selector(&self) -> Result<LabelSelector, SelectorError>;
    /// `spec.replicas` (1 when absent, as defaulting sets it).
    fn replicas(&self) -> i32;
    /// `spec.minReadySeconds` (0 when absent).
    fn min_ready_seconds(&self) -> i32;
    /// `spec.template`.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status fields this controller owns.
    fn replica_status(&self) -> ReplicaStatus;
    /// Writes the fields of `status` into the object's status, leaving any other status field alone.
    fn set_replica_status(&mut self, status: &ReplicaStatus);
}

/// The status both kinds share (absent numbers read as 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<ReplicaCondition>,
}

/// One status condition (`ReplicaSetCondition` / `ReplicationControllerCondition`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaCondition {
    pub type_: String,
    pub status: String,
    pub last_transition_time: Option<Time>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// Go's `omitempty` for the optional counters: 0 is written as absent.
fn non_zero<T: Default + PartialEq>(v: T) -> Option<T> {
    if v == T::default() {
        None
    } else {
        Some(v)
    }
}

/// The labels of a template (empty when absent).
pub fn template_labels(template: Option<&PodTemplateSpec>) -> BTreeMap<String, String> {
    template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default()
}

/// The accessors ReplicaSet and ReplicationController share: their specs and statuses have the same fields under
/// different type names.
macro_rules! replica_accessors {
    ($status:ident, $condition:ident) => {
        fn replicas(&self) -> i32 {
            self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        }

        fn min_ready_seconds(&self) -> i32 {
            self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
        }

        fn template(&self) -> Option<&PodTemplateSpec> {
            self.spec.as_ref().and_then(|s| s.template.as_ref())
        }

        fn replica_status(&self) -> ReplicaStatus {
            let Some(s) = self.status.as_ref() else { return ReplicaStatus::default() };
            ReplicaStatus {
                replicas: s.replicas,
                fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: s.ready_replicas.unwrap_or(0),
                available_replicas: s.available_replicas.unwrap_or(0),
                observed_generation: s.observed_generation.unwrap_or(0),
                conditions: s
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| ReplicaCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                    })
                    .collect(),
            }
        }

        fn set_replica_status(&mut self, status: &ReplicaStatus) {
            let s = self.status.get_or_insert_with($status::default);
            s.replicas = status.replicas;
            s.fully_labeled_replicas = non_zero(status.fully_labeled_replicas);
            s.ready_replicas = non_zero(status.ready_replicas);
            s.available_replicas = non_zero(status.available_replicas);
            s.observed_generation = non_zero(status.observed_generation);
            let conditions: Vec<$condition> = status
                .conditions
                .iter()
                .map(|c| $condition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
                .collect();
            s.conditions = non_empty(conditions);
        }
    };
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn selector(&self) -> Result<LabelSelector, SelectorError> {
        let Some(spec) = self.spec.as_ref() else { return Ok(LabelSelector::nothing()) };
        // Serializing a typed selector cannot fail; if it did, the selector would select nothing.
        let json = serde_json::to_value(&spec.selector).unwrap_or(serde_json::Value::Null);
        LabelSelector::from_json(&json)
    }

    replica_accessors!(ReplicaSetStatus, ReplicaSetCondition);
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn selector(&self) -> Result<LabelSelector, SelectorError> {
        match self.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            None => Ok(LabelSelector::nothing()),
            Some(set) => Ok(LabelSelector::from_set(set.iter().map(|(k, v)| (k.as_str(), v.as_str())))),
        }
    }

    replica_accessors!(ReplicationControllerStatus, ReplicationControllerCondition);
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::ReplicationControllerSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn replica_set_selector_supports_match_expressions() {
        let rs = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(labels(&[("tier", "web")])),
                    match_expressions: Some(vec![
                        LabelSelectorRequirement {
                            key: "app".into(),
                            operator: "In".into(),
                            values: Some(vec!["kubia".into(), "other".into()]),
                        },
                        LabelSelectorRequirement {
                            key: "env".into(),
                            operator: "NotIn".into(),
                            values: Some(vec!["prod".into()]),
                        },
                        LabelSelectorRequirement {
                            key: "canary".into(),
                            operator: "DoesNotExist".into(),
                            values: None,
                        },
                        LabelSelectorRequirement { key: "team".into(), operator: "Exists".into(), values: None },
                    ]),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let sel = rs.selector().unwrap();
        assert!(sel.matches(&labels(&[("tier", "web"), ("app", "kubia"), ("team", "a")])));
        assert!(sel.matches(&labels(&[("tier", "web"), ("app", "other"), ("team", "a"), ("env", "dev")])));
        assert!(!sel.matches(&labels(&[("tier", "web"), ("app", "kubia"), ("team", "a"), ("env", "prod")])));
        assert!(!sel.matches(&labels(&[("tier", "web"), ("app", "kubia"), ("team", "a"), ("canary", "")])));
        assert!(!sel.matches(&labels(&[("tier", "web"), ("app", "kubia")])));
        assert!(!sel.matches(&labels(&[("app", "kubia"), ("team", "a")])));
        assert_eq!(rs.replicas(), 1);
    }

    #[test]
    fn replication_controller_selector_is_an_equality_map() {
        let rc = ReplicationController {
            spec: Some(ReplicationControllerSpec {
                selector: Some(labels(&[("app", "test")])),
                replicas: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sel = rc.selector().unwrap();
        assert!(sel.matches(&labels(&[("app", "test"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "foo")])));
        assert_eq!(rc.replicas(), 3);
        assert!(ReplicationController::default().selector().unwrap().matches_nothing());
    }

    #[test]
    fn status_round_trips_and_omits_zeroes() {
        let mut rc = ReplicationController::default();
        let status = ReplicaStatus {
            replicas: 2,
            fully_labeled_replicas: 2,
            ready_replicas: 0,
            available_replicas: 0,
            observed_generation: 4,
            conditions: vec![ReplicaCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                last_transition_time: None,
                reason: Some("FailedCreate".into()),
                message: Some("quota".into()),
            }],
        };
        rc.set_replica_status(&status);
        assert_eq!(rc.replica_status(), status);
        let json = serde_json::to_value(rc.status.as_ref().unwrap()).unwrap();
        assert!(json.get("readyReplicas").is_none(), "{json}");
        assert_eq!(json["replicas"], 2);
        let mut rs = ReplicaSet::default();
        rs.set_replica_status(&status);
        assert_eq!(rs.replica_status(), status);
    }
}
