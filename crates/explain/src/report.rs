//! The whole answer: the diagnosis of the API objects, the proxy rules and the connection attempts, the
//! problems they add up to, and the text `ferry explain service` prints. Pure.

use std::fmt::Write;
use std::time::Duration;

use crate::connect::{Attempt, Outcome, TargetKind};
use crate::diagnose::{Address, Backends, Diagnosis, Listing, PodReport, Problem, Reason, ServiceSummary};
use crate::rules::ProxyRules;

/// Everything `ferry explain service` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub diagnosis: Diagnosis,
    pub rules: ProxyRules,
    pub attempts: Vec<Attempt>,
    /// The timeout each connection attempt had.
    pub timeout: Duration,
    /// Every problem: the diagnosis's, then the rules', then the connections'.
    pub problems: Vec<Problem>,
}

/// Puts the three checks together and derives the rules' and connections' problems.
pub fn assemble(diagnosis: Diagnosis, rules: ProxyRules, attempts: Vec<Attempt>, timeout: Duration) -> Explanation {
    let mut problems = diagnosis.problems.clone();
    match &rules {
        ProxyRules::Unavailable(why) => problems.push(Problem::NftUnavailable(why.clone())),
        ProxyRules::NotProxied => {}
        ProxyRules::Found { tables, .. } if tables.is_empty() => problems.push(Problem::NoProxyTable),
        ProxyRules::Found { tables, carrying } if carrying.is_empty() => {
            problems.push(Problem::NoRules { tables: tables.clone() })
        }
        ProxyRules::Found { .. } => {}
    }
    let any_ready = diagnosis.addresses.iter().any(|a| a.ready);
    for a in attempts.iter().filter(|a| a.outcome != Outcome::Connected) {
        let (what, name) = match &a.target.kind {
            TargetKind::Endpoint { ready: true, pod } => ("endpoint", pod.clone()),
            TargetKind::ClusterIp { port_name } if any_ready => {
                ("ClusterIP", Some(port_name.clone()).filter(|n| !n.is_empty()))
            }
            // Not-ready endpoints and ClusterIPs without a ready endpoint are expected to fail.
            _ => continue,
        };
        let addr = match name {
            Some(n) => format!("{} ({n})", a.target.addr),
            None => a.target.addr.to_string(),
        };
        let outcome = match &a.outcome {
            Outcome::Refused => "connection refused".to_string(),
            Outcome::TimedOut => format!("no answer within {}", seconds(timeout)),
            other => other.to_string(),
        };
        problems.push(Problem::ConnectFailed { what: what.into(), addr, outcome });
    }
    Explanation { diagnosis, rules, attempts, timeout, problems }
}

fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// Lays `rows` out in columns two spaces apart, each line indented by `indent`.
fn columns(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.iter().map(Vec::len).max().unwrap_or(0))
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = indent.to_string();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn or_dash(items: &[String], sep: &str) -> String {
    match items.is_empty() {
        true => "-".into(),
        false => items.join(sep),
    }
}

