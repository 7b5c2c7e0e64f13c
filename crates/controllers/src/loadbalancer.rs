//! LoadBalancer without a cloud: gives `type: LoadBalancer` Services an address from a pool (by default the node's
//! own address), sharing one address between Services port by port, and writes `status.loadBalancer.ingress`.
//! A Service whose ports collide everywhere (or whose `spec.loadBalancerIP` is outside the pool or taken) stays
//! pending, with a Warning event saying why. Services with a `spec.loadBalancerClass` belong to another
//! implementation and are left alone, as upstream's cloud controllers do.
//!
//! The allocator is rebuilt from the Services' own statuses when the controller starts, so a restart keeps every
//! address where it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ferry_runtime::events::Recorder;
use ferry_runtime::{Change, Controller, Informers, Key, Next, Reconciler, Store, Task};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};

/// Largest pool accepted (addresses), so a typo like `/8` cannot exhaust memory.
const MAX_POOL: u128 = 65536;

/// Why a pool specification is invalid.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PoolError {
    #[error("invalid load balancer pool entry {0:?}: expected an IP, a CIDR or a range a-b")]
    Entry(String),
    #[error("load balancer pool entry {0:?} is larger than {MAX_POOL} addresses")]
    TooLarge(String),
}

/// The addresses LoadBalancer Services may get, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pool {
    addresses: Vec<IpAddr>,
}

impl Pool {
    /// A pool of exactly these addresses.
    pub fn new(addresses: Vec<IpAddr>) -> Pool {
        let mut seen = BTreeSet::new();
        Pool { addresses: addresses.into_iter().filter(|a| seen.insert(*a)).collect() }
    }

    /// Parses a comma-separated list of IPs, CIDRs (`192.0.2.0/28`, every address) and ranges
    /// (`192.0.2.10-192.0.2.20`).
    pub fn parse(spec: &str) -> Result<Pool, PoolError> {
        let mut addresses = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || PoolError::Entry(entry.to_string());
            let (first, last) = if let Some((ip, prefix)) = entry.split_once('/') {
                let ip: IpAddr = ip.parse().map_err(|_| bad())?;
                let prefix: u32 = prefix.parse().map_err(|_| bad())?;
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                if prefix > bits {
                    return Err(bad());
                }
                let host_bits = bits - prefix;
                let n = to_u128(ip);
                let mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
                (n & !mask, n | mask)
            } else if let Some((a, b)) = entry.split_once('-') {
                let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
                let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
                if a.is_ipv4() != b.is_ipv4() || to_u128(a) > to_u128(b) {
                    return Err(bad());
                }
                (to_u128(a), to_u128(b))
            } else {
                let ip: IpAddr = entry.parse().map_err(|_| bad())?;
                (to_u128(ip), to_u128(ip))
            };
            if last - first >= MAX_POOL {
                return Err(PoolError::TooLarge(entry.to_string()));
            }
            let v4 = !entry.contains(':');
            addresses.extend((first..=last).map(|n| from_u128(n, v4)));
        }
        if addresses.is_empty() {
            return Err(PoolError::Entry(spec.to_string()));
        }
        Ok(Pool::new(addresses))
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.addresses.contains(ip)
    }

    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(n))
    }
}

/// A Service port as it occupies an address: protocol and port number.
pub type PortKey = (String, i32);

/// Why a Service gets no address.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// `spec.loadBalancerIP` is not in the pool.
    NotInPool(IpAddr),
    /// Every candidate address has one of the Service's ports taken.
    PortsTaken { conflicts: Vec<(IpAddr, PortKey, Key)> },
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::NotInPool(ip) => write!(f, "requested loadBalancerIP {ip} is not in the load balancer pool"),
            Pending::PortsTaken { conflicts } => {
                f.write_str("no address in the load balancer pool has all of this service's ports free: ")?;
                let parts: Vec<String> = conflicts
                    .iter()
                    .map(|(ip, (proto, port), owner)| format!("{ip}:{port}/{proto} is used by service {owner}"))
                    .collect();
                f.write_str(&parts.join("; "))
            }
        }
    }
}

