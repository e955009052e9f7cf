//! loket's gRPC gateway. [`run`] serves it on a listener until a shutdown future completes;
//! [`client`] connects to one as a partner.
//!
//! One folder per concern (see ARCHITECTURE.md): `publish/` (intake and the publish
//! pipeline), `subscribe/` (subscriptions, cursors, acks), `view/` (what a subscriber gets
//! of a stored event, on gRPC and Kafka alike), `access/` (who is calling, the policy's
//! index, the denial log), `messagelog/` (rejections, export), `quality/` (counting,
//! report, digests, dashboard), `kafka/` (Kafka mode), `http/` (metrics listener), `tls/`
//! (certificates and the partner client), `proto/` (the wire), `config/`. `service.rs` is
//! the thin gRPC adapter, `error.rs` the one place errors become statuses, `server.rs`
//! starts and stops it all.

mod access;
pub mod config;
mod disk;
mod erasure;
mod error;
mod http;
mod kafka;
mod limits;
pub mod messagelog;
mod processing;
pub mod proto;
mod publish;
mod quality;
mod retention;
mod server;
mod service;
mod subscribe;
mod tls;
mod trace;
mod view;

pub use access::PARTNER_HEADER;
pub use config::Config;
pub use disk::PUBLISH_HEALTH;
pub use error::{Error, ERROR_DOMAIN};
pub use proto::timestamp;
pub use publish::OfflineIntake;
pub use server::{check_config, rebuild_quality, run, run_with};
pub use tls::{certs, client};
