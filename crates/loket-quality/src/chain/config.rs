//! Handover expectations: one TOML file per handover kind in the schemas' `chain/`
//! directory, named `<kind>.toml` (built in; `[quality] chain_dir` uses a directory instead):
//!
//! ```toml
//! description = "detention hands the person over to the escort for a forced departure"
//! receiver = "kmar"                     # the partner taking over
//! [trigger]
//! type = "transport-status"
//! when = "data.status == 'departed' && data.toLocation == 'Schiphol'"   # CEL over the payload
//! [[item]]
//! name = "baggage-registered"
//! description = "baggage registered by detention within 48 h, under the current instruction"
//! type = "baggage"                      # the latest event of this type ...
//! from = "dji"                          # ... from this partner, before the trigger
//! max_age_hours = 48                    # older than this before the trigger: stale (by the
//!                                       # events' own `time`, else their receipt)
//! expr = "event.data.instructionVersion >= '2018-05'"   # must hold, else unmet
//! [[item]]
//! name = "risk-assessed"                # no type: the trigger itself, its publisher answers for it
//! description = "a risk assessment was made"
//! expr = "has(trigger.data.riskAssessment) && trigger.data.riskAssessment.done"
//! ```
//!
//! Item expressions see `trigger`, `event` (the item's event; the trigger for an item
//! without type) and `case` (the latest event of each type per partner before the
//! trigger), each event as `{type, source, receivedAt, time, data}` (`time`: its own, else
//! `receivedAt`; both RFC 3339, for `timestamp()`); `applies` (optional) says
//! when the item is due at all. Payloads are read by member name only (`x.data.member`), so
//! the case state keeps just the members some expression reads.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::reads::payload_members;
use crate::Error;

/// The repository's `schemas/chain/` directory, compiled into the binary.
static EMBEDDED: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../schemas/chain");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandoverDecl {
    /// What the handover is, for people reading figures.
    description: String,
    /// The partner that takes the person over.
    receiver: String,
    /// The event that is the handover.
    trigger: TriggerDecl,
    /// What must exist for the case before the trigger.
    #[serde(default)]
    item: Vec<ItemDecl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerDecl {
    /// The event type of the trigger.
    #[serde(rename = "type")]
    event_type: String,
    /// CEL over `data`, the trigger's payload: true when this event is the handover.
    #[serde(default = "always")]
    when: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemDecl {
    /// Unique within the handover kind: lowercase letters, digits and '-'.
    name: String,
    /// What must be there, for people reading figures.
    description: String,
    /// The event type that must exist; absent: the trigger itself is checked.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The partner that must have published it (required with `type`).
    from: Option<String>,
    /// Older (by gateway receipt) than this many hours before the trigger: stale.
    max_age_hours: Option<u32>,
    /// CEL: when false the item is not due for this handover.
    #[serde(default = "always")]
    applies: String,
    /// CEL: must hold for the item to be met.
    #[serde(default = "always")]
    expr: String,
}

fn always() -> String {
    "true".to_owned()
}

/// One compiled handover kind.
pub struct Handover {
    pub kind: String,
    pub description: String,
    pub receiver: String,
    pub trigger_type: String,
    pub(crate) when: cel::Program,
    pub items: Vec<Item>,
}

/// What a handover expects, compiled.
pub struct Item {
    pub name: String,
    pub description: String,
    /// `None`: the trigger itself.
    pub source: Option<ItemSource>,
    pub max_age_micros: Option<i64>,
    pub(crate) applies: cel::Program,
    pub(crate) expr: cel::Program,
}

/// Where an item's event comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSource {
    pub event_type: String,
    pub partner: String,
}

/// Every handover kind; immutable once loaded.
#[derive(Default)]
pub struct HandoverSet {
    pub(crate) handovers: Vec<Handover>,
    /// The payload members any expression reads: all the case state keeps of a payload.
    pub(crate) members: BTreeSet<String>,
    /// The declarations' text, so a store built under other expectations is rebuilt.
    fingerprint: String,
}

