//! The garbage collector's planning core (upstream `pkg/controller/garbagecollector`), free of IO: a graph of
//! objects linked by `ownerReferences`, kept up to date from watch events, and the actions that move one object
//! along — delete a dependent whose owners are gone, orphan the dependents of an owner carrying the `orphan`
//! finalizer, delete the dependents of an owner in foreground deletion and then release its
//! `foregroundDeletion` finalizer.
//!
//! How a runtime drives it:
//! - Feed every watched object through [`Graph::upsert`] (added/modified) or [`Graph::remove`] (deleted), and
//!   queue the uids they return. Start planning only once the initial list of every watched kind is in the graph
//!   (as upstream waits for its informers): orphaning an owner before all its dependents are known would leave
//!   the unknown ones pointing at a deleted owner, and they would then be deleted rather than orphaned.
//! - For a queued uid, run [`Graph::plan`] and carry out its actions in order; on the first failure stop and
//!   requeue the uid (every plan is recomputed from the graph, so retrying is always safe).
//! - An owner that is referenced but not in the graph ("virtual") is never trusted to be gone:
//!   [`Action::VerifyOwnerAbsent`] asks for a live GET, whose answer goes back through [`Graph::owner_absent`]
//!   (not found, or found with another uid) or [`Graph::upsert`] (found with the same uid).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Finalizer of an owner whose dependents are to be orphaned before it goes.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// Finalizer of an owner whose blocking dependents are to be deleted before it goes.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Which object, exactly: its coordinates and uid. `namespace` is `None` for cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectIdent {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

impl ObjectIdent {
    /// The API group of `api_version` (`""` for the core group).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// One entry of `metadata.ownerReferences`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
    pub block_owner_deletion: bool,
}

/// What the collector knows of one observed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub ident: ObjectIdent,
    pub owners: Vec<OwnerRef>,
    pub finalizers: Vec<String>,
    /// `metadata.deletionTimestamp` is set.
    pub being_deleted: bool,
}

impl Node {
    /// The node of an object of `api_version`/`kind` with this metadata; `None` without a name or uid.
    pub fn from_meta(api_version: &str, kind: &str, meta: &ObjectMeta) -> Option<Node> {
        let name = meta.name.clone().filter(|n| !n.is_empty())?;
        let uid = meta.uid.clone().filter(|u| !u.is_empty())?;
        let owners = meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| OwnerRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
                controller: r.controller == Some(true),
                block_owner_deletion: r.block_owner_deletion == Some(true),
            })
            .collect();
        Some(Node {
            ident: ObjectIdent {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
                name,
                uid,
            },
            owners,
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            being_deleted: meta.deletion_timestamp.is_some(),
        })
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: waits for its blocking dependents to go.
    pub fn deleting_dependents(&self) -> bool {
        self.being_deleted && self.has_finalizer(FINALIZER_FOREGROUND)
    }

    /// Being deleted with its dependents to be orphaned first.
    pub fn orphaning(&self) -> bool {
        self.being_deleted && self.has_finalizer(FINALIZER_ORPHAN)
    }
}

/// `DeleteOptions.propagationPolicy` of a delete the collector issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Orphan => "Orphan",
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
        }
    }
}

/// One step for the runtime to carry out against the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// DELETE `target` with `preconditions.uid = target.uid` and this propagation policy; NotFound and a uid
    /// conflict both mean it is already gone.
    Delete { target: ObjectIdent, policy: Propagation },
    /// Drop the ownerReferences with these uids from `target` (a patch with `metadata.uid = target.uid` as
    /// precondition; upstream sends a strategic merge patch of `$patch: delete` entries). NotFound is success.
    RemoveOwnerRefs { target: ObjectIdent, owner_uids: Vec<String> },
    /// Set `blockOwnerDeletion: false` on every ownerReference of `target` that has it true (breaks a possible
    /// foreground-deletion cycle before `target` itself is deleted in the foreground).
    UnblockOwnerRefs { target: ObjectIdent },
    /// Remove `finalizer` from `target` (read, edit `metadata.finalizers`, write with its resourceVersion;
    /// retry on conflict, provided the uid still matches). NotFound is success.
    RemoveFinalizer { target: ObjectIdent, finalizer: String },
    /// GET `owner` by kind and name — in `owner.namespace` when the kind is namespaced, cluster-wide otherwise.
    /// Not found, or found with another uid: report [`Graph::owner_absent`] with the namespace actually used
    /// (`None` for a cluster-scoped kind). Found with this uid: [`Graph::upsert`] the live object. A namespaced
    /// owner referenced from a cluster-scoped object (`namespace` is `None`) is invalid: report neither.
    VerifyOwnerAbsent { owner: ObjectIdent },
}

