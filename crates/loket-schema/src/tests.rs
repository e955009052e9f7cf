use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;

const TYPES: [&str; 7] = [
    "baggage",
    "handover-readiness",
    "medical-file-transfer",
    "medical-transfer-consent",
    "physical-features",
    "quality-digest",
    "transport-status",
];
/// The one type about a partner rather than a case: the gateway's own quality digest.
const DIGEST: &str = "quality-digest";
/// The gateway's handover findings, about a case.
const READINESS: &str = "handover-readiness";

fn repo_schemas() -> PathBuf {
    // From cargo at run time: a test binary may be reused from a shared target directory
    // that another checkout (at another path) built.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    Path::new(&manifest).join("../../schemas")
}

fn example(event_type: &str) -> Value {
    let path = repo_schemas().join("examples").join(format!("{event_type}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn registry() -> Registry {
    Registry::embedded().expect("embedded schemas load")
}

fn violations(event_type: &str, data: &Value) -> Vec<(String, String)> {
    let registry = registry();
    let schema = registry.resolve(event_type, None).unwrap();
    match schema.check(data) {
        Ok(c) => panic!("expected violations, got completeness {c:?}"),
        Err(vs) => vs.into_iter().map(|v| (v.field, v.description)).collect(),
    }
}

fn fields(vs: &[(String, String)]) -> Vec<&str> {
    vs.iter().map(|(f, _)| f.as_str()).collect()
}

fn remove(data: &mut Value, pointer: &str) {
    let (parent, name) = pointer.rsplit_once('/').unwrap();
    data.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(name).unwrap();
}

fn set(data: &mut Value, pointer: &str, value: Value) {
    let (parent, name) = pointer.rsplit_once('/').unwrap();
    data.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(name.to_owned(), value);
}

#[test]
fn registry_is_send_and_sync() {
    fn assert<T: Send + Sync + 'static>() {}
    assert::<Registry>();
    assert::<Schema>();
    assert::<Error>();
}

#[test]
fn embedded_registry_loads_every_type() {
    let registry = registry();
    let types: Vec<&str> = registry.event_types().collect();
    assert_eq!(types, TYPES);
    let listed: Vec<(&str, u32)> = registry.schemas().map(|s| (s.event_type(), s.version())).collect();
    assert_eq!(listed, TYPES.iter().map(|t| (*t, 1)).collect::<Vec<_>>());
    for schema in registry.schemas() {
        let t = schema.event_type();
        assert_eq!(schema.id(), format!("urn:loket:schema:{t}:v1"));
        assert_eq!(schema.document()["$id"], schema.id());
        assert!(!schema.title().is_empty() && !schema.description().is_empty(), "{t}");
        if t == DIGEST {
            assert!(schema.required().iter().any(|r| r == "partner") && schema.expected().is_empty());
            continue;
        }
        if t == READINESS {
            // The gateway's own finding: complete by construction, nothing merely expected.
            assert!(schema.required().iter().any(|r| r == "vNumber") && schema.expected().is_empty());
            continue;
        }
        assert!(schema.required().iter().any(|r| r == "vNumber"), "{t} requires vNumber");
        assert!((3..=8).contains(&schema.expected().len()), "{t} expects 3 to 8 fields");
        assert!(schema.expected().iter().all(|e| e.starts_with('/')), "{t}");
    }
}

#[test]
fn load_dir_of_the_repo_matches_the_embedded_set() {
    let from_disk = Registry::load_dir(&repo_schemas()).unwrap();
    let embedded = registry();
    let ids = |r: &Registry| r.schemas().map(|s| s.id().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&from_disk), ids(&embedded));
    for (a, b) in from_disk.schemas().zip(embedded.schemas()) {
        assert_eq!(a.document(), b.document());
    }
}

#[test]
fn every_example_is_valid_and_complete() {
    let registry = registry();
    for t in TYPES {
        let schema = registry.resolve(t, None).unwrap();
        let completeness = schema.check(&example(t)).unwrap_or_else(|vs| panic!("example {t} is invalid: {vs:?}"));
        assert_eq!(completeness.score, 1.0, "{t}: {:?}", completeness.missing);
        assert!(completeness.missing.is_empty());
    }
    // Every example file belongs to a known type.
    for entry in std::fs::read_dir(repo_schemas().join("examples")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let t = name.strip_suffix(".json").expect("examples are .json files");
        assert!(TYPES.contains(&t), "example {name} has no schema");
    }
}

#[test]
fn missing_expected_fields_lower_completeness_and_are_listed() {
    let registry = registry();
    let schema = registry.resolve("physical-features", None).unwrap();
    let mut data = example("physical-features");
    remove(&mut data, "/eyeColour");
    set(&mut data, "/photoReference", json!("  "));
    let c = schema.check(&data).unwrap();
    assert_eq!(c.missing, vec!["/eyeColour", "/photoReference"]);
    assert!((c.score - 6.0 / 8.0).abs() < 1e-12);

    // Nested expected fields, and an explicit empty list that still counts as filled.
    let schema = registry.resolve("transport-status", None).unwrap();
    let mut data = example("transport-status");
    remove(&mut data, "/riskAssessment/assessedAt");
    remove(&mut data, "/plannedAt");
    let c = schema.check(&data).unwrap();
    assert_eq!(c.missing, vec!["/riskAssessment/assessedAt", "/plannedAt"]);
    assert!((c.score - 5.0 / 7.0).abs() < 1e-12);

    let schema = registry.resolve("physical-features", None).unwrap();
    let mut data = example("physical-features");
    set(&mut data, "/distinguishingMarks", json!([]));
    assert_eq!(schema.check(&data).unwrap().score, 1.0);

    // Only the required field: accepted, nothing expected is there.
    let c = schema.check(&json!({"vNumber": "9999000001"})).unwrap();
    assert_eq!(c.score, 0.0);
    assert_eq!(c.missing, schema.expected());
}

#[test]
fn expected_fields_sent_empty_or_null_count_as_missing_not_invalid() {
    let registry = registry();
    let schema = registry.resolve("transport-status", None).unwrap();
    let mut data = example("transport-status");
    // An enum, a nested enum and a date-time, each sent empty: none of them is a violation.
    set(&mut data, "/departureKind", json!(""));
    set(&mut data, "/riskAssessment/assessedAt", json!(null));
    set(&mut data, "/plannedAt", json!(""));
    let c = schema.check(&data).unwrap();
    assert_eq!(c.missing, vec!["/departureKind", "/riskAssessment/assessedAt", "/plannedAt"]);

    // A real violation elsewhere is still reported, and only that one.
    set(&mut data, "/status", json!("teleported"));
    assert_eq!(fields(&violations("transport-status", &data)), vec!["/status"]);

    // A field that a rule makes required is still required when sent empty.
    let mut data = example("transport-status");
    set(&mut data, "/riskAssessment/level", json!(null));
    assert_eq!(fields(&violations("transport-status", &data)), vec!["/riskAssessment/level"]);

    // A required field sent empty is still wrong.
    let mut data = example("transport-status");
    set(&mut data, "/transportId", json!(""));
    assert_eq!(fields(&violations("transport-status", &data)), vec!["/transportId"]);
}

#[test]
fn every_violation_is_reported_with_its_pointer() {
    let mut data = example("transport-status");
    remove(&mut data, "/transportId"); // missing required field
    set(&mut data, "/vNumber", json!("V-123")); // wrong pattern
    set(&mut data, "/eta", json!("soon")); // extra property
    set(&mut data, "/riskAssessment/levle", json!("low")); // nested extra property (typo)
    remove(&mut data, "/riskAssessment/level"); // nested rule: done needs level
    set(&mut data, "/status", json!("cancelled")); // rule: cancelled needs a reason
    set(&mut data, "/escort/officers", json!(0)); // below minimum
    set(&mut data, "/plannedAt", json!("15-03-2024 06:00")); // not a date-time
    let vs = violations("transport-status", &data);
    assert_eq!(
        vs,
        [
            (
                "/cancellationReason",
                "\"cancellationReason\" is required (a cancelled transport needs a cancellation reason)"
            ),
            ("/escort/officers", "must be at least 1"),
            ("/eta", "\"eta\" is not allowed here (unknown property)"),
            ("/plannedAt", "must be a date-time (RFC 3339, e.g. 2024-03-15T06:00:00+01:00)"),
            ("/riskAssessment/level", "\"level\" is required (a risk assessment that was made needs its level)"),
            ("/riskAssessment/levle", "\"levle\" is not allowed here (unknown property); did you mean \"level\"?"),
            ("/transportId", "\"transportId\" is required"),
            ("/vNumber", "must match pattern ^[0-9]{10}$"),
        ]
        .map(|(f, d)| (f.to_owned(), d.to_owned()))
    );
    for (_, message) in &vs {
        assert!(!message.contains("ValidationError") && !message.contains("V-123"), "{message}");
    }
}

#[test]
fn one_violation_per_unknown_property() {
    let mut data = example("baggage");
    set(&mut data, "/weight", json!(12));
    set(&mut data, "/colour", json!("red"));
    set(&mut data, "/items/1/serial", json!("x"));
    let vs = violations("baggage", &data);
    assert_eq!(fields(&vs), ["/colour", "/items/1/serial", "/weight"]);
}

#[test]
fn transport_rules() {
    // Departed without a risk assessment, and without the departure time.
    let mut data = example("transport-status");
    remove(&mut data, "/riskAssessment");
    remove(&mut data, "/departedAt");
    let vs = violations("transport-status", &data);
    assert_eq!(fields(&vs), ["/departedAt", "/riskAssessment"]);
    assert!(vs[1].1.contains("needs a risk assessment"), "{vs:?}");

    // Arrived with a risk assessment that was not made.
    let mut data = example("transport-status");
    set(&mut data, "/status", json!("arrived"));
    set(&mut data, "/arrivedAt", json!("2024-03-15T07:05:00+01:00"));
    set(&mut data, "/riskAssessment", json!({"done": false}));
    let vs = violations("transport-status", &data);
    assert_eq!(
        vs,
        [(
            "/riskAssessment/done".to_owned(),
            "must be true (a departed, arrived or handed-over transport needs a risk assessment that was made)"
                .to_owned()
        )]
    );

    // Cancelled with reason other needs a note; a wrong reason is an enum violation.
    let mut data = example("transport-status");
    set(&mut data, "/status", json!("cancelled"));
    set(&mut data, "/cancellationReason", json!("other"));
    assert_eq!(fields(&violations("transport-status", &data)), ["/cancellationNote"]);
    set(&mut data, "/cancellationNote", json!("the flight was overbooked"));
    registry().resolve("transport-status", None).unwrap().check(&data).unwrap();
    set(&mut data, "/cancellationReason", json!("weather"));
    assert_eq!(
        violations("transport-status", &data),
        [(
            "/cancellationReason".to_owned(),
            r#"must be one of "new-legal-procedure", "medical", "no-show", "carrier", "other""#.to_owned()
        )]
    );

    // A planned transport needs no risk assessment yet.
    let mut data = example("transport-status");
    set(&mut data, "/status", json!("planned"));
    remove(&mut data, "/riskAssessment");
    remove(&mut data, "/departedAt");
    let c = registry().resolve("transport-status", None).unwrap().check(&data).unwrap();
    assert_eq!(c.missing, ["/riskAssessment/level", "/riskAssessment/assessedAt"]);

    // A search that was done needs by whom and on what authority.
    let mut data = example("transport-status");
    set(&mut data, "/search", json!({"searched": true}));
    assert_eq!(fields(&violations("transport-status", &data)), ["/search/authority", "/search/by"]);
}

#[test]
fn consent_and_medical_rules() {
    let mut data = example("medical-transfer-consent");
    remove(&mut data, "/signedAt");
    set(&mut data, "/recipients", json!([]));
    let vs = violations("medical-transfer-consent", &data);
    assert_eq!(fields(&vs), ["/recipients", "/signedAt"]);
    assert!(vs[0].1.starts_with("must have at least one item"), "{vs:?}");

    // A refusal needs neither.
    let data = json!({"vNumber": "9999000001", "consentId": "consent-EXAMPLE-0002", "given": false});
    let schema_registry = registry();
    let schema = schema_registry.resolve("medical-transfer-consent", None).unwrap();
    assert!(schema.check(&data).is_ok());

    let mut data = example("medical-file-transfer");
    set(&mut data, "/reason", json!("deported"));
    set(&mut data, "/toCareProfessional/partner", json!("KMar"));
    remove(&mut data, "/fitToFlyConditions");
    let vs = violations("medical-file-transfer", &data);
    assert_eq!(fields(&vs), ["/fitToFlyConditions", "/reason", "/toCareProfessional/partner"]);

    let mut data = example("medical-file-transfer");
    remove(&mut data, "/fitToFly");
    remove(&mut data, "/fitToFlyConditions");
    assert_eq!(fields(&violations("medical-file-transfer", &data)), ["/fitToFly"]);
    set(&mut data, "/reason", json!("to-detention"));
    let schema = schema_registry.resolve("medical-file-transfer", None).unwrap();
    assert_eq!(schema.check(&data).unwrap().missing, ["/fitToFly"]);
}

#[test]
fn baggage_and_features_types() {
    let mut data = example("baggage");
    set(&mut data, "/pieces", json!(-1));
    set(&mut data, "/totalWeightKg", json!("20 kg"));
    set(&mut data, "/items/0/category", json!("weapons"));
    remove(&mut data, "/items/2/description");
    set(&mut data, "/handedOverTo", json!("kmar"));
    let vs = violations("baggage", &data);
    assert_eq!(
        fields(&vs),
        ["/handedOverAt", "/items/0/category", "/items/2/description", "/pieces", "/totalWeightKg"]
    );
    assert_eq!(vs[3].1, "must be at least 0");
    assert_eq!(vs[4].1, "must be a number");

    let mut data = example("physical-features");
    set(&mut data, "/height", json!(178.5));
    *data.pointer_mut("/distinguishingMarks/1").unwrap() = json!({"kind": "tattoo"});
    let vs = violations("physical-features", &data);
    assert_eq!(
        vs,
        [
            ("/distinguishingMarks/1/bodyLocation", "\"bodyLocation\" is required"),
            ("/distinguishingMarks/1/description", "\"description\" is required"),
            ("/height", "must be an integer"),
        ]
        .map(|(f, d)| (f.to_owned(), d.to_owned()))
    );
}

#[test]
fn data_that_is_not_an_object_points_at_the_root() {
    assert_eq!(violations("baggage", &json!([1, 2])), [("".to_owned(), "must be an object".to_owned())]);
    let vs = violations("baggage", &json!({}));
    assert_eq!(fields(&vs), ["/pieces", "/vNumber"]);
}

#[test]
fn resolve_by_type_and_dataschema() {
    let registry = registry();
    assert_eq!(registry.resolve("baggage", None).unwrap().id(), "urn:loket:schema:baggage:v1");
    assert_eq!(registry.resolve("baggage", Some("")).unwrap().id(), "urn:loket:schema:baggage:v1");
    let explicit = registry.resolve("baggage", Some("urn:loket:schema:baggage:v1")).unwrap();
    assert_eq!(explicit.version(), 1);

    let err = registry.resolve("luggage", None).unwrap_err();
    assert!(matches!(&err, Error::UnknownType { event_type, known } if event_type == "luggage" && known == &TYPES));
    assert_eq!(
        err.to_string(),
        "unknown event type \"luggage\"; known types: baggage, handover-readiness, medical-file-transfer, \
         medical-transfer-consent, physical-features, quality-digest, transport-status"
    );

    // Another type's schema, or an unknown version, is not this type's schema.
    for id in ["urn:loket:schema:physical-features:v1", "urn:loket:schema:baggage:v2"] {
        let err = registry.resolve("baggage", Some(id)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unknown schema {id:?} for event type \"baggage\"; known: urn:loket:schema:baggage:v1")
        );
    }
}