fn write_service(out: &mut String, s: &ServiceSummary) {
    let _ = writeln!(out, "Service {}/{}", s.namespace, s.name);
    let mut rows = vec![vec!["type:".to_string(), s.type_.clone()]];
    if let Some(name) = &s.external_name {
        rows.push(vec!["externalName:".into(), name.clone()]);
    }
    rows.push(vec!["clusterIPs:".into(), or_dash(&s.cluster_ips, ", ")]);
    if !s.external_ips.is_empty() {
        rows.push(vec!["externalIPs:".into(), s.external_ips.join(", ")]);
    }
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| {
            let mut text = match &p.name {
                Some(name) => format!("{name} {}/{} -> targetPort {}", p.port, p.protocol, p.target_port),
                None => format!("{}/{} -> targetPort {}", p.port, p.protocol, p.target_port),
            };
            if let Some(node_port) = p.node_port {
                let _ = write!(text, ", nodePort {node_port}");
            }
            text
        })
        .collect();
    for (i, p) in ports.iter().enumerate() {
        let label = if i == 0 { "ports:" } else { "" };
        rows.push(vec![label.into(), p.clone()]);
    }
    if ports.is_empty() {
        rows.push(vec!["ports:".into(), "-".into()]);
    }
    rows.push(vec!["sessionAffinity:".into(), s.session_affinity.clone()]);
    if let Some(policy) = &s.external_traffic_policy {
        rows.push(vec!["externalTrafficPolicy:".into(), policy.clone()]);
    }
    let selector = if s.selector.is_empty() { "<none>".to_string() } else { s.selector_text() };
    rows.push(vec!["selector:".into(), selector]);
    if s.publish_not_ready {
        rows.push(vec!["publishNotReadyAddresses:".into(), "true".into()]);
    }
    if !s.load_balancer_ingress.is_empty() || s.type_ == "LoadBalancer" {
        rows.push(vec!["loadBalancer ingress:".into(), or_dash(&s.load_balancer_ingress, ", ")]);
    }
    columns(out, "  ", &rows);
}

fn reason_text(reason: &Reason) -> String {
    match reason {
        Reason::NotScheduled(message) => format!("not scheduled: {message}"),
        Reason::NoIp => "no pod IP yet".into(),
        Reason::Terminating => "terminating".into(),
        Reason::Finished(phase) => format!("finished (phase {phase})"),
        Reason::NotReady(detail) => format!("not ready: {detail}"),
        Reason::MissingPort { target, protocol } => format!("no container port named '{target}' ({protocol})"),
        Reason::Unlisted => "ready, yet not a ready endpoint".into(),
    }
}

fn pod_ports(pod: &PodReport) -> String {
    let ports: Vec<String> = pod
        .ports
        .iter()
        .map(|(name, port)| match name.is_empty() {
            true => port.to_string(),
            false => format!("{name}->{port}"),
        })
        .collect();
    or_dash(&ports, ",")
}

fn write_pods(out: &mut String, s: &ServiceSummary, pods: &[PodReport], strays: &[Address]) {
    let _ = writeln!(out, "\nPods matching {}: {}", s.selector_text(), pods.len());
    if pods.is_empty() {
        let _ = writeln!(out, "  (none)");
    } else {
        let mut rows = vec![["NAME", "IP", "NODE", "ENDPOINT", "PORTS"].map(String::from).to_vec()];
        let mut notes: Vec<(usize, Vec<String>)> = Vec::new();
        for pod in pods {
            rows.push(vec![
                pod.name.clone(),
                pod.ip.clone().unwrap_or_else(|| "-".into()),
                pod.node.clone().unwrap_or_else(|| "-".into()),
                pod.listing().to_string(),
                pod_ports(pod),
            ]);
            let mut lines: Vec<String> = pod.reasons.iter().map(reason_text).collect();
            if let (Some(a), Some(b)) = (pod.in_slices, pod.in_endpoints) {
                if a != b {
                    lines.push(format!("EndpointSlices list it as {a}, the Endpoints object as {b}"));
                }
            }
            notes.push((rows.len() - 1, lines));
        }
        // Lay the table out, then put each pod's reasons under its row.
        let mut table = String::new();
        columns(&mut table, "  ", &rows);
        for (i, line) in table.lines().enumerate() {
            let _ = writeln!(out, "{line}");
            for note in notes.iter().filter(|(row, _)| *row == i).flat_map(|(_, n)| n) {
                let _ = writeln!(out, "      {note}");
            }
        }
    }
    if !strays.is_empty() {
        let _ = writeln!(out, "\nListed endpoints that belong to no matching pod: {}", strays.len());
        write_addresses(out, strays);
    }
}