impl Action {
    /// The object the action reads or writes.
    pub fn target(&self) -> &ObjectIdent {
        match self {
            Action::Delete { target, .. }
            | Action::RemoveOwnerRefs { target, .. }
            | Action::UnblockOwnerRefs { target }
            | Action::RemoveFinalizer { target, .. } => target,
            Action::VerifyOwnerAbsent { owner } => owner,
        }
    }
}

/// Where an owner was confirmed absent: its coordinates besides the uid, and the namespace looked in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Coords {
    group: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

/// How a dependent's reference to one owner stands.
enum RefState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// The owner is confirmed gone.
    Dangling,
    /// The owner is being deleted in the foreground.
    Waiting,
    /// The owner is not in the graph (or its coordinates disagree) and not confirmed gone.
    Unknown,
}

/// The dependency graph: observed objects by uid, who references whom, and owners confirmed absent.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → uids of observed objects referencing it. The owner itself may be missing from `nodes`.
    dependents: HashMap<String, BTreeSet<String>>,
    /// Owner uid → coordinates at which it was confirmed absent (upstream's absent-owner cache). Dropped once
    /// nothing references the uid any more.
    absent: HashMap<String, BTreeSet<Coords>>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Number of observed objects.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// An observed object.
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The observed objects referencing `uid` as an owner, by uid.
    pub fn dependents(&self, uid: &str) -> impl Iterator<Item = &Node> + '_ {
        self.dependents.get(uid).into_iter().flatten().filter_map(|d| self.nodes.get(d))
    }

    /// Record an added or modified object. Returns the uids to plan, each once.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.ident.uid.clone();
        let mut queue = Queue::default();
        let old = self.nodes.insert(uid.clone(), node.clone());
        let old_owners = old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
        for gone in old_owners.iter().filter(|r| !node.owners.iter().any(|n| n.uid == r.uid)) {
            self.unlink(&gone.uid, &uid);
            // An owner in foreground deletion may have been waiting for this reference to go.
            if self.nodes.get(&gone.uid).is_some_and(Node::deleting_dependents) {
                queue.push(&gone.uid);
            }
        }
        for r in &node.owners {
            match old_owners.iter().find(|o| o.uid == r.uid) {
                None => {
                    self.dependents.entry(r.uid.clone()).or_default().insert(uid.clone());
                }
                Some(before) if before.block_owner_deletion && !r.block_owner_deletion => {
                    if self.nodes.get(&r.uid).is_some_and(Node::deleting_dependents) {
                        queue.push(&r.uid);
                    }
                }
                Some(_) => {}
            }
        }
        if !node.owners.is_empty() || node.being_deleted {
            queue.push(&uid);
        }
        // First sight of an object others already referenced (their references may disagree with what it
        // really is), or an owner in foreground deletion: its dependents need a look.
        if old.is_none() || node.deleting_dependents() {
            for d in self.dependents.get(&uid).into_iter().flatten() {
                queue.push(d);
            }
        }
        queue.into_vec()
    }

    /// Record a deleted object. Returns the uids to plan: its dependents (their owner is now confirmed gone)
    /// and its owners in foreground deletion (one fewer dependent to wait for).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut queue = Queue::default();
        for r in &node.owners {
            self.unlink(&r.uid, uid);
            if self.nodes.get(&r.uid).is_some_and(Node::deleting_dependents) {
                queue.push(&r.uid);
            }
        }
        if let Some(deps) = self.dependents.get(uid) {
            self.absent.entry(uid.to_string()).or_default().insert(Coords {
                group: node.ident.group().to_string(),
                kind: node.ident.kind.clone(),
                name: node.ident.name.clone(),
                namespace: node.ident.namespace.clone(),
            });
            for d in deps {
                queue.push(d);
            }
        }
        queue.into_vec()
    }

    /// Record the answer to [`Action::VerifyOwnerAbsent`]: nothing with `owner.uid` exists at these coordinates
    /// (`owner.namespace` as looked in). Returns the uids to plan: the objects referencing that uid.
    pub fn owner_absent(&mut self, owner: &ObjectIdent) -> Vec<String> {
        let Some(deps) = self.dependents.get(&owner.uid) else { return Vec::new() };
        self.absent.entry(owner.uid.clone()).or_default().insert(Coords {
            group: owner.group().to_string(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            namespace: owner.namespace.clone(),
        });
        deps.iter().cloned().collect()
    }

    /// The actions that move the object with this uid along; empty when there is nothing to do now.
    pub fn plan(&self, uid: &str) -> Vec<Action> {
        let Some(node) = self.nodes.get(uid) else { return self.plan_virtual(uid) };
        if node.orphaning() {
            return self.plan_orphan(node);
        }
        if node.deleting_dependents() {
            return self.plan_foreground(node);
        }
        self.attempt_delete(node)
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
                self.absent.remove(owner);
            }
        }
    }

    fn dependent_nodes(&self, uid: &str) -> Vec<&Node> {
        self.dependents(uid).collect()
    }

    /// An owner seen only in references: ask for it to be looked up, once per distinct set of coordinates.
    fn plan_virtual(&self, uid: &str) -> Vec<Action> {
        let mut wanted = BTreeMap::new();
        for dep in self.dependent_nodes(uid) {
            for r in dep.owners.iter().filter(|r| r.uid == uid) {
                if !self.is_absent(r, dep.ident.namespace.as_deref()) {
                    let owner = referenced(r, dep);
                    wanted
                        .entry((owner.group().to_string(), r.kind.clone(), r.name.clone(), owner.namespace.clone()))
                        .or_insert(owner);
                }
            }
        }
        wanted.into_values().map(|owner| Action::VerifyOwnerAbsent { owner }).collect()
    }

    /// Upstream `attemptToOrphanWorker`: drop the owner from every dependent, then its `orphan` finalizer.
    fn plan_orphan(&self, owner: &Node) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .dependent_nodes(&owner.ident.uid)
            .into_iter()
            .map(|d| Action::RemoveOwnerRefs { target: d.ident.clone(), owner_uids: vec![owner.ident.uid.clone()] })
            .collect();
        actions.push(Action::RemoveFinalizer { target: owner.ident.clone(), finalizer: FINALIZER_ORPHAN.into() });
        actions
    }

    /// Upstream `processDeletingDependentsItem`: once no dependent blocks the owner's deletion, release the
    /// `foregroundDeletion` finalizer; until then, push the blocking dependents towards deletion.
    fn plan_foreground(&self, owner: &Node) -> Vec<Action> {
        let uid = &owner.ident.uid;
        let blocking: Vec<&Node> = self
            .dependent_nodes(uid)
            .into_iter()
            .filter(|d| d.owners.iter().any(|r| &r.uid == uid && r.block_owner_deletion))
            .collect();
        if blocking.is_empty() {
            return vec![Action::RemoveFinalizer {
                target: owner.ident.clone(),
                finalizer: FINALIZER_FOREGROUND.into(),
            }];
        }
        blocking.into_iter().filter(|d| !d.deleting_dependents()).flat_map(|d| self.attempt_delete(d)).collect()
    }

    /// Upstream `attemptToDeleteItem` for an object not waiting on its own dependents.
    fn attempt_delete(&self, item: &Node) -> Vec<Action> {
        // Deletion already under way: wait for it to finish.
        if item.being_deleted || item.owners.is_empty() {
            return Vec::new();
        }
        let (mut solid, mut dangling, mut waiting, mut unknown) = (false, Vec::new(), Vec::new(), Vec::new());
        for r in &item.owners {
            match self.classify(r, item) {
                RefState::Solid => solid = true,
                RefState::Dangling => dangling.push(r.uid.clone()),
                RefState::Waiting => waiting.push(r.uid.clone()),
                RefState::Unknown => unknown.push(referenced(r, item)),
            }
        }
        let verify: Vec<Action> = unknown.into_iter().map(|owner| Action::VerifyOwnerAbsent { owner }).collect();
        if solid {
            // Kept by a live owner; references to owners that are gone or waiting on their dependents go
            // (the latter would otherwise wait on this object forever).
            let mut actions = Vec::new();
            let drop: Vec<String> = dangling.into_iter().chain(waiting).collect();
            if !drop.is_empty() {
                actions.push(Action::RemoveOwnerRefs { target: item.ident.clone(), owner_uids: drop });
            }
            actions.extend(verify);
            return actions;
        }
        if !verify.is_empty() {
            // No live owner known, but some are unconfirmed: never delete before they are looked up.
            return verify;
        }
        let has_dependents = self.dependents.get(&item.ident.uid).is_some_and(|d| !d.is_empty());
        if !waiting.is_empty() && has_dependents {
            // Some owner waits in the foreground and this object has dependents of its own: delete it in the
            // foreground too, first unblocking its references if a dependent also waits (a possible cycle).
            let mut actions = Vec::new();
            if self.dependent_nodes(&item.ident.uid).iter().any(|d| d.deleting_dependents()) {
                actions.push(Action::UnblockOwnerRefs { target: item.ident.clone() });
            }
            actions.push(Action::Delete { target: item.ident.clone(), policy: Propagation::Foreground });
            return actions;
        }
        // Every owner is gone (or waiting): delete, honouring a GC finalizer the object already carries.
        let policy = if item.has_finalizer(FINALIZER_ORPHAN) {
            Propagation::Orphan
        } else if item.has_finalizer(FINALIZER_FOREGROUND) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        vec![Action::Delete { target: item.ident.clone(), policy }]
    }

    fn classify(&self, r: &OwnerRef, item: &Node) -> RefState {
        let ns = item.ident.namespace.as_deref();
        if let Some(owner) = self.nodes.get(&r.uid) {
            let matches = group_of(&r.api_version) == owner.ident.group()
                && r.kind == owner.ident.kind
                && r.name == owner.ident.name
                && owner.ident.namespace.as_deref().is_none_or(|o| Some(o) == ns);
            if matches {
                return if owner.deleting_dependents() { RefState::Waiting } else { RefState::Solid };
            }
        }
        if self.is_absent(r, ns) {
            RefState::Dangling
        } else {
            RefState::Unknown
        }
    }

    /// Whether `r` was confirmed absent, cluster-wide or in the dependent's namespace.
    fn is_absent(&self, r: &OwnerRef, dependent_ns: Option<&str>) -> bool {
        let Some(seen) = self.absent.get(&r.uid) else { return false };
        let at = |namespace: Option<&str>| Coords {
            group: group_of(&r.api_version).to_string(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            namespace: namespace.map(str::to_string),
        };
        seen.contains(&at(None)) || (dependent_ns.is_some() && seen.contains(&at(dependent_ns)))
    }
}

