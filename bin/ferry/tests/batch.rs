//! Jobs and CronJobs run for real, driven by kubectl 1.20 against a whole single-node `ferry server`: the seed's
//! `batch-job` (completions 5, parallelism 2) ends with exactly five succeeded pods and never more than two running,
//! seen from a watch; a failing job stops at its backoffLimit; `activeDeadlineSeconds` fails a job that runs too
//! long; a parallelism change starts more pods (`kubectl scale job` fails: there is no jobs/scale); an Indexed job's pods see `JOB_COMPLETION_INDEX` and their
//! `<job>-<index>` hostname and the finished job goes after `ttlSecondsAfterFinished`; a batch/v1beta1 CronJob firing
//! every minute creates `<cronjob>-<minute>` jobs.
//!
//! Needs root (network namespaces). Each test starts its own cluster. The seed's image `luksa/batch-job` is not
//! runnable here; the manifests give it an explicit host command instead (see crates/containers/src/image.rs).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_testkit::{eventually, Cluster, Kubectl, Table};
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(90);

fn create(k: &Kubectl, manifest: &str) {
    k.ok_stdin(&["create", "-f", "-"], manifest.as_bytes());
}

fn job(k: &Kubectl, name: &str) -> Value {
    k.json(&["get", "job", name])
}

/// The `True` condition of `type_`, or null.
fn condition(obj: &Value, type_: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == "True"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until job `name` has a `True` condition of `type_`; returns the job.
fn wait_condition(k: &Kubectl, name: &str, type_: &str, timeout: Duration) -> Value {
    eventually(&format!("job {name} to be {type_}"), timeout, || {
        let j = job(k, name);
        if condition(&j, type_).is_null() {
            Err(format!("{:#}", j["status"]))
        } else {
            Ok(j)
        }
    })
}

fn pods_of(k: &Kubectl, job: &str) -> Vec<Value> {
    let selector = format!("job-name={job}");
    k.json(&["get", "pods", "-l", &selector])["items"].as_array().cloned().unwrap_or_default()
}

fn event_reasons(k: &Kubectl, name: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name}");
    let items = k.json(&["get", "events", "--field-selector", &selector])["items"].as_array().cloned();
    items.unwrap_or_default().iter().filter_map(|e| e["reason"].as_str().map(str::to_string)).collect()
}

fn wait_event(k: &Kubectl, name: &str, reason: &str) {
    eventually(&format!("a {reason} event about {name}"), WAIT, || {
        let reasons = event_reasons(k, name);
        reasons.iter().any(|r| r == reason).then_some(()).ok_or(format!("{reasons:?}"))
    });
}

/// The seed's `003-job-batch-job.yaml` as its author meant it (the seed file puts `completions` and `parallelism`
/// in the pod spec, which validation rejects), with a command the node can run.
const BATCH_JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: batch-job
spec:
  completions: 5
  parallelism: 2
  template:
    metadata:
      labels:
        app: batch-job
    spec:
      restartPolicy: OnFailure
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: luksa/batch-job
        command: ["/bin/sh", "-c", "sleep 2; echo done"]
"#;

