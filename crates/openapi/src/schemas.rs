//! Schema definitions (Swagger 2.0 form, `#/definitions/...` refs) built from k8s-openapi's JsonSchema impls.
//!
//! k8s-openapi already names its schemas as upstream does (`io.k8s.api.core.v1.Pod`); this module collects the
//! ones the catalog needs, then patches the differences from upstream's documents: list kinds (k8s-openapi has no
//! schema for them), `x-kubernetes-group-version-kind`, patch strategies and merge keys, enums, int-or-string
//! types, and the hand-written v1beta1 Ingress that the legacy served versions speak.

use ferry_api::catalog::{Conversion, ResourceDef, CATALOG};
use ferry_api::k8s;
use ferry_api::GroupVersion;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// Definition name → schema, in Swagger 2.0 form.
pub type Definitions = Map<String, Value>;

pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const INGRESS_V1BETA1: &str = "io.k8s.api.networking.v1beta1.Ingress";

/// `#/definitions/<name>`
pub fn ref_to(name: &str) -> Value {
    json!({ "$ref": format!("#/definitions/{name}") })
}

/// Registers the k8s-openapi type of a catalog kind and returns its definition name.
fn register_kind(generator: &mut SchemaGenerator, gv: GroupVersion, kind: &str) -> Option<String> {
    fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
        generator.subschema_for::<T>();
        Some(T::schema_name().into_owned())
    }
    use k8s::api::{apps, batch, coordination, core, discovery, networking};
    match (gv.group, kind) {
        ("", "Namespace") => add::<core::v1::Namespace>(generator),
        ("", "Pod") => add::<core::v1::Pod>(generator),
        ("", "Service") => add::<core::v1::Service>(generator),
        ("", "Endpoints") => add::<core::v1::Endpoints>(generator),
        ("", "Node") => add::<core::v1::Node>(generator),
        ("", "ReplicationController") => add::<core::v1::ReplicationController>(generator),
        ("", "Secret") => add::<core::v1::Secret>(generator),
        ("", "ConfigMap") => add::<core::v1::ConfigMap>(generator),
        ("", "Event") => add::<core::v1::Event>(generator),
        ("", "ServiceAccount") => add::<core::v1::ServiceAccount>(generator),
        ("apps", "Deployment") => add::<apps::v1::Deployment>(generator),
        ("apps", "ReplicaSet") => add::<apps::v1::ReplicaSet>(generator),
        ("apps", "DaemonSet") => add::<apps::v1::DaemonSet>(generator),
        ("apps", "ControllerRevision") => add::<apps::v1::ControllerRevision>(generator),
        ("batch", "Job") => add::<batch::v1::Job>(generator),
        ("batch", "CronJob") => add::<batch::v1::CronJob>(generator),
        ("networking.k8s.io", "Ingress") => add::<networking::v1::Ingress>(generator),
        ("networking.k8s.io", "IngressClass") => add::<networking::v1::IngressClass>(generator),
        ("discovery.k8s.io", "EndpointSlice") => add::<discovery::v1::EndpointSlice>(generator),
        ("coordination.k8s.io", "Lease") => add::<coordination::v1::Lease>(generator),
        _ => None,
    }
}

/// The definitions a resource uses at one served version: (object, list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindNames {
    pub object: String,
    pub list: String,
}

/// Everything the paths need to know about the schemas.
pub struct Schemas {
    pub definitions: Definitions,
    /// (resource index in CATALOG, served group/version) → definition names.
    names: Vec<(usize, GroupVersion, KindNames)>,
}

impl Schemas {
    /// The definitions for resource `r` (an element of CATALOG) served at `gv`, if it has a schema.
    pub fn names(&self, r: &ResourceDef, gv: GroupVersion) -> Option<&KindNames> {
        let index = CATALOG.iter().position(|c| std::ptr::eq(c, r))?;
        self.names.iter().find(|(i, g, _)| *i == index && *g == gv).map(|(_, _, n)| n)
    }
}

