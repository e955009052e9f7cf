//! `loket schemas list`.

use std::process::ExitCode;

use loket_server::proto::ListSchemasRequest;
use serde_json::json;

use crate::cli::SchemasListArgs;
use crate::output;
use crate::publish::connected;

pub async fn list(args: SchemasListArgs) -> anyhow::Result<ExitCode> {
    let mut client = connected(&args.client).await?;
    let reply = match client.list_schemas(ListSchemasRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(output::report_failure("schemas list", &status)),
    };
    if args.json {
        for s in &reply.schemas {
            println!(
                "{}",
                json!({"type": s.r#type, "version": s.version, "id": s.id, "latest": s.latest,
                       "title": s.title, "required": s.required, "expected": s.expected})
            );
        }
    } else {
        println!("{:<26} {:>7}  {:<6}  {:<44} EXPECTED FIELDS", "TYPE", "VERSION", "LATEST", "DATASCHEMA");
        for s in &reply.schemas {
            println!(
                "{:<26} {:>7}  {:<6}  {:<44} {}",
                s.r#type,
                s.version,
                if s.latest { "yes" } else { "" },
                s.id,
                s.expected.join(" ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
