//! ferry's built-in stand-in for Kubernetes' e2e test image `registry.k8s.io/e2e-test-images/agnhost`: the node
//! agent runs `ferry agnhost <subcommand> [flags]` where a pod names that image. Subcommands, flags, defaults,
//! response bodies and exit codes follow upstream agnhost (Kubernetes v1.33, `test/images/agnhost/`).
//!
//! Implemented: `pause`, `serve-hostname`, `netexec`, `connect`, `liveness`, `test-webserver`, plus ferry
//! extensions: `pause-image`, which behaves as `registry.k8s.io/pause`'s `/pause` (exit 0 on SIGINT/SIGTERM), and
//! stand-ins for the images of the book "Kubernetes in Action" the seeds use: `kubia` (`luksa/kubia`,
//! `kubia/manual`, `yinzige/kubia`), `kubia-unhealthy`, `ssd-monitor` and `batch-job` (its sleep is
//! `BATCH_JOB_SECONDS` when set, else 120 s).
//!
//! Library shape: [`main`] parses the command line and blocks on its own tokio runtime; each subcommand is also
//! available as a typed config plus an async `bind`/`run` pair so tests serve on 127.0.0.1 ephemeral ports and
//! deliver signals through a channel ([`Signals::channel`]).
#![forbid(unsafe_code)]

pub mod book_scripts;
mod client;
pub mod connect;
mod flags;
pub mod golang;
pub mod kubia;
pub mod liveness;
pub mod netexec;
pub mod pause;
pub mod serve_hostname;
mod signals;
pub mod test_webserver;
pub mod web;

use std::future::Future;
use std::io;
use std::net::IpAddr;

pub use signals::{Handled, Signal, Signals};

use flags::{FlagDef, ParseStop, Parsed};

/// The agnhost version this crate mirrors (what `--version` prints upstream for Kubernetes v1.33's e2e suite).
pub const AGNHOST_VERSION: &str = "2.53";

/// Where servers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindHost {
    /// Every address of the (pod's) network namespace, IPv6 and IPv4, as upstream's `:port`.
    Any,
    /// One address (tests use 127.0.0.1).
    Ip(IpAddr),
}

/// Where the served hostname comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostnameSource {
    /// The kernel's hostname (the pod's UTS namespace), as Go's `os.Hostname()` reads it; the `HOSTNAME`
    /// environment variable if the kernel's cannot be read.
    System,
    /// A fixed name (tests).
    Fixed(String),
}

impl HostnameSource {
    /// The hostname now.
    pub fn get(&self) -> io::Result<String> {
        match self {
            HostnameSource::Fixed(name) => Ok(name.clone()),
            HostnameSource::System => match std::fs::read_to_string("/proc/sys/kernel/hostname") {
                Ok(name) => Ok(name.trim_end_matches('\n').to_string()),
                Err(err) => std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).ok_or(err),
            },
        }
    }
}

