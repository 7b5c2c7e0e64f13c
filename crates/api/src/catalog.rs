//! The catalog: one row per served resource, with everything discovery, OpenAPI and routing need.

use crate::key::GroupVersion;

/// A subresource of a resource (`pods/log`, `deployments/scale`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Log,
    Exec,
    Attach,
    PortForward,
    Proxy,
    Binding,
    Eviction,
    Finalize,
    Token,
}

impl Subresource {
    pub fn name(&self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Proxy => "proxy",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
        }
    }
    pub fn from_name(s: &str) -> Option<Subresource> {
        Some(match s {
            "status" => Subresource::Status,
            "scale" => Subresource::Scale,
            "log" => Subresource::Log,
            "exec" => Subresource::Exec,
            "attach" => Subresource::Attach,
            "portforward" => Subresource::PortForward,
            "proxy" => Subresource::Proxy,
            "binding" => Subresource::Binding,
            "eviction" => Subresource::Eviction,
            "finalize" => Subresource::Finalize,
            "token" => Subresource::Token,
            _ => return None,
        })
    }
    /// (kind, group, version) of the object the subresource speaks, when it is not the parent's kind.
    pub fn kind(&self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Scale => Some(("Scale", "autoscaling", "v1")),
            Subresource::Binding => Some(("Binding", "", "v1")),
            Subresource::Eviction => Some(("Eviction", "policy", "v1")),
            Subresource::Token => Some(("TokenRequest", "authentication.k8s.io", "v1")),
            Subresource::Log
            | Subresource::Exec
            | Subresource::Attach
            | Subresource::PortForward
            | Subresource::Proxy => None,
            Subresource::Status | Subresource::Finalize => None,
        }
    }
    /// Verbs discovery lists for the subresource.
    pub fn verbs(&self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => &["create", "get"],
            Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
            Subresource::Finalize => &["update"],
        }
    }
}

/// How an older served version maps to the storage version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// Same schema; only `apiVersion` changes.
    Identity,
    /// `extensions/v1beta1` or `networking.k8s.io/v1beta1` Ingress (serviceName/servicePort).
    IngressV1beta1,
}

/// A version a resource is served at besides its storage version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedVersion {
    pub gv: GroupVersion,
    pub conversion: Conversion,
}

/// One served resource.
#[derive(Clone, Copy, Debug)]
pub struct ResourceDef {
    /// The preferred (and storage) group/version.
    pub gv: GroupVersion,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Older versions accepted and converted (served only for the seeds' manifests).
    pub legacy: &'static [ServedVersion],
    /// Whether `deletecollection` is served (namespaces do not serve it).
    pub delete_collection: bool,
}

impl ResourceDef {
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    /// Verbs discovery lists for the main resource.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.delete_collection {
            &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        } else {
            &["create", "delete", "get", "list", "patch", "update", "watch"]
        }
    }
    pub fn has_subresource(&self, s: Subresource) -> bool {
        self.subresources.contains(&s)
    }
    /// The prefix under which objects of this resource are stored: `/registry/<group>/<plural>/`.
    pub fn storage_prefix(&self) -> String {
        let group = if self.gv.group.is_empty() { "core" } else { self.gv.group };
        format!("/registry/{group}/{}/", self.plural)
    }
    /// Every group/version this resource is served at, preferred first.
    pub fn served(&self) -> impl Iterator<Item = ServedVersion> + '_ {
        std::iter::once(ServedVersion { gv: self.gv, conversion: Conversion::Identity })
            .chain(self.legacy.iter().copied())
    }
}

const CORE: GroupVersion = GroupVersion::new("", "v1");
const APPS: GroupVersion = GroupVersion::new("apps", "v1");
const BATCH: GroupVersion = GroupVersion::new("batch", "v1");
const NETWORKING: GroupVersion = GroupVersion::new("networking.k8s.io", "v1");
const DISCOVERY: GroupVersion = GroupVersion::new("discovery.k8s.io", "v1");
const COORDINATION: GroupVersion = GroupVersion::new("coordination.k8s.io", "v1");

const APPS_V1BETA2: ServedVersion =
    ServedVersion { gv: GroupVersion::new("apps", "v1beta2"), conversion: Conversion::Identity };
const BATCH_V1BETA1: ServedVersion =
    ServedVersion { gv: GroupVersion::new("batch", "v1beta1"), conversion: Conversion::Identity };
const INGRESS_LEGACY: &[ServedVersion] = &[
    ServedVersion { gv: GroupVersion::new("networking.k8s.io", "v1beta1"), conversion: Conversion::IngressV1beta1 },
    ServedVersion { gv: GroupVersion::new("extensions", "v1beta1"), conversion: Conversion::IngressV1beta1 },
];

use Subresource::*;

