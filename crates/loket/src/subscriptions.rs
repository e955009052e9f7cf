//! `loket subscriptions list|delete`: a partner's named subscriptions on the gateway.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use loket_server::proto::{DeleteSubscriptionRequest, ListSubscriptionsRequest};
use serde_json::json;

use crate::cli::ClientArgs;
use crate::output;
use crate::publish::connected;

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// List your named subscriptions: name, last acknowledged sequence, last use, open now.
    List(ListArgs),
    /// Delete one of your named subscriptions (refused while a stream of it is open).
    /// Exit status: 0 deleted, 2 no such subscription, 1 any other failure.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The subscription's name.
    pub name: String,
}

pub async fn run(command: SubscriptionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SubscriptionsCommand::List(args) => list(args).await,
        SubscriptionsCommand::Delete(args) => delete(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut client = connected(&args.client).await?;
    let reply = match client.list_subscriptions(ListSubscriptionsRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("subscriptions list", &status)),
    };
    let used = |s: &loket_server::proto::SubscriptionInfo| {
        s.last_used.as_ref().map(loket_messagelog::timestamp::rfc3339).unwrap_or_default()
    };
    if args.json {
        for s in &reply.subscriptions {
            println!("{}", json!({"name": s.name, "acked": s.acked, "last_used": used(s), "open": s.open}));
        }
    } else {
        println!("{:<32} {:>12}  {:<30} OPEN", "NAME", "ACKED", "LAST USED");
        for s in &reply.subscriptions {
            println!("{:<32} {:>12}  {:<30} {}", s.name, s.acked, used(s), if s.open { "yes" } else { "" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut client = connected(&args.client).await?;
    match client.delete_subscription(DeleteSubscriptionRequest { name: args.name.clone() }).await {
        Ok(_) => {
            println!("{}", json!({"deleted": args.name}));
            Ok(ExitCode::SUCCESS)
        }
        Err(status) if status.code() == tonic::Code::NotFound => {
            eprintln!("subscriptions delete: {}", status.message());
            Ok(ExitCode::from(2))
        }
        Err(status) => Ok(output::report_failure("subscriptions delete", &status)),
    }
}
