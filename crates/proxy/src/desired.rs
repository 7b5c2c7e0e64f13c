//! Pure desired state: which endpoints serve a Service port (upstream's `CategorizeEndpoints`) and the chains,
//! sets and map elements that implement it. No IO.

use std::collections::BTreeMap;

use crate::model::{EndpointInfo, Ipv4Net, Protocol, ServiceInfo, ServicePortName, TrafficPolicy};
use crate::ruleset::{
    Action, BaseHook, Chain, ChainType, Fragment, Hook, Key, MapId, MapVerdict, Match, Rule, Ruleset, SetSpec,
};

/// Chain that sends every packet it sees to a fresh TCP reset / ICMP port-unreachable.
pub const REJECT_CHAIN: &str = "reject-chain";
/// Chain that marks a packet for masquerading in postrouting.
pub const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";
/// Dispatch chain run from the nat base chains.
pub const SERVICES_CHAIN: &str = "services";
/// No-endpoint check run from the filter base chains.
pub const ENDPOINTS_CHECK_CHAIN: &str = "endpoints-check";
/// Postrouting chain that masquerades marked packets.
pub const MASQUERADING_CHAIN: &str = "masquerading";
/// Upstream's masquerade bit.
pub const DEFAULT_MASQUERADE_MARK: u32 = 0x4000;

/// How the proxy's rules treat this node's network; built once by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The whole cluster's pod network. ClusterIP traffic from outside it is masqueraded, and pod traffic to an
    /// external address of an `externalTrafficPolicy: Local` Service is short-circuited to all endpoints.
    /// `None`: neither happens.
    pub cluster_cidr: Option<Ipv4Net>,
    /// Masquerade service traffic from this node's pods that is sent back out of their own bridge (needed when
    /// bridged replies bypass the host's conntrack, i.e. without `br_netfilter`).
    pub bridge_hairpin: Option<BridgeHairpin>,
    /// The packet-mark bit used to request masquerading.
    pub masquerade_mark: u32,
    /// `service.kubernetes.io/service-proxy-name` value this proxy serves (`None`: only unlabelled Services).
    pub proxy_name: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            cluster_cidr: None,
            bridge_hairpin: None,
            masquerade_mark: DEFAULT_MASQUERADE_MARK,
            proxy_name: None,
        }
    }
}

/// This node's pod bridge and the pod CIDR behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeHairpin {
    pub bridge: String,
    pub pod_cidr: Ipv4Net,
}

/// The endpoints a Service port may use on this node (spec §5.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for `Cluster` policy: ready ones, else serving-and-terminating ones. Empty if no policy uses them.
    pub cluster: Vec<EndpointInfo>,
    /// Endpoints on this node for `Local` policy (same fallback). Empty if no policy uses them.
    pub local: Vec<EndpointInfo>,
    /// Whether the port has any usable endpoint anywhere (decides reject versus drop).
    pub has_any: bool,
}

/// Whether some policy of `service` sends traffic to cluster-wide endpoints. External `Local` traffic still
/// needs them to short-circuit pod and host traffic.
pub fn uses_cluster_endpoints(service: &ServiceInfo) -> bool {
    service.internal_policy == TrafficPolicy::Cluster || service.externally_accessible()
}

/// Whether some policy of `service` restricts traffic to this node's endpoints.
pub fn uses_local_endpoints(service: &ServiceInfo) -> bool {
    service.internal_policy == TrafficPolicy::Local
        || (service.external_policy == TrafficPolicy::Local && service.externally_accessible())
}

fn usable<'a>(endpoints: impl Iterator<Item = &'a EndpointInfo> + Clone) -> Vec<EndpointInfo> {
    let ready: Vec<EndpointInfo> = endpoints.clone().filter(|e| e.ready).cloned().collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints.filter(|e| e.serving_terminating()).cloned().collect()
}

/// Splits `endpoints` into the cluster and local sets for `service` on node `node_name`.
pub fn categorize(service: &ServiceInfo, endpoints: &[EndpointInfo], node_name: &str) -> Categorized {
    let all = usable(endpoints.iter());
    let cluster = if uses_cluster_endpoints(service) { all.clone() } else { Vec::new() };
    let local = match uses_local_endpoints(service) {
        true => usable(endpoints.iter().filter(|e| e.is_local(node_name))),
        false => Vec::new(),
    };
    Categorized { cluster, local, has_any: !all.is_empty() }
}

