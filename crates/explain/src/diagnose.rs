//! The pure part of the checklist: from a Service, its Endpoints and EndpointSlices, the namespace's pods and
//! events to a [`Diagnosis`] (what the service looks like, which pods back it and why the others do not). No IO.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Everything the diagnosis reads, as fetched from the API server.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub service: Service,
    /// The Endpoints object named like the service, if any.
    pub endpoints: Option<Endpoints>,
    /// The EndpointSlices labelled `kubernetes.io/service-name=<service>`.
    pub slices: Vec<EndpointSlice>,
    /// Every pod of the service's namespace (the diagnosis applies the selector itself).
    pub pods: Vec<Pod>,
    /// Every event of the service's namespace (readiness probe failures are read from them).
    pub events: Vec<Event>,
}

/// One port of the service as its spec states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSummary {
    pub name: Option<String>,
    pub port: i32,
    /// `targetPort` as written (a number or a container port name); the port itself when unset.
    pub target_port: String,
    pub node_port: Option<i32>,
    pub protocol: String,
}

/// The service's spec and status, reduced to what troubleshooting needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSummary {
    pub namespace: String,
    pub name: String,
    pub type_: String,
    /// `spec.clusterIPs` (or `spec.clusterIP`); `["None"]` for a headless service.
    pub cluster_ips: Vec<String>,
    pub external_ips: Vec<String>,
    pub external_name: Option<String>,
    pub ports: Vec<PortSummary>,
    pub session_affinity: String,
    pub external_traffic_policy: Option<String>,
    pub publish_not_ready: bool,
    /// Empty when the service has no selector (its Endpoints are written by hand).
    pub selector: BTreeMap<String, String>,
    /// `status.loadBalancer.ingress` IPs and hostnames.
    pub load_balancer_ingress: Vec<String>,
}

impl ServiceSummary {
    pub fn is_headless(&self) -> bool {
        self.cluster_ips.iter().any(|ip| ip == "None")
    }

    /// The selector as `k=v,k2=v2`.
    pub fn selector_text(&self) -> String {
        let pairs: Vec<String> = self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(",")
    }
}

/// How the endpoint objects list one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listing {
    Ready,
    NotReady,
    Absent,
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Listing::Ready => "ready",
            Listing::NotReady => "not ready",
            Listing::Absent => "absent",
        })
    }
}

/// One port of one endpoint address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressPort {
    /// The service port's name (empty for a lone unnamed port).
    pub name: String,
    pub port: i32,
    pub protocol: String,
}

/// One address listed by the Endpoints object or the EndpointSlices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ip: String,
    pub ready: bool,
    /// The pod (or other object) the address belongs to, from `targetRef`.
    pub target: Option<String>,
    pub node: Option<String>,
    pub ports: Vec<AddressPort>,
}

/// Why a pod the selector matches does not serve the service (or not on every port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No node was chosen; the scheduler's message.
    NotScheduled(String),
    NoIp,
    Terminating,
    /// The pod ended (`Succeeded` or `Failed`).
    Finished(String),
    /// Not ready; the best explanation found (probe failure event, container state or Ready condition).
    NotReady(String),
    /// No container port has the service's named targetPort with the service port's protocol.
    MissingPort {
        target: String,
        protocol: String,
    },
    /// Nothing explains why the pod is not listed (the endpoints controller may be lagging or absent).
    Unlisted,
}

/// One pod the selector matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodReport {
    pub name: String,
    pub ip: Option<String>,
    pub node: Option<String>,
    /// How the EndpointSlices list the pod (`None`: there are no slices).
    pub in_slices: Option<Listing>,
    /// How the Endpoints object lists the pod (`None`: there is no Endpoints object).
    pub in_endpoints: Option<Listing>,
    /// Service port name → the pod port it resolves to (only ports that resolve).
    pub ports: Vec<(String, i32)>,
    pub reasons: Vec<Reason>,
}

