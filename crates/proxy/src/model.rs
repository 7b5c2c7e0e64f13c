//! The proxy's inputs as plain values: one [`ServiceInfo`] per Service port and one [`EndpointInfo`] per
//! EndpointSlice endpoint and port, decoded from the k8s-openapi objects once, at the edge.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label naming the proxy that should handle a Service; a Service carrying another proxy's name is ignored.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Label on headless Services' slices; such slices are ignored.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Upstream's default ClientIP affinity timeout.
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// A Service's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl ServiceName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceName { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service: namespace/name/port-name (the port name is empty for a lone unnamed port).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub service: ServiceName,
    pub port: String,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

/// An L4 protocol a Service port can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The nftables spelling (`tcp`, `udp`, `sctp`), also used in chain names.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses the API spelling; `None` (unset) means TCP, as the API defaults it.
    pub fn from_api(value: Option<&str>) -> Option<Protocol> {
        match value {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(_) => None,
        }
    }
}

/// An IPv4 network, `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

/// A string that is not an IPv4 CIDR.
#[derive(Debug, thiserror::Error)]
#[error("invalid IPv4 CIDR {0:?}")]
pub struct CidrParseError(String);

impl Ipv4Net {
    /// The network containing `addr` with `prefix` bits (host bits are cleared). `None` if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        (prefix <= 32).then(|| Ipv4Net { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix })
    }
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrParseError(s.to_string());
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Net::new(ip, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Internal or external traffic policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

impl TrafficPolicy {
    fn from_api(value: Option<&str>) -> TrafficPolicy {
        match value {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        }
    }
}

/// Everything the proxy needs from one Service port (IPv4 only; IPv6 addresses are skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: ServicePortName,
    pub protocol: Protocol,
    pub port: u16,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`, minus `ipMode: Proxy` entries.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `Some(timeout seconds)` for `sessionAffinity: ClientIP`.
    pub affinity_seconds: Option<u32>,
    pub internal_policy: TrafficPolicy,
    /// Only `Local` when the Service is reachable from outside (NodePort, externalIPs or LB IPs).
    pub external_policy: TrafficPolicy,
    pub health_check_node_port: Option<u16>,
}

impl ServiceInfo {
    /// One entry per usable port of `service`; empty for services the proxy ignores (ExternalName, headless,
    /// another proxy's, or without an IPv4 ClusterIP). `proxy_name` is the `service-proxy-name` label value we
    /// answer to (`None`: only unlabelled Services).
    pub fn from_service(service: &Service, proxy_name: Option<&str>) -> Vec<ServiceInfo> {
        let meta = &service.metadata;
        let (Some(namespace), Some(name), Some(spec)) = (&meta.namespace, &meta.name, &service.spec) else {
            return Vec::new();
        };
        let label = meta.labels.as_ref().and_then(|l| l.get(SERVICE_PROXY_NAME_LABEL)).map(String::as_str);
        if label.is_some() && label != proxy_name {
            return Vec::new();
        }
        if spec.type_.as_deref() == Some("ExternalName") {
            return Vec::new();
        }
        let mut cluster_ips: Vec<Ipv4Addr> = Vec::new();
        let listed = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter());
        for ip in listed.filter_map(|s| s.parse::<Ipv4Addr>().ok()) {
            if !cluster_ips.contains(&ip) {
                cluster_ips.push(ip);
            }
        }
        if cluster_ips.is_empty() {
            return Vec::new();
        }
        let external_ips = parse_ips(spec.external_ips.iter().flatten());
        let lb = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
        let load_balancer_ips = parse_ips(
            lb.into_iter().flatten().filter(|i| i.ip_mode.as_deref() != Some("Proxy")).filter_map(|i| i.ip.as_ref()),
        );
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            let configured = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref());
            configured
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let internal_policy = TrafficPolicy::from_api(spec.internal_traffic_policy.as_deref());
        let health_check_node_port =
            spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
        let service_name = ServiceName::new(namespace.clone(), name.clone());
        let mut out: Vec<ServiceInfo> = Vec::new();
        for port in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(number)) = (Protocol::from_api(port.protocol.as_deref()), u16::try_from(port.port))
            else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            if number == 0 || out.iter().any(|p| p.name.port == port_name) {
                continue;
            }
            let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
            let external = node_port.is_some() || !external_ips.is_empty() || !load_balancer_ips.is_empty();
            let external_policy = match external {
                true => TrafficPolicy::from_api(spec.external_traffic_policy.as_deref()),
                false => TrafficPolicy::Cluster,
            };
            out.push(ServiceInfo {
                name: ServicePortName { service: service_name.clone(), port: port_name },
                protocol,
                port: number,
                cluster_ips: cluster_ips.clone(),
                node_port,
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                affinity_seconds,
                internal_policy,
                external_policy,
                health_check_node_port,
            });
        }
        out
    }

    /// Whether traffic can reach this port from outside the cluster network (NodePort, externalIPs, LB IPs).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }
}

fn parse_ips<'a>(values: impl Iterator<Item = &'a String>) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for ip in values.filter_map(|s| s.parse::<Ipv4Addr>().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// One endpoint of one Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointInfo {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
}

impl EndpointInfo {
    /// A ready endpoint on `node` (a test and fixture convenience).
    pub fn ready(ip: Ipv4Addr, port: u16, node: Option<&str>) -> EndpointInfo {
        EndpointInfo { ip, port, ready: true, serving: true, terminating: false, node_name: node.map(str::to_string) }
    }
    /// Serving but terminating: used only when no endpoint of the relevant set is ready.
    pub fn serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }
    pub fn is_local(&self, node_name: &str) -> bool {
        !node_name.is_empty() && self.node_name.as_deref() == Some(node_name)
    }
}

/// The key under which a slice's endpoints are filed: the Service port's name and protocol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub name: String,
    pub protocol: Protocol,
}

/// What the proxy keeps from one EndpointSlice: its endpoints per port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceInfo {
    pub ports: BTreeMap<PortKey, Vec<EndpointInfo>>,
}

impl SliceInfo {
    /// The owning Service, the slice's name and its endpoints; `None` for slices the proxy ignores (non-IPv4,
    /// headless, another proxy's, or without a `kubernetes.io/service-name` label).
    pub fn from_slice(slice: &EndpointSlice, proxy_name: Option<&str>) -> Option<(ServiceName, String, SliceInfo)> {
        let meta = &slice.metadata;
        let labels = meta.labels.as_ref()?;
        let service = labels.get(SERVICE_NAME_LABEL).filter(|s| !s.is_empty())?;
        let namespace = meta.namespace.as_ref()?;
        let slice_name = meta.name.clone()?;
        let key = ServiceName::new(namespace.clone(), service.clone());
        let proxy_label = labels.get(SERVICE_PROXY_NAME_LABEL).map(String::as_str);
        let ignored = slice.address_type != "IPv4"
            || labels.contains_key(HEADLESS_LABEL)
            || (proxy_label.is_some() && proxy_label != proxy_name);
        if ignored {
            return Some((key, slice_name, SliceInfo::default()));
        }
        let mut info = SliceInfo::default();
        for port in slice.ports.iter().flatten() {
            let (Some(protocol), Some(number)) = (
                Protocol::from_api(port.protocol.as_deref()),
                port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
            ) else {
                continue;
            };
            let mut endpoints = Vec::new();
            for endpoint in &slice.endpoints {
                let conditions = endpoint.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                // Upstream uses the first address only.
                let Some(ip) = endpoint.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
                    continue;
                };
                endpoints.push(EndpointInfo {
                    ip,
                    port: number,
                    ready,
                    serving,
                    terminating,
                    node_name: endpoint.node_name.clone(),
                });
            }
            info.ports.insert(PortKey { name: port.name.clone().unwrap_or_default(), protocol }, endpoints);
        }
        Some((key, slice_name, info))
    }
}
