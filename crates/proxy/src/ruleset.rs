//! The desired nftables table as a value: chains of structured rules, dispatch verdict maps and affinity sets,
//! grouped per Service port so that one Service's change is diffed (and applied) without touching the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::model::{Ipv4Net, Protocol, ServiceName, ServicePortName};

/// Netfilter hook of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

/// Type of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

/// What attaches a base chain to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseHook {
    pub chain_type: ChainType,
    pub hook: Hook,
    pub priority: i32,
}

/// The four dispatch verdict maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapId {
    /// `ipv4_addr . inet_proto . inet_service : verdict`: ClusterIPs, externalIPs and LB IPs.
    ServiceIps,
    /// `inet_proto . inet_service : verdict`: NodePorts on local addresses.
    ServiceNodePorts,
    /// Like `ServiceIps`, consulted in filter chains: drop or reject for ports without usable endpoints.
    NoEndpointServices,
    /// Like `ServiceNodePorts`, for NodePorts without usable endpoints.
    NoEndpointNodePorts,
}

impl MapId {
    pub const ALL: [MapId; 4] =
        [MapId::ServiceIps, MapId::ServiceNodePorts, MapId::NoEndpointServices, MapId::NoEndpointNodePorts];

    pub fn name(self) -> &'static str {
        match self {
            MapId::ServiceIps => "service-ips",
            MapId::ServiceNodePorts => "service-nodeports",
            MapId::NoEndpointServices => "no-endpoint-services",
            MapId::NoEndpointNodePorts => "no-endpoint-nodeports",
        }
    }

    /// Whether keys carry an address (`Key::Addr`) or only a port (`Key::Port`).
    pub fn keyed_by_addr(self) -> bool {
        matches!(self, MapId::ServiceIps | MapId::NoEndpointServices)
    }
}

/// A verdict-map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Addr(Ipv4Addr, Protocol, u16),
    Port(Protocol, u16),
}

/// A verdict-map value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapVerdict {
    Goto(String),
    Drop,
}

/// A dynamic set of client addresses with a timeout (session affinity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub timeout_seconds: u32,
}

/// A match expression; a rule's matches are ANDed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `ct state new`
    CtStateNew,
    /// `ip daddr A meta l4proto P th dport N`
    Dest { ip: Ipv4Addr, protocol: Protocol, port: u16 },
    /// `ip saddr A`
    SaddrIs(Ipv4Addr),
    /// `ip saddr N`
    SaddrIn(Ipv4Net),
    /// `ip saddr != N`
    SaddrNotIn(Ipv4Net),
    /// `ip saddr @set`
    SaddrInSet(String),
    /// `fib saddr type local`
    FibSaddrLocal,
    /// `fib daddr type local`
    FibDaddrLocal,
    /// `ip daddr != 127.0.0.0/8`
    DaddrNotLoopback,
    /// `oifname "name"`
    OifName(String),
    /// `ct status dnat`
    CtStatusDnat,
    /// `meta mark & M == 0`
    MarkClear(u32),
    /// `meta l4proto P`
    L4Proto(Protocol),
    /// `numgen random mod N 0`: a fresh random draw in `0..N` is 0.
    Numgen { modulus: u32 },
}

/// What a rule does when its matches hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Jump(String),
    Goto(String),
    /// `ip daddr . meta l4proto . th dport vmap @map`
    VmapAddr(MapId),
    /// `meta l4proto . th dport vmap @map`
    VmapPort(MapId),
    /// `update @set { ip saddr }` (non-terminal)
    UpdateAffinity(String),
    /// `meta l4proto P dnat to A:N`
    Dnat {
        protocol: Protocol,
        ip: Ipv4Addr,
        port: u16,
    },
    /// `meta mark set meta mark | M` (non-terminal)
    MarkSet(u32),
    /// `meta mark set meta mark ^ M` (non-terminal)
    MarkToggle(u32),
    /// `masquerade fully-random`
    Masquerade,
    /// `reject` (ICMP port unreachable)
    Reject,
    /// `reject with tcp reset` (only valid after a TCP match). A reset, unlike an ICMP error, is not lost when
    /// it races the connecting socket's lock, so TCP clients always see "connection refused" at once.
    RejectTcpReset,
    Drop,
    Return,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
}

