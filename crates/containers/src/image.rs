//! Image resolution without a registry: which process a container's image, command and args turn into
//! (ferry's built-in agnhost, or a command from the host filesystem), or why the image cannot run.

use std::path::Path;

/// The PATH an image without its own `Env` would give its processes (the OCI runtime default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Repositories (image reference without tag or digest) served by the built-in agnhost.
const AGNHOST_REPOSITORIES: &[&str] = &[
    "registry.k8s.io/e2e-test-images/agnhost",
    "k8s.gcr.io/e2e-test-images/agnhost",
    "gcr.io/kubernetes-e2e-test-images/agnhost",
];

/// Images of the book "Kubernetes in Action" (and the seeds' copies of them), served by built-in agnhost
/// subcommands that behave as those images' programs: (Docker Hub repository, `ferry agnhost` subcommand).
/// Docker Hub references may also be written with a `docker.io/` or `index.docker.io/` prefix.
const BOOK_IMAGES: &[(&str, &str)] = &[
    ("luksa/kubia", "kubia"),
    ("kubia/manual", "kubia"),
    ("yinzige/kubia", "kubia"),
    ("luksa/kubia-unhealthy", "kubia-unhealthy"),
    ("luksa/ssd-monitor", "ssd-monitor"),
    ("luksa/batch-job", "batch-job"),
];

/// Prefixes naming Docker Hub explicitly (`docker.io/luksa/kubia` is `luksa/kubia`).
const DOCKER_HUB_PREFIXES: &[&str] = &["docker.io/", "index.docker.io/"];

/// Repository prefixes of the pause image (`pause`, `pause-amd64`, ...).
const PAUSE_REPOSITORY_PREFIXES: &[&str] =
    &["registry.k8s.io/pause", "k8s.gcr.io/pause", "gcr.io/google_containers/pause"];

/// How a container's image is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run `argv` (argv[0] is an absolute path or a name looked up in PATH).
    Run {
        /// The image reference as written in the pod.
        image: String,
        /// What kind of process this is (for Events).
        kind: PlanKind,
        /// The full argument vector.
        argv: Vec<String>,
        /// Environment the image itself would provide (like an image config's `Env`); the node agent puts the
        /// container's own `env` after these so the container's values win.
        image_env: Vec<(String, String)>,
    },
    /// The image cannot run here; the container waits with `reason` (`ErrImagePull`) and `message`.
    NotRunnable {
        /// The image reference as written in the pod.
        image: String,
        /// The waiting reason, as upstream's image puller reports it.
        reason: String,
        /// What went wrong and how to make the container runnable.
        message: String,
    },
}

/// What runs for a [`Plan::Run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanKind {
    /// ferry's built-in agnhost (also used for the pause image).
    BuiltinAgnhost,
    /// A command from the host filesystem (ferry's process runtime).
    HostCommand,
}

impl Plan {
    /// One sentence for the pod's Events saying what ran (or why nothing can).
    pub fn describe(&self) -> String {
        match self {
            Plan::Run { image, kind: PlanKind::BuiltinAgnhost, .. } => {
                format!("Running image \"{image}\" as built-in agnhost")
            }
            Plan::Run { image, kind: PlanKind::HostCommand, argv, .. } => {
                let program = argv.first().map(String::as_str).unwrap_or("");
                format!("Running image \"{image}\" as host command {program}")
            }
            Plan::NotRunnable { message, .. } => message.clone(),
        }
    }
}

/// The repository part of an image reference: without `@digest` and without a `:tag` in the last path segment.
pub fn repository(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(repo, _)| repo);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

fn is_agnhost(repo: &str) -> bool {
    AGNHOST_REPOSITORIES.contains(&repo)
}

/// The built-in subcommand standing in for a book image's program, if `repo` is one.
fn book_image(repo: &str) -> Option<&'static str> {
    let repo = DOCKER_HUB_PREFIXES.iter().find_map(|p| repo.strip_prefix(p)).unwrap_or(repo);
    BOOK_IMAGES.iter().find(|(r, _)| *r == repo).map(|(_, sub)| *sub)
}

fn is_pause(repo: &str) -> bool {
    PAUSE_REPOSITORY_PREFIXES.iter().any(|prefix| repo.starts_with(prefix))
}

