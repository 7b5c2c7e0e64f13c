//! The kernel side: which nftables proxy tables carry a Service's traffic, its dispatch map elements and its
//! chains' rules. Naming follows `ferry-proxy` (`desired::cluster_chain_name` and friends); parsing `nft`
//! output is pure, running `nft` is one small function.

use std::process::Command;

use ferry_proxy::model::SERVICE_PROXY_NAME_LABEL;
use ferry_proxy::{desired, ServiceInfo};
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;

/// Suffix of the table a ferry node's proxy owns (`<network-prefix>-proxy`, `ferry-proxy` by default).
pub const PROXY_TABLE_SUFFIX: &str = "-proxy";

/// How to recognise a Service's part of a proxy table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceKeys {
    /// Exact names of its balancing and external chains.
    pub chains: Vec<String>,
    /// Name prefixes of its per-endpoint chains.
    pub chain_prefixes: Vec<String>,
    /// Map keys (as `nft` prints them) of its addresses (`ip . proto . port`) and node ports (`proto . port`).
    pub map_keys: Vec<String>,
}

impl ServiceKeys {
    fn owns_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|c| c == name) || self.chain_prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// The chain names and map keys the proxy uses for `service` (empty for services it ignores: headless,
/// ExternalName, IPv6-only).
pub fn service_keys(service: &Service) -> ServiceKeys {
    let label = service.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_PROXY_NAME_LABEL)).map(String::as_str);
    let mut keys = ServiceKeys::default();
    for info in ServiceInfo::from_service(service, label) {
        let cluster = desired::cluster_chain_name(&info);
        let base = cluster.strip_prefix("svc-").unwrap_or(&cluster).to_string();
        keys.chains.push(cluster.clone());
        keys.chains.push(desired::local_chain_name(&info));
        keys.chains.push(desired::external_chain_name(&info));
        keys.chain_prefixes.push(format!("ep-{base}__"));
        let proto = info.protocol.as_str();
        for ip in info.cluster_ips.iter().chain(&info.external_ips).chain(&info.load_balancer_ips) {
            keys.map_keys.push(format!("{ip} . {proto} . {}", info.port));
        }
        if let Some(node_port) = info.node_port {
            keys.map_keys.push(format!("{proto} . {node_port}"));
        }
    }
    keys
}

/// A Service's part of one proxy table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableRules {
    pub table: String,
    /// `map: key : verdict` for each of the service's map elements.
    pub elements: Vec<String>,
    /// Each of the service's chains with its rules, as `nft` prints them.
    pub chains: Vec<(String, Vec<String>)>,
}

/// What the host's nftables say about the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyRules {
    /// `nft` could not be run or failed (not root, not installed).
    Unavailable(String),
    /// The service has nothing the proxy programs (headless, ExternalName): no rules expected.
    NotProxied,
    /// Proxy tables found (`tables`), and the ones that carry the service.
    Found { tables: Vec<String>, carrying: Vec<TableRules> },
}

/// The names of the `ip` tables named `*-proxy` in `nft -j list tables` output.
pub fn proxy_tables(json: &str) -> Result<Vec<String>, serde_json::Error> {
    let doc: Value = serde_json::from_str(json)?;
    let items = doc["nftables"].as_array().cloned().unwrap_or_default();
    let mut names: Vec<String> = items
        .iter()
        .filter_map(|i| i.get("table"))
        .filter(|t| t["family"] == "ip")
        .filter_map(|t| t["name"].as_str())
        .filter(|n| n.ends_with(PROXY_TABLE_SUFFIX))
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("concat") => {
            let parts: Vec<String> = o["concat"].as_array().into_iter().flatten().map(json_text).collect();
            parts.join(" . ")
        }
        Value::Object(o) => match o.iter().next() {
            Some((verdict, Value::Object(arg))) if arg.contains_key("target") => {
                format!("{verdict} {}", json_text(&arg["target"]))
            }
            Some((verdict, Value::Null)) => verdict.clone(),
            _ => v.to_string(),
        },
        other => other.to_string(),
    }
}

