//! Fetching what the diagnosis reads from the API server, and running the three checks in order.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

use crate::diagnose::{diagnose, Objects};
use crate::report::{assemble, Explanation};
use crate::{connect, rules};

/// Why the checklist could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Client(#[from] ferry_client::ClientError),
    #[error("service {name:?} not found in namespace {namespace:?}{}", others_text(.others))]
    ServiceNotFound { namespace: String, name: String, others: Vec<String> },
    #[error("reading {what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("reading the proxy rules: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn others_text(others: &[String]) -> String {
    match others.is_empty() {
        true => " (the namespace has no service)".into(),
        false => format!(" (its services: {})", others.join(", ")),
    }
}

/// What to explain and how.
#[derive(Clone, Debug)]
pub struct Request {
    pub kubeconfig: PathBuf,
    /// `None`: the kubeconfig context's namespace (`default` when it names none).
    pub namespace: Option<String>,
    pub name: String,
    /// Timeout of each connection attempt.
    pub timeout: Duration,
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ExplainError {
    let what = what.into();
    move |source| ExplainError::Api { what, source }
}

/// The service `name` in `namespace` and everything around it.
pub async fn fetch(client: &kube::Client, namespace: &str, name: &str) -> Result<Objects, ExplainError> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let Some(service) = services.get_opt(name).await.map_err(api_error(format!("service {namespace}/{name}")))? else {
        let list = services.list(&ListParams::default()).await.map_err(api_error("services"))?;
        let others = list.items.into_iter().filter_map(|s| s.metadata.name).collect();
        return Err(ExplainError::ServiceNotFound { namespace: namespace.into(), name: name.into(), others });
    };
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    let endpoints = endpoints.get_opt(name).await.map_err(api_error(format!("endpoints {namespace}/{name}")))?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let by_service = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    let slices = slices.list(&by_service).await.map_err(api_error("endpointslices"))?.items;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = pods.list(&ListParams::default()).await.map_err(api_error("pods"))?.items;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let events = events.list(&ListParams::default()).await.map_err(api_error("events"))?.items;
    Ok(Objects { service, endpoints, slices, pods, events })
}

/// Runs the whole checklist: API objects, proxy rules, live connections.
pub async fn explain_service(request: &Request) -> Result<Explanation, ExplainError> {
    let client = ferry_client::connect(&request.kubeconfig).await?;
    let namespace = request.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let objects = fetch(&client, &namespace, &request.name).await?;
    let diagnosis = diagnose(&objects);
    let service = objects.service.clone();
    let rules = tokio::task::spawn_blocking(move || rules::read_rules(&service)).await?;
    let attempts = connect::dial_all(connect::targets(&diagnosis), request.timeout).await;
    Ok(assemble(diagnosis, rules, attempts, request.timeout))
}
