//! Request handling: authentication, routing, content negotiation, and the REST verbs over
//! the registry (get, list, watch, create, update, patch, delete, deletecollection, and the
//! status, scale, binding and finalize subresources).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_api::catalog::{self, ServedVersion, Subresource};
use ferry_apimachinery::field::go_quote;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::deletion::{self, GcPolicy};
use crate::discovery;
use crate::metrics::{self, RequestCounter, RequestKind};
use crate::object;
use crate::patch;
use crate::registry::{DeleteOptions, FieldValidation, ListQuery, Registry, Res, WriteOptions};
use crate::request::{route, Query, ResourcePath, Route};
use crate::selectors::{FieldFilter, LabelFilter};
use crate::status::{success_status, ApiError};
use crate::table::{self, IncludeObject};
use crate::watch;

/// Response body type: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// Upstream's request body limit (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How much of an oversize body is read and dropped before answering 413.
const MAX_DRAIN: usize = 64 * 1024 * 1024;

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Everything a request handler needs.
pub struct State {
    pub registry: Registry,
    pub openapi: ferry_openapi::Documents,
    pub tokens: Vec<(String, String, Vec<String>)>,
    pub server_address: String,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub bookmark_interval: Duration,
    pub ready: std::sync::atomic::AtomicBool,
    /// How to reach node agents for exec/attach/port-forward/logs.
    pub node_dialer: Option<crate::nodeproxy::NodeDialer>,
    /// Request counts served at `/metrics`.
    pub metrics: RequestCounter,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    bytes_response(code, "application/json", body)
}

fn bytes_response(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// A `Status` failure response.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    bytes_response(code, "application/json", e.to_status_bytes())
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", v);
        }
    }
    r
}

/// Authenticate by client certificate identity (from TLS) or bearer token.
pub fn authenticate(state: &State, req: &Request<Incoming>, cert: Option<&Identity>) -> Option<Identity> {
    if let Some(auth) = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) {
            return state
                .tokens
                .iter()
                .find(|(t, _, _)| t == token)
                .map(|(_, user, groups)| Identity { user: user.clone(), groups: groups.clone() });
        }
    }
    cert.cloned()
}

/// Handle one request.
pub async fn handle(state: Arc<State>, req: Request<Incoming>, cert: Option<Identity>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let r = route(&path);
    match &r {
        Route::Healthz(_) => {
            let ready = state.ready.load(std::sync::atomic::Ordering::Acquire) && !*state.shutdown.borrow();
            return if ready {
                bytes_response(StatusCode::OK, "text/plain; charset=utf-8", "ok")
            } else {
                bytes_response(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "not ready")
            };
        }
        Route::Version => return json_response(StatusCode::OK, &version_info()),
        _ => {}
    }
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let kind = RequestKind::classify(req.method(), &r, req.uri().query(), content_type);
    let Some(identity) = authenticate(&state, &req, cert.as_ref()) else {
        state.metrics.record(metrics::ANONYMOUS, kind, StatusCode::UNAUTHORIZED.as_u16());
        return error_response(&ApiError::Unauthorized);
    };
    let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let response = match r {
        Route::ApiVersions => {
            if discovery::wants_aggregated(&accept) {
                bytes_response(
                    StatusCode::OK,
                    discovery::AGGREGATED_CONTENT_TYPE,
                    json_bytes(&discovery::aggregated(true)),
                )
            } else {
                json_response(StatusCode::OK, &discovery::api_versions(&state.server_address))
            }
        }
        Route::ApiGroups => {
            if discovery::wants_aggregated(&accept) {
                bytes_response(
                    StatusCode::OK,
                    discovery::AGGREGATED_CONTENT_TYPE,
                    json_bytes(&discovery::aggregated(false)),
                )
            } else {
                json_response(StatusCode::OK, &discovery::api_groups())
            }
        }
        Route::ApiGroup(g) => match discovery::api_group(&g) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => error_response(&ApiError::NoRoute),
        },
        Route::Resources { group, version } => match discovery::resource_list(&group, &version) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => error_response(&ApiError::NoRoute),
        },
        Route::OpenApiV2 => {
            if accept.contains("protobuf") {
                bytes_response(
                    StatusCode::OK,
                    ferry_openapi::V2_PROTOBUF_CONTENT_TYPE,
                    state.openapi.v2_protobuf.clone(),
                )
            } else {
                bytes_response(StatusCode::OK, "application/json", state.openapi.v2_json.clone())
            }
        }
        Route::OpenApiV3Root => bytes_response(StatusCode::OK, "application/json", state.openapi.v3_root.clone()),
        Route::OpenApiV3(p) => match state.openapi.v3.get(&p) {
            Some((_, bytes)) => bytes_response(StatusCode::OK, "application/json", bytes.clone()),
            None => error_response(&ApiError::NoRoute),
        },
        Route::Resource(rp) => match resource(&state, req, rp, &accept).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        },
        Route::Metrics => {
            bytes_response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render())
        }
        Route::NotFound | Route::Healthz(_) | Route::Version => error_response(&ApiError::NoRoute),
    };
    state.metrics.record(&identity.user, kind, response.status().as_u16());
    response
}

