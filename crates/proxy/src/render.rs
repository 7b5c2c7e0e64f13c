//! Renders a [`Ruleset`] (whole) or a list of [`Op`]s (incremental) as one `nft -f` script, written into a
//! single `String` buffer.

use std::fmt::Write;

use crate::ruleset::{Action, ChainType, Hook, Key, MapId, MapVerdict, Match, Op, Rule, Ruleset, SetSpec};

fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Prerouting => "prerouting",
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Output => "output",
        Hook::Postrouting => "postrouting",
    }
}

fn map_type(map: MapId) -> &'static str {
    match map.keyed_by_addr() {
        true => "ipv4_addr . inet_proto . inet_service : verdict",
        false => "inet_proto . inet_service : verdict",
    }
}

/// Appends the text of one rule (without the `add rule` prefix).
pub fn write_rule(out: &mut String, rule: &Rule) {
    for m in &rule.matches {
        // Writing into a String cannot fail.
        let _ = match m {
            Match::CtStateNew => write!(out, "ct state new "),
            Match::Dest { ip, protocol, port } => {
                write!(out, "ip daddr {ip} meta l4proto {} th dport {port} ", protocol.as_str())
            }
            Match::SaddrIs(ip) => write!(out, "ip saddr {ip} "),
            Match::SaddrIn(net) => write!(out, "ip saddr {net} "),
            Match::SaddrNotIn(net) => write!(out, "ip saddr != {net} "),
            Match::SaddrInSet(set) => write!(out, "ip saddr @{set} "),
            Match::FibSaddrLocal => write!(out, "fib saddr type local "),
            Match::FibDaddrLocal => write!(out, "fib daddr type local "),
            Match::DaddrNotLoopback => write!(out, "ip daddr != 127.0.0.0/8 "),
            Match::OifName(name) => write!(out, "oifname \"{name}\" "),
            Match::CtStatusDnat => write!(out, "ct status dnat "),
            Match::MarkClear(mark) => write!(out, "meta mark & {mark:#x} == 0 "),
            Match::L4Proto(protocol) => write!(out, "meta l4proto {} ", protocol.as_str()),
            Match::Numgen { modulus } => write!(out, "numgen random mod {modulus} 0 "),
        };
    }
    let _ = match &rule.action {
        Action::Jump(chain) => write!(out, "jump {chain}"),
        Action::Goto(chain) => write!(out, "goto {chain}"),
        Action::VmapAddr(map) => write!(out, "ip daddr . meta l4proto . th dport vmap @{}", map.name()),
        Action::VmapPort(map) => write!(out, "meta l4proto . th dport vmap @{}", map.name()),
        Action::UpdateAffinity(set) => write!(out, "update @{set} {{ ip saddr }}"),
        Action::Dnat { protocol, ip, port } => write!(out, "meta l4proto {} dnat to {ip}:{port}", protocol.as_str()),
        Action::MarkSet(mark) => write!(out, "meta mark set meta mark | {mark:#x}"),
        Action::MarkToggle(mark) => write!(out, "meta mark set meta mark ^ {mark:#x}"),
        Action::Masquerade => write!(out, "masquerade fully-random"),
        Action::Reject => write!(out, "reject"),
        Action::RejectTcpReset => write!(out, "reject with tcp reset"),
        Action::Drop => write!(out, "drop"),
        Action::Return => write!(out, "return"),
    };
}

fn write_key(out: &mut String, key: &Key) {
    let _ = match key {
        Key::Addr(ip, protocol, port) => write!(out, "{ip} . {} . {port}", protocol.as_str()),
        Key::Port(protocol, port) => write!(out, "{} . {port}", protocol.as_str()),
    };
}

fn write_verdict(out: &mut String, verdict: &MapVerdict) {
    let _ = match verdict {
        MapVerdict::Goto(chain) => write!(out, "goto {chain}"),
        MapVerdict::Drop => write!(out, "drop"),
    };
}

fn write_set(out: &mut String, table: &str, name: &str, spec: SetSpec) {
    let _ = writeln!(
        out,
        "add set ip {table} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {}s ; }}",
        spec.timeout_seconds
    );
}

