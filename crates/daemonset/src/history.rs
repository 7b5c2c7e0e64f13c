//! A DaemonSet's history as ControllerRevisions (upstream `constructHistory`, `snapshot`, `getPatch`, `Match`,
//! `dedupCurHistories`, `cleanupHistory`): each distinct template is one revision named `<ds>-<hash>` whose data is
//! the strategic merge patch that restores it (`{"spec":{"template":{"$patch":"replace",...}}}`, keys sorted as Go
//! writes them, so kubectl's `rollout undo` recognises the current revision); the revision numbers grow with each
//! change; pods carry the hash in `controller-revision-hash`.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Map, Value};

use crate::pods::{controller_ref, REVISION_HASH_LABEL};

/// The characters upstream's `rand.SafeEncodeString` maps to (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `value` with every object's keys sorted, as Go's `encoding/json` writes maps.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn fnv32a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The name suffix and pod label of a template's revision (upstream `controller.ComputeHash`: FNV-32a over the
/// template, then the collision count; the decimal number written with the safe alphabet).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json =
        serde_json::to_vec(&canonical(&serde_json::to_value(template).unwrap_or(Value::Null))).unwrap_or_default();
    let mut hash = fnv32a(&json, 0x811c_9dc5);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv32a(&bytes, hash);
    }
    hash.to_string().bytes().map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char).collect()
}

/// Fields Go always writes for a template although they are empty (non-pointer structs), so the data matches what
/// kubectl computes from the same DaemonSet.
fn go_shape(template: &mut Value) {
    if let Value::Object(t) = template {
        let meta = t.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = meta {
            m.entry("creationTimestamp").or_insert(Value::Null);
        }
        if let Some(Value::Object(spec)) = t.get_mut("spec") {
            for list in ["containers", "initContainers"] {
                if let Some(Value::Array(containers)) = spec.get_mut(list) {
                    for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                        c.entry("resources").or_insert_with(|| Value::Object(Map::new()));
                    }
                }
            }
        }
    }
}

/// Upstream `getPatch`: the revision data restoring `ds`'s template.
pub fn revision_data(ds: &DaemonSet) -> Value {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut template = serde_json::to_value(&template).unwrap_or(Value::Null);
    go_shape(&mut template);
    if let Value::Object(t) = &mut template {
        t.insert("$patch".to_string(), Value::String("replace".to_string()));
    }
    canonical(&serde_json::json!({ "spec": { "template": template } }))
}

/// Upstream `Match`: whether `revision` holds `ds`'s current template.
pub fn matches(ds: &DaemonSet, revision: &ControllerRevision) -> bool {
    revision.data.as_ref().is_some_and(|d| canonical(&d.0) == revision_data(ds))
}

/// The hash a revision stands for: its label, else its name (upstream relabels such revisions with their name).
pub fn revision_hash(revision: &ControllerRevision) -> String {
    revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_else(|| revision.metadata.name.clone().unwrap_or_default())
}

/// Upstream `snapshot`: the revision to create for `ds`'s current template.
pub fn snapshot(ds: &DaemonSet, revision: i64) -> ControllerRevision {
    let spec = ds.spec.clone().unwrap_or_default();
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = compute_hash(&spec.template, collision_count);
    let mut labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.to_string(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", ds.metadata.name.as_deref().unwrap_or(""))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(ds))),
        revision,
    }
}

/// How the current revision is obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    /// None holds the template: create this one.
    Create(Box<ControllerRevision>),
    /// This one holds it; give it `renumber` if set (it became the newest again, e.g. after `rollout undo`).
    Existing { name: String, hash: String, renumber: Option<i64> },
}

/// What to do with a DaemonSet's revisions.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPlan {
    pub current: Current,
    /// Other revisions holding the current template (deleted; their pods relabelled to the kept hash first).
    pub duplicates: Vec<ControllerRevision>,
    /// Revisions of earlier templates, oldest first.
    pub old: Vec<ControllerRevision>,
}

/// Upstream `constructHistory` on the revisions `ds` controls.
pub fn plan_history(ds: &DaemonSet, controlled: &[ControllerRevision]) -> HistoryPlan {
    let (mut current, mut old): (Vec<ControllerRevision>, Vec<ControllerRevision>) =
        controlled.iter().cloned().partition(|r| matches(ds, r));
    old.sort_by_key(|r| r.revision);
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    if current.is_empty() {
        return HistoryPlan { current: Current::Create(Box::new(snapshot(ds, next))), duplicates: Vec::new(), old };
    }
    // Keep the highest revision (the last one on ties, as upstream's `>=`).
    let keep =
        current.iter().enumerate().fold(0, |best, (i, r)| if r.revision >= current[best].revision { i } else { best });
    let kept = current.remove(keep);
    let renumber = (kept.revision < next).then_some(next);
    HistoryPlan {
        current: Current::Existing {
            name: kept.metadata.name.clone().unwrap_or_default(),
            hash: revision_hash(&kept),
            renumber,
        },
        duplicates: current,
        old,
    }
}