fn json_bytes(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// `/version`
pub fn version_info() -> Value {
    let v = ferry_api::KUBERNETES_VERSION;
    json!({
        "major": v.major.to_string(),
        "minor": v.minor.to_string(),
        "gitVersion": format!("{}+ferry", v.git_version()),
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2026-11-22T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else if std::env::consts::ARCH == "aarch64" { "arm64" } else { std::env::consts::ARCH })
    })
}

/// A request for one resource path, with its served version.
struct Target {
    res: Res,
    served: ServedVersion,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<Subresource>,
}

impl Target {
    fn api_version(&self) -> String {
        self.served.gv.api_version()
    }
    /// Convert a stored object to what this request's version shows.
    fn present(&self, obj: Value) -> Value {
        patch::present(&self.res, &self.served, obj)
    }
    /// Convert a request body in this request's version to the storage version.
    fn to_storage(&self, obj: Value) -> Result<Value, ApiError> {
        patch::to_storage(&self.res, &self.served, obj)
    }
}

fn write_options(q: &Query) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("Invalid dryRun value: {other:?}"))),
    };
    let field_validation = match q.get("fieldValidation") {
        None | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            )))
        }
    };
    Ok(WriteOptions { dry_run, field_validation })
}

async fn read_body(req: Request<Incoming>) -> Result<(Bytes, String), ApiError> {
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    // Read up to the limit; past it, drain (bounded) so the client sees the 413 rather than a
    // reset stream, then refuse.
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > MAX_DRAIN {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    Ok((buf.freeze(), ct))
}

/// Decode a JSON, YAML or Kubernetes protobuf body.
pub(crate) fn decode_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if ferry_protobuf::is_protobuf_media_type(ct) {
        return decode_protobuf(body);
    }
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".into(),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the body of the request was empty".into()));
    }
    let v: Value = if ct.contains("yaml") {
        serde_yaml::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "couldn't get version/kind; json parse error: json: cannot unmarshal into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }".into(),
        ));
    }
    Ok(v)
}

/// Decode a Kubernetes protobuf body (typed Go clients send built-in kinds this way).
fn decode_protobuf(body: &[u8]) -> Result<Value, ApiError> {
    ferry_protobuf::decode_object(body).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Check a body's apiVersion/kind against the request and fill them in when absent.
fn check_type(t: &Target, body: &mut Value) -> Result<(), ApiError> {
    let expected_av = t.api_version();
    let expected_kind = t.res.def.kind;
    let av = body.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    if !av.is_empty() && av != expected_av {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({av}) does not match the expected API version ({expected_av})"
        )));
    }
    if !kind.is_empty() && kind != expected_kind {
        let (group, version) = expected_av.split_once('/').unwrap_or(("", expected_av.as_str()));
        if catalog::lookup_kind(group, version, &kind).is_none() {
            // Upstream's decoder knows no such kind (e.g. `kind: service`).
            return Err(ApiError::BadRequest(format!(
                "{kind} in version {expected_av:?} cannot be handled as a {expected_kind}: no kind {kind:?} is registered for version {expected_av:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\""
            )));
        }
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({expected_kind})"
        )));
    }
    Ok(())
}

