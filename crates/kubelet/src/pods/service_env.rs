//! Environment-variable service discovery, as the upstream kubelet does it: which Services a container sees
//! (`getServiceEnvVarMap`), the variables each one yields (`envvars.FromServices`), and how they combine with the
//! container's own environment (`makeEnvironmentVariables`). Pure: the Services come from the node's cache.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace of the master services.
pub const MASTER_NAMESPACE: &str = "default";
/// Services of [`MASTER_NAMESPACE`] whose variables every container gets, even with `enableServiceLinks: false`.
pub const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// The service variables of one container, in a stable order (services by name, then upstream's per-service
/// order); names are unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceEnv {
    vars: Vec<(String, String)>,
    index: BTreeMap<String, usize>,
}

impl ServiceEnv {
    /// The value of `name`, if a service defines it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|i| self.vars[*i].1.as_str())
    }

    /// Every variable, in order.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Sets `name`; a name already present keeps its place and takes the new value.
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(i) => self.vars[*i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }
}

/// A service or port name as an environment variable name: upper case, `-` becomes `_`.
pub fn env_var_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The service's `spec.clusterIP` when it has one (not headless, not ExternalName).
fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `host:port`, bracketing an IPv6 host.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The variables one Service yields, in upstream's order: `{N}_SERVICE_HOST`, `{N}_SERVICE_PORT` (first port),
/// `{N}_SERVICE_PORT_{PORTNAME}` per named port, then the Docker-link variables (`{N}_PORT` for the first port and
/// `{N}_PORT_{port}_{PROTO}` with `_PROTO`, `_PORT`, `_ADDR` for each port). Nothing for a service without a
/// cluster IP; only the host variable for one without ports (upstream assumes ports; validation requires them).
pub fn service_vars(service: &Service) -> Vec<(String, String)> {
    let Some(ip) = cluster_ip(service) else { return Vec::new() };
    let prefix = env_var_name(service.metadata.name.as_deref().unwrap_or_default());
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    let Some(first) = ports.first() else { return out };
    let port_var = format!("{prefix}_SERVICE_PORT");
    out.push((port_var.clone(), first.port.to_string()));
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{port_var}_{}", env_var_name(name)), p.port.to_string()));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
        let lower = protocol.to_ascii_lowercase();
        let url = format!("{lower}://{}", join_host_port(ip, p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_ascii_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
    out
}

/// The Services whose variables a container of a pod in `namespace` gets, by name: the master services of the
/// `default` namespace always; every service of `namespace` when `enable_service_links`. A same-named service of the
/// pod's own namespace wins over a master service (upstream adds the master one only when absent and lets the
/// local one overwrite). Services without a cluster IP are skipped.
pub fn services_for_pod<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> BTreeMap<&'a str, &'a Service> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services {
        if cluster_ip(svc).is_none() {
            continue;
        }
        let Some(name) = svc.metadata.name.as_deref() else { continue };
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        if ns == MASTER_NAMESPACE && MASTER_SERVICES.contains(&name) {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, svc);
        }
    }
    chosen
}

/// The service variables of a container of a pod in `namespace` (see [`services_for_pod`] and [`service_vars`]).
/// Variables from different services with the same name: the later service (by name) wins.
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> ServiceEnv {
    let mut env = ServiceEnv::default();
    for svc in services_for_pod(services, namespace, enable_service_links).into_values() {
        for (k, v) in service_vars(svc) {
            env.set(k, v);
        }
    }
    env
}

