//! A fake data plane that models the table the nft backend would hold (chains, verdict maps, dynamic sets with
//! their members) and a packet tracer that walks it, so Service semantics are tested without root.
//!
//! Incremental ops are checked the way the kernel checks them: a referenced chain must exist, a deleted chain
//! must be empty and unreferenced, an element may not change its verdict by `add`, a missing element may not be
//! deleted. A transaction is atomic: on error nothing changes.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::dataplane::{Dataplane, DataplaneError, Transaction};
use crate::model::{Ipv4Net, Protocol};
use crate::ruleset::{Action, BaseHook, Hook, Key, MapId, MapVerdict, Match, Op, Rule, Ruleset, SetSpec};

/// The random source behind `numgen random`.
pub trait Numgen: Send {
    /// A value in `0..modulus` (`modulus > 0`).
    fn next(&mut self, modulus: u32) -> u32;
}

/// A deterministic pseudo-random source (xorshift64*).
#[derive(Debug, Clone)]
pub struct SeededNumgen(u64);

impl SeededNumgen {
    pub fn new(seed: u64) -> SeededNumgen {
        SeededNumgen(seed | 1)
    }
}

impl Numgen for SeededNumgen {
    fn next(&mut self, modulus: u32) -> u32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % u64::from(modulus.max(1))) as u32
    }
}

/// Returns the given values in turn (each taken modulo the modulus), cycling.
#[derive(Debug, Clone)]
pub struct SequenceNumgen {
    values: Vec<u32>,
    next: usize,
}

impl SequenceNumgen {
    pub fn new(values: Vec<u32>) -> SequenceNumgen {
        SequenceNumgen { values, next: 0 }
    }
}

impl Numgen for SequenceNumgen {
    fn next(&mut self, modulus: u32) -> u32 {
        let value = self.values.get(self.next % self.values.len().max(1)).copied().unwrap_or(0);
        self.next += 1;
        value % modulus.max(1)
    }
}

/// Where a traced packet comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A pod on this node: arrives through the bridge (prerouting).
    Pod,
    /// A process on this node (output hook).
    Host,
    /// Another machine: arrives on an uplink (prerouting).
    External,
}

/// The first packet of a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: Protocol,
    pub dport: u16,
    pub from: Origin,
}

