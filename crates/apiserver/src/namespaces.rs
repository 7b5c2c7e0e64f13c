//! Namespace finalization (upstream's namespace controller): when a namespace is being deleted,
//! delete everything in it, then clear its `kubernetes` finalizer so the namespace goes too.

use std::sync::Arc;
use std::time::Duration;

use ferry_store::WatchEvent;
use serde_json::Value;

use crate::deletion::Propagation;
use crate::http::State;
use crate::object;
use crate::registry::{DeleteOptions, ListQuery, Res};
use crate::status::ApiError;

/// Watch namespaces and finalize the ones being deleted, until shutdown.
pub async fn run(state: Arc<State>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(ns_res) = Res::by_kind("Namespace") else { return };
    loop {
        // (Re)start: scan all namespaces, then follow changes from that revision.
        let start = match state.registry.list(ns_res, None, &ListQuery::default()).await {
            Ok(page) => {
                for ns in &page.items {
                    if object::deletion_timestamp(ns).is_some() {
                        finalize_until_done(&state, ns_res, ns, &mut shutdown).await;
                    }
                }
                page.revision
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing namespaces");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        let mut stream = match state.registry.store.watch(&ns_res.prefix(None), start).await {
            Ok(s) => s,
            Err(_) => continue,
        };
        loop {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = shutdown.changed() => return,
            };
            match ev {
                Some(Ok(WatchEvent::Put { kv, .. })) => {
                    if let Ok(ns) = serde_json::from_slice::<Value>(&kv.value) {
                        if object::deletion_timestamp(&ns).is_some() {
                            finalize_until_done(&state, ns_res, &ns, &mut shutdown).await;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    }
}

async fn finalize_until_done(
    state: &State,
    ns_res: Res,
    ns: &Value,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) {
    let Some(name) = object::name(ns).map(str::to_string) else { return };
    for attempt in 0u32.. {
        match finalize(state, ns_res, &name).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(namespace = %name, error = %e, "finalizing namespace"),
        }
        let wait = Duration::from_millis(200 * u64::from(attempt.min(10) + 1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass: delete remaining content; when none is left, clear the finalizer. Returns true
/// when the namespace is finalized (or gone).
async fn finalize(state: &State, ns_res: Res, name: &str) -> Result<bool, ApiError> {
    let registry = &state.registry;
    let mut remaining = 0usize;
    for def in ferry_api::CATALOG.iter().filter(|d| d.namespaced) {
        let Some(res) = Res::for_def(def) else { continue };
        let page = registry.list(res, Some(name), &ListQuery::default()).await?;
        for obj in page.items {
            remaining += 1;
            if object::deletion_timestamp(&obj).is_some() {
                continue;
            }
            let Some(obj_name) = object::name(&obj) else { continue };
            // As upstream's namespace deleter: dependents go in the background.
            let opts = DeleteOptions { propagation_policy: Some(Propagation::Background), ..Default::default() };
            match registry.delete(res, Some(name), obj_name, &opts).await {
                Ok(_) | Err(ApiError::NotFound(..)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        // Check again: most deletes complete at once.
        let mut left = 0usize;
        for def in ferry_api::CATALOG.iter().filter(|d| d.namespaced) {
            if let Some(res) = Res::for_def(def) {
                left += registry.store.count(&res.prefix(Some(name))).await.unwrap_or(1);
            }
        }
        if left > 0 {
            return Ok(false);
        }
    }
    match registry.finalize_namespace(ns_res, name, |fins| fins.retain(|f| f != "kubernetes")).await {
        Ok(_) | Err(ApiError::NotFound(..)) => Ok(true),
        Err(e) => Err(e),
    }
}
