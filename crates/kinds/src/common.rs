//! Shared machinery for the per-kind strategies: typed decode/encode, unknown-field detection,
//! upstream's `HumanDuration`, metadata validation and name rules, status handling, and
//! [`Typed`], a generic [`Strategy`] built from a small [`KindImpl`] description.
//!
//! Defining a kind takes a unit struct implementing [`KindImpl`] and a static:
//!
//! ```ignore
//! struct ConfigMapKind;
//! impl KindImpl for ConfigMapKind {
//!     type Obj = k8s::api::core::v1::ConfigMap;
//!     const NAMESPACED: bool = true;
//!     const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
//!     const COLUMNS: &'static [Column] = &[NAME_COLUMN, /* ... */ AGE_COLUMN];
//!     fn row(obj: &Self::Obj, now: Timestamp) -> TableRow { vec![name_cell(obj), /* ... */ age_cell(obj, now)] }
//! }
//! static CONFIG_MAP: Typed<ConfigMapKind> = Typed::new();
//! ```

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::IpAddr;

use ferry_api::k8s::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use ferry_apimachinery::field::{BadValue, ErrorType, FieldError, FieldErrors, Path};
use ferry_apimachinery::names;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::Metadata as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::strategy::{DecodeError, Strategy};
use crate::table::{Column, TableRow};

// ---------------------------------------------------------------------------------------------
// Decode / encode / unknown fields
// ---------------------------------------------------------------------------------------------

/// Decode a JSON object into `T`, ignoring `apiVersion`/`kind` (the API server has already
/// resolved them) and unknown fields. Errors read like upstream's:
/// `Service in version "v1" cannot be handled as a Service: <detail>`.
pub(crate) fn decode<T>(obj: Value) -> Result<T, DecodeError>
where
    T: DeserializeOwned + k8s_openapi::Resource,
{
    let mut obj = obj;
    match &mut obj {
        Value::Object(map) => {
            map.remove("apiVersion");
            map.remove("kind");
        }
        other => {
            let detail = format!("expected a JSON object, got {}", json_type_name(other));
            return Err(decode_error::<T>(&detail));
        }
    }
    serde_json::from_value(obj).map_err(|e| decode_error::<T>(&e.to_string()))
}

