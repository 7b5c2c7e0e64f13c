//! ferry's node Service proxy in kernel mode (kube-proxy's nftables mode, spec §5).
//!
//! Inputs are plain values ([`ServiceInfo`], [`EndpointInfo`]) decoded from Services and EndpointSlices by the
//! [`ChangeTracker`], which also remembers which Services changed. [`desired::service_fragment`] turns one
//! Service port and its endpoints into a [`Fragment`] of the table (chains, affinity sets, verdict-map
//! elements); the [`Ruleset`] holds every fragment and yields the [`Op`]s between two states. A [`Dataplane`]
//! applies them: [`NftDataplane`] through `nft -f -` on one owned table, [`FakeDataplane`] on a model with a
//! packet tracer. The [`Proxier`] ties these together and keeps each sync proportional to what changed; the
//! [`HealthServer`] answers healthCheckNodePorts.
//!
//! Table layout (family `ip`, name chosen by the caller):
//! - base chains `nat-prerouting`/`nat-output` (dstnat) jump to `services`, which dispatches with
//!   `ip daddr . meta l4proto . th dport vmap @service-ips` and, for local destinations,
//!   `meta l4proto . th dport vmap @service-nodeports`;
//! - `svc-<ns>/<name>/<proto>/<port>` (all endpoints) and `local-…` (this node's) pick an endpoint with one
//!   `numgen random mod (n-i) 0` rule per endpoint (probability 1/(n-i) each, so uniform). The rule DNATs
//!   directly when the bridge hairpin rule is configured and there is no affinity; otherwise it jumps to an
//!   `ep-…__<ip>/<port>` chain that marks hairpin traffic, records ClientIP affinity in an `aff-<timeout>-…`
//!   set (checked first in the service chain) and DNATs. `ext-…` handles external traffic (masquerade for
//!   Cluster policy; pod and host short-circuits for Local);
//! - base chains `filter-input`/`filter-forward`/`filter-output` (after DNAT) jump to `endpoints-check`, which
//!   looks up `@no-endpoint-services` / `@no-endpoint-nodeports` (reject or drop) for traffic still addressed
//!   to a service;
//! - `nat-postrouting` jumps to `masquerading`, which masquerades packets marked by `mark-for-masquerade`.
#![forbid(unsafe_code)]

pub mod dataplane;
pub mod desired;
pub mod fake;
pub mod health;
pub mod model;
pub mod nft;
pub mod node;
pub mod proxier;
pub mod render;
pub mod ruleset;
pub mod tracker;

pub use dataplane::{Dataplane, DataplaneError, Transaction};
pub use desired::{desired, service_fragment, BridgeHairpin, Categorized, ProxyConfig};
pub use fake::{FakeDataplane, Numgen, Origin, Packet, SeededNumgen, SequenceNumgen, Verdict};
pub use health::{HealthServer, HealthTarget};
pub use model::{EndpointInfo, Ipv4Net, Protocol, ServiceInfo, ServiceName, ServicePortName, SliceInfo, TrafficPolicy};
pub use nft::{NftConfig, NftDataplane};
pub use node::{run_node_proxy, NodeProxyConfig, NodeProxyError};
pub use proxier::{run, Proxier, ProxyEvent, RunConfig, SyncError, SyncStats};
pub use ruleset::{Fragment, Op, Ruleset};
pub use tracker::ChangeTracker;