fn base_name(name: &ServicePortName, service: &ServiceInfo) -> String {
    // Namespace, name and port name are DNS labels ([a-z0-9-]), so '/' separates them unambiguously; an empty
    // port name becomes '_', which no port name can be.
    let port = if name.port.is_empty() { "_" } else { name.port.as_str() };
    format!("{}/{}/{}/{}", name.service.namespace, name.service.name, service.protocol.as_str(), port)
}

/// Name of the chain balancing over cluster-wide endpoints.
pub fn cluster_chain_name(service: &ServiceInfo) -> String {
    format!("svc-{}", base_name(&service.name, service))
}

/// Name of the chain balancing over this node's endpoints.
pub fn local_chain_name(service: &ServiceInfo) -> String {
    format!("local-{}", base_name(&service.name, service))
}

/// Name of the chain handling external (NodePort, externalIP, LB) traffic.
pub fn external_chain_name(service: &ServiceInfo) -> String {
    format!("ext-{}", base_name(&service.name, service))
}

/// Name of one endpoint's DNAT chain.
pub fn endpoint_chain_name(service: &ServiceInfo, endpoint: &EndpointInfo) -> String {
    format!("ep-{}__{}/{}", base_name(&service.name, service), endpoint.ip, endpoint.port)
}

/// Name of one endpoint's affinity set; it encodes the timeout, so changing the timeout replaces the set.
pub fn affinity_set_name(service: &ServiceInfo, endpoint: &EndpointInfo, timeout: u32) -> String {
    format!("aff-{timeout}-{}__{}/{}", base_name(&service.name, service), endpoint.ip, endpoint.port)
}

/// The fixed part of the table: base chains, dispatch, no-endpoint checks and masquerading.
pub fn static_chains(config: &ProxyConfig) -> BTreeMap<String, Chain> {
    let mut chains = BTreeMap::new();
    let mut base = |name: &str, chain_type, hook, priority, rules: Vec<Rule>| {
        chains.insert(name.to_string(), Chain { hook: Some(BaseHook { chain_type, hook, priority }), rules });
    };
    let check = || vec![Rule::new(vec![Match::CtStateNew], Action::Jump(ENDPOINTS_CHECK_CHAIN.into()))];
    // Filter chains look at the destination after DNAT: a packet still addressed to a service after the nat
    // chains had no usable endpoint. (Input and forward always run after prerouting's DNAT; output must run
    // after the nat output chain at -100.)
    base("filter-input", ChainType::Filter, Hook::Input, -90, check());
    base("filter-forward", ChainType::Filter, Hook::Forward, -90, check());
    base("filter-output", ChainType::Filter, Hook::Output, -90, check());
    let dispatch = || vec![Rule::always(Action::Jump(SERVICES_CHAIN.into()))];
    base("nat-prerouting", ChainType::Nat, Hook::Prerouting, -100, dispatch());
    base("nat-output", ChainType::Nat, Hook::Output, -100, dispatch());
    base(
        "nat-postrouting",
        ChainType::Nat,
        Hook::Postrouting,
        100,
        vec![Rule::always(Action::Jump(MASQUERADING_CHAIN.into()))],
    );
    let mut regular = |name: &str, rules: Vec<Rule>| {
        chains.insert(name.to_string(), Chain { hook: None, rules });
    };
    let nodeport = vec![Match::FibDaddrLocal, Match::DaddrNotLoopback];
    regular(
        SERVICES_CHAIN,
        vec![
            Rule::always(Action::VmapAddr(MapId::ServiceIps)),
            Rule::new(nodeport.clone(), Action::VmapPort(MapId::ServiceNodePorts)),
        ],
    );
    regular(
        ENDPOINTS_CHECK_CHAIN,
        vec![
            Rule::always(Action::VmapAddr(MapId::NoEndpointServices)),
            Rule::new(nodeport, Action::VmapPort(MapId::NoEndpointNodePorts)),
        ],
    );
    regular(
        REJECT_CHAIN,
        vec![Rule::new(vec![Match::L4Proto(Protocol::Tcp)], Action::RejectTcpReset), Rule::always(Action::Reject)],
    );
    regular(MARK_MASQ_CHAIN, vec![Rule::always(Action::MarkSet(config.masquerade_mark))]);
    let mut masquerading = Vec::new();
    if let Some(hairpin) = &config.bridge_hairpin {
        masquerading.push(Rule::new(
            vec![Match::CtStatusDnat, Match::SaddrIn(hairpin.pod_cidr), Match::OifName(hairpin.bridge.clone())],
            Action::Masquerade,
        ));
    }
    masquerading.push(Rule::new(vec![Match::MarkClear(config.masquerade_mark)], Action::Return));
    masquerading.push(Rule::always(Action::MarkToggle(config.masquerade_mark)));
    masquerading.push(Rule::always(Action::Masquerade));
    regular(MASQUERADING_CHAIN, masquerading);
    chains
}

