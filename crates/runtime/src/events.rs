//! core/v1 Events about any object, correlated as client-go's recorder does: the same event (object, type, reason,
//! message) repeated updates the existing Event's `count` and `lastTimestamp` instead of creating another.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

/// How many distinct events are remembered for correlation (client-go's cache size).
const CACHE_SIZE: usize = 4096;
/// Longest event message (upstream `truncateMessage` in the scheduler: the events API's note limit).
const MESSAGE_LIMIT: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    namespace: String,
    name: String,
    uid: String,
    type_: String,
    reason: String,
    message: String,
}

#[derive(Debug)]
struct Seen {
    name: String,
    count: i32,
    /// For eviction of the least recently used entry.
    used: u64,
}

/// Emits Events from one component (`source.component` and `reportingComponent`).
pub struct Recorder {
    client: Client,
    component: String,
    seen: HashMap<EventKey, Seen>,
    clock: u64,
}

/// `message` cut to the event size limit with upstream's ` ...` marker.
pub fn truncate_message(message: &str) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message.to_string();
    }
    const SUFFIX: &str = " ...";
    let mut end = MESSAGE_LIMIT - SUFFIX.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{SUFFIX}", &message[..end])
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Recorder {
        Recorder { client, component: component.to_string(), seen: HashMap::new(), clock: 0 }
    }

    /// Drops what is remembered about an object (it is gone).
    pub fn forget(&mut self, uid: &str) {
        self.seen.retain(|k, _| k.uid != uid);
    }

    /// Records a `Normal` event about `obj`.
    pub async fn normal<K: Resource<DynamicType = ()>>(&mut self, obj: &K, reason: &str, message: &str) {
        self.record(obj, "Normal", reason, message).await
    }

    /// Records a `Warning` event about `obj`.
    pub async fn warning<K: Resource<DynamicType = ()>>(&mut self, obj: &K, reason: &str, message: &str) {
        self.record(obj, "Warning", reason, message).await
    }

    /// Records an event about `obj`. Failures are logged: events are best effort.
    pub async fn record<K: Resource<DynamicType = ()>>(&mut self, obj: &K, type_: &str, reason: &str, message: &str) {
        let meta = obj.meta();
        // Events about cluster-scoped objects live in `default`, as upstream's recorder puts them.
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_string());
        let object_name = meta.name.clone().unwrap_or_default();
        let message = truncate_message(message);
        let key = EventKey {
            namespace: namespace.clone(),
            name: object_name.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.clone(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Timestamp::now();
        self.clock += 1;
        if let Some(seen) = self.seen.get_mut(&key) {
            let count = seen.count.saturating_add(1);
            let patch = serde_json::json!({ "count": count, "lastTimestamp": Time(now), "message": message });
            match api.patch(&seen.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {
                    seen.count = count;
                    seen.used = self.clock;
                    return;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.seen.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(event = %seen.name, error = %e, "updating an event failed");
                    return;
                }
            }
        }
        let name = format!("{object_name}.{:x}", now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: ObjectReference {
                api_version: Some(K::api_version(&()).into_owned()),
                kind: Some(K::kind(&()).into_owned()),
                namespace: meta.namespace.clone(),
                name: Some(object_name),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            type_: Some(type_.to_string()),
            reporting_component: Some(self.component.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if self.seen.len() >= CACHE_SIZE {
                    let oldest = self.seen.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        self.seen.remove(&k);
                    }
                }
                self.seen.insert(key, Seen { name, count: 1, used: self.clock });
            }
            Err(e) => tracing::warn!(event = %name, error = %e, "creating an event failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_truncated_with_a_marker() {
        assert_eq!(truncate_message("short"), "short");
        let long = "é".repeat(600);
        let cut = truncate_message(&long);
        assert!(cut.len() <= MESSAGE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with(" ..."));
        assert!(cut.starts_with("éé"));
    }
}