fn write_rules(out: &mut String, table: &str, chain: &str, rules: &[Rule]) {
    for rule in rules {
        let _ = write!(out, "add rule ip {table} {chain} ");
        write_rule(out, rule);
        out.push('\n');
    }
}

/// A script that deletes table `table` if it exists and recreates it whole from `ruleset`, atomically.
pub fn full_script(table: &str, ruleset: &Ruleset) -> String {
    let mut out = String::with_capacity(256 * (ruleset.service_ports() + 16));
    let _ = writeln!(out, "add table ip {table}\ndelete table ip {table}\nadd table ip {table}");
    for (name, chain) in ruleset.statics() {
        match chain.hook {
            Some(hook) => {
                let kind = match hook.chain_type {
                    ChainType::Filter => "filter",
                    ChainType::Nat => "nat",
                };
                let _ = writeln!(
                    out,
                    "add chain ip {table} {name} {{ type {kind} hook {} priority {} ; }}",
                    hook_name(hook.hook),
                    hook.priority
                );
            }
            None => {
                let _ = writeln!(out, "add chain ip {table} {name}");
            }
        }
    }
    for (name, _) in ruleset.service_chains() {
        let _ = writeln!(out, "add chain ip {table} {name}");
    }
    for map in MapId::ALL {
        let _ = writeln!(out, "add map ip {table} {} {{ type {} ; }}", map.name(), map_type(map));
    }
    for (name, spec) in ruleset.sets() {
        write_set(&mut out, table, name, spec);
    }
    for (name, chain) in ruleset.statics() {
        write_rules(&mut out, table, name, &chain.rules);
    }
    for (name, rules) in ruleset.service_chains() {
        write_rules(&mut out, table, name, rules);
    }
    for map in MapId::ALL {
        let mut elements = ruleset.elements().filter(|(m, _, _)| *m == map).peekable();
        while elements.peek().is_some() {
            let _ = write!(out, "add element ip {table} {} {{ ", map.name());
            // Bounded batches keep each line (and nft's per-command memory) modest.
            for (i, (_, key, verdict)) in elements.by_ref().take(4096).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_key(&mut out, &key);
                out.push_str(" : ");
                write_verdict(&mut out, verdict);
            }
            out.push_str(" }\n");
        }
    }
    out
}

/// A script applying `ops` (already in phase order) to an existing table.
pub fn ops_script(table: &str, ops: &[Op]) -> String {
    let mut out = String::with_capacity(128 * ops.len() + 64);
    let mut i = 0;
    while i < ops.len() {
        match &ops[i] {
            Op::AddSet { name, spec } => write_set(&mut out, table, name, *spec),
            Op::AddChain { name } => {
                let _ = writeln!(out, "add chain ip {table} {name}");
            }
            Op::FillChain { name, rules } => {
                let _ = writeln!(out, "flush chain ip {table} {name}");
                write_rules(&mut out, table, name, rules);
            }
            Op::FlushChain { name } => {
                let _ = writeln!(out, "flush chain ip {table} {name}");
            }
            Op::DeleteChain { name } => {
                let _ = writeln!(out, "delete chain ip {table} {name}");
            }
            Op::DeleteSet { name } => {
                let _ = writeln!(out, "delete set ip {table} {name}");
            }
            Op::DeleteElement { map, .. } | Op::AddElement { map, .. } => {
                // Batch a run of element ops of one kind on one map into one command.
                let adding = matches!(ops[i], Op::AddElement { .. });
                let verb = if adding { "add" } else { "delete" };
                let _ = write!(out, "{verb} element ip {table} {} {{ ", map.name());
                let mut first = true;
                while let Some(op) = ops.get(i) {
                    let (key, verdict) = match op {
                        Op::AddElement { map: m, key, verdict } if adding && m == map => (key, Some(verdict)),
                        Op::DeleteElement { map: m, key } if !adding && m == map => (key, None),
                        _ => break,
                    };
                    if !first {
                        out.push_str(", ");
                    }
                    first = false;
                    write_key(&mut out, key);
                    if let Some(verdict) = verdict {
                        out.push_str(" : ");
                        write_verdict(&mut out, verdict);
                    }
                    i += 1;
                }
                out.push_str(" }\n");
                continue;
            }
        }
        i += 1;
    }
    out
}