/// Builds every definition the served API needs.
pub fn build() -> Schemas {
    let settings = SchemaSettings::draft07().with(|s| {
        s.meta_schema = None;
        s.transforms.clear();
        s.definitions_path = "/definitions".into();
    });
    let mut generator = SchemaGenerator::new(settings);
    generator.subschema_for::<k8s::apimachinery::pkg::apis::meta::v1::Status>();
    generator.subschema_for::<k8s::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    generator.subschema_for::<k8s::apimachinery::pkg::apis::meta::v1::WatchEvent<k8s::api::core::v1::Pod>>();
    generator.subschema_for::<k8s::apimachinery::pkg::apis::meta::v1::ListMeta>();
    generator.subschema_for::<k8s::api::autoscaling::v1::Scale>();

    let mut names = Vec::new();
    let mut kinds_of_storage: Vec<(usize, String)> = Vec::new();
    for (index, r) in CATALOG.iter().enumerate() {
        if let Some(name) = register_kind(&mut generator, r.gv, r.kind) {
            kinds_of_storage.push((index, name));
        }
    }
    let mut defs = generator.take_definitions(false);
    defs.insert(
        PATCH.to_string(),
        json!({
            "description": "Patch carries the body of a PATCH request; its media type says which kind of patch it is.",
            "type": "object",
        }),
    );
    add_ingress_v1beta1(&mut defs);

    let mut gvks: Vec<(String, Value)> = Vec::new();
    for (index, storage_name) in kinds_of_storage {
        let r = &CATALOG[index];
        for sv in r.served() {
            let object = match sv.conversion {
                Conversion::Identity => storage_name.clone(),
                Conversion::IngressV1beta1 => INGRESS_V1BETA1.to_string(),
            };
            let list = format!("{object}List");
            if !defs.contains_key(&list) {
                defs.insert(list.clone(), list_schema(r, &object));
            }
            gvks.push((object.clone(), gvk(sv.gv, r.kind)));
            gvks.push((list.clone(), gvk(sv.gv, &r.list_kind())));
            names.push((index, sv.gv, KindNames { object, list }));
        }
    }
    // Meta kinds every group/version speaks.
    gvks.push((STATUS.to_string(), gvk(GroupVersion::new("", "v1"), "Status")));
    gvks.push((SCALE.to_string(), gvk(GroupVersion::new("autoscaling", "v1"), "Scale")));
    for (gv, _) in ferry_api::catalog::group_versions() {
        gvks.push((DELETE_OPTIONS.to_string(), gvk(gv, "DeleteOptions")));
        gvks.push((WATCH_EVENT.to_string(), gvk(gv, "WatchEvent")));
    }
    for (name, entry) in gvks {
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            let list = schema.entry("x-kubernetes-group-version-kind").or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                if !list.contains(&entry) {
                    list.push(entry);
                }
            }
        }
    }

    for (name, schema) in defs.iter_mut() {
        fix_schema(name, schema);
    }
    for (def, field, strategy, key) in PATCH_STRATEGIES {
        if let Some(prop) = property_mut(&mut defs, def, field) {
            prop.insert("x-kubernetes-patch-strategy".into(), Value::from(*strategy));
            if let Some(key) = key {
                prop.insert("x-kubernetes-patch-merge-key".into(), Value::from(*key));
            }
        }
    }
    for (def, field, values) in ENUMS {
        if let Some(prop) = property_mut(&mut defs, def, field) {
            prop.insert("enum".into(), values.iter().map(|v| Value::from(*v)).collect());
        }
    }
    Schemas { definitions: sorted(defs), names }
}

fn sorted(defs: Definitions) -> Definitions {
    let mut entries: Vec<(String, Value)> = defs.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().collect()
}

fn gvk(gv: GroupVersion, kind: &str) -> Value {
    json!({ "group": gv.group, "kind": kind, "version": gv.version })
}

fn property_mut<'a>(defs: &'a mut Definitions, def: &str, field: &str) -> Option<&'a mut Map<String, Value>> {
    defs.get_mut(def)?.get_mut("properties")?.get_mut(field)?.as_object_mut()
}

/// Upstream-compatible adjustments applied to every definition.
fn fix_schema(name: &str, schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    // Upstream types int-or-string values as strings (kubectl's validation accepts numbers there).
    if obj.remove("x-kubernetes-int-or-string").is_some() && !obj.contains_key("type") {
        obj.insert("type".into(), Value::from("string"));
        if name == INT_OR_STRING {
            obj.insert("format".into(), Value::from("int-or-string"));
        }
    }
    // k8s-openapi marks `metadata` required because it is not optional in Rust; upstream never does.
    let has_object_meta = obj
        .get("properties")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("$ref"))
        .and_then(Value::as_str)
        .is_some_and(|r| r.ends_with(OBJECT_META) || r.ends_with(LIST_META));
    if has_object_meta {
        if let Some(Value::Array(required)) = obj.get_mut("required") {
            required.retain(|f| f != "metadata");
            if required.is_empty() {
                obj.remove("required");
            }
        }
    }
}