async fn resource(
    state: &Arc<State>,
    req: Request<Incoming>,
    rp: ResourcePath,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let (def, served) = catalog::lookup(&rp.group, &rp.version, &rp.resource).ok_or(ApiError::NoRoute)?;
    let res = Res::for_def(def).ok_or(ApiError::NoRoute)?;
    if def.namespaced != rp.namespace.is_some() && rp.name.is_some() && def.namespaced {
        return Err(ApiError::NoRoute);
    }
    if !def.namespaced && rp.namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    let sub = match &rp.subresource {
        None => None,
        Some(s) => match Subresource::from_name(s).filter(|s| def.has_subresource(*s)) {
            Some(s) => Some(s),
            None => return Err(ApiError::NoRoute),
        },
    };
    if let (
        true,
        Some(name),
        Some(ns),
        Some(s @ (Subresource::Exec | Subresource::Attach | Subresource::PortForward | Subresource::Log)),
    ) = (def.kind == "Pod", rp.name.as_deref(), rp.namespace.as_deref(), sub)
    {
        return crate::nodeproxy::proxy(state, req, ns, name, s).await;
    }
    let t = Target { res, served, ns: rp.namespace.clone(), name: rp.name.clone(), sub };
    let q = Query::parse(req.uri().query());
    let method = req.method().clone();
    let want_table = table::wants_table(accept);
    let is_watch = rp.watch_path || q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let registry = &state.registry;
    let ns = t.ns.as_deref();

    match (&method, t.name.clone(), t.sub) {
        // Collection verbs.
        (&Method::GET, None, None) => {
            let lq = list_query(&q, t.res)?;
            if is_watch {
                return watch::serve(state.clone(), t.res, t.served, t.ns.clone(), None, lq, &q, want_table).await;
            }
            if !want_table
                && lq.labels.is_empty()
                && lq.fields.is_empty()
                && t.served.conversion == ferry_api::catalog::Conversion::Identity
            {
                // Fast path: stored bytes with the resourceVersion spliced in, no parse.
                let page = registry.list_raw(t.res, ns, &lq).await?;
                let mut meta = json!({"resourceVersion": page.revision.to_string()});
                if let Some(c) = page.continue_token {
                    meta["continue"] = json!(c);
                }
                if let Some(r) = page.remaining.filter(|r| *r > 0) {
                    meta["remainingItemCount"] = json!(r);
                }
                let size: usize = page.items.iter().map(|(b, _)| b.len() + 32).sum();
                let mut out = Vec::with_capacity(size + 256);
                out.extend_from_slice(
                    format!(
                        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{meta},\"items\":[",
                        t.res.def.list_kind(),
                        t.api_version()
                    )
                    .as_bytes(),
                );
                for (i, (bytes, rev)) in page.items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    crate::registry::splice_item(&mut out, bytes, *rev);
                }
                out.extend_from_slice(b"]}\n");
                return Ok(bytes_response(StatusCode::OK, "application/json", out));
            }
            let page = registry.list(t.res, ns, &lq).await?;
            let rv = page.revision.to_string();
            if want_table {
                let objs: Vec<Value> = page.items.into_iter().map(|o| t.present(o)).collect();
                let tab = table::table(
                    t.res.strategy,
                    &objs,
                    Some(rv),
                    page.continue_token,
                    IncludeObject::parse(q.get("includeObject")),
                    true,
                );
                return Ok(json_response(StatusCode::OK, &tab));
            }
            let items: Vec<Value> = page
                .items
                .into_iter()
                .map(|o| {
                    let mut v = t.present(o);
                    if let Some(m) = v.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    v
                })
                .collect();
            let mut meta = json!({"resourceVersion": rv});
            if let Some(c) = page.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(r) = page.remaining.filter(|r| *r > 0) {
                meta["remainingItemCount"] = json!(r);
            }
            let list =
                json!({"kind": t.res.def.list_kind(), "apiVersion": t.api_version(), "metadata": meta, "items": items});
            Ok(json_response(StatusCode::OK, &list))
        }
        (&Method::POST, None, None) => {
            let opts = write_options(&q)?;
            let (body, ct) = read_body(req).await?;
            let mut obj = decode_body(&body, &ct)?;
            check_type(&t, &mut obj)?;
            let obj = t.to_storage(obj)?;
            let w = registry.create(t.res, ns, obj, &opts).await?;
            Ok(with_warnings(respond_object(&t, w.object, StatusCode::CREATED, want_table, &q), &w.warnings))
        }
        (&Method::DELETE, None, None) => {
            if !t.res.def.delete_collection {
                return Err(ApiError::MethodNotAllowed);
            }
            let lq = list_query(&q, t.res)?;
            let (body, ct) = read_body(req).await?;
            let dopts = delete_options(&q, &body, &ct, default_gc(&t))?;
            let page = registry.list(t.res, ns, &lq).await?;
            let mut deleted = Vec::new();
            for obj in page.items {
                let (Some(name), obj_ns) =
                    (object::name(&obj).map(str::to_string), object::namespace(&obj).map(str::to_string))
                else {
                    continue;
                };
                match registry.delete(t.res, obj_ns.as_deref(), &name, &dopts).await {
                    Ok(d) => deleted.push(t.present(d.object)),
                    Err(ApiError::NotFound(..)) => {}
                    Err(e) => return Err(e),
                }
            }
            let rv = registry.revision().await?.to_string();
            let list = json!({"kind": t.res.def.list_kind(), "apiVersion": t.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted});
            Ok(with_warnings(json_response(StatusCode::OK, &list), &delete_warnings(&t, &dopts)))
        }
        // Item verbs on the main resource.
        (&Method::GET, Some(name), None) => {
            if is_watch {
                let lq = list_query(&q, t.res)?;
                return watch::serve(state.clone(), t.res, t.served, t.ns.clone(), Some(name), lq, &q, want_table)
                    .await;
            }
            let obj = registry.get(t.res, ns, &name).await?;
            Ok(respond_object(&t, obj, StatusCode::OK, want_table, &q))
        }
        (&Method::PUT, Some(name), None) | (&Method::PUT, Some(name), Some(Subresource::Status)) => {
            let opts = write_options(&q)?;
            let (body, ct) = read_body(req).await?;
            let mut obj = decode_body(&body, &ct)?;
            check_type(&t, &mut obj)?;
            let obj = t.to_storage(obj)?;
            let w = registry.update(t.res, ns, &name, obj, &opts, t.sub == Some(Subresource::Status)).await?;
            let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(with_warnings(respond_object(&t, w.object, code, want_table, &q), &w.warnings))
        }
        (&Method::PATCH, Some(name), None) | (&Method::PATCH, Some(name), Some(Subresource::Status)) => {
            let opts = write_options(&q)?;
            let (body, ct) = read_body(req).await?;
            let status_only = t.sub == Some(Subresource::Status);
            let w = patch::patch(registry, &t.res, &t.served, ns, &name, &body, &ct, &q, &opts, status_only).await?;
            let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(with_warnings(respond_object(&t, w.object, code, want_table, &q), &w.warnings))
        }
        (&Method::GET, Some(name), Some(Subresource::Status)) => {
            let obj = registry.get(t.res, ns, &name).await?;
            Ok(respond_object(&t, obj, StatusCode::OK, false, &q))
        }
        (&Method::DELETE, Some(name), None) => {
            let (body, ct) = read_body(req).await?;
            let dopts = delete_options(&q, &body, &ct, default_gc(&t))?;
            let warnings = delete_warnings(&t, &dopts);
            let d = registry.delete(t.res, ns, &name, &dopts).await?;
            if d.deleted && matches!(t.res.def.kind, "Namespace") {
                let uid = object::uid(&d.object).unwrap_or("").to_string();
                return Ok(bytes_response(
                    StatusCode::OK,
                    "application/json",
                    success_status(Some((&name, &t.res.qualified(), &uid))),
                ));
            }
            // Upstream answers 202 when the object stays and the client asked for cascading
            // deletion with the legacy `orphanDependents: false`.
            let code = if !d.deleted && dopts.orphan_dependents == Some(false) {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(respond_object(&t, d.object, code, false, &q), &warnings))
        }
        // Scale subresource.
        (&Method::GET, Some(name), Some(Subresource::Scale)) => {
            let obj = registry.get(t.res, ns, &name).await?;
            Ok(json_response(StatusCode::OK, &crate::scale::to_scale(t.res.def.kind, &obj)))
        }
        (&Method::PUT | &Method::PATCH, Some(name), Some(Subresource::Scale)) => {
            let opts = write_options(&q)?;
            let (body, ct) = read_body(req).await?;
            let patch_kind = patch::PatchKind::from_content_type(&ct);
            let is_put = method == Method::PUT;
            let body_v = if is_put || patch_kind != Some(patch::PatchKind::Json) {
                Some(decode_body(&body, &ct)?)
            } else {
                None
            };
            let kind = t.res.def.kind;
            let w = registry
                .modify(t.res, ns, &name, &opts, false, |old| {
                    let scale = crate::scale::to_scale(kind, old);
                    let new_scale = if is_put {
                        let b = body_v.clone().unwrap_or(json!({}));
                        if let Some(rv) = b.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                            if Some(rv) != object::resource_version(old) {
                                return Err(ApiError::Conflict(
                                    t.res.qualified(),
                                    name.clone(),
                                    crate::status::CONFLICT_DETAIL.to_string(),
                                ));
                            }
                        }
                        b
                    } else {
                        patch::apply_patch(patch_kind, &scale, &body, body_v.as_ref(), "Scale")?
                    };
                    let replicas = new_scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                    if replicas < 0 {
                        return Err(ApiError::Invalid {
                            group: "autoscaling".into(),
                            kind: "Scale".into(),
                            name: name.clone(),
                            errors: vec![ferry_apimachinery::field::FieldError::invalid(
                                "spec.replicas",
                                replicas,
                                "must be greater than or equal to 0",
                            )],
                        });
                    }
                    let mut o = t.present(old.clone());
                    o["spec"]["replicas"] = json!(replicas);
                    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    t.to_storage(o)
                })
                .await?;
            Ok(json_response(StatusCode::OK, &crate::scale::to_scale(t.res.def.kind, &w.object)))
        }
        // Pod binding (the scheduler's way to assign a node).
        (&Method::POST, Some(name), Some(Subresource::Binding)) => {
            let (body, ct) = read_body(req).await?;
            let b = decode_body(&body, &ct)?;
            let node = b.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
            if node.is_empty() {
                return Err(ApiError::Invalid {
                    group: String::new(),
                    kind: "Binding".into(),
                    name: name.clone(),
                    errors: vec![ferry_apimachinery::field::FieldError::required("target.name", "")],
                });
            }
            let uid = b.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
            registry.bind_pod(t.res, ns.unwrap_or("default"), &name, &node, uid.as_deref()).await?;
            Ok(bytes_response(StatusCode::CREATED, "application/json", success_status(None)))
        }
        // Namespace finalize: only spec.finalizers changes.
        (&Method::PUT, Some(name), Some(Subresource::Finalize)) => {
            let (body, ct) = read_body(req).await?;
            let b = decode_body(&body, &ct)?;
            let wanted: Vec<String> = b
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let obj = registry.finalize_namespace(t.res, &name, |f| *f = wanted.clone()).await?;
            Ok(respond_object(&t, obj, StatusCode::OK, false, &q))
        }
        (
            _,
            Some(_),
            Some(
                Subresource::Log
                | Subresource::Exec
                | Subresource::Attach
                | Subresource::PortForward
                | Subresource::Proxy,
            ),
        ) => Err(ApiError::BadRequest("this node agent feature is not available on this server yet".into())),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn respond_object(t: &Target, obj: Value, code: StatusCode, want_table: bool, q: &Query) -> Response<Body> {
    let obj = t.present(obj);
    if want_table {
        let rv = object::resource_version(&obj).map(str::to_string);
        let tab = table::table(t.res.strategy, &[obj], rv, None, IncludeObject::parse(q.get("includeObject")), true);
        return json_response(code, &tab);
    }
    json_response(code, &obj)
}