impl PodReport {
    /// The listing that decides traffic: the slices' (the proxy reads them), else the Endpoints object's.
    pub fn listing(&self) -> Listing {
        self.in_slices.or(self.in_endpoints).unwrap_or(Listing::Absent)
    }
}

/// Who backs the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backends {
    /// `type: ExternalName`: a DNS alias, no endpoints.
    ExternalName(String),
    /// A selector service: the pods it matches, and listed addresses that belong to none of them.
    Selector { pods: Vec<PodReport>, strays: Vec<Address> },
    /// No selector: the hand-written Endpoints (or slices); `has_object` says whether an Endpoints object exists.
    Manual { has_object: bool, addresses: Vec<Address> },
}

/// One problem found, printed as a verdict line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    NoPodMatches { selector: String },
    NotScheduled { pod: String, message: String },
    NoIp { pod: String },
    Terminating { pod: String },
    Finished { pod: String, phase: String },
    NotReady { pod: String, detail: String },
    MissingPort { pod: String, target: String, protocol: String },
    Unlisted { pod: String },
    NoReadyEndpoint,
    NoEndpointsObject,
    NoManualAddress,
    Stray { ip: String, target: Option<String> },
    NoProxyTable,
    NoRules { tables: Vec<String> },
    NftUnavailable(String),
    ConnectFailed { what: String, addr: String, outcome: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoPodMatches { selector } => write!(f, "no pod matches selector {selector}"),
            Problem::NotScheduled { pod, message } => write!(f, "pod {pod} is not scheduled: {message}"),
            Problem::NoIp { pod } => write!(f, "pod {pod} has no IP yet"),
            Problem::Terminating { pod } => write!(f, "pod {pod} is terminating"),
            Problem::Finished { pod, phase } => write!(f, "pod {pod} has finished (phase {phase})"),
            Problem::NotReady { pod, detail } => write!(f, "pod {pod} is not ready: {detail}"),
            Problem::MissingPort { pod, target, protocol } if protocol == "TCP" => {
                write!(f, "targetPort '{target}' not found in pod {pod}")
            }
            Problem::MissingPort { pod, target, protocol } => {
                write!(f, "targetPort '{target}' ({protocol}) not found in pod {pod}")
            }
            Problem::Unlisted { pod } => {
                write!(f, "pod {pod} is ready but not an endpoint (is the endpoints controller running?)")
            }
            Problem::NoReadyEndpoint => write!(f, "the service has no ready endpoint: connections to it are rejected"),
            Problem::NoEndpointsObject => write!(f, "the service has no selector and no Endpoints object"),
            Problem::NoManualAddress => write!(f, "the service has no selector and its Endpoints list no address"),
            Problem::Stray { ip, target: Some(target) } => {
                write!(f, "endpoint {ip} ({target}) belongs to no pod the selector matches")
            }
            Problem::Stray { ip, target: None } => write!(f, "endpoint {ip} belongs to no pod the selector matches"),
            Problem::NoProxyTable => {
                write!(f, "no service proxy table (nftables `ip *-proxy`) on this host: is the proxy running?")
            }
            Problem::NoRules { tables } => {
                write!(f, "the service has no rules in the proxy table(s) {}", tables.join(", "))
            }
            Problem::NftUnavailable(why) => write!(f, "could not read the nftables rules: {why}"),
            Problem::ConnectFailed { what, addr, outcome } => write!(f, "{what} {addr}: {outcome}"),
        }
    }
}

/// What the API objects say about the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub service: ServiceSummary,
    pub backends: Backends,
    /// Every listed address (slices preferred, else the Endpoints object): what the connection check dials.
    pub addresses: Vec<Address>,
    pub problems: Vec<Problem>,
}

