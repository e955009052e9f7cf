use super::*;

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

#[test]
fn quality_and_metrics_keys_are_checked_together() {
    let c = Config::parse("", "t", &no_env()).unwrap();
    assert_eq!(c.quality.readers, ["quality"]);
    assert_eq!(c.metrics_addr(), Some("127.0.0.1:9464".parse().unwrap()));
    let off = Config::parse("[metrics]\nenabled = false\nlisten = \"nowhere\"\n", "t", &no_env()).unwrap();
    assert_eq!(off.metrics_addr(), None);
    let text =
        "[metrics]\nlisten = \"nowhere\"\n[quality]\nreaders = [\"Not A Partner\"]\nrules_dir = \"/no/such/dir\"\n";
    let Err(Error::Config(problems)) = Config::parse(text, "t", &no_env()) else { panic!("accepted") };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("metrics.listen") && problems[1].contains("quality.readers"));
    assert!(problems[2].contains("quality.rules_dir"));
}

#[test]
fn defaults_are_the_embedded_secure_gateway() {
    let c = Config::parse("", "t", &no_env()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert!(!c.grpc.insecure);
    assert!(matches!(c.tls_source(), TlsSource::Generated { .. }));
}

#[test]
fn shipped_config_parses() {
    let text = include_str!("../../../../config/loket.toml");
    let c = Config::parse(text, "config/loket.toml", &no_env()).unwrap();
    assert!(!c.grpc.insecure);
}

#[test]
fn the_built_in_policy_is_the_shipped_one() {
    let shipped = Config::parse(SHIPPED, "config/loket.toml", &no_env()).unwrap();
    let default = Config::parse("", "t", &no_env()).unwrap();
    assert!(default.partners.is_none());
    assert_eq!(default.partner_policies().unwrap(), shipped.partner_policies().unwrap());
    assert_eq!(default.access, shipped.access);
    let partners = default.partner_policies().unwrap();
    let names: Vec<&str> = partners.keys().map(String::as_str).collect();
    let mut chain = CHAIN_PARTNERS.to_vec();
    chain.sort();
    assert_eq!(names, chain);
    assert!(partners["quality"].publish.is_empty(), "the quality team publishes nothing");
}

#[test]
fn unknown_keys_are_named() {
    let err = Config::parse("[grpc]\nlisten = \"127.0.0.1:1\"\nlsten = 3\n", "x.toml", &no_env()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("lsten"), "{text}");
    assert!(text.contains("x.toml"), "{text}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "[grpc]\nlisten = \"nowhere\"\nmax_event_bytes = 0\n[journal]\nmax_batch = 0\n[tls]\nserver_cert = \"/nonexistent.pem\"\n";
    let Error::Config(problems) = Config::parse(text, "x.toml", &no_env()).unwrap_err() else {
        panic!("expected a config error")
    };
    let all = problems.join("\n");
    for needle in [
        "grpc.listen",
        "grpc.max_event_bytes",
        "journal.max_batch",
        "tls.client_ca",
        "tls.server_key",
        "tls.server_cert: /nonexistent.pem",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
}

#[test]
fn exporters_default_to_quality_and_are_checked() {
    let c = Config::parse("", "t", &no_env()).unwrap();
    assert_eq!(c.export.auditors, vec!["quality".to_owned()]);
    assert!(c.export.testers.is_empty());
    let err = Config::parse("[export]\npartners = [\"Quality\"]\n", "x.toml", &no_env()).unwrap_err();
    assert!(err.to_string().contains("export.auditors"), "the former key is still read: {err}");
    let err = Config::parse("[export]\ntesters = [\"T T\"]\n", "x.toml", &no_env()).unwrap_err();
    assert!(err.to_string().contains("export.testers"), "{err}");
}

#[test]
fn identity_and_revocation_settings_are_checked() {
    let c = Config::parse("[tls]\nidentity = \"oin\"\n", "t", &no_env()).unwrap();
    assert_eq!(c.tls.identity, IdentitySource::Oin);
    let text = "[grpc]\ninsecure = true\n[tls]\nidentity = \"oin\"\ncrl = [\"/nonexistent.crl\"]\n";
    let Error::Config(problems) = Config::parse(text, "x.toml", &no_env()).unwrap_err() else {
        panic!("expected a config error")
    };
    let all = problems.join("\n");
    for needle in ["tls.crl: /nonexistent.crl", "tls.identity"] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    let err = Config::parse("[tls]\nidentity = \"dn\"\n", "x.toml", &no_env()).unwrap_err();
    assert!(err.to_string().contains("dn"), "{err}");
}

#[test]
fn kafka_section_defaults_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("record.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let text = format!("[kafka]\nbrokers = \"127.0.0.1:9092\"\nrecord_key_file = {:?}\n", key.display().to_string());
    let c = Config::parse(&text, "t", &no_env()).unwrap();
    let k = c.kafka.as_ref().unwrap();
    assert_eq!((k.topic_prefix.as_str(), k.partitions, k.replication, k.ack), ("loket.", 3, 1, AckMode::Journal));
    let text = "[kafka]\nbrokers = \"nohost\"\npartitions = 0\nack = \"kafka\"\ntopic_prefix = \"a b\"\n";
    let Error::Config(problems) = Config::parse(text, "x.toml", &no_env()).unwrap_err() else {
        panic!("expected a config error")
    };
    let all = problems.join("\n");
    for needle in ["kafka.brokers", "kafka.partitions", "kafka.topic_prefix", "kafka.record_key_file"] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    let err = Config::parse("[kafka]\nbrokers = \"a:1\"\nack = \"never\"\n", "x.toml", &no_env()).unwrap_err();
    assert!(err.to_string().contains("never"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let env: HashMap<String, String> = [
        (ENV_DATA_DIR.to_owned(), "/tmp/elsewhere".to_owned()),
        (ENV_LISTEN.to_owned(), "127.0.0.1:9999".to_owned()),
        (ENV_INSECURE.to_owned(), "true".to_owned()),
    ]
    .into();
    let c = Config::parse("data_dir = \"x\"\n", "t", &env).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
    assert_eq!(c.listen_addr().port(), 9999);
    assert_eq!(c.tls_source(), TlsSource::Insecure);
    let bad: HashMap<String, String> = [(ENV_INSECURE.to_owned(), "yes".to_owned())].into();
    assert!(Config::parse("", "t", &bad).unwrap_err().to_string().contains(ENV_INSECURE));
}