fn list_query(q: &Query, res: Res) -> Result<ListQuery, ApiError> {
    let labels = match q.get("labelSelector") {
        Some(s) => LabelFilter::parse(s).map_err(ApiError::BadRequest)?,
        None => LabelFilter::default(),
    };
    let fields = match q.get("fieldSelector") {
        Some(s) => {
            let f = FieldFilter::parse(s).map_err(ApiError::BadRequest)?;
            // Only the labels the kind supports (upstream: 400 "field label not supported").
            let probe =
                json!({"apiVersion": res.def.gv.api_version(), "kind": res.def.kind, "metadata": {"name": "probe"}});
            if let Some(bad) = f.fields().into_iter().find(|l| res.strategy.field_label(&probe, l).is_none()) {
                return Err(ApiError::BadRequest(format!("field label not supported: {bad}")));
            }
            f
        }
        None => FieldFilter::default(),
    };
    let limit = match q.get("limit") {
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?.max(0) as usize,
        None => 0,
    };
    let mut lq = ListQuery {
        labels,
        fields,
        limit,
        continue_token: q.get("continue").map(str::to_string),
        ..Default::default()
    };
    if lq.continue_token.is_none() {
        if let Some(rv) = q.get("resourceVersion").filter(|rv| *rv != "0") {
            let rev: i64 = rv.parse().map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))?;
            match q.get("resourceVersionMatch") {
                Some("Exact") => lq.exact_revision = Some(rev),
                _ => lq.min_revision = Some(rev),
            }
        }
    }
    Ok(lq)
}

