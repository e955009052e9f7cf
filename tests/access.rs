//! Who may see what, end to end through gRPC: publish and subscribe grants, field
//! redaction against the shipped policy, consent-gated medical data (withheld, released,
//! stopped, kept across a restart), publisher status and the denial log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use loket_access::{FieldsConfig, PartnerConfig};
use loket_server::client::Client;
use loket_server::proto::{
    subscribe_request::Start, AckRequest, Delivery, Earliest, EventStatusRequest, ListDenialsRequest, PublishReply,
    SubscribeRequest,
};
use serde_json::{json, Value};
use tonic::Code;

/// The shipped (and built-in) policy the harness gateway runs with.
fn shipped_partners() -> BTreeMap<String, PartnerConfig> {
    loket_server::Config::parse("", "defaults", &Default::default()).unwrap().partner_policies().unwrap()
}

fn all_from_start(name: &str) -> SubscribeRequest {
    SubscribeRequest { types: vec![], start: Some(Start::Earliest(Earliest {})), name: name.to_owned(), limit: 0 }
}

/// Publishes a baggage marker as dtv; every partner that receives baggage sees it last.
async fn marker(gw: &Gateway, id: &str) {
    let mut dtv = gw.client("dtv").await;
    publish(&mut dtv, event("dtv", "baggage", id, &example_for("baggage", "0000000099"))).await.unwrap();
}

/// Reads a stream until the delivery with event id `until` (inclusive).
async fn read_until(stream: &mut tonic::Streaming<Delivery>, until: &str) -> Vec<Delivery> {
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message()).await;
        let d = next.expect("a delivery within 20 s").expect("stream ok").expect("stream open");
        let done = d.event.as_ref().unwrap().id == until;
        out.push(d);
        if done {
            return out;
        }
    }
}

async fn deliveries(client: &mut Client, req: SubscribeRequest, until: &str) -> Vec<Delivery> {
    let mut stream = client.subscribe(req).await.unwrap().into_inner();
    read_until(&mut stream, until).await
}

fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.event.as_ref().unwrap().id.clone()).collect()
}

fn data(d: &Delivery) -> Value {
    serde_json::from_slice(&d.event.as_ref().unwrap().data).unwrap()
}

/// Leaf paths of a JSON object (arrays transparent, like policy pointers), with values
/// for the paths that do not go through an array.
fn leaves(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, c) in map {
                leaves(c, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for i in items {
                leaves(i, path, out);
            }
        }
        _ => {
            out.insert(path.to_owned());
        }
    }
}

fn under(path: &str, pointer: &str) -> bool {
    path == pointer || path.starts_with(&format!("{pointer}/"))
}

