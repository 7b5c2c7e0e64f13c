//! Workload controllers' kinds: ReplicationController, ReplicaSet, Deployment, DaemonSet, Job and
//! CronJob — upstream defaulting (pod-template defaults included), validation (selector versus
//! template labels, restart policies, strategies, cron schedules), tables and field labels.

use std::collections::BTreeMap;

use ferry_api::k8s::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet,
    RollingUpdateDaemonSet, RollingUpdateDeployment,
};
use ferry_api::k8s::api::batch::v1::{CronJob, Job, JobSpec};
use ferry_api::k8s::api::core::v1::{PodTemplateSpec, ReplicationController};
use ferry_api::k8s::apimachinery::pkg::apis::meta::v1::LabelSelector;
use ferry_api::k8s::apimachinery::pkg::util::intstr::IntOrString;
use ferry_apimachinery::field::{go_quote, BadValue, FieldError, FieldErrors, Path};
use jiff::Timestamp;
use serde_json::Value;

use crate::common::{
    age_cell, cell, column, format_labels, human_duration, timestamp_since, validate_labels, wipe_status, KindImpl,
    NameRule, AGE_COLUMN, NAME_COLUMN,
};
use crate::pod::{
    container_cells, default_pod_spec, format_label_selector, go_label_selector, go_string_map, nonnegative,
    selector_is_empty, selector_matches, selector_string, strip_type_meta, validate_label_selector,
    validate_pod_template, QuantityChecked,
};
use crate::strategy::Strategy;
use crate::table::{Column, TableRow};

/// The strategy for a workload kind.
pub(crate) fn strategy_for(kind: &str) -> Option<&'static dyn Strategy> {
    match kind {
        "ReplicationController" => Some(&RC),
        "ReplicaSet" => Some(&RS),
        "Deployment" => Some(&DEPLOYMENT),
        "DaemonSet" => Some(&DAEMON_SET),
        "Job" => Some(&JOB),
        "CronJob" => Some(&CRON_JOB),
        "ControllerRevision" => Some(&CONTROLLER_REVISION),
        _ => None,
    }
}

static RC: QuantityChecked<RcKind> = QuantityChecked::new();
static CONTROLLER_REVISION: crate::common::Typed<ControllerRevisionKind> = crate::common::Typed::new();
static RS: QuantityChecked<RsKind> = QuantityChecked::new();
static DEPLOYMENT: QuantityChecked<DeploymentKind> = QuantityChecked::new();
static DAEMON_SET: QuantityChecked<DaemonSetKind> = QuantityChecked::new();
static JOB: QuantityChecked<JobKind> = QuantityChecked::new();
static CRON_JOB: QuantityChecked<CronJobKind> = QuantityChecked::new();

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

fn default_template(t: &mut PodTemplateSpec) {
    default_pod_spec(t.spec.get_or_insert_with(Default::default));
}