impl Rule {
    pub fn new(matches: Vec<Match>, action: Action) -> Rule {
        Rule { matches, action }
    }
    pub fn always(action: Action) -> Rule {
        Rule { matches: Vec::new(), action }
    }

    /// Chains this rule refers to.
    pub fn chain_refs(&self) -> Vec<&str> {
        match &self.action {
            Action::Jump(c) | Action::Goto(c) => vec![c.as_str()],
            _ => Vec::new(),
        }
    }

    /// Sets this rule refers to.
    pub fn set_refs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .matches
            .iter()
            .filter_map(|m| match m {
                Match::SaddrInSet(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if let Action::UpdateAffinity(s) = &self.action {
            out.push(s);
        }
        out
    }
}

/// A chain of the table; base chains carry a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub hook: Option<BaseHook>,
    pub rules: Vec<Rule>,
}

/// Everything one Service port contributes to the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    pub chains: BTreeMap<String, Vec<Rule>>,
    pub sets: BTreeMap<String, SetSpec>,
    pub elements: BTreeMap<(MapId, Key), MapVerdict>,
}

/// One step of an incremental update. Ops are applied in [`Op::phase`] order (see [`sort_ops`]) so that every
/// object exists before it is referenced and is unreferenced before it is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    AddSet {
        name: String,
        spec: SetSpec,
    },
    AddChain {
        name: String,
    },
    /// Flush the chain, then add these rules.
    FillChain {
        name: String,
        rules: Vec<Rule>,
    },
    DeleteElement {
        map: MapId,
        key: Key,
    },
    AddElement {
        map: MapId,
        key: Key,
        verdict: MapVerdict,
    },
    FlushChain {
        name: String,
    },
    DeleteChain {
        name: String,
    },
    DeleteSet {
        name: String,
    },
}

impl Op {
    pub fn phase(&self) -> u8 {
        match self {
            Op::AddSet { .. } => 0,
            Op::AddChain { .. } => 1,
            Op::FillChain { .. } => 2,
            Op::DeleteElement { .. } => 3,
            Op::AddElement { .. } => 4,
            Op::FlushChain { .. } => 5,
            Op::DeleteChain { .. } => 6,
            Op::DeleteSet { .. } => 7,
        }
    }
}

/// Orders ops by phase, keeping the relative order inside a phase.
pub fn sort_ops(ops: &mut [Op]) {
    ops.sort_by_key(Op::phase);
}

/// Accumulates ops for one transaction, coalescing element changes so that one key gets at most one delete and
/// one add however many Services touched it.
#[derive(Debug, Default)]
pub struct Changes {
    ops: Vec<Op>,
    elements: BTreeMap<(MapId, Key), (Option<MapVerdict>, Option<MapVerdict>)>,
    discard: bool,
}

impl Changes {
    /// A sink that records nothing (for building a table that will be written whole).
    pub fn discard() -> Changes {
        Changes { discard: true, ..Changes::default() }
    }

    pub fn push(&mut self, op: Op) {
        if !self.discard {
            self.ops.push(op);
        }
    }

    fn element(&mut self, map: MapId, key: Key, before: Option<MapVerdict>, after: Option<MapVerdict>) {
        if self.discard {
            return;
        }
        self.elements.entry((map, key)).and_modify(|e| e.1 = after.clone()).or_insert((before, after));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.elements.values().all(|(b, a)| b == a)
    }