/// Which Service holds which port of which address.
#[derive(Debug, Default)]
pub struct Allocator {
    by_ip: HashMap<IpAddr, BTreeMap<PortKey, Key>>,
    by_service: HashMap<Key, (IpAddr, Vec<PortKey>)>,
}

impl Allocator {
    /// The address `key` holds.
    pub fn assigned(&self, key: &Key) -> Option<IpAddr> {
        self.by_service.get(key).map(|(ip, _)| *ip)
    }

    /// Gives `key` an address for `ports`: the requested one if any, else the one it holds or last had (`current`),
    /// else the first address of the pool with every port free. Re-assigning releases what `key` held before.
    pub fn assign(
        &mut self,
        pool: &Pool,
        key: &Key,
        requested: Option<IpAddr>,
        current: Option<IpAddr>,
        ports: &[PortKey],
    ) -> Result<IpAddr, Pending> {
        let held = self.release(key);
        if let Some(ip) = requested {
            if !pool.contains(&ip) {
                return Err(Pending::NotInPool(ip));
            }
        }
        let candidates: Vec<IpAddr> = match requested {
            Some(ip) => vec![ip],
            None => {
                let mut c: Vec<IpAddr> = held.into_iter().chain(current).filter(|ip| pool.contains(ip)).collect();
                c.extend(pool.addresses().iter().copied());
                c
            }
        };
        let mut conflicts = Vec::new();
        for ip in candidates {
            let taken = self.by_ip.get(&ip);
            let clash: Vec<_> = ports
                .iter()
                .filter_map(|p| taken.and_then(|t| t.get(p)).map(|owner| (ip, p.clone(), owner.clone())))
                .collect();
            if clash.is_empty() {
                let entry = self.by_ip.entry(ip).or_default();
                for p in ports {
                    entry.insert(p.clone(), key.clone());
                }
                self.by_service.insert(key.clone(), (ip, ports.to_vec()));
                return Ok(ip);
            }
            if conflicts.len() < 8 {
                conflicts.extend(clash.into_iter().take(1));
            }
        }
        Err(Pending::PortsTaken { conflicts })
    }

    /// Frees everything `key` holds; returns the address it had.
    pub fn release(&mut self, key: &Key) -> Option<IpAddr> {
        let (ip, ports) = self.by_service.remove(key)?;
        if let Some(taken) = self.by_ip.get_mut(&ip) {
            for p in &ports {
                if taken.get(p) == Some(key) {
                    taken.remove(p);
                }
            }
            if taken.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
        Some(ip)
    }
}

/// What a Service asks of the allocator, if it is a LoadBalancer Service ferry serves.
fn wants_address(svc: &Service) -> Option<(Option<IpAddr>, Vec<PortKey>)> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
        return None;
    }
    if svc.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let requested = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty()).and_then(|s| s.parse().ok());
    let ports =
        spec.ports.iter().flatten().map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port)).collect();
    Some((requested, ports))
}

/// The ingress addresses a Service's status shows.
fn status_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect())
        .unwrap_or_default()
}

struct LoadBalancers {
    client: kube::Client,
    services: Store<Service>,
    pool: Pool,
    allocator: Allocator,
    /// LoadBalancer Services without an address, retried when an address or port frees up.
    pending: BTreeSet<Key>,
    /// Why each pending Service waits (an event is recorded when the reason changes).
    reasons: HashMap<Key, String>,
    seeded: bool,
    recorder: Recorder,
}