/// A minimal valid schema file for `<t>.v<v>.json`, with extra root keywords merged in.
fn schema_file(t: &str, v: u32, extra: Value) -> String {
    let mut doc = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:loket:schema:{t}:v{v}"),
        "title": format!("{t} v{v}"),
        "description": "test schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["vNumber"],
        "properties": {"vNumber": {"type": "string", "pattern": "^[0-9]{10}$"}, "note": {"type": "string"}},
        "x-loket-expected": ["/note"]
    });
    for (k, val) in extra.as_object().unwrap() {
        doc[k] = val.clone();
    }
    serde_json::to_string_pretty(&doc).unwrap()
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

#[test]
fn versions_resolve_numerically_latest_first() {
    let dir = tempfile::tempdir().unwrap();
    for v in [1, 2, 10] {
        write(dir.path(), &format!("thing.v{v}.json"), &schema_file("thing", v, json!({})));
    }
    write(dir.path(), "README.md", "not a schema");
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    write(&dir.path().join("examples"), "thing.json", "{}");
    let registry = Registry::load_dir(dir.path()).unwrap();
    let versions: Vec<u32> = registry.schemas().map(Schema::version).collect();
    assert_eq!(versions, [1, 2, 10]);
    assert_eq!(registry.resolve("thing", None).unwrap().version(), 10);
    assert_eq!(registry.resolve("thing", Some("urn:loket:schema:thing:v2")).unwrap().version(), 2);
    let err = registry.resolve("thing", Some("urn:loket:schema:thing:v3")).unwrap_err().to_string();
    assert!(
        err.ends_with("known: urn:loket:schema:thing:v1, urn:loket:schema:thing:v2, urn:loket:schema:thing:v10"),
        "{err}"
    );
}