    /// The ops in apply order.
    pub fn into_ops(self) -> Vec<Op> {
        let mut ops = self.ops;
        for ((map, key), (before, after)) in self.elements {
            if before == after {
                continue;
            }
            if before.is_some() {
                ops.push(Op::DeleteElement { map, key });
            }
            if let Some(verdict) = after {
                ops.push(Op::AddElement { map, key, verdict });
            }
        }
        sort_ops(&mut ops);
        ops
    }
}

/// The whole desired table: fixed base chains plus one [`Fragment`] per Service port.
///
/// Two Service ports may claim the same map key (two Services listing one externalIP and port); the claim of the
/// smallest Service port name wins and the others take over when it goes away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    statics: BTreeMap<String, Chain>,
    fragments: BTreeMap<ServicePortName, Fragment>,
    claims: BTreeMap<(MapId, Key), BTreeMap<ServicePortName, MapVerdict>>,
}

impl Ruleset {
    /// A table with only the fixed chains.
    pub fn new(statics: BTreeMap<String, Chain>) -> Ruleset {
        Ruleset { statics, ..Ruleset::default() }
    }

    /// The fixed chains (base chains and helpers), created only by a full write.
    pub fn statics(&self) -> &BTreeMap<String, Chain> {
        &self.statics
    }

    pub fn fragments(&self) -> &BTreeMap<ServicePortName, Fragment> {
        &self.fragments
    }

    pub fn fragment(&self, name: &ServicePortName) -> Option<&Fragment> {
        self.fragments.get(name)
    }

    /// Number of Service ports programmed.
    pub fn service_ports(&self) -> usize {
        self.fragments.len()
    }

    /// Every non-base chain that belongs to a Service, with its rules.
    pub fn service_chains(&self) -> impl Iterator<Item = (&str, &[Rule])> {
        self.fragments.values().flat_map(|f| f.chains.iter().map(|(n, r)| (n.as_str(), r.as_slice())))
    }

    /// Every affinity set.
    pub fn sets(&self) -> impl Iterator<Item = (&str, SetSpec)> {
        self.fragments.values().flat_map(|f| f.sets.iter().map(|(n, s)| (n.as_str(), *s)))
    }

    /// The map elements actually programmed (one winner per key).
    pub fn elements(&self) -> impl Iterator<Item = (MapId, Key, &MapVerdict)> {
        self.claims.iter().filter_map(|((map, key), claimants)| claimants.values().next().map(|v| (*map, *key, v)))
    }

    /// The programmed element for one key.
    pub fn element(&self, map: MapId, key: Key) -> Option<&MapVerdict> {
        self.claims.get(&(map, key)).and_then(|c| c.values().next())
    }

    /// Replaces every port of `service` by `ports` (empty: the Service is gone), recording the needed ops.
    pub fn set_service(
        &mut self,
        service: &ServiceName,
        ports: Vec<(ServicePortName, Fragment)>,
        changes: &mut Changes,
    ) {
        let start = ServicePortName { service: service.clone(), port: String::new() };
        let old_names: Vec<ServicePortName> =
            self.fragments.range(start..).take_while(|(k, _)| k.service == *service).map(|(k, _)| k.clone()).collect();
        let mut new_ports: BTreeMap<ServicePortName, Fragment> = ports.into_iter().collect();
        let names: BTreeSet<ServicePortName> = old_names.into_iter().chain(new_ports.keys().cloned()).collect();
        for name in names {
            let old = self.fragments.remove(&name);
            let new = new_ports.remove(&name);
            self.diff_fragment(&name, old.as_ref(), new.as_ref(), changes);
            if let Some(fragment) = new {
                self.fragments.insert(name, fragment);
            }
        }
    }

    /// Replaces one Service port's fragment (`None`: remove it), recording the needed ops.
    pub fn set_port(&mut self, name: &ServicePortName, fragment: Option<Fragment>, changes: &mut Changes) {
        let old = self.fragments.remove(name);
        self.diff_fragment(name, old.as_ref(), fragment.as_ref(), changes);
        if let Some(fragment) = fragment {
            self.fragments.insert(name.clone(), fragment);
        }
    }

