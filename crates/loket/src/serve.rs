//! `loket serve` and `loket certs init`.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use loket_domain::PartnerId;
use loket_server::{certs, Config};

use crate::cli::{CertsInitArgs, CertsRevokeArgs, ServeArgs};

/// The configuration `serve` runs with: the file (or defaults) and the environment's
/// overrides.
pub fn load(args: &ServeArgs) -> Result<Config, loket_server::Error> {
    let env: HashMap<String, String> = std::env::vars().collect();
    Config::load(args.config.as_deref(), &env)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.check_config {
        let env: HashMap<String, String> = std::env::vars().collect();
        return Ok(check_config(args, &env));
    }
    let config = load(&args)?;
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    loket_server::run(listener, config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `serve --check-config`: the configuration as `serve` would read it, checked as far as
/// the gateway checks it before it opens anything; every problem on its own line.
fn check_config(args: ServeArgs, env: &HashMap<String, String>) -> ExitCode {
    let origin = args.config.as_ref().map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
    let checked = Config::load(args.config.as_deref(), env).and_then(|config| loket_server::check_config(&config));
    match checked {
        Ok(()) => {
            println!("{origin}: valid");
            ExitCode::SUCCESS
        }
        Err(loket_server::Error::Config(problems)) => {
            for problem in &problems {
                println!("{problem}");
            }
            ExitCode::FAILURE
        }
        Err(other) => {
            println!("{origin}: {other}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub fn certs_init(args: CertsInitArgs) -> anyhow::Result<()> {
    let mut partners = Vec::new();
    let mut bad = Vec::new();
    for p in &args.partners {
        match p.parse::<PartnerId>() {
            Ok(id) => partners.push(id),
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        anyhow::bail!("--partners: {}", bad.join("; "));
    }
    if args.oin {
        certs::init_with_oins(&args.out, &partners, args.force)?;
    } else {
        certs::init(&args.out, &partners, args.force)?;
    }
    let names: Vec<&str> = partners.iter().map(PartnerId::as_str).collect();
    println!(
        "wrote a development CA, a server certificate for localhost/127.0.0.1 and client certificates for {} into {}",
        names.join(", "),
        args.out.display()
    );
    if args.oin {
        println!(
            "each client certificate carries a development OIN in its subject serialNumber; with [tls] identity = \"oin\" \
             add the [partners.<id>] oin lines of {} to the configuration",
            args.out.join(certs::OINS).display()
        );
    }
    Ok(())
}

/// `loket certs revoke`: a revocation list of the development CA for the named
/// certificates. Names are file names in the PKI directory, so nothing that would reach
/// outside it is taken.
pub fn certs_revoke(args: CertsRevokeArgs) -> anyhow::Result<()> {
    let bad: Vec<&str> = args
        .names
        .iter()
        .map(String::as_str)
        .filter(|n| {
            n.is_empty() || n.starts_with('.') || !n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
        .collect();
    if !bad.is_empty() {
        anyhow::bail!(
            "not a certificate name (letters, digits, '.', '_', '-'; not starting with '.'): {}",
            bad.join(", ")
        );
    }
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    let crl = certs::revoke(&args.dir, &names)?;
    println!(
        "wrote {} revoking {}; name it in [tls] crl and restart the gateway (it reads the lists at start-up)",
        crl.display(),
        names.join(", ")
    );
    Ok(())
}