/// The controller, subscribed to `informers`.
pub(crate) fn controller(informers: &mut Informers, pool: Pool) -> Task {
    let services = informers.get::<Service>();
    let client = informers.client();
    let reconciler = LoadBalancers {
        recorder: Recorder::new(client.clone(), "service-lb-controller"),
        client,
        services: services.store(),
        pool,
        allocator: Allocator::default(),
        pending: BTreeSet::new(),
        reasons: HashMap::new(),
        seeded: false,
    };
    let controller = Controller::new(reconciler).watch(&services, |lb: &mut LoadBalancers, change| {
        let relevant = |svc: Option<&Service>| {
            svc.is_some_and(|s| wants_address(s).is_some() || lb.allocator.assigned(&Key::of(s)).is_some())
        };
        let Some(obj) = change.object() else { return Vec::new() };
        if !relevant(Some(obj)) && !relevant(change.old()) {
            return Vec::new();
        }
        let mut keys = vec![Key::of(obj)];
        if matches!(change, Change::Deleted(_)) || !relevant(Some(obj)) {
            // An address or port may have been freed: the pending ones try again.
            keys.extend(lb.pending.iter().cloned());
        }
        keys
    });
    Box::pin(controller.run())
}

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the load balancer status of {service}: {source}")]
pub(crate) struct StatusError {
    service: Key,
    source: kube::Error,
}

impl LoadBalancers {
    /// Takes over the addresses the Services' statuses already show (oldest Service first wins a clash).
    fn seed(&mut self) {
        let mut services: Vec<_> = self.services.state();
        services.sort_by(|a, b| {
            (a.metadata.creation_timestamp.as_ref().map(|t| t.0), Key::of(a.as_ref()))
                .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), Key::of(b.as_ref())))
        });
        for svc in services {
            let Some((requested, ports)) = wants_address(&svc) else { continue };
            let Some(ip) = status_ips(&svc).into_iter().find(|ip| self.pool.contains(ip)) else { continue };
            if requested.is_some_and(|r| r != ip) {
                continue;
            }
            let _ = self.allocator.assign(&self.pool, &Key::of(svc.as_ref()), Some(ip), None, &ports);
        }
        self.seeded = true;
    }

    async fn write_status(&self, key: &Key, ip: Option<IpAddr>) -> Result<(), StatusError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let ingress = match ip {
            Some(ip) => serde_json::json!([{ "ip": ip.to_string(), "ipMode": "VIP" }]),
            None => serde_json::json!([]),
        };
        let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": ingress } } });
        match api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(StatusError { service: key.clone(), source }),
        }
    }
}

impl Reconciler for LoadBalancers {
    type Key = Key;
    type Error = StatusError;