/// The upstream-shaped decode error for `T`.
pub(crate) fn decode_error<T: k8s_openapi::Resource>(detail: &str) -> DecodeError {
    DecodeError {
        message: format!("{} in version {:?} cannot be handled as a {}: {detail}", T::KIND, T::VERSION, T::KIND),
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Encode a typed object; the output carries the type's `apiVersion` and `kind`.
pub(crate) fn encode<T: Serialize>(obj: &T) -> Value {
    // Serializing k8s-openapi types cannot fail (all map keys are strings).
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

/// Paths (`.spec.ports[0].NodePort`) of fields in `obj` that `T` does not know. Computed by
/// decoding, re-encoding and diffing key sets; keys whose input value is `null` are ignored.
/// A body that does not decode reports nothing (the decode error is reported elsewhere).
pub(crate) fn unknown_fields<T>(obj: &Value) -> Vec<String>
where
    T: DeserializeOwned + Serialize + k8s_openapi::Resource,
{
    let Ok(typed) = decode::<T>(obj.clone()) else {
        return Vec::new();
    };
    let known = encode(&typed);
    let mut out = Vec::new();
    diff_unknown(obj, &known, &mut String::new(), &mut out);
    out
}

/// Appends to `out` the paths of keys present (non-null) in `input` and absent from `known`.
pub(crate) fn diff_unknown(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let len = path.len();
                path.push('.');
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => diff_unknown(v, kv, path, out),
                    None if path == ".apiVersion" || path == ".kind" => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (iv, kv)) in i.iter().zip(k.iter()).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{idx}]"));
                diff_unknown(iv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Durations and table cells
// ---------------------------------------------------------------------------------------------

/// Upstream `k8s.io/apimachinery/pkg/util/duration.HumanDuration`: "45s", "2m30s", "15m",
/// "5h3m", "20h", "3d4h", "40d", "2y10d", "9y"; "0s" for tiny negatives, "<invalid>" below -1s.
pub(crate) fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// Upstream printers' `translateTimestampSince`: `<unknown>` without a timestamp.
pub(crate) fn timestamp_since(ts: Option<&Time>, now: Timestamp) -> String {
    match ts {
        Some(t) => human_duration(now.duration_since(t.0)),
        None => "<unknown>".to_string(),
    }
}

/// The AGE cell of an object (from `metadata.creationTimestamp`).
pub(crate) fn age_cell<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(obj: &T, now: Timestamp) -> Value {
    Value::String(timestamp_since(obj.metadata().creation_timestamp.as_ref(), now))
}

/// The NAME cell of an object.
pub(crate) fn name_cell<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(obj: &T) -> Value {
    Value::String(obj.metadata().name.clone().unwrap_or_default())
}

/// The standard NAME column (always first).
pub(crate) const NAME_COLUMN: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};

/// The standard AGE column.
pub(crate) const AGE_COLUMN: Column = Column {
    name: "Age",
    type_: "string",
    format: "",
    description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    priority: 0,
};

/// A column with no description (priority 0 = always shown, 1 = wide only).
pub(crate) const fn column(name: &'static str, type_: &'static str, priority: i32) -> Column {
    Column { name, type_, format: "", description: "", priority }
}

/// A string cell.
pub(crate) fn cell(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

/// `k=v,k2=v2` (sorted by key) or `<none>`, as upstream's `labels.FormatLabels`.
pub(crate) fn format_labels(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        Some(m) if !m.is_empty() => m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        _ => "<none>".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Status handling (prepare hooks on JSON)
// ---------------------------------------------------------------------------------------------

/// Remove `status` (PrepareForCreate of kinds with a status subresource).
pub(crate) fn wipe_status(obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
    }
}

/// `new.status = old.status` (PrepareForUpdate of kinds with a status subresource).
pub(crate) fn copy_status(new: &mut Value, old: &Value) {
    copy_top_level(new, old, "status");
}

fn copy_top_level(new: &mut Value, old: &Value, key: &str) {
    let Some(map) = new.as_object_mut() else { return };
    match old.get(key) {
        Some(v) => {
            map.insert(key.to_string(), v.clone());
        }
        None => {
            map.remove(key);
        }
    }
}

/// Status-subresource update: keep everything of `old` except `status` (and the metadata a
/// status write may carry: resourceVersion, managedFields). Mirrors upstream's status strategies
/// (`new.Spec = old.Spec`) plus `ResetObjectMetaForStatus` (labels, annotations, finalizers,
/// ownerReferences, deletionTimestamp and generation come from the old object).
pub(crate) fn keep_all_but_status(new: &mut Value, old: &Value) {
    let Some(new_map) = new.as_object_mut() else { return };
    let Some(old_map) = old.as_object() else { return };
    let keys: Vec<String> = new_map.keys().chain(old_map.keys()).cloned().collect();
    for key in keys {
        if key == "status" || key == "metadata" || key == "apiVersion" || key == "kind" {
            continue;
        }
        match old_map.get(&key) {
            Some(v) => {
                new_map.insert(key, v.clone());
            }
            None => {
                new_map.remove(&key);
            }
        }
    }
    reset_meta_for_status(new, old);
}

/// Upstream `ResetObjectMetaForStatus`: metadata a status write may not change.
pub(crate) fn reset_meta_for_status(new: &mut Value, old: &Value) {
    const KEPT: &[&str] =
        &["labels", "annotations", "finalizers", "ownerReferences", "deletionTimestamp", "generation"];
    let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let Some(new_map) = new.as_object_mut() else { return };
    let meta = new_map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else { return };
    for key in KEPT {
        match old_meta.get(*key) {
            Some(v) => {
                meta.insert((*key).to_string(), v.clone());
            }
            None => {
                meta.remove(*key);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Name rules: thin wrappers over `ferry_apimachinery::names` (upstream's util/validation), typed
// for the strategies' use.
// ---------------------------------------------------------------------------------------------

/// `IsDNS1123Label`: error messages, empty when valid.
pub(crate) fn is_dns1123_label(s: &str) -> Vec<String> {
    names::is_dns1123_label(s)
}

/// `IsDNS1123Subdomain`.
pub(crate) fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    names::is_dns1123_subdomain(s)
}

/// `IsDNS1035Label`.
pub(crate) fn is_dns1035_label(s: &str) -> Vec<String> {
    names::is_dns1035_label(s)
}

/// `IsWildcardDNS1123Subdomain`: `*.` followed by a subdomain.
pub(crate) fn is_wildcard_dns1123_subdomain(s: &str) -> Vec<String> {
    const MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(names::max_len_error(253));
    }
    match s.strip_prefix("*.") {
        Some(rest) if names::is_dns1123_subdomain(rest).is_empty() => {}
        _ => errs.push(MSG.to_string()),
    }
    errs
}

/// `IsQualifiedName` (label keys, annotation keys, finalizers): `[prefix/]name`.
pub(crate) fn is_qualified_name(s: &str) -> Vec<String> {
    names::is_qualified_name(s)
}

/// `IsValidLabelValue`.
pub(crate) fn is_valid_label_value(s: &str) -> Vec<String> {
    names::is_valid_label_value(s)
}

/// `IsValidPortName` (IANA_SVC_NAME).
pub(crate) fn is_valid_port_name(s: &str) -> Vec<String> {
    names::is_valid_port_name(s)
}

/// `IsValidPortNum`.
pub(crate) fn is_valid_port_num(p: i32) -> Vec<String> {
    names::is_valid_port_num(i64::from(p))
}

/// One `Invalid` error per message.
pub(crate) fn invalid_each(path: &Path, value: impl Into<BadValueLike>, msgs: Vec<String>) -> FieldErrors {
    let value = value.into().0;
    msgs.into_iter().map(|m| FieldError::new(ErrorType::Invalid, path, value.clone(), m)).collect()
}

/// Adapter so [`invalid_each`] takes `&str`, `String` and numbers.
pub(crate) struct BadValueLike(BadValue);
impl<T: Into<BadValue>> From<T> for BadValueLike {
    fn from(v: T) -> Self {
        BadValueLike(v.into())
    }
}

/// Parse an IP the way upstream's legacy fields do (`ParseIPSloppy`: leading zeros allowed).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    names::parse_ip_sloppy(s)
}

/// `IsValidIPForLegacyField`: `must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`.
pub(crate) fn validate_ip(path: &Path, s: &str) -> FieldErrors {
    invalid_each(path, s, names::is_valid_ip(s))
}

/// `ValidateNonSpecialIP` / `ValidateEndpointIP`: a valid IP that is not unspecified,
/// loopback, link-local or link-local multicast.
pub(crate) fn validate_non_special_ip(path: &Path, s: &str) -> FieldErrors {
    let Some(ip) = parse_ip(s) else {
        return vec![FieldError::invalid(path, s, "must be a valid IP address")];
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let mut errs = Vec::new();
    if ip.is_unspecified() {
        errs.push(FieldError::invalid(path, s, format!("may not be unspecified ({s})")));
    }
    if ip.is_loopback() {
        errs.push(FieldError::invalid(path, s, "may not be in the loopback range (127.0.0.0/8, ::1/128)"));
    }
    let (link_local, link_local_mc) = match ip {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => {
            let seg = v6.segments()[0];
            ((seg & 0xffc0) == 0xfe80, (seg & 0xff0f) == 0xff02)
        }
    };
    if link_local {
        errs.push(FieldError::invalid(path, s, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"));
    }
    if link_local_mc {
        errs.push(FieldError::invalid(
            path,
            s,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// How a kind's `metadata.name` is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// `NameIsDNSSubdomain` (most kinds).
    Dns1123Subdomain,
    /// `NameIsDNSLabel` (namespaces).
    Dns1123Label,
    /// `NameIsDNS1035Label` (services).
    Dns1035Label,
    /// `ValidatePathSegmentName` (only `/`, `%`, `.` and `..` are rejected).
    PathSegment,
}

impl NameRule {
    fn to_names(self) -> names::NameRule {
        match self {
            NameRule::Dns1123Subdomain => names::NameRule::Dns1123Subdomain,
            NameRule::Dns1123Label => names::NameRule::Dns1123Label,
            NameRule::Dns1035Label => names::NameRule::Dns1035Label,
            NameRule::PathSegment => names::NameRule::PathSegment,
        }
    }
    /// Error messages for `name`, empty when valid.
    #[cfg(test)]
    pub(crate) fn check(self, name: &str) -> Vec<String> {
        self.to_names().check(name, false)
    }
}

/// Label keys and values (`ValidateLabels`) at `path` (usually `metadata.labels`).
pub(crate) fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &Path) -> FieldErrors {
    names::validate_labels(labels.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())), path)
}

/// Annotation keys and total size (`ValidateAnnotations`).
pub(crate) fn validate_annotations(annotations: Option<&BTreeMap<String, String>>, path: &Path) -> FieldErrors {
    names::validate_annotations(annotations.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())), path)
}

/// `ValidateObjectMeta` for create: name (or generateName), namespace presence, labels,
/// annotations, finalizers, ownerReferences, managedFields (delegates to
/// `ferry_apimachinery::names::validate_object_meta`).
pub(crate) fn validate_object_meta(meta: &ObjectMeta, namespaced: bool, rule: NameRule) -> FieldErrors {
    let value = serde_json::to_value(meta).unwrap_or(Value::Null);
    names::validate_object_meta(&value, namespaced, rule.to_names(), &Path::root("metadata"))
}

/// `metadata.name` / `metadata.namespace` field-selector labels, supported by every kind.
pub(crate) fn meta_field_label(meta: &ObjectMeta, label: &str) -> Option<String> {
    match label {
        "metadata.name" => Some(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Some(meta.namespace.clone().unwrap_or_default()),
        _ => None,
    }
}

/// "field is immutable" error when `new != old`.
pub(crate) fn validate_immutable<T: PartialEq + Serialize>(new: &T, old: &T, path: &Path) -> FieldErrors {
    if new == old {
        return Vec::new();
    }
    let shown = match serde_json::to_value(new) {
        Ok(Value::String(s)) => BadValue::Str(s),
        Ok(v) => BadValue::Raw(go_like(&v)),
        Err(_) => BadValue::Omitted,
    };
    vec![FieldError::new(ErrorType::Invalid, path, shown, "field is immutable")]
}

fn go_like(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Generic strategy
// ---------------------------------------------------------------------------------------------

/// A kind described by hooks over its typed object; [`Typed`] turns it into a [`Strategy`].
/// Only `Obj`, the consts, `COLUMNS` and `row` are required; everything else has defaults
/// (no defaulting, metadata-only validation, generic status handling).
pub(crate) trait KindImpl: Send + Sync + 'static {
    type Obj: Serialize + DeserializeOwned + k8s_openapi::Metadata<Ty = ObjectMeta> + Clone;
    const NAMESPACED: bool;
    const NAME_RULE: NameRule;
    /// Whether the kind has a `status` subresource: status is wiped on create, kept on update,
    /// and a status update keeps everything else.
    const STATUS_SUBRESOURCE: bool = false;
    /// Whether `metadata.generation` tracks spec changes.
    const GENERATION: bool = false;
    const COLUMNS: &'static [Column];

    /// Upstream defaulting (`SetDefaults_*` plus registry defaults).
    fn default(_obj: &mut Self::Obj) {}
    /// Kind-specific validation (metadata is validated by [`Typed`] before this).
    fn validate(_obj: &Self::Obj) -> FieldErrors {
        Vec::new()
    }
    /// Kind-specific update validation (immutable fields).
    fn validate_update(_new: &Self::Obj, _old: &Self::Obj) -> FieldErrors {
        Vec::new()
    }
    /// The table row, NAME first.
    fn row(obj: &Self::Obj, now: Timestamp) -> TableRow;
    /// Field-selector labels beyond `metadata.name`/`metadata.namespace`.
    fn field_label(_obj: &Self::Obj, _label: &str) -> Option<String> {
        None
    }
    fn prepare_for_create(obj: &mut Value) {
        if Self::STATUS_SUBRESOURCE {
            wipe_status(obj);
        }
    }
    fn prepare_for_update(new: &mut Value, old: &Value) {
        if Self::STATUS_SUBRESOURCE {
            copy_status(new, old);
        }
    }
    fn prepare_for_status_update(new: &mut Value, old: &Value) {
        keep_all_but_status(new, old);
    }
}

/// The [`Strategy`] of a [`KindImpl`]; declare one as a `static`.
pub(crate) struct Typed<K>(PhantomData<fn() -> K>);

impl<K> Typed<K> {
    pub(crate) const fn new() -> Self {
        Typed(PhantomData)
    }
}

/// The error reported when a stored/normalized object unexpectedly does not decode.
fn undecodable(e: DecodeError) -> FieldErrors {
    vec![FieldError::internal("", e.message)]
}

impl<K: KindImpl> Strategy for Typed<K> {
    fn normalize(&self, obj: Value) -> Result<Value, DecodeError> {
        let mut typed: K::Obj = decode(obj)?;
        K::default(&mut typed);
        // Go's `omitempty`: an emptied list of finalizers or owners is not stored (a patch that removes the last
        // finalizer leaves no `finalizers: []`).
        let meta = typed.metadata_mut();
        if meta.finalizers.as_ref().is_some_and(Vec::is_empty) {
            meta.finalizers = None;
        }
        if meta.owner_references.as_ref().is_some_and(Vec::is_empty) {
            meta.owner_references = None;
        }
        Ok(encode(&typed))
    }
    fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        unknown_fields::<K::Obj>(obj)
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        K::prepare_for_create(obj)
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        K::prepare_for_update(new, old)
    }
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        K::prepare_for_status_update(new, old)
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        let typed: K::Obj = match decode(obj.clone()) {
            Ok(t) => t,
            Err(e) => return undecodable(e),
        };
        let mut errs = validate_object_meta(typed.metadata(), K::NAMESPACED, K::NAME_RULE);
        errs.extend(K::validate(&typed));
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        let new: K::Obj = match decode(new.clone()) {
            Ok(t) => t,
            Err(e) => return undecodable(e),
        };
        let old: K::Obj = match decode(old.clone()) {
            Ok(t) => t,
            Err(e) => return undecodable(e),
        };
        K::validate_update(&new, &old)
    }
    fn has_generation(&self) -> bool {
        K::GENERATION
    }
    fn columns(&self) -> &'static [Column] {
        K::COLUMNS
    }
    fn row(&self, obj: &Value, now: Timestamp) -> TableRow {
        match decode::<K::Obj>(obj.clone()) {
            Ok(t) => K::row(&t, now),
            Err(_) => {
                let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                let mut row = vec![cell(name)];
                row.resize(K::COLUMNS.len(), cell(""));
                row
            }
        }
    }
    fn field_label(&self, obj: &Value, label: &str) -> Option<String> {
        let typed: K::Obj = decode(obj.clone()).ok()?;
        meta_field_label(typed.metadata(), label).or_else(|| K::field_label(&typed, label))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn emptied_finalizers_and_owner_references_are_omitted() {
        let strategy = crate::strategy::strategy_for("ConfigMap").unwrap();
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "finalizers": [], "ownerReferences": []}});
        let normalized = strategy.normalize(obj).unwrap();
        assert!(normalized["metadata"].get("finalizers").is_none(), "{normalized}");
        assert!(normalized["metadata"].get("ownerReferences").is_none(), "{normalized}");
    }
    use super::*;
    use ferry_api::k8s::api::core::v1::Service;
    use serde_json::json;

    #[test]
    fn human_duration_matches_upstream_thresholds() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 24 * 3600, "8d"),
            (729 * 24 * 3600, "729d"),
            (730 * 24 * 3600, "2y"),
            (740 * 24 * 3600, "2y10d"),
            (8 * 365 * 24 * 3600, "8y"),
            (9 * 365 * 24 * 3600 + 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(SignedDuration::from_secs(*secs)), *want, "{secs}s");
        }
    }

    #[test]
    fn decode_error_reads_like_upstream() {
        let err = decode::<Service>(json!({"spec": {"ports": [{"port": "eighty"}]}})).unwrap_err();
        assert!(
            err.message.starts_with("Service in version \"v1\" cannot be handled as a Service: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_fields_are_reported_with_paths() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "a", "creationTimestamp": null, "bogus": 1},
            "spec": {"ports": [{"port": 80}, {"port": 81, "NodePort": 3}], "extra": {"x": 1}},
        });
        assert_eq!(unknown_fields::<Service>(&obj), vec![".metadata.bogus", ".spec.ports[1].NodePort", ".spec.extra"]);
    }

    #[test]
    fn name_rules_render_upstream_messages() {
        let e = invalid_each(&Path::root("metadata").child("name"), "Kubia", NameRule::Dns1035Label.check("Kubia"));
        assert_eq!(
            e[0].to_string(),
            "metadata.name: Invalid value: \"Kubia\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        );
        assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!is_dns1123_subdomain("a..b").is_empty());
        assert!(is_dns1035_label("1abc").len() == 1);
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert!(!is_qualified_name("a/b/c").is_empty());
        assert!(is_valid_label_value("").is_empty());
        assert!(!is_valid_label_value("-x").is_empty());
        assert!(is_valid_port_name("http").is_empty());
        assert_eq!(is_valid_port_name("80"), vec!["must contain at least one letter (a-z)"]);
        assert!(is_wildcard_dns1123_subdomain("*.foo.com").is_empty());
        assert!(!is_wildcard_dns1123_subdomain("foo.*.com").is_empty());
    }

    #[test]
    fn object_meta_validation() {
        let meta = ObjectMeta { name: None, namespace: Some("default".into()), ..Default::default() };
        let errs = validate_object_meta(&meta, true, NameRule::Dns1123Subdomain);
        assert_eq!(errs[0].to_string(), "metadata.name: Required value: name or generateName is required");
        let meta = ObjectMeta {
            name: Some("web-x1".into()),
            generate_name: Some("web-".into()),
            namespace: Some("d".into()),
            ..Default::default()
        };
        assert!(validate_object_meta(&meta, true, NameRule::Dns1035Label).is_empty());
        let meta = ObjectMeta { name: Some("n".into()), namespace: Some("d".into()), ..Default::default() };
        assert_eq!(
            validate_object_meta(&meta, false, NameRule::Dns1123Subdomain)[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }

    #[test]
    fn non_special_ips() {
        let p = Path::root("x");
        assert!(validate_non_special_ip(&p, "10.1.2.3").is_empty());
        assert_eq!(validate_non_special_ip(&p, "127.0.0.1").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "169.254.1.1").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "0.0.0.0").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "fe80::1").len(), 1);
        assert_eq!(
            validate_non_special_ip(&p, "nope")[0].body(),
            "Invalid value: \"nope\": must be a valid IP address"
        );
    }

    #[test]
    fn status_update_keeps_spec_and_meta() {
        let mut new = json!({"metadata": {"name": "a", "labels": {"x": "2"}, "resourceVersion": "5"},
            "spec": {"type": "NodePort"}, "status": {"s": 1}});
        let old = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"type": "ClusterIP"}});
        keep_all_but_status(&mut new, &old);
        assert_eq!(
            new,
            json!({"metadata": {"name": "a", "labels": {"x": "1"}, "resourceVersion": "5"},
                "spec": {"type": "ClusterIP"}, "status": {"s": 1}})
        );
    }
}
