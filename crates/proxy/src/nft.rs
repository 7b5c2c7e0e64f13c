//! The real data plane: one ferry-owned `ip` table programmed through `nft -f -`, written whole on the first
//! sync (delete-if-exists and create in one transaction) and as a diff afterwards.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::dataplane::{Dataplane, DataplaneError, Transaction};
use crate::render;

/// Where and how to program the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftConfig {
    /// Name of the `ip` table this data plane owns (unique per cluster, e.g. `<prefix>-proxy`).
    pub table: String,
    /// Run `nft`/`conntrack` inside this named network namespace (`ip netns exec`); `None`: the caller's own.
    pub netns: Option<String>,
    /// Path or name of the `nft` binary.
    pub nft: String,
    /// Path or name of the `conntrack` binary; `None` skips clearing stale UDP entries.
    pub conntrack: Option<String>,
}

impl NftConfig {
    /// Defaults for `table`: `nft` and `conntrack` from `PATH`, the caller's network namespace.
    pub fn new(table: impl Into<String>) -> NftConfig {
        NftConfig { table: table.into(), netns: None, nft: "nft".into(), conntrack: Some("conntrack".into()) }
    }
}

/// Programs one nftables table with the `nft` command.
#[derive(Debug)]
pub struct NftDataplane {
    config: NftConfig,
    /// The kernel table is not known to match the last applied ruleset: the next apply rewrites it whole.
    dirty: bool,
}

impl NftDataplane {
    /// No IO happens until the first [`Dataplane::apply`].
    pub fn new(config: NftConfig) -> NftDataplane {
        NftDataplane { config, dirty: true }
    }

    pub fn config(&self) -> &NftConfig {
        &self.config
    }

    fn command(&self, program: &str) -> Command {
        match &self.config.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, program]);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Runs `nft -f -` with `script` on stdin.
    pub fn run_script(&self, script: &str) -> Result<(), DataplaneError> {
        let spawn_err = |source| DataplaneError::Spawn { program: self.config.nft.clone(), source };
        let mut child = self
            .command(&self.config.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let stdin = child.stdin.take();
        // Feed stdin from a thread so a chatty stderr cannot deadlock us.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    // A write error means nft exited early; its status and stderr say why.
                    let _ = stdin.write_all(script.as_bytes());
                }
            });
            child.wait_with_output()
        })
        .map_err(spawn_err)?;
        if output.status.success() {
            return Ok(());
        }
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        stderr.truncate(4096);
        Err(DataplaneError::Nft { status: output.status.to_string(), stderr })
    }

    fn clear_udp(&self, tx: &Transaction<'_>) {
        let Some(conntrack) = &self.config.conntrack else { return };
        for ip in tx.stale_udp_endpoints {
            let ip = ip.to_string();
            // Exit status 1 means "no entries matched"; either way the entries are gone.
            let result = self
                .command(conntrack)
                .args(["-D", "-p", "udp", "--dst-nat", &ip])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Err(error) = result {
                tracing::debug!(%error, endpoint = %ip, "clearing UDP conntrack entries");
                return;
            }
        }
    }
}

impl Dataplane for NftDataplane {
    fn apply(&mut self, tx: &Transaction<'_>) -> Result<(), DataplaneError> {
        let full = tx.full || self.dirty;
        if !full && tx.ops.is_empty() {
            return Ok(());
        }
        let script = match full {
            true => render::full_script(&self.config.table, tx.ruleset),
            false => render::ops_script(&self.config.table, tx.ops),
        };
        if let Err(error) = self.run_script(&script) {
            self.dirty = true;
            return Err(error);
        }
        self.dirty = false;
        self.clear_udp(tx);
        Ok(())
    }

    fn cleanup(&mut self) -> Result<(), DataplaneError> {
        self.dirty = true;
        let table = &self.config.table;
        self.run_script(&format!("add table ip {table}\ndelete table ip {table}\n"))
    }
}
