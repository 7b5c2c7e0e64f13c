//! Generic storage of API objects over `ferry-store` (upstream's generic registry `Store`):
//! create, get, list, update, delete with object metadata rules, preconditions, finalizers,
//! graceful deletion, dry-run, and per-kind hooks (Service IP and port allocation, namespace
//! lifecycle). All objects here are in their storage version.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferry_api::catalog::ResourceDef;
use ferry_apimachinery::field::FieldError;
use ferry_kinds::Strategy;
use ferry_store::{ListOptions, Revision, Store, StoreError};
use serde_json::{json, Value};

use crate::deletion::{self, Outcome};
use crate::object::{self, meta_mut};
use crate::selectors::{FieldFilter, LabelFilter};
use crate::services::ServiceHooks;
use crate::status::{ApiError, Qualified, CONFLICT_DETAIL};

/// A resource and its strategy.
#[derive(Clone, Copy)]
pub struct Res {
    pub def: &'static ResourceDef,
    pub strategy: &'static dyn Strategy,
}

impl Res {
    pub fn for_def(def: &'static ResourceDef) -> Option<Res> {
        ferry_kinds::strategy_for(def.kind).map(|strategy| Res { def, strategy })
    }
    pub fn by_kind(kind: &str) -> Option<Res> {
        ferry_api::CATALOG.iter().find(|d| d.kind == kind).and_then(Res::for_def)
    }
    pub fn qualified(&self) -> Qualified {
        Qualified::new(self.def.gv.group, self.def.plural)
    }
    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        match (self.def.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.def.storage_prefix()),
            _ => format!("{}{name}", self.def.storage_prefix()),
        }
    }
    /// Prefix for a list: one namespace, or all.
    pub fn prefix(&self, ns: Option<&str>) -> String {
        match (self.def.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/", self.def.storage_prefix()),
            _ => self.def.storage_prefix(),
        }
    }
    fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound(self.qualified(), name.to_string())
    }
    fn invalid(&self, name: &str, errors: Vec<FieldError>) -> ApiError {
        ApiError::Invalid {
            group: self.def.gv.group.to_string(),
            kind: self.def.kind.to_string(),
            name: name.to_string(),
            errors,
        }
    }
    fn allows_create_on_update(&self) -> bool {
        matches!(self.def.kind, "Service" | "Endpoints" | "EndpointSlice" | "Event" | "Lease")
    }
}

/// How a write treats fields the schema does not know (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Options common to writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

pub use crate::deletion::DeleteOptions;

/// The result of a delete: the object as deleted, or as it now stands when deletion is pending.
pub struct Deletion {
    pub object: Value,
    /// Whether the object is gone (false: finalizers or a grace period keep it for now).
    pub deleted: bool,
}

/// Options of a list.
#[derive(Clone, Default)]
pub struct ListQuery {
    pub labels: LabelFilter,
    pub fields: FieldFilter,
    pub limit: usize,
    pub continue_token: Option<String>,
    /// Read at exactly this revision (resourceVersionMatch=Exact).
    pub exact_revision: Option<Revision>,
    /// Fail with a timeout when the store is older than this (resourceVersion=N, NotOlderThan).
    pub min_revision: Option<Revision>,
}

/// A page of a list.
pub struct ListPage<T = Value> {
    pub items: Vec<T>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Write result: the stored object and warnings for the `Warning` header.
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

/// The object registry: the only place that reads and writes the store.
pub struct Registry {
    pub store: Arc<dyn Store>,
    services: Mutex<ServiceHooks>,
}

const MAX_CONFLICT_RETRIES: usize = 8;

/// Stored objects start with this, so a read can splice `resourceVersion` in without parsing.
pub const STORED_PREFIX: &[u8] = b"{\"metadata\":{";

fn decode_stored(res: Res, kv_value: &[u8], rev: Revision) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(kv_value)
        .map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))?;
    object::set_resource_version(&mut v, rev);
    Ok(object::with_type_meta(v, &res.def.gv.api_version(), res.def.kind))
}