/// Runs agnhost with `args`, the words after `ferry agnhost` (`["netexec", "--http-port=8080"]`), and returns the
/// process exit code. Blocks until the subcommand ends; builds its own tokio runtime. The caller should exit the
/// process with the returned code at once (an `/exit` request expects the process gone, not lingering).
///
/// Call it before anything else in the process installs signal handlers: subcommands take over only the signals
/// upstream handles, and the rest must keep their default action (a SIGTERM to `liveness` kills it, as upstream).
pub fn main(args: Vec<String>) -> i32 {
    golang::mark_process_start();
    let Some((sub, rest)) = args.split_first() else {
        print!("{}", root_help());
        return 0;
    };
    match sub.as_str() {
        "-h" | "--help" | "help" => {
            print!("{}", root_help());
            0
        }
        "--version" => {
            println!("app version {AGNHOST_VERSION}");
            0
        }
        "pause" => with_flags("pause", &[], rest, Some(0), |_| block_on(pause::run_agnhost_pause(None))),
        "pause-image" => pause::run_pause_image(rest),
        "serve-hostname" => with_flags("serve-hostname", serve_hostname::FLAGS, rest, Some(0), |p| {
            block_on(serve_hostname::main(serve_hostname::ServeHostnameConfig::from_flags(p)))
        }),
        "netexec" => with_flags("netexec", netexec::FLAGS, rest, Some(0), |p| {
            block_on(netexec::main(netexec::NetexecConfig::from_flags(p)))
        }),
        "connect" => connect::cli(rest),
        "liveness" => with_flags("liveness", &[], rest, Some(0), |_| block_on(liveness::main())),
        "test-webserver" => with_flags("test-webserver", test_webserver::FLAGS, rest, Some(0), |p| {
            block_on(test_webserver::main(test_webserver::TestWebserverConfig::from_flags(p)))
        }),
        // The book's programs take no arguments and ignore any they are given.
        "kubia" => block_on(kubia::main(kubia::KubiaVariant::Healthy)),
        "kubia-unhealthy" => block_on(kubia::main(kubia::KubiaVariant::Unhealthy)),
        "ssd-monitor" => block_on(book_scripts::ssd_monitor_main()),
        "batch-job" => block_on(book_scripts::batch_job_main()),
        other => {
            eprintln!("Error: unknown command \"{other}\" for \"app\"\nRun 'app --help' for usage.");
            // Upstream ignores cobra's error: the process still exits 0.
            0
        }
    }
}

fn root_help() -> String {
    let mut out = String::from("Usage:\n  app [command]\n\nAvailable Commands:\n");
    for (name, short) in [
        ("batch-job", "Prints a start line, works 120 s (BATCH_JOB_SECONDS), prints an end line (ferry extension)"),
        ("connect", "Attempts a TCP, UDP or SCTP connection and returns useful errors"),
        ("kubia", "Answers every HTTP request on :8080 with the hostname (ferry extension)"),
        ("kubia-unhealthy", "As kubia, but answers 500 after the fifth request (ferry extension)"),
        ("liveness", "Starts a server that is alive for 10 seconds"),
        ("netexec", "Creates HTTP(S), UDP, and (optionally) SCTP servers with various endpoints"),
        ("pause", "Pauses the execution"),
        ("pause-image", "Behaves as registry.k8s.io/pause (ferry extension)"),
        ("serve-hostname", "Serves the hostname"),
        ("ssd-monitor", "Prints SSD OK every 5 seconds (ferry extension)"),
        ("test-webserver", "Starts a simple HTTP fileserver"),
    ] {
        out.push_str(&format!("  {name:<16}{short}\n"));
    }
    out.push_str("\nUse \"app [command] --help\" for more information about a command.\n");
    out
}

/// Parses flags for a subcommand the way cobra does, then runs `body`. `max_args` bounds positional arguments
/// (cobra's `MaximumNArgs`). Parse errors print cobra's text and, as upstream ignores them, exit 0.
pub(crate) fn with_flags(
    name: &str,
    defs: &[FlagDef],
    argv: &[String],
    max_args: Option<usize>,
    body: impl FnOnce(&Parsed) -> i32,
) -> i32 {
    let usage = || format!("Usage:\n  app {name} [flags]\n\n{}", flags::usage(defs));
    match flags::parse(defs, argv) {
        Ok(parsed) => {
            if let Some(max) = max_args {
                if parsed.args.len() > max {
                    eprintln!("Error: accepts at most {max} arg(s), received {}\n{}", parsed.args.len(), usage());
                    return 0;
                }
            }
            body(&parsed)
        }
        Err(ParseStop::Help) => {
            print!("{}", usage());
            0
        }
        Err(ParseStop::Error(msg)) => {
            eprintln!("Error: {msg}\n{}", usage());
            0
        }
    }
}

/// Runs `fut` on a fresh single-threaded runtime and returns its exit code without waiting for stragglers.
pub(crate) fn block_on<F: Future<Output = i32>>(fut: F) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            golang::log(&format!("failed to start runtime: {err}"));
            return 1;
        }
    };
    let code = runtime.block_on(fut);
    runtime.shutdown_background();
    code
}

/// Go's `log.Fatal`: log the message and exit 1.
pub(crate) fn fatal(message: &str) -> i32 {
    golang::log(message);
    1
}
