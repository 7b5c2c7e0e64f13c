//! The Endpoints, EndpointSlice and mirroring controllers (run in-process against a real single-node cluster whose
//! pods really run), checked with kubectl 1.20: ready and not-ready addresses follow readiness probes, `describe svc`
//! and `get endpointslices` show them, a selectorless service keeps its hand-written Endpoints and gets a mirrored
//! slice, publishNotReadyAddresses publishes everything, nothing is rewritten while nothing changes, removing the
//! selector stops updates and adding it back takes over, and the loop ends on shutdown.

use std::collections::BTreeSet;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use ferry_controllers::ControllersConfig;
use ferry_testkit::{eventually, seed_fixture, squash, unique_name, Cluster, Kubectl, Table};
use serde_json::Value;

fn ferry() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferry"))
}

const WAIT: Duration = Duration::from_secs(60);

fn backend(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.47
    args: ["netexec", "--http-port=8080"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
"#
    )
}

fn flipper(ready_file: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: flip
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "sleep 3600"]
    readinessProbe:
      exec:
        command: ["cat", "{}"]
      periodSeconds: 1
      failureThreshold: 1
"#,
        ready_file.display()
    )
}

const SERVICES: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {tier: front}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-all
spec:
  publishNotReadyAddresses: true
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
"#;

fn pod_ip(k: &Kubectl, ns: &str, pod: &str) -> Result<String, String> {
    let ip = k.jsonpath(&["get", "pod", pod, "-n", ns], "{.status.podIP}");
    if ip.is_empty() {
        Err(format!("{pod} has no IP yet"))
    } else {
        Ok(ip)
    }
}

fn ips(list: &Value) -> BTreeSet<String> {
    list.as_array().into_iter().flatten().filter_map(|a| a["ip"].as_str().map(str::to_string)).collect()
}