    fn name(&self) -> &'static str {
        "service-lb"
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Next, StatusError> {
        if !self.seeded {
            self.seed();
        }
        let svc = self.services.get(&ferry_runtime::ObjectRef::new(&key.name).within(&key.namespace));
        let wants = svc.as_deref().and_then(wants_address);
        let Some((requested, ports)) = wants else {
            // Not (or no longer) ours: free the address and clear a status we wrote.
            self.pending.remove(key);
            self.reasons.remove(key);
            if let Some(ip) = self.allocator.release(key) {
                if let Some(svc) = svc.as_deref() {
                    let ours = svc.spec.as_ref().and_then(|s| s.load_balancer_class.as_ref()).is_none();
                    if ours && status_ips(svc).contains(&ip) {
                        self.write_status(key, None).await?;
                    }
                }
            }
            return Ok(Next::Done);
        };
        let Some(svc) = svc else { return Ok(Next::Done) };
        let shown = status_ips(&svc);
        let current = shown.iter().copied().find(|ip| self.pool.contains(ip));
        match self.allocator.assign(&self.pool, key, requested, current, &ports) {
            Ok(ip) => {
                self.pending.remove(key);
                self.reasons.remove(key);
                if shown != [ip] {
                    self.write_status(key, Some(ip)).await?;
                    tracing::info!(service = %key, ip = %ip, "assigned a load balancer address");
                    let message = format!("Assigned load balancer address {ip}");
                    self.recorder.normal(svc.as_ref(), "EnsuredLoadBalancer", &message).await;
                }
            }
            Err(why) => {
                self.pending.insert(key.clone());
                if current.is_some() {
                    self.write_status(key, None).await?;
                }
                let message = why.to_string();
                if self.reasons.get(key) != Some(&message) {
                    tracing::info!(service = %key, reason = %message, "load balancer address pending");
                    self.recorder.warning(svc.as_ref(), "AllocationFailed", &message).await;
                    self.reasons.insert(key.clone(), message);
                }
            }
        }
        Ok(Next::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tcp(port: i32) -> PortKey {
        ("TCP".to_string(), port)
    }

    #[test]
    fn pools_parse_ips_cidrs_and_ranges() {
        let pool = Pool::parse("192.0.2.1, 198.51.100.0/30,203.0.113.10-203.0.113.11").unwrap();
        let want: Vec<IpAddr> = ["192.0.2.1", "198.51.100.0", "198.51.100.1", "198.51.100.2", "198.51.100.3"]
            .into_iter()
            .chain(["203.0.113.10", "203.0.113.11"])
            .map(ip)
            .collect();
        assert_eq!(pool.addresses(), want.as_slice());
        assert!(matches!(Pool::parse("10.0.0.0/8"), Err(PoolError::TooLarge(_))));
        assert!(matches!(Pool::parse("nonsense"), Err(PoolError::Entry(_))));
        assert!(matches!(Pool::parse("10.0.0.5-10.0.0.1"), Err(PoolError::Entry(_))));
        assert!(matches!(Pool::parse(""), Err(PoolError::Entry(_))));
    }

    #[test]
    fn one_address_is_shared_port_by_port() {
        let pool = Pool::new(vec![ip("192.0.2.1")]);
        let mut a = Allocator::default();
        let (web, api, clash) = (Key::new("default", "web"), Key::new("default", "api"), Key::new("default", "x"));
        assert_eq!(a.assign(&pool, &web, None, None, &[tcp(80)]), Ok(ip("192.0.2.1")));
        assert_eq!(a.assign(&pool, &api, None, None, &[tcp(8080), ("UDP".into(), 80)]), Ok(ip("192.0.2.1")));
        let err = a.assign(&pool, &clash, None, None, &[tcp(443), tcp(80)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no address in the load balancer pool has all of this service's ports free: \
             192.0.2.1:80/TCP is used by service default/web"
        );
        assert_eq!(a.assigned(&clash), None);
        // The holder goes away: the pending one fits now.
        a.release(&web);
        assert_eq!(a.assign(&pool, &clash, None, None, &[tcp(443), tcp(80)]), Ok(ip("192.0.2.1")));
    }

    #[test]
    fn requested_addresses_must_be_in_the_pool_and_free() {
        let pool = Pool::parse("192.0.2.1-192.0.2.2").unwrap();
        let mut a = Allocator::default();
        let (one, two) = (Key::new("ns", "one"), Key::new("ns", "two"));
        assert_eq!(
            a.assign(&pool, &one, Some(ip("192.0.2.9")), None, &[tcp(80)]),
            Err(Pending::NotInPool(ip("192.0.2.9")))
        );
        assert_eq!(a.assign(&pool, &one, Some(ip("192.0.2.2")), None, &[tcp(80)]), Ok(ip("192.0.2.2")));
        // Without a request the first free address is used; with one, a clash keeps it pending.
        assert_eq!(a.assign(&pool, &two, None, None, &[tcp(80)]), Ok(ip("192.0.2.1")));
        assert!(matches!(
            a.assign(&pool, &two, Some(ip("192.0.2.2")), None, &[tcp(80)]),
            Err(Pending::PortsTaken { .. })
        ));
    }

    #[test]
    fn a_service_keeps_its_address_when_its_ports_change() {
        let pool = Pool::parse("192.0.2.1-192.0.2.3").unwrap();
        let mut a = Allocator::default();
        let key = Key::new("ns", "svc");
        assert_eq!(a.assign(&pool, &key, None, Some(ip("192.0.2.3")), &[tcp(80)]), Ok(ip("192.0.2.3")));
        assert_eq!(a.assign(&pool, &key, None, None, &[tcp(80), tcp(443)]), Ok(ip("192.0.2.3")));
    }
}