struct Source {
    label: String,
    name: String,
    text: Result<String, String>,
}

impl HandoverSet {
    /// The expectations compiled into the binary; `known_types` are the registry's types.
    pub fn embedded(known_types: &[&str]) -> Result<HandoverSet, Error> {
        let files = EMBEDDED
            .files()
            .filter_map(|f| {
                let name = f.path().file_name()?.to_str()?.to_owned();
                let text = std::str::from_utf8(f.contents()).map(str::to_owned).map_err(|e| e.to_string());
                Some(Source { label: format!("schemas/chain/{name}"), name, text })
            })
            .collect();
        build(files, known_types)
    }

    /// Every `*.toml` file of `dir`; a missing directory means no handovers. All problems
    /// of all files are reported together, each naming its file and item.
    pub fn load_dir(dir: &Path, known_types: &[&str]) -> Result<HandoverSet, Error> {
        if !dir.exists() {
            return Ok(HandoverSet::default());
        }
        let problem = |e: std::io::Error| Error::Handovers(vec![format!("{}: cannot read: {e}", dir.display())]);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(problem)? {
            let path = entry.map_err(problem)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            files.push(Source {
                label: path.display().to_string(),
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                text: std::fs::read_to_string(&path).map_err(|e| format!("cannot read the file: {e}")),
            });
        }
        build(files, known_types)
    }

    pub fn handovers(&self) -> &[Handover] {
        &self.handovers
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Every partner the expectations name (receivers and suppliers), to check against
    /// the configured partners.
    pub fn partners(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for h in &self.handovers {
            out.insert((h.kind.clone(), h.receiver.clone()));
            for item in &h.items {
                if let Some(source) = &item.source {
                    out.insert((h.kind.clone(), source.partner.clone()));
                }
            }
        }
        out
    }
}

/// Compiles one expression, noting the payload members it reads or the problem.
fn compile(
    at: &str,
    what: &str,
    source: &str,
    members: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) -> cel::Program {
    match cel::Program::compile(source) {
        Ok(program) => {
            match payload_members(program.expression()) {
                Some(read) => members.extend(read),
                None => problems
                    .push(format!("{at}: {what} reads a payload other than by member name (write x.data.member)")),
            }
            program
        }
        Err(e) => {
            let text = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
            problems.push(format!("{at}: {what} does not compile: {text}"));
            cel::Program::compile("false").expect("a literal compiles")
        }
    }
}

fn build(mut files: Vec<Source>, known_types: &[&str]) -> Result<HandoverSet, Error> {
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut problems = Vec::new();
    let mut set = HandoverSet::default();
    for file in files {
        let label = &file.label;
        let kind = file.name.trim_end_matches(".toml").to_owned();
        if !crate::declared::valid_name(&kind) {
            problems
                .push(format!("{label}: the file name must be <kind>.toml, the kind lowercase letters, digits or '-'"));
        }
        let text = match file.text {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{label}: {e}"));
                continue;
            }
        };
        set.fingerprint.push_str(&format!("{kind}\n{text}\n"));
        let decl: HandoverDecl = match toml::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{label}: {}", e.to_string().trim_end()));
                continue;
            }
        };
        if decl.description.trim().is_empty() {
            problems.push(format!("{label}: the description must not be empty"));
        }
        if decl.receiver.trim().is_empty() {
            problems.push(format!("{label}: the receiver must name a partner"));
        }
        if !known_types.contains(&decl.trigger.event_type.as_str()) {
            problems.push(format!("{label}: trigger: no event type {:?}", decl.trigger.event_type));
        }
        let when = compile(&format!("{label}: trigger"), "when", &decl.trigger.when, &mut set.members, &mut problems);
        let mut names = BTreeSet::new();
        let mut items = Vec::new();
        for item in decl.item {
            let at = format!("{label}: item {:?}", item.name);
            crate::declared::check(&at, "item", &item.name, &item.description, &mut names, &mut problems);
            let source = match (item.event_type, item.from) {
                (Some(event_type), Some(partner)) => {
                    if !known_types.contains(&event_type.as_str()) {
                        problems.push(format!("{at}: no event type {event_type:?}"));
                    }
                    Some(ItemSource { event_type, partner })
                }
                (Some(_), None) => {
                    problems.push(format!("{at}: an item with a type needs `from`, the partner that supplies it"));
                    None
                }
                (None, Some(_)) => {
                    problems.push(format!("{at}: `from` needs a `type` (without one the trigger's publisher answers)"));
                    None
                }
                (None, None) => None,
            };
            if item.max_age_hours.is_some() && source.is_none() {
                problems.push(format!("{at}: max_age_hours needs a `type` (the trigger is never stale)"));
            }
            if item.max_age_hours == Some(0) {
                problems.push(format!("{at}: max_age_hours must be at least 1"));
            }
            items.push(Item {
                applies: compile(&at, "applies", &item.applies, &mut set.members, &mut problems),
                expr: compile(&at, "expr", &item.expr, &mut set.members, &mut problems),
                name: item.name,
                description: item.description,
                source,
                max_age_micros: item.max_age_hours.map(|h| i64::from(h) * 3_600_000_000),
            });
        }
        if items.is_empty() {
            problems.push(format!("{label}: a handover needs at least one [[item]]"));
        }
        set.handovers.push(Handover {
            kind,
            description: decl.description,
            receiver: decl.receiver,
            trigger_type: decl.trigger.event_type,
            when,
            items,
        });
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(Error::Handovers(problems))
    }
}

