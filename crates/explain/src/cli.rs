//! The `ferry explain` command line: its clap arguments, the kubeconfig lookup and the entry point the binary
//! calls.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::gather::{explain_service, Request};
use crate::report::render;

/// `ferry explain KIND ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ExplainCommand {
    /// Walk the Service troubleshooting checklist: the service, the pods its selector matches and why each is or
    /// is not an endpoint, the proxy's nftables rules for it, and live TCP connections to its endpoints and
    /// ClusterIP; ends with one verdict line per problem.
    Service(ServiceArgs),
}

/// Arguments of `ferry explain service`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// The service's name.
    pub name: String,
    /// Its namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig to use (default: $KUBECONFIG, else the server's `<data dir>/kubeconfig.yaml`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Milliseconds each connection attempt may take.
    #[arg(long, default_value_t = 1000)]
    pub connect_timeout_ms: u64,
}

/// The kubeconfig to use: the flag, else the first path of `$KUBECONFIG`, else `<data dir>/kubeconfig.yaml`.
pub fn kubeconfig_path(flag: Option<&Path>, env: Option<OsString>, data_dir: &Path) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    let from_env = env.as_ref().and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()));
    from_env.unwrap_or_else(|| data_dir.join("kubeconfig.yaml"))
}

/// Runs `ferry explain ...` and returns the process exit code (0: a report was printed; 1: it could not be made).
/// `data_dir` is the server's default data dir, where its admin kubeconfig lives.
pub fn main(command: ExplainCommand, data_dir: &Path) -> i32 {
    let ExplainCommand::Service(args) = command;
    let request = Request {
        kubeconfig: kubeconfig_path(args.kubeconfig.as_deref(), std::env::var_os("KUBECONFIG"), data_dir),
        namespace: args.namespace,
        name: args.name,
        timeout: Duration::from_millis(args.connect_timeout_ms.max(1)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(explain_service(&request)) {
        Ok(explanation) => {
            print!("{}", render(&explanation));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
