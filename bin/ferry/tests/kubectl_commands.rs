//! The kubectl commands of the seed documents that touch only the API, run with kubectl 1.20 against a real
//! `ferry server`, asserting what kubectl prints (table headers and cells, messages, fields read back).
//!
//! Each test starts its own server (nextest runs every test in its own process, so a shared server would not be
//! shared anyway); the default namespace is each test's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_testkit::{eventually, seed_fixture, squash, Cluster, Kubectl, LineReader, Table};

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

fn start() -> (Cluster, Kubectl) {
    let cluster = Cluster::start(ferry());
    let kubectl = cluster.kubectl();
    (cluster, kubectl)
}

fn fixture(name: &str) -> String {
    seed_fixture(name).display().to_string()
}

/// `kubectl create -f -` of `yaml`, asserting kubectl's one-line answer.
fn create_yaml(k: &Kubectl, yaml: &str, want: &str) {
    let out = k.ok_stdin(&["create", "-f", "-"], yaml.as_bytes());
    assert_eq!(out.trim_end(), want);
}

/// An AGE cell: `0s`, `12s`, `3m4s`, ...
fn is_age(cell: &str) -> bool {
    !cell.is_empty() && cell.chars().next().is_some_and(|c| c.is_ascii_digit()) && cell.ends_with(['s', 'm', 'h', 'd'])
}

/// A ClusterIP from the default service CIDR 10.43.0.0/16.
fn is_service_ip(cell: &str) -> bool {
    let parts: Vec<&str> = cell.split('.').collect();
    parts.len() == 4 && parts[0] == "10" && parts[1] == "43" && parts[2..].iter().all(|p| p.parse::<u8>().is_ok())
}

/// `<port>:<nodePort>/TCP` with the node port in the default range; returns the node port.
fn node_port_cell(cell: &str, port: u16) -> u16 {
    let rest =
        cell.strip_prefix(&format!("{port}:")).unwrap_or_else(|| panic!("PORT(S) {cell:?} is not {port}:<n>/TCP"));
    let node_port: u16 = rest
        .strip_suffix("/TCP")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PORT(S) {cell:?} is not {port}:<n>/TCP"));
    assert!((30000..=32767).contains(&node_port), "node port {node_port} outside 30000-32767");
    node_port
}

const POD_MANUAL_V2: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: kubia-manual-v2
  labels:
    creation_method: manual
    env: prod
spec:
  containers:
  - image: luksa/kubia
    name: kubia
    ports:
    - containerPort: 8080
      protocol: TCP
";

const RC_WITH_PORT: &str = "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: kubia
spec:
  replicas: 3
  selector:
    app: kubia
  template:
    metadata:
      labels:
        app: kubia
    spec:
      containers:
      - name: kubia
        image: luksa/kubia
        ports:
        - containerPort: 8080
";