fn list_schema(r: &ResourceDef, object: &str) -> Value {
    let kind = r.kind;
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", r.plural),
                "type": "array",
                "items": ref_to(object),
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": with_description(ref_to(LIST_META), "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"),
        },
        "required": ["items"],
    })
}

fn with_description(mut schema: Value, description: &str) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("description".into(), Value::from(description));
    }
    schema
}

/// The `networking.k8s.io/v1beta1` (and `extensions/v1beta1`) Ingress: backends name a service and port directly.
fn add_ingress_v1beta1(defs: &mut Definitions) {
    const P: &str = "io.k8s.api.networking.v1beta1.";
    let name = |n: &str| format!("{P}{n}");
    let string = |d: &str| json!({ "description": d, "type": "string" });
    defs.insert(INGRESS_V1BETA1.to_string(), json!({
        "description": "Ingress is a collection of rules that let inbound connections reach the endpoints defined by a backend (v1beta1 form: backends name a service and a port).",
        "type": "object",
        "properties": {
            "apiVersion": string("APIVersion defines the versioned schema of this representation of an object."),
            "kind": string("Kind is a string value representing the REST resource this object represents."),
            "metadata": with_description(ref_to(OBJECT_META), "Standard object's metadata."),
            "spec": with_description(ref_to(&name("IngressSpec")), "Spec is the desired state of the Ingress."),
            "status": with_description(ref_to("io.k8s.api.networking.v1.IngressStatus"), "Status is the current state of the Ingress."),
        },
    }));
    defs.insert(name("IngressSpec"), json!({
        "description": "IngressSpec describes the Ingress the user wishes to exist.",
        "type": "object",
        "properties": {
            "backend": with_description(ref_to(&name("IngressBackend")), "A default backend for requests that match no rule."),
            "ingressClassName": string("The name of the IngressClass that handles this Ingress."),
            "rules": {
                "description": "Host rules used to configure the Ingress.",
                "type": "array",
                "items": ref_to(&name("IngressRule")),
            },
            "tls": {
                "description": "TLS configuration.",
                "type": "array",
                "items": ref_to("io.k8s.api.networking.v1.IngressTLS"),
            },
        },
    }));
    defs.insert(name("IngressBackend"), json!({
        "description": "IngressBackend names the service and port requests are sent to.",
        "type": "object",
        "properties": {
            "resource": with_description(ref_to("io.k8s.api.core.v1.TypedLocalObjectReference"), "A reference to another resource in the Ingress's namespace; exclusive with serviceName/servicePort."),
            "serviceName": string("The name of the referenced service."),
            "servicePort": with_description(ref_to(INT_OR_STRING), "The port (number or name) of the referenced service."),
        },
    }));
    defs.insert(
        name("IngressRule"),
        json!({
            "description": "IngressRule maps the paths under a host to backends.",
            "type": "object",
            "properties": {
                "host": string("The fully qualified domain name of a network host, as defined by RFC 3986."),
                "http": ref_to(&name("HTTPIngressRuleValue")),
            },
        }),
    );
    defs.insert(
        name("HTTPIngressRuleValue"),
        json!({
            "description": "HTTPIngressRuleValue is a list of HTTP selectors pointing to backends.",
            "type": "object",
            "properties": {
                "paths": {
                    "description": "A collection of paths that map requests to backends.",
                    "type": "array",
                    "items": ref_to(&name("HTTPIngressPath")),
                },
            },
            "required": ["paths"],
        }),
    );
    defs.insert(name("HTTPIngressPath"), json!({
        "description": "HTTPIngressPath associates a path with a backend.",
        "type": "object",
        "properties": {
            "backend": with_description(ref_to(&name("IngressBackend")), "Backend defines the referenced service endpoint to which the traffic will be forwarded to."),
            "path": string("Path is matched against the path of an incoming request."),
            "pathType": {
                "description": "PathType determines the interpretation of the path matching.",
                "type": "string",
                "enum": ["Exact", "ImplementationSpecific", "Prefix"],
            },
        },
        "required": ["backend"],
    }));
}

