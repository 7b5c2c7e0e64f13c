//! Request classification: turns a URL path and method into what the request addresses
//! (upstream's `RequestInfo`), and parses the common query parameters.

use std::collections::HashMap;

use percent_encoding::percent_decode_str;

/// What a resource path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Path below a subresource (`pods/x/proxy/<rest>`), if any.
    pub rest: Vec<String>,
    /// Legacy `/watch/` path prefix was used.
    pub watch_path: bool,
}

/// A classified request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz(&'static str),
    Version,
    ApiVersions,
    ApiGroups,
    ApiGroup(String),
    Resources { group: String, version: String },
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
    Metrics,
    Resource(ResourcePath),
    NotFound,
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect()
}

/// Classify a request path.
pub fn route(path: &str) -> Route {
    let parts = segments(path);
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["healthz"] | ["healthz", ..] => Route::Healthz("healthz"),
        ["livez"] | ["livez", ..] => Route::Healthz("livez"),
        ["readyz"] | ["readyz", ..] => Route::Healthz("readyz"),
        ["version"] => Route::Version,
        ["metrics"] => Route::Metrics,
        ["api"] => Route::ApiVersions,
        ["apis"] => Route::ApiGroups,
        ["apis", g] => Route::ApiGroup(g.to_string()),
        ["api", v] => Route::Resources { group: String::new(), version: v.to_string() },
        ["apis", g, v] => Route::Resources { group: g.to_string(), version: v.to_string() },
        ["openapi", "v2"] | ["swagger.json"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::NotFound,
    }
}

const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let mut rest = rest;
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.len() >= 2 && rest[0] == "namespaces" {
        if rest.len() == 2 || NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            // The namespace object itself.
            return Route::Resource(ResourcePath {
                group: group.into(),
                version: version.into(),
                resource: "namespaces".into(),
                namespace: None,
                name: Some(rest[1].to_string()),
                subresource: rest.get(2).map(|s| s.to_string()),
                rest: rest.iter().skip(3).map(|s| s.to_string()).collect(),
                watch_path,
            });
        }
        namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    if rest.is_empty() {
        return Route::NotFound;
    }
    Route::Resource(ResourcePath {
        group: group.into(),
        version: version.into(),
        resource: rest[0].to_string(),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        rest: rest.iter().skip(3).map(|s| s.to_string()).collect(),
        watch_path,
    })
}

/// Decoded query parameters; for repeated keys the first value counts, as Go's `Values.Get`.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m = HashMap::new();
        if let Some(q) = q {
            for pair in q.split('&') {
                if pair.is_empty() {
                    continue;
                }
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let dec = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
                m.entry(dec(k)).or_insert_with(|| dec(v));
            }
        }
        Query(m)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    pub fn int(&self, k: &str) -> Option<i64> {
        self.get(k).and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn classifies_paths() {
        let r = rp("/api/v1/namespaces/default/pods/x/log");
        assert_eq!(
            (r.namespace.as_deref(), r.resource.as_str(), r.name.as_deref()),
            (Some("default"), "pods", Some("x"))
        );
        assert_eq!(r.subresource.as_deref(), Some("log"));
        let r = rp("/api/v1/namespaces/kube-system");
        assert_eq!((r.resource.as_str(), r.name.as_deref(), r.namespace), ("namespaces", Some("kube-system"), None));
        let r = rp("/api/v1/namespaces/x/finalize");
        assert_eq!((r.resource.as_str(), r.subresource.as_deref()), ("namespaces", Some("finalize")));
        let r = rp("/apis/apps/v1/namespaces/default/deployments");
        assert_eq!((r.group.as_str(), r.resource.as_str(), r.name), ("apps", "deployments", None));
        let r = rp("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch_path);
        let r = rp("/api/v1/nodes/n1/status");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("nodes", Some("n1"), Some("status"))
        );
        assert_eq!(route("/apis/apps/v1"), Route::Resources { group: "apps".into(), version: "v1".into() });
        assert_eq!(route("/openapi/v3/apis/apps/v1"), Route::OpenApiV3("apis/apps/v1".into()));
        assert_eq!(route("/readyz"), Route::Healthz("readyz"));
    }

    #[test]
    fn parses_queries() {
        let q = Query::parse(Some("labelSelector=app%20in%20(a%2Cb)&watch=true&limit=5&x="));
        assert_eq!(q.get("labelSelector"), Some("app in (a,b)"));
        assert_eq!(q.get("watch"), Some("true"));
        assert_eq!(q.get("x"), None);
        assert_eq!(q.int("limit"), Some(5));
    }
}
