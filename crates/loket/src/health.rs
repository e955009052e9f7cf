//! `loket health`: asks a gateway's `grpc.health.v1.Health` whether `loket.v1.Gateway` is
//! serving, as a partner (mutual TLS), for container health checks and monitoring.
//! Exit status: 0 serving, 1 anything else (not serving, unreachable, refused).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use loket_server::client::endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::cli::HealthArgs;
use crate::publish::options;

/// The service a gateway reports on.
const SERVICE: &str = "loket.v1.Gateway";

pub async fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let limit = Duration::from_secs(args.timeout_secs);
    let (endpoint, header) = endpoint(&options(&args.client))?;
    let channel = endpoint
        .connect_timeout(limit)
        .timeout(limit)
        .connect()
        .await
        .with_context(|| format!("cannot reach {}", args.client.server))?;
    let mut health = HealthClient::with_interceptor(channel, header);
    let reply = health
        .check(HealthCheckRequest { service: SERVICE.to_owned() })
        .await
        .with_context(|| format!("{} did not answer the health check", args.client.server))?
        .into_inner();
    let status = ServingStatus::try_from(reply.status).unwrap_or(ServingStatus::Unknown);
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