impl Packet {
    pub fn tcp(from: Origin, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Packet {
        Packet { src, dst, protocol: Protocol::Tcp, dport, from }
    }
    pub fn udp(from: Origin, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Packet {
        Packet { src, dst, protocol: Protocol::Udp, dport, from }
    }
}

/// What the table does to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten to `ip:port`; `masquerade` when its source is also rewritten.
    Dnat { ip: Ipv4Addr, port: u16, masquerade: bool },
    /// Refused at once (TCP reset / ICMP port unreachable).
    Reject,
    /// Silently dropped.
    Drop,
    /// Not service traffic: passed unchanged.
    Accept,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FakeChain {
    hook: Option<BaseHook>,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct FakeSet {
    spec: SetSpec,
    /// Member address → expiry (fake clock, seconds).
    members: HashMap<Ipv4Addr, u64>,
}

#[derive(Clone, Debug, Default)]
struct FakeTable {
    chains: HashMap<String, FakeChain>,
    sets: HashMap<String, FakeSet>,
    maps: BTreeMap<MapId, BTreeMap<Key, MapVerdict>>,
    chain_refs: HashMap<String, usize>,
    set_refs: HashMap<String, usize>,
}

fn rejected(op: &Op, reason: &str) -> DataplaneError {
    DataplaneError::Rejected { op: format!("{op:?}"), reason: reason.to_string() }
}

impl FakeTable {
    fn from_ruleset(ruleset: &Ruleset) -> FakeTable {
        let mut table = FakeTable::default();
        for (name, chain) in ruleset.statics() {
            table.chains.insert(name.clone(), FakeChain { hook: chain.hook, rules: chain.rules.clone() });
        }
        for (name, rules) in ruleset.service_chains() {
            table.chains.insert(name.to_string(), FakeChain { hook: None, rules: rules.to_vec() });
        }
        for (name, spec) in ruleset.sets() {
            table.sets.insert(name.to_string(), FakeSet { spec, members: HashMap::new() });
        }
        for (map, key, verdict) in ruleset.elements() {
            table.maps.entry(map).or_default().insert(key, verdict.clone());
        }
        let chains: Vec<Rule> = table.chains.values().flat_map(|c| c.rules.iter().cloned()).collect();
        for rule in &chains {
            table.count_refs(rule, true);
        }
        let verdicts: Vec<MapVerdict> = table.maps.values().flat_map(|m| m.values().cloned()).collect();
        for verdict in &verdicts {
            table.count_verdict(verdict, true);
        }
        table
    }

    fn count_refs(&mut self, rule: &Rule, add: bool) {
        for chain in rule.chain_refs() {
            bump(&mut self.chain_refs, chain, add);
        }
        for set in rule.set_refs() {
            bump(&mut self.set_refs, set, add);
        }
    }

    fn count_verdict(&mut self, verdict: &MapVerdict, add: bool) {
        if let MapVerdict::Goto(chain) = verdict {
            bump(&mut self.chain_refs, chain, add);
        }
    }

    fn check_rule_targets(&self, op: &Op, rule: &Rule) -> Result<(), DataplaneError> {
        if rule.chain_refs().iter().any(|c| !self.chains.contains_key(*c)) {
            return Err(rejected(op, "rule refers to a missing chain"));
        }
        if rule.set_refs().iter().any(|s| !self.sets.contains_key(*s)) {
            return Err(rejected(op, "rule refers to a missing set"));
        }
        Ok(())
    }

    fn flush(&mut self, name: &str) {
        let rules = self.chains.get_mut(name).map(|c| std::mem::take(&mut c.rules)).unwrap_or_default();
        for rule in &rules {
            self.count_refs(rule, false);
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), DataplaneError> {
        match op {
            Op::AddSet { name, spec } => match self.sets.get(name) {
                Some(existing) if existing.spec != *spec => return Err(rejected(op, "set exists with another spec")),
                Some(_) => {}
                None => {
                    self.sets.insert(name.clone(), FakeSet { spec: *spec, members: HashMap::new() });
                }
            },
            Op::AddChain { name } => {
                self.chains.entry(name.clone()).or_insert(FakeChain { hook: None, rules: Vec::new() });
            }
            Op::FillChain { name, rules } => {
                if !self.chains.contains_key(name) {
                    return Err(rejected(op, "no such chain"));
                }
                self.flush(name);
                for rule in rules {
                    self.check_rule_targets(op, rule)?;
                    self.count_refs(rule, true);
                }
                if let Some(chain) = self.chains.get_mut(name) {
                    chain.rules = rules.clone();
                }
            }
            Op::DeleteElement { map, key } => {
                let removed = self.maps.entry(*map).or_default().remove(key);
                match removed {
                    Some(verdict) => self.count_verdict(&verdict, false),
                    None => return Err(rejected(op, "no such element")),
                }
            }
            Op::AddElement { map, key, verdict } => {
                if let MapVerdict::Goto(chain) = verdict {
                    if !self.chains.contains_key(chain) {
                        return Err(rejected(op, "element refers to a missing chain"));
                    }
                }
                let elements = self.maps.entry(*map).or_default();
                match elements.get(key) {
                    Some(existing) if existing != verdict => return Err(rejected(op, "element exists")),
                    Some(_) => {}
                    None => {
                        elements.insert(*key, verdict.clone());
                        self.count_verdict(verdict, true);
                    }
                }
            }
            Op::FlushChain { name } => {
                if !self.chains.contains_key(name) {
                    return Err(rejected(op, "no such chain"));
                }
                self.flush(name);
            }
            Op::DeleteChain { name } => {
                match self.chains.get(name) {
                    None => return Err(rejected(op, "no such chain")),
                    Some(chain) if !chain.rules.is_empty() => return Err(rejected(op, "chain not empty")),
                    Some(_) if self.chain_refs.get(name).copied().unwrap_or(0) > 0 => {
                        return Err(rejected(op, "chain is referenced"))
                    }
                    Some(_) => {}
                }
                self.chains.remove(name);
            }
            Op::DeleteSet { name } => {
                if !self.sets.contains_key(name) {
                    return Err(rejected(op, "no such set"));
                }
                if self.set_refs.get(name).copied().unwrap_or(0) > 0 {
                    return Err(rejected(op, "set is referenced"));
                }
                self.sets.remove(name);
            }
        }
        Ok(())
    }
}

fn bump(counts: &mut HashMap<String, usize>, name: &str, add: bool) {
    if add {
        *counts.entry(name.to_string()).or_default() += 1;
    } else if let Some(count) = counts.get_mut(name) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(name);
        }
    }
}

/// Counts of what the fake was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeStats {
    pub full_writes: usize,
    pub incremental_applies: usize,
    pub ops_applied: usize,
    pub last_ops: usize,
}

/// The fake data plane: a modelled table plus the node's local addresses and routes the tracer needs.
pub struct FakeDataplane {
    table: Option<FakeTable>,
    local_addrs: Vec<Ipv4Addr>,
    routes: Vec<(Ipv4Net, String)>,
    numgen: Box<dyn Numgen>,
    now: u64,
    fail_next: bool,
    stats: FakeStats,
}

impl Default for FakeDataplane {
    fn default() -> Self {
        FakeDataplane::new()
    }
}

impl std::fmt::Debug for FakeDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDataplane").field("stats", &self.stats).field("now", &self.now).finish_non_exhaustive()
    }
}

