//! `loket publish`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use loket_messagelog::timestamp::parse_rfc3339;
use loket_server::client::{connect, Client, ClientOptions};
use loket_server::proto::{CloudEvent, PublishRequest};

use crate::cli::{ClientArgs, PublishArgs};
use crate::output;
use crate::retry::retrying;

pub fn options(args: &ClientArgs) -> ClientOptions {
    ClientOptions { server: args.server.clone(), certs: args.certs.clone(), partner: args.partner.clone() }
}

/// A client connected as the command line says, or why not (naming the server).
pub async fn connected(args: &ClientArgs) -> anyhow::Result<Client> {
    connect(&options(args)).await.with_context(|| format!("cannot connect to {}", args.server))
}

pub async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let data = if args.data == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("cannot read the payload from standard input")?;
        buf
    } else {
        std::fs::read(&args.data).with_context(|| format!("cannot read the payload file {}", args.data))?
    };
    let time = match &args.time {
        None => None,
        Some(t) => Some(parse_rfc3339(t).with_context(|| format!("--time {t:?} is not an RFC 3339 time"))?),
    };
    let id = args.id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let extensions = args
        .extensions
        .iter()
        .map(|pair| {
            let (name, value) =
                pair.split_once('=').with_context(|| format!("--extension {pair:?} is not NAME=VALUE"))?;
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    let event = CloudEvent {
        extensions,
        id: id.clone(),
        source: args.client.partner.clone(),
        r#type: args.event_type.clone(),
        subject: args.subject.clone().unwrap_or_default(),
        time,
        dataschema: args.dataschema.clone().unwrap_or_default(),
        datacontenttype: "application/json".to_owned(),
        data,
        specversion: "1.0".to_owned(),
    };
    let client = connected(&args.client).await?;
    // Over a quota, shed or unavailable: wait as the gateway advises and try again.
    let published = retrying(|| {
        let mut client = client.clone();
        let request = PublishRequest { event: Some(event.clone()) };
        async move { client.publish(request).await }
    })
    .await;
    match published {
        Ok(reply) => {
            println!("{}", output::publish_reply(&id, reply.get_ref()));
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => Ok(output::report_failure("publish", &status)),
    }
}