/// The owner `r` names, placed in the dependent's namespace (where a namespaced owner must be).
fn referenced(r: &OwnerRef, dependent: &Node) -> ObjectIdent {
    ObjectIdent {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        namespace: dependent.ident.namespace.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
    }
}

/// Uids to plan, in first-pushed order, each once.
#[derive(Default)]
struct Queue(Vec<String>);

impl Queue {
    fn push(&mut self, uid: &str) {
        if !self.0.iter().any(|u| u == uid) {
            self.0.push(uid.to_string());
        }
    }
    fn into_vec(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(api_version: &str, kind: &str, ns: Option<&str>, name: &str, uid: &str) -> ObjectIdent {
        ObjectIdent {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn owned_by(owner: &ObjectIdent, block: bool) -> OwnerRef {
        OwnerRef {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: true,
            block_owner_deletion: block,
        }
    }

    fn node(ident: &ObjectIdent, owners: Vec<OwnerRef>) -> Node {
        Node { ident: ident.clone(), owners, finalizers: vec![], being_deleted: false }
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.being_deleted = true;
        n.finalizers.push(finalizer.into());
        n
    }

    fn rc() -> ObjectIdent {
        ident("v1", "ReplicationController", Some("default"), "kubia", "rc-1")
    }

    fn pod(name: &str) -> ObjectIdent {
        ident("v1", "Pod", Some("default"), name, &format!("uid-{name}"))
    }

    fn delete(target: &ObjectIdent, policy: Propagation) -> Action {
        Action::Delete { target: target.clone(), policy }
    }

    /// kubectl delete rc kubia --cascade=false: the API server gave the RC the orphan finalizer.
    #[test]
    fn an_orphaning_owner_is_dropped_from_its_dependents_then_released() {
        let mut g = Graph::new();
        g.upsert(node(&rc(), vec![]));
        for p in ["a", "b"] {
            g.upsert(node(&pod(p), vec![owned_by(&rc(), true)]));
        }
        assert!(g.plan("uid-a").is_empty(), "a live owner keeps its pods");
        let queued = g.upsert(deleting(node(&rc(), vec![]), FINALIZER_ORPHAN));
        assert_eq!(queued, vec!["rc-1"]);
        assert_eq!(
            g.plan("rc-1"),
            vec![
                Action::RemoveOwnerRefs { target: pod("a"), owner_uids: vec!["rc-1".into()] },
                Action::RemoveOwnerRefs { target: pod("b"), owner_uids: vec!["rc-1".into()] },
                Action::RemoveFinalizer { target: rc(), finalizer: FINALIZER_ORPHAN.into() },
            ]
        );
        // The patches land, the finalizer goes, then the RC: the pods stay.
        g.upsert(node(&pod("a"), vec![]));
        g.upsert(node(&pod("b"), vec![]));
        g.upsert(Node { finalizers: vec![], ..deleting(node(&rc(), vec![]), FINALIZER_ORPHAN) });
        assert!(g.plan("rc-1").is_empty(), "being deleted without GC finalizers: nothing to do");
        assert!(g.remove("rc-1").is_empty());
        assert!(g.plan("uid-a").is_empty());
    }

    #[test]
    fn background_deletion_of_an_rc_deletes_its_pods() {
        let mut g = Graph::new();
        g.upsert(node(&rc(), vec![]));
        g.upsert(node(&pod("a"), vec![owned_by(&rc(), true)]));
        g.upsert(node(&pod("b"), vec![owned_by(&rc(), true)]));
        let queued = g.remove("rc-1");
        assert_eq!(queued, vec!["uid-a", "uid-b"]);
        assert_eq!(g.plan("uid-a"), vec![delete(&pod("a"), Propagation::Background)]);
        assert_eq!(g.plan("uid-b"), vec![delete(&pod("b"), Propagation::Background)]);
        // A pod already terminating is left to finish.
        let mut terminating = node(&pod("a"), vec![owned_by(&rc(), true)]);
        terminating.being_deleted = true;
        g.upsert(terminating);
        assert!(g.plan("uid-a").is_empty());
    }

    #[test]
    fn a_deployment_cascades_through_its_replica_set_to_the_pods() {
        let deploy = ident("apps/v1", "Deployment", Some("default"), "web", "d-1");
        let rs = ident("apps/v1", "ReplicaSet", Some("default"), "web-5d8f", "rs-1");
        let mut g = Graph::new();
        g.upsert(node(&deploy, vec![]));
        g.upsert(node(&rs, vec![owned_by(&deploy, true)]));
        g.upsert(node(&pod("web-5d8f-x"), vec![owned_by(&rs, true)]));
        assert_eq!(g.remove("d-1"), vec!["rs-1"]);
        assert_eq!(g.plan("rs-1"), vec![delete(&rs, Propagation::Background)]);
        assert!(g.plan("uid-web-5d8f-x").is_empty(), "its replica set still stands");
        assert_eq!(g.remove("rs-1"), vec!["uid-web-5d8f-x"]);
        assert_eq!(g.plan("uid-web-5d8f-x"), vec![delete(&pod("web-5d8f-x"), Propagation::Background)]);
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents_only() {
        let deploy = ident("apps/v1", "Deployment", Some("default"), "web", "d-1");
        let rs = ident("apps/v1", "ReplicaSet", Some("default"), "web-5d8f", "rs-1");
        let side = ident("v1", "ConfigMap", Some("default"), "notes", "cm-1");
        let mut g = Graph::new();
        g.upsert(node(&deploy, vec![]));
        g.upsert(node(&rs, vec![owned_by(&deploy, true)]));
        g.upsert(node(&side, vec![owned_by(&deploy, false)]));
        g.upsert(node(&pod("x"), vec![owned_by(&rs, true)]));

        let queued = g.upsert(deleting(node(&deploy, vec![]), FINALIZER_FOREGROUND));
        assert_eq!(queued, vec!["d-1", "cm-1", "rs-1"]);
        // The blocking replica set has pods of its own: it goes in the foreground too.
        assert_eq!(g.plan("d-1"), vec![delete(&rs, Propagation::Foreground)]);
        assert_eq!(g.plan("rs-1"), vec![delete(&rs, Propagation::Foreground)]);
        // The non-blocking dependent is deleted, in the background, without holding the owner.
        assert_eq!(g.plan("cm-1"), vec![delete(&side, Propagation::Background)]);

        let queued = g.upsert(deleting(node(&rs, vec![owned_by(&deploy, true)]), FINALIZER_FOREGROUND));
        assert_eq!(queued, vec!["rs-1", "uid-x"]);
        assert_eq!(g.plan("rs-1"), vec![delete(&pod("x"), Propagation::Background)]);
        assert_eq!(g.plan("d-1"), Vec::<Action>::new(), "its only blocker is itself deleting dependents");

        assert_eq!(g.remove("uid-x"), vec!["rs-1"]);
        assert_eq!(
            g.plan("rs-1"),
            vec![Action::RemoveFinalizer { target: rs.clone(), finalizer: FINALIZER_FOREGROUND.into() }]
        );
        assert_eq!(g.remove("rs-1"), vec!["d-1"]);
        assert_eq!(
            g.plan("d-1"),
            vec![Action::RemoveFinalizer { target: deploy.clone(), finalizer: FINALIZER_FOREGROUND.into() }]
        );
    }

    #[test]
    fn dropping_a_blocking_reference_wakes_the_waiting_owner() {
        let mut g = Graph::new();
        g.upsert(deleting(node(&rc(), vec![]), FINALIZER_FOREGROUND));
        g.upsert(node(&pod("a"), vec![owned_by(&rc(), true)]));
        assert_eq!(g.plan("rc-1"), vec![delete(&pod("a"), Propagation::Background)]);
        assert_eq!(g.upsert(node(&pod("a"), vec![owned_by(&rc(), false)])), vec!["rc-1", "uid-a"]);
        assert_eq!(
            g.plan("rc-1"),
            vec![Action::RemoveFinalizer { target: rc(), finalizer: FINALIZER_FOREGROUND.into() }]
        );
    }

    #[test]
    fn an_owner_never_seen_is_looked_up_before_anything_is_deleted() {
        let mut g = Graph::new();
        let queued = g.upsert(node(&pod("a"), vec![owned_by(&rc(), true)]));
        assert_eq!(queued, vec!["uid-a"]);
        let verify = vec![Action::VerifyOwnerAbsent { owner: rc() }];
        assert_eq!(g.plan("uid-a"), verify);
        assert_eq!(g.plan("rc-1"), verify, "the virtual owner plans the same lookup");
        // Found with the same uid: it is observed now, and the pod is kept.
        assert_eq!(g.upsert(node(&rc(), vec![])), vec!["uid-a"]);
        assert!(g.plan("uid-a").is_empty());

        let mut g = Graph::new();
        g.upsert(node(&pod("a"), vec![owned_by(&rc(), true)]));
        assert_eq!(g.owner_absent(&rc()), vec!["uid-a"]);
        assert_eq!(g.plan("uid-a"), vec![delete(&pod("a"), Propagation::Background)]);
        assert!(g.plan("rc-1").is_empty(), "nothing left to look up");
    }

    #[test]
    fn an_owner_of_the_same_name_with_another_uid_counts_as_absent() {
        let mut g = Graph::new();
        // The RC was deleted and re-created while the collector was away: same name, new uid.
        let new_rc = ident("v1", "ReplicationController", Some("default"), "kubia", "rc-2");
        g.upsert(node(&new_rc, vec![]));
        g.upsert(node(&pod("a"), vec![owned_by(&rc(), true)]));
        assert_eq!(g.plan("uid-a"), vec![Action::VerifyOwnerAbsent { owner: rc() }]);
        // The live GET finds kubia with uid rc-2.
        g.owner_absent(&rc());
        assert_eq!(g.plan("uid-a"), vec![delete(&pod("a"), Propagation::Background)]);
    }

    #[test]
    fn a_reference_whose_coordinates_disagree_with_the_observed_owner_is_verified() {
        let mut g = Graph::new();
        g.upsert(node(&rc(), vec![]));
        let mut wrong = owned_by(&rc(), true);
        wrong.name = "other".into();
        g.upsert(node(&pod("a"), vec![wrong]));
        let owner = ident("v1", "ReplicationController", Some("default"), "other", "rc-1");
        assert_eq!(g.plan("uid-a"), vec![Action::VerifyOwnerAbsent { owner: owner.clone() }]);
        g.owner_absent(&owner);
        assert_eq!(g.plan("uid-a"), vec![delete(&pod("a"), Propagation::Background)]);
        // An owner in another namespace is not this pod's owner either.
        let mut g = Graph::new();
        g.upsert(node(&ident("v1", "ReplicationController", Some("other"), "kubia", "rc-1"), vec![]));
        g.upsert(node(&pod("a"), vec![owned_by(&rc(), true)]));
        assert_eq!(g.plan("uid-a"), vec![Action::VerifyOwnerAbsent { owner: rc() }]);
        // A cluster-scoped owner is anyone's.
        let mut g = Graph::new();
        let node_owner = ident("v1", "Node", None, "n1", "node-1");
        g.upsert(node(&node_owner, vec![]));
        g.upsert(node(&pod("a"), vec![owned_by(&node_owner, false)]));
        assert!(g.plan("uid-a").is_empty());
        assert_eq!(g.remove("node-1"), vec!["uid-a"]);
        assert_eq!(g.plan("uid-a"), vec![delete(&pod("a"), Propagation::Background)]);
    }

    #[test]
    fn mixed_owners_keep_the_dependent_and_lose_the_dead_references() {
        let live = ident("v1", "ConfigMap", Some("default"), "live", "live-1");
        let gone = ident("v1", "ConfigMap", Some("default"), "gone", "gone-1");
        let waiting = ident("v1", "ConfigMap", Some("default"), "waiting", "wait-1");
        let unseen = ident("v1", "ConfigMap", Some("default"), "unseen", "unseen-1");
        let mut g = Graph::new();
        g.upsert(node(&live, vec![]));
        g.upsert(node(&gone, vec![]));
        g.upsert(deleting(node(&waiting, vec![]), FINALIZER_FOREGROUND));
        let refs =
            vec![owned_by(&live, false), owned_by(&gone, false), owned_by(&waiting, true), owned_by(&unseen, false)];
        g.upsert(node(&pod("a"), refs));
        g.remove("gone-1");
        assert_eq!(
            g.plan("uid-a"),
            vec![
                Action::RemoveOwnerRefs { target: pod("a"), owner_uids: vec!["gone-1".into(), "wait-1".into()] },
                Action::VerifyOwnerAbsent { owner: unseen.clone() },
            ]
        );
        // Without the live owner the dependent goes — but only once every owner is accounted for.
        g.remove("live-1");
        assert_eq!(g.plan("uid-a"), vec![Action::VerifyOwnerAbsent { owner: unseen.clone() }]);
        g.owner_absent(&unseen);
        assert_eq!(g.plan("uid-a"), vec![delete(&pod("a"), Propagation::Background)]);
    }

    #[test]
    fn a_gc_finalizer_on_the_dependent_sets_the_policy_it_is_deleted_with() {
        let mut g = Graph::new();
        let mut a = node(&pod("a"), vec![owned_by(&rc(), true)]);
        a.finalizers = vec![FINALIZER_ORPHAN.into()];
        g.upsert(a);
        g.owner_absent(&rc());
        assert_eq!(g.plan("uid-a"), vec![delete(&pod("a"), Propagation::Orphan)]);
    }

    #[test]
    fn a_possible_foreground_cycle_is_unblocked_first() {
        let rs = ident("apps/v1", "ReplicaSet", Some("default"), "web", "rs-1");
        let mut g = Graph::new();
        g.upsert(deleting(node(&rc(), vec![]), FINALIZER_FOREGROUND));
        g.upsert(node(&rs, vec![owned_by(&rc(), true)]));
        g.upsert(deleting(node(&pod("a"), vec![owned_by(&rs, true)]), FINALIZER_FOREGROUND));
        assert_eq!(
            g.plan("rs-1"),
            vec![Action::UnblockOwnerRefs { target: rs.clone() }, delete(&rs, Propagation::Foreground)]
        );
    }

    #[test]
    fn nodes_come_from_object_metadata() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
        let meta = ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("u".into()),
            finalizers: Some(vec![FINALIZER_FOREGROUND.into()]),
            deletion_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "rs".into(),
                uid: "rs-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        };
        let n = Node::from_meta("v1", "Pod", &meta).unwrap();
        assert_eq!(n.ident, ident("v1", "Pod", Some("default"), "p", "u"));
        assert!(n.deleting_dependents() && !n.orphaning());
        assert_eq!(n.owners[0].uid, "rs-1");
        assert!(n.owners[0].controller && n.owners[0].block_owner_deletion);
        assert_eq!(n.ident.group(), "");
        assert_eq!(ident("apps/v1", "ReplicaSet", None, "rs", "x").group(), "apps");
        assert!(Node::from_meta("v1", "Pod", &ObjectMeta::default()).is_none());
    }
}
