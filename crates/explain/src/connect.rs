//! The live check: which addresses to dial (every listed endpoint and every ClusterIP, TCP ports only) and one
//! TCP connect per address from this host, with a timeout.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::diagnose::Diagnosis;

/// What a dialled address is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A listed endpoint address; `pod` from its targetRef.
    Endpoint { pod: Option<String>, ready: bool },
    /// A ClusterIP and service port (`port_name` empty for a lone unnamed port).
    ClusterIp { port_name: String },
}

/// One address to dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub addr: SocketAddr,
}

/// How a connection attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    Refused,
    TimedOut,
    /// Any other error (unreachable network, ...).
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Connected => f.write_str("connected"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// One connection attempt and how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub target: Target,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// The addresses to dial for `diagnosis`: each listed endpoint's TCP ports, then each ClusterIP's TCP ports.
pub fn targets(diagnosis: &Diagnosis) -> Vec<Target> {
    let mut out = Vec::new();
    for a in &diagnosis.addresses {
        let Ok(ip) = a.ip.parse::<IpAddr>() else { continue };
        for p in a.ports.iter().filter(|p| p.protocol == "TCP") {
            let Ok(port) = u16::try_from(p.port) else { continue };
            let kind = TargetKind::Endpoint { pod: a.target.clone(), ready: a.ready };
            out.push(Target { kind, addr: SocketAddr::new(ip, port) });
        }
    }
    for ip in diagnosis.service.cluster_ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
        for p in diagnosis.service.ports.iter().filter(|p| p.protocol == "TCP") {
            let Ok(port) = u16::try_from(p.port) else { continue };
            let kind = TargetKind::ClusterIp { port_name: p.name.clone().unwrap_or_default() };
            out.push(Target { kind, addr: SocketAddr::new(ip, port) });
        }
    }
    out
}

/// One TCP connect to `target.addr`, given up after `timeout`.
pub async fn dial(target: Target, timeout: Duration) -> Attempt {
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target.addr)).await;
    let elapsed = start.elapsed();
    let outcome = match result {
        Ok(Ok(_stream)) => Outcome::Connected,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused,
        Ok(Err(e)) if e.kind() == ErrorKind::TimedOut => Outcome::TimedOut,
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::TimedOut,
    };
    Attempt { target, outcome, elapsed }
}

/// Dials every target concurrently; the attempts come back in `targets` order.
pub async fn dial_all(targets: Vec<Target>, timeout: Duration) -> Vec<Attempt> {
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.into_iter().enumerate() {
        set.spawn(async move { (i, dial(t, timeout).await) });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(pair) = done {
            out.push(pair);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, a)| a).collect()
}