/// (ready, not ready) addresses over all subsets.
fn addresses(ep: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
    let ready = subsets.iter().flat_map(|s| ips(&s["addresses"])).collect();
    let not_ready = subsets.iter().flat_map(|s| ips(&s["notReadyAddresses"])).collect();
    (ready, not_ready)
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn endpoints_column(k: &Kubectl, ns: &str, name: &str) -> BTreeSet<String> {
    let table = Table::parse(&k.ok(&["get", "endpoints", name, "-n", ns]));
    table.cell(name, "ENDPOINTS").split(',').map(str::to_string).collect()
}

fn slices_of(k: &Kubectl, ns: &str, service: &str) -> Vec<Value> {
    let list = k.json(&["get", "endpointslices", "-n", ns, "-l", &format!("kubernetes.io/service-name={service}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn endpoints_and_slices_follow_pods() {
    // The test runs its own controllers (and checks they stop cleanly), so the server runs none.
    let cluster = Cluster::start_with_node_and(ferry(), &["--disable-controllers"]);
    let k = cluster.kubectl();
    let ns = unique_name("ep");
    k.ok(&["create", "namespace", &ns]);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = ControllersConfig::new(cluster.kubeconfig().to_path_buf(), std::net::Ipv4Addr::LOCALHOST.into());
    let controllers = runtime.spawn(ferry_controllers::run(config, stopped));

    let ready_file = std::env::temp_dir().join(format!("ready-{ns}"));
    std::fs::write(&ready_file, "ok").unwrap();
    let manifests = [backend("web-a"), backend("web-b"), backend("web-c"), flipper(&ready_file)].join("---\n");
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], manifests.as_bytes());
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], SERVICES.as_bytes());

    let a = eventually("pod IPs", WAIT, || pod_ip(&k, &ns, "web-a"));
    let b = eventually("pod IPs", WAIT, || pod_ip(&k, &ns, "web-b"));
    let c = eventually("pod IPs", WAIT, || pod_ip(&k, &ns, "web-c"));
    let f = eventually("pod IPs", WAIT, || pod_ip(&k, &ns, "flip"));
    let all = set(&[&a, &b, &c, &f]);
    eventually("four ready addresses", WAIT, || {
        let ep = k.json(&["get", "endpoints", "web", "-n", &ns]);
        let (ready, not_ready) = addresses(&ep);
        (ready == all && not_ready.is_empty()).then_some(()).ok_or(format!("{ep}"))
    });
    let ep = k.json(&["get", "endpoints", "web", "-n", &ns]);
    assert_eq!(ep["metadata"]["labels"]["tier"], "front", "{ep}");
    assert_eq!(ep["subsets"][0]["ports"], serde_json::json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    let address =
        ep["subsets"][0]["addresses"].as_array().unwrap().iter().find(|x| x["ip"] == a.as_str()).unwrap().clone();
    assert_eq!(address["targetRef"]["kind"], "Pod");
    assert_eq!(address["targetRef"]["name"], "web-a");
    assert!(address["nodeName"].as_str().is_some_and(|n| n.starts_with("node-")), "{address}");

    // The flip pod fails its readiness probe: it moves to notReadyAddresses; `get endpoints` lists the other three.
    std::fs::remove_file(&ready_file).unwrap();
    let three = set(&[&a, &b, &c]);
    eventually("flip in notReadyAddresses", WAIT, || {
        let ep = k.json(&["get", "endpoints", "web", "-n", &ns]);
        let (ready, not_ready) = addresses(&ep);
        (ready == three && not_ready == set(&[&f])).then_some(()).ok_or(format!("{ep}"))
    });
    let with_port: BTreeSet<String> = three.iter().map(|ip| format!("{ip}:8080")).collect();
    assert_eq!(endpoints_column(&k, &ns, "web"), with_port);
    let describe = squash(&k.ok(&["describe", "svc", "web", "-n", &ns]));
    let line = describe.split("Endpoints: ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
    assert_eq!(line.split(',').map(str::to_string).collect::<BTreeSet<_>>(), with_port, "{describe}");

    // The slice: one, IPv4, port 8080, four endpoints with flip not ready and not serving.
    let slice = eventually("the slice to show flip unready", WAIT, || {
        let slices = slices_of(&k, &ns, "web");
        let [slice] = slices.as_slice() else { return Err(format!("{slices:?}")) };
        let flip = slice["endpoints"].as_array().into_iter().flatten().find(|e| e["addresses"][0] == f.as_str());
        match flip {
            Some(e) if e["conditions"]["ready"] == false && slice["endpoints"].as_array().unwrap().len() == 4 => {
                Ok(slice.clone())
            }
            _ => Err(format!("{slice}")),
        }
    });
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"], serde_json::json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert!(slice["metadata"]["name"].as_str().unwrap().starts_with("web-"), "{slice}");
    let slice_name = slice["metadata"]["name"].as_str().unwrap().to_string();
    let table = Table::parse(&k.ok(&["get", "endpointslices", "-n", &ns, "-l", "kubernetes.io/service-name=web"]));
    assert_eq!(table.cell(&slice_name, "ADDRESSTYPE"), "IPv4");
    assert_eq!(table.cell(&slice_name, "PORTS"), "8080");
    // Upstream's printer lists the first three addresses and counts the rest.
    let cell = table.cell(&slice_name, "ENDPOINTS");
    let (listed, more) = cell.split_once(" + ").unwrap_or((cell, ""));
    assert_eq!(more, "1 more...", "{table:?}");
    let listed: Vec<&str> = listed.split(',').collect();
    assert_eq!(listed.len(), 3, "{table:?}");
    assert!(listed.iter().all(|ip| ip.starts_with("10.")), "{table:?}");

    // publishNotReadyAddresses: all four ready, the named targetPort resolved where the pod names it.
    eventually("web-all to publish everything", WAIT, || {
        let ep = k.json(&["get", "endpoints", "web-all", "-n", &ns]);
        let (ready, _) = addresses(&ep);
        (ready == three).then_some(()).ok_or(format!("{ep}"))
    });
    // (flip has no port named http, so it is left out of web-all: named ports resolve per pod.)

    // No pod matches: an empty Endpoints and a placeholder slice.
    let nobody = eventually("nobody's Endpoints", WAIT, || {
        let out = k.run(&["get", "endpoints", "nobody", "-n", &ns, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
            .ok_or_else(|| "absent".to_string())
    });
    assert!(nobody.get("subsets").is_none(), "{nobody}");
    let placeholder = eventually("nobody's placeholder slice", WAIT, || {
        let slices = slices_of(&k, &ns, "nobody");
        slices.first().cloned().ok_or_else(|| "none".into())
    });
    assert_eq!(placeholder["endpoints"], serde_json::json!([]), "{placeholder}");

    // A selectorless service keeps its hand-written Endpoints and gets a mirrored slice.
    k.ok(&["apply", "-n", &ns, "-f", seed_fixture("003-ep-external-service.yaml").to_str().unwrap()]);
    k.ok(&["apply", "-n", &ns, "-f", seed_fixture("003-svc-external-service.yaml").to_str().unwrap()]);
    let mirrored = eventually("a mirrored slice", WAIT, || {
        let slices = slices_of(&k, &ns, "external-service");
        slices.first().cloned().ok_or_else(|| "none".into())
    });
    assert_eq!(
        mirrored["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    let mirrored_ips: BTreeSet<String> = mirrored["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["addresses"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(mirrored_ips, ["11.11.11.11".to_string(), "22.22.22.22".to_string()].into());
    assert_eq!(
        endpoints_column(&k, &ns, "external-service"),
        ["11.11.11.11:80".to_string(), "22.22.22.22:80".to_string()].into()
    );

    // Nothing changes: nothing is rewritten.
    let versions = |k: &Kubectl| {
        let eps = k.json(&["get", "endpoints", "-n", &ns]);
        let slices = k.json(&["get", "endpointslices", "-n", &ns]);
        let rv = |list: &Value| -> Vec<String> {
            list["items"].as_array().unwrap().iter().map(|o| o["metadata"]["resourceVersion"].to_string()).collect()
        };
        (rv(&eps), rv(&slices))
    };
    let before = versions(&k);
    sleep(Duration::from_secs(3));
    assert_eq!(versions(&k), before);

    // Selector removed: the Endpoints stop following pods. Added back: the controller takes over again.
    k.ok(&["patch", "svc", "web", "-n", &ns, "--type=json", "-p", r#"[{"op":"remove","path":"/spec/selector"}]"#]);
    std::fs::write(&ready_file, "ok").unwrap();
    eventually("flip ready again", WAIT, || {
        let ready = k.jsonpath(&["get", "pod", "flip", "-n", &ns], "{.status.conditions[?(@.type==\"Ready\")].status}");
        (ready == "True").then_some(()).ok_or(ready)
    });
    sleep(Duration::from_secs(2));
    let (ready, not_ready) = addresses(&k.json(&["get", "endpoints", "web", "-n", &ns]));
    assert_eq!((ready, not_ready), (three.clone(), set(&[&f])));
    k.ok(&["patch", "svc", "web", "-n", &ns, "-p", r#"{"spec":{"selector":{"app":"web"}}}"#]);
    eventually("the controller to take over again", WAIT, || {
        let ep = k.json(&["get", "endpoints", "web", "-n", &ns]);
        let (ready, not_ready) = addresses(&ep);
        (ready == all && not_ready.is_empty()).then_some(()).ok_or(format!("{ep}"))
    });

    // Service deleted: its Endpoints and slices go.
    k.ok(&["delete", "svc", "web", "-n", &ns]);
    eventually("web's Endpoints and slices to go", WAIT, || {
        let gone = !k.run(&["get", "endpoints", "web", "-n", &ns]).status.success();
        (gone && slices_of(&k, &ns, "web").is_empty()).then_some(()).ok_or_else(|| "still there".to_string())
    });

    stop.send(true).unwrap();
    let result = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), controllers).await });
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    let _ = std::fs::remove_file(&ready_file);
}