/// The stored form: `metadata` first (without resourceVersion), then the other fields; no
/// `apiVersion`/`kind` (the key says what it is).
fn encode_for_store(obj: &Value) -> Result<Bytes, ApiError> {
    let mut out = serde_json::Map::new();
    let mut meta = obj.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    meta.remove("resourceVersion");
    meta.remove("selfLink");
    out.insert("metadata".into(), Value::Object(meta));
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
            if !matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::to_vec(&Value::Object(out)).map(Bytes::from).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Append a stored object to `out` with its resourceVersion spliced in (list items carry no
/// type meta, as upstream's). Falls back to a parse for objects in another layout.
pub fn splice_item(out: &mut Vec<u8>, stored: &[u8], rev: Revision) {
    if let Some(rest) = stored.strip_prefix(STORED_PREFIX) {
        out.extend_from_slice(STORED_PREFIX);
        out.extend_from_slice(b"\"resourceVersion\":\"");
        out.extend_from_slice(rev.to_string().as_bytes());
        out.push(b'"');
        if rest.first() != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(rest);
    } else if let Ok(mut v) = serde_json::from_slice::<Value>(stored) {
        object::set_resource_version(&mut v, rev);
        if let Some(o) = v.as_object_mut() {
            o.remove("kind");
            o.remove("apiVersion");
        }
        let _ = serde_json::to_writer(&mut *out, &v);
    }
}

fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// Continue tokens: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key suffix>"}` as upstream.
fn encode_continue(rev: Revision, start_after: &str) -> String {
    use base64::Engine;
    let v = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start_after});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    use base64::Engine;
    let bad = || ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?.to_string();
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rev, start))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, services: ServiceHooks) -> Registry {
        Registry { store, services: Mutex::new(services) }
    }

    fn services(&self) -> std::sync::MutexGuard<'_, ServiceHooks> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuild in-memory allocations from stored Services (at startup).
    pub async fn restore_allocations(&self) -> Result<usize, ApiError> {
        let Some(res) = Res::by_kind("Service") else { return Ok(0) };
        let page = self.list(res, None, &ListQuery::default()).await?;
        let mut hooks = self.services();
        for svc in &page.items {
            hooks.restore(svc);
        }
        Ok(page.items.len())
    }

    /// Current store revision.
    pub async fn revision(&self) -> Result<Revision, ApiError> {
        self.store.current_revision().await.map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The stored object at `key` with its key-value record; NotFound when absent.
    async fn load(&self, res: Res, key: &str, name: &str) -> Result<(ferry_store::KeyValue, Value), ApiError> {
        let kv = self
            .store
            .get(key)
            .await
            .map_err(|e| ApiError::from_store(e, &res.qualified(), name))?
            .ok_or_else(|| res.not_found(name))?;
        let obj = decode_stored(res, &kv.value, kv.mod_revision)?;
        Ok((kv, obj))
    }

    pub async fn get(&self, res: Res, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.load(res, &res.key(ns, name), name).await.map(|(_, obj)| obj)
    }

    pub async fn list(&self, res: Res, ns: Option<&str>, q: &ListQuery) -> Result<ListPage, ApiError> {
        let filtered = !q.labels.is_empty() || !q.fields.is_empty();
        self.scan(res, ns, q, filtered, |kv| {
            let obj = decode_stored(res, &kv.value, kv.mod_revision)?;
            Ok((!filtered || self.matches(res, &obj, q)).then_some(obj))
        })
        .await
    }

    /// An unfiltered list as stored bytes with their revisions (the fast path for JSON lists).
    pub async fn list_raw(
        &self,
        res: Res,
        ns: Option<&str>,
        q: &ListQuery,
    ) -> Result<ListPage<(Bytes, Revision)>, ApiError> {
        self.scan(res, ns, q, false, |kv| Ok(Some((kv.value.clone(), kv.mod_revision)))).await
    }

    /// Page through the store under a resource's prefix, keeping what `keep` returns, up to
    /// `q.limit` kept items, with continue tokens at the last kept key.
    async fn scan<T>(
        &self,
        res: Res,
        ns: Option<&str>,
        q: &ListQuery,
        filtered: bool,
        mut keep: impl FnMut(&ferry_store::KeyValue) -> Result<Option<T>, ApiError>,
    ) -> Result<ListPage<T>, ApiError> {
        let prefix = res.prefix(ns);
        let (mut revision, mut start_after) = (q.exact_revision, None);
        if let Some(token) = &q.continue_token {
            let (rev, start) = decode_continue(token)?;
            revision = Some(rev);
            start_after = Some(format!("{prefix}{start}"));
        }
        if let Some(min) = q.min_revision {
            let cur = self.revision().await?;
            if min > cur {
                return Err(ApiError::Timeout(format!("Too large resource version: {min}, current: {cur}")));
            }
        }
        let mut items = Vec::new();
        let chunk = if q.limit == 0 { 0 } else { q.limit.max(64) };
        let mut read_at = revision;
        loop {
            let page = self
                .store
                .list(&prefix, ListOptions { revision: read_at, start_after: start_after.clone(), limit: chunk })
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if q.continue_token.is_some() => ApiError::Expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
                    ),
                    StoreError::Compacted { requested, compacted } => {
                        ApiError::Expired(format!("too old resource version: {requested} ({compacted})"))
                    }
                    other => ApiError::from_store(other, &res.qualified(), ""),
                })?;
            read_at = Some(page.revision);
            let n = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                let Some(item) = keep(kv)? else { continue };
                items.push(item);
                if q.limit > 0 && items.len() == q.limit {
                    let more_here = i + 1 < n || page.more;
                    if more_here {
                        let suffix = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key);
                        let remaining = if filtered { None } else { Some(page.remaining + (n - i - 1)) };
                        return Ok(ListPage {
                            items,
                            revision: page.revision,
                            continue_token: Some(encode_continue(page.revision, suffix)),
                            remaining,
                        });
                    }
                    return Ok(ListPage { items, revision: page.revision, continue_token: None, remaining: None });
                }
            }
            if !page.more || n == 0 {
                return Ok(ListPage { items, revision: page.revision, continue_token: None, remaining: None });
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }

    /// Whether an object passes a list's label and field filters.
    pub fn matches(&self, res: Res, obj: &Value, q: &ListQuery) -> bool {
        q.labels.matches(&object::labels(obj)) && q.fields.matches(|field| res.strategy.field_label(obj, field))
    }

    async fn check_namespace(&self, res: Res, ns: Option<&str>, name: &str) -> Result<(), ApiError> {
        let Some(ns) = ns.filter(|_| res.def.namespaced) else { return Ok(()) };
        let Some(nsres) = Res::by_kind("Namespace") else { return Ok(()) };
        let nsobj = match self.get(nsres, None, ns).await {
            Ok(o) => o,
            Err(ApiError::NotFound(..)) => return Err(ApiError::NotFound(Qualified::new("", "namespaces"), ns.into())),
            Err(e) => return Err(e),
        };
        if object::deletion_timestamp(&nsobj).is_some() {
            return Err(ApiError::Forbidden(
                format!(
                    "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    res.qualified_text(),
                    name
                ),
                Some((res.qualified(), name.to_string())),
            ));
        }
        Ok(())
    }

    /// Decode, default and check unknown fields of a body (already in the storage version).
    fn normalize(&self, res: Res, obj: Value, opts: &WriteOptions) -> Result<(Value, Vec<String>), ApiError> {
        let mut warnings = Vec::new();
        if opts.field_validation != FieldValidation::Ignore {
            let unknown = res.strategy.unknown_fields(&obj);
            if !unknown.is_empty() {
                let msgs: Vec<String> =
                    unknown.iter().map(|p| format!("unknown field {:?}", p.trim_start_matches('.'))).collect();
                if opts.field_validation == FieldValidation::Strict {
                    return Err(ApiError::BadRequest(format!("strict decoding error: {}", msgs.join(", "))));
                }
                warnings.extend(msgs);
            }
        }
        let obj = res.strategy.normalize(obj).map_err(|e| ApiError::BadRequest(e.message))?;
        Ok((obj, warnings))
    }

    /// Create an object. `ns` is the namespace from the URL.
    pub async fn create(
        &self,
        res: Res,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let (mut obj, warnings) = self.normalize(res, body, opts)?;
        {
            let m = meta_mut(&mut obj);
            if m.get("resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                return Err(ApiError::BadRequest("resourceVersion should not be set on objects to be created".into()));
            }
            if res.def.namespaced {
                let body_ns = m.get("namespace").and_then(Value::as_str).unwrap_or("").to_string();
                match ns {
                    Some(url_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                        return Err(ApiError::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request"
                                .into(),
                        ))
                    }
                    Some(url_ns) => {
                        m.insert("namespace".into(), json!(url_ns));
                    }
                    None => {}
                }
            } else {
                m.remove("namespace");
            }
            let has_name = m.get("name").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if !has_name {
                if let Some(gen) = m.get("generateName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    let name = format!("{}{}", truncate_base(gen), random_suffix());
                    m.insert("name".into(), json!(name));
                }
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
            if res.strategy.has_generation() {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        res.strategy.prepare_for_create(&mut obj);
        let name = object::name(&obj).unwrap_or("").to_string();
        let ns_owned = object::namespace(&obj).map(str::to_string);
        let is_service = res.def.kind == "Service";
        let alloc = if is_service {
            Some(self.services().allocate_create(&mut obj).map_err(|e| e.into_api(res, &name))?)
        } else {
            None
        };
        let result = async {
            let errs = res.strategy.validate(&obj);
            if !errs.is_empty() {
                return Err(res.invalid(&name, errs));
            }
            self.check_namespace(res, ns_owned.as_deref(), &name).await?;
            if opts.dry_run {
                if self.store.get(&res.key(ns_owned.as_deref(), &name)).await.ok().flatten().is_some() {
                    return Err(ApiError::AlreadyExists(res.qualified(), name.clone()));
                }
                return Ok(obj.clone());
            }
            let kv = self
                .store
                .create(&res.key(ns_owned.as_deref(), &name), encode_for_store(&obj)?)
                .await
                .map_err(|e| ApiError::from_store(e, &res.qualified(), &name))?;
            let mut out = obj.clone();
            object::set_resource_version(&mut out, kv.mod_revision);
            Ok(out)
        }
        .await;
        if let Some(a) = alloc {
            let mut hooks = self.services();
            match (&result, opts.dry_run) {
                (Ok(_), false) => hooks.commit(a),
                _ => hooks.rollback(a),
            }
        }
        result.map(|object| Written { object, warnings, created: true })
    }

    /// Replace an object (PUT), the main resource or its `status` subresource.
    /// `expected_rv` forces a precondition (used by patch).
    pub async fn update(
        &self,
        res: Res,
        ns: Option<&str>,
        name: &str,
        body: Value,
        opts: &WriteOptions,
        status_only: bool,
    ) -> Result<Written, ApiError> {
        let (mut obj, warnings) = self.normalize(res, body, opts)?;
        if object::name(&obj).is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name(&obj).unwrap_or("")
            )));
        }
        if res.def.namespaced {
            if let (Some(url_ns), Some(body_ns)) = (ns, object::namespace(&obj)) {
                if url_ns != body_ns {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
            }
        }
        let key = res.key(ns, name);
        let current = self.store.get(&key).await.map_err(|e| ApiError::from_store(e, &res.qualified(), name))?;
        let Some(current) = current else {
            if res.allows_create_on_update() && !status_only {
                meta_mut(&mut obj).remove("resourceVersion");
                meta_mut(&mut obj).insert("name".into(), json!(name));
                return self
                    .create(res, ns, obj, &WriteOptions { field_validation: FieldValidation::Ignore, ..opts.clone() })
                    .await;
            }
            return Err(res.not_found(name));
        };
        let old = decode_stored(res, &current.value, current.mod_revision)?;
        if let Some(rv) = object::resource_version(&obj) {
            if parse_rv(rv)? != current.mod_revision {
                return Err(ApiError::Conflict(res.qualified(), name.to_string(), CONFLICT_DETAIL.to_string()));
            }
        }
        self.update_from(res, ns, name, obj, old, current.mod_revision, opts, status_only).await.map(|mut w| {
            w.warnings.splice(0..0, warnings);
            w
        })
    }

    /// The shared tail of update and patch: `obj` is normalized, `old` is the stored object at `old_rev`.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_from(
        &self,
        res: Res,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        old: Value,
        old_rev: Revision,
        opts: &WriteOptions,
        status_only: bool,
    ) -> Result<Written, ApiError> {
        // Metadata the client cannot change.
        {
            let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
            let m = meta_mut(&mut obj);
            for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
                match old_meta.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            m.insert("name".into(), json!(name));
            if let Some(ns) = ns.filter(|_| res.def.namespaced) {
                m.insert("namespace".into(), json!(ns));
            }
            if !m.contains_key("managedFields") {
                if let Some(mf) = old_meta.get("managedFields") {
                    m.insert("managedFields".into(), mf.clone());
                }
            }
            m.remove("selfLink");
        }
        if status_only {
            res.strategy.prepare_for_status_update(&mut obj, &old);
        } else {
            res.strategy.prepare_for_update(&mut obj, &old);
        }
        if res.strategy.has_generation() && object::spec_part(&obj) != object::spec_part(&old) {
            let gen = old.get("metadata").and_then(|m| m.get("generation")).and_then(Value::as_i64).unwrap_or(0);
            meta_mut(&mut obj).insert("generation".into(), json!(gen + 1));
        }
        let is_service = res.def.kind == "Service" && !status_only;
        let alloc = if is_service {
            Some(self.services().allocate_update(&mut obj, &old).map_err(|e| e.into_api(res, name))?)
        } else {
            None
        };
        let result = async {
            let mut errs = res.strategy.validate(&obj);
            if errs.is_empty() {
                errs = res.strategy.validate_update(&obj, &old);
            }
            if !errs.is_empty() {
                return Err(res.invalid(name, errs));
            }
            let key = res.key(ns, name);
            // An object being deleted whose last finalizer was just removed goes away now.
            let spec_finalized = res.def.kind != "Namespace"
                || obj.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty());
            let finalized = object::deletion_timestamp(&obj).is_some()
                && spec_finalized
                && object::finalizers(&obj).is_empty()
                && obj
                    .get("metadata")
                    .and_then(|m| m.get("deletionGracePeriodSeconds"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    == 0;
            if opts.dry_run {
                return Ok((obj.clone(), false));
            }
            if finalized {
                let (_, rev) = self
                    .store
                    .delete(&key, Some(old_rev))
                    .await
                    .map_err(|e| ApiError::from_store(e, &res.qualified(), name))?;
                let mut out = obj.clone();
                object::set_resource_version(&mut out, rev);
                return Ok((out, true));
            }
            if obj == old {
                // Nothing changed: upstream skips the write and keeps the resourceVersion.
                return Ok((old.clone(), false));
            }
            let kv = self
                .store
                .update(&key, encode_for_store(&obj)?, old_rev)
                .await
                .map_err(|e| ApiError::from_store(e, &res.qualified(), name))?;
            let mut out = obj.clone();
            object::set_resource_version(&mut out, kv.mod_revision);
            Ok((out, false))
        }
        .await;
        if let Some(a) = alloc {
            let mut hooks = self.services();
            match (&result, opts.dry_run) {
                (Ok(_), false) => hooks.commit(a),
                _ => hooks.rollback(a),
            }
        }
        let (object, deleted) = result?;
        if deleted {
            self.after_delete(res, &object).await;
        }
        Ok(Written { object, warnings: vec![], created: false })
    }

    /// Read-modify-write with conflict retries: `mutate` gets the current object (storage
    /// version) and returns the new one, which then goes through the update path.
    pub async fn modify<F>(
        &self,
        res: Res,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        status_only: bool,
        mut mutate: F,
    ) -> Result<Written, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let key = res.key(ns, name);
            let (current, old) = self.load(res, &key, name).await?;
            let new = mutate(&old)?;
            if let Some(rv) = object::resource_version(&new) {
                if parse_rv(rv)? != current.mod_revision {
                    return Err(ApiError::Conflict(res.qualified(), name.to_string(), CONFLICT_DETAIL.to_string()));
                }
            }
            let (new, warnings) = self.normalize(res, new, opts)?;
            match self.update_from(res, ns, name, new, old, current.mod_revision, opts, status_only).await {
                Err(ApiError::Conflict(..)) => continue,
                Ok(mut w) => {
                    w.warnings.splice(0..0, warnings);
                    return Ok(w);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Conflict(res.qualified(), name.to_string(), CONFLICT_DETAIL.to_string()))
    }

    /// Delete an object, honouring preconditions, graceful pod deletion, namespace termination,
    /// finalizers and the garbage-collection policy (`orphan` / `foregroundDeletion` finalizers),
    /// as upstream's generic registry `Delete`.
    pub async fn delete(
        &self,
        res: Res,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deletion, ApiError> {
        let key = res.key(ns, name);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (current, cur) = self.load(res, &key, name).await?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = object::uid(&cur).unwrap_or("");
                if actual != uid {
                    return Err(ApiError::Conflict(
                        res.qualified(),
                        name.to_string(),
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_rv {
                let actual = current.mod_revision.to_string();
                if &actual != rv {
                    return Err(ApiError::Conflict(
                        res.qualified(),
                        name.to_string(),
                        format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"),
                    ));
                }
            }
            let (marked, then_delete) = match deletion::decide(res.def.kind, &cur, opts, jiff::Timestamp::now()) {
                Outcome::Unchanged => return Ok(Deletion { object: cur, deleted: false }),
                Outcome::Pending(obj) => (Some(obj), false),
                Outcome::UpdateThenDelete(obj) => (Some(obj), true),
                Outcome::DeleteNow => (None, true),
            };
            let mut rev = current.mod_revision;
            let mut out = cur;
            let mut wrote = false;
            if let Some(marked) = marked {
                if opts.dry_run {
                    return Ok(Deletion { object: marked, deleted: then_delete });
                }
                if marked != out {
                    match self.store.update(&key, encode_for_store(&marked)?, rev).await {
                        Ok(kv) => rev = kv.mod_revision,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(ApiError::from_store(e, &res.qualified(), name)),
                    }
                    out = marked;
                    object::set_resource_version(&mut out, rev);
                    wrote = true;
                }
                if !then_delete {
                    return Ok(Deletion { object: out, deleted: false });
                }
            }
            if opts.dry_run {
                return Ok(Deletion { object: out, deleted: true });
            }
            match self.store.delete(&key, Some(rev)).await {
                Ok((_, rev)) => {
                    object::set_resource_version(&mut out, rev);
                    self.after_delete(res, &out).await;
                    return Ok(Deletion { object: out, deleted: true });
                }
                Err(StoreError::Conflict { .. }) => continue,
                // Someone else finished the deletion we marked (upstream tolerates this race).
                Err(StoreError::NotFound { .. }) if wrote => return Ok(Deletion { object: out, deleted: true }),
                Err(StoreError::NotFound { .. }) => return Err(res.not_found(name)),
                Err(e) => return Err(ApiError::from_store(e, &res.qualified(), name)),
            }
        }
        Err(ApiError::Conflict(res.qualified(), name.to_string(), CONFLICT_DETAIL.to_string()))
    }

    /// Write an object the server itself owns (the `kubernetes` Endpoints), skipping validation
    /// (its address may be loopback, which user-written Endpoints may not use). Creates or
    /// replaces; a no-op when the stored object already has the same content.
    pub async fn put_system(&self, res: Res, ns: Option<&str>, name: &str, obj: Value) -> Result<(), ApiError> {
        let key = res.key(ns, name);
        let mut obj = res.strategy.normalize(obj).map_err(|e| ApiError::Internal(e.message))?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = self.store.get(&key).await.map_err(|e| ApiError::from_store(e, &res.qualified(), name))?;
            let result = match current {
                None => {
                    let m = meta_mut(&mut obj);
                    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                    m.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
                    self.store.create(&key, encode_for_store(&obj)?).await.map(|_| ())
                }
                Some(kv) => {
                    let old = decode_stored(res, &kv.value, kv.mod_revision)?;
                    let mut new = obj.clone();
                    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
                    let m = meta_mut(&mut new);
                    for k in ["uid", "creationTimestamp"] {
                        if let Some(v) = old_meta.get(k) {
                            m.insert(k.into(), v.clone());
                        }
                    }
                    m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                    if new == old {
                        return Ok(());
                    }
                    self.store.update(&key, encode_for_store(&new)?, kv.mod_revision).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, &res.qualified(), name)),
            }
        }
        Err(ApiError::Conflict(res.qualified(), name.to_string(), CONFLICT_DETAIL.to_string()))
    }

    /// Bind a pod to a node (the `binding` subresource): sets `spec.nodeName` and the
    /// PodScheduled condition, which an ordinary pod update may not change.
    pub async fn bind_pod(
        &self,
        res: Res,
        ns: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let key = res.key(Some(ns), name);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (kv, mut pod) = self.load(res, &key, name).await?;
            if let Some(want) = uid {
                if object::uid(&pod) != Some(want) {
                    return Err(ApiError::Conflict(
                        res.qualified(),
                        name.to_string(),
                        "the UID in the binding does not match the pod".into(),
                    ));
                }
            }
            if object::deletion_timestamp(&pod).is_some() {
                return Err(ApiError::Conflict(
                    res.qualified(),
                    name.to_string(),
                    format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            if let Some(cur) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                return Err(ApiError::Conflict(
                    res.qualified(),
                    name.to_string(),
                    format!("pod {name} is already assigned to node {cur:?}"),
                ));
            }
            pod["spec"]["nodeName"] = json!(node);
            let mut conditions: Vec<Value> = pod
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"))
                .collect();
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()}));
            if !pod.get("status").is_some_and(Value::is_object) {
                pod["status"] = json!({});
            }
            pod["status"]["conditions"] = Value::Array(conditions);
            match self.store.update(&key, encode_for_store(&pod)?, kv.mod_revision).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, &res.qualified(), name)),
            }
        }
        Err(ApiError::Conflict(res.qualified(), name.to_string(), CONFLICT_DETAIL.to_string()))
    }

    /// Change a namespace's `spec.finalizers` (the `finalize` subresource); a namespace being
    /// deleted whose finalizers are all gone is removed.
    pub async fn finalize_namespace(
        &self,
        res: Res,
        name: &str,
        edit: impl Fn(&mut Vec<String>),
    ) -> Result<Value, ApiError> {
        let key = res.key(None, name);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (kv, mut obj) = self.load(res, &key, name).await?;
            let mut fins: Vec<String> = obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            edit(&mut fins);
            obj["spec"] = json!({ "finalizers": fins });
            let result =
                if fins.is_empty() && object::deletion_timestamp(&obj).is_some() && object::finalizers(&obj).is_empty()
                {
                    self.store.delete(&key, Some(kv.mod_revision)).await.map(|(_, rev)| rev)
                } else {
                    self.store.update(&key, encode_for_store(&obj)?, kv.mod_revision).await.map(|kv| kv.mod_revision)
                };
            match result {
                Ok(rev) => {
                    object::set_resource_version(&mut obj, rev);
                    return Ok(obj);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, &res.qualified(), name)),
            }
        }
        Err(ApiError::Conflict(res.qualified(), name.to_string(), CONFLICT_DETAIL.to_string()))
    }

    /// Side effects of a completed delete.
    async fn after_delete(&self, res: Res, obj: &Value) {
        if res.def.kind == "Service" {
            self.services().release(obj);
            // Upstream deletes the same-named Endpoints with the Service.
            if let (Some(ep), Some(ns), Some(name)) =
                (Res::by_kind("Endpoints"), object::namespace(obj), object::name(obj))
            {
                let _ = self.store.delete(&ep.key(Some(ns), name), None).await;
            }
        }
    }
}

