//! The proxier: feeds Service and EndpointSlice events into the change tracker and, on `sync`, recomputes the
//! desired fragments of the changed Services only and hands the resulting diff to the data plane.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::mpsc;

use crate::dataplane::{Dataplane, DataplaneError, Transaction};
use crate::desired::{self, ProxyConfig};
use crate::health::{HealthServer, HealthTarget};
use crate::model::{Protocol, ServiceName, TrafficPolicy};
use crate::ruleset::{Action, Changes, Fragment, Ruleset};
use crate::tracker::ChangeTracker;

/// What one sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Services recomputed.
    pub services_changed: usize,
    /// Ops handed to the data plane (0 for a full write, which sends the whole table instead).
    pub ops: usize,
    /// Whether the whole table was written.
    pub full: bool,
    pub elapsed: Duration,
}

/// A failed sync; the next sync rewrites the whole table.
#[derive(Debug, thiserror::Error)]
#[error("applying {ops} ops (full: {full}) for {services} changed services: {source}")]
pub struct SyncError {
    pub services: usize,
    pub ops: usize,
    pub full: bool,
    #[source]
    pub source: DataplaneError,
}

/// Turns Service and EndpointSlice events into data-plane transactions.
pub struct Proxier<D: Dataplane> {
    config: ProxyConfig,
    node_name: String,
    tracker: ChangeTracker,
    ruleset: Ruleset,
    dataplane: D,
    needs_full: bool,
    health: BTreeMap<ServiceName, (u16, HealthTarget)>,
}

impl<D: Dataplane> std::fmt::Debug for Proxier<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxier")
            .field("node_name", &self.node_name)
            .field("service_ports", &self.ruleset.service_ports())
            .field("needs_full", &self.needs_full)
            .finish_non_exhaustive()
    }
}

impl<D: Dataplane> Proxier<D> {
    /// A proxier for node `node_name`; nothing is applied until the first [`Proxier::sync`], which writes the
    /// whole table.
    pub fn new(config: ProxyConfig, node_name: impl Into<String>, dataplane: D) -> Proxier<D> {
        Proxier {
            tracker: ChangeTracker::new(config.proxy_name.clone()),
            ruleset: desired::empty_ruleset(&config),
            config,
            node_name: node_name.into(),
            dataplane,
            needs_full: true,
            health: BTreeMap::new(),
        }
    }

    /// A Service was added (`old: None`), updated, or deleted (`new: None`).
    pub fn on_service(&mut self, old: Option<&Service>, new: Option<&Service>) -> bool {
        self.tracker.update_service(old, new)
    }

    /// An EndpointSlice was added, updated or deleted.
    pub fn on_slice(&mut self, old: Option<&EndpointSlice>, new: Option<&EndpointSlice>) -> bool {
        self.tracker.update_slice(old, new)
    }

    /// Sets this node's name (which endpoints are local); a change recomputes every Service.
    pub fn set_node(&mut self, node_name: &str) {
        if self.node_name != node_name {
            self.node_name = node_name.to_string();
            self.tracker.mark_all_changed();
        }
    }

    /// Whether a sync has something to do.
    pub fn has_pending(&self) -> bool {
        self.needs_full || self.tracker.has_changes()
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }
    pub fn tracker(&self) -> &ChangeTracker {
        &self.tracker
    }
    pub fn dataplane(&self) -> &D {
        &self.dataplane
    }
    pub fn dataplane_mut(&mut self) -> &mut D {
        &mut self.dataplane
    }
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Health-check node ports to serve, with what each reports.
    pub fn health_targets(&self) -> BTreeMap<u16, HealthTarget> {
        self.health.values().map(|(port, target)| (*port, target.clone())).collect()
    }

