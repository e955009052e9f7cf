//! The `loket` command line, driven as a user would: real processes, real files.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

fn loket(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loket")).args(args).stdin(Stdio::null()).output().unwrap()
}

fn client_args<'a>(gw: &'a ServeProcess, url: &'a str, certs: &'a str, partner: &'a str) -> Vec<&'a str> {
    let _ = gw;
    vec!["--server", url, "--certs", certs, "--as", partner]
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_json(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.display().to_string()
}

#[test]
fn certs_init_writes_a_pki_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let out_s = out.display().to_string();
    let ok = loket(&["certs", "init", "--out", &out_s, "--partners", "dtv,kmar,dji"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    for f in ["ca.pem", "server.pem", "server.key", "dtv.pem", "dtv.key", "kmar.pem", "dji.key"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let again = loket(&["certs", "init", "--out", &out_s, "--partners", "dtv"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
    let bad = loket(&["certs", "init", "--out", &out_s, "--partners", "DTV", "--force"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid partner id"));
}

#[test]
fn certs_revoke_writes_a_list_the_gateway_refuses_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let pki = data_dir.join("certs");
    let pki_s = pki.display().to_string();
    let ok = loket(&["certs", "init", "--out", &pki_s]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let ok = loket(&["certs", "revoke", "--dir", &pki_s, "coa"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let crl = pki.join("crl.pem");
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&crl.display().to_string()));
    // Names that are no certificate file of the directory: refused, naming them.
    let bad = loket(&["certs", "revoke", "--dir", &pki_s, "../ca", "nobody"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("../ca") && !err.contains("nobody"), "{err}");
    let bad = loket(&["certs", "revoke", "--dir", &pki_s, "nobody"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nobody.pem"), "{}", String::from_utf8_lossy(&bad.stderr));

    // The gateway uses that PKI and the list: coa's certificate no longer connects, dtv's does.
    let gw = ServeProcess::spawn(&data_dir, &format!("[tls]\ncrl = [{:?}]\n", crl.display().to_string()));
    let url = gw.url();
    let file = write_json(dir.path(), "baggage.json", &example("baggage"));
    let publish = |partner: &str| {
        let mut args = vec!["publish"];
        args.extend(client_args(&gw, &url, &pki_s, partner));
        args.extend(["--type", "baggage", "--data", &file]);
        loket(&args)
    };
    let refused = publish("coa");
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    let ok = publish("dtv");
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(gw.log_text().contains("tls handshake refused"), "{}", gw.log_text());
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn publish_subscribe_and_list_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let gw = ServeProcess::spawn(&data_dir, "");
    assert!(gw.log_text().contains("generated a development CA"), "{}", gw.log_text());
    let url = gw.url();
    let certs = data_dir.join("certs").display().to_string();

    // Accepted: exit 0, the reply as one JSON line.
    let file = write_json(dir.path(), "baggage.json", &example("baggage"));
    let mut args = vec!["publish"];
    args.extend(client_args(&gw, &url, &certs, "coa"));
    args.extend(["--type", "baggage", "--data", &file, "--id", "bag-1"]);
    let out = loket(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let reply = &stdout_lines(&out)[0];
    assert_eq!(reply["id"], "bag-1");
    assert_eq!(reply["sequence"], 1);
    assert_eq!(reply["duplicate"], false);
    assert_eq!(reply["completeness"], 1.0);

    // The same again: a duplicate.
    let out = loket(&args);
    assert_eq!(stdout_lines(&out)[0]["duplicate"], true);

    // From standard input, missing two expected fields.
    let mut partial = example("transport-status");
    partial.as_object_mut().unwrap().remove("plannedAt");
    partial.as_object_mut().unwrap().remove("dangerousItemsFound");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loket"));
    cmd.arg("publish").args(client_args(&gw, &url, &certs, "dvo")).args(["--type", "transport-status", "--data", "-"]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &serde_json::to_vec(&partial).unwrap()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let reply = &stdout_lines(&out)[0];
    assert_eq!(reply["missingExpected"], serde_json::json!(["/dangerousItemsFound", "/plannedAt"]));

    // Rejected: exit 2, every violation printed.
    let mut bad = example("transport-status");
    bad["status"] = "cancelled".into();
    bad["vNumber"] = "12".into();
    let bad_file = write_json(dir.path(), "bad.json", &bad);
    let mut args = vec!["publish"];
    args.extend(client_args(&gw, &url, &certs, "dvo"));
    args.extend(["--type", "transport-status", "--data", &bad_file]);
    let out = loket(&args);
    assert_eq!(out.status.code(), Some(2));
    let rejected = &stdout_lines(&out)[0]["rejected"];
    assert_eq!(rejected["reason"], "SCHEMA_VIOLATION");
    let fields: Vec<&str> =
        rejected["violations"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"/vNumber") && fields.contains(&"/cancellationReason"), "{fields:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/cancellationReason"), "{stderr}");

    // The CLI publishes as the partner whose certificate it uses.
    let mut own = vec!["publish"];
    own.extend(client_args(&gw, &url, &certs, "kmar"));
    own.extend(["--type", "baggage", "--data", &file]);
    let out = loket(&own);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // Unreachable gateway: exit 1. A payload file that does not exist: exit 1.
    let mut args = vec!["publish", "--server", "https://127.0.0.1:1", "--certs", &certs, "--as", "coa"];
    args.extend(["--type", "baggage", "--data", &file]);
    assert_eq!(loket(&args).status.code(), Some(1));
    let mut args = vec!["publish"];
    args.extend(client_args(&gw, &url, &certs, "coa"));
    args.extend(["--type", "baggage", "--data", "/nonexistent.json"]);
    let out = loket(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));

    // Subscribe: NDJSON CloudEvents; a named subscription continues where it left off.
    let mut sub = vec!["subscribe"];
    sub.extend(client_args(&gw, &url, &certs, "kmar"));
    sub.extend(["--types", "baggage,transport-status", "--name", "cli-sub", "--limit", "2"]);
    let out = loket(&sub);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let events = stdout_lines(&out);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["specversion"], "1.0");
    assert_eq!(events[0]["id"], "bag-1");
    assert_eq!(events[0]["source"], "coa");
    assert_eq!(events[0]["type"], "nl.vreemdelingenketen.baggage");
    assert_eq!(events[0]["subject"], example("baggage")["vNumber"]);
    assert_eq!(events[0]["data"], example("baggage"));
    assert_eq!(
        (&events[0]["sequence"], &events[0]["sequencetype"]),
        (&serde_json::json!("00000000000000000001"), &serde_json::json!("DecimalU64"))
    );
    assert_eq!(events[1]["missingexpected"], "/dangerousItemsFound,/plannedAt");
    *sub.last_mut().unwrap() = "1";
    let out = loket(&sub);
    let events = stdout_lines(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["source"], "kmar");

    // A type the gateway does not know: exit 2.
    let mut sub = vec!["subscribe"];
    sub.extend(client_args(&gw, &url, &certs, "kmar"));
    sub.extend(["--types", "luggage", "--from", "yesterday"]);
    let out = loket(&sub);
    assert_eq!(out.status.code(), Some(1), "an unparsable --from is a usage error");
    let mut sub = vec!["subscribe"];
    sub.extend(client_args(&gw, &url, &certs, "kmar"));
    sub.extend(["--types", "luggage"]);
    assert_eq!(loket(&sub).status.code(), Some(2));

    // Schemas.
    let mut list = vec!["schemas", "list"];
    list.extend(client_args(&gw, &url, &certs, "quality"));
    let out = loket(&list);
    let table = String::from_utf8_lossy(&out.stdout);
    for t in TYPES {
        assert!(table.contains(t), "{t} missing from\n{table}");
    }

    assert_eq!(gw.terminate(), Some(0), "SIGTERM stops the gateway cleanly");
}

#[test]
fn bad_configuration_is_reported_and_the_gateway_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[grpc]\nlisten = \"127.0.0.1:0\"\nmax_events = 3\n").unwrap();
    let Err((code, log)) = ServeProcess::spawn_with_config(&config) else { panic!("started with a bad config") };
    assert_eq!(code, Some(1));
    assert!(log.contains("max_events"), "{log}");

    std::fs::write(&config, "[grpc]\nlisten = \"here\"\nmax_event_bytes = 0\n").unwrap();
    let Err((code, log)) = ServeProcess::spawn_with_config(&config) else { panic!("started with a bad config") };
    assert_eq!(code, Some(1));
    assert!(log.contains("grpc.listen") && log.contains("grpc.max_event_bytes"), "{log}");
}

#[test]
fn status_audit_and_redaction_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let gw = ServeProcess::spawn(&data_dir, "");
    let url = gw.url();
    let certs = data_dir.join("certs").display().to_string();
    // `loket <command words> --server … --as PARTNER <options>`.
    let run = |partner: &str, words: &[&str]| {
        let split = words.iter().position(|w| w.starts_with("--")).unwrap_or(words.len());
        let mut args: Vec<&str> = words[..split].to_vec();
        args.extend(client_args(&gw, &url, &certs, partner));
        args.extend(&words[split..]);
        loket(&args)
    };

    // A medical file without consent: published, then reported by `loket status` withheld
    // from its addressee (the example's kmar) and never for dji, which it is not addressed to.
    let file = write_json(dir.path(), "mft.json", &example("medical-file-transfer"));
    let out = run("gza", &["publish", "--type", "medical-file-transfer", "--data", &file, "--id", "mft-cli"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("gza", &["status", "--id", "mft-cli"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let status = &stdout_lines(&out)[0];
    assert_eq!(status["consentGated"], true);
    let state = |partner: &str| {
        let r = status["recipients"].as_array().unwrap().iter().find(|r| r["partner"] == partner).unwrap();
        (r["state"].as_str().unwrap().to_owned(), r["reasonCode"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("kmar"), ("withheld".to_owned(), "NO_CONSENT".to_owned()));
    assert_eq!(state("dji"), ("not-addressed".to_owned(), "NOT_ADDRESSEE".to_owned()));

    // An unknown id: exit 2 with a clear message.
    let out = run("gza", &["status", "--id", "never-published"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never-published"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A type not granted: exit 2, recorded.
    let ts = write_json(dir.path(), "ts.json", &example("transport-status"));
    let out = run("coa", &["publish", "--type", "transport-status", "--data", &ts]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not publish"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The immigration service sees a transport-status reduced to its allow-list.
    let out = run("dvo", &["publish", "--type", "transport-status", "--data", &ts, "--id", "ts-cli"]);
    assert_eq!(out.status.code(), Some(0));
    let out = run("ind", &["subscribe", "--types", "transport-status", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let delivered = &stdout_lines(&out)[0];
    let keys: Vec<&String> = delivered["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["departedAt", "departureKind", "plannedAt", "status", "vNumber"]);
    assert!(delivered["redacted"].as_str().unwrap().contains("/riskAssessment"), "{delivered}");

    // The denial log: the quality team sees everyone's, a partner its own.
    let out = run("quality", &["audit", "denials"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let all = stdout_lines(&out);
    let kinds: std::collections::BTreeSet<(String, String)> = all
        .iter()
        .map(|d| (d["partner"].as_str().unwrap().to_owned(), d["kind"].as_str().unwrap().to_owned()))
        .collect();
    for want in [("coa", "publish-refused"), ("kmar", "withheld"), ("ind", "redacted")] {
        assert!(kinds.contains(&(want.0.to_owned(), want.1.to_owned())), "{want:?} missing from {kinds:?}");
    }
    let out = run("quality", &["audit", "denials", "--partner", "coa"]);
    assert!(stdout_lines(&out).iter().all(|d| d["partner"] == "coa"));
    let out = run("quality", &["audit", "denials", "--since", "2999-01-01T00:00:00Z"]);
    assert!(stdout_lines(&out).is_empty());
    let out = run("coa", &["audit", "denials"]);
    let own = stdout_lines(&out);
    assert!(!own.is_empty() && own.iter().all(|d| d["partner"] == "coa"));
    let out = run("coa", &["audit", "denials", "--partner", "dji"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn policy_errors_are_reported_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.toml");
    let text = format!(
        "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[access]\nauditors = [\"inspectorate\"]\n\
         [partners.dvo]\npublish = [\"transport-status\", \"luggage\"]\n\
         [partners.dvo.subscribe]\ntransport-status = {{ deny = [\"/riskAssessment/score\"] }}\n\
         [partners.coa.subscribe]\nbaggage = {{ allow = [\"/pieces\", \"/colour\"] }}\n",
        dir.path().join("data").display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let Err((code, log)) = ServeProcess::spawn_with_config(&config) else { panic!("started with a bad policy") };
    assert_eq!(code, Some(1));
    for needle in [
        "access.auditors: \"inspectorate\"",
        "partners.dvo.publish: unknown event type \"luggage\"",
        "partners.dvo.subscribe.transport-status: pointer /riskAssessment/score does not exist in the schema of transport-status",
        "partners.coa.subscribe.baggage: pointer /colour does not exist in the schema of baggage",
    ] {
        assert!(log.contains(needle), "{needle} missing from:\n{log}");
    }
}