struct PacketState {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: Protocol,
    dport: u16,
    from: Origin,
    mark: u32,
    dnat: bool,
    masquerade: bool,
    oif: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Accept,
    Drop,
    Reject,
}

/// Bound on chain nesting while tracing (nft's own limit is 16 jumps deep).
const MAX_DEPTH: usize = 32;

impl FakeDataplane {
    /// An empty fake (no table yet) with a seeded random source.
    pub fn new() -> FakeDataplane {
        FakeDataplane {
            table: None,
            local_addrs: Vec::new(),
            routes: Vec::new(),
            numgen: Box::new(SeededNumgen::new(0x5eed)),
            now: 0,
            fail_next: false,
            stats: FakeStats::default(),
        }
    }

    /// The node's own addresses (`fib daddr type local` is true for them and for 127.0.0.0/8).
    pub fn with_local_addrs(mut self, addrs: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.local_addrs = addrs.into_iter().collect();
        self
    }

    /// A route: packets to `net` leave through interface `ifname` (used by `oifname` matches).
    pub fn with_route(mut self, net: Ipv4Net, ifname: &str) -> Self {
        self.routes.push((net, ifname.to_string()));
        self
    }

    /// Replaces the random source behind `numgen`.
    pub fn with_numgen(mut self, numgen: Box<dyn Numgen>) -> Self {
        self.numgen = numgen;
        self
    }

    /// Moves the fake clock (affinity entries expire).
    pub fn advance(&mut self, by: Duration) {
        self.now += by.as_secs();
    }

    /// Makes the next `apply` fail without changing anything.
    pub fn fail_next_apply(&mut self) {
        self.fail_next = true;
    }

    pub fn stats(&self) -> FakeStats {
        self.stats
    }

    /// Whether a table exists.
    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// Whether the modelled table holds exactly `ruleset`'s chains, sets and elements (set members ignored).
    pub fn matches(&self, ruleset: &Ruleset) -> bool {
        let Some(table) = &self.table else { return false };
        let expected = FakeTable::from_ruleset(ruleset);
        let specs = |t: &FakeTable| t.sets.iter().map(|(k, v)| (k.clone(), v.spec)).collect::<BTreeMap<_, _>>();
        let maps = |t: &FakeTable| {
            t.maps.iter().filter(|(_, m)| !m.is_empty()).map(|(k, v)| (*k, v.clone())).collect::<BTreeMap<_, _>>()
        };
        table.chains == expected.chains && specs(table) == specs(&expected) && maps(table) == maps(&expected)
    }