#[test]
fn pods_show_labels_label_columns_selectors_and_delete_by_label() {
    let (_cluster, k) = start();
    let out = k.ok(&["create", "-f", &fixture("003-pod-kubia-manual.yaml")]);
    assert_eq!(out.trim_end(), "pod/kubia-manual created");
    create_yaml(&k, POD_MANUAL_V2, "pod/kubia-manual-v2 created");
    let out = k.ok(&["run", "kubia-zxzij", "--image=luksa/kubia", "--port=8080"]);
    assert_eq!(out.trim_end(), "pod/kubia-zxzij created");

    // kubectl get po --show-labels
    let t = Table::parse(&k.ok(&["get", "po", "--show-labels"]));
    assert_eq!(t.headers, ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]);
    assert_eq!(t.names(), ["kubia-manual", "kubia-manual-v2", "kubia-zxzij"]);
    assert_eq!(t.cell("kubia-manual", "READY"), "0/1");
    assert_eq!(t.cell("kubia-manual", "STATUS"), "Pending");
    assert_eq!(t.cell("kubia-manual", "RESTARTS"), "0");
    assert!(is_age(t.cell("kubia-manual", "AGE")), "{t:?}");
    assert_eq!(t.cell("kubia-manual", "LABELS"), "app=test,noderole=master");
    assert_eq!(t.cell("kubia-manual-v2", "LABELS"), "creation_method=manual,env=prod");
    assert_eq!(t.cell("kubia-zxzij", "LABELS"), "run=kubia-zxzij");

    // kubectl get po -L creation_method,env
    let t = Table::parse(&k.ok(&["get", "po", "-L", "creation_method,env"]));
    assert_eq!(t.headers, ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "CREATION_METHOD", "ENV"]);
    assert_eq!(t.cell("kubia-manual", "CREATION_METHOD"), "");
    assert_eq!(t.cell("kubia-manual", "ENV"), "");
    assert_eq!(t.cell("kubia-manual-v2", "CREATION_METHOD"), "manual");
    assert_eq!(t.cell("kubia-manual-v2", "ENV"), "prod");

    // kubectl label po kubia-manual creation_method=manual (the seed's `method=manual` too)
    assert_eq!(k.ok(&["label", "po", "kubia-manual", "method=manual"]).trim_end(), "pod/kubia-manual labeled");
    assert_eq!(k.ok(&["label", "po", "kubia-manual", "creation_method=manual"]).trim_end(), "pod/kubia-manual labeled");
    // kubectl label po kubia-manual-v2 env=debug: refused without --overwrite, done with it
    let err = k.fail(&["label", "po", "kubia-manual-v2", "env=debug"]);
    assert!(err.contains("'env' already has a value (prod), and --overwrite is false"), "{err}");
    let out = k.ok(&["label", "po", "kubia-manual-v2", "env=debug", "--overwrite"]);
    assert_eq!(out.trim_end(), "pod/kubia-manual-v2 labeled");
    let t = Table::parse(&k.ok(&["get", "po", "-L", "creation_method,env"]));
    assert_eq!(t.cell("kubia-manual", "CREATION_METHOD"), "manual");
    assert_eq!(t.cell("kubia-manual-v2", "ENV"), "debug");
    // Removing a label.
    assert_eq!(k.ok(&["label", "po", "kubia-manual", "method-"]).trim_end(), "pod/kubia-manual labeled");
    let pod = k.json(&["get", "po", "kubia-manual"]);
    assert!(pod["metadata"]["labels"].get("method").is_none(), "{pod}");

    // Selectors: equality and set-based.
    let names = |sel: &str| Table::parse(&k.ok(&["get", "po", "-l", sel])).names().join(" ");
    assert_eq!(names("creation_method=manual"), "kubia-manual kubia-manual-v2");
    assert_eq!(names("creation_method=manual,env=debug"), "kubia-manual-v2");
    assert_eq!(names("app in (test,kubia)"), "kubia-manual");
    assert_eq!(names("env notin (debug)"), "kubia-manual kubia-zxzij");
    assert_eq!(names("env"), "kubia-manual-v2");
    assert_eq!(names("!env"), "kubia-manual kubia-zxzij");
    assert_eq!(names("run!=kubia-zxzij"), "kubia-manual kubia-manual-v2");
    let out = k.run(&["get", "po", "-l", "app=nothing"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), "No resources found in default namespace.");

    // kubectl delete po -l creation_method=manual
    let out = k.ok(&["delete", "po", "-l", "creation_method=manual"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["pod \"kubia-manual\" deleted", "pod \"kubia-manual-v2\" deleted"]);
    assert_eq!(Table::parse(&k.ok(&["get", "po"])).names(), ["kubia-zxzij"]);

    // kubectl delete po pod1 pod2
    k.ok(&["run", "pod1", "--image=busybox"]);
    k.ok(&["run", "pod2", "--image=busybox"]);
    let out = k.ok(&["delete", "po", "pod1", "pod2"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["pod \"pod1\" deleted", "pod \"pod2\" deleted"]);
    let err = k.fail(&["get", "po", "pod1"]);
    assert!(err.contains("Error from server (NotFound): pods \"pod1\" not found"), "{err}");
}

#[test]
fn get_pods_wide_and_run_with_generator() {
    let (_cluster, k) = start();
    // The seed's `kubectl run` with the (deprecated, ignored) generator flag and --command.
    let out = k.ok(&["run", "busybox", "--image=busybox:1.28", "--generator=run-pod/v1", "--command", "sleep", "3600"]);
    assert_eq!(out.trim_end(), "pod/busybox created");
    let command = k.jsonpath(&["get", "pod", "busybox"], "{.spec.containers[0].command[*]}");
    assert_eq!(command, "sleep 3600");
    assert_eq!(k.jsonpath(&["get", "pod", "busybox"], "{.spec.containers[0].image}"), "busybox:1.28");

    let t = Table::parse(&k.ok(&["get", "pods", "-o", "wide"]));
    assert_eq!(
        t.headers,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    );
    assert_eq!(t.cell("busybox", "STATUS"), "Pending");
    assert_eq!(t.cell("busybox", "IP"), "<none>");
    assert_eq!(t.cell("busybox", "NODE"), "<none>");
    assert_eq!(t.cell("busybox", "NOMINATED NODE"), "<none>");
    assert_eq!(t.cell("busybox", "READINESS GATES"), "<none>");
}

#[test]
fn namespaces_get_create_and_dash_n() {
    let (_cluster, k) = start();
    let t = Table::parse(&k.ok(&["get", "ns"]));
    assert_eq!(t.headers, ["NAME", "STATUS", "AGE"]);
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert_eq!(t.cell(ns, "STATUS"), "Active");
        assert!(is_age(t.cell(ns, "AGE")), "{t:?}");
    }

    assert_eq!(k.ok(&["create", "namespace", "custom-namespace"]).trim_end(), "namespace/custom-namespace created");
    let t = Table::parse(&k.ok(&["get", "namespaces"]));
    assert_eq!(t.cell("custom-namespace", "STATUS"), "Active");
    let err = k.fail(&["create", "namespace", "custom-namespace"]);
    assert!(err.contains("Error from server (AlreadyExists): namespaces \"custom-namespace\" already exists"), "{err}");

    // kubectl get po --namespace kube-system / -n kube-system
    k.ok(&["get", "po", "--namespace", "kube-system"]);
    k.ok(&["get", "po", "-n", "kube-system"]);

    let out = k.ok(&["create", "-f", &fixture("003-pod-kubia-manual.yaml"), "-n", "custom-namespace"]);
    assert_eq!(out.trim_end(), "pod/kubia-manual created");
    assert_eq!(Table::parse(&k.ok(&["get", "po", "-n", "custom-namespace"])).names(), ["kubia-manual"]);
    assert_eq!(
        k.jsonpath(&["get", "po", "kubia-manual", "--namespace", "custom-namespace"], "{.metadata.namespace}"),
        "custom-namespace"
    );
    let out = k.run(&["get", "po"]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let t = Table::parse(&k.ok(&["get", "po", "--all-namespaces"]));
    assert_eq!(t.headers[..2], ["NAMESPACE", "NAME"]);
    assert!(t.rows.iter().any(|r| r[0] == "custom-namespace" && r[1] == "kubia-manual"), "{t:?}");

    // Deleting a namespace removes what is in it, then the namespace.
    let out = k.ok(&["delete", "namespace", "custom-namespace", "--timeout=60s"]);
    assert_eq!(out.trim_end(), "namespace \"custom-namespace\" deleted");
    let err = k.fail(&["get", "ns", "custom-namespace"]);
    assert!(err.contains("Error from server (NotFound): namespaces \"custom-namespace\" not found"), "{err}");
}

#[test]
fn rc_scale_edit_and_orphaning_delete() {
    // The controllers run (the ReplicationController makes pods, the garbage collector orphans them); no node, so
    // the pods stay Pending.
    let cluster = Cluster::start_with_args(ferry(), None, &["--disable-agent", "--disable-scheduler"]);
    let k = cluster.kubectl();
    let out = k.ok(&["create", "-f", &fixture("003-rc-kubia.yaml")]);
    assert_eq!(out.trim_end(), "replicationcontroller/kubia created");
    let t = Table::parse(&k.ok(&["get", "rc"]));
    assert_eq!(t.headers, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(t.cell("kubia", "DESIRED"), "3");

    // kubectl scale rc kubia --replicas=10
    assert_eq!(k.ok(&["scale", "rc", "kubia", "--replicas=10"]).trim_end(), "replicationcontroller/kubia scaled");
    assert_eq!(k.jsonpath(&["get", "rc", "kubia"], "{.spec.replicas}"), "10");
    assert_eq!(Table::parse(&k.ok(&["get", "rc", "kubia"])).cell("kubia", "DESIRED"), "10");
    let generation = k.jsonpath(&["get", "rc", "kubia"], "{.metadata.generation}");
    assert_eq!(generation, "2", "scaling changes the spec, so the generation moves");

    // kubectl edit rc kubia, with an editor that rewrites the replica count
    let editor = write_editor(cluster.scratch_dir(), "s/replicas: 10$/replicas: 4/");
    let out = k.ok_env(&["edit", "rc", "kubia"], &[("KUBE_EDITOR", editor.to_str().unwrap())]);
    assert_eq!(out.trim_end(), "replicationcontroller/kubia edited");
    assert_eq!(k.jsonpath(&["get", "rc", "kubia"], "{.spec.replicas}"), "4");
    // The seed's readiness probe, added through edit.
    let editor = write_editor(
        cluster.scratch_dir(),
        "s/^\\( *\\)imagePullPolicy: IfNotPresent$/\\1imagePullPolicy: IfNotPresent\\n\\1readinessProbe:\\n\\1  exec:\\n\\1    command:\\n\\1    - ls\\n\\1    - \\/var\\/ready/",
    );
    let out = k.ok_env(&["edit", "rc", "kubia"], &[("KUBE_EDITOR", editor.to_str().unwrap())]);
    assert_eq!(out.trim_end(), "replicationcontroller/kubia edited");
    assert_eq!(
        k.jsonpath(&["get", "rc", "kubia"], "{.spec.template.spec.containers[0].readinessProbe.exec.command[*]}"),
        "ls /var/ready"
    );

    let pods = eventually("the RC's 4 pods", Duration::from_secs(30), || {
        let names = pod_names(&k);
        if names.len() == 4 {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    });

    // kubectl delete rc kubia --cascade=false: the RC goes (once the garbage collector has released its `orphan`
    // finalizer), its pods stay, with no owner left.
    let out = k.ok(&["delete", "rc", "kubia", "--cascade=false"]);
    assert_eq!(out.trim_end(), "replicationcontroller \"kubia\" deleted");
    let out = k.run(&["get", "rc"]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(pod_names(&k), pods);
    let owners = k.jsonpath(&["get", "pods"], "{.items[*].metadata.ownerReferences}");
    assert_eq!(owners, "", "orphaned pods keep no ownerReference");
}

fn pod_names(k: &Kubectl) -> Vec<String> {
    let mut names: Vec<String> =
        k.jsonpath(&["get", "pods"], "{.items[*].metadata.name}").split_whitespace().map(String::from).collect();
    names.sort();
    names
}

/// A `KUBE_EDITOR` script applying one sed expression to the file kubectl hands it.
fn write_editor(dir: &Path, sed_expr: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let n = fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let path = dir.join(format!("editor-{n}.sh"));
    fs::write(&path, format!("#!/bin/sh\nexec sed -i '{sed_expr}' \"$1\"\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn expose_rc_as_load_balancer() {
    let (_cluster, k) = start();
    create_yaml(&k, RC_WITH_PORT, "replicationcontroller/kubia created");

    // kubectl expose rc kubia --type=LoadBalancer --name kubia-http
    let out = k.ok(&["expose", "rc", "kubia", "--type=LoadBalancer", "--name", "kubia-http"]);
    assert_eq!(out.trim_end(), "service/kubia-http exposed");
    let t = Table::parse(&k.ok(&["get", "svc"]));
    assert_eq!(t.headers, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(t.cell("kubia-http", "TYPE"), "LoadBalancer");
    assert!(is_service_ip(t.cell("kubia-http", "CLUSTER-IP")), "{t:?}");
    assert_eq!(t.cell("kubia-http", "EXTERNAL-IP"), "<pending>");
    node_port_cell(t.cell("kubia-http", "PORT(S)"), 8080);
    assert_eq!(t.cell("kubernetes", "CLUSTER-IP"), "10.43.0.1");
    assert_eq!(t.cell("kubernetes", "PORT(S)"), "443/TCP");
    assert_eq!(k.jsonpath(&["get", "svc", "kubia-http"], "{.spec.selector.app}"), "kubia");

    let out = k.ok(&[
        "expose",
        "rc",
        "kubia",
        "--type=LoadBalancer",
        "--name",
        "kubia-http2",
        "--port=80",
        "--target-port=8080",
    ]);
    assert_eq!(out.trim_end(), "service/kubia-http2 exposed");
    let t = Table::parse(&k.ok(&["get", "svc", "kubia-http2"]));
    node_port_cell(t.cell("kubia-http2", "PORT(S)"), 80);
    let t1 = Table::parse(&k.ok(&["get", "svc", "kubia-http"]));
    assert_ne!(t.cell("kubia-http2", "CLUSTER-IP"), t1.cell("kubia-http", "CLUSTER-IP"));

    // The seed's RC declares no container port: kubectl cannot guess one (client-side, as upstream).
    k.ok(&["create", "namespace", "noport"]);
    k.ok(&["create", "-f", &fixture("003-rc-kubia.yaml"), "-n", "noport"]);
    let err = k.fail(&["expose", "rc", "kubia", "--type=LoadBalancer", "--name", "kubia-http", "-n", "noport"]);
    assert!(err.contains("couldn't find port via --port flag or introspection"), "{err}");
}

#[test]
fn create_service_dry_run_piped_into_create() {
    let (_cluster, k) = start();
    let cases: [(&[&str], &str); 5] = [
        (
            &["create", "service", "clusterip", "myapp-svc", "--tcp=80:80", "--dry-run=client", "-o", "yaml"],
            "myapp-svc",
        ),
        // The seed's bare (deprecated) --dry-run.
        (&["create", "service", "clusterip", "nginx-svc", "--tcp=8912:80", "--dry-run", "-o", "yaml"], "nginx-svc"),
        (
            &[
                "create",
                "service",
                "nodeport",
                "nodeport-svc",
                "--tcp=80:80",
                "--node-port=32223",
                "--dry-run=client",
                "-o",
                "yaml",
            ],
            "nodeport-svc",
        ),
        (
            &["create", "service", "loadbalancer", "myapp-svc-lb", "--tcp=80:80", "--dry-run=client", "-o", "yaml"],
            "myapp-svc-lb",
        ),
        (
            &[
                "create",
                "service",
                "externalname",
                "external-test",
                "--external-name",
                "www.zhuqiyang.com",
                "--dry-run=client",
                "-o",
                "yaml",
            ],
            "external-test",
        ),
    ];
    for (args, name) in cases {
        let yaml = k.ok(args);
        assert!(yaml.contains("kind: Service") && yaml.contains(&format!("name: {name}")), "{yaml}");
        create_yaml(&k, &yaml, &format!("service/{name} created"));
    }

    let t = Table::parse(&k.ok(&["get", "svc"]));
    assert_eq!(t.headers, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(t.cell("myapp-svc", "TYPE"), "ClusterIP");
    assert!(is_service_ip(t.cell("myapp-svc", "CLUSTER-IP")), "{t:?}");
    assert_eq!(t.cell("myapp-svc", "EXTERNAL-IP"), "<none>");
    assert_eq!(t.cell("myapp-svc", "PORT(S)"), "80/TCP");
    assert_eq!(t.cell("nginx-svc", "PORT(S)"), "8912/TCP");
    assert_eq!(t.cell("nodeport-svc", "TYPE"), "NodePort");
    assert_eq!(t.cell("nodeport-svc", "EXTERNAL-IP"), "<none>");
    assert_eq!(t.cell("nodeport-svc", "PORT(S)"), "80:32223/TCP");
    assert_eq!(t.cell("myapp-svc-lb", "TYPE"), "LoadBalancer");
    assert_eq!(t.cell("myapp-svc-lb", "EXTERNAL-IP"), "<pending>");
    node_port_cell(t.cell("myapp-svc-lb", "PORT(S)"), 80);
    assert_eq!(t.cell("external-test", "TYPE"), "ExternalName");
    assert_eq!(t.cell("external-test", "CLUSTER-IP"), "<none>");
    assert_eq!(t.cell("external-test", "EXTERNAL-IP"), "www.zhuqiyang.com");
    assert_eq!(t.cell("external-test", "PORT(S)"), "<none>");

    // The same node port again is refused by the server (422), as upstream.
    let yaml = k.ok(&[
        "create",
        "service",
        "nodeport",
        "dup",
        "--tcp=80:80",
        "--node-port=32223",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let err = k.fail_stdin(&["create", "-f", "-"], yaml.as_bytes());
    assert!(
        err.contains("The Service \"dup\" is invalid: spec.ports[0].nodePort: Invalid value: 32223: provided port is already allocated"),
        "{err}"
    );
}

#[test]
fn patch_session_affinity() {
    let (_cluster, k) = start();
    let yaml = k.ok(&["create", "service", "clusterip", "myapp-svc", "--tcp=80:80", "--dry-run=client", "-o", "yaml"]);
    create_yaml(&k, &yaml, "service/myapp-svc created");
    assert_eq!(k.jsonpath(&["get", "svc", "myapp-svc"], "{.spec.sessionAffinity}"), "None");

    // kubectl patch service myapp-svc -p '{"spec":{"sessionAffinity":"ClientIP"}}'
    let out = k.ok(&["patch", "service", "myapp-svc", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]);
    assert_eq!(out.trim_end(), "service/myapp-svc patched");
    assert_eq!(k.jsonpath(&["get", "svc", "myapp-svc"], "{.spec.sessionAffinity}"), "ClientIP");
    assert_eq!(
        k.jsonpath(&["get", "svc", "myapp-svc"], "{.spec.sessionAffinityConfig.clientIP.timeoutSeconds}"),
        "10800",
        "ClientIP affinity defaults its timeout to 10800s"
    );
    let out = k.ok(&["patch", "service", "myapp-svc", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]);
    assert_eq!(out.trim_end(), "service/myapp-svc patched (no change)");

    // The seed's sessionAffinityConfig snippet.
    let patch =
        r#"{"spec":{"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":100}}}}"#;
    assert_eq!(k.ok(&["patch", "svc", "myapp-svc", "-p", patch]).trim_end(), "service/myapp-svc patched");
    assert_eq!(
        k.jsonpath(&["get", "svc", "myapp-svc"], "{.spec.sessionAffinityConfig.clientIP.timeoutSeconds}"),
        "100"
    );

    // A JSON patch and a merge patch too.
    let out = k.ok(&[
        "patch",
        "svc",
        "myapp-svc",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/tier","value":"web"}]"#,
    ]);
    assert_eq!(out.trim_end(), "service/myapp-svc patched");
    let out = k.ok(&["patch", "svc", "myapp-svc", "--type=merge", "-p", r#"{"metadata":{"labels":{"tier":null}}}"#]);
    assert_eq!(out.trim_end(), "service/myapp-svc patched");
    let svc = k.json(&["get", "svc", "myapp-svc"]);
    assert_eq!(svc["metadata"]["labels"], serde_json::json!({"app": "myapp-svc"}));
}

#[test]
fn endpoints_and_describe_svc() {
    let (_cluster, k) = start();
    // Seed 003: a Service without a selector and its hand-written Endpoints.
    k.ok(&["create", "-f", &fixture("003-svc-external-service.yaml")]);
    k.ok(&["create", "-f", &fixture("003-ep-external-service.yaml")]);
    // Seed 004: the same with zch-svc2.
    k.ok(&["create", "-f", &fixture("004-svc-zch-svc2-no-selector.yaml")]);
    k.ok(&["create", "-f", &fixture("004-ep-zch-svc2.yaml")]);

    // kubectl get endpoints / kubectl get ep <name>
    let t = Table::parse(&k.ok(&["get", "endpoints"]));
    assert_eq!(t.headers, ["NAME", "ENDPOINTS", "AGE"]);
    assert_eq!(t.cell("external-service", "ENDPOINTS"), "11.11.11.11:80,22.22.22.22:80");
    assert_eq!(t.cell("zch-svc2", "ENDPOINTS"), "10.244.1.45:9000,10.244.2.40:9000");
    let t = Table::parse(&k.ok(&["get", "ep", "zch-svc2"]));
    assert_eq!(t.names(), ["zch-svc2"]);

    // kubectl describe svc external-service
    let out = k.ok(&["describe", "svc", "external-service"]);
    let d = squash(&out);
    for want in [
        "Name: external-service",
        "Namespace: default",
        "Labels: <none>",
        "Annotations: <none>",
        "Selector: <none>",
        "Type: ClusterIP",
        "Port: <unset> 80/TCP",
        "TargetPort: 80/TCP",
        "Endpoints: 11.11.11.11:80,22.22.22.22:80",
        "Session Affinity: None",
        "Events: <none>",
    ] {
        assert!(d.contains(want), "describe lacks {want:?}:\n{out}");
    }
    let ip_line = out.lines().find(|l| l.starts_with("IP:")).unwrap_or_else(|| panic!("no IP: line:\n{out}"));
    assert!(is_service_ip(ip_line.trim_start_matches("IP:").trim()), "{ip_line}");

    // kubectl describe svc zch-svc2: annotations are shown.
    let out = squash(&k.ok(&["describe", "svc", "zch-svc2"]));
    assert!(out.contains("Annotations: spec: Service without selector"), "{out}");
    assert!(out.contains("Endpoints: 10.244.1.45:9000,10.244.2.40:9000"), "{out}");

    // kubectl describe svc (every service)
    let out = k.ok(&["describe", "svc"]);
    for name in ["external-service", "kubernetes", "zch-svc2"] {
        let line = format!("Name: {name}");
        assert!(out.lines().any(|l| squash(l) == line), "describe svc lacks {line:?}:\n{out}");
    }
}

#[test]
fn explain_pods() {
    let (_cluster, k) = start();
    let out = k.ok(&["explain", "pods"]);
    let d = squash(&out);
    for want in ["KIND: Pod", "VERSION: v1", "DESCRIPTION:", "FIELDS:", "apiVersion <string>", "kind <string>"] {
        assert!(d.contains(want), "explain pods lacks {want:?}:\n{out}");
    }
    assert!(d.contains("metadata <Object>") && d.contains("spec <Object>") && d.contains("status <Object>"), "{out}");

    let out = squash(&k.ok(&["explain", "pod.spec"]));
    assert!(out.contains("RESOURCE: spec <Object>"), "{out}");
    assert!(out.contains("containers <[]Object> -required-"), "{out}");

    let out = squash(&k.ok(&["explain", "pods", "--recursive"]));
    assert!(out.contains("readinessProbe <Object>") && out.contains("nodeSelector <map[string]string>"), "{out}");

    let out = squash(&k.ok(&["explain", "svc.spec.sessionAffinity"]));
    assert!(out.contains("KIND: Service") && out.contains("FIELD: sessionAffinity <string>"), "{out}");
}

#[test]
fn apply_twice_is_idempotent_and_keeps_allocations() {
    let (cluster, k) = start();
    for (file, name) in
        [("003-svc-kubia-nodeport.yaml", "kubia-nodeport"), ("000-svc-kubia-loadbalancer.yaml", "kubia-loadbalancer")]
    {
        let path = fixture(file);
        assert_eq!(k.ok(&["apply", "-f", &path]).trim_end(), format!("service/{name} created"));
        let before = k.json(&["get", "svc", name]);
        assert_eq!(k.ok(&["apply", "-f", &path]).trim_end(), format!("service/{name} unchanged"));
        let after = k.json(&["get", "svc", name]);
        assert_eq!(before, after, "a no-op apply changed the object");
        assert!(is_service_ip(after["spec"]["clusterIP"].as_str().unwrap_or("")), "{after}");
    }
    let svc = k.json(&["get", "svc", "kubia-nodeport"]);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30123);
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");

    // A changed manifest that still omits clusterIP and nodePort: both are kept.
    let before = k.json(&["get", "svc", "kubia-loadbalancer"]);
    let text = fs::read_to_string(fixture("000-svc-kubia-loadbalancer.yaml")).unwrap();
    let changed = text.replace("targetPort: 8080", "targetPort: 9090");
    assert_ne!(text, changed);
    let path = cluster.scratch_dir().join("lb-changed.yaml");
    fs::write(&path, changed).unwrap();
    let out = k.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(out.trim_end(), "service/kubia-loadbalancer configured");
    let after = k.json(&["get", "svc", "kubia-loadbalancer"]);
    assert_eq!(after["spec"]["ports"][0]["targetPort"], 9090);
    assert_eq!(after["spec"]["clusterIP"], before["spec"]["clusterIP"]);
    assert_eq!(after["spec"]["ports"][0]["nodePort"], before["spec"]["ports"][0]["nodePort"]);
    assert!(after["spec"]["ports"][0]["nodePort"].as_u64().is_some(), "{after}");
    let annotation = after["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_else(|| panic!("no last-applied annotation: {after}"));
    assert!(annotation.contains("9090"), "{annotation}");
}

#[test]
fn get_watch_sees_changes() {
    let (_cluster, k) = start();
    k.ok(&["create", "-f", &fixture("003-svc-kubia-http.yaml")]);

    let mut child = k.spawn(&["get", "svc", "--watch", "--output-watch-events"]);
    let lines = LineReader::new(child.stdout.take().unwrap());
    let first = lines.wait_for(Duration::from_secs(30), |l| l.contains("kubia-http"));
    let first = first.unwrap_or_else(|seen| panic!("watch never listed kubia-http; saw {seen:?}"));
    assert!(first.starts_with("ADDED"), "{first}");

    // A change to an existing object...
    k.ok(&["label", "svc", "kubia-http", "watched=yes"]);
    let modified = lines.wait_for(Duration::from_secs(30), |l| l.contains("kubia-http"));
    let modified = modified.unwrap_or_else(|seen| panic!("watch missed the label change; saw {seen:?}"));
    assert!(modified.starts_with("MODIFIED"), "{modified}");

    // ...a new object, and a deletion.
    k.ok(&["create", "-f", &fixture("003-svc-kubia-headless.yaml")]);
    let added = lines.wait_for(Duration::from_secs(30), |l| l.contains("kubia-headless"));
    let added = added.unwrap_or_else(|seen| panic!("watch missed the new service; saw {seen:?}"));
    assert!(added.starts_with("ADDED") && added.contains("None"), "{added}");
    k.ok(&["delete", "svc", "kubia-headless"]);
    let deleted = lines.wait_for(Duration::from_secs(30), |l| l.contains("kubia-headless"));
    let deleted = deleted.unwrap_or_else(|seen| panic!("watch missed the deletion; saw {seen:?}"));
    assert!(deleted.starts_with("DELETED"), "{deleted}");

    assert!(child.try_wait().unwrap().is_none(), "kubectl get --watch exited early");
    child.kill().unwrap();
    child.wait().unwrap();

    // Plain `get -w` prints the table, then a row per change.
    let mut child = k.spawn(&["get", "po", "-w"]);
    let lines = LineReader::new(child.stdout.take().unwrap());
    k.ok(&["create", "-f", &fixture("003-pod-kubia-readiness.yaml")]);
    let row = lines.wait_for(Duration::from_secs(30), |l| l.starts_with("kubia-readiness"));
    row.unwrap_or_else(|seen| panic!("watch on pods missed the new pod; saw {seen:?}"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn ingress_from_old_api_versions() {
    let (_cluster, k) = start();
    let out = k.ok(&["create", "-f", &fixture("000-ing-kubia-networking-v1beta1.yaml")]);
    assert_eq!(out.trim_end(), "ingress.networking.k8s.io/kubia created");
    // kubectl get ingress
    let t = Table::parse(&k.ok(&["get", "ingress"]));
    assert_eq!(t.headers, ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]);
    assert_eq!(t.cell("kubia", "CLASS"), "<none>");
    assert_eq!(t.cell("kubia", "HOSTS"), "kubia.example.com,new.example.com");
    assert_eq!(t.cell("kubia", "ADDRESS"), "");
    assert_eq!(t.cell("kubia", "PORTS"), "80");
    // Read back as networking.k8s.io/v1: the backend converted, the path type defaulted.
    let ing = k.json(&["get", "ingress.v1.networking.k8s.io", "kubia"]);
    let path = &ing["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(path["path"], "/kubia");
    assert_eq!(path["pathType"], "ImplementationSpecific");
    assert_eq!(path["backend"]["service"]["name"], "kubia-nodeport");
    assert_eq!(path["backend"]["service"]["port"]["number"], 80);
}

#[test]
fn label_node_and_select_by_node_labels() {
    let (_cluster, k) = start();
    create_yaml(&k, "apiVersion: v1\nkind: Node\nmetadata:\n  name: gpu-node1\n", "node/gpu-node1 created");
    // kubectl label node gpu-node1 gpu=true
    assert_eq!(k.ok(&["label", "node", "gpu-node1", "gpu=true"]).trim_end(), "node/gpu-node1 labeled");
    let t = Table::parse(&k.ok(&["get", "nodes", "-l", "gpu=true"]));
    assert_eq!(t.headers, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(t.names(), ["gpu-node1"]);
    assert_eq!(t.cell("gpu-node1", "ROLES"), "<none>");
    let t = Table::parse(&k.ok(&["get", "no", "gpu-node1", "--show-labels"]));
    assert!(t.cell("gpu-node1", "LABELS").split(',').any(|l| l == "gpu=true"), "{t:?}");
    // A pod asking for that node label, from the seed's nodeSelector snippet.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gpu-pod\nspec:\n  nodeSelector:\n    gpu: \"true\"\n  containers:\n  - name: main\n    image: luksa/kubia\n";
    create_yaml(&k, pod, "pod/gpu-pod created");
    assert_eq!(k.jsonpath(&["get", "pod", "gpu-pod"], "{.spec.nodeSelector.gpu}"), "true");
}

#[test]
fn node_port_service_table_and_tls_secret() {
    let (cluster, k) = start();
    // kl get svc zch-nodeport
    k.ok(&["create", "-f", &fixture("004-svc-zch-nodeport.yaml")]);
    let t = Table::parse(&k.ok(&["get", "svc", "zch-nodeport"]));
    assert_eq!(t.cell("zch-nodeport", "TYPE"), "NodePort");
    assert_eq!(t.cell("zch-nodeport", "EXTERNAL-IP"), "<none>");
    assert_eq!(t.cell("zch-nodeport", "PORT(S)"), "9200:30000/TCP");

    // The seed's TLS secret: openssl, then kubectl create secret tls.
    let dir = cluster.scratch_dir();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genrsa", "-out", "tls.key", "2048"]);
    run(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "tls.key",
        "-out",
        "tls.cert",
        "-days",
        "360",
        "-subj",
        "/CN=kubia.example.com",
    ]);
    let cert = dir.join("tls.cert").display().to_string();
    let key = dir.join("tls.key").display().to_string();
    let out = k.ok(&["create", "secret", "tls", "tls-secret", &format!("--cert={cert}"), &format!("--key={key}")]);
    assert_eq!(out.trim_end(), "secret/tls-secret created");
    let t = Table::parse(&k.ok(&["get", "secret", "tls-secret"]));
    assert_eq!(t.headers, ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(t.cell("tls-secret", "TYPE"), "kubernetes.io/tls");
    assert_eq!(t.cell("tls-secret", "DATA"), "2");
}

#[test]
fn current_kubectl_smoke() {
    let (cluster, _k) = start();
    let Some(k) = cluster.kubectl_current() else {
        eprintln!("no current kubectl (set FERRY_KUBECTL_CURRENT); skipping");
        return;
    };
    let t = Table::parse(&k.ok(&["get", "ns"]));
    assert_eq!(t.cell("default", "STATUS"), "Active");
    let out = k.ok(&["create", "-f", &fixture("003-pod-kubia-manual.yaml")]);
    assert_eq!(out.trim_end(), "pod/kubia-manual created");
    let t = Table::parse(&k.ok(&["get", "po", "--show-labels"]));
    assert_eq!(t.cell("kubia-manual", "LABELS"), "app=test,noderole=master");
    // Server-side field validation: current kubectl asks for Strict.
    let err = k.fail(&["create", "-f", &fixture("004-svc-zch-loadbalancer-nodeport-typo.yaml")]);
    assert!(err.contains("unknown field \"spec.ports[0].NodePort\""), "{err}");
    // Server-side apply, twice.
    let path = fixture("003-svc-kubia-http.yaml");
    assert_eq!(k.ok(&["apply", "--server-side", "-f", &path]).trim_end(), "service/kubia-http serverside-applied");
    assert_eq!(k.ok(&["apply", "--server-side", "-f", &path]).trim_end(), "service/kubia-http serverside-applied");
    let out = squash(&k.ok(&["explain", "pods"]));
    assert!(out.contains("KIND: Pod") && out.contains("VERSION: v1"), "{out}");
}