    fn diff_fragment(
        &mut self,
        name: &ServicePortName,
        old: Option<&Fragment>,
        new: Option<&Fragment>,
        changes: &mut Changes,
    ) {
        let empty = Fragment::default();
        let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
        if old == new {
            return;
        }
        if !changes.discard {
            diff_chains(&old.chains, &new.chains, changes);
            diff_sets(&old.sets, &new.sets, changes);
        }
        let keys: BTreeSet<&(MapId, Key)> = old.elements.keys().chain(new.elements.keys()).collect();
        for key in keys {
            let (before_claim, after_claim) = (old.elements.get(key), new.elements.get(key));
            if before_claim == after_claim {
                continue;
            }
            let before = self.element(key.0, key.1).cloned();
            let claimants = self.claims.entry(*key).or_default();
            match after_claim {
                Some(verdict) => {
                    claimants.insert(name.clone(), verdict.clone());
                }
                None => {
                    claimants.remove(name);
                }
            }
            let after = claimants.values().next().cloned();
            if claimants.is_empty() {
                self.claims.remove(key);
            }
            changes.element(key.0, key.1, before, after);
        }
    }

    /// The ops turning `old` into `new` (a full comparison; the proxier uses [`Ruleset::set_service`] instead).
    /// The fixed chains are assumed equal.
    pub fn diff(old: &Ruleset, new: &Ruleset) -> Vec<Op> {
        let mut changes = Changes::default();
        let (mut old_part, mut new_part) = (Fragment::default(), Fragment::default());
        let names: BTreeSet<&ServicePortName> = old.fragments.keys().chain(new.fragments.keys()).collect();
        for name in names {
            let (o, n) = (old.fragments.get(name), new.fragments.get(name));
            if o == n {
                continue;
            }
            for (part, fragment) in [(&mut old_part, o), (&mut new_part, n)] {
                if let Some(f) = fragment {
                    part.chains.extend(f.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
                    part.sets.extend(f.sets.iter().map(|(k, v)| (k.clone(), *v)));
                }
            }
        }
        diff_chains(&old_part.chains, &new_part.chains, &mut changes);
        diff_sets(&old_part.sets, &new_part.sets, &mut changes);
        let keys: BTreeSet<&(MapId, Key)> = old.claims.keys().chain(new.claims.keys()).collect();
        for key in keys {
            let before = old.element(key.0, key.1).cloned();
            let after = new.element(key.0, key.1).cloned();
            if before != after {
                changes.element(key.0, key.1, before, after);
            }
        }
        changes.into_ops()
    }
}

fn diff_chains(old: &BTreeMap<String, Vec<Rule>>, new: &BTreeMap<String, Vec<Rule>>, changes: &mut Changes) {
    for (name, rules) in new {
        match old.get(name) {
            None => {
                changes.push(Op::AddChain { name: name.clone() });
                changes.push(Op::FillChain { name: name.clone(), rules: rules.clone() });
            }
            Some(old_rules) if old_rules != rules => {
                changes.push(Op::FillChain { name: name.clone(), rules: rules.clone() })
            }
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        changes.push(Op::FlushChain { name: name.clone() });
        changes.push(Op::DeleteChain { name: name.clone() });
    }
}

fn diff_sets(old: &BTreeMap<String, SetSpec>, new: &BTreeMap<String, SetSpec>, changes: &mut Changes) {
    // A set's name encodes its spec (see `desired::affinity_set_name`), so a changed spec is a new name.
    for (set, spec) in new.iter().filter(|(s, _)| !old.contains_key(*s)) {
        changes.push(Op::AddSet { name: set.clone(), spec: *spec });
    }
    for set in old.keys().filter(|s| !new.contains_key(*s)) {
        changes.push(Op::DeleteSet { name: set.clone() });
    }
}