    /// Names of the chains in the modelled table.
    pub fn chain_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.table.iter().flat_map(|t| t.chains.keys().cloned()).collect();
        names.sort();
        names
    }

    /// Members of an affinity set that have not expired.
    pub fn set_members(&self, set: &str) -> Vec<Ipv4Addr> {
        let Some(set) = self.table.as_ref().and_then(|t| t.sets.get(set)) else { return Vec::new() };
        let mut out: Vec<Ipv4Addr> = set.members.iter().filter(|(_, exp)| **exp > self.now).map(|(a, _)| *a).collect();
        out.sort();
        out
    }

    fn is_local(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback() || self.local_addrs.contains(&ip)
    }

    /// Walks the modelled table with the first packet of a new connection, as the kernel would.
    pub fn trace(&mut self, packet: Packet) -> Verdict {
        let Some(mut table) = self.table.take() else { return Verdict::Accept };
        let mut st = PacketState {
            src: packet.src,
            dst: packet.dst,
            protocol: packet.protocol,
            dport: packet.dport,
            from: packet.from,
            mark: 0,
            dnat: false,
            masquerade: false,
            oif: None,
        };
        let flow = self.walk(&mut table, &mut st);
        self.table = Some(table);
        match flow {
            Flow::Drop => Verdict::Drop,
            Flow::Reject => Verdict::Reject,
            _ if st.dnat => Verdict::Dnat { ip: st.dst, port: st.dport, masquerade: st.masquerade },
            _ => Verdict::Accept,
        }
    }

    fn walk(&mut self, table: &mut FakeTable, st: &mut PacketState) -> Flow {
        let first = if st.from == Origin::Host { Hook::Output } else { Hook::Prerouting };
        let flow = self.run_hook(table, first, st);
        if flow != Flow::Accept {
            return flow;
        }
        if st.from != Origin::Host {
            let next = if self.is_local(st.dst) { Hook::Input } else { Hook::Forward };
            let flow = self.run_hook(table, next, st);
            if flow != Flow::Accept || next == Hook::Input {
                return flow;
            }
        }
        st.oif = self.routes.iter().find(|(net, _)| net.contains(st.dst)).map(|(_, ifname)| ifname.clone());
        self.run_hook(table, Hook::Postrouting, st)
    }

    /// Runs the base chains of `hook` in priority order; `Accept` if every one lets the packet through.
    fn run_hook(&mut self, table: &mut FakeTable, hook: Hook, st: &mut PacketState) -> Flow {
        let mut chains: Vec<(i32, String)> = table
            .chains
            .iter()
            .filter_map(|(name, c)| c.hook.filter(|h| h.hook == hook).map(|h| (h.priority, name.clone())))
            .collect();
        chains.sort();
        for (_, name) in chains {
            match self.run_chain(table, &name, st, 0) {
                Flow::Continue | Flow::Accept => {}
                other => return other,
            }
        }
        Flow::Accept
    }

    fn holds(&mut self, table: &FakeTable, m: &Match, st: &PacketState) -> bool {
        match m {
            Match::CtStateNew => true,
            Match::Dest { ip, protocol, port } => st.dst == *ip && st.protocol == *protocol && st.dport == *port,
            Match::SaddrIs(ip) => st.src == *ip,
            Match::SaddrIn(net) => net.contains(st.src),
            Match::SaddrNotIn(net) => !net.contains(st.src),
            Match::SaddrInSet(set) => {
                table.sets.get(set).and_then(|s| s.members.get(&st.src)).is_some_and(|expiry| *expiry > self.now)
            }
            Match::FibSaddrLocal => st.from == Origin::Host || self.is_local(st.src),
            Match::FibDaddrLocal => self.is_local(st.dst),
            Match::DaddrNotLoopback => !st.dst.is_loopback(),
            Match::OifName(name) => st.oif.as_deref() == Some(name.as_str()),
            Match::CtStatusDnat => st.dnat,
            Match::MarkClear(mark) => st.mark & mark == 0,
            Match::L4Proto(protocol) => st.protocol == *protocol,
            Match::Numgen { modulus } => self.numgen.next(*modulus) == 0,
        }
    }

    /// A verdict-map lookup: `None` on a miss (the rule does not match), else the flow of its verdict.
    fn lookup(
        &mut self,
        table: &mut FakeTable,
        map: MapId,
        key: Key,
        st: &mut PacketState,
        depth: usize,
    ) -> Option<Flow> {
        let verdict = table.maps.get(&map).and_then(|m| m.get(&key)).cloned()?;
        Some(match verdict {
            MapVerdict::Goto(chain) => self.run_chain(table, &chain, st, depth + 1),
            MapVerdict::Drop => Flow::Drop,
        })
    }

    fn run_chain(&mut self, table: &mut FakeTable, name: &str, st: &mut PacketState, depth: usize) -> Flow {
        if depth > MAX_DEPTH {
            return Flow::Drop;
        }
        let Some(rules) = table.chains.get(name).map(|c| c.rules.clone()) else { return Flow::Drop };
        for rule in &rules {
            if !rule.matches.iter().all(|m| self.holds(table, m, st)) {
                continue;
            }
            let flow = match &rule.action {
                Action::Jump(chain) => match self.run_chain(table, chain, st, depth + 1) {
                    Flow::Continue => continue,
                    other => other,
                },
                Action::Goto(chain) => self.run_chain(table, chain, st, depth + 1),
                Action::VmapAddr(map) => {
                    match self.lookup(table, *map, Key::Addr(st.dst, st.protocol, st.dport), st, depth) {
                        Some(flow) => flow,
                        None => continue,
                    }
                }
                Action::VmapPort(map) => match self.lookup(table, *map, Key::Port(st.protocol, st.dport), st, depth) {
                    Some(flow) => flow,
                    None => continue,
                },
                Action::UpdateAffinity(set) => {
                    let now = self.now;
                    if let Some(set) = table.sets.get_mut(set) {
                        set.members.insert(st.src, now + u64::from(set.spec.timeout_seconds));
                    }
                    continue;
                }
                Action::Dnat { ip, port, .. } => {
                    st.dst = *ip;
                    st.dport = *port;
                    st.dnat = true;
                    Flow::Accept
                }
                Action::MarkSet(mark) => {
                    st.mark |= mark;
                    continue;
                }
                Action::MarkToggle(mark) => {
                    st.mark ^= mark;
                    continue;
                }
                Action::Masquerade => {
                    st.masquerade = true;
                    Flow::Accept
                }
                Action::Reject | Action::RejectTcpReset => Flow::Reject,
                Action::Drop => Flow::Drop,
                Action::Return => Flow::Continue,
            };
            return flow;
        }
        Flow::Continue
    }
}

impl Dataplane for FakeDataplane {
    fn apply(&mut self, tx: &Transaction<'_>) -> Result<(), DataplaneError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(DataplaneError::Rejected { op: "transaction".into(), reason: "injected failure".into() });
        }
        match (&self.table, tx.full) {
            (Some(table), false) => {
                let mut next = table.clone();
                for op in tx.ops {
                    next.apply(op)?;
                }
                self.table = Some(next);
                self.stats.incremental_applies += 1;
                self.stats.ops_applied += tx.ops.len();
                self.stats.last_ops = tx.ops.len();
            }
            _ => {
                self.table = Some(FakeTable::from_ruleset(tx.ruleset));
                self.stats.full_writes += 1;
                self.stats.last_ops = 0;
            }
        }
        Ok(())
    }

    fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.table = None;
        Ok(())
    }
}