#[test]
fn batch_job_runs_five_completions_never_more_than_two_at_once() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();

    // Every version of every pod of the job, from a watch started before the job exists.
    let mut watch = k.spawn(&["get", "pods", "-l", "job-name=batch-job", "--watch", "-o", "json"]);
    let stdout = watch.stdout.take().expect("kubectl stdout");
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for v in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
            let Ok(v) = v else { break };
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    create(&k, BATCH_JOB);

    let mut phases: BTreeMap<String, String> = BTreeMap::new();
    let mut max_running = 0;
    let mut running_history = Vec::new();
    let deadline = Instant::now() + WAIT;
    while phases.values().filter(|p| *p == "Succeeded").count() < 5 {
        assert!(Instant::now() < deadline, "5 pods did not succeed within {WAIT:?}: {phases:?}");
        let Ok(p) = rx.recv_timeout(Duration::from_secs(1)) else { continue };
        let items = match p["kind"].as_str() {
            Some("List") => p["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![p],
        };
        for p in items {
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            phases.insert(name, p["status"]["phase"].as_str().unwrap_or("Pending").to_string());
        }
        let running = phases.values().filter(|p| *p == "Running").count();
        running_history.push(running);
        max_running = max_running.max(running);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(max_running <= 2, "more than 2 pods ran at once: {running_history:?} {phases:?}");
    assert!(max_running == 2, "the job never ran 2 pods in parallel: {running_history:?}");

    let j = wait_condition(&k, "batch-job", "Complete", WAIT);
    let status = &j["status"];
    assert_eq!(status["succeeded"], 5, "{status:#}");
    assert!(status["failed"].is_null() && status["active"].is_null(), "{status:#}");
    assert_eq!((status["ready"].as_i64(), status["terminating"].as_i64()), (Some(0), Some(0)), "{status:#}");
    assert!(status["startTime"].is_string() && status["completionTime"].is_string(), "{status:#}");
    assert_eq!(condition(&j, "Complete")["reason"], "CompletionsReached", "{status:#}");
    assert_eq!(condition(&j, "SuccessCriteriaMet")["reason"], "CompletionsReached", "{status:#}");
    assert_eq!(status["uncountedTerminatedPods"], serde_json::json!({}), "{status:#}");

    let table = Table::parse(&k.ok(&["get", "job", "batch-job"]));
    assert_eq!(table.cell("batch-job", "COMPLETIONS"), "5/5", "{table:?}");

    // Exactly five pods, all succeeded, labelled and owned as upstream's controller makes them, finalizer gone.
    let uid = j["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let pods = eventually("the tracking finalizers to be removed", WAIT, || {
        let pods = pods_of(&k, "batch-job");
        let held: Vec<&Value> =
            pods.iter().filter(|p| p["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())).collect();
        if held.is_empty() {
            Ok(pods.clone())
        } else {
            Err(format!("{held:#?}"))
        }
    });
    assert_eq!(pods.len(), 5, "{pods:#?}");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded", "{p:#}");
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid.as_str(), "{labels}");
        assert_eq!(labels["controller-uid"], uid.as_str(), "{labels}");
        assert_eq!(
            (labels["batch.kubernetes.io/job-name"].as_str(), labels["job-name"].as_str()),
            (Some("batch-job"), Some("batch-job"))
        );
        assert_eq!(labels["app"], "batch-job");
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["name"].as_str()), (Some("Job"), Some("batch-job")), "{owner}");
        assert_eq!((owner["controller"].as_bool(), owner["blockOwnerDeletion"].as_bool()), (Some(true), Some(true)));
        assert!(p["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("batch-job-")), "{p:#}");
    }
    let names: BTreeSet<&str> = pods.iter().filter_map(|p| p["metadata"]["name"].as_str()).collect();
    assert_eq!(names, phases.keys().map(String::as_str).collect::<BTreeSet<_>>());
    wait_event(&k, "batch-job", "Completed");
    wait_event(&k, "batch-job", "SuccessfulCreate");
}

#[test]
fn failing_jobs_stop_at_the_backoff_limit_or_the_deadline_and_parallelism_can_change() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();
    create(
        &k,
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: fail
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["/bin/sh", "-c", "exit 3"]
"#,
    );
    create(
        &k,
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: slow
spec:
  completions: 4
  parallelism: 1
  activeDeadlineSeconds: 25
  template:
    spec:
      restartPolicy: OnFailure
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["/bin/sh", "-c", "sleep 600"]
"#,
    );

    // kubectl 1.20 scales through the scale subresource, which jobs do not have (upstream 1.33 neither): it fails as
    // against upstream, and parallelism is changed by editing the job instead.
    let err = k.fail(&["scale", "job", "slow", "--replicas=3"]);
    assert!(err.contains("the server could not find the requested resource"), "{err}");
    k.ok(&["patch", "job", "slow", "-p", r#"{"spec":{"parallelism":3}}"#]);
    assert_eq!(job(&k, "slow")["spec"]["parallelism"], 3);
    eventually("3 active pods of slow", WAIT, || {
        let j = job(&k, "slow");
        (j["status"]["active"] == 3).then_some(()).ok_or(format!("{:#}", j["status"]))
    });

    // A pod fails, the next one comes after the 10 s back-off and fails too: 2 failures > backoffLimit 1.
    let j = wait_condition(&k, "fail", "Failed", WAIT);
    let failed = condition(&j, "Failed");
    assert_eq!(
        (failed["reason"].as_str(), failed["message"].as_str()),
        (Some("BackoffLimitExceeded"), Some("Job has reached the specified backoff limit"))
    );
    assert_eq!(condition(&j, "FailureTarget")["reason"], "BackoffLimitExceeded");
    assert_eq!(j["status"]["failed"], 2, "{:#}", j["status"]);
    assert!(j["status"]["completionTime"].is_null(), "{:#}", j["status"]);
    assert_eq!(pods_of(&k, "fail").len(), 2);
    wait_event(&k, "fail", "BackoffLimitExceeded");
    let table = Table::parse(&k.ok(&["get", "job", "fail"]));
    assert_eq!(table.cell("fail", "COMPLETIONS"), "0/1", "{table:?}");

    // The deadline terminates the running pods and fails the job once they are gone.
    let j = wait_condition(&k, "slow", "Failed", WAIT);
    assert_eq!(condition(&j, "Failed")["reason"], "DeadlineExceeded", "{:#}", j["status"]);
    assert_eq!(condition(&j, "Failed")["message"], "Job was active longer than specified deadline");
    assert_eq!(j["status"]["failed"], 3, "{:#}", j["status"]);
    assert!(j["status"]["active"].is_null(), "{:#}", j["status"]);
    wait_event(&k, "slow", "DeadlineExceeded");
    eventually("the deadline's pods to be gone", WAIT, || {
        let pods = pods_of(&k, "slow");
        pods.is_empty().then_some(()).ok_or(format!("{pods:#?}"))
    });
}

#[test]
fn indexed_job_pods_see_their_index_and_the_job_goes_after_its_ttl() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();
    create(
        &k,
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  ttlSecondsAfterFinished: 8
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["/bin/sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"]
"#,
    );
    let j = wait_condition(&k, "idx", "Complete", WAIT);
    assert_eq!(j["status"]["completedIndexes"], "0-2", "{:#}", j["status"]);
    assert_eq!(j["status"]["succeeded"], 3, "{:#}", j["status"]);
    let finished_at = Instant::now();
    let mut seen = BTreeSet::new();
    for p in pods_of(&k, "idx") {
        let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap_or("?");
        assert_eq!(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"], index, "{p:#}");
        assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
        assert_eq!(p["spec"]["hostname"], format!("idx-{index}"));
        let log = k.ok(&["logs", &name]);
        assert_eq!(log.trim(), format!("index={index} host=idx-{index}"), "{name}");
        seen.insert(index.to_string());
    }
    assert_eq!(seen, BTreeSet::from(["0".to_string(), "1".to_string(), "2".to_string()]));

    // ttlSecondsAfterFinished: 8 — the job is deleted about 8 s after it finished.
    eventually("job idx to be deleted after its TTL", Duration::from_secs(40), || {
        let out = k.run(&["get", "job", "idx"]);
        (!out.status.success()).then_some(()).ok_or("still there".to_string())
    });
    let took = finished_at.elapsed();
    assert!(took >= Duration::from_secs(5), "deleted {took:?} after finishing, before its TTL");
}

#[test]
fn cronjob_every_minute_creates_a_job() {
    let c = Cluster::start_with_node(ferry());
    let k = c.kubectl();
    create(
        &k,
        r#"apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: cron-job
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          labels:
            app: cron-job
        spec:
          restartPolicy: OnFailure
          containers:
          - name: main
            image: luksa/batch-job
            command: ["/bin/sh", "-c", "sleep 1; echo done"]
"#,
    );
    let cj = k.json(&["get", "cronjob", "cron-job"]);
    let cj_uid = cj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    // Fires at the next whole minute (at most 60 s away).
    let job = eventually("a job of cron-job", Duration::from_secs(80), || {
        let jobs = k.json(&["get", "jobs"])["items"].as_array().cloned().unwrap_or_default();
        jobs.into_iter()
            .find(|j| j["metadata"]["ownerReferences"][0]["uid"] == cj_uid.as_str())
            .ok_or_else(|| "none yet".to_string())
    });
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let scheduled = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let at: k8s_openapi::jiff::Timestamp = scheduled.parse().unwrap_or_else(|e| panic!("{scheduled:?}: {e}"));
    assert_eq!(at.as_second() % 60, 0, "{scheduled}");
    assert_eq!(name, format!("cron-job-{}", at.as_second() / 60));
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["controller"].as_bool()), (Some("CronJob"), Some(true)), "{owner}");
    assert_eq!(job["metadata"]["labels"]["app"], "cron-job");

    // The job runs to completion; the CronJob records it.
    wait_condition(&k, &name, "Complete", WAIT);
    let cj = eventually("cron-job to record the finished job", WAIT, || {
        let cj = k.json(&["get", "cronjob", "cron-job"]);
        let done = cj["status"]["lastSuccessfulTime"].is_string()
            && cj["status"]["active"].as_array().is_none_or(|a| a.is_empty());
        done.then_some(cj.clone()).ok_or(format!("{:#}", cj["status"]))
    });
    let last: k8s_openapi::jiff::Timestamp =
        cj["status"]["lastScheduleTime"].as_str().unwrap_or_default().parse().expect("lastScheduleTime");
    assert!(last >= at, "{:#}", cj["status"]);
    wait_event(&k, "cron-job", "SuccessfulCreate");
    wait_event(&k, "cron-job", "SawCompletedJob");
    let table = Table::parse(&k.ok(&["get", "cronjob", "cron-job"]));
    assert_eq!(table.cell("cron-job", "SCHEDULE"), "*/1 * * * *", "{table:?}");
}