/// The container's environment: its own variables (`env`/`envFrom`, already resolved, in order) followed by the
/// service variables whose names it does not define itself.
pub fn with_service_env(container_env: Vec<(String, String)>, services: &ServiceEnv) -> Vec<(String, String)> {
    let own: std::collections::BTreeSet<String> = container_env.iter().map(|(k, _)| k.clone()).collect();
    let mut out = container_env;
    out.extend(services.vars().iter().filter(|(k, _)| !own.contains(k)).cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
        Service {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: (!ip.is_empty()).then(|| ip.to_string()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            protocol: proto.map(str::to_string),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn kubernetes() -> Service {
        svc("default", "kubernetes", "10.43.0.1", &[(Some("https"), 443, Some("TCP"))])
    }

    #[test]
    fn one_named_port_as_upstream() {
        let s = svc("default", "kubia", "10.43.0.5", &[(Some("http"), 80, Some("TCP"))]);
        assert_eq!(
            service_vars(&s),
            pairs(&[
                ("KUBIA_SERVICE_HOST", "10.43.0.5"),
                ("KUBIA_SERVICE_PORT", "80"),
                ("KUBIA_SERVICE_PORT_HTTP", "80"),
                ("KUBIA_PORT", "tcp://10.43.0.5:80"),
                ("KUBIA_PORT_80_TCP", "tcp://10.43.0.5:80"),
                ("KUBIA_PORT_80_TCP_PROTO", "tcp"),
                ("KUBIA_PORT_80_TCP_PORT", "80"),
                ("KUBIA_PORT_80_TCP_ADDR", "10.43.0.5"),
            ])
        );
    }

    #[test]
    fn several_ports_dashes_protocols_and_an_unnamed_first_port() {
        let s = svc(
            "ns",
            "my-dns",
            "10.43.0.10",
            &[(None, 53, Some("UDP")), (Some("dns-tcp"), 53, None), (Some("metrics"), 9153, Some("SCTP"))],
        );
        assert_eq!(
            service_vars(&s),
            pairs(&[
                ("MY_DNS_SERVICE_HOST", "10.43.0.10"),
                ("MY_DNS_SERVICE_PORT", "53"),
                ("MY_DNS_SERVICE_PORT_DNS_TCP", "53"),
                ("MY_DNS_SERVICE_PORT_METRICS", "9153"),
                ("MY_DNS_PORT", "udp://10.43.0.10:53"),
                ("MY_DNS_PORT_53_UDP", "udp://10.43.0.10:53"),
                ("MY_DNS_PORT_53_UDP_PROTO", "udp"),
                ("MY_DNS_PORT_53_UDP_PORT", "53"),
                ("MY_DNS_PORT_53_UDP_ADDR", "10.43.0.10"),
                ("MY_DNS_PORT_53_TCP", "tcp://10.43.0.10:53"),
                ("MY_DNS_PORT_53_TCP_PROTO", "tcp"),
                ("MY_DNS_PORT_53_TCP_PORT", "53"),
                ("MY_DNS_PORT_53_TCP_ADDR", "10.43.0.10"),
                ("MY_DNS_PORT_9153_SCTP", "sctp://10.43.0.10:9153"),
                ("MY_DNS_PORT_9153_SCTP_PROTO", "sctp"),
                ("MY_DNS_PORT_9153_SCTP_PORT", "9153"),
                ("MY_DNS_PORT_9153_SCTP_ADDR", "10.43.0.10"),
            ])
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed_in_urls_only() {
        let s = svc("ns", "v6", "fd00::5", &[(None, 8080, Some("TCP"))]);
        let vars = service_vars(&s);
        assert!(vars.contains(&("V6_SERVICE_HOST".into(), "fd00::5".into())), "{vars:?}");
        assert!(vars.contains(&("V6_PORT".into(), "tcp://[fd00::5]:8080".into())), "{vars:?}");
        assert!(vars.contains(&("V6_PORT_8080_TCP_ADDR".into(), "fd00::5".into())), "{vars:?}");
    }

    #[test]
    fn headless_and_external_name_services_yield_nothing() {
        assert!(service_vars(&svc("ns", "headless", "None", &[(None, 80, None)])).is_empty());
        assert!(service_vars(&svc("ns", "external", "", &[])).is_empty());
        let env = service_env(
            &[svc("ns", "headless", "None", &[(None, 80, None)]), svc("ns", "external", "", &[])],
            "ns",
            true,
        );
        assert!(env.is_empty(), "{env:?}");
    }

    #[test]
    fn the_pods_namespace_plus_the_master_service() {
        let all = [
            kubernetes(),
            svc("default", "other", "10.43.0.7", &[(None, 80, None)]),
            svc("app", "web", "10.43.0.8", &[(None, 8080, None)]),
            svc("elsewhere", "db", "10.43.0.9", &[(None, 5432, None)]),
        ];
        let names = |ns: &str, links: bool| -> Vec<String> {
            services_for_pod(&all, ns, links).values().map(|s| s.metadata.name.clone().unwrap_or_default()).collect()
        };
        assert_eq!(names("app", true), ["kubernetes", "web"]);
        assert_eq!(names("app", false), ["kubernetes"]);
        assert_eq!(names("default", true), ["kubernetes", "other"]);
        assert_eq!(names("default", false), ["kubernetes"]);
        let env = service_env(&all, "app", false);
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert_eq!(env.get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(env.get("KUBERNETES_PORT_443_TCP"), Some("tcp://10.43.0.1:443"));
        assert_eq!(env.vars().len(), 8);
        assert_eq!(env.get("WEB_SERVICE_HOST"), None);
    }

    #[test]
    fn a_local_kubernetes_service_wins_over_the_master_one_in_either_order() {
        let local = svc("app", "kubernetes", "10.43.0.99", &[(None, 80, None)]);
        for all in [vec![kubernetes(), local.clone()], vec![local.clone(), kubernetes()]] {
            assert_eq!(service_env(&all, "app", true).get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.99"));
            assert_eq!(service_env(&all, "app", false).get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        }
    }

    #[test]
    fn services_are_ordered_by_name() {
        let all = [svc("ns", "b", "10.0.0.2", &[(None, 1, None)]), svc("ns", "a", "10.0.0.1", &[(None, 1, None)])];
        let env = service_env(&all, "ns", true);
        assert_eq!(env.vars()[0].0, "A_SERVICE_HOST");
        assert_eq!(env.vars()[7].0, "B_SERVICE_HOST");
    }

    #[test]
    fn the_containers_own_variables_win() {
        let env = service_env(&[svc("ns", "kubia", "10.43.0.5", &[(None, 80, None)])], "ns", true);
        let merged = with_service_env(pairs(&[("KUBIA_SERVICE_HOST", "mine"), ("OTHER", "x")]), &env);
        assert_eq!(&merged[..2], &pairs(&[("KUBIA_SERVICE_HOST", "mine"), ("OTHER", "x")])[..]);
        assert_eq!(merged.iter().filter(|(k, _)| k == "KUBIA_SERVICE_HOST").count(), 1);
        assert_eq!(merged[2], ("KUBIA_SERVICE_PORT".to_string(), "80".to_string()));
        assert_eq!(merged.len(), 2 + 6);
    }
}
