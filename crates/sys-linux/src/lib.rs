//! The real Linux implementation of the `ferry-sys` traits. Pod sandbox networking drives iproute2's `ip` command
//! (`ip netns`, `ip link ... type veth peer ... netns`, `ip addr`, `ip route`) and reads its JSON output (`ip -j`).
//! Every mutation names its object explicitly; existence and kind are checked first so errors match the fake's.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_sys::{
    validate_bridge, validate_sandbox, BridgeSpec, InterfaceAddr, LinkKind, LinkState, NetError, Network, Object,
    SandboxSpec, SandboxState,
};
use serde::Deserialize;

/// Where `ip` is looked for, in order.
const IP_CANDIDATES: &[&str] = &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];

/// Pod sandbox networking on this machine's kernel, through iproute2.
#[derive(Clone, Debug)]
pub struct IpNetwork {
    ip: PathBuf,
}

#[derive(Deserialize)]
struct JsonLink {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    master: Option<String>,
    link_type: Option<String>,
    linkinfo: Option<JsonLinkInfo>,
    #[serde(default)]
    addr_info: Vec<JsonAddr>,
}

#[derive(Deserialize)]
struct JsonLinkInfo {
    info_kind: Option<String>,
}

#[derive(Deserialize)]
struct JsonAddr {
    family: Option<String>,
    local: Option<String>,
    prefixlen: Option<u8>,
}

#[derive(Deserialize)]
struct JsonRoute {
    dst: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct JsonNetns {
    name: String,
}

impl IpNetwork {
    /// Uses the `ip` binary at `path`.
    pub fn with_binary(path: &Path) -> IpNetwork {
        IpNetwork { ip: path.to_path_buf() }
    }

    /// Finds iproute2's `ip` in the usual places, if installed.
    pub fn find() -> Option<IpNetwork> {
        IP_CANDIDATES.iter().map(Path::new).find(|p| p.is_file()).map(IpNetwork::with_binary)
    }

    fn describe(&self, args: &[&str]) -> String {
        format!("ip {}", args.join(" "))
    }