/// The service's map elements and chain names in one table's `nft -j list table` output.
fn json_parts(json: &str, keys: &ServiceKeys) -> Result<(Vec<String>, Vec<String>), serde_json::Error> {
    let doc: Value = serde_json::from_str(json)?;
    let mut elements = Vec::new();
    let mut chains = Vec::new();
    for item in doc["nftables"].as_array().into_iter().flatten() {
        if let Some(chain) = item.get("chain").and_then(|c| c["name"].as_str()) {
            if keys.owns_chain(chain) {
                chains.push(chain.to_string());
            }
        }
        let Some(map) = item.get("map") else { continue };
        let name = map["name"].as_str().unwrap_or_default();
        for elem in map["elem"].as_array().into_iter().flatten() {
            let (key, verdict) = match elem.as_array().map(Vec::as_slice) {
                Some([key, verdict]) => (json_text(key), json_text(verdict)),
                _ => continue,
            };
            let target = verdict.split_once(' ').map(|(_, t)| t).unwrap_or_default();
            if keys.map_keys.contains(&key) || keys.owns_chain(target) {
                elements.push(format!("{name}: {key} : {verdict}"));
            }
        }
    }
    Ok((elements, chains))
}

/// The rules of each chain in `nft list table` text output, by chain name.
pub fn text_chains(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ").and_then(|r| r.strip_suffix('{')) {
            current = Some((rest.trim().trim_matches('"').to_string(), Vec::new()));
        } else if line == "}" {
            out.extend(current.take());
        } else if let Some((_, rules)) = current.as_mut() {
            if !line.is_empty() {
                rules.push(line.to_string());
            }
        }
    }
    out
}

/// The service's part of one table, from its JSON and text listings; `None` when the table has nothing of it.
pub fn table_rules(
    table: &str,
    json: &str,
    text: &str,
    keys: &ServiceKeys,
) -> Result<Option<TableRules>, serde_json::Error> {
    let (elements, chain_names) = json_parts(json, keys)?;
    if elements.is_empty() && chain_names.is_empty() {
        return Ok(None);
    }
    let listed = text_chains(text);
    let rank = |name: &str| ["svc-", "local-", "ext-", "ep-"].iter().position(|p| name.starts_with(p));
    let mut chain_names = chain_names;
    chain_names.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    let chains = chain_names
        .into_iter()
        .map(|name| {
            let rules = listed.iter().find(|(n, _)| *n == name).map(|(_, r)| r.clone()).unwrap_or_default();
            (name, rules)
        })
        .collect();
    Ok(Some(TableRules { table: table.to_string(), elements, chains }))
}

fn nft(args: &[&str]) -> Result<String, String> {
    let out = Command::new("nft").args(args).output().map_err(|e| format!("running nft: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("nft {}: {}", args.join(" "), stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads this host's proxy tables and picks out `service`'s rules (blocking: runs `nft`).
pub fn read_rules(service: &Service) -> ProxyRules {
    let keys = service_keys(service);
    if keys.chains.is_empty() {
        return ProxyRules::NotProxied;
    }
    let listing = match nft(&["-j", "list", "tables"]) {
        Ok(json) => json,
        Err(e) => return ProxyRules::Unavailable(e),
    };
    let tables = match proxy_tables(&listing) {
        Ok(t) => t,
        Err(e) => return ProxyRules::Unavailable(format!("parsing `nft -j list tables`: {e}")),
    };
    let mut carrying = Vec::new();
    for table in &tables {
        // A table can vanish between the two listings (a cluster stopping): skip it then.
        let Ok(json) = nft(&["-j", "list", "table", "ip", table]) else { continue };
        let Ok(text) = nft(&["list", "table", "ip", table]) else { continue };
        match table_rules(table, &json, &text, &keys) {
            Ok(Some(rules)) => carrying.push(rules),
            Ok(None) => {}
            Err(e) => return ProxyRules::Unavailable(format!("parsing `nft -j list table ip {table}`: {e}")),
        }
    }
    ProxyRules::Found { tables, carrying }
}