    /// Recomputes the changed Services and applies the difference (the whole table on the first sync or after
    /// a failed one). Work is proportional to the changed Services, not to the table.
    pub fn sync(&mut self) -> Result<SyncStats, SyncError> {
        let start = Instant::now();
        let changed = self.tracker.take_changed();
        let full = self.needs_full;
        let mut changes = if full { Changes::discard() } else { Changes::default() };
        let mut stale_udp: BTreeSet<Ipv4Addr> = BTreeSet::new();
        for name in &changed {
            let mut ports = Vec::new();
            let mut local: BTreeSet<Ipv4Addr> = BTreeSet::new();
            let mut health_port = None;
            for service in self.tracker.service(name) {
                let endpoints = self.tracker.endpoints(service);
                let fragment = desired::service_fragment(&self.config, &self.node_name, service, &endpoints);
                if service.external_policy == TrafficPolicy::Local {
                    if let Some(port) = service.health_check_node_port {
                        health_port = Some(port);
                        let cat = desired::categorize(service, &endpoints, &self.node_name);
                        local.extend(cat.local.iter().map(|e| e.ip));
                    }
                }
                ports.push((service.name.clone(), fragment));
            }
            if !full {
                let before = self.ruleset.fragments().range(service_range(name)).map(|(_, f)| f);
                let mut gone = udp_targets(before);
                for ip in udp_targets(ports.iter().map(|(_, f)| f)) {
                    gone.remove(&ip);
                }
                stale_udp.extend(gone);
            }
            self.ruleset.set_service(name, ports, &mut changes);
            match health_port {
                Some(port) => {
                    let target = HealthTarget { service: name.clone(), local_endpoints: local.len() };
                    self.health.insert(name.clone(), (port, target));
                }
                None => {
                    self.health.remove(name);
                }
            }
        }
        let ops = changes.into_ops();
        let stats = SyncStats { services_changed: changed.len(), ops: ops.len(), full, elapsed: Duration::default() };
        if !full && ops.is_empty() && stale_udp.is_empty() {
            return Ok(SyncStats { elapsed: start.elapsed(), ..stats });
        }
        let stale: Vec<Ipv4Addr> = stale_udp.into_iter().collect();
        let tx = Transaction { ruleset: &self.ruleset, ops: &ops, full, stale_udp_endpoints: &stale };
        match self.dataplane.apply(&tx) {
            Ok(()) => {
                self.needs_full = false;
                let stats = SyncStats { elapsed: start.elapsed(), ..stats };
                tracing::debug!(services = stats.services_changed, ops = stats.ops, full, elapsed = ?stats.elapsed, "proxy sync");
                Ok(stats)
            }
            Err(source) => {
                self.needs_full = true;
                Err(SyncError { services: changed.len(), ops: ops.len(), full, source })
            }
        }
    }

    /// Removes the data plane's table; the next sync writes it whole again.
    pub fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.needs_full = true;
        self.dataplane.cleanup()
    }
}

fn service_range(name: &ServiceName) -> std::ops::RangeInclusive<crate::model::ServicePortName> {
    // Port names are DNS labels, all below '~' in byte order.
    let low = crate::model::ServicePortName { service: name.clone(), port: String::new() };
    let high = crate::model::ServicePortName { service: name.clone(), port: "~".into() };
    low..=high
}

/// Endpoint addresses that UDP traffic is DNATed to in these fragments.
fn udp_targets<'a>(fragments: impl Iterator<Item = &'a Fragment>) -> BTreeSet<Ipv4Addr> {
    fragments
        .flat_map(|f| f.chains.values().flatten())
        .filter_map(|rule| match rule.action {
            Action::Dnat { protocol: Protocol::Udp, ip, .. } => Some(ip),
            _ => None,
        })
        .collect()
}

/// An event for [`run`].
#[derive(Clone, Debug)]
pub enum ProxyEvent {
    Service { old: Option<Box<Service>>, new: Option<Box<Service>> },
    Slice { old: Option<Box<EndpointSlice>>, new: Option<Box<EndpointSlice>> },
    NodeName(String),
}

/// Timing of [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Least time between two syncs (events arriving meanwhile are batched).
    pub min_sync_interval: Duration,
    /// Delay before retrying after a failed sync.
    pub retry_interval: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { min_sync_interval: Duration::from_millis(10), retry_interval: Duration::from_secs(1) }
    }
}

/// Drives `proxier` from `events` until the channel closes, syncing after each batch of events and
/// reconciling `health` listeners. Returns the proxier so the caller can [`Proxier::cleanup`] it.
pub async fn run<D: Dataplane + 'static>(
    mut proxier: Proxier<D>,
    mut events: mpsc::Receiver<ProxyEvent>,
    mut health: Option<HealthServer>,
    timing: RunConfig,
) -> Proxier<D> {
    let mut open = true;
    while open {
        if !proxier.has_pending() {
            match events.recv().await {
                Some(event) => apply_event(&mut proxier, event),
                None => break,
            }
        }
        tokio::time::sleep(timing.min_sync_interval).await;
        loop {
            match events.try_recv() {
                Ok(event) => apply_event(&mut proxier, event),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // nft runs as a child process: keep the runtime's other tasks going while we wait for it.
        let result = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| proxier.sync()),
            _ => proxier.sync(),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "proxy sync failed; retrying with a full rewrite");
            tokio::time::sleep(timing.retry_interval).await;
            continue;
        }
        if let Some(health) = health.as_mut() {
            for error in health.reconcile(&proxier.health_targets()).await {
                tracing::warn!(%error, "health check listener");
            }
        }
    }
    if let Some(health) = health {
        health.shutdown().await;
    }
    proxier
}

fn apply_event<D: Dataplane>(proxier: &mut Proxier<D>, event: ProxyEvent) {
    match event {
        ProxyEvent::Service { old, new } => {
            proxier.on_service(old.as_deref(), new.as_deref());
        }
        ProxyEvent::Slice { old, new } => {
            proxier.on_slice(old.as_deref(), new.as_deref());
        }
        ProxyEvent::NodeName(name) => proxier.set_node(&name),
    }
}