#[allow(clippy::too_many_arguments)]
const fn def(
    gv: GroupVersion,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceDef {
    ResourceDef {
        gv,
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        categories,
        subresources,
        legacy: &[],
        delete_collection: true,
    }
}

/// Every resource ferry serves, in the order discovery lists groups (core first; a group's
/// position decides which group wins when kubectl resolves a bare resource name).
pub static CATALOG: &[ResourceDef] = &[
    ResourceDef {
        delete_collection: false,
        ..def(CORE, "Namespace", "namespaces", "namespace", &["ns"], false, &[], &[Status, Finalize])
    },
    def(
        CORE,
        "Pod",
        "pods",
        "pod",
        &["po"],
        true,
        &["all"],
        &[Status, Log, Exec, Attach, PortForward, Proxy, Binding, Eviction],
    ),
    def(CORE, "Service", "services", "service", &["svc"], true, &["all"], &[Status, Proxy]),
    def(CORE, "Endpoints", "endpoints", "endpoints", &["ep"], true, &[], &[]),
    def(CORE, "Node", "nodes", "node", &["no"], false, &[], &[Status, Proxy]),
    def(
        CORE,
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        &["rc"],
        true,
        &["all"],
        &[Status, Scale],
    ),
    def(CORE, "Secret", "secrets", "secret", &[], true, &[], &[]),
    def(CORE, "ConfigMap", "configmaps", "configmap", &["cm"], true, &[], &[]),
    def(CORE, "Event", "events", "event", &["ev"], true, &[], &[]),
    def(CORE, "ServiceAccount", "serviceaccounts", "serviceaccount", &["sa"], true, &[], &[Token]),
    def(APPS, "Deployment", "deployments", "deployment", &["deploy"], true, &["all"], &[Status, Scale]),
    ResourceDef {
        legacy: &[APPS_V1BETA2],
        ..def(APPS, "ReplicaSet", "replicasets", "replicaset", &["rs"], true, &["all"], &[Status, Scale])
    },
    ResourceDef {
        legacy: &[APPS_V1BETA2],
        ..def(APPS, "DaemonSet", "daemonsets", "daemonset", &["ds"], true, &["all"], &[Status])
    },
    def(APPS, "ControllerRevision", "controllerrevisions", "controllerrevision", &[], true, &[], &[]),
    def(BATCH, "Job", "jobs", "job", &[], true, &["all"], &[Status]),
    ResourceDef {
        legacy: &[BATCH_V1BETA1],
        ..def(BATCH, "CronJob", "cronjobs", "cronjob", &["cj"], true, &["all"], &[Status])
    },
    ResourceDef {
        legacy: INGRESS_LEGACY,
        ..def(NETWORKING, "Ingress", "ingresses", "ingress", &["ing"], true, &[], &[Status])
    },
    def(NETWORKING, "IngressClass", "ingressclasses", "ingressclass", &[], false, &[], &[]),
    def(DISCOVERY, "EndpointSlice", "endpointslices", "endpointslice", &[], true, &[], &[]),
    def(COORDINATION, "Lease", "leases", "lease", &[], true, &[], &[]),
];

/// Every group/version served, in discovery order, with the resources served at it.
pub fn group_versions() -> Vec<(GroupVersion, Vec<&'static ResourceDef>)> {
    let mut out: Vec<(GroupVersion, Vec<&'static ResourceDef>)> = Vec::new();
    for r in CATALOG.iter() {
        for sv in r.served() {
            match out.iter_mut().find(|(gv, _)| *gv == sv.gv) {
                Some((_, list)) => list.push(r),
                None => out.push((sv.gv, vec![r])),
            }
        }
    }
    // Preferred versions before legacy ones within a group; groups keep first-seen order, but
    // the legacy-only `extensions` group goes last so `ingress` resolves to networking.k8s.io.
    let order = |gv: &GroupVersion| -> (usize, usize) {
        let group_rank = out_group_rank(gv.group);
        let legacy = usize::from(gv.version.contains("beta"));
        (group_rank, legacy)
    };
    out.sort_by_key(|(gv, _)| order(gv));
    out
}

fn out_group_rank(group: &str) -> usize {
    const ORDER: &[&str] =
        &["", "apps", "batch", "networking.k8s.io", "discovery.k8s.io", "coordination.k8s.io", "extensions"];
    ORDER.iter().position(|g| *g == group).unwrap_or(ORDER.len())
}

/// Find a resource by its plural name at a served group/version.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<(&'static ResourceDef, ServedVersion)> {
    CATALOG.iter().find_map(|r| {
        if r.plural != plural {
            return None;
        }
        r.served().find(|sv| sv.gv.group == group && sv.gv.version == version).map(|sv| (r, sv))
    })
}

/// Find a resource by kind at a served group/version (`apiVersion` + `kind` of a body).
pub fn lookup_kind(group: &str, version: &str, kind: &str) -> Option<(&'static ResourceDef, ServedVersion)> {
    CATALOG.iter().find_map(|r| {
        if r.kind != kind {
            return None;
        }
        r.served().find(|sv| sv.gv.group == group && sv.gv.version == version).map(|sv| (r, sv))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_ordered_for_kubectl() {
        let gvs: Vec<String> = group_versions().iter().map(|(gv, _)| gv.api_version()).collect();
        assert_eq!(
            gvs,
            [
                "v1",
                "apps/v1",
                "apps/v1beta2",
                "batch/v1",
                "batch/v1beta1",
                "networking.k8s.io/v1",
                "networking.k8s.io/v1beta1",
                "discovery.k8s.io/v1",
                "coordination.k8s.io/v1",
                "extensions/v1beta1"
            ]
        );
    }

    #[test]
    fn lookup_finds_legacy_versions() {
        let (r, sv) = lookup("extensions", "v1beta1", "ingresses").expect("served");
        assert_eq!(r.kind, "Ingress");
        assert_eq!(sv.conversion, Conversion::IngressV1beta1);
        assert!(lookup("extensions", "v1beta1", "pods").is_none());
        assert_eq!(lookup_kind("apps", "v1beta2", "ReplicaSet").map(|(r, _)| r.plural), Some("replicasets"));
    }
}