impl Res {
    fn qualified_text(&self) -> String {
        if self.def.gv.group.is_empty() {
            self.def.plural.to_string()
        } else {
            format!("{}.{}", self.def.plural, self.def.gv.group)
        }
    }
}

/// Upstream keeps generated names within 63 characters: base truncated to 58, plus 5 random.
fn truncate_base(base: &str) -> &str {
    if base.len() > 58 {
        &base[..58]
    } else {
        base
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_items_equal_parsed_ones() {
        let res = Res::by_kind("ConfigMap").unwrap();
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "d", "resourceVersion": "9"}, "data": {"k": "v"}});
        let stored = encode_for_store(&obj).unwrap();
        assert!(stored.starts_with(STORED_PREFIX));
        let mut out = Vec::new();
        splice_item(&mut out, &stored, 42);
        let spliced: Value = serde_json::from_slice(&out).unwrap();
        let mut parsed = decode_stored(res, &stored, 42).unwrap();
        parsed.as_object_mut().unwrap().remove("kind");
        parsed.as_object_mut().unwrap().remove("apiVersion");
        assert_eq!(spliced, parsed);
        assert_eq!(spliced["metadata"]["resourceVersion"], "42");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "default/web-1");
        assert_eq!(decode_continue(&t).unwrap(), (42, "default/web-1".to_string()));
        assert!(decode_continue("garbage!").is_err());
    }
}

