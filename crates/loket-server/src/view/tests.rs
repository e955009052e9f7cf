//! The one view as a plain function over a journal on disk: no socket, no gRPC.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use loket_access::SubscriberScan;
use loket_domain::{DIGEST_TYPE, GATEWAY_SOURCE};
use loket_journal::{Journal, JournalConfig, NewEvent, StoredEvent};
use loket_quality::RuleSet;
use loket_schema::Registry;

use super::{Digests, Reading, Viewed, Viewer};
use crate::access::Access;
use crate::proto::CloudEvent;
use crate::publish::Intake;
use crate::trace::CallTrace;
use crate::Config;

struct Fixture {
    viewer: Viewer,
    intake: Intake,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([("LOKET_DATA_DIR".to_owned(), dir.path().display().to_string())]);
    let config = Config::parse("", "t", &env).unwrap();
    let registry = Registry::embedded().unwrap();
    let policy = config.policy(&registry).unwrap();
    let types: Vec<&str> = registry.event_types().collect();
    let rules = RuleSet::embedded(&types).unwrap();
    let journal = Journal::open(&JournalConfig {
        dir: config.journal_dir(),
        cache_capacity_bytes: 1 << 20,
        max_batch: 64,
        ..JournalConfig::default()
    })
    .unwrap();
    let access = Access::open_with(&config, policy, &journal, Access::open_db(&config).unwrap()).unwrap();
    let registry = Arc::new(registry);
    let intake = Intake {
        registry: registry.clone(),
        policy: access.policy.clone(),
        rules,
        max_event_bytes: 1 << 20,
        claims: access.claims.clone(),
        profile: access.profile.clone(),
    };
    Fixture { viewer: Viewer { access, journal, registry }, intake, _dir: dir }
}

impl Fixture {
    /// Stores an example event of `event_type` from `source`, `edit`ed first.
    async fn store(
        &self,
        id: &str,
        event_type: &str,
        source: &str,
        edit: impl Fn(&mut serde_json::Value),
    ) -> StoredEvent {
        let path = format!("{}/../../schemas/examples/{event_type}.json", env!("CARGO_MANIFEST_DIR"));
        let mut data: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        edit(&mut data);
        let event = CloudEvent {
            id: id.into(),
            source: source.into(),
            r#type: event_type.into(),
            data: serde_json::to_vec(&data).unwrap(),
            ..CloudEvent::default()
        };
        let admitted = self
            .intake
            .admit(&source.parse().unwrap(), Some(&event), &CallTrace::default(), &tracing::Span::none())
            .unwrap();
        self.append(admitted.event).await
    }

    async fn append(&self, event: NewEvent) -> StoredEvent {
        let sequence = self.viewer.journal.submit(event).await.unwrap().sequence;
        self.viewer.journal.get(sequence).unwrap().unwrap()
    }

    fn view(&self, scan: &mut SubscriberScan, digests: Digests, event: &StoredEvent) -> Vec<Viewed> {
        self.viewer.view(scan, digests, &mut Reading::new(event)).unwrap()
    }
}

fn scan(partner: &str) -> SubscriberScan {
    SubscriberScan::new(partner, BTreeSet::new())
}

#[tokio::test]
async fn a_digest_reaches_its_partner_and_the_quality_readers_only() {
    let f = fixture();
    let path = format!("{}/../../schemas/examples/quality-digest.json", env!("CARGO_MANIFEST_DIR"));
    let digest = f
        .append(NewEvent {
            source: GATEWAY_SOURCE.into(),
            id: "digest-1".into(),
            event_type: DIGEST_TYPE.into(),
            subject: "dvo".into(),
            datacontenttype: "application/json".into(),
            data: std::fs::read(path).unwrap(),
            ..NewEvent::default()
        })
        .await;
    assert_eq!(f.view(&mut scan("dvo"), Digests::Include, &digest).len(), 1);
    assert_eq!(f.view(&mut scan("quality"), Digests::Only, &digest).len(), 1);
    assert!(f.view(&mut scan("kmar"), Digests::Include, &digest).is_empty(), "another partner's digest");
    assert!(f.view(&mut scan("dvo"), Digests::Skip, &digest).is_empty(), "not asked for");
    let transport = f.store("t-1", "transport-status", "dvo", |_| {}).await;
    assert!(f.view(&mut scan("dvo"), Digests::Only, &transport).is_empty());
}