/// (definition, field, patch strategy, merge key) for the list fields strategic merge patch treats specially.
const PATCH_STRATEGIES: &[(&str, &str, &str, Option<&str>)] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", Some("topologyKey")),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", Some("port")),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", Some("name")),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", Some("type")),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", None),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", Some("type")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", None),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", Some("uid")),
];

/// (definition, field, allowed values) for the string enums users meet most.
const ENUMS: &[(&str, &str, &[&str])] = &[
    ("io.k8s.api.core.v1.PodSpec", "restartPolicy", &["Always", "Never", "OnFailure"]),
    ("io.k8s.api.core.v1.PodSpec", "dnsPolicy", &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]),
    ("io.k8s.api.core.v1.PodSpec", "preemptionPolicy", &["Never", "PreemptLowerPriority"]),
    ("io.k8s.api.core.v1.Container", "imagePullPolicy", &["Always", "IfNotPresent", "Never"]),
    ("io.k8s.api.core.v1.Container", "terminationMessagePolicy", &["FallbackToLogsOnError", "File"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "imagePullPolicy", &["Always", "IfNotPresent", "Never"]),
    ("io.k8s.api.core.v1.ContainerPort", "protocol", &["SCTP", "TCP", "UDP"]),
    ("io.k8s.api.core.v1.ServicePort", "protocol", &["SCTP", "TCP", "UDP"]),
    ("io.k8s.api.core.v1.EndpointPort", "protocol", &["SCTP", "TCP", "UDP"]),
    ("io.k8s.api.discovery.v1.EndpointPort", "protocol", &["SCTP", "TCP", "UDP"]),
    ("io.k8s.api.core.v1.ServiceSpec", "type", &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]),
    ("io.k8s.api.core.v1.ServiceSpec", "sessionAffinity", &["ClientIP", "None"]),
    ("io.k8s.api.core.v1.ServiceSpec", "externalTrafficPolicy", &["Cluster", "Local"]),
    ("io.k8s.api.core.v1.ServiceSpec", "internalTrafficPolicy", &["Cluster", "Local"]),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilyPolicy", &["PreferDualStack", "RequireDualStack", "SingleStack"]),
    ("io.k8s.api.core.v1.PodStatus", "phase", &["Failed", "Pending", "Running", "Succeeded", "Unknown"]),
    ("io.k8s.api.core.v1.PodStatus", "qosClass", &["BestEffort", "Burstable", "Guaranteed"]),
    ("io.k8s.api.core.v1.NamespaceStatus", "phase", &["Active", "Terminating"]),
    ("io.k8s.api.core.v1.Toleration", "operator", &["Equal", "Exists"]),
    ("io.k8s.api.core.v1.Toleration", "effect", &["NoExecute", "NoSchedule", "PreferNoSchedule"]),
    ("io.k8s.api.core.v1.Taint", "effect", &["NoExecute", "NoSchedule", "PreferNoSchedule"]),
    ("io.k8s.api.core.v1.HTTPGetAction", "scheme", &["HTTP", "HTTPS"]),
    ("io.k8s.api.apps.v1.DeploymentStrategy", "type", &["Recreate", "RollingUpdate"]),
    ("io.k8s.api.apps.v1.DaemonSetUpdateStrategy", "type", &["OnDelete", "RollingUpdate"]),
    ("io.k8s.api.batch.v1.CronJobSpec", "concurrencyPolicy", &["Allow", "Forbid", "Replace"]),
    ("io.k8s.api.batch.v1.JobSpec", "completionMode", &["Indexed", "NonIndexed"]),
    ("io.k8s.api.batch.v1.JobSpec", "podReplacementPolicy", &["Failed", "TerminatingOrFailed"]),
    ("io.k8s.api.networking.v1.HTTPIngressPath", "pathType", &["Exact", "ImplementationSpecific", "Prefix"]),
    ("io.k8s.api.discovery.v1.EndpointSlice", "addressType", &["FQDN", "IPv4", "IPv6"]),
];