#[cfg(test)]
pub(crate) fn from_text(files: &[(&str, &str)], known_types: &[&str]) -> Result<HandoverSet, Error> {
    let files = files
        .iter()
        .map(|(name, text)| Source {
            label: format!("t/{name}"),
            name: (*name).to_owned(),
            text: Ok((*text).to_owned()),
        })
        .collect();
    build(files, known_types)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &[&str] =
        &["transport-status", "baggage", "physical-features", "medical-file-transfer", "medical-transfer-consent"];

    #[test]
    fn the_built_in_expectations_load_and_read_only_named_members() {
        let set = HandoverSet::embedded(TYPES).unwrap();
        let kinds: Vec<&str> = set.handovers().iter().map(|h| h.kind.as_str()).collect();
        assert_eq!(kinds, ["detention-to-departure", "reception-to-detention"]);
        assert!(set.members.contains("instructionVersion") && set.members.contains("photoReference"));
        assert!(!set.members.contains("items") && !set.members.contains("attentionPoints"), "{:?}", set.members);
        assert!(set.partners().contains(&("detention-to-departure".to_owned(), "kmar".to_owned())));
    }

    #[test]
    fn every_problem_names_its_file_and_item() {
        let bad = r#"
description = ""
receiver = "kmar"
[trigger]
type = "nosuch"
when = "data.status =="
[[item]]
name = "Bad"
description = "d"
type = "baggage"
[[item]]
name = "x"
description = "d"
max_age_hours = 3
expr = "size(event.data) > 0"
"#;
        let Err(Error::Handovers(problems)) = from_text(&[("k.toml", bad), ("Odd.toml", "x = 1")], TYPES) else {
            panic!("expected problems")
        };
        let expect = [
            "t/Odd.toml: the file name must be",
            "t/Odd.toml: TOML parse error",
            "t/k.toml: the description must not be empty",
            "t/k.toml: trigger: no event type \"nosuch\"",
            "t/k.toml: trigger: when does not compile",
            "t/k.toml: item \"Bad\": the name must be",
            "t/k.toml: item \"Bad\": an item with a type needs `from`",
            "t/k.toml: item \"x\": max_age_hours needs a `type`",
            "t/k.toml: item \"x\": expr reads a payload other than by member name",
        ];
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
        assert!(problems[1].contains("unknown field `x`"), "{}", problems[1]);
        for (p, e) in problems.iter().zip(expect) {
            assert!(p.starts_with(e), "{p:?} should start with {e:?}");
        }
    }
}
