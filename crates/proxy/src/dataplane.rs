//! The narrow kernel-facing step: a [`Dataplane`] applies one [`Transaction`] (the desired table plus the ops
//! that reach it from the previous one) and can remove everything it created.

use std::net::Ipv4Addr;

use crate::ruleset::{Op, Ruleset};

/// One sync's worth of changes.
#[derive(Clone, Copy, Debug)]
pub struct Transaction<'a> {
    /// The whole desired table after this transaction.
    pub ruleset: &'a Ruleset,
    /// The ops turning the previously applied table into `ruleset`, in apply order.
    pub ops: &'a [Op],
    /// Rewrite the whole table from `ruleset` instead of applying `ops` (first sync, or after a failure).
    pub full: bool,
    /// UDP endpoints that stopped being used: their conntrack entries should go.
    pub stale_udp_endpoints: &'a [Ipv4Addr],
}

/// Why a transaction was not applied.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("running {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("nft failed ({status}): {stderr}")]
    Nft { status: String, stderr: String },
    #[error("op {op} rejected: {reason}")]
    Rejected { op: String, reason: String },
}

/// Applies transactions to a packet-processing table. Object safe: the proxier may hold a `Box<dyn Dataplane>`.
pub trait Dataplane: Send {
    /// Applies `tx` atomically: on error the previous table stays in force (and the next call should be full).
    fn apply(&mut self, tx: &Transaction<'_>) -> Result<(), DataplaneError>;
    /// Removes everything this data plane created.
    fn cleanup(&mut self) -> Result<(), DataplaneError>;
}

impl<D: Dataplane + ?Sized> Dataplane for Box<D> {
    fn apply(&mut self, tx: &Transaction<'_>) -> Result<(), DataplaneError> {
        (**self).apply(tx)
    }
    fn cleanup(&mut self) -> Result<(), DataplaneError> {
        (**self).cleanup()
    }
}