/// Upstream `cleanupHistory`: the old revisions beyond `limit` to delete, oldest first, sparing those whose hash a
/// live pod still carries.
pub fn to_clean_up(old: &[ControllerRevision], live_hashes: &BTreeSet<String>, limit: i32) -> Vec<String> {
    let mut excess = old.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    let mut out = Vec::new();
    for r in old {
        if excess == 0 {
            break;
        }
        if live_hashes.contains(&revision_hash(r)) {
            continue;
        }
        out.push(r.metadata.name.clone().unwrap_or_default());
        excess -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(image: &str) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "ssd-monitor", "namespace": "default", "uid": "u1",
                         "annotations": {"kubernetes.io/change-cause": "kubectl apply"}},
            "spec": {"selector": {"matchLabels": {"app": "ssd-monitor"}},
                     "template": {"metadata": {"labels": {"app": "ssd-monitor"}},
                                  "spec": {"containers": [{"name": "main", "image": image}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn revision_data_is_the_template_as_a_replace_patch_with_sorted_keys() {
        let data = revision_data(&ds("luksa/ssd-monitor"));
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"ssd-monitor"}},"spec":{"containers":[{"image":"luksa/ssd-monitor","name":"main","resources":{}}]}}}}"#
        );
    }

    #[test]
    fn hashes_are_stable_safe_and_change_with_the_template_and_collisions() {
        let t = ds("a").spec.unwrap().template;
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t, None));
        assert!(!h.is_empty() && h.len() <= 10, "{h}");
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        assert_ne!(h, compute_hash(&ds("b").spec.unwrap().template, None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        // Known FNV-32a vector: "a" hashes to 0xe40c292c.
        assert_eq!(fnv32a(b"a", 0x811c_9dc5), 0xe40c_292c);
    }

    #[test]
    fn a_new_template_gets_the_next_revision() {
        let d1 = ds("v1");
        let Current::Create(r1) = plan_history(&d1, &[]).current else { panic!("expected a new revision") };
        let r1 = *r1;
        assert_eq!(r1.revision, 1);
        let hash = compute_hash(&d1.spec.clone().unwrap().template, None);
        assert_eq!(r1.metadata.name.as_deref(), Some(format!("ssd-monitor-{hash}").as_str()));
        let labels = r1.metadata.labels.clone().unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("ssd-monitor"));
        assert_eq!(labels.get(REVISION_HASH_LABEL), Some(&hash));
        assert_eq!(r1.metadata.annotations, d1.metadata.annotations);
        assert_eq!(r1.metadata.owner_references.as_ref().unwrap()[0].uid, "u1");
        assert!(matches(&d1, &r1));

        let d2 = ds("v2");
        assert!(!matches(&d2, &r1));
        let plan = plan_history(&d2, std::slice::from_ref(&r1));
        let Current::Create(r2) = plan.current else { panic!("expected a new revision") };
        let r2 = *r2;
        assert_eq!(r2.revision, 2);
        assert_eq!(plan.old, vec![r1.clone()]);

        // Rolling back to v1: the old revision becomes current again with the next number.
        let plan = plan_history(&d1, &[r1.clone(), r2.clone()]);
        assert_eq!(
            plan.current,
            Current::Existing { name: r1.metadata.name.clone().unwrap(), hash: hash.clone(), renumber: Some(3) }
        );
        assert_eq!(plan.old, vec![r2]);
    }

    #[test]
    fn duplicates_keep_the_highest_revision() {
        let d = ds("v1");
        let mut a = snapshot(&d, 1);
        a.metadata.name = Some("a".into());
        let mut b = snapshot(&d, 4);
        b.metadata.name = Some("b".into());
        b.metadata.labels = None;
        let plan = plan_history(&d, &[a.clone(), b]);
        assert_eq!(plan.current, Current::Existing { name: "b".into(), hash: "b".into(), renumber: None });
        assert_eq!(plan.duplicates, vec![a]);
    }

    #[test]
    fn clean_up_spares_live_hashes_and_keeps_the_limit() {
        let old: Vec<ControllerRevision> = (1..=4)
            .map(|i| {
                let mut r = snapshot(&ds(&format!("v{i}")), i);
                r.metadata.name = Some(format!("r{i}"));
                r.metadata.labels = Some([(REVISION_HASH_LABEL.to_string(), format!("h{i}"))].into());
                r
            })
            .collect();
        let live: BTreeSet<String> = ["h1".to_string()].into();
        assert_eq!(to_clean_up(&old, &live, 2), ["r2", "r3"]);
        assert_eq!(to_clean_up(&old, &live, 10), Vec::<String>::new());
        assert_eq!(to_clean_up(&old, &BTreeSet::new(), 0), ["r1", "r2", "r3", "r4"]);
    }
}
