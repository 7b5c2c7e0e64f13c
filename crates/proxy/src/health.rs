//! The healthCheckNodePort server: for each `externalTrafficPolicy: Local` LoadBalancer Service, an HTTP
//! listener answering 200 while this node has local endpoints for it and 503 otherwise (spec §5.6).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::model::ServiceName;

/// What one health-check port reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTarget {
    pub service: ServiceName,
    /// Endpoints of the Service on this node (ready, else serving-terminating).
    pub local_endpoints: usize,
}

/// A health-check port that could not be served.
#[derive(Debug, thiserror::Error)]
#[error("binding health check port {port}: {source}")]
pub struct HealthError {
    pub port: u16,
    pub source: std::io::Error,
}

struct Listener {
    state: watch::Sender<HealthTarget>,
    task: JoinHandle<()>,
}

/// The set of health-check listeners, reconciled against the proxier's targets after each sync.
pub struct HealthServer {
    bind: IpAddr,
    listeners: HashMap<u16, Listener>,
}

impl std::fmt::Debug for HealthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthServer").field("bind", &self.bind).field("ports", &self.ports()).finish()
    }
}

impl HealthServer {
    /// Listeners will bind `bind` (usually `0.0.0.0`) on each health-check node port. No IO yet.
    pub fn new(bind: IpAddr) -> HealthServer {
        HealthServer { bind, listeners: HashMap::new() }
    }

    /// Ports currently served, sorted.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.listeners.keys().copied().collect();
        ports.sort_unstable();
        ports
    }

    /// Starts listeners for new ports, stops those no longer wanted, and updates the rest. A port that cannot
    /// be bound is reported and retried on the next call.
    pub async fn reconcile(&mut self, targets: &BTreeMap<u16, HealthTarget>) -> Vec<HealthError> {
        self.listeners.retain(|port, listener| {
            let keep = targets.contains_key(port) && !listener.task.is_finished();
            if !keep {
                listener.task.abort();
            }
            keep
        });
        let mut errors = Vec::new();
        for (port, target) in targets {
            if let Some(listener) = self.listeners.get(port) {
                listener.state.send_if_modified(|current| {
                    let changed = current != target;
                    if changed {
                        *current = target.clone();
                    }
                    changed
                });
                continue;
            }
            match TcpListener::bind(SocketAddr::new(self.bind, *port)).await {
                Ok(socket) => {
                    let (state, rx) = watch::channel(target.clone());
                    let task = tokio::spawn(serve(socket, rx));
                    self.listeners.insert(*port, Listener { state, task });
                }
                Err(source) => errors.push(HealthError { port: *port, source }),
            }
        }
        errors
    }

    /// Stops every listener and waits for them to finish.
    pub async fn shutdown(mut self) {
        for (_, listener) in self.listeners.drain() {
            listener.task.abort();
            let _ = listener.task.await;
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        for listener in self.listeners.values() {
            listener.task.abort();
        }
    }
}

/// Accepts connections until aborted; connections live in a `JoinSet`, so aborting this task ends them too.
async fn serve(socket: TcpListener, state: watch::Receiver<HealthTarget>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = socket.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let target = state.borrow().clone();
                        async move { Ok::<_, Infallible>(respond(&request, &target)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The response upstream's service health server gives.
pub fn health_body(target: &HealthTarget) -> String {
    format!(
        "{{\"service\":{{\"namespace\":{},\"name\":{}}},\"localEndpoints\":{},\"serviceProxyHealthy\":true}}",
        json_string(&target.service.namespace),
        json_string(&target.service.name),
        target.local_endpoints
    )
}

fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn respond(_request: &Request<Incoming>, target: &HealthTarget) -> Response<Full<Bytes>> {
    let status = if target.local_endpoints > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut response = Response::new(Full::new(Bytes::from(health_body(target))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    headers.insert("x-content-type-options", hyper::header::HeaderValue::from_static("nosniff"));
    response
}