    /// Runs `ip args...` and returns its stdout; a non-zero exit is `NetError::Command` with ip's stderr.
    fn run(&self, args: &[&str]) -> Result<String, NetError> {
        let output = Command::new(&self.ip)
            .args(args)
            .env("LC_ALL", "C")
            .output()
            .map_err(|source| NetError::Spawn { command: self.describe(args), source })?;
        if !output.status.success() {
            return Err(NetError::Command {
                command: self.describe(args),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs an `ip -j ...` query and decodes its JSON array (no output at all means an empty list).
    fn query<T: for<'de> Deserialize<'de>>(&self, args: &[&str]) -> Result<Vec<T>, NetError> {
        let out = self.run(args)?;
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&out).map_err(|e| NetError::Parse { command: self.describe(args), reason: e.to_string() })
    }

    fn netns_names(&self) -> Result<Vec<String>, NetError> {
        Ok(self.query::<JsonNetns>(&["-j", "netns", "list"])?.into_iter().map(|n| n.name).collect())
    }

    /// Every link of a namespace (`None`: the host's), sorted by name.
    fn links(&self, netns: Option<&str>) -> Result<Vec<LinkState>, NetError> {
        let mut args = Vec::new();
        if let Some(ns) = netns {
            args.extend(["-n", ns]);
        }
        args.extend(["-j", "-d", "addr", "show"]);
        let mut links: Vec<LinkState> = self.query::<JsonLink>(&args)?.into_iter().map(link_state).collect();
        links.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(links)
    }

    fn host_link(&self, name: &str) -> Result<Option<LinkState>, NetError> {
        Ok(self.links(None)?.into_iter().find(|l| l.name == name))
    }

    fn default_gateway(&self, netns: &str) -> Result<Option<Ipv4Addr>, NetError> {
        let routes = self.query::<JsonRoute>(&["-n", netns, "-j", "route", "show", "default"])?;
        Ok(routes
            .into_iter()
            .filter(|r| r.dst.as_deref() == Some("default"))
            .find_map(|r| r.gateway.and_then(|g| g.parse().ok())))
    }

    fn check_bridge(&self, name: &str) -> Result<(), NetError> {
        match self.host_link(name)? {
            Some(LinkState { kind: LinkKind::Bridge, .. }) => Ok(()),
            Some(other) => Err(wrong_kind(name, "bridge", &other.kind)),
            None => Err(NetError::NotFound { what: Object::Link, name: name.to_string() }),
        }
    }

    /// Everything after the namespace exists; on failure the caller removes the namespace.
    fn build_sandbox(&self, spec: &SandboxSpec) -> Result<(), NetError> {
        if self.host_link(&spec.veth_host)?.is_some() {
            return Err(NetError::AlreadyExists { what: Object::Link, name: spec.veth_host.clone() });
        }
        let ns = spec.netns.as_str();
        self.run(&["link", "add", &spec.veth_host, "type", "veth", "peer", "name", &spec.veth_pod, "netns", ns])?;
        let addr = format!("{}/{}", spec.ip, spec.prefix);
        let gateway = spec.gateway.to_string();
        let wired = self
            .run(&["link", "set", &spec.veth_host, "master", &spec.bridge])
            // Hairpin: a pod reaching itself through a Service gets its packet back out of its own port.
            .and_then(|_| self.run(&["link", "set", &spec.veth_host, "up", "type", "bridge_slave", "hairpin", "on"]))
            .and_then(|_| self.run(&["-n", ns, "link", "set", "lo", "up"]))
            .and_then(|_| self.run(&["-n", ns, "addr", "add", &addr, "dev", &spec.veth_pod]))
            .and_then(|_| self.run(&["-n", ns, "link", "set", &spec.veth_pod, "up"]))
            .and_then(|_| self.run(&["-n", ns, "route", "add", "default", "via", &gateway]));
        if let Err(e) = wired {
            let _ = self.run(&["link", "del", &spec.veth_host]);
            return Err(e);
        }
        Ok(())
    }
}

fn wrong_kind(name: &str, expected: &'static str, found: &LinkKind) -> NetError {
    let found = match found {
        LinkKind::Loopback => "loopback".to_string(),
        LinkKind::Bridge => "bridge".to_string(),
        LinkKind::Veth => "veth".to_string(),
        LinkKind::Other(k) if k.is_empty() => "device".to_string(),
        LinkKind::Other(k) => k.clone(),
    };
    NetError::WrongKind { name: name.to_string(), expected, found }
}

fn link_state(link: JsonLink) -> LinkState {
    let kind = if link.link_type.as_deref() == Some("loopback") {
        LinkKind::Loopback
    } else {
        match link.linkinfo.and_then(|i| i.info_kind).as_deref() {
            Some("bridge") => LinkKind::Bridge,
            Some("veth") => LinkKind::Veth,
            Some(other) => LinkKind::Other(other.to_string()),
            None => LinkKind::Other(String::new()),
        }
    };
    let addresses = link
        .addr_info
        .into_iter()
        .filter(|a| a.family.as_deref() == Some("inet"))
        .filter_map(|a| Some(InterfaceAddr { ip: a.local?.parse().ok()?, prefix: a.prefixlen? }))
        .collect();
    LinkState { up: link.flags.iter().any(|f| f == "UP"), name: link.ifname, kind, master: link.master, addresses }
}

impl Network for IpNetwork {
    fn ensure_bridge(&self, bridge: &BridgeSpec) -> Result<(), NetError> {
        validate_bridge(bridge)?;
        match self.host_link(&bridge.name)? {
            None => {
                self.run(&["link", "add", &bridge.name, "type", "bridge"])?;
            }
            Some(LinkState { kind: LinkKind::Bridge, .. }) => {}
            Some(other) => return Err(wrong_kind(&bridge.name, "bridge", &other.kind)),
        }
        let state = self
            .host_link(&bridge.name)?
            .ok_or_else(|| NetError::NotFound { what: Object::Link, name: bridge.name.clone() })?;
        let addr = InterfaceAddr { ip: bridge.gateway, prefix: bridge.prefix };
        if !state.addresses.contains(&addr) {
            self.run(&["addr", "add", &addr.to_string(), "dev", &bridge.name])?;
        }
        if !state.up {
            self.run(&["link", "set", &bridge.name, "up"])?;
        }
        Ok(())
    }

    fn delete_bridge(&self, name: &str) -> Result<(), NetError> {
        match self.host_link(name)? {
            None => Ok(()),
            Some(LinkState { kind: LinkKind::Bridge, .. }) => self.run(&["link", "del", name]).map(drop),
            Some(other) => Err(wrong_kind(name, "bridge", &other.kind)),
        }
    }

    fn create_sandbox(&self, spec: &SandboxSpec) -> Result<(), NetError> {
        validate_sandbox(spec)?;
        self.check_bridge(&spec.bridge)?;
        if self.netns_names()?.contains(&spec.netns) {
            return Err(NetError::AlreadyExists { what: Object::Netns, name: spec.netns.clone() });
        }
        self.run(&["netns", "add", &spec.netns])?;
        if let Err(e) = self.build_sandbox(spec) {
            let _ = self.run(&["netns", "del", &spec.netns]);
            return Err(e);
        }
        Ok(())
    }

    fn delete_sandbox(&self, netns: &str, veth_host: &str) -> Result<(), NetError> {
        match self.host_link(veth_host)? {
            Some(LinkState { kind: LinkKind::Veth, .. }) => {
                self.run(&["link", "del", veth_host])?;
            }
            Some(other) => return Err(wrong_kind(veth_host, "veth", &other.kind)),
            None => {}
        }
        if self.netns_names()?.iter().any(|n| n == netns) {
            self.run(&["netns", "del", netns])?;
        }
        Ok(())
    }

    fn list_sandboxes(&self, prefix: &str) -> Result<Vec<SandboxState>, NetError> {
        let mut names: Vec<String> = self.netns_names()?.into_iter().filter(|n| n.starts_with(prefix)).collect();
        names.sort();
        names
            .into_iter()
            .map(|netns| {
                Ok(SandboxState {
                    links: self.links(Some(&netns))?,
                    default_gateway: self.default_gateway(&netns)?,
                    netns,
                })
            })
            .collect()
    }

    fn host_links(&self, prefix: &str) -> Result<Vec<LinkState>, NetError> {
        Ok(self.links(None)?.into_iter().filter(|l| l.name.starts_with(prefix)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_json_is_read_into_link_states() {
        let json = r#"[
          {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"link_type":"loopback",
           "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet6","local":"::1","prefixlen":128}]},
          {"ifindex":7,"ifname":"fyabch1","flags":["BROADCAST","MULTICAST","UP"],"master":"fyabcbr","link_type":"ether",
           "linkinfo":{"info_kind":"veth"},"addr_info":[]},
          {"ifindex":8,"ifname":"eth0","flags":["BROADCAST"],"link_type":"ether"}
        ]"#;
        let links: Vec<LinkState> =
            serde_json::from_str::<Vec<JsonLink>>(json).unwrap().into_iter().map(link_state).collect();
        assert_eq!(links[0].kind, LinkKind::Loopback);
        assert!(links[0].up);
        assert_eq!(links[0].addresses, [InterfaceAddr { ip: Ipv4Addr::LOCALHOST, prefix: 8 }]);
        assert_eq!(links[1].kind, LinkKind::Veth);
        assert_eq!(links[1].master.as_deref(), Some("fyabcbr"));
        assert_eq!(links[2].kind, LinkKind::Other(String::new()));
        assert!(!links[2].up);
    }

    #[test]
    fn a_missing_binary_is_a_spawn_error() {
        let net = IpNetwork::with_binary(Path::new("/nonexistent/ip"));
        assert!(matches!(net.host_links("fy"), Err(NetError::Spawn { .. })));
    }
}