/// Decides how to run a container: `image`, its `command` (entrypoint override) and `args`, as in the pod spec.
///
/// - agnhost (`registry.k8s.io/e2e-test-images/agnhost:*` and its older homes): `<ferry_exe> agnhost ...` with
///   the container's `args` (the image's default is `pause`); a `command` starting with `/agnhost` (or
///   `agnhost`) is honoured with that element dropped; any other `command` runs from the host filesystem.
/// - pause (`registry.k8s.io/pause*`, `k8s.gcr.io/pause*`): `<ferry_exe> agnhost pause`.
/// - the book's images, any tag (`luksa/kubia`, `kubia/manual`, `yinzige/kubia` → `agnhost kubia`;
///   `luksa/kubia-unhealthy` → `agnhost kubia-unhealthy`; `luksa/ssd-monitor` → `agnhost ssd-monitor`;
///   `luksa/batch-job` → `agnhost batch-job`) without a `command`: that subcommand. Their `args` are dropped, as
///   the images' entrypoints ignore them (`node app.js` and shell-form scripts).
/// - any other image with an explicit `command`: that command (plus `args`) from the host filesystem.
/// - anything else: [`Plan::NotRunnable`] with reason `ErrImagePull`.
pub fn resolve(ferry_exe: &Path, image: &str, command: &[String], args: &[String]) -> Plan {
    let repo = repository(image);
    let builtin = |agnhost_args: Vec<String>| {
        let mut argv = vec![ferry_exe.to_string_lossy().into_owned(), "agnhost".to_string()];
        argv.extend(agnhost_args);
        Plan::Run {
            image: image.to_string(),
            kind: PlanKind::BuiltinAgnhost,
            argv,
            image_env: vec![("PATH".to_string(), DEFAULT_PATH.to_string())],
        }
    };
    let host = || {
        let mut argv = command.to_vec();
        argv.extend(args.iter().cloned());
        Plan::Run {
            image: image.to_string(),
            kind: PlanKind::HostCommand,
            argv,
            image_env: vec![("PATH".to_string(), DEFAULT_PATH.to_string())],
        }
    };
    if is_agnhost(repo) {
        return match command.first().map(String::as_str) {
            None if args.is_empty() => builtin(vec!["pause".to_string()]),
            None => builtin(args.to_vec()),
            Some("/agnhost" | "agnhost" | "./agnhost") => {
                let mut rest: Vec<String> = command[1..].to_vec();
                rest.extend(args.iter().cloned());
                builtin(rest)
            }
            Some(_) => host(),
        };
    }
    if is_pause(repo) {
        return match command.first().map(String::as_str) {
            // The pause image's own program: exits 0 on SIGTERM (agnhost's `pause` exits 2).
            None | Some("/pause") => builtin(vec!["pause-image".to_string()]),
            Some(_) => host(),
        };
    }
    if let Some(sub) = book_image(repo) {
        return match command.first() {
            None => builtin(vec![sub.to_string()]),
            Some(_) => host(),
        };
    }
    if !command.is_empty() {
        return host();
    }
    Plan::NotRunnable {
        image: image.to_string(),
        reason: "ErrImagePull".to_string(),
        message: format!(
            "ferry runs no registry images: image \"{image}\" is not built in. Use \
             registry.k8s.io/e2e-test-images/agnhost (built in) or registry.k8s.io/pause, or give the container \
             an explicit `command` to run from the node's filesystem"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn argv(plan: &Plan) -> Vec<String> {
        match plan {
            Plan::Run { argv, .. } => argv.clone(),
            Plan::NotRunnable { .. } => panic!("not runnable: {plan:?}"),
        }
    }

    const EXE: &str = "/usr/bin/ferry";

    #[test]
    fn repository_strips_tag_and_digest_but_not_registry_port() {
        assert_eq!(
            repository("registry.k8s.io/e2e-test-images/agnhost:2.53"),
            "registry.k8s.io/e2e-test-images/agnhost"
        );
        assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository("localhost:5000/app:v1@sha256:abc"), "localhost:5000/app");
        assert_eq!(repository("busybox"), "busybox");
    }

    #[test]
    fn agnhost_args_and_commands() {
        let exe = Path::new(EXE);
        let img = "registry.k8s.io/e2e-test-images/agnhost:2.53";
        assert_eq!(argv(&resolve(exe, img, &[], &[])), s(&[EXE, "agnhost", "pause"]));
        assert_eq!(
            argv(&resolve(exe, img, &[], &s(&["netexec", "--http-port=8080"]))),
            s(&[EXE, "agnhost", "netexec", "--http-port=8080"])
        );
        assert_eq!(
            argv(&resolve(exe, img, &s(&["/agnhost", "serve-hostname"]), &s(&["--port", "9376"]))),
            s(&[EXE, "agnhost", "serve-hostname", "--port", "9376"])
        );
        for old in ["k8s.gcr.io/e2e-test-images/agnhost:2.20", "gcr.io/kubernetes-e2e-test-images/agnhost@sha256:00"] {
            assert_eq!(argv(&resolve(exe, old, &[], &s(&["pause"]))), s(&[EXE, "agnhost", "pause"]));
        }
        let shell = resolve(exe, img, &s(&["/bin/sh", "-c"]), &s(&["echo hi"]));
        assert_eq!(argv(&shell), s(&["/bin/sh", "-c", "echo hi"]));
        assert_eq!(
            shell.describe(),
            "Running image \"registry.k8s.io/e2e-test-images/agnhost:2.53\" as host command /bin/sh"
        );
    }

    #[test]
    fn pause_images() {
        let exe = Path::new(EXE);
        for img in ["registry.k8s.io/pause:3.10", "k8s.gcr.io/pause", "k8s.gcr.io/pause-amd64:3.1"] {
            let plan = resolve(exe, img, &[], &[]);
            assert_eq!(argv(&plan), s(&[EXE, "agnhost", "pause-image"]));
            assert_eq!(plan.describe(), format!("Running image \"{img}\" as built-in agnhost"));
        }
    }

    #[test]
    fn book_images_run_their_built_in_stand_ins() {
        let exe = Path::new(EXE);
        for (img, sub) in [
            ("luksa/kubia", "kubia"),
            ("luksa/kubia:v1", "kubia"),
            ("docker.io/luksa/kubia:latest", "kubia"),
            ("index.docker.io/luksa/kubia@sha256:00", "kubia"),
            ("kubia/manual", "kubia"),
            ("yinzige/kubia", "kubia"),
            ("luksa/kubia-unhealthy", "kubia-unhealthy"),
            ("luksa/ssd-monitor", "ssd-monitor"),
            ("luksa/batch-job:latest", "batch-job"),
        ] {
            let plan = resolve(exe, img, &[], &[]);
            assert_eq!(argv(&plan), s(&[EXE, "agnhost", sub]), "{img}");
            assert_eq!(plan.describe(), format!("Running image \"{img}\" as built-in agnhost"));
            // The images' entrypoints ignore arguments.
            assert_eq!(argv(&resolve(exe, img, &[], &s(&["--x"]))), s(&[EXE, "agnhost", sub]), "{img}");
        }
        // An explicit command runs from the host, as for any image.
        let plan = resolve(exe, "luksa/kubia", &s(&["/bin/sh", "-c", "true"]), &[]);
        assert!(matches!(&plan, Plan::Run { kind: PlanKind::HostCommand, .. }), "{plan:?}");
        // Similar names are not the book's images.
        for img in ["kubia", "luksa/kubia-pet", "example.com/luksa/kubia", "luksa/kubia-unhealthy-x"] {
            assert!(matches!(resolve(exe, img, &[], &[]), Plan::NotRunnable { .. }), "{img}");
        }
    }

    #[test]
    fn other_images_need_a_command() {
        let exe = Path::new(EXE);
        let plan = resolve(exe, "busybox:1.36", &s(&["sh", "-c", "sleep 10"]), &[]);
        assert!(matches!(&plan, Plan::Run { kind: PlanKind::HostCommand, .. }));
        assert_eq!(argv(&plan), s(&["sh", "-c", "sleep 10"]));

        let plan = resolve(exe, "nginx:1.27", &[], &s(&["-g", "daemon off;"]));
        match &plan {
            Plan::NotRunnable { reason, message, .. } => {
                assert_eq!(reason, "ErrImagePull");
                assert!(message.contains("\"nginx:1.27\""), "{message}");
                assert!(message.contains("agnhost") && message.contains("`command`"), "{message}");
            }
            Plan::Run { .. } => panic!("nginx without a command must not run"),
        }
    }
}