fn template_labels(t: &PodTemplateSpec) -> Option<&BTreeMap<String, String>> {
    t.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

fn mismatch(path: &Path, labels: Option<&BTreeMap<String, String>>, msg: &str) -> FieldError {
    FieldError::invalid(
        path.child("template").child("metadata").child("labels"),
        BadValue::Raw(go_string_map(labels)),
        msg,
    )
}

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// `ValidatePodTemplateSpecForReplicaSet` (Deployment, ReplicaSet): selector match, template,
/// restartPolicy Always, no activeDeadlineSeconds. `selector` is `None` when it is missing.
fn validate_replica_template(
    template: &PodTemplateSpec,
    selector: Option<&LabelSelector>,
    path: &Path,
    kind: &str,
) -> FieldErrors {
    let mut errs = Vec::new();
    let labels = template_labels(template);
    // A missing selector matches nothing; an empty one matches everything.
    if selector.is_none_or(|s| !selector_matches(s, labels)) {
        errs.push(mismatch(path, labels, SELECTOR_MISMATCH));
    }
    let tpath = path.child("template");
    errs.extend(validate_pod_template(template, &tpath));
    errs.extend(always_restart(template, &tpath, kind));
    errs
}

fn always_restart(template: &PodTemplateSpec, tpath: &Path, kind: &str) -> FieldErrors {
    let mut errs = Vec::new();
    let spec = template.spec.clone().unwrap_or_default();
    let rp = spec.restart_policy.unwrap_or_default();
    if rp != "Always" {
        errs.push(FieldError::not_supported(tpath.child("spec").child("restartPolicy"), rp, &["Always"]));
    }
    if let Some(ads) = spec.active_deadline_seconds {
        let msg = match kind {
            "DaemonSet" => "activeDeadlineSeconds must be nil for daemonset".to_string(),
            other => format!("activeDeadlineSeconds in {other} is not Supported"),
        };
        errs.push(FieldError::invalid(tpath.child("spec").child("activeDeadlineSeconds"), ads, msg));
    }
    errs
}

/// The selector of an apps/v1 object (`None` when it was left out: decoding gives an empty one).
fn given_selector(sel: &LabelSelector) -> Option<&LabelSelector> {
    (!selector_is_empty(sel)).then_some(sel)
}

fn validate_apps_selector(sel: &LabelSelector, path: &Path) -> FieldErrors {
    match given_selector(sel) {
        None => vec![FieldError::required(path.child("selector"), "")],
        Some(s) => validate_label_selector(s, &path.child("selector")),
    }
}

fn immutable_selector(new: &LabelSelector, old: &LabelSelector) -> FieldErrors {
    if new == old {
        return Vec::new();
    }
    vec![FieldError::invalid("spec.selector", BadValue::Raw(go_label_selector(Some(new))), "field is immutable")]
}

/// Go's `%#v` of an `intstr.IntOrString`.
fn go_int_or_string(v: Option<&IntOrString>) -> String {
    match v {
        None | Some(IntOrString::Int(0)) => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_string(),
        Some(IntOrString::Int(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        Some(IntOrString::String(s)) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", go_quote(s)),
    }
}

/// `ValidatePositiveIntOrPercent` plus the value (percent or int) for later checks.
fn validate_int_or_percent(v: Option<&IntOrString>, path: &Path) -> (FieldErrors, i64, bool) {
    match v {
        None => (Vec::new(), 0, false),
        Some(IntOrString::Int(n)) => (nonnegative(Some(i64::from(*n)), path), i64::from(*n), false),
        Some(IntOrString::String(s)) => {
            let digits = s.strip_suffix('%').filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            match digits.and_then(|d| d.parse::<i64>().ok()) {
                Some(p) => (Vec::new(), p, true),
                None => (
                    vec![FieldError::invalid(
                        path,
                        BadValue::Raw(go_int_or_string(v)),
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    )],
                    0,
                    true,
                ),
            }
        }
    }
}

fn validate_max_unavailable_surge(
    unavailable: Option<&IntOrString>,
    surge: Option<&IntOrString>,
    path: &Path,
) -> FieldErrors {
    let (mut errs, u, u_pct) = validate_int_or_percent(unavailable, &path.child("maxUnavailable"));
    let (surge_errs, s, _) = validate_int_or_percent(surge, &path.child("maxSurge"));
    errs.extend(surge_errs);
    if u == 0 && s == 0 {
        errs.push(FieldError::invalid(
            path.child("maxUnavailable"),
            BadValue::Raw(go_int_or_string(unavailable)),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if u_pct && u > 100 {
        errs.push(FieldError::invalid(
            path.child("maxUnavailable"),
            BadValue::Raw(go_int_or_string(unavailable)),
            "must not be greater than 100%",
        ));
    }
    errs
}

fn replicas_cells(desired: Option<i32>, current: i32, ready: Option<i32>) -> [Value; 3] {
    [
        Value::from(i64::from(desired.unwrap_or(0))),
        Value::from(i64::from(current)),
        Value::from(i64::from(ready.unwrap_or(0))),
    ]
}

fn name_of(meta: &ferry_api::k8s::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Value {
    cell(meta.name.clone().unwrap_or_default())
}

const CONTAINERS_COLUMN: Column = Column {
    name: "Containers",
    type_: "string",
    format: "",
    description: "Names of each container in the template.",
    priority: 1,
};
const IMAGES_COLUMN: Column = Column {
    name: "Images",
    type_: "string",
    format: "",
    description: "Images referenced by each container in the template.",
    priority: 1,
};
const SELECTOR_COLUMN: Column = column("Selector", "string", 1);

const REPLICAS_COLUMNS: &[Column] = &[
    NAME_COLUMN,
    column("Desired", "integer", 0),
    column("Current", "integer", 0),
    column("Ready", "integer", 0),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    SELECTOR_COLUMN,
];

// ---------------------------------------------------------------------------------------------
// ReplicationController
// ---------------------------------------------------------------------------------------------

struct RcKind;

impl KindImpl for RcKind {
    type Obj = ReplicationController;
    const NAMESPACED: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    const STATUS_SUBRESOURCE: bool = true;
    const GENERATION: bool = true;
    const COLUMNS: &'static [Column] = REPLICAS_COLUMNS;

    fn default(obj: &mut ReplicationController) {
        let spec = obj.spec.get_or_insert_with(Default::default);
        if let Some(t) = spec.template.as_mut() {
            if let Some(labels) = t.metadata.as_ref().and_then(|m| m.labels.clone()) {
                if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                    spec.selector = Some(labels.clone());
                }
                if obj.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                    obj.metadata.labels = Some(labels);
                }
            }
            default_template(t);
        }
        spec.replicas.get_or_insert(1);
    }
    fn validate(obj: &ReplicationController) -> FieldErrors {
        let path = Path::root("spec");
        let spec = obj.spec.clone().unwrap_or_default();
        let mut errs = nonnegative(spec.replicas.map(i64::from), &path.child("replicas"));
        errs.extend(nonnegative(spec.min_ready_seconds.map(i64::from), &path.child("minReadySeconds")));
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() {
            errs.push(FieldError::required(path.child("selector"), ""));
        }
        errs.extend(validate_labels(Some(&selector), &path.child("selector")));
        match &spec.template {
            None => errs.push(FieldError::required(path.child("template"), "")),
            Some(t) => {
                let labels = template_labels(t);
                let empty = BTreeMap::new();
                if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.unwrap_or(&empty).get(k) == Some(v)) {
                    errs.push(mismatch(&path, labels, "selector does not match template labels"));
                }
                let tpath = path.child("template");
                errs.extend(validate_pod_template(t, &tpath));
                errs.extend(always_restart(t, &tpath, "ReplicationController"));
            }
        }
        errs
    }
    fn row(obj: &ReplicationController, now: Timestamp) -> TableRow {
        let spec = obj.spec.clone().unwrap_or_default();
        let status = obj.status.clone().unwrap_or_default();
        let [d, c, r] = replicas_cells(spec.replicas, status.replicas, status.ready_replicas);
        let (names, images) = container_cells(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
        vec![
            name_of(&obj.metadata),
            d,
            c,
            r,
            age_cell(obj, now),
            names,
            images,
            cell(format_labels(spec.selector.as_ref())),
        ]
    }
    fn field_label(obj: &ReplicationController, label: &str) -> Option<String> {
        (label == "status.replicas").then(|| obj.status.as_ref().map(|s| s.replicas).unwrap_or(0).to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// ReplicaSet
// ---------------------------------------------------------------------------------------------

struct RsKind;

impl KindImpl for RsKind {
    type Obj = ReplicaSet;
    const NAMESPACED: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    const STATUS_SUBRESOURCE: bool = true;
    const GENERATION: bool = true;
    const COLUMNS: &'static [Column] = REPLICAS_COLUMNS;

    fn default(obj: &mut ReplicaSet) {
        let spec = obj.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        default_template(spec.template.get_or_insert_with(Default::default));
    }
    fn validate(obj: &ReplicaSet) -> FieldErrors {
        let path = Path::root("spec");
        let spec = obj.spec.clone().unwrap_or_default();
        let mut errs = nonnegative(spec.replicas.map(i64::from), &path.child("replicas"));
        errs.extend(nonnegative(spec.min_ready_seconds.map(i64::from), &path.child("minReadySeconds")));
        errs.extend(validate_apps_selector(&spec.selector, &path));
        let template = spec.template.clone().unwrap_or_default();
        errs.extend(validate_replica_template(&template, given_selector(&spec.selector), &path, "ReplicaSet"));
        errs
    }
    fn validate_update(new: &ReplicaSet, old: &ReplicaSet) -> FieldErrors {
        let sel = |o: &ReplicaSet| o.spec.clone().unwrap_or_default().selector;
        immutable_selector(&sel(new), &sel(old))
    }
    fn row(obj: &ReplicaSet, now: Timestamp) -> TableRow {
        let spec = obj.spec.clone().unwrap_or_default();
        let status = obj.status.clone().unwrap_or_default();
        let [d, c, r] = replicas_cells(spec.replicas, status.replicas, status.ready_replicas);
        let (names, images) = container_cells(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
        let selector = cell(format_label_selector(Some(&spec.selector)));
        vec![name_of(&obj.metadata), d, c, r, age_cell(obj, now), names, images, selector]
    }
    fn field_label(obj: &ReplicaSet, label: &str) -> Option<String> {
        (label == "status.replicas").then(|| obj.status.as_ref().map(|s| s.replicas).unwrap_or(0).to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment
// ---------------------------------------------------------------------------------------------

struct DeploymentKind;

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME_COLUMN,
    Column {
        name: "Ready",
        type_: "string",
        format: "",
        description: "Number of the pod with ready state",
        priority: 0,
    },
    column("Up-to-date", "string", 0),
    column("Available", "string", 0),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    SELECTOR_COLUMN,
];

impl KindImpl for DeploymentKind {
    type Obj = Deployment;
    const NAMESPACED: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    const STATUS_SUBRESOURCE: bool = true;
    const GENERATION: bool = true;
    const COLUMNS: &'static [Column] = DEPLOYMENT_COLUMNS;

    fn default(obj: &mut Deployment) {
        let spec = obj.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        let strategy = spec.strategy.get_or_insert_with(DeploymentStrategy::default);
        if strategy.type_.as_deref().unwrap_or("").is_empty() {
            strategy.type_ = Some("RollingUpdate".into());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let ru = strategy.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
            ru.max_unavailable.get_or_insert_with(|| IntOrString::String("25%".into()));
            ru.max_surge.get_or_insert_with(|| IntOrString::String("25%".into()));
        }
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        default_template(&mut spec.template);
    }
    fn validate(obj: &Deployment) -> FieldErrors {
        let path = Path::root("spec");
        let spec = obj.spec.clone().unwrap_or_default();
        let mut errs = nonnegative(spec.replicas.map(i64::from), &path.child("replicas"));
        errs.extend(validate_apps_selector(&spec.selector, &path));
        errs.extend(validate_replica_template(&spec.template, given_selector(&spec.selector), &path, "ReplicaSet"));
        let strategy = spec.strategy.clone().unwrap_or_default();
        let spath = path.child("strategy");
        match strategy.type_.as_deref().unwrap_or("") {
            "Recreate" => {
                if strategy.rolling_update.is_some() {
                    errs.push(FieldError::forbidden(
                        spath.child("rollingUpdate"),
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => match &strategy.rolling_update {
                None => errs.push(FieldError::required(
                    spath.child("rollingUpdate"),
                    "this should be defaulted and never be nil",
                )),
                Some(ru) => errs.extend(validate_max_unavailable_surge(
                    ru.max_unavailable.as_ref(),
                    ru.max_surge.as_ref(),
                    &spath.child("rollingUpdate"),
                )),
            },
            other => errs.push(FieldError::not_supported(spath.child("type"), other, &["Recreate", "RollingUpdate"])),
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        errs.extend(nonnegative(Some(i64::from(min_ready)), &path.child("minReadySeconds")));
        errs.extend(nonnegative(spec.revision_history_limit.map(i64::from), &path.child("revisionHistoryLimit")));
        if let Some(pds) = spec.progress_deadline_seconds {
            errs.extend(nonnegative(Some(i64::from(pds)), &path.child("progressDeadlineSeconds")));
            if pds <= min_ready {
                errs.push(FieldError::invalid(
                    path.child("progressDeadlineSeconds"),
                    pds,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errs
    }
    fn validate_update(new: &Deployment, old: &Deployment) -> FieldErrors {
        let sel = |o: &Deployment| o.spec.clone().unwrap_or_default().selector;
        immutable_selector(&sel(new), &sel(old))
    }
    fn row(obj: &Deployment, now: Timestamp) -> TableRow {
        let spec = obj.spec.clone().unwrap_or_default();
        let status = obj.status.clone().unwrap_or_default();
        let (names, images) = container_cells(spec.template.spec.as_ref());
        vec![
            name_of(&obj.metadata),
            cell(format!("{}/{}", status.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(0))),
            Value::from(i64::from(status.updated_replicas.unwrap_or(0))),
            Value::from(i64::from(status.available_replicas.unwrap_or(0))),
            age_cell(obj, now),
            names,
            images,
            cell(selector_string(Some(&spec.selector))),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// DaemonSet
// ---------------------------------------------------------------------------------------------

struct DaemonSetKind;

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME_COLUMN,
    column("Desired", "integer", 0),
    column("Current", "integer", 0),
    column("Ready", "integer", 0),
    column("Up-to-date", "integer", 0),
    column("Available", "integer", 0),
    column("Node Selector", "string", 0),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    SELECTOR_COLUMN,
];

impl KindImpl for DaemonSetKind {
    type Obj = DaemonSet;
    const NAMESPACED: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    const STATUS_SUBRESOURCE: bool = true;
    const GENERATION: bool = true;
    const COLUMNS: &'static [Column] = DAEMON_SET_COLUMNS;

    fn default(obj: &mut DaemonSet) {
        let spec = obj.spec.get_or_insert_with(Default::default);
        let strategy = spec.update_strategy.get_or_insert_with(DaemonSetUpdateStrategy::default);
        if strategy.type_.as_deref().unwrap_or("").is_empty() {
            strategy.type_ = Some("RollingUpdate".into());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let ru = strategy.rolling_update.get_or_insert_with(RollingUpdateDaemonSet::default);
            ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            ru.max_surge.get_or_insert(IntOrString::Int(0));
        }
        spec.revision_history_limit.get_or_insert(10);
        default_template(&mut spec.template);
    }
    fn validate(obj: &DaemonSet) -> FieldErrors {
        let path = Path::root("spec");
        let spec = obj.spec.clone().unwrap_or_default();
        let mut errs = validate_label_selector(&spec.selector, &path.child("selector"));
        let labels = template_labels(&spec.template);
        if given_selector(&spec.selector).is_none_or(|s| !selector_matches(s, labels)) {
            errs.push(mismatch(&path, labels, SELECTOR_MISMATCH));
        }
        let tpath = path.child("template");
        errs.extend(validate_pod_template(&spec.template, &tpath));
        errs.extend(always_restart(&spec.template, &tpath, "DaemonSet"));
        errs.extend(nonnegative(spec.min_ready_seconds.map(i64::from), &path.child("minReadySeconds")));
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let spath = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or("") {
            "OnDelete" => {}
            "RollingUpdate" => match &strategy.rolling_update {
                None => errs.push(FieldError::required(spath.child("rollingUpdate"), "")),
                Some(ru) => errs.extend(validate_max_unavailable_surge(
                    ru.max_unavailable.as_ref(),
                    ru.max_surge.as_ref(),
                    &spath.child("rollingUpdate"),
                )),
            },
            "" => errs.push(FieldError::required(spath.child("type"), "")),
            other => errs.push(FieldError::not_supported(spath.child("type"), other, &["OnDelete", "RollingUpdate"])),
        }
        errs.extend(nonnegative(spec.revision_history_limit.map(i64::from), &path.child("revisionHistoryLimit")));
        errs
    }
    fn validate_update(new: &DaemonSet, old: &DaemonSet) -> FieldErrors {
        let sel = |o: &DaemonSet| o.spec.clone().unwrap_or_default().selector;
        immutable_selector(&sel(new), &sel(old))
    }
    fn row(obj: &DaemonSet, now: Timestamp) -> TableRow {
        let spec = obj.spec.clone().unwrap_or_default();
        let s = obj.status.clone().unwrap_or_default();
        let int = |v: i32| Value::from(i64::from(v));
        let node_selector = spec.template.spec.as_ref().and_then(|p| p.node_selector.as_ref());
        let (names, images) = container_cells(spec.template.spec.as_ref());
        vec![
            name_of(&obj.metadata),
            int(s.desired_number_scheduled),
            int(s.current_number_scheduled),
            int(s.number_ready),
            int(s.updated_number_scheduled.unwrap_or(0)),
            int(s.number_available.unwrap_or(0)),
            cell(format_labels(node_selector)),
            age_cell(obj, now),
            names,
            images,
            cell(format_label_selector(Some(&spec.selector))),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Job
// ---------------------------------------------------------------------------------------------

struct JobKind;

const JOB_COLUMNS: &[Column] = &[
    NAME_COLUMN,
    Column { name: "Status", type_: "string", format: "", description: "Status of the job.", priority: 0 },
    column("Completions", "string", 0),
    Column {
        name: "Duration",
        type_: "string",
        format: "",
        description: "Time required to complete the job.",
        priority: 0,
    },
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    SELECTOR_COLUMN,
];

/// Label keys the job controller's generated selector uses.
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME: &str = "job-name";

/// `SetDefaults_Job` (without the pod template, which the caller defaults).
fn default_job_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() { i32::MAX } else { 6 });
    }
    spec.completion_mode.get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    if spec.pod_replacement_policy.is_none() {
        let policy = if spec.pod_failure_policy.is_some() { "Failed" } else { "TerminatingOrFailed" };
        spec.pod_replacement_policy = Some(policy.into());
    }
}

/// `validateJobSpec`: counts, completion mode, template and its restart policy.
fn validate_job_spec(spec: &JobSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (name, v) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished.map(i64::from)),
    ] {
        errs.extend(nonnegative(v, &path.child(name)));
    }
    if let Some(mode) = spec.completion_mode.as_deref() {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(path.child("completionMode"), mode, &["NonIndexed", "Indexed"]));
        }
        if mode == "Indexed" && spec.completions.is_none() {
            errs.push(FieldError::required(path.child("completions"), "when completion mode is Indexed"));
        }
    }
    let tpath = path.child("template");
    errs.extend(validate_pod_template(&spec.template, &tpath));
    let rp = spec.template.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_default();
    if rp == "Always" || rp.is_empty() {
        errs.push(FieldError::not_supported(tpath.child("spec").child("restartPolicy"), rp, &["OnFailure", "Never"]));
    }
    errs
}

fn job_uid_and_name(obj: &Value) -> Option<(String, String)> {
    let uid = obj.pointer("/metadata/uid")?.as_str()?.to_string();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    Some((uid, name))
}

/// Upstream `generateSelector`: the selector and pod-template labels a job gets on create
/// unless `manualSelector` is true. Also mirrors the labels into `metadata.labels` when those
/// are empty (as re-decoding with defaults does upstream).
fn generate_job_selector(job: &mut Job, uid: &str, name: &str) {
    let Some(spec) = job.spec.as_mut() else { return };
    if spec.manual_selector == Some(true) {
        return;
    }
    let meta = spec.template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for key in [LEGACY_JOB_NAME, JOB_NAME] {
        labels.entry(key.to_string()).or_insert_with(|| name.to_string());
    }
    for key in [LEGACY_CONTROLLER_UID, CONTROLLER_UID] {
        labels.entry(key.to_string()).or_insert_with(|| uid.to_string());
    }
    let labels = labels.clone();
    let selector = spec.selector.get_or_insert_with(Default::default);
    selector.match_labels.get_or_insert_with(BTreeMap::new).entry(CONTROLLER_UID.into()).or_insert_with(|| uid.into());
    if job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        job.metadata.labels = Some(labels);
    }
}

/// Upstream `validateGeneratedSelector`: the generated labels are on the template and the
/// selector matches them.
fn validate_generated_selector(job: &Job, sel: &LabelSelector) -> FieldErrors {
    let mut errs = Vec::new();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    let labels = job.spec.as_ref().and_then(|s| template_labels(&s.template));
    let meta_path = Path::root("spec").child("template").child("metadata");
    for (key, expected) in
        [(CONTROLLER_UID, &uid), (LEGACY_CONTROLLER_UID, &uid), (JOB_NAME, &name), (LEGACY_JOB_NAME, &name)]
    {
        let p = meta_path.child("labels").key(key);
        let detail = format!("must be '{expected}'");
        match labels.and_then(|l| l.get(key)) {
            None => errs.push(FieldError::required(p, detail)),
            Some(v) if v != expected => errs.push(FieldError::invalid(p, BadValue::Raw(go_string_map(labels)), detail)),
            Some(_) => {}
        }
    }
    let expected = BTreeMap::from([
        (CONTROLLER_UID.to_string(), uid.clone()),
        (JOB_NAME.to_string(), name.clone()),
        (LEGACY_CONTROLLER_UID.to_string(), uid),
        (LEGACY_JOB_NAME.to_string(), name),
    ]);
    if !selector_matches(sel, Some(&expected)) {
        errs.push(FieldError::invalid(
            "spec.selector",
            BadValue::Raw(go_label_selector(Some(sel))),
            "`selector` not auto-generated",
        ));
    }
    errs
}

fn job_condition(job: &Job, type_: &str) -> bool {
    let conds = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds.into_iter().flatten().find(|c| c.type_ == type_).is_some_and(|c| c.status == "True")
}

impl KindImpl for JobKind {
    type Obj = Job;
    const NAMESPACED: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    const STATUS_SUBRESOURCE: bool = true;
    const GENERATION: bool = true;
    const COLUMNS: &'static [Column] = JOB_COLUMNS;

    fn default(obj: &mut Job) {
        let spec = obj.spec.get_or_insert_with(Default::default);
        default_job_spec(spec);
        if let Some(labels) = template_labels(&spec.template).cloned() {
            if obj.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                obj.metadata.labels = Some(labels);
            }
        }
        default_template(&mut spec.template);
    }
    fn validate(obj: &Job) -> FieldErrors {
        let path = Path::root("spec");
        let spec = obj.spec.clone().unwrap_or_default();
        let mut errs = Vec::new();
        if spec.manual_selector != Some(true) {
            if let Some(sel) = &spec.selector {
                errs.extend(validate_generated_selector(obj, sel));
            }
        }
        errs.extend(validate_job_spec(&spec, &path));
        match &spec.selector {
            None => errs.push(FieldError::required(path.child("selector"), "")),
            Some(sel) => errs.extend(validate_label_selector(sel, &path.child("selector"))),
        }
        let labels = template_labels(&spec.template);
        if spec.selector.as_ref().is_none_or(|s| !selector_matches(s, labels)) {
            errs.push(mismatch(&path, labels, SELECTOR_MISMATCH));
        }
        errs
    }
    fn validate_update(new: &Job, old: &Job) -> FieldErrors {
        let (n, o) = (new.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
        let mut errs = Vec::new();
        if n.selector != o.selector {
            errs.push(FieldError::invalid(
                "spec.selector",
                BadValue::Raw(go_label_selector(n.selector.as_ref())),
                "field is immutable",
            ));
        }
        if n.completion_mode != o.completion_mode {
            errs.push(FieldError::invalid(
                "spec.completionMode",
                n.completion_mode.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
        if n.completion_mode.as_deref() != Some("Indexed") && n.completions != o.completions {
            let shown = n.completions.map(|c| c.to_string()).unwrap_or_else(|| "null".into());
            errs.push(FieldError::invalid("spec.completions", BadValue::Raw(shown), "field is immutable"));
        }
        // The template may change only while the job is suspended (upstream relaxes a few
        // scheduling directives too).
        if n.template != o.template && o.suspend != Some(true) {
            errs.push(FieldError::invalid("spec.template", BadValue::Omitted, "field is immutable"));
        }
        errs
    }
    fn row(obj: &Job, now: Timestamp) -> TableRow {
        let spec = obj.spec.clone().unwrap_or_default();
        let status = obj.status.clone().unwrap_or_default();
        let succeeded = status.succeeded.unwrap_or(0);
        let completions = match spec.completions {
            Some(c) => format!("{succeeded}/{c}"),
            None => match spec.parallelism.unwrap_or(0) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let duration = match (&status.start_time, &status.completion_time) {
            (None, _) => String::new(),
            (Some(start), None) => human_duration(now.duration_since(start.0)),
            (Some(start), Some(end)) => human_duration(end.0.duration_since(start.0)),
        };
        let state = if job_condition(obj, "Complete") {
            "Complete"
        } else if job_condition(obj, "Failed") {
            "Failed"
        } else if obj.metadata.deletion_timestamp.is_some() {
            "Terminating"
        } else if job_condition(obj, "Suspended") {
            "Suspended"
        } else if job_condition(obj, "FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let (names, images) = container_cells(spec.template.spec.as_ref());
        vec![
            name_of(&obj.metadata),
            cell(state),
            cell(completions),
            cell(duration),
            age_cell(obj, now),
            names,
            images,
            cell(format_label_selector(spec.selector.as_ref())),
        ]
    }
    fn field_label(obj: &Job, label: &str) -> Option<String> {
        (label == "status.successful").then(|| obj.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0).to_string())
    }
    fn prepare_for_create(obj: &mut Value) {
        wipe_status(obj);
        let Some((uid, name)) = job_uid_and_name(obj) else { return };
        let Ok(mut job) = serde_json::from_value::<Job>(strip_type_meta(obj)) else { return };
        generate_job_selector(&mut job, &uid, &name);
        let (Ok(spec), Ok(labels)) = (serde_json::to_value(&job.spec), serde_json::to_value(&job.metadata.labels))
        else {
            return;
        };
        if let Some(map) = obj.as_object_mut() {
            map.insert("spec".into(), spec);
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("labels".into(), labels);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CronJob
// ---------------------------------------------------------------------------------------------

struct CronJobKind;

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME_COLUMN,
    column("Schedule", "string", 0),
    column("Timezone", "string", 0),
    column("Suspend", "boolean", 0),
    column("Active", "integer", 0),
    column("Last Schedule", "string", 0),
    AGE_COLUMN,
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    SELECTOR_COLUMN,
];

fn validate_time_zone(tz: Option<&str>, path: &Path) -> FieldErrors {
    let Some(tz) = tz else { return Vec::new() };
    if tz.is_empty() {
        return vec![FieldError::invalid(path, tz, "timeZone must be nil or non-empty string")];
    }
    let valid_chars = |p: &str| p.chars().all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c));
    if tz.split('/').any(|p| p == "." || p == ".." || p.starts_with('-') || !valid_chars(p)) {
        return vec![FieldError::invalid(path, tz, format!("unknown time zone {tz}"))];
    }
    if tz.eq_ignore_ascii_case("local") {
        return vec![FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        )];
    }
    if tz != "UTC" && jiff::tz::TimeZone::get(tz).is_err() {
        return vec![FieldError::invalid(path, tz, format!("unknown time zone {tz}"))];
    }
    Vec::new()
}

impl KindImpl for CronJobKind {
    type Obj = CronJob;
    const NAMESPACED: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    const STATUS_SUBRESOURCE: bool = true;
    const GENERATION: bool = true;
    const COLUMNS: &'static [Column] = CRON_JOB_COLUMNS;

    fn default(obj: &mut CronJob) {
        let spec = obj.spec.get_or_insert_with(Default::default);
        if spec.concurrency_policy.as_deref().unwrap_or("").is_empty() {
            spec.concurrency_policy = Some("Allow".into());
        }
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        let job_spec = spec.job_template.spec.get_or_insert_with(Default::default);
        default_template(&mut job_spec.template);
    }
    fn validate(obj: &CronJob) -> FieldErrors {
        let path = Path::root("spec");
        let spec = obj.spec.clone().unwrap_or_default();
        let mut errs = Vec::new();
        let name = obj.metadata.name.clone().unwrap_or_default();
        if name.len() > 52 {
            errs.push(FieldError::invalid("metadata.name", name, "must be no more than 52 characters"));
        }
        if spec.schedule.is_empty() {
            errs.push(FieldError::required(path.child("schedule"), ""));
        } else {
            if let Err(e) = parse_cron(&spec.schedule) {
                errs.push(FieldError::invalid(path.child("schedule"), spec.schedule.as_str(), e));
            }
            if spec.schedule.contains("TZ") {
                errs.push(FieldError::invalid(
                    path.child("schedule"),
                    spec.schedule.as_str(),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            }
        }
        errs.extend(nonnegative(spec.starting_deadline_seconds, &path.child("startingDeadlineSeconds")));
        errs.extend(validate_time_zone(spec.time_zone.as_deref(), &path.child("timeZone")));
        match spec.concurrency_policy.as_deref().unwrap_or("") {
            "Allow" | "Forbid" | "Replace" => {}
            "" => errs.push(FieldError::required(path.child("concurrencyPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                path.child("concurrencyPolicy"),
                other,
                &["Allow", "Forbid", "Replace"],
            )),
        }
        let jpath = path.child("jobTemplate").child("spec");
        let job_spec = spec.job_template.spec.clone().unwrap_or_default();
        errs.extend(validate_job_spec(&job_spec, &jpath));
        if let Some(sel) = &job_spec.selector {
            errs.push(FieldError::invalid(
                jpath.child("selector"),
                BadValue::Raw(go_label_selector(Some(sel))),
                "`selector` will be auto-generated",
            ));
        }
        if job_spec.manual_selector == Some(true) {
            errs.push(FieldError::not_supported(
                jpath.child("manualSelector"),
                BadValue::Raw("true".into()),
                &["nil", "false"],
            ));
        }
        for (name, v) in [
            ("successfulJobsHistoryLimit", spec.successful_jobs_history_limit),
            ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
        ] {
            errs.extend(nonnegative(v.map(i64::from), &path.child(name)));
        }
        errs
    }
    fn row(obj: &CronJob, now: Timestamp) -> TableRow {
        let spec = obj.spec.clone().unwrap_or_default();
        let status = obj.status.clone().unwrap_or_default();
        let last = match &status.last_schedule_time {
            Some(t) => timestamp_since(Some(t), now),
            None => "<none>".into(),
        };
        let suspend = match spec.suspend {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let job_spec = spec.job_template.spec.clone().unwrap_or_default();
        let (names, images) = container_cells(job_spec.template.spec.as_ref());
        vec![
            name_of(&obj.metadata),
            cell(spec.schedule.clone()),
            cell(spec.time_zone.clone().unwrap_or_else(|| "<none>".into())),
            cell(suspend),
            Value::from(status.active.as_ref().map_or(0, |a| a.len()) as i64),
            cell(last),
            age_cell(obj, now),
            names,
            images,
            cell(format_label_selector(job_spec.selector.as_ref())),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Cron schedules (the standard 5-field format with descriptors, as robfig/cron parses it)
// ---------------------------------------------------------------------------------------------

/// A parsed schedule: the allowed values of each field as bit sets, plus `@every` intervals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CronSchedule {
    Fields { minute: u64, hour: u64, dom: u64, month: u64, dow: u64, dom_star: bool, dow_star: bool },
    Every(std::time::Duration),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DOW: Bounds = Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

fn parse_cron_int(s: &str, expr: &str) -> Result<u32, String> {
    let n: i64 = s
        .parse()
        .map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax", go_quote(s)))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| format!("failed to parse int from {s}: value out of range"))
}

fn parse_int_or_name(s: &str, b: &Bounds, expr: &str) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + b.min);
    }
    parse_cron_int(s, expr)
}

fn cron_range(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let (range, step) = match expr.split('/').collect::<Vec<_>>().as_slice() {
        [r] => (*r, None),
        [r, s] => (*r, Some(*s)),
        _ => return Err(format!("too many slashes: {expr}")),
    };
    let parts: Vec<&str> = range.split('-').collect();
    let star = parts[0] == "*" || parts[0] == "?";
    let (start, mut end) = if star {
        if parts.len() > 1 {
            return Err(format!("too many hyphens: {expr}"));
        }
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(parts[0], b, expr)?;
        match parts.as_slice() {
            [_] => (start, start),
            [_, e] => (start, parse_int_or_name(e, b, expr)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let s = parse_cron_int(s, expr)?;
            if s == 0 {
                return Err(format!("step of range should be a positive number: {expr}"));
            }
            if !star && parts.len() == 1 {
                end = b.max;
            }
            s
        }
    };
    if start < b.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min));
    }
    if end > b.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", b.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok((bits, star && step == 1))
}

fn cron_field(field: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for expr in field.split(',') {
        let (b2, s) = cron_range(expr, b)?;
        bits |= b2;
        star |= s;
    }
    Ok((bits, star))
}

/// Parse a CronJob schedule like robfig/cron's standard parser; errors read as upstream's.
pub(crate) fn parse_cron(spec: &str) -> Result<CronSchedule, String> {
    let mut spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec.split_once(' ').map(|(_, rest)| rest.trim()).unwrap_or("");
    }
    if let Some(desc) = spec.strip_prefix('@') {
        let fields = |m: &str, h: &str, dom: &str, mon: &str, dow: &str| parse_fields(&[m, h, dom, mon, dow]);
        return match desc {
            "yearly" | "annually" => fields("0", "0", "1", "1", "*"),
            "monthly" => fields("0", "0", "1", "*", "*"),
            "weekly" => fields("0", "0", "*", "*", "0"),
            "daily" | "midnight" => fields("0", "0", "*", "*", "*"),
            "hourly" => fields("0", "*", "*", "*", "*"),
            other => match other.strip_prefix("every ") {
                Some(d) => parse_go_duration(d.trim()).map(CronSchedule::Every).ok_or_else(|| {
                    format!("failed to parse duration {spec}: time: invalid duration {}", go_quote(d.trim()))
                }),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    parse_fields(&fields)
}

fn parse_fields(f: &[&str]) -> Result<CronSchedule, String> {
    let (minute, _) = cron_field(f[0], &MINUTES)?;
    let (hour, _) = cron_field(f[1], &HOURS)?;
    let (dom, dom_star) = cron_field(f[2], &DOM)?;
    let (month, _) = cron_field(f[3], &MONTHS)?;
    let (dow, dow_star) = cron_field(f[4], &DOW)?;
    Ok(CronSchedule::Fields { minute, hour, dom, month, dow, dom_star, dow_star })
}

/// A Go `time.ParseDuration` subset (`1h30m`, `90s`, `1.5h`).
fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

// ---------------------------------------------------------------------------------------------
// ControllerRevision (the DaemonSet controller's history; `kubectl rollout history|undo ds`)
// ---------------------------------------------------------------------------------------------

struct ControllerRevisionKind;

const CONTROLLER_REVISION_COLUMNS: &[Column] =
    &[NAME_COLUMN, column("Controller", "string", 0), column("Revision", "integer", 0), AGE_COLUMN];

impl KindImpl for ControllerRevisionKind {
    type Obj = ControllerRevision;
    const NAMESPACED: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    const COLUMNS: &'static [Column] = CONTROLLER_REVISION_COLUMNS;

    fn validate(obj: &ControllerRevision) -> FieldErrors {
        if obj.revision < 0 {
            return vec![FieldError::invalid(
                Path::root("revision"),
                obj.revision,
                "must be greater than or equal to 0",
            )];
        }
        Vec::new()
    }
    fn validate_update(new: &ControllerRevision, old: &ControllerRevision) -> FieldErrors {
        if new.data != old.data {
            return vec![FieldError::invalid(Path::root("data"), BadValue::Omitted, "field is immutable")];
        }
        Vec::new()
    }
    fn row(obj: &ControllerRevision, now: Timestamp) -> TableRow {
        // Upstream prints the controller as `<kind>.<group>/<name>` (`daemonset.apps/ssd-monitor`).
        let controller = obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| {
                let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                let kind = r.kind.to_lowercase();
                if group.is_empty() {
                    format!("{kind}/{}", r.name)
                } else {
                    format!("{kind}.{group}/{}", r.name)
                }
            })
            .unwrap_or_else(|| "<none>".into());
        vec![
            cell(obj.metadata.name.clone().unwrap_or_default()),
            cell(controller),
            Value::from(obj.revision),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strat(kind: &str) -> &'static dyn Strategy {
        strategy_for(kind).unwrap()
    }

    fn errors(kind: &str, obj: Value) -> Vec<String> {
        let s = strat(kind);
        let obj = s.normalize(obj).unwrap();
        s.validate(&obj).iter().map(|e| e.to_string()).collect()
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}})
    }

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn replication_controller_defaults_selector_and_labels() {
        let rc = json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "kubia", "namespace": "default"},
            "spec": {"template": template(json!({"app": "test"}))}});
        let out = strat("ReplicationController").normalize(rc).unwrap();
        assert_eq!(out["spec"]["selector"], json!({"app": "test"}));
        assert_eq!(out["metadata"]["labels"], json!({"app": "test"}));
        assert_eq!(out["spec"]["replicas"], 1);
        assert_eq!(out["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(strat("ReplicationController").validate(&out).is_empty());
    }

    #[test]
    fn replication_controller_selector_mismatch() {
        let rc = json!({"metadata": {"name": "kubia", "namespace": "default"},
            "spec": {"selector": {"app": "other"}, "template": template(json!({"app": "x"}))}});
        assert_eq!(
            errors("ReplicationController", rc),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: selector does not match template labels"]
        );
    }

    #[test]
    fn deployment_defaults() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}});
        let out = strat("Deployment").normalize(d).unwrap();
        assert_eq!(out["spec"]["replicas"], 1);
        assert_eq!(
            out["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(out["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(out["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(out["spec"]["template"]["spec"].get("enableServiceLinks").is_none());
        assert!(strat("Deployment").validate(&out).is_empty());
        assert!(strat("Deployment").has_generation());
    }

    #[test]
    fn deployment_validation_errors() {
        let d = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": template(json!({"app": "web"})),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}});
        let mut with_never = d.clone();
        with_never["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            errors("Deployment", with_never),
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
            ]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let s = strat("Deployment");
        let old = s
            .normalize(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}}))
            .unwrap();
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
        let errs: Vec<String> = s.validate_update(&new, &old).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
    }

    #[test]
    fn daemonset_defaults_and_table() {
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "ssd-monitor", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"selector": {"matchLabels": {"app": "ssd-monitor"}},
                "template": {"metadata": {"labels": {"app": "ssd-monitor"}},
                    "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "main", "image": "luksa/ssd-monitor"}]}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "numberMisscheduled": 0,
                "updatedNumberScheduled": 2, "numberAvailable": 1}});
        let s = strat("DaemonSet");
        let out = s.normalize(ds).unwrap();
        assert_eq!(
            out["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(out["spec"]["revisionHistoryLimit"], 10);
        assert!(s.validate(&out).is_empty());
        assert_eq!(
            s.row(&out, now()),
            vec![
                json!("ssd-monitor"),
                json!(2),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("disk=ssd"),
                json!("60m"),
                json!("main"),
                json!("luksa/ssd-monitor"),
                json!("app=ssd-monitor")
            ]
        );
    }

    #[test]
    fn replicaset_table_and_field_label() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "kubia", "namespace": "default", "creationTimestamp": "2024-01-01T00:58:00Z"},
            "spec": {"replicas": 3, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["kubia"]}]},
                "template": template(json!({"app": "kubia"}))},
            "status": {"replicas": 3, "readyReplicas": 2}});
        let s = strat("ReplicaSet");
        let out = s.normalize(rs).unwrap();
        assert!(s.validate(&out).is_empty());
        assert_eq!(
            s.row(&out, now()),
            vec![
                json!("kubia"),
                json!(3),
                json!(3),
                json!(2),
                json!("2m"),
                json!("c"),
                json!("nginx:1.27"),
                json!("app in (kubia)")
            ]
        );
        assert_eq!(s.field_label(&out, "status.replicas").as_deref(), Some("3"));
    }

    #[test]
    fn job_defaults_selector_generation_and_restart_policy() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "batch-job", "namespace": "default", "uid": "1234"},
            "spec": {"template": {"metadata": {"labels": {"app": "batch-job"}},
                "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "luksa/batch-job"}]}}}});
        let s = strat("Job");
        let mut out = s.normalize(job).unwrap();
        assert_eq!(out["spec"]["completions"], 1);
        assert_eq!(out["spec"]["parallelism"], 1);
        assert_eq!(out["spec"]["backoffLimit"], 6);
        assert_eq!(out["spec"]["completionMode"], "NonIndexed");
        assert_eq!(out["spec"]["suspend"], false);
        assert_eq!(out["metadata"]["labels"], json!({"app": "batch-job"}));
        s.prepare_for_create(&mut out);
        assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}));
        assert_eq!(out["spec"]["template"]["metadata"]["labels"]["job-name"], "batch-job");
        assert_eq!(out["spec"]["template"]["metadata"]["labels"]["controller-uid"], "1234");
        assert!(s.validate(&out).is_empty(), "{:?}", s.validate(&out));

        let mut always = out.clone();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let errs: Vec<String> = s.validate(&always).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
        assert_eq!(s.field_label(&out, "status.successful").as_deref(), Some("0"));
    }

    #[test]
    fn job_with_foreign_selector_is_rejected() {
        let job = json!({"metadata": {"name": "j", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}});
        let errs = errors("Job", job);
        assert_eq!(
            errs[0],
            "spec.template.metadata.labels[batch.kubernetes.io/controller-uid]: Required value: must be 'u1'"
        );
        assert_eq!(
            errs[4],
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated"
        );
        assert_eq!(errs.len(), 5);
    }

    #[test]
    fn job_table() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"completions": 5, "parallelism": 2, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 5, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:42Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        let row = strat("Job").row(&job, now());
        assert_eq!(
            row,
            vec![
                json!("pi"),
                json!("Complete"),
                json!("5/5"),
                json!("42s"),
                json!("60m"),
                json!("pi"),
                json!("perl"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );
    }

    #[test]
    fn cronjob_defaults_validation_and_table() {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "cron-job", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"schedule": "0,15,30,45 * * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"app": "cron-job"}},
                "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "luksa/batch-job"}]}}}}}});
        let s = strat("CronJob");
        let out = s.normalize(cj).unwrap();
        assert_eq!(out["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(out["spec"]["suspend"], false);
        assert_eq!(out["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(out["spec"]["failedJobsHistoryLimit"], 1);
        assert!(s.validate(&out).is_empty(), "{:?}", s.validate(&out));
        assert_eq!(
            s.row(&out, now()),
            vec![
                json!("cron-job"),
                json!("0,15,30,45 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>"),
                json!("60m"),
                json!("main"),
                json!("luksa/batch-job"),
                json!("<none>")
            ]
        );
        let mut bad = out.clone();
        bad["spec"]["schedule"] = json!("every minute");
        bad["spec"]["timeZone"] = json!("Mars/Olympus");
        let errs: Vec<String> = s.validate(&bad).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec![
                "spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]",
                "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus",
            ]
        );
    }

    #[test]
    fn cron_parser() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("0 3 * * 0").is_ok());
        assert!(parse_cron("0 9-17 * jan-mar mon-fri").is_ok());
        assert!(parse_cron("@hourly").is_ok());
        assert!(parse_cron("@every 1h30m").is_ok());
        assert_eq!(parse_cron("@often").unwrap_err(), "unrecognized descriptor: @often");
        assert_eq!(parse_cron("60 * * * *").unwrap_err(), "end of range (60) above maximum (59): 60");
        assert_eq!(parse_cron("5-1 * * * *").unwrap_err(), "beginning of range (5) beyond end of range (1): 5-1");
        assert_eq!(
            parse_cron("x * * * *").unwrap_err(),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        match parse_cron("0 0 1 * *").unwrap() {
            CronSchedule::Fields { minute, hour, dom, dom_star, dow_star, .. } => {
                assert_eq!((minute, hour, dom), (1, 1, 2));
                assert!(!dom_star && dow_star);
            }
            other => panic!("{other:?}"),
        }
    }
}