#[tokio::test]
async fn a_redacted_view_is_recorded_once_in_the_denial_log() {
    let f = fixture();
    let baggage = f
        .store("b-1", "baggage", "dvo", |d| {
            d["handedOverTo"] = "kmar".into();
            d["handedOverAt"] = "2024-03-15T06:00:00+01:00".into();
        })
        .await;
    let viewed = f.view(&mut scan("coa"), Digests::Skip, &baggage);
    assert_eq!(viewed.len(), 1);
    assert_eq!(viewed[0].redacted, ["/handedOverTo"]);
    let seen: serde_json::Value = serde_json::from_slice(&viewed[0].event.data).unwrap();
    assert!(seen.get("handedOverTo").is_none() && seen.get("pieces").is_some());
    f.view(&mut scan("coa"), Digests::Skip, &baggage);
    let denials = f.viewer.access.store.denials(i64::MIN, Some("coa"), false, 10).unwrap();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!((denials[0].kind.as_str(), denials[0].sequence), ("redacted", baggage.sequence));
    let whole = f.view(&mut scan("dtv"), Digests::Skip, &baggage);
    assert_eq!(whole[0].event.data, baggage.data, "dtv sees baggage verbatim");
}

#[tokio::test]
async fn a_withheld_file_is_released_right_after_the_consent_that_covers_it() {
    let f = fixture();
    let file = f.store("m-1", "medical-file-transfer", "dji", |_| {}).await;
    let mut kmar = scan("kmar");
    assert!(f.view(&mut kmar, Digests::Skip, &file).is_empty(), "withheld without consent");
    let consent = f
        .store("c-1", "medical-transfer-consent", "dji", |d| {
            d["validUntil"] = "2999-01-01T00:00:00Z".into();
        })
        .await;
    let group = f.view(&mut kmar, Digests::Skip, &consent);
    assert_eq!(group.len(), 1, "kmar receives no consents, only the released file");
    assert!(group[0].released);
    assert_eq!(group[0].event.id, "m-1");
    assert_eq!(group[0].position, consent.sequence);
    let mut dji = scan("dji");
    let group = f.view(&mut dji, Digests::Skip, &consent);
    assert_eq!(group.iter().map(|v| v.event.id.as_str()).collect::<Vec<_>>(), ["c-1"]);
}

#[tokio::test]
async fn completeness_and_missing_fields_describe_only_what_the_subscriber_sees() {
    let f = fixture();
    // Expected fields left out: the escort (not among coa's fields) and the planned time.
    let transport = f
        .store("t-2", "transport-status", "dvo", |d| {
            let obj = d.as_object_mut().unwrap();
            obj.remove("escort");
            obj.remove("plannedAt");
        })
        .await;
    assert_eq!(transport.missing_expected, ["/escort", "/plannedAt"]);
    let coa = f.view(&mut scan("coa"), Digests::Skip, &transport);
    assert_eq!(coa[0].event.missing_expected, ["/plannedAt"], "whether the escort was filled is not coa's to know");
    assert_eq!(coa[0].event.completeness, 0.5, "of coa's two expected fields, one is missing");
    let dtv = f.view(&mut scan("dtv"), Digests::Skip, &transport);
    assert_eq!(dtv[0].event.missing_expected, transport.missing_expected, "dtv sees every field");
    assert_eq!(dtv[0].event.completeness, transport.completeness);
}

#[tokio::test]
async fn a_file_addressed_to_kmar_never_reaches_another_covered_subscriber() {
    let f = fixture();
    let consent = |id: &'static str, to: &'static str| {
        move |d: &mut serde_json::Value| {
            d["consentId"] = id.into();
            d["recipients"] = serde_json::json!([{"partner": to, "role": "medical-service"}]);
            d["validUntil"] = "2999-01-01T00:00:00Z".into();
        }
    };
    let x = f.store("c-x", "medical-transfer-consent", "gza", consent("x", "kmar")).await;
    let y = f.store("c-y", "medical-transfer-consent", "gza", consent("y", "dji")).await;
    let file = f.store("m-x", "medical-file-transfer", "gza", |d| d["consentId"] = "x".into()).await;
    let (mut kmar, mut dji) = (scan("kmar"), scan("dji"));
    for event in [&x, &y] {
        f.view(&mut kmar, Digests::Skip, event);
        f.view(&mut dji, Digests::Skip, event);
    }
    assert_eq!(f.view(&mut kmar, Digests::Skip, &file).len(), 1, "kmar is the addressee under x");
    assert!(f.view(&mut dji, Digests::Skip, &file).is_empty(), "dji is covered by y, but not the addressee");
    assert!(!dji.is_withheld(&file.subject, file.sequence), "and nothing is kept for dji");
}