fn write_addresses(out: &mut String, addresses: &[Address]) {
    let mut rows = vec![["IP", "TARGET", "NODE", "ENDPOINT", "PORTS"].map(String::from).to_vec()];
    for a in addresses {
        let ports: Vec<String> = a
            .ports
            .iter()
            .map(|p| match p.name.is_empty() {
                true => format!("{}/{}", p.port, p.protocol),
                false => format!("{} {}/{}", p.name, p.port, p.protocol),
            })
            .collect();
        rows.push(vec![
            a.ip.clone(),
            a.target.clone().unwrap_or_else(|| "-".into()),
            a.node.clone().unwrap_or_else(|| "-".into()),
            if a.ready { Listing::Ready } else { Listing::NotReady }.to_string(),
            or_dash(&ports, ","),
        ]);
    }
    columns(out, "  ", &rows);
}

fn write_rules(out: &mut String, rules: &ProxyRules) {
    let _ = writeln!(out, "\nProxy rules");
    match rules {
        ProxyRules::Unavailable(why) => {
            let _ = writeln!(out, "  not read: {why}");
        }
        ProxyRules::NotProxied => {
            let _ = writeln!(out, "  none expected: the proxy does not handle this service (headless or ExternalName)");
        }
        ProxyRules::Found { tables, .. } if tables.is_empty() => {
            let _ = writeln!(out, "  no proxy table (nftables `ip *-proxy`) on this host");
        }
        ProxyRules::Found { tables, carrying } if carrying.is_empty() => {
            let _ = writeln!(out, "  none: no rule for this service in {}", tables.join(", "));
        }
        ProxyRules::Found { carrying, .. } => {
            for t in carrying {
                let _ = writeln!(out, "  table ip {}", t.table);
                for e in &t.elements {
                    let _ = writeln!(out, "    map {e}");
                }
                for (chain, rules) in &t.chains {
                    let _ = writeln!(out, "    chain {chain}");
                    for r in rules {
                        let _ = writeln!(out, "      {r}");
                    }
                }
            }
        }
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn write_attempts(out: &mut String, attempts: &[Attempt], timeout: Duration) {
    let _ = writeln!(out, "\nConnections (TCP from this host, {} timeout)", seconds(timeout));
    if attempts.is_empty() {
        let _ = writeln!(out, "  nothing to dial (no TCP endpoint or ClusterIP)");
        return;
    }
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            let (kind, label) = match &a.target.kind {
                TargetKind::Endpoint { pod, ready } => {
                    let name = pod.clone().unwrap_or_else(|| "-".into());
                    ("endpoint", if *ready { name } else { format!("{name} (not ready)") })
                }
                TargetKind::ClusterIp { port_name } => {
                    ("clusterIP", if port_name.is_empty() { "-".into() } else { port_name.clone() })
                }
            };
            vec![kind.into(), a.target.addr.to_string(), label, a.outcome.to_string(), millis(a.elapsed)]
        })
        .collect();
    columns(out, "  ", &rows);
}

/// The text `ferry explain service` prints.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    write_service(&mut out, &e.diagnosis.service);
    match &e.diagnosis.backends {
        Backends::ExternalName(target) => {
            let _ = writeln!(out, "\nExternalName: a DNS alias for {target}; there are no pods or endpoints to check.");
        }
        Backends::Selector { pods, strays } => write_pods(&mut out, &e.diagnosis.service, pods, strays),
        Backends::Manual { has_object, addresses } => {
            let _ = writeln!(out, "\nEndpoints (no selector: written by hand): {}", addresses.len());
            if addresses.is_empty() {
                let what = if *has_object { "the Endpoints object lists no address" } else { "no Endpoints object" };
                let _ = writeln!(out, "  ({what})");
            } else {
                write_addresses(&mut out, addresses);
            }
        }
    }
    if !matches!(e.diagnosis.backends, Backends::ExternalName(_)) {
        write_rules(&mut out, &e.rules);
        write_attempts(&mut out, &e.attempts, e.timeout);
    }
    let _ = writeln!(out, "\nVerdict");
    if e.problems.is_empty() {
        let _ = writeln!(out, "  no problem found");
    }
    for p in &e.problems {
        let _ = writeln!(out, "  - {p}");
    }
    out
}
