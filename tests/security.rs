//! Mutual TLS and identity: who may connect and as whom it may publish; health and
//! reflection for operators.

mod common;

use common::*;
use loket_server::client::{connect, ClientOptions};
use loket_server::proto::gateway_client::GatewayClient;
use loket_server::proto::ListSchemasRequest;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_publishes_only_as_itself() {
    let gw = Gateway::start().await;
    let mut kmar = gw.client("kmar").await;
    let s = publish(&mut kmar, event("dtv", "baggage", "spoof", &example("baggage"))).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::PermissionDenied, "SOURCE_MISMATCH"));
    assert_eq!(violation_fields(&s), vec!["@source"]);
    publish(&mut kmar, event("kmar", "baggage", "own", &example("baggage"))).await.unwrap();
    gw.stop().await;
}

/// Either the handshake fails or the first call does; it never succeeds.
async fn refused(endpoint: Endpoint) {
    match endpoint.connect().await {
        Err(_) => {}
        Ok(channel) => {
            let s = GatewayClient::new(channel).list_schemas(ListSchemasRequest {}).await.unwrap_err();
            // The refusal surfaces as a transport error (a TLS alert, a closed connection,
            // an HTTP/2 error from a TLS record), never as an answer from the service.
            assert!(matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal), "{s:?}");
            assert!(std::error::Error::source(&s).is_some(), "a transport error, not a service reply: {s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_trusted_client_certificate_are_refused() {
    let gw = Gateway::start().await;
    let ca = std::fs::read(gw.certs_dir().join("ca.pem")).unwrap();

    // No client certificate at all.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    refused(Endpoint::from_shared(gw.url()).unwrap().tls_config(tls).unwrap()).await;

    // A certificate named "dtv" but issued by another CA.
    let rogue = tempfile::tempdir().unwrap();
    loket_server::certs::init(rogue.path(), &["dtv".parse().unwrap()], false).unwrap();
    let mixed = tempfile::tempdir().unwrap();
    std::fs::copy(gw.certs_dir().join("ca.pem"), mixed.path().join("ca.pem")).unwrap();
    std::fs::copy(rogue.path().join("dtv.pem"), mixed.path().join("dtv.pem")).unwrap();
    std::fs::copy(rogue.path().join("dtv.key"), mixed.path().join("dtv.key")).unwrap();
    let options = ClientOptions { server: gw.url(), certs: mixed.path().to_owned(), partner: "dtv".into() };
    let (endpoint, _) = loket_server::client::endpoint(&options).unwrap();
    refused(endpoint).await;

    // Plain TCP to the TLS port.
    refused(Endpoint::from_shared(format!("http://127.0.0.1:{}", gw.addr.port())).unwrap()).await;

    // The gateway is unharmed.
    let mut ok = gw.client("dtv").await;
    ok.list_schemas(ListSchemasRequest {}).await.unwrap();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_gateway_needs_an_explicit_setting_and_the_partner_header() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), "[grpc]\ninsecure = true\n").await;
    let url = format!("http://127.0.0.1:{}", gw.addr.port());
    let options = ClientOptions { server: url.clone(), certs: dir.path().to_owned(), partner: "dtv".into() };
    let mut client = connect(&options).await.unwrap();
    publish(&mut client, event("dtv", "baggage", "plain", &example("baggage"))).await.unwrap();
    let mut anonymous = GatewayClient::connect(url).await.unwrap();
    let s = anonymous.list_schemas(ListSchemasRequest {}).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let gw = Gateway::start().await;
    let (endpoint, _) = loket_server::client::endpoint(&gw.options("quality")).unwrap();
    let channel = endpoint.connect().await.unwrap();

    let mut health = HealthClient::new(channel.clone());
    let reply = health.check(HealthCheckRequest { service: "loket.v1.Gateway".into() }).await.unwrap();
    assert_eq!(reply.into_inner().status, ServingStatus::Serving as i32);

    // Both reflection versions list the gateway, health and reflection itself.
    let want = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "loket.v1.Gateway",
    ];
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else { panic!("{reply:?}") };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, want);

    use tonic_reflection::pb::v1alpha as alpha;
    let mut reflection = alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) = reply.message_response
    else {
        panic!("{reply:?}")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, want, "v1alpha, as grpcio's Python reflection client asks");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_listed_with_their_expected_fields() {
    let gw = Gateway::start().await;
    let list = gw.client("ind").await.list_schemas(ListSchemasRequest {}).await.unwrap().into_inner();
    // Each type by its reverse-DNS name, with the short name as the alias.
    assert!(list.schemas.iter().all(|s| s.r#type == format!("nl.vreemdelingenketen.{}", s.alias)));
    let mut types: Vec<&str> = list.schemas.iter().map(|s| s.alias.as_str()).collect();
    types.sort();
    let mut want = [TYPES, GATEWAY_TYPES].concat();
    want.sort();
    assert_eq!(types, want);
    for s in &list.schemas {
        if GATEWAY_TYPES.contains(&s.alias.as_str()) {
            // The gateway's own events: a digest is about a partner, a handover finding about
            // a case.
            let about = if s.alias == "quality-digest" { "partner" } else { "vNumber" };
            assert!(s.latest && s.version == 1 && s.required.contains(&about.to_owned()), "{}", s.r#type);
            continue;
        }
        assert!(s.latest && s.version == 1 && !s.expected.is_empty() && s.required.contains(&"vNumber".to_owned()));
        let doc: serde_json::Value = serde_json::from_str(&s.schema_json).unwrap();
        assert_eq!(doc["$id"], s.id.as_str());
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_oin_identity_the_certificate_oin_decides_and_revoked_certificates_are_refused() {
    use loket_server::certs;
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    let partners: Vec<_> = ["dtv", "kmar", "quality"].iter().map(|p| p.parse().unwrap()).collect();
    certs::init_with_oins(&certs_dir, &partners, false).unwrap();
    // DT&V's OIN under a service name; CN "dtv" with another (unknown) OIN; CN "dtv" with
    // KMar's OIN; CN "dtv" without OIN; DT&V's OIN, revoked.
    certs::issue(&certs_dir, "dtv-service", "koppelvlak-7", Some(&certs::dev_oin("dtv"))).unwrap();
    certs::issue(&certs_dir, "spoof", "dtv", Some("00000099999999999999")).unwrap();
    certs::issue(&certs_dir, "kmar-named-dtv", "dtv", Some(&certs::dev_oin("kmar"))).unwrap();
    certs::issue(&certs_dir, "no-oin", "dtv", None).unwrap();
    certs::issue(&certs_dir, "revoked", "koppelvlak-8", Some(&certs::dev_oin("dtv"))).unwrap();
    let crl = certs::revoke(&certs_dir, &["revoked"]).unwrap();
    let oins = std::fs::read_to_string(certs_dir.join(certs::OINS)).unwrap();
    // The built-in handover expectations name partners this policy lacks: none.
    let no_handovers = dir.path().join("no-handovers").display().to_string();
    let config = format!(
        "[tls]\nidentity = \"oin\"\ncrl = [{:?}]\n[access]\nauditors = [\"quality\"]\nconsent_registrars = []\n\
         [export]\nauditors = []\n[quality]\nreaders = []\nchain_dir = {no_handovers:?}\n{oins}\
         publish = []\n[partners.quality.subscribe]\n\
         [partners.dtv.subscribe]\nbaggage = {{}}\n[partners.kmar.subscribe]\nbaggage = {{}}\n",
        crl.display().to_string()
    );
    // oins.toml ends with the [partners.quality] table: its publish line is added above;
    // dtv and kmar publish baggage.
    let config = config
        .replace(
            &format!("[partners.dtv]\noin = \"{}\"\n", certs::dev_oin("dtv")),
            &format!("[partners.dtv]\noin = \"{}\"\npublish = [\"baggage\"]\n", certs::dev_oin("dtv")),
        )
        .replace(
            &format!("[partners.kmar]\noin = \"{}\"\n", certs::dev_oin("kmar")),
            &format!("[partners.kmar]\noin = \"{}\"\npublish = [\"baggage\"]\n", certs::dev_oin("kmar")),
        );
    let gw = Gateway::start_in(dir.path(), &config).await;
    let client = |name: &str| {
        let options = ClientOptions { server: gw.url(), certs: certs_dir.clone(), partner: name.to_owned() };
        async move { connect(&options).await.unwrap() }
    };

    // The OIN decides, whatever the common name says.
    let mut dtv = client("dtv-service").await;
    publish(&mut dtv, event("dtv", "baggage", "oin-1", &example("baggage"))).await.unwrap();
    let mut kmar = client("kmar-named-dtv").await;
    let s = publish(&mut kmar, event("dtv", "baggage", "oin-2", &example("baggage"))).await.unwrap_err();
    assert_eq!(reason(&s), "SOURCE_MISMATCH", "CN dtv with KMar's OIN is KMar: {s:?}");
    publish(&mut kmar, event("kmar", "baggage", "oin-3", &example("baggage"))).await.unwrap();

    // Unknown OIN, no OIN: refused at the first call, named in the denial log.
    let s = client("spoof").await.list_schemas(ListSchemasRequest {}).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::Unauthenticated, "UNKNOWN_OIN"));
    let s = client("no-oin").await.list_schemas(ListSchemasRequest {}).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::Unauthenticated, "OIN_MISSING"));
    let denials = client("quality")
        .await
        .list_denials(loket_server::proto::ListDenialsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .denials;
    let found: Vec<(&str, &str)> = denials.iter().map(|d| (d.partner.as_str(), d.reason_code.as_str())).collect();
    assert!(found.contains(&("00000099999999999999", "UNKNOWN_OIN")), "{found:?}");
    assert!(found.contains(&("dtv", "OIN_MISSING")), "the common name names the caller without OIN: {found:?}");

    // A revoked certificate does not get past the handshake, though its OIN is DT&V's.
    let options = ClientOptions { server: gw.url(), certs: certs_dir.clone(), partner: "revoked".into() };
    let (endpoint, _) = loket_server::client::endpoint(&options).unwrap();
    refused(endpoint).await;
    gw.stop().await;
}
