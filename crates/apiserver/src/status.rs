//! API errors and their `Status` bodies, serialized byte-for-byte as upstream does (field order
//! kind, apiVersion, metadata, status, message, reason, details, code; compact; trailing newline).

use ferry_apimachinery::field::{aggregate_message, FieldError};
use ferry_store::StoreError;
use serde::Serialize;

/// Which resource an error is about: rendered as `pods` or `deployments.apps` in messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qualified {
    pub group: String,
    pub resource: String,
}

impl Qualified {
    pub fn new(group: &str, resource: &str) -> Self {
        Qualified { group: group.to_string(), resource: resource.to_string() }
    }
    fn text(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// Every failure the API server answers with a `Status`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{} {:?} not found", .0.text(), .1)]
    NotFound(Qualified, String),
    #[error("{} {:?} already exists", .0.text(), .1)]
    AlreadyExists(Qualified, String),
    #[error("Operation cannot be fulfilled on {} {:?}: {}", .0.text(), .1, .2)]
    Conflict(Qualified, String, String),
    /// 409 from server-side apply: the message lists the conflicting fields and managers.
    #[error("{0}")]
    ApplyConflict(String),
    /// 422 with one cause per field error. `kind` is the object's Kind, `group` its API group.
    #[error("{} {name:?} is invalid: {}", group_kind(.kind, .group), aggregate_message(.errors))]
    Invalid { group: String, kind: String, name: String, errors: Vec<FieldError> },
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String, Option<(Qualified, String)>),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    /// 410: a resourceVersion or continue token older than the compacted revision.
    #[error("{0}")]
    Expired(String),
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("Timeout: {0}")]
    Timeout(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    #[error("the server is shutting down")]
    Unavailable,
}

/// Upstream `GroupKind.String()`: `Kind` for the core group, `Kind.group` otherwise.
fn group_kind(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

#[derive(Serialize)]
struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    reason: &'static str,
    message: String,
    field: String,
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(..) | ApiError::NoRoute => 404,
            ApiError::AlreadyExists(..) | ApiError::Conflict(..) | ApiError::ApplyConflict(_) => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(..) => 403,
            ApiError::MethodNotAllowed => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::TooLarge(_) => 413,
            ApiError::Expired(_) => 410,
            ApiError::Timeout(_) => 504,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(..) | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists(..) => "AlreadyExists",
            ApiError::Conflict(..) | ApiError::ApplyConflict(_) => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(..) => "Forbidden",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Expired(_) => "Expired",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable => "ServiceUnavailable",
        }
    }

    /// The `Status` JSON, exactly as upstream serializes it, with a trailing newline.
    pub fn to_status_bytes(&self) -> Vec<u8> {
        let message = self.to_string();
        let details = match self {
            ApiError::NotFound(q, name) | ApiError::AlreadyExists(q, name) | ApiError::Conflict(q, name, _) => {
                Some(Details { name, group: &q.group, kind: &q.resource, causes: vec![] })
            }
            ApiError::Forbidden(_, Some((q, name))) => {
                Some(Details { name, group: &q.group, kind: &q.resource, causes: vec![] })
            }
            ApiError::Invalid { group, kind, name, errors } => Some(Details {
                name,
                group,
                kind,
                causes: errors
                    .iter()
                    .map(|e| Cause { reason: e.kind.reason(), message: e.body(), field: e.field.clone() })
                    .collect(),
            }),
            _ => None,
        };
        let body = StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: Empty {},
            status: "Failure",
            message: &message,
            reason: self.reason(),
            details,
            code: self.code(),
        };
        let mut out = serde_json::to_vec(&body).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The `Status` as a JSON value (for watch ERROR events).
    pub fn to_status_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.to_status_bytes()).unwrap_or(serde_json::Value::Null)
    }

    /// Map a store failure for one object of a resource.
    pub fn from_store(err: StoreError, q: &Qualified, name: &str) -> ApiError {
        match err {
            StoreError::NotFound { .. } => ApiError::NotFound(q.clone(), name.to_string()),
            StoreError::AlreadyExists { .. } => ApiError::AlreadyExists(q.clone(), name.to_string()),
            StoreError::Conflict { .. } => ApiError::Conflict(q.clone(), name.to_string(), CONFLICT_DETAIL.to_string()),
            StoreError::Compacted { requested, compacted } => {
                ApiError::Expired(format!("too old resource version: {requested} ({compacted})"))
            }
            StoreError::FutureRevision { requested, current } => {
                ApiError::Timeout(format!("Too large resource version: {requested}, current: {current}"))
            }
            StoreError::WatchLagged => ApiError::Internal("watch fell behind".into()),
            StoreError::Backend(msg) => ApiError::Internal(msg),
        }
    }
}

/// The detail upstream gives for an optimistic-concurrency conflict.
pub const CONFLICT_DETAIL: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// A `Status` with `status: Success` (deletecollection and some deletes answer with it).
pub fn success_status(details: Option<(&str, &Qualified, &str)>) -> Vec<u8> {
    let mut v = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some((name, q, uid)) = details {
        v["details"] = serde_json::json!({"name": name, "group": q.group, "kind": q.resource, "uid": uid});
        if q.group.is_empty() {
            if let Some(d) = v["details"].as_object_mut() {
                d.remove("group");
            }
        }
    }
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_bytes_match_upstream() {
        let e = ApiError::NotFound(Qualified::new("", "pods"), "foo".into());
        assert_eq!(
            String::from_utf8(e.to_status_bytes()).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"foo\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"foo\",\"kind\":\"pods\"},\"code\":404}\n"
        );
        let e = ApiError::NotFound(Qualified::new("apps", "deployments"), "web".into());
        assert!(String::from_utf8(e.to_status_bytes()).unwrap().contains(
            "\"message\":\"deployments.apps \\\"web\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"web\",\"group\":\"apps\",\"kind\":\"deployments\"}"
        ));
    }

    #[test]
    fn invalid_carries_causes() {
        let e = ApiError::Invalid {
            group: String::new(),
            kind: "Service".into(),
            name: "x".into(),
            errors: vec![FieldError::invalid("spec.ports[0].port", 0, "must be between 1 and 65535, inclusive")],
        };
        let s = String::from_utf8(e.to_status_bytes()).unwrap();
        assert_eq!(
            s,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Service \\\"x\\\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\",\"reason\":\"Invalid\",\"details\":{\"name\":\"x\",\"kind\":\"Service\",\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":\"Invalid value: 0: must be between 1 and 65535, inclusive\",\"field\":\"spec.ports[0].port\"}]},\"code\":422}\n"
        );
    }
}