/// Summarizes the service's spec and status.
pub fn summarize(service: &Service) -> ServiceSummary {
    let spec = service.spec.clone().unwrap_or_default();
    let mut cluster_ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.cluster_ip.clone().filter(|ip| !ip.is_empty()));
    }
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| PortSummary {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port: p.port,
            target_port: match &p.target_port {
                Some(IntOrString::Int(n)) if *n != 0 => n.to_string(),
                Some(IntOrString::String(s)) if !s.is_empty() => s.clone(),
                _ => p.port.to_string(),
            },
            node_port: p.node_port.filter(|n| *n != 0),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        })
        .collect();
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    let load_balancer_ingress =
        ingress.into_iter().flatten().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect();
    ServiceSummary {
        namespace: service.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: service.metadata.name.clone().unwrap_or_default(),
        type_: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        cluster_ips,
        external_ips: spec.external_ips.clone().unwrap_or_default(),
        external_name: spec.external_name.clone(),
        ports,
        session_affinity: spec.session_affinity.clone().unwrap_or_else(|| "None".into()),
        external_traffic_policy: spec.external_traffic_policy.clone(),
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        selector: spec.selector.clone().unwrap_or_default(),
        load_balancer_ingress,
    }
}

/// The addresses of the Endpoints object, one entry per IP (ports merged over subsets).
pub fn endpoints_addresses(endpoints: &Endpoints) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<AddressPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| AddressPort {
                name: p.name.clone().unwrap_or_default(),
                port: p.port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
            .collect();
        let lists = [(true, &subset.addresses), (false, &subset.not_ready_addresses)];
        for (ready, list) in lists {
            for a in list.iter().flatten() {
                let target = a.target_ref.as_ref().and_then(|t| t.name.clone());
                merge(&mut out, &a.ip, ready, target, a.node_name.clone(), &ports);
            }
        }
    }
    out
}

/// The addresses of the slices (IPv4 and IPv6 alike), one entry per IP.
pub fn slice_addresses(slices: &[EndpointSlice]) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    for slice in slices {
        let ports: Vec<AddressPort> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(AddressPort {
                    name: p.name.clone().unwrap_or_default(),
                    port: p.port?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                })
            })
            .collect();
        for e in &slice.endpoints {
            // A missing condition means ready (the API's documented reading).
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let target = e.target_ref.as_ref().and_then(|t| t.name.clone());
            for ip in &e.addresses {
                merge(&mut out, ip, ready, target.clone(), e.node_name.clone(), &ports);
            }
        }
    }
    out
}

fn merge(
    out: &mut Vec<Address>,
    ip: &str,
    ready: bool,
    target: Option<String>,
    node: Option<String>,
    ports: &[AddressPort],
) {
    let entry = match out.iter_mut().position(|a| a.ip == ip) {
        Some(i) => &mut out[i],
        None => {
            out.push(Address { ip: ip.to_string(), ready, target, node, ports: Vec::new() });
            let last = out.len() - 1;
            &mut out[last]
        }
    };
    entry.ready &= ready;
    for p in ports {
        if !entry.ports.contains(p) {
            entry.ports.push(p.clone());
        }
    }
    entry.ports.sort();
}