#[cfg(test)]
mod delete_tests {
    use super::*;
    use crate::deletion::{default_gc_policy, GcPolicy, Propagation};

    async fn registry() -> Registry {
        let cidr = crate::services::service_cidr((std::net::Ipv4Addr::new(10, 43, 0, 0), 16)).unwrap();
        let r = Registry::new(Arc::new(ferry_store::MemoryStore::new()), ServiceHooks::new(cidr, 30000..=32767));
        let ns = Res::by_kind("Namespace").unwrap();
        r.create(ns, None, json!({"metadata": {"name": "default"}}), &WriteOptions::default()).await.unwrap();
        r
    }

    fn rc_res() -> Res {
        Res::by_kind("ReplicationController").unwrap()
    }

    async fn create_rc(r: &Registry, name: &str) {
        let rc = json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"app": name}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        });
        r.create(rc_res(), Some("default"), rc, &WriteOptions::default()).await.unwrap();
    }

    /// What `kubectl delete rc kubia --cascade=false` (kubectl 1.20) sends, at core/v1.
    fn rc_opts(policy: Option<Propagation>, orphan: Option<bool>) -> DeleteOptions {
        DeleteOptions {
            propagation_policy: policy,
            orphan_dependents: orphan,
            default_gc: default_gc_policy("ReplicationController", "", "v1"),
            ..Default::default()
        }
    }

    /// The garbage collector's last step: take one finalizer off.
    async fn remove_finalizer(r: &Registry, name: &str, finalizer: &str) -> Written {
        r.modify(rc_res(), Some("default"), name, &WriteOptions::default(), false, |old| {
            let mut new = old.clone();
            let fins: Vec<String> = object::finalizers(old).into_iter().filter(|f| f != finalizer).collect();
            new["metadata"]["finalizers"] = json!(fins);
            Ok(new)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn orphan_keeps_the_object_until_the_collector_drops_the_finalizer() {
        let r = registry().await;
        create_rc(&r, "kubia").await;
        let d = r.delete(rc_res(), Some("default"), "kubia", &rc_opts(Some(Propagation::Orphan), None)).await.unwrap();
        assert!(!d.deleted);
        assert_eq!(d.object["metadata"]["finalizers"], json!(["orphan"]));
        let stored = r.get(rc_res(), Some("default"), "kubia").await.unwrap();
        assert!(object::deletion_timestamp(&stored).is_some());
        assert_eq!(stored["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(stored["metadata"]["finalizers"], json!(["orphan"]));
        remove_finalizer(&r, "kubia", "orphan").await;
        assert!(matches!(r.get(rc_res(), Some("default"), "kubia").await, Err(ApiError::NotFound(..))));
    }

    #[tokio::test]
    async fn the_rc_default_at_v1_orphans_and_background_deletes_at_once() {
        let r = registry().await;
        create_rc(&r, "a").await;
        let d = r.delete(rc_res(), Some("default"), "a", &rc_opts(None, None)).await.unwrap();
        assert!(!d.deleted);
        assert_eq!(d.object["metadata"]["finalizers"], json!(["orphan"]));
        create_rc(&r, "b").await;
        let d = r.delete(rc_res(), Some("default"), "b", &rc_opts(Some(Propagation::Background), None)).await.unwrap();
        assert!(d.deleted);
        assert!(matches!(r.get(rc_res(), Some("default"), "b").await, Err(ApiError::NotFound(..))));
        // orphanDependents=false is a cascading delete too.
        create_rc(&r, "c").await;
        let d = r.delete(rc_res(), Some("default"), "c", &rc_opts(None, Some(false))).await.unwrap();
        assert!(d.deleted);
    }

    #[tokio::test]
    async fn foreground_then_a_second_delete_switches_policies() {
        let r = registry().await;
        create_rc(&r, "kubia").await;
        let fg = rc_opts(Some(Propagation::Foreground), None);
        let d = r.delete(rc_res(), Some("default"), "kubia", &fg).await.unwrap();
        assert!(!d.deleted);
        assert_eq!(d.object["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        let first_ts = object::deletion_timestamp(&d.object).unwrap().to_string();
        // The same policy again: no write (the resourceVersion stays).
        let again = r.delete(rc_res(), Some("default"), "kubia", &fg).await.unwrap();
        assert_eq!(object::resource_version(&again.object), object::resource_version(&d.object));
        // Orphan replaces the foreground finalizer; the deletion timestamp stays.
        let d = r.delete(rc_res(), Some("default"), "kubia", &rc_opts(Some(Propagation::Orphan), None)).await.unwrap();
        assert_eq!(d.object["metadata"]["finalizers"], json!(["orphan"]));
        assert_eq!(object::deletion_timestamp(&d.object), Some(first_ts.as_str()));
        // Background drops the GC finalizer and, with none left, deletes.
        let d =
            r.delete(rc_res(), Some("default"), "kubia", &rc_opts(Some(Propagation::Background), None)).await.unwrap();
        assert!(d.deleted);
        assert!(r.get(rc_res(), Some("default"), "kubia").await.is_err());
    }

    #[tokio::test]
    async fn other_finalizers_hold_the_object_and_the_last_removal_deletes_it() {
        let r = registry().await;
        create_rc(&r, "kubia").await;
        r.modify(rc_res(), Some("default"), "kubia", &WriteOptions::default(), false, |old| {
            let mut new = old.clone();
            new["metadata"]["finalizers"] = json!(["example.com/hold"]);
            Ok(new)
        })
        .await
        .unwrap();
        let d =
            r.delete(rc_res(), Some("default"), "kubia", &rc_opts(Some(Propagation::Foreground), None)).await.unwrap();
        assert_eq!(d.object["metadata"]["finalizers"], json!(["example.com/hold", "foregroundDeletion"]));
        let w = remove_finalizer(&r, "kubia", "foregroundDeletion").await;
        assert_eq!(w.object["metadata"]["finalizers"], json!(["example.com/hold"]));
        assert!(r.get(rc_res(), Some("default"), "kubia").await.is_ok());
        remove_finalizer(&r, "kubia", "example.com/hold").await;
        assert!(r.get(rc_res(), Some("default"), "kubia").await.is_err());
    }

    #[tokio::test]
    async fn dry_run_shows_the_finalizer_without_writing() {
        let r = registry().await;
        create_rc(&r, "kubia").await;
        let opts = DeleteOptions { dry_run: true, ..rc_opts(Some(Propagation::Orphan), None) };
        let d = r.delete(rc_res(), Some("default"), "kubia", &opts).await.unwrap();
        assert_eq!(d.object["metadata"]["finalizers"], json!(["orphan"]));
        let stored = r.get(rc_res(), Some("default"), "kubia").await.unwrap();
        assert!(object::deletion_timestamp(&stored).is_none());
        assert!(stored["metadata"].get("finalizers").is_none());
    }

    #[tokio::test]
    async fn a_scheduled_pod_waits_its_grace_period_and_zero_removes_it() {
        let r = registry().await;
        let pods = Res::by_kind("Pod").unwrap();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
        r.create(pods, Some("default"), pod, &WriteOptions::default()).await.unwrap();
        let opts = DeleteOptions { default_gc: GcPolicy::DeleteDependents, ..Default::default() };
        let d = r.delete(pods, Some("default"), "p", &opts).await.unwrap();
        assert!(!d.deleted);
        assert_eq!(d.object["metadata"]["deletionGracePeriodSeconds"], 30);
        let now = DeleteOptions { grace_period_seconds: Some(0), ..opts };
        let d = r.delete(pods, Some("default"), "p", &now).await.unwrap();
        assert!(d.deleted);
        assert!(r.get(pods, Some("default"), "p").await.is_err());
    }
}