/// The resource's default garbage-collection policy at the version this request speaks.
fn default_gc(t: &Target) -> GcPolicy {
    deletion::default_gc_policy(t.res.def.kind, t.served.gv.group, t.served.gv.version)
}

/// Upstream's Job storage warns when a delete leaves the batch/v1 default (orphan the pods) in force.
fn delete_warnings(t: &Target, o: &DeleteOptions) -> Vec<String> {
    if t.res.def.kind == "Job" && !o.explicit_policy() && o.default_gc == GcPolicy::OrphanDependents {
        vec![deletion::JOB_ORPHAN_WARNING.to_string()]
    } else {
        Vec::new()
    }
}

/// `DeleteOptions` from the body, or from the query when the body is empty (as upstream: a body
/// makes the query's options count for nothing), validated as upstream `ValidateDeleteOptions`.
fn delete_options(q: &Query, body: &[u8], content_type: &str, default_gc: GcPolicy) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions { default_gc, ..Default::default() };
    let (policy, orphan_dependents) = if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = if ferry_protobuf::is_protobuf_media_type(content_type) {
            decode_protobuf(body)?
        } else {
            serde_json::from_slice(body)
                .or_else(|_| serde_yaml::from_slice(body))
                .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
        };
        o.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        o.precondition_uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
        o.precondition_rv = v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
        o.dry_run = v.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x == "All"));
        let policy = match v.get("propagationPolicy") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid DeleteOptions: propagationPolicy must be a string, got {other}"
                )))
            }
        };
        let orphan = match v.get("orphanDependents") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid DeleteOptions: orphanDependents must be a boolean, got {other}"
                )))
            }
        };
        (policy, orphan)
    } else {
        if let Some(g) = q.get("gracePeriodSeconds") {
            o.grace_period_seconds = Some(g.parse().map_err(|_| {
                ApiError::BadRequest(format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(g)))
            })?);
        }
        o.dry_run = q.get("dryRun") == Some("All");
        let orphan = q.get("orphanDependents").map(parse_go_bool).transpose()?;
        (q.get("propagationPolicy").map(str::to_string), orphan)
    };
    o.propagation_policy = deletion::validate_policy(policy.as_deref(), orphan_dependents)?;
    o.orphan_dependents = orphan_dependents;
    Ok(o)
}