/// Every `$ref` target (definition name) inside `value`.
pub fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|r| r.strip_prefix("#/definitions/")) {
                        out.push(name.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_kind_has_a_schema_at_every_served_version() {
        let schemas = build();
        for r in CATALOG {
            for sv in r.served() {
                let names = schemas.names(r, sv.gv).unwrap_or_else(|| panic!("{} at {}", r.kind, sv.gv));
                let object = &schemas.definitions[&names.object];
                let gvks = object["x-kubernetes-group-version-kind"].as_array().expect("gvk list");
                assert!(gvks.contains(&gvk(sv.gv, r.kind)), "{} lacks {}", names.object, sv.gv);
                let list = &schemas.definitions[&names.list];
                assert_eq!(list["properties"]["items"]["items"]["$ref"], format!("#/definitions/{}", names.object));
            }
        }
    }

    #[test]
    fn names_follow_upstream() {
        let schemas = build();
        let d = &schemas.definitions;
        for name in [
            "io.k8s.api.core.v1.Pod",
            "io.k8s.api.core.v1.PodList",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            STATUS,
            DELETE_OPTIONS,
            WATCH_EVENT,
            SCALE,
            PATCH,
            "io.k8s.api.apps.v1.DeploymentList",
        ] {
            assert!(d.contains_key(name), "{name}");
        }
        assert_eq!(
            d["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        assert!(d["io.k8s.api.core.v1.Pod"].get("required").is_none());
        assert!(d["io.k8s.api.core.v1.Pod"]["description"].as_str().is_some_and(|s| s.starts_with("Pod is")));
        assert_eq!(d["io.k8s.api.core.v1.Container"]["required"], json!(["name"]));
    }

    #[test]
    fn legacy_versions_share_or_get_their_schema() {
        let d = build().definitions;
        let rs = d["io.k8s.api.apps.v1.ReplicaSet"]["x-kubernetes-group-version-kind"].as_array().cloned();
        assert_eq!(
            rs,
            Some(vec![
                json!({"group": "apps", "kind": "ReplicaSet", "version": "v1"}),
                json!({"group": "apps", "kind": "ReplicaSet", "version": "v1beta2"})
            ])
        );
        let cj = &d["io.k8s.api.batch.v1.CronJob"]["x-kubernetes-group-version-kind"];
        assert!(cj
            .as_array()
            .is_some_and(|l| l.contains(&json!({"group":"batch","kind":"CronJob","version":"v1beta1"}))));
        let ing = &d[INGRESS_V1BETA1];
        assert_eq!(
            ing["x-kubernetes-group-version-kind"],
            json!([
                {"group": "networking.k8s.io", "kind": "Ingress", "version": "v1beta1"},
                {"group": "extensions", "kind": "Ingress", "version": "v1beta1"}
            ])
        );
        let backend = &d["io.k8s.api.networking.v1beta1.IngressBackend"]["properties"];
        assert_eq!(backend["servicePort"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString");
        assert_eq!(backend["serviceName"]["type"], "string");
        let v1 = &d["io.k8s.api.networking.v1.Ingress"]["x-kubernetes-group-version-kind"];
        assert_eq!(v1, &json!([{"group": "networking.k8s.io", "kind": "Ingress", "version": "v1"}]));
    }

    #[test]
    fn patch_metadata_enums_and_int_or_string() {
        let d = build().definitions;
        let containers = &d["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let env = &d["io.k8s.api.core.v1.Container"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            d["io.k8s.api.core.v1.PodSpec"]["properties"]["restartPolicy"]["enum"],
            json!(["Always", "Never", "OnFailure"])
        );
        let ios = &d["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!((&ios["type"], &ios["format"]), (&json!("string"), &json!("int-or-string")));
        assert_eq!(d["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"], "string");
        // Every table entry hit a real property.
        for (def, field, _, _) in PATCH_STRATEGIES {
            assert!(d[*def]["properties"][*field]["x-kubernetes-patch-strategy"].is_string(), "{def}.{field}");
        }
        for (def, field, _) in ENUMS {
            assert!(d[*def]["properties"][*field]["enum"].is_array(), "{def}.{field}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        let d = build().definitions;
        let mut refs = Vec::new();
        for schema in d.values() {
            collect_refs(schema, &mut refs);
        }
        for r in refs {
            assert!(d.contains_key(&r), "dangling {r}");
        }
    }
}