#[test]
fn expected_fields_may_be_nested_or_declared_in_branches() {
    let dir = tempfile::tempdir().unwrap();
    let extra = json!({
        "additionalProperties": true,
        "$defs": {"who": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "properties": {
            "vNumber": {"type": "string"},
            "outer": {"type": "object", "properties": {"inner": {"type": "integer"}}},
            "by": {"$ref": "#/$defs/who"},
            "a~b/c": {"type": "string"}
        },
        "allOf": [{"if": {"required": ["vNumber"]}, "then": {"properties": {"onlyInThen": {"type": "string"}}}}],
        "x-loket-expected": ["/outer/inner", "/by/name", "/onlyInThen", "/a~0b~1c"]
    });
    write(dir.path(), "nested.v1.json", &schema_file("nested", 1, extra));
    let registry = Registry::load_dir(dir.path()).unwrap();
    let schema = registry.resolve("nested", None).unwrap();
    let c = schema.check(&json!({"vNumber": "1", "outer": {"inner": 3}, "a~b/c": "x"})).unwrap();
    assert_eq!(c.missing, ["/by/name", "/onlyInThen"]);
}

#[test]
fn load_dir_reports_every_problem_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "good.v1.json", &schema_file("good", 1, json!({})));
    write(d, "Bad_Name.json", &schema_file("bad-name", 1, json!({})));
    write(d, "broken.v1.json", "{ \"$schema\": ");
    write(
        d,
        "old-draft.v1.json",
        &schema_file(
            "old-draft",
            1,
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "$id": "urn:loket:schema:old:v1"}),
        ),
    );
    write(
        d,
        "expectations.v2.json",
        &schema_file(
            "expectations",
            2,
            json!({"x-loket-expected": ["/note", "/missing", "vNumber", "/vNumber", "/note/deeper", 7]}),
        ),
    );
    write(d, "not-expected.v1.json", &schema_file("not-expected", 1, json!({"x-loket-expected": "/note"})));
    write(d, "bad-keyword.v1.json", &schema_file("bad-keyword", 1, json!({"type": "strnig", "minProperties": -1})));
    write(
        d,
        "bad-regex.v1.json",
        &schema_file("bad-regex", 1, json!({"properties": {"vNumber": {"type": "string", "pattern": "([0-9"}}})),
    );
    write(
        d,
        "bad-format.v1.json",
        &schema_file("bad-format", 1, json!({"properties": {"vNumber": {"type": "string", "format": "date-tme"}}})),
    );
    write(d, "array.v1.json", "[]");

    let Err(Error::Load { problems }) = Registry::load_dir(d) else { panic!("loading must fail") };
    let text = problems.join("\n");
    let has = |file: &str, needle: &str| {
        problems.iter().any(|p| p.contains(file) && p.contains(needle))
            || panic!("no problem for {file} containing {needle:?} in:\n{text}")
    };
    has("Bad_Name.json", "file name must be <type>.v<N>.json");
    has("broken.v1.json", "not valid JSON");
    has("old-draft.v1.json", "$schema must be \"https://json-schema.org/draft/2020-12/schema\"");
    has("old-draft.v1.json", "$id must be \"urn:loket:schema:old-draft:v1\"");
    has("expectations.v2.json", "/x-loket-expected/1: \"/missing\" is not a property declared");
    has("expectations.v2.json", "/x-loket-expected/2: \"vNumber\" is not a JSON pointer");
    has("expectations.v2.json", "/x-loket-expected/3: \"/vNumber\" is also required");
    has("expectations.v2.json", "/x-loket-expected/4: \"/note/deeper\" is not a property declared");
    has("expectations.v2.json", "/x-loket-expected/5: must be a string");
    has("not-expected.v1.json", "/x-loket-expected: must be an array");
    has("bad-keyword.v1.json", "/type");
    has("bad-keyword.v1.json", "/minProperties: must be at least 0");
    has("bad-regex.v1.json", "does not compile: /properties/vNumber/pattern: not a valid regular expression");
    has("bad-format.v1.json", "does not compile: /properties/vNumber/format: unknown format \"date-tme\"");
    has("array.v1.json", "must be a JSON object");
    assert!(!text.contains("good.v1.json"), "the good file has no problems:\n{text}");
    assert!(Error::Load { problems: problems.clone() }.to_string().starts_with("invalid schema set:\n"));
}

#[test]
fn load_dir_without_schemas_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = Registry::load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no schema files"), "{err}");
    let err = Registry::load_dir(&dir.path().join("nowhere")).unwrap_err().to_string();
    assert!(err.contains("cannot read the schema directory"), "{err}");
}

#[test]
fn file_names() {
    use crate::load::parse_file_name;
    assert_eq!(parse_file_name("transport-status.v1.json"), Some(("transport-status", 1)));
    assert_eq!(parse_file_name("a2.v12.json"), Some(("a2", 12)));
    for bad in [
        "x.json",
        "x.v0.json",
        "x.v01.json",
        "X.v1.json",
        "-x.v1.json",
        "x-.v1.json",
        "a--b.v1.json",
        "x.v1.yaml",
        ".v1.json",
        "x.vone.json",
    ] {
        assert_eq!(parse_file_name(bad), None, "{bad}");
    }
}