fn consent(case: &str, id: &str, recipients: &[&str]) -> Value {
    let mut c = example_for("medical-transfer-consent", case);
    c["consentId"] = json!(id);
    c["recipients"] = recipients.iter().map(|p| json!({"partner": p, "role": "medical-service"})).collect();
    c["signedAt"] = json!("2024-03-12T11:00:00+01:00");
    c["validUntil"] = json!("2099-01-01T00:00:00Z");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_subscribing_need_grants() {
    let gw = Gateway::start().await;

    // Publish of a type not granted: PERMISSION_DENIED naming the type, nothing stored.
    let mut coa = gw.client("coa").await;
    let s =
        publish(&mut coa, event("coa", "transport-status", "ts-1", &example("transport-status"))).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::PermissionDenied, "TYPE_NOT_GRANTED"));
    assert!(s.message().contains("transport-status"), "{}", s.message());
    assert_eq!(violation_fields(&s), vec!["@type"]);
    let mut gza = gw.client("gza").await;
    let s = publish(&mut gza, event("gza", "baggage", "b-1", &example("baggage"))).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);

    // Subscribe to a type not granted: PERMISSION_DENIED at once, not an empty stream.
    let mut req = all_from_start("");
    req.types = vec!["baggage".into(), "medical-file-transfer".into(), "transport-status".into()];
    let s = coa.subscribe(req).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::PermissionDenied, "TYPE_NOT_GRANTED"));
    assert!(s.message().contains("medical-file-transfer"), "{}", s.message());
    assert!(!s.message().contains("baggage"), "only the refused types are named: {}", s.message());

    // A partner with no grants: nothing to publish, nothing to receive.
    let mut quality = gw.client("quality").await;
    let s = publish(&mut quality, event("quality", "baggage", "q-1", &example("baggage"))).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);
    let s = quality.subscribe(all_from_start("")).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::PermissionDenied, "NO_GRANTS"));
    let mut typed = all_from_start("");
    typed.types = vec!["baggage".into()];
    assert_eq!(quality.subscribe(typed).await.unwrap_err().code(), Code::PermissionDenied);

    // Every refusal is in the denial log; the quality team (auditor) reads them all.
    let all = quality.list_denials(ListDenialsRequest::default()).await.unwrap().into_inner().denials;
    let seen: BTreeSet<(String, String, String)> =
        all.iter().map(|d| (d.partner.clone(), d.kind.clone(), d.reason_code.clone())).collect();
    for want in [
        ("coa", "publish-refused", "TYPE_NOT_GRANTED"),
        ("gza", "publish-refused", "TYPE_NOT_GRANTED"),
        ("coa", "subscribe-refused", "TYPE_NOT_GRANTED"),
        ("quality", "publish-refused", "TYPE_NOT_GRANTED"),
        ("quality", "subscribe-refused", "NO_GRANTS"),
    ] {
        let want = (want.0.to_owned(), want.1.to_owned(), want.2.to_owned());
        assert!(seen.contains(&want), "{want:?} missing from {seen:?}");
    }
    let refused_sub = all.iter().find(|d| d.partner == "coa" && d.kind == "subscribe-refused").unwrap();
    assert_eq!(refused_sub.fields, vec!["medical-file-transfer"]);
    let refused_pub = all.iter().find(|d| d.partner == "coa" && d.kind == "publish-refused").unwrap();
    assert_eq!((refused_pub.event_id.as_str(), refused_pub.event_type.as_str()), ("ts-1", "transport-status"));

    // A partner reads only its own denials and may not ask for another's.
    let own = coa.list_denials(ListDenialsRequest::default()).await.unwrap().into_inner().denials;
    assert!(!own.is_empty() && own.iter().all(|d| d.partner == "coa"));
    let s = coa.list_denials(ListDenialsRequest { partner: "gza".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::PermissionDenied, "AUDIT_NOT_PERMITTED"));
    let only_gza = quality.list_denials(ListDenialsRequest { partner: "gza".into(), ..Default::default() }).await;
    assert!(only_gza.unwrap().into_inner().denials.iter().all(|d| d.partner == "gza"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_receives_exactly_its_allowed_fields() {
    let gw = Gateway::start().await;
    let policy = shipped_partners();
    let registry = loket_schema::Registry::embedded().unwrap();
    // Every type that is not consent-gated, published by a partner that may: complete, but
    // for a transport missing one expected field every subscriber of the type sees
    // (/plannedAt) and one that coa, ind and gza do not (/dangerousItemsFound).
    let mut published: BTreeMap<String, (Value, PublishReply)> = BTreeMap::new();
    for (t, by) in [
        ("physical-features", "dtv"),
        ("baggage", "dji"),
        ("transport-status", "dvo"),
        ("medical-transfer-consent", "gza"),
    ] {
        let mut data = example(t);
        if t == "physical-features" {
            data["remarks"] = json!("walks with a limp");
        }
        if t == "baggage" {
            data["handedOverTo"] = json!("kmar");
            data["handedOverAt"] = json!("2024-03-15T06:00:00+01:00");
        }
        if t == "transport-status" {
            let fields = data.as_object_mut().unwrap();
            fields.remove("plannedAt");
            fields.remove("dangerousItemsFound");
        }
        let mut client = gw.client(by).await;
        let reply = publish(&mut client, event(by, t, &format!("full-{t}"), &data)).await.unwrap();
        published.insert(t.to_owned(), (data, reply));
    }
    assert_eq!(published["transport-status"].1.missing_expected, ["/dangerousItemsFound", "/plannedAt"]);
    marker(&gw, "end").await;

    // (partner, type) → the completeness and missing expected fields delivered.
    let mut figures: BTreeMap<(String, String), (f64, Vec<String>)> = BTreeMap::new();
    for (partner, grants) in &policy {
        let mut client = gw.client(partner).await;
        if grants.subscribe.is_empty() {
            assert_eq!(client.subscribe(all_from_start("")).await.unwrap_err().code(), Code::PermissionDenied);
            continue;
        }
        let got = if grants.subscribe.contains_key("baggage") {
            deliveries(&mut client, all_from_start(""), "end").await
        } else {
            // No baggage grant, so no marker: read exactly the events it may receive.
            let n = published.keys().filter(|t| grants.subscribe.contains_key(*t)).count() as u64;
            let mut req = all_from_start("");
            req.limit = n;
            let mut stream = client.subscribe(req).await.unwrap().into_inner();
            let mut out = Vec::new();
            while let Some(d) = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap()
            {
                out.push(d);
            }
            out
        };
        // The gateway's own findings (the departure is a handover) are not partner events.
        let got: Vec<_> = got.into_iter().filter(|d| d.event.as_ref().unwrap().source != "loket").collect();
        let types: BTreeSet<String> = got
            .iter()
            .filter(|d| d.event.as_ref().unwrap().id != "end")
            .map(|d| short_type(&d.event.as_ref().unwrap().r#type))
            .collect();
        let want: BTreeSet<String> = published.keys().filter(|t| grants.subscribe.contains_key(*t)).cloned().collect();
        assert_eq!(types, want, "{partner} receives exactly its granted types");

        for d in got.iter().filter(|d| d.event.as_ref().unwrap().id != "end") {
            let t = short_type(&d.event.as_ref().unwrap().r#type);
            let (original, reply) = &published[&t];
            let rule = &grants.subscribe[&t];
            let mut all = BTreeSet::new();
            leaves(original, "", &mut all);
            let allowed = |p: &str| match rule {
                FieldsConfig { allow: Some(list), .. } => p == "/vNumber" || list.iter().any(|a| under(p, a)),
                FieldsConfig { deny: Some(list), .. } => !list.iter().any(|x| under(p, x)),
                _ => true,
            };
            let want: BTreeSet<String> = all.iter().filter(|p| allowed(p)).cloned().collect();
            let mut have = BTreeSet::new();
            let seen = data(d);
            leaves(&seen, "", &mut have);
            assert_eq!(have, want, "{partner} / {t}: fields field by field");
            for p in &have {
                if original.pointer(p).is_some() {
                    assert_eq!(seen.pointer(p), original.pointer(p), "{partner} / {t}: value of {p}");
                }
            }
            // The delivery names what was removed, and only that.
            let removed: Vec<&String> = all.iter().filter(|p| !allowed(p)).collect();
            for p in &removed {
                assert!(d.redacted.iter().any(|r| under(p, r)), "{partner} / {t}: {p} not named in {:?}", d.redacted);
            }
            assert_eq!(d.redacted.is_empty(), removed.is_empty(), "{partner} / {t}: {:?}", d.redacted);

            // Completeness describes only the expected fields the subscriber sees whole: a
            // field counts when it is allowed and no part of it is denied.
            let hides_part = |p: &str| match rule {
                FieldsConfig { deny: Some(list), .. } => list.iter().any(|x| x.starts_with(&format!("{p}/"))),
                _ => false,
            };
            let schema = registry.schemas().find(|s| s.event_type() == t).unwrap();
            let expected: Vec<&str> = schema.document()["x-loket-expected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .filter(|p| allowed(p) && !hides_part(p))
                .collect();
            let missing: Vec<String> =
                reply.missing_expected.iter().filter(|p| expected.contains(&p.as_str())).cloned().collect();
            let score =
                if expected.is_empty() { 1.0 } else { (expected.len() - missing.len()) as f64 / expected.len() as f64 };
            assert_eq!(d.missing_expected, missing, "{partner} / {t}: missing expected fields it can see");
            assert!((d.completeness - score).abs() < 1e-9, "{partner} / {t}: {} != {score}", d.completeness);
            figures.insert((partner.clone(), t.clone()), (d.completeness, d.missing_expected.clone()));
            if expected.len() == schema.expected().len() {
                // It sees every expected field: the publisher's own figures.
                assert_eq!((d.completeness, &d.missing_expected), (reply.completeness, &reply.missing_expected));
            }
        }
    }
    // The figures differ by view: dtv sees the whole transport, coa two of its expected
    // fields (/departureKind and /plannedAt), so it never learns of /dangerousItemsFound.
    for (partner, score, missing) in
        [("dtv", 5.0 / 7.0, &["/dangerousItemsFound", "/plannedAt"][..]), ("coa", 0.5, &["/plannedAt"])]
    {
        let (got, got_missing) = &figures[&(partner.to_owned(), "transport-status".to_owned())];
        assert!((got - score).abs() < 1e-9 && got_missing == missing, "{partner}: {got} {got_missing:?}");
    }

    // Redactions are in the denial log, once per event and partner even when redelivered;
    // the auditor reads them, coa itself only its own refusals.
    let mut coa = gw.client("coa").await;
    deliveries(&mut coa, all_from_start(""), "end").await;
    let mut quality = gw.client("quality").await;
    let about_coa = ListDenialsRequest { partner: "coa".into(), ..Default::default() };
    let log = quality.list_denials(about_coa).await.unwrap().into_inner().denials;
    let ts: Vec<_> = log.iter().filter(|d| d.kind == "redacted" && d.event_type == "transport-status").collect();
    assert_eq!(ts.len(), 1, "{log:?}");
    assert!(ts[0].fields.contains(&"/riskAssessment".to_owned()), "{:?}", ts[0].fields);
    let own = coa.list_denials(ListDenialsRequest::default()).await.unwrap().into_inner().denials;
    assert!(own.iter().all(|d| d.kind != "redacted"), "{own:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medical_files_wait_for_a_covering_consent() {
    let gw = Gateway::start().await;
    let case = "1234567890";
    let mut dji = gw.client("dji").await;
    let mut gza = gw.client("gza").await;
    // DJI's medical service follows live from the start.
    let mut req = all_from_start("");
    req.types = vec!["medical-file-transfer".into(), "medical-transfer-consent".into(), "baggage".into()];
    let mut live = dji.subscribe(req.clone()).await.unwrap().into_inner();

    // A file for DJI under form f-2, which is not on record yet.
    let file = medical_file(case, "f-2", "dji");
    let transfer = publish(&mut gza, event("gza", "medical-file-transfer", "mft-1", &file)).await.unwrap();
    // Status: withheld from its addressee for lack of consent; KMar (which receives the
    // type) is not its addressee; the publisher is never withheld from its own file.
    let status = gza.event_status(EventStatusRequest { id: "mft-1".into() }).await.unwrap().into_inner();
    assert!(status.consent_gated);
    assert_eq!(status.sequence, transfer.sequence);
    let states: BTreeMap<String, (String, String)> =
        status.recipients.iter().map(|r| (r.partner.clone(), (r.state.clone(), r.reason_code.clone()))).collect();
    assert_eq!(states["dji"], ("withheld".to_owned(), "NO_CONSENT".to_owned()), "{states:?}");
    assert_eq!(states["kmar"].0, "not-addressed", "{states:?}");
    assert_eq!(states["gza"].0, "publisher", "{states:?}");
    // Only the publisher can ask; an unknown id is NOT_FOUND.
    assert_eq!(dji.event_status(EventStatusRequest { id: "mft-1".into() }).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(gza.event_status(EventStatusRequest { id: "nope".into() }).await.unwrap_err().code(), Code::NotFound);

    // None of these releases the file to DJI: the named form f-2 for another case, f-2 of
    // this case naming only KMar, and another form of this case that does name DJI.
    publish(
        &mut gza,
        event("gza", "medical-transfer-consent", "c-other-case", &consent("1111111111", "f-2", &["dji"])),
    )
    .await
    .unwrap();
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-kmar", &consent(case, "f-2", &["kmar"])))
        .await
        .unwrap();
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-dji-other", &consent(case, "f-3", &["dji"])))
        .await
        .unwrap();
    // Judged under the form the file names, whatever else covers DJI.
    let status = gza.event_status(EventStatusRequest { id: "mft-1".into() }).await.unwrap().into_inner();
    let dji_state = status.recipients.iter().find(|r| r.partner == "dji").unwrap();
    assert_eq!((dji_state.state.as_str(), dji_state.reason_code.as_str()), ("withheld", "RECIPIENT_NOT_IN_CONSENT"));
    marker(&gw, "m1").await;
    let before = read_until(&mut live, "m1").await;
    assert_eq!(ids(&before), ["c-other-case", "c-kmar", "c-dji-other", "m1"], "the transfer is withheld");

    // The registrar amends f-2 to name DJI: DJI receives the form and, right after it, the
    // released transfer with its original sequence, carrying the form's position.
    let covering =
        publish(&mut gza, event("gza", "medical-transfer-consent", "c-dji", &consent(case, "f-2", &["kmar", "dji"])))
            .await
            .unwrap();
    marker(&gw, "m2").await;
    let after = read_until(&mut live, "m2").await;
    assert_eq!(ids(&after), ["c-dji", "mft-1", "m2"]);
    assert!(after[1].released && !after[0].released);
    assert_eq!(after[1].sequence, transfer.sequence);
    assert_eq!((after[0].position, after[1].position), (covering.sequence - 1, covering.sequence));
    assert_eq!(data(&after[1]), file);
    let status = gza.event_status(EventStatusRequest { id: "mft-1".into() }).await.unwrap().into_inner();
    assert_eq!(status.recipients.iter().find(|r| r.partner == "dji").unwrap().state, "released");

    // A new subscription from the start sees exactly the same stream.
    let replay = deliveries(&mut dji, req.clone(), "m2").await;
    assert_eq!(ids(&replay), [ids(&before), ids(&after)].concat());

    // Now covered: a new transfer under f-2 goes straight through.
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-2", &file)).await.unwrap();
    marker(&gw, "m3").await;
    let later = read_until(&mut live, "m3").await;
    assert_eq!(ids(&later), ["mft-2", "m3"]);
    assert!(!later[0].released);

    // The withholding is in the denial log, for the addressee only, as the auditor reads
    // it; DJI itself reads only its own refusals, not what was withheld from it.
    let mut quality = gw.client("quality").await;
    let log = quality.list_denials(ListDenialsRequest::default()).await.unwrap().into_inner().denials;
    let withheld: Vec<_> = log.iter().filter(|d| d.kind == "withheld").collect();
    assert_eq!(withheld.len(), 1, "{log:?}");
    let w = withheld[0];
    assert_eq!((w.partner.as_str(), w.event_id.as_str(), w.reason_code.as_str()), ("dji", "mft-1", "NO_CONSENT"));
    let own = dji.list_denials(ListDenialsRequest::default()).await.unwrap().into_inner().denials;
    assert!(own.iter().all(|d| d.kind != "withheld"), "{own:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_withdrawn_consents_stop_deliveries() {
    let gw = Gateway::start().await;
    let mut gza = gw.client("gza").await;
    let mut kmar = gw.client("kmar").await;

    // Expired: valid until 2024, the transfer under it (addressed to KMar) arrives later.
    let mut expired = consent("2000000001", "f-exp", &["kmar"]);
    expired["validUntil"] = json!("2024-09-12T11:00:00+02:00");
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-exp", &expired)).await.unwrap();
    let file = medical_file("2000000001", "f-exp", "kmar");
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-exp", &file)).await.unwrap();

    // Withdrawn: the first transfer under f-w is delivered, its withdrawal stops the second.
    let case = "2000000002";
    let file = medical_file(case, "f-w", "kmar");
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-ok", &consent(case, "f-w", &["kmar"])))
        .await
        .unwrap();
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-before", &file)).await.unwrap();
    let mut withdrawn = consent(case, "f-w", &["kmar"]);
    withdrawn["withdrawnAt"] = json!("2025-01-01T00:00:00Z");
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-withdrawn", &withdrawn)).await.unwrap();
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-after", &file)).await.unwrap();
    marker(&gw, "end").await;

    let got = deliveries(&mut kmar, all_from_start(""), "end").await;
    assert_eq!(ids(&got), ["mft-before", "end"]);
    for (id, code) in [("mft-exp", "CONSENT_EXPIRED"), ("mft-after", "CONSENT_WITHDRAWN")] {
        let status = gza.event_status(EventStatusRequest { id: id.into() }).await.unwrap().into_inner();
        let k = status.recipients.iter().find(|r| r.partner == "kmar").unwrap();
        assert_eq!((k.state.as_str(), k.reason_code.as_str()), ("withheld", code), "{id}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_events_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let case = "3000000003";
    let gw = Gateway::start_in(dir.path(), "").await;
    let mut gza = gw.client("gza").await;
    let file = medical_file(case, "f-r", "dji");
    let transfer = publish(&mut gza, event("gza", "medical-file-transfer", "mft-r", &file)).await.unwrap();
    marker(&gw, "m1").await;
    // A durable DJI subscription reads (and acknowledges) everything so far: no transfer.
    let mut dji = gw.client("dji").await;
    let first = deliveries(&mut dji, all_from_start("dji-med"), "m1").await;
    assert_eq!(ids(&first), ["m1"]);
    dji.ack(AckRequest { name: "dji-med".into(), sequence: first.last().unwrap().position }).await.unwrap();
    gw.stop().await;

    // After a restart the form the transfer names arrives: the resumed subscription gets
    // the transfer.
    let gw = Gateway::start_in(dir.path(), "").await;
    let mut gza = gw.client("gza").await;
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-r", &consent(case, "f-r", &["dji"]))).await.unwrap();
    marker(&gw, "m2").await;
    let mut dji = gw.client("dji").await;
    let resumed = deliveries(&mut dji, all_from_start("dji-med"), "m2").await;
    assert_eq!(ids(&resumed), ["c-r", "mft-r", "m2"]);
    assert!(resumed[1].released);
    assert_eq!(resumed[1].sequence, transfer.sequence);
    assert_eq!(data(&resumed[1]), file);

    // Acknowledge only the consent (position before the group's end), then resume: the
    // released transfer comes again, nothing is skipped.
    dji.ack(AckRequest { name: "dji-med".into(), sequence: resumed[0].position }).await.unwrap();
    gw.stop().await;
    let gw = Gateway::start_in(dir.path(), "").await;
    let mut dji = gw.client("dji").await;
    let again = deliveries(&mut dji, all_from_start("dji-med"), "m2").await;
    assert_eq!(ids(&again), ["c-r", "mft-r", "m2"]);
    // The form's registrar is known again after the restart (loaded from the access
    // index, where only consents are opened): another registrar may not reuse its id.
    let s = publish(&mut dji, event("dji", "medical-transfer-consent", "c-r-dji", &consent(case, "f-r", &["dji"])))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "CONSENT_NOT_OWNED");
    gw.stop().await;
}

/// The registrars of indexed consent forms come back after a restart from the claims the
/// index keeps beside it; an erased case's form is no longer claimed after one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_claims_come_back_from_the_index_and_leave_with_an_erased_case() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, erased) = ("3000000011", "3000000012");
    let gw = Gateway::start_in(dir.path(), "").await;
    let mut gza = gw.client("gza").await;
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-kept", &consent(kept, "f-kept", &["dji"]))).await.unwrap();
    publish(&mut gza, event("gza", "medical-transfer-consent", "c-gone", &consent(erased, "f-gone", &["dji"])))
        .await
        .unwrap();
    marker(&gw, "m1").await;
    // A medical subscription reads past both forms only once the index covers them, so
    // the restart finds their claims in the index, not in the journal after it.
    let mut dji = gw.client("dji").await;
    assert_eq!(ids(&deliveries(&mut dji, all_from_start(""), "m1").await), ["c-kept", "c-gone", "m1"]);
    let mut auditor = gw.client("quality").await;
    let request = loket_server::proto::EraseCaseRequest { case: erased.into(), reason: "legal ground ended".into() };
    auditor.erase_case(request).await.unwrap();
    gw.stop().await;

    let gw = Gateway::start_in(dir.path(), "").await;
    let mut dji = gw.client("dji").await;
    let s = publish(&mut dji, event("dji", "medical-transfer-consent", "c-kept-2", &consent(kept, "f-kept", &["dji"])))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "CONSENT_NOT_OWNED");
    let other = "3000000013";
    publish(&mut dji, event("dji", "medical-transfer-consent", "c-gone-2", &consent(other, "f-gone", &["dji"])))
        .await
        .unwrap();
    gw.stop().await;
}

/// A small deterministic generator, so a failing seed can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn some<T: Clone>(&mut self, items: &[T]) -> Vec<T> {
        items.iter().filter(|_| self.chance(40)).cloned().collect()
    }
}

const RANDOM_PARTNERS: &[&str] = &["dtv", "kmar", "dji", "gza"];

fn pointers_of(t: &str) -> &'static [&'static str] {
    match t {
        "physical-features" => {
            &["/height", "/build", "/distinguishingMarks", "/distinguishingMarks/description", "/photoReference"]
        }
        "baggage" => &["/pieces", "/items", "/items/description", "/storageLocation"],
        "transport-status" => &["/status", "/riskAssessment", "/riskAssessment/level", "/escort/by", "/search"],
        "medical-file-transfer" => &["/fitToFly", "/medicationDuringTransport/dosage", "/attentionPoints"],
        _ => &["/recipients", "/interpreterUsed", "/formLanguage"],
    }
}

fn micros(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

fn rfc_micros(v: &Value, key: &str) -> Option<i64> {
    let text = v.get(key)?.as_str()?;
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1000) as i64)
}

/// Oracle: the consent `named` of `case` among `prefix` (its latest version) covers
/// `partner` at `at`. (Only registrars' forms are journalled, each id by one registrar.)
fn covered(
    prefix: &[(u64, String, String, i64, Value, &str)],
    case: &str,
    named: &str,
    partner: &str,
    at: i64,
) -> bool {
    let mut forms: BTreeMap<String, &Value> = BTreeMap::new();
    for (_, t, c, _, data, _) in prefix {
        if t == "medical-transfer-consent" && c == case {
            forms.insert(data["consentId"].as_str().unwrap().to_owned(), data);
        }
    }
    forms.get(named).is_some_and(|f| {
        f["given"] == json!(true)
            && f["recipients"].as_array().is_some_and(|rs| rs.iter().any(|r| r["partner"] == json!(partner)))
            && rfc_micros(f, "signedAt").is_some_and(|s| s <= at)
            && rfc_micros(f, "validUntil").is_none_or(|v| v > at)
            && rfc_micros(f, "withdrawnAt").is_none_or(|w| w > at)
    })
}

/// Randomised, end to end: generated policies and journals, every partner reading from
/// the start and resuming from a random position. No subscriber gets a type, field or
/// medical event it is not entitled to; the gateway's stream equals the reference scan,
/// and a resumed stream equals the tail of the full one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_policies_and_journals_never_leak() {
    // (medical files delivered to an addressee other than their publisher, released
    // deliveries, redacted ones, resumed streams, refused consent forms, files covered on
    // arrival): the generator must exercise every path, or the test proves little.
    let mut exercised = (0, 0, 0, 0, 0, 0);
    for seed in [0x9e37_79b9_7f4a_7c15u64, 0x2545_f491_4f6c_dd1d, 0xdead_beef_cafe_f00d] {
        let mut rng = Rng(seed);
        // A random policy: everyone may publish everything; random subscriptions and rules.
        // No partner holds a gateway-wide role: the defaults name `quality`, absent here.
        // The first two partners register consent; the others' forms are refused.
        let registrars = &RANDOM_PARTNERS[..2];
        let mut toml =
            format!("[access]\nauditors = []\nconsent_registrars = {registrars:?}\n[export]\nauditors = []\n");
        let mut partners: BTreeMap<String, PartnerConfig> = BTreeMap::new();
        for p in RANDOM_PARTNERS {
            let mut grant = PartnerConfig {
                identity: None,
                oin: None,
                system: None,
                publish: TYPES.iter().map(|t| (*t).to_owned()).collect(),
                subscribe: BTreeMap::new(),
            };
            toml.push_str(&format!("[partners.{p}]\npublish = {:?}\n[partners.{p}.subscribe]\n", grant.publish));
            for t in TYPES {
                if !rng.chance(60) {
                    continue;
                }
                let list: Vec<String> = rng.some(pointers_of(t)).into_iter().map(str::to_owned).collect();
                let (line, fields) = match rng.below(3) {
                    0 => ("{}".to_owned(), FieldsConfig::default()),
                    1 => (format!("{{ allow = {list:?} }}"), FieldsConfig { allow: Some(list), deny: None }),
                    _ => (format!("{{ deny = {list:?} }}"), FieldsConfig { allow: None, deny: Some(list) }),
                };
                toml.push_str(&format!("{t} = {line}\n"));
                grant.subscribe.insert((*t).to_owned(), fields);
            }
            partners.insert((*p).to_owned(), grant);
        }
        let dir = tempfile::tempdir().unwrap();
        // The built-in handover expectations name partners a random policy may lack: none.
        let no_handovers = dir.path().join("no-handovers").display().to_string();
        toml.push_str(&format!("[quality]\nreaders = []\nchain_dir = {no_handovers:?}\n"));
        let gw = Gateway::start_in(dir.path(), &toml).await;

        // Whom each form of each case is meant for: most forms and files follow this plan,
        // so a file is often addressed to a partner its named form lists (and released when
        // that form comes after it); the rest are random, so files also go to partners the
        // form does not list, or that are not their addressee.
        let cases = ["4000000001", "4000000002"];
        let forms = ["f-a", "f-b"];
        let mut planned: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for case in cases {
            for form in forms {
                let mut recipients = rng.some(RANDOM_PARTNERS);
                if recipients.is_empty() {
                    recipients.push(*rng.pick(RANDOM_PARTNERS));
                }
                planned.insert((case, form), recipients);
            }
        }

        // A random journal, as stored: (sequence, type, case, received at, data, source).
        let mut journal: Vec<(u64, String, String, i64, Value, &str)> = Vec::new();
        for i in 0..60 {
            let t = *rng.pick(TYPES);
            let case = *rng.pick(&cases);
            let form = *rng.pick(&forms);
            // A form is mostly published by the registrar planned for it (f-a by the first,
            // f-b by the second), else by anyone: a non-registrar or the other registrar.
            let mut by = if t == "medical-transfer-consent" && rng.chance(75) {
                registrars[forms.iter().position(|f| *f == form).unwrap()]
            } else {
                *rng.pick(RANDOM_PARTNERS)
            };
            let mut data = example_for(t, case);
            if t == "medical-transfer-consent" {
                let mut recipients =
                    if rng.chance(75) { planned[&(case, form)].clone() } else { rng.some(RANDOM_PARTNERS) };
                if recipients.is_empty() {
                    recipients.push(*rng.pick(RANDOM_PARTNERS));
                }
                data = consent(case, form, &recipients);
                if rng.chance(25) {
                    data["validUntil"] = json!("2020-01-01T00:00:00Z");
                }
                if rng.chance(25) {
                    data["withdrawnAt"] = json!("2025-01-01T00:00:00Z");
                }
            }
            if t == "medical-file-transfer" {
                let to = if rng.chance(75) { *rng.pick(&planned[&(case, form)]) } else { *rng.pick(RANDOM_PARTNERS) };
                data = medical_file(case, form, to);
                // A file goes from one care professional to another: mostly not published
                // by its addressee (which gets its own file back in any case).
                if by == to && rng.chance(80) {
                    let others: Vec<&str> = RANDOM_PARTNERS.iter().copied().filter(|p| *p != to).collect();
                    by = *rng.pick(&others);
                }
            }
            let mut client = gw.client(by).await;
            let reply = match publish(&mut client, event(by, t, &format!("r{i}"), &data)).await {
                Ok(reply) => reply,
                // A form from a non-registrar, or another registrar's form id: refused,
                // never journalled.
                Err(s) if t == "medical-transfer-consent" => {
                    let expected =
                        if registrars.contains(&by) { "CONSENT_NOT_OWNED" } else { "NOT_A_CONSENT_REGISTRAR" };
                    assert_eq!(reason(&s), expected, "{s:?}");
                    exercised.4 += 1;
                    continue;
                }
                Err(s) => panic!("{s:?}"),
            };
            let at = micros(&reply.received_at.unwrap());
            journal.push((reply.sequence, t.to_owned(), case.to_owned(), at, data, by));
        }

        let access = loket_access::AccessConfig {
            auditors: vec![],
            consent_registrars: registrars.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        };
        let registry = loket_schema::Registry::embedded().unwrap();
        let policy = loket_access::Policy::compile(&access, &partners, &|t: &str| {
            registry.schemas().filter(|s| s.event_type() == t).map(|s| s.document().clone()).collect()
        })
        .unwrap();
        for (partner, grant) in &partners {
            // The reference stream: (emitted at step, sequence, released, data).
            let mut scan = loket_access::SubscriberScan::new(partner.clone(), BTreeSet::new());
            let mut reference: Vec<(u64, u64, bool, Value)> = Vec::new();
            for (seq, t, case, at, data, source) in &journal {
                let facts = loket_access::EventFacts {
                    sequence: *seq,
                    event_type: t,
                    source,
                    subject: case,
                    received_at_micros: *at,
                    data,
                };
                let (step, released) = scan.step(&policy, &facts);
                if let loket_access::Step::Deliver { data, .. } = step {
                    reference.push((*seq, *seq, false, data));
                }
                for r in released {
                    let (rs, rt, rc, rat, rd, rsrc) = journal.iter().find(|e| e.0 == r).unwrap();
                    let facts = loket_access::EventFacts {
                        sequence: *rs,
                        event_type: rt,
                        source: rsrc,
                        subject: rc,
                        received_at_micros: *rat,
                        data: rd,
                    };
                    if let loket_access::Verdict::Deliver { data, .. } = scan.release(&policy, &facts, *at) {
                        reference.push((*seq, r, true, data));
                    }
                }
            }
            let mut client = gw.client(partner).await;
            if grant.subscribe.is_empty() {
                assert_eq!(client.subscribe(all_from_start("")).await.unwrap_err().code(), Code::PermissionDenied);
                continue;
            }
            let start = journal[0].0 + rng.below(journal.len()) as u64;
            for from in [journal[0].0, start] {
                let want: Vec<&(u64, u64, bool, Value)> = reference.iter().filter(|r| r.0 >= from).collect();
                if want.is_empty() {
                    continue;
                }
                let req = SubscribeRequest {
                    types: vec![],
                    start: Some(Start::Sequence(from)),
                    name: String::new(),
                    limit: want.len() as u64,
                };
                exercised.3 += usize::from(from != journal[0].0);
                let mut stream = client.subscribe(req).await.unwrap().into_inner();
                let mut got = Vec::new();
                while let Some(d) =
                    tokio::time::timeout(Duration::from_secs(20), stream.message()).await.unwrap().unwrap()
                {
                    got.push(d);
                }
                let got_view: Vec<(u64, bool, Value)> = got.iter().map(|d| (d.sequence, d.released, data(d))).collect();
                let want_view: Vec<(u64, bool, Value)> = want.iter().map(|r| (r.1, r.2, r.3.clone())).collect();
                assert_eq!(
                    got_view, want_view,
                    "seed {seed:x}, {partner} from {from}: gateway stream = reference scan"
                );
                // Nothing it is entitled to is dropped: every file from someone else,
                // addressed to it and covered by its named form when it arrived, arrived.
                if from == journal[0].0 && grant.subscribe.contains_key("medical-file-transfer") {
                    for (i, (seq, t, case, at, stored, source)) in journal.iter().enumerate() {
                        let named = stored["consentId"].as_str().unwrap_or_default();
                        if t == "medical-file-transfer"
                            && source != partner
                            && stored["toCareProfessional"]["partner"] == json!(partner)
                            && covered(&journal[..=i], case, named, partner, *at)
                        {
                            assert!(
                                got.iter().any(|d| d.sequence == *seq && !d.released),
                                "seed {seed:x}: {partner} did not get medical event {seq}, covered by {named}"
                            );
                            exercised.5 += 1;
                        }
                    }
                }
                // Independent checks of what arrived.
                for (d, reference) in got.iter().zip(&want) {
                    let e = d.event.as_ref().unwrap();
                    let event_type = short_type(&e.r#type);
                    let rule = grant
                        .subscribe
                        .get(&event_type)
                        .unwrap_or_else(|| panic!("{partner} got ungranted {}", e.r#type));
                    let mut paths = BTreeSet::new();
                    leaves(&data(d), "", &mut paths);
                    for p in &paths {
                        let ok = match rule {
                            FieldsConfig { allow: Some(list), .. } => {
                                p == "/vNumber" || list.iter().any(|a| under(p, a) || under(a, p))
                            }
                            FieldsConfig { deny: Some(list), .. } => !list.iter().any(|x| under(p, x)),
                            _ => true,
                        };
                        assert!(ok, "seed {seed:x}: {partner} got {p} of {} under {rule:?}", e.r#type);
                    }
                    exercised.1 += usize::from(d.released);
                    exercised.2 += usize::from(!d.redacted.is_empty());
                    if event_type == "medical-file-transfer" {
                        // Judged when the scan reached the delivering event: the transfer
                        // itself, or the consent that released it.
                        let upto = journal.iter().position(|j| j.0 == reference.0).unwrap();
                        let (_, _, _, _, stored, source) = journal.iter().find(|j| j.0 == d.sequence).unwrap();
                        if source != partner {
                            exercised.0 += 1;
                            assert_eq!(stored["toCareProfessional"]["partner"], json!(partner), "seed {seed:x}");
                            let named = stored["consentId"].as_str().unwrap();
                            assert!(
                                covered(&journal[..=upto], &e.subject, named, partner, journal[upto].3),
                                "seed {seed:x}: {partner} got medical event {} without the consent it names",
                                d.sequence
                            );
                        }
                    }
                }
            }
        }
        gw.stop().await;
    }
    assert!(
        exercised.0 > 0 && exercised.1 > 0 && exercised.2 > 0 && exercised.3 > 0 && exercised.4 > 0 && exercised.5 > 0,
        "{exercised:?}"
    );
}

/// A consent form of `case` with `withdrawnAt` set.
fn withdrawn(case: &str, id: &str, recipients: &[&str]) -> Value {
    let mut c = consent(case, id, recipients);
    c["withdrawnAt"] = json!("2024-03-13T11:00:00+01:00");
    c
}

/// A medical file of `case` for `to`, under consent `consent_id`.
fn medical_file(case: &str, consent_id: &str, to: &str) -> Value {
    let mut f = example_for("medical-file-transfer", case);
    f["consentId"] = json!(consent_id);
    f["toCareProfessional"] = json!({"partner": to, "role": "medical-service"});
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_revived_consent_is_refused_and_releases_nothing() {
    let gw = Gateway::start().await;
    let case = "2345678901";
    let mut gza = gw.client("gza").await;
    let mut dji = gw.client("dji").await;
    let mut kmar = gw.client("kmar").await;

    // 1. gza registers c-77 for kmar and withdraws it; dji publishes c-77 again without
    //    withdrawnAt: refused, and gza's next file under c-77 stays withheld from kmar.
    publish(&mut gza, event("gza", "medical-transfer-consent", "c77-1", &consent(case, "c-77", &["kmar"])))
        .await
        .unwrap();
    publish(&mut gza, event("gza", "medical-transfer-consent", "c77-2", &withdrawn(case, "c-77", &["kmar"])))
        .await
        .unwrap();
    let s =
        publish(&mut dji, event("dji", "medical-transfer-consent", "c77-revive", &consent(case, "c-77", &["kmar"])))
            .await
            .unwrap_err();
    assert_eq!((s.code(), reason(&s).as_str()), (Code::PermissionDenied, "CONSENT_NOT_OWNED"));
    assert_eq!(violation_fields(&s), vec!["/consentId"]);
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-77", &medical_file(case, "c-77", "kmar")))
        .await
        .unwrap();

    // 2. gza sends a file to kmar under c-88; dji registers c-88 (gza's id) naming itself:
    //    refused; with an id of its own it is a form of dji's, yet the file is never dji's.
    publish(&mut gza, event("gza", "medical-transfer-consent", "c88", &consent(case, "c-88", &["kmar"])))
        .await
        .unwrap();
    publish(&mut gza, event("gza", "medical-file-transfer", "mft-88", &medical_file(case, "c-88", "kmar")))
        .await
        .unwrap();
    let s = publish(&mut dji, event("dji", "medical-transfer-consent", "c88-dji", &consent(case, "c-88", &["dji"])))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "CONSENT_NOT_OWNED");
    publish(&mut dji, event("dji", "medical-transfer-consent", "c99-dji", &consent(case, "c-99", &["dji"])))
        .await
        .unwrap();
    marker(&gw, "forged-end").await;

    let status = gza.event_status(EventStatusRequest { id: "mft-77".into() }).await.unwrap().into_inner();
    let kmar_state = status.recipients.iter().find(|r| r.partner == "kmar").unwrap();
    assert_eq!((kmar_state.state.as_str(), kmar_state.reason_code.as_str()), ("withheld", "CONSENT_WITHDRAWN"));
    let status = gza.event_status(EventStatusRequest { id: "mft-88".into() }).await.unwrap().into_inner();
    let state = |p: &str| status.recipients.iter().find(|r| r.partner == p).unwrap().clone();
    assert_eq!(state("dji").state, "not-addressed", "{:?}", state("dji"));
    assert!(state("dji").checks.iter().any(|c| c.check == "addressee" && !c.held), "{:?}", state("dji"));
    assert_eq!(state("kmar").state, "deliverable");
    assert_eq!(state("gza").state, "publisher", "never withheld from its own file");

    // dji receives neither file; kmar only the one under c-88.
    let mut req = all_from_start("");
    req.types = vec!["medical-file-transfer".into(), "baggage".into()];
    let got = deliveries(&mut dji, req.clone(), "forged-end").await;
    assert_eq!(ids(&got), ["forged-end"], "no medical file reached dji");
    let got = deliveries(&mut kmar, req, "forged-end").await;
    assert_eq!(ids(&got), ["mft-88", "forged-end"]);

    // Both refusals are in the denial log, and the rejection log has them too.
    let mut quality = gw.client("quality").await;
    let all = quality.list_denials(ListDenialsRequest::default()).await.unwrap().into_inner().denials;
    let refused: Vec<&str> = all
        .iter()
        .filter(|d| d.partner == "dji" && d.reason_code == "CONSENT_NOT_OWNED")
        .map(|d| d.event_id.as_str())
        .collect();
    assert_eq!(refused, ["c77-revive", "c88-dji"]);
    // kmar reads its own refusals only: not that mft-77 is withheld from it.
    let own = kmar.list_denials(ListDenialsRequest::default()).await.unwrap().into_inner().denials;
    assert!(own.iter().all(|d| d.kind.ends_with("-refused")), "{own:?}");
    assert!(all.iter().any(|d| d.partner == "kmar" && d.kind == "withheld"), "the auditor sees the withholding");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medical_file_reaches_only_its_addressee_while_the_named_consent_covers_it() {
    let gw = Gateway::start().await;
    let case = "3456789012";
    let mut gza = gw.client("gza").await;
    let mut dji = gw.client("dji").await;
    let mut kmar = gw.client("kmar").await;
    publish(&mut gza, event("gza", "medical-transfer-consent", "cx", &consent(case, "x", &["kmar"]))).await.unwrap();
    publish(&mut dji, event("dji", "medical-transfer-consent", "cy", &consent(case, "y", &["dji"]))).await.unwrap();
    publish(&mut gza, event("gza", "medical-file-transfer", "file-1", &medical_file(case, "x", "kmar"))).await.unwrap();
    // The registrar withdraws x: the next file under it is withheld from kmar.
    publish(&mut gza, event("gza", "medical-transfer-consent", "cx-w", &withdrawn(case, "x", &["kmar"])))
        .await
        .unwrap();
    publish(&mut gza, event("gza", "medical-file-transfer", "file-2", &medical_file(case, "x", "kmar"))).await.unwrap();
    marker(&gw, "addressed-end").await;

    let mut req = all_from_start("");
    req.types = vec!["medical-file-transfer".into(), "baggage".into()];
    assert_eq!(ids(&deliveries(&mut kmar, req.clone(), "addressed-end").await), ["file-1", "addressed-end"]);
    assert_eq!(ids(&deliveries(&mut dji, req.clone(), "addressed-end").await), ["addressed-end"]);
    // The publisher gets both of its own files.
    req.types = vec!["medical-file-transfer".into()];
    assert_eq!(ids(&deliveries(&mut gza, req, "file-2").await), ["file-1", "file-2"]);
    let status = gza.event_status(EventStatusRequest { id: "file-2".into() }).await.unwrap().into_inner();
    let kmar_state = status.recipients.iter().find(|r| r.partner == "kmar").unwrap();
    assert_eq!((kmar_state.state.as_str(), kmar_state.reason_code.as_str()), ("withheld", "CONSENT_WITHDRAWN"));
    let checks: Vec<(&str, bool)> = kmar_state.checks.iter().map(|c| (c.check.as_str(), c.held)).collect();
    assert_eq!(checks, [("addressee", true), ("named-consent", true), ("coverage", false)]);
    gw.stop().await;
}

/// The short type the policy grants, of a delivered reverse-DNS type (which it must be).
fn short_type(delivered: &str) -> String {
    delivered
        .strip_prefix("nl.vreemdelingenketen.")
        .unwrap_or_else(|| panic!("delivered type {delivered:?} is not the profile's reverse-DNS name"))
        .to_owned()
}
