//! The arms: one module each, or one for arms that share a server process. Each returns
//! its figures as `ArmResult`s; `crate::run` picks and orders them.

pub mod gateway_kafka;
pub mod journal;
pub mod overload;
pub mod publish;
pub mod rdkafka_raw;
pub mod recovery;
pub mod replay;
pub mod soak;
pub mod validate;
