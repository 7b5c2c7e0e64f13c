//! The change tracker: the current Services and EndpointSlices as plain values, plus the set of Services that
//! changed since the last sync (so a sync recomputes only those).

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{EndpointInfo, PortKey, ServiceInfo, ServiceName, SliceInfo};

/// Current Services and endpoints, and which Services changed since [`ChangeTracker::take_changed`].
///
/// Level-triggered: an event's `old` object is used only for its identity (a delete), never for its contents.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    proxy_name: Option<String>,
    services: HashMap<ServiceName, Vec<ServiceInfo>>,
    slices: HashMap<ServiceName, BTreeMap<String, SliceInfo>>,
    changed: HashSet<ServiceName>,
}

impl ChangeTracker {
    /// A tracker that answers to Services labelled `service-proxy-name: <proxy_name>` as well as unlabelled ones.
    pub fn new(proxy_name: Option<String>) -> ChangeTracker {
        ChangeTracker { proxy_name, ..ChangeTracker::default() }
    }

    /// Records a Service add (`old: None`), update, or delete (`new: None`). Returns whether anything the proxy
    /// uses changed.
    pub fn update_service(&mut self, old: Option<&Service>, new: Option<&Service>) -> bool {
        let mut changed = false;
        if let (Some(old), None) = (old, new) {
            if let Some(key) = service_key(old) {
                changed |= self.set_service(key, Vec::new());
            }
        }
        if let Some(new) = new {
            if let Some(key) = service_key(new) {
                let infos = ServiceInfo::from_service(new, self.proxy_name.as_deref());
                changed |= self.set_service(key, infos);
            }
        }
        changed
    }

    /// Records an EndpointSlice add, update or delete. Several slices of one Service are merged.
    pub fn update_slice(&mut self, old: Option<&EndpointSlice>, new: Option<&EndpointSlice>) -> bool {
        let proxy_name = self.proxy_name.clone();
        let parsed_new = new.and_then(|s| SliceInfo::from_slice(s, proxy_name.as_deref()));
        let mut changed = false;
        if let Some(old) = old {
            if let Some((service, slice, _)) = SliceInfo::from_slice(old, proxy_name.as_deref()) {
                let moved = parsed_new.as_ref().is_none_or(|(s, n, _)| *s != service || *n != slice);
                if moved {
                    changed |= self.remove_slice(&service, &slice);
                }
            }
        }
        if let Some((service, slice, info)) = parsed_new {
            let entry = self.slices.entry(service.clone()).or_default();
            if entry.get(&slice) != Some(&info) {
                entry.insert(slice, info);
                self.changed.insert(service);
                changed = true;
            }
        } else if let Some(new) = new {
            // Unparseable now (e.g. its service-name label was removed): forget it under any service.
            if let (Some(ns), Some(name)) = (&new.metadata.namespace, &new.metadata.name) {
                let owners: Vec<ServiceName> = self
                    .slices
                    .iter()
                    .filter(|(s, slices)| s.namespace == *ns && slices.contains_key(name))
                    .map(|(s, _)| s.clone())
                    .collect();
                for owner in owners {
                    changed |= self.remove_slice(&owner, name);
                }
            }
        }
        changed
    }

    fn set_service(&mut self, key: ServiceName, infos: Vec<ServiceInfo>) -> bool {
        let current = self.services.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        if current == infos.as_slice() {
            return false;
        }
        if infos.is_empty() {
            self.services.remove(&key);
        } else {
            self.services.insert(key.clone(), infos);
        }
        self.changed.insert(key);
        true
    }

    fn remove_slice(&mut self, service: &ServiceName, slice: &str) -> bool {
        let Some(slices) = self.slices.get_mut(service) else { return false };
        if slices.remove(slice).is_none() {
            return false;
        }
        if slices.is_empty() {
            self.slices.remove(service);
        }
        self.changed.insert(service.clone());
        true
    }

    /// Marks every known Service as changed (after a node rename, or to force a full recomputation).
    pub fn mark_all_changed(&mut self) {
        self.changed.extend(self.services.keys().cloned());
        self.changed.extend(self.slices.keys().cloned());
    }

    /// The Services changed since the last call, sorted.
    pub fn take_changed(&mut self) -> Vec<ServiceName> {
        let mut out: Vec<ServiceName> = self.changed.drain().collect();
        out.sort();
        out
    }

    /// Whether any Service changed since the last [`ChangeTracker::take_changed`].
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// The ports of a Service as last seen (empty if unknown or ignored).
    pub fn service(&self, name: &ServiceName) -> &[ServiceInfo] {
        self.services.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every known Service.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceName, &[ServiceInfo])> {
        self.services.iter().map(|(k, v)| (k, v.as_slice()))
    }

    /// The endpoints of one Service port, merged over all its slices (one entry per IP and port; a ready copy
    /// wins over a not-ready one), sorted by IP and port.
    pub fn endpoints(&self, service: &ServiceInfo) -> Vec<EndpointInfo> {
        let Some(slices) = self.slices.get(&service.name.service) else { return Vec::new() };
        let key = PortKey { name: service.name.port.clone(), protocol: service.protocol };
        let mut merged: BTreeMap<(std::net::Ipv4Addr, u16), EndpointInfo> = BTreeMap::new();
        for endpoint in slices.values().filter_map(|s| s.ports.get(&key)).flatten() {
            match merged.get(&(endpoint.ip, endpoint.port)) {
                Some(existing) if existing.ready || !endpoint.ready => {}
                _ => {
                    merged.insert((endpoint.ip, endpoint.port), endpoint.clone());
                }
            }
        }
        merged.into_values().collect()
    }
}

fn service_key(service: &Service) -> Option<ServiceName> {
    let meta = &service.metadata;
    Some(ServiceName::new(meta.namespace.clone()?, meta.name.clone()?))
}
