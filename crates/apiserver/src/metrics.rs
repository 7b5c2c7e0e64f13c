//! Request accounting: `apiserver_request_total` by verb, resource, subresource, response code and client (the
//! authenticated user name), served in the Prometheus text format at `/metrics`.
//!
//! Counting is one mutex-guarded lookup in a map keyed first by client name (looked up by `&str`) and then by a
//! `Copy` key of static strings, so a request allocates only the first time its client/kind/code is seen. A watch
//! is counted once, when it is opened (verb `WATCH`). `/healthz`, `/livez`, `/readyz` and `/version` are served
//! before authentication and not counted.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use ferry_api::catalog::{self, Subresource};
use http::Method;

use crate::request::Route;

/// The client name requests that fail authentication are counted under (upstream's anonymous user).
pub const ANONYMOUS: &str = "system:anonymous";

/// What a request is counted as, apart from its client and response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKind {
    /// Upstream's verb label: `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`,
    /// `DELETECOLLECTION`, `CONNECT`; non-resource requests carry their HTTP method.
    pub verb: &'static str,
    /// The resource's plural name; empty for non-resource paths and resources this server does not serve.
    pub resource: &'static str,
    /// The subresource's name, or empty.
    pub subresource: &'static str,
}

impl RequestKind {
    /// Classifies a request from its method, routed path, raw query and `Content-Type`.
    pub fn classify(method: &Method, route: &Route, query: Option<&str>, content_type: Option<&str>) -> RequestKind {
        let Route::Resource(rp) = route else {
            return RequestKind { verb: method_name(method), resource: "", subresource: "" };
        };
        let def = catalog::lookup(&rp.group, &rp.version, &rp.resource).map(|(def, _)| def);
        let resource = def.map_or("", |d| d.plural);
        let sub = rp.subresource.as_deref().and_then(Subresource::from_name);
        let subresource = match (def, sub) {
            (Some(_), Some(s)) => s.name(),
            _ => "",
        };
        let watch = rp.watch_path || query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let connect = matches!(
            sub,
            Some(Subresource::Exec | Subresource::Attach | Subresource::PortForward | Subresource::Proxy)
        );
        let verb = if connect {
            "CONNECT"
        } else {
            match (method, rp.name.is_some()) {
                (&Method::GET, _) if watch => "WATCH",
                (&Method::GET, true) => "GET",
                (&Method::GET, false) => "LIST",
                (&Method::DELETE, false) => "DELETECOLLECTION",
                (&Method::PATCH, _) if content_type.is_some_and(|c| c.starts_with("application/apply-patch")) => {
                    "APPLY"
                }
                (m, _) => method_name(m),
            }
        };
        RequestKind { verb, resource, subresource }
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// One client's counts by kind and response code.
type ClientCounts = HashMap<(RequestKind, u16), u64>;

/// Request counts since the server started.
#[derive(Debug, Default)]
pub struct RequestCounter {
    by_client: Mutex<HashMap<String, ClientCounts>>,
}

impl RequestCounter {
    /// Counts one request of `client` answered with `code`.
    pub fn record(&self, client: &str, kind: RequestKind, code: u16) {
        let mut map = self.by_client.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(client) {
            Some(counts) => *counts.entry((kind, code)).or_insert(0) += 1,
            None => {
                map.insert(client.to_string(), HashMap::from([((kind, code), 1)]));
            }
        }
    }

    /// The count for one label set (0 if never seen).
    #[cfg(test)]
    pub fn get(&self, client: &str, kind: RequestKind, code: u16) -> u64 {
        let map = self.by_client.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(client).and_then(|c| c.get(&(kind, code))).copied().unwrap_or(0)
    }

    /// Every counter in the Prometheus text exposition format, sorted by labels.
    pub fn render(&self) -> String {
        let mut rows: Vec<(String, RequestKind, u16, u64)> = {
            let map = self.by_client.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .flat_map(|(client, counts)| counts.iter().map(move |((k, code), n)| (client.clone(), *k, *code, *n)))
                .collect()
        };
        rows.sort();
        let mut out = String::with_capacity(256 + rows.len() * 128);
        out.push_str(
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, resource, \
             subresource, client (authenticated user) and HTTP response code.\n",
        );
        out.push_str("# TYPE apiserver_request_total counter\n");
        for (client, kind, code, n) in rows {
            let _ = writeln!(
                out,
                "apiserver_request_total{{client=\"{}\",code=\"{code}\",resource=\"{}\",subresource=\"{}\",verb=\"{}\"}} {n}",
                escape(&client),
                kind.resource,
                kind.subresource,
                kind.verb
            );
        }
        out
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::route;

    fn kind(method: Method, path_and_query: &str) -> RequestKind {
        let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
        RequestKind::classify(&method, &route(path), query, None)
    }

    fn k(verb: &'static str, resource: &'static str, subresource: &'static str) -> RequestKind {
        RequestKind { verb, resource, subresource }
    }

    #[test]
    fn requests_are_classified_with_upstream_verbs() {
        assert_eq!(kind(Method::GET, "/api/v1/namespaces/default/pods"), k("LIST", "pods", ""));
        assert_eq!(kind(Method::GET, "/api/v1/pods?watch=true&resourceVersion=5"), k("WATCH", "pods", ""));
        assert_eq!(kind(Method::GET, "/api/v1/watch/namespaces/default/pods/p"), k("WATCH", "pods", ""));
        assert_eq!(kind(Method::GET, "/api/v1/namespaces/default/pods/p"), k("GET", "pods", ""));
        assert_eq!(kind(Method::PUT, "/api/v1/namespaces/default/pods/p/status"), k("PUT", "pods", "status"));
        assert_eq!(
            kind(Method::PATCH, "/apis/apps/v1/namespaces/default/replicasets/r/scale"),
            k("PATCH", "replicasets", "scale")
        );
        assert_eq!(kind(Method::POST, "/api/v1/namespaces/default/pods/p/binding"), k("POST", "pods", "binding"));
        assert_eq!(kind(Method::DELETE, "/api/v1/namespaces/default/pods"), k("DELETECOLLECTION", "pods", ""));
        assert_eq!(kind(Method::POST, "/api/v1/namespaces/default/pods/p/exec"), k("CONNECT", "pods", "exec"));
        assert_eq!(kind(Method::GET, "/api/v1/namespaces/default/pods/p/log"), k("GET", "pods", "log"));
        assert_eq!(kind(Method::GET, "/api/v1/namespaces/d/widgets"), k("LIST", "", ""));
        assert_eq!(kind(Method::GET, "/apis"), k("GET", "", ""));
        let apply = RequestKind::classify(
            &Method::PATCH,
            &route("/api/v1/namespaces/default/configmaps/c"),
            None,
            Some("application/apply-patch+yaml"),
        );
        assert_eq!(apply, k("APPLY", "configmaps", ""));
    }

    #[test]
    fn counts_are_kept_per_client_and_rendered_in_text_format() {
        let c = RequestCounter::default();
        let list = k("LIST", "pods", "");
        c.record("system:kube-scheduler", list, 200);
        c.record("system:kube-scheduler", list, 200);
        c.record("system:node:n1", k("PUT", "leases", ""), 200);
        c.record("odd\"user", list, 403);
        assert_eq!(c.get("system:kube-scheduler", list, 200), 2);
        assert_eq!(c.get("system:node:n1", list, 200), 0);
        let text = c.render();
        assert!(text.contains("# TYPE apiserver_request_total counter\n"), "{text}");
        assert!(
            text.contains(
                "apiserver_request_total{client=\"system:kube-scheduler\",code=\"200\",resource=\"pods\",\
                 subresource=\"\",verb=\"LIST\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("{client=\"odd\\\"user\",code=\"403\""), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("apiserver_request_total{")).count(), 3);
    }

    /// One HTTPS request to `server` with a client certificate (`cert`: PEM cert and key) or a bearer token.
    async fn request(
        server: &crate::ApiServer,
        cert: Option<&(String, String)>,
        token: Option<&str>,
        path: &str,
    ) -> (u16, String) {
        use http_body_util::{BodyExt, Empty};
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut server.pki.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            Some((cert, key)) => {
                let chain = rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
                let key = rustls_pemfile::private_key(&mut key.as_bytes()).unwrap().unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(server.local_addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
        let driver = tokio::spawn(conn);
        let mut req = http::Request::get(path).header("host", "localhost");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = sender.send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap()).await.unwrap();
        let code = resp.status().as_u16();
        // A watch stays open: its headers are enough.
        let body = if path.contains("watch=true") {
            String::new()
        } else {
            String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        driver.abort();
        (code, body)
    }

    #[tokio::test]
    async fn metrics_endpoint_counts_requests_by_authenticated_client() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config {
            data_dir: dir.path().to_path_buf(),
            bind_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            https_port: 0,
            advertise_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            service_cidr: (std::net::Ipv4Addr::new(10, 96, 0, 0), 16),
            node_port_range: 30000..=32767,
            cluster_domain: "cluster.local".into(),
            bookmark_interval: std::time::Duration::from_secs(60),
            compaction_interval: std::time::Duration::from_secs(300),
        };
        let server =
            crate::ApiServer::start(config, std::sync::Arc::new(ferry_store::MemoryStore::new())).await.unwrap();
        let scheduler = server.pki.issue_client_cert("system:kube-scheduler", &[]).unwrap();
        let token = server.pki.tokens[0].0.clone();
        let pods = "/api/v1/namespaces/default/pods";
        for _ in 0..2 {
            assert_eq!(request(&server, Some(&scheduler), None, pods).await.0, 200);
        }
        assert_eq!(request(&server, Some(&scheduler), None, &format!("{pods}/missing")).await.0, 404);
        assert_eq!(request(&server, Some(&scheduler), None, &format!("{pods}?watch=true")).await.0, 200);
        assert_eq!(request(&server, None, Some("wrong"), pods).await.0, 401);
        // Unauthenticated scrapes are refused like any other path.
        assert_eq!(request(&server, None, None, "/metrics").await.0, 401);

        let (code, text) = request(&server, None, Some(&token), "/metrics").await;
        assert_eq!(code, 200, "{text}");
        let line = |client: &str, code: u16, verb: &str| {
            format!(
                "apiserver_request_total{{client=\"{client}\",code=\"{code}\",resource=\"pods\",subresource=\"\",\
                 verb=\"{verb}\"}}"
            )
        };
        let value = |key: String| -> Option<u64> {
            text.lines().find_map(|l| l.strip_prefix(key.as_str())).and_then(|v| v.trim().parse().ok())
        };
        assert_eq!(value(line("system:kube-scheduler", 200, "LIST")), Some(2), "{text}");
        assert_eq!(value(line("system:kube-scheduler", 404, "GET")), Some(1), "{text}");
        assert_eq!(value(line("system:kube-scheduler", 200, "WATCH")), Some(1), "{text}");
        assert_eq!(value(line(ANONYMOUS, 401, "LIST")), Some(1), "{text}");
        // The scrape itself is counted once it is answered, so it is not in its own output.
        assert!(!text.contains("client=\"system:admin\""), "{text}");
        let (_, again) = request(&server, None, Some(&token), "/metrics").await;
        assert!(again.contains("client=\"system:admin\",code=\"200\",resource=\"\",subresource=\"\",verb=\"GET\"} 1"));
        server.stop().await;
    }
}
