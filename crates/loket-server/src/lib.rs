//! loket's gRPC gateway. [`run`] serves it on a listener until a shutdown future completes;
//! [`client`] connects to one as a partner.

mod access;
pub mod certs;
pub mod client;
pub mod config;
mod dashboard;
mod delivery;
mod digest;
mod error;
mod http;
mod identity;
mod intake;
mod kafka_mode;
pub mod log;
mod metrics;
mod quality;
mod server;
mod service;
mod subscription;
pub mod timestamp;
mod tls;

pub use config::Config;
pub use error::{Error, ERROR_DOMAIN};
pub use identity::PARTNER_HEADER;
pub use server::{check_config, rebuild_quality, run, run_with};

/// The generated `loket.v1` messages, client and server.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("loket.v1");

    /// Descriptor set of `proto/`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("loket_descriptor");
}