/// Go's `strconv.ParseBool`, as the query-parameter codec uses it.
fn parse_go_bool(s: &str) -> Result<bool, ApiError> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(ApiError::BadRequest(format!("strconv.ParseBool: parsing {}: invalid syntax", go_quote(other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deletion::Propagation;

    fn opts(query: &str, body: &str) -> Result<DeleteOptions, ApiError> {
        delete_options(&Query::parse(Some(query)), body.as_bytes(), "application/json", GcPolicy::DeleteDependents)
    }

    #[test]
    fn delete_options_come_from_the_body_or_else_the_query() {
        // kubectl 1.20 `delete --cascade=false`.
        let o = opts("", r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Orphan"}"#).unwrap();
        assert_eq!((o.propagation_policy, o.orphan_dependents), (Some(Propagation::Orphan), None));
        let o = opts("propagationPolicy=Foreground&gracePeriodSeconds=5&dryRun=All", "").unwrap();
        assert_eq!(
            (o.propagation_policy, o.grace_period_seconds, o.dry_run),
            (Some(Propagation::Foreground), Some(5), true)
        );
        let o = opts("orphanDependents=true", "").unwrap();
        assert_eq!((o.propagation_policy, o.orphan_dependents), (None, Some(true)));
        let o = opts("orphanDependents=0", "").unwrap();
        assert_eq!(o.orphan_dependents, Some(false));
        // A body makes the query count for nothing.
        let o = opts("propagationPolicy=Foreground&gracePeriodSeconds=5", r#"{"orphanDependents":true}"#).unwrap();
        assert_eq!((o.propagation_policy, o.orphan_dependents, o.grace_period_seconds), (None, Some(true), None));
        assert_eq!(o.default_gc, GcPolicy::DeleteDependents);
    }

    #[test]
    fn bad_delete_options_are_refused_as_upstream() {
        let e = opts("propagationPolicy=Sideways", "").unwrap_err();
        assert_eq!((e.code(), e.reason()), (422, "Invalid"));
        let status: Value = serde_json::from_slice(&e.to_status_bytes()).unwrap();
        assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueNotSupported");
        assert_eq!(status["details"]["causes"][0]["field"], "propagationPolicy");
        let e = opts("", r#"{"propagationPolicy":"Sideways"}"#).unwrap_err();
        assert_eq!(e.code(), 422);
        let e = opts("", r#"{"propagationPolicy":"Orphan","orphanDependents":true}"#).unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(e.to_string().contains("orphanDependents and deletionPropagation cannot be both set"), "{e}");
        let e = opts("propagationPolicy=Background&orphanDependents=false", "").unwrap_err();
        assert_eq!(e.code(), 422);
        let e = opts("orphanDependents=maybe", "").unwrap_err();
        assert_eq!(e.code(), 400);
        let e = opts("gracePeriodSeconds=soon", "").unwrap_err();
        assert_eq!(e.code(), 400);
    }

    #[test]
    fn batch_v1_job_deletes_without_a_policy_warn() {
        let (def, served) = catalog::lookup("batch", "v1", "jobs").unwrap();
        let t = Target { res: Res::for_def(def).unwrap(), served, ns: None, name: None, sub: None };
        let o = delete_options(&Query::default(), b"", "", default_gc(&t)).unwrap();
        assert_eq!(o.default_gc, GcPolicy::OrphanDependents);
        assert_eq!(delete_warnings(&t, &o), vec![deletion::JOB_ORPHAN_WARNING.to_string()]);
        let o = delete_options(&Query::parse(Some("propagationPolicy=Background")), b"", "", default_gc(&t)).unwrap();
        assert!(delete_warnings(&t, &o).is_empty());
        let (def, served) = catalog::lookup("apps", "v1beta2", "replicasets").unwrap();
        let t = Target { res: Res::for_def(def).unwrap(), served, ns: None, name: None, sub: None };
        assert_eq!(default_gc(&t), GcPolicy::OrphanDependents);
        let (def, served) = catalog::lookup("apps", "v1", "replicasets").unwrap();
        let t = Target { res: Res::for_def(def).unwrap(), served, ns: None, name: None, sub: None };
        assert_eq!(default_gc(&t), GcPolicy::DeleteDependents);
    }
}