fn matches(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn listing_of(pod: &Pod, addresses: &[Address]) -> Listing {
    let name = pod.metadata.name.as_deref();
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
    let found = addresses.iter().find(|a| match &a.target {
        Some(t) => Some(t.as_str()) == name,
        None => Some(a.ip.as_str()) == ip,
    });
    match found {
        // A pod none of whose ports resolve is listed without ports (upstream's slices do that): it carries nothing.
        Some(a) if a.ports.is_empty() => Listing::Absent,
        Some(a) if a.ready => Listing::Ready,
        Some(_) => Listing::NotReady,
        None => Listing::Absent,
    }
}

/// The latest readiness probe failure recorded for `pod` (message without the "Readiness probe failed: " prefix).
fn probe_failure(pod: &Pod, events: &[Event]) -> Option<String> {
    let name = pod.metadata.name.as_deref()?;
    let uid = pod.metadata.uid.as_deref();
    let when = |e: &Event| {
        e.last_timestamp.as_ref().map(|t| t.0).or_else(|| e.event_time.as_ref().map(|t| t.0)).or_else(|| {
            e.first_timestamp.as_ref().map(|t| t.0).or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
    };
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Unhealthy"))
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod") && e.involved_object.name.as_deref() == Some(name))
        .filter(|e| uid.is_none() || e.involved_object.uid.is_none() || e.involved_object.uid.as_deref() == uid)
        .filter_map(|e| {
            let message = e.message.as_deref()?;
            let detail = message.strip_prefix("Readiness probe failed:")?.trim();
            Some((when(e), detail.to_string()))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, detail)| format!("readiness probe failed: {detail}"))
}

/// Why `pod` is not ready, from the probe failure events, its container statuses or its Ready condition.
fn not_ready_detail(pod: &Pod, events: &[Event]) -> String {
    if let Some(probe) = probe_failure(pod, events) {
        return probe;
    }
    let status = pod.status.clone().unwrap_or_default();
    let specs = pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
    if let Some(c) = status.container_statuses.iter().flatten().find(|c| !c.ready) {
        let state = c.state.clone().unwrap_or_default();
        if let Some(w) = state.waiting {
            let reason = w.reason.unwrap_or_else(|| "Waiting".into());
            return match w.message.filter(|m| !m.is_empty()) {
                Some(m) => format!("container {} is waiting: {reason}: {m}", c.name),
                None => format!("container {} is waiting: {reason}", c.name),
            };
        }
        if let Some(t) = state.terminated {
            let reason = t.reason.unwrap_or_else(|| "Terminated".into());
            return format!("container {} terminated: {reason} (exit code {})", c.name, t.exit_code);
        }
        let probed = specs.iter().any(|s| s.name == c.name && s.readiness_probe.is_some());
        return match probed {
            true => format!("container {}'s readiness probe has not succeeded yet", c.name),
            false => format!("container {} is not ready", c.name),
        };
    }
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready");
    match ready.and_then(|c| c.message.clone().or_else(|| c.reason.clone())) {
        Some(m) => m,
        None => "the Ready condition is not True".into(),
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Resolves each service port's targetPort on `pod`: (resolved ports, missing named ports).
fn resolve_ports(service: &ServiceSummary, pod: &Pod) -> (Vec<(String, i32)>, Vec<Reason>) {
    let containers = pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
    let mut resolved = Vec::new();
    let mut missing = Vec::new();
    for p in &service.ports {
        let label = p.name.clone().unwrap_or_default();
        if let Ok(number) = p.target_port.parse::<i32>() {
            resolved.push((label, number));
            continue;
        }
        let found = containers.iter().flat_map(|c| c.ports.iter().flatten()).find(|cp| {
            cp.name.as_deref() == Some(p.target_port.as_str())
                && cp.protocol.as_deref().unwrap_or("TCP") == p.protocol.as_str()
        });
        match found {
            Some(cp) => resolved.push((label, cp.container_port)),
            None => missing.push(Reason::MissingPort { target: p.target_port.clone(), protocol: p.protocol.clone() }),
        }
    }
    (resolved, missing)
}

fn pod_report(
    service: &ServiceSummary,
    objects: &Objects,
    pod: &Pod,
    slices: &[Address],
    eps: &[Address],
) -> PodReport {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty());
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let (ports, missing) = resolve_ports(service, pod);
    let mut report = PodReport {
        name,
        ip,
        node,
        in_slices: (!objects.slices.is_empty()).then(|| listing_of(pod, slices)),
        in_endpoints: objects.endpoints.as_ref().map(|_| listing_of(pod, eps)),
        ports,
        reasons: Vec::new(),
    };
    let listing = report.listing();
    if listing == Listing::Ready && missing.is_empty() {
        return report;
    }
    let phase = status.phase.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        report.reasons.push(Reason::Terminating);
    }
    if phase == "Succeeded" || phase == "Failed" {
        report.reasons.push(Reason::Finished(phase));
    } else if report.node.is_none() {
        let scheduled = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled");
        let message = scheduled.and_then(|c| c.message.clone()).unwrap_or_else(|| "waiting for the scheduler".into());
        report.reasons.push(Reason::NotScheduled(message));
    } else if report.ip.is_none() {
        report.reasons.push(Reason::NoIp);
    } else if listing != Listing::Ready && !is_ready(pod) && !service.publish_not_ready {
        report.reasons.push(Reason::NotReady(not_ready_detail(pod, &objects.events)));
    }
    report.reasons.extend(missing);
    if report.reasons.is_empty() && listing != Listing::Ready {
        report.reasons.push(Reason::Unlisted);
    }
    report
}

/// Walks the checklist over `objects`.
pub fn diagnose(objects: &Objects) -> Diagnosis {
    let service = summarize(&objects.service);
    let slices = slice_addresses(&objects.slices);
    let eps = objects.endpoints.as_ref().map(endpoints_addresses).unwrap_or_default();
    let mut addresses = if objects.slices.is_empty() { eps.clone() } else { slices.clone() };
    addresses.sort_by(|a, b| (&a.target, &a.ip).cmp(&(&b.target, &b.ip)));
    let mut problems = Vec::new();
    if let Some(target) = &service.external_name {
        if service.type_ == "ExternalName" {
            let backends = Backends::ExternalName(target.clone());
            return Diagnosis { service, backends, addresses: Vec::new(), problems };
        }
    }
    let backends = if service.selector.is_empty() {
        if objects.endpoints.is_none() && objects.slices.is_empty() {
            problems.push(Problem::NoEndpointsObject);
        } else if addresses.is_empty() {
            problems.push(Problem::NoManualAddress);
        } else if !addresses.iter().any(|a| a.ready) {
            problems.push(Problem::NoReadyEndpoint);
        }
        Backends::Manual { has_object: objects.endpoints.is_some(), addresses: addresses.clone() }
    } else {
        let mut matching: Vec<&Pod> = objects.pods.iter().filter(|p| matches(&service.selector, p)).collect();
        matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let pods: Vec<PodReport> = matching.iter().map(|p| pod_report(&service, objects, p, &slices, &eps)).collect();
        if pods.is_empty() {
            problems.push(Problem::NoPodMatches { selector: service.selector_text() });
        }
        for pod in &pods {
            for reason in &pod.reasons {
                let name = pod.name.clone();
                problems.push(match reason {
                    Reason::NotScheduled(message) => Problem::NotScheduled { pod: name, message: message.clone() },
                    Reason::NoIp => Problem::NoIp { pod: name },
                    Reason::Terminating => Problem::Terminating { pod: name },
                    Reason::Finished(phase) => Problem::Finished { pod: name, phase: phase.clone() },
                    Reason::NotReady(detail) => Problem::NotReady { pod: name, detail: detail.clone() },
                    Reason::MissingPort { target, protocol } => {
                        Problem::MissingPort { pod: name, target: target.clone(), protocol: protocol.clone() }
                    }
                    Reason::Unlisted => Problem::Unlisted { pod: name },
                });
            }
        }
        let pod_names: Vec<&str> = matching.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        let pod_ips: Vec<&str> = pods.iter().filter_map(|p| p.ip.as_deref()).collect();
        let strays: Vec<Address> = addresses
            .iter()
            .filter(|a| match &a.target {
                Some(t) => !pod_names.contains(&t.as_str()),
                None => !pod_ips.contains(&a.ip.as_str()),
            })
            .cloned()
            .collect();
        for s in &strays {
            problems.push(Problem::Stray { ip: s.ip.clone(), target: s.target.clone() });
        }
        if !pods.is_empty() && !addresses.iter().any(|a| a.ready) {
            problems.push(Problem::NoReadyEndpoint);
        }
        Backends::Selector { pods, strays }
    };
    Diagnosis { service, backends, addresses, problems }
}