/// An empty table for `config` (no Services yet).
pub fn empty_ruleset(config: &ProxyConfig) -> Ruleset {
    Ruleset::new(static_chains(config))
}

/// Everything one Service port contributes to the table, given its endpoints and this node's name.
pub fn service_fragment(
    config: &ProxyConfig,
    node_name: &str,
    service: &ServiceInfo,
    endpoints: &[EndpointInfo],
) -> Fragment {
    let mut fragment = Fragment::default();
    let cat = categorize(service, endpoints, node_name);
    let mark_masq = || Action::Jump(MARK_MASQ_CHAIN.to_string());
    let cluster_chain = cluster_chain_name(service);
    let local_chain = local_chain_name(service);
    let ext_chain = external_chain_name(service);
    let internal_local = service.internal_policy == TrafficPolicy::Local;
    let external_local = service.external_policy == TrafficPolicy::Local;

    let has_internal = cat.has_any && (!internal_local || !cat.local.is_empty());
    let has_external = cat.has_any && (!external_local || !cat.local.is_empty());
    let internal_chain = if internal_local { &local_chain } else { &cluster_chain };
    let no_endpoint = |usable: bool| match usable {
        true => MapVerdict::Drop,
        false => MapVerdict::Goto(REJECT_CHAIN.to_string()),
    };
    let proto = service.protocol;

    // Dispatch and no-endpoint elements.
    for ip in &service.cluster_ips {
        let key = Key::Addr(*ip, proto, service.port);
        if has_internal {
            fragment.elements.insert((MapId::ServiceIps, key), MapVerdict::Goto(internal_chain.clone()));
        } else {
            fragment.elements.insert((MapId::NoEndpointServices, key), no_endpoint(cat.has_any));
        }
    }
    for ip in service.external_ips.iter().chain(&service.load_balancer_ips) {
        let key = Key::Addr(*ip, proto, service.port);
        if cat.has_any {
            fragment.elements.insert((MapId::ServiceIps, key), MapVerdict::Goto(ext_chain.clone()));
        }
        if !has_external {
            fragment.elements.insert((MapId::NoEndpointServices, key), no_endpoint(cat.has_any));
        }
    }
    if let Some(node_port) = service.node_port {
        let key = Key::Port(proto, node_port);
        if cat.has_any {
            fragment.elements.insert((MapId::ServiceNodePorts, key), MapVerdict::Goto(ext_chain.clone()));
        }
        if !has_external {
            fragment.elements.insert((MapId::NoEndpointNodePorts, key), no_endpoint(cat.has_any));
        }
    }

    // Policy chains.
    let masq_outside = |rules: &mut Vec<Rule>| {
        if let Some(cidr) = config.cluster_cidr {
            for ip in &service.cluster_ips {
                let dest = Match::Dest { ip: *ip, protocol: proto, port: service.port };
                rules.push(Rule::new(vec![dest, Match::SaddrNotIn(cidr)], mark_masq()));
            }
        }
    };
    let affinity = service.affinity_seconds;
    // Endpoint chains exist to mark hairpin traffic and to record affinity. When the bridge rule already
    // masquerades hairpin traffic and there is no affinity, the balancing rules DNAT directly: one rule per
    // endpoint instead of a chain and three rules.
    let inline = config.bridge_hairpin.is_some() && affinity.is_none();
    let balance = |rules: &mut Vec<Rule>, endpoints: &[EndpointInfo]| {
        if let Some(timeout) = affinity {
            for ep in endpoints {
                let set = affinity_set_name(service, ep, timeout);
                rules.push(Rule::new(vec![Match::SaddrInSet(set)], Action::Goto(endpoint_chain_name(service, ep))));
            }
        }
        // Rule i is taken with probability 1/(n-i) (each rule draws afresh), which picks each endpoint with
        // probability 1/n. (A `numgen … vmap { … }` would be one rule, but each such anonymous map makes the
        // kernel scan the whole pending transaction when it is bound, which is quadratic in a full write.)
        let n = endpoints.len();
        for (i, ep) in endpoints.iter().enumerate() {
            let action = match inline {
                true => Action::Dnat { protocol: proto, ip: ep.ip, port: ep.port },
                false => Action::Goto(endpoint_chain_name(service, ep)),
            };
            let draw = match i + 1 == n {
                true => Vec::new(),
                false => vec![Match::Numgen { modulus: u32::try_from(n - i).unwrap_or(u32::MAX) }],
            };
            rules.push(Rule::new(draw, action));
        }
    };
    if !cat.cluster.is_empty() {
        let mut rules = Vec::new();
        if has_internal && !internal_local {
            masq_outside(&mut rules);
        }
        balance(&mut rules, &cat.cluster);
        fragment.chains.insert(cluster_chain.clone(), rules);
    }
    if !cat.local.is_empty() {
        let mut rules = Vec::new();
        if has_internal && internal_local {
            masq_outside(&mut rules);
        }
        balance(&mut rules, &cat.local);
        fragment.chains.insert(local_chain.clone(), rules);
    }

    // External chain.
    if cat.has_any && service.externally_accessible() {
        let mut rules = Vec::new();
        if !external_local {
            rules.push(Rule::always(mark_masq()));
            rules.push(Rule::always(Action::Goto(cluster_chain.clone())));
        } else {
            if let Some(cidr) = config.cluster_cidr {
                // Pod traffic to an external address behaves as if it went out to the load balancer and back.
                rules.push(Rule::new(vec![Match::SaddrIn(cidr)], Action::Goto(cluster_chain.clone())));
            }
            // The host's own traffic has a local source address that the endpoint cannot answer directly.
            rules.push(Rule::new(vec![Match::FibSaddrLocal], mark_masq()));
            rules.push(Rule::new(vec![Match::FibSaddrLocal], Action::Goto(cluster_chain.clone())));
            if has_external {
                rules.push(Rule::always(Action::Goto(local_chain.clone())));
            }
        }
        fragment.chains.insert(ext_chain, rules);
    }

    // Endpoint chains and affinity sets.
    if inline {
        return fragment;
    }
    let mut reachable: Vec<&EndpointInfo> = cat.cluster.iter().chain(&cat.local).collect();
    reachable.sort();
    reachable.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    for ep in reachable {
        let mut rules = vec![Rule::new(vec![Match::SaddrIs(ep.ip)], mark_masq())];
        if let Some(timeout) = affinity {
            let set = affinity_set_name(service, ep, timeout);
            rules.push(Rule::always(Action::UpdateAffinity(set.clone())));
            fragment.sets.insert(set, SetSpec { timeout_seconds: timeout });
        }
        rules.push(Rule::always(Action::Dnat { protocol: proto, ip: ep.ip, port: ep.port }));
        fragment.chains.insert(endpoint_chain_name(service, ep), rules);
    }
    fragment
}

/// The whole table for the given Service ports and their endpoints (a full recomputation; the proxier
/// recomputes only changed Services).
pub fn desired<'a>(
    config: &ProxyConfig,
    node_name: &str,
    services: impl IntoIterator<Item = (&'a ServiceInfo, &'a [EndpointInfo])>,
) -> Ruleset {
    let mut ruleset = empty_ruleset(config);
    let mut changes = crate::ruleset::Changes::discard();
    for (service, endpoints) in services {
        let fragment = service_fragment(config, node_name, service, endpoints);
        ruleset.set_port(&service.name, Some(fragment), &mut changes);
    }
    ruleset
}
