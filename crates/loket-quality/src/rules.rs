//! Quality rules: CEL expressions over an event's `data` that must hold.
//!
//! One TOML file per event type in the schemas' `rules/` directory, named `<type>.toml`:
//!
//! ```toml
//! [[rule]]
//! name = "arrival-not-before-departure"
//! severity = "reject"          # or "flag"
//! description = "a transport cannot arrive before it departed"
//! expr = "!has(data.arrivedAt) || timestamp(data.arrivedAt) >= timestamp(data.departedAt)"
//! ```
//!
//! A rule passes when its expression evaluates to `true`. `false`, a non-boolean result or an
//! evaluation error (for instance a field the expression reads without `has()`) fail it: a
//! rule that cannot tell is not evidence of quality.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::cel_json::{cel_members, cel_value, Vars};
use crate::reads::{data_members, DATA};
use crate::Error;

/// The repository's `schemas/rules/` directory, compiled into the binary.
static EMBEDDED: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../schemas/rules");

/// What a failing rule does to the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The publish fails with `RULE_VIOLATION`.
    Reject,
    /// The event is accepted; the rule is named in the reply and counted.
    Flag,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleDecl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDecl {
    name: String,
    severity: Severity,
    description: String,
    expr: String,
}

/// One compiled rule.
pub struct Rule {
    pub name: String,
    pub event_type: String,
    pub severity: Severity,
    pub description: String,
    pub expr: String,
    program: cel::Program,
}

/// A rule an event failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    pub name: String,
    pub severity: Severity,
    /// The rule's description, plus why it could not be evaluated when that was the cause.
    pub description: String,
}

/// Every rule, by event type. Immutable once loaded; share it behind an `Arc`.
/// The rules of one event type and what of the payload they read.
#[derive(Default)]
struct TypeRules {
    rules: Vec<Rule>,
    /// The top-level payload members any of the rules can read; `None`: the whole payload.
    reads: Option<BTreeSet<String>>,
}

pub struct RuleSet {
    by_type: BTreeMap<String, TypeRules>,
    /// CEL's standard library, built once: building it per event cost more than
    /// evaluating the rules (it showed at the top of the publish path's profile).
    env: Arc<cel::Env>,
}

impl Default for RuleSet {
    fn default() -> Self {
        Self { by_type: BTreeMap::new(), env: Arc::new(cel::Env::stdlib()) }
    }
}

struct Source {
    label: String,
    name: String,
    text: Result<String, String>,
}

impl RuleSet {
    /// The rules compiled into the binary; `known_types` are the registry's event types.
    pub fn embedded(known_types: &[&str]) -> Result<Arc<RuleSet>, Error> {
        let files = EMBEDDED
            .files()
            .filter_map(|f| {
                let name = f.path().file_name()?.to_str()?.to_owned();
                let text = std::str::from_utf8(f.contents()).map(str::to_owned).map_err(|e| e.to_string());
                Some(Source { label: format!("schemas/rules/{name}"), name, text })
            })
            .collect();
        build(files, known_types).map(Arc::new)
    }

    /// Every `*.toml` file of `dir`; a missing directory means no rules. All problems of
    /// all files are reported together, each naming its file and rule.
    pub fn load_dir(dir: &Path, known_types: &[&str]) -> Result<Arc<RuleSet>, Error> {
        if !dir.exists() {
            return Ok(Arc::new(RuleSet::default()));
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::Rules(vec![format!("{}: cannot read the rules directory: {e}", dir.display())]))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = match entry {
                Ok(e) => e.path(),
                Err(e) => return Err(Error::Rules(vec![format!("{}: cannot list: {e}", dir.display())])),
            };
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            files.push(Source {
                label: path.display().to_string(),
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                text: std::fs::read_to_string(&path).map_err(|e| format!("cannot read the file: {e}")),
            });
        }
        build(files, known_types).map(Arc::new)
    }

    /// All rules, by type then declaration order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.by_type.values().flat_map(|t| &t.rules)
    }

    /// The rules of `event_type` that `data` fails.
    pub fn evaluate(&self, event_type: &str, data: &Value) -> Vec<RuleFailure> {
        let Some(TypeRules { rules, reads }) = self.by_type.get(event_type) else {
            return Vec::new();
        };
        let data = match (reads, data) {
            (Some(members), Value::Object(object)) => cel_members(object, members),
            _ => cel_value(data),
        };
        let vars = Vars(vec![(DATA, data.as_ref())]);
        let mut context = cel::Context::with_env(self.env.clone());
        context.set_variable_resolver(&vars);
        rules
            .iter()
            .filter_map(|rule| match rule.program.execute(&context) {
                Ok(cel::Value::Bool(true)) => None,
                Ok(cel::Value::Bool(false)) => Some(rule.failure(String::new())),
                Ok(other) => Some(rule.failure(format!("the expression gave {other:?}, not a boolean"))),
                Err(e) => Some(rule.failure(format!("the expression could not be evaluated: {e}"))),
            })
            .collect()
    }
}

impl TypeRules {
    fn add(&mut self, rule: Rule) {
        let first = self.rules.is_empty();
        self.reads = match (first, self.reads.take(), data_members(rule.program.expression())) {
            (true, _, reads) => reads,
            (false, Some(mut all), Some(more)) => {
                all.extend(more);
                Some(all)
            }
            _ => None,
        };
        self.rules.push(rule);
    }
}

impl Rule {
    fn failure(&self, why: String) -> RuleFailure {
        let description =
            if why.is_empty() { self.description.clone() } else { format!("{} ({why})", self.description) };
        RuleFailure { name: self.name.clone(), severity: self.severity, description }
    }
}

fn build(mut files: Vec<Source>, known_types: &[&str]) -> Result<RuleSet, Error> {
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut problems = Vec::new();
    let mut set = RuleSet::default();
    let mut names = BTreeSet::new();
    for file in files {
        let label = &file.label;
        let event_type = file.name.trim_end_matches(".toml");
        if !known_types.contains(&event_type) {
            problems.push(format!("{label}: no event type {event_type:?} (the file must be named <type>.toml)"));
        }
        let text = match file.text {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{label}: {e}"));
                continue;
            }
        };
        let parsed: RuleFile = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{label}: {}", e.to_string().trim_end()));
                continue;
            }
        };
        for decl in parsed.rule {
            let at = format!("{label}: rule {:?}", decl.name);
            crate::declared::check(&at, "rule", &decl.name, &decl.description, &mut names, &mut problems);
            match cel::Program::compile(&decl.expr) {
                Ok(program) => set.by_type.entry(event_type.to_owned()).or_default().add(Rule {
                    name: decl.name,
                    event_type: event_type.to_owned(),
                    severity: decl.severity,
                    description: decl.description,
                    expr: decl.expr,
                    program,
                }),
                Err(e) => problems.push(format!("{at}: the expression does not compile: {}", one_line(&e.to_string()))),
            }
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(Error::Rules(problems))
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TYPES: &[&str] = &["transport-status", "baggage"];

    #[test]
    fn embedded_rules_load_and_evaluate() {
        let rules = RuleSet::embedded(TYPES).unwrap();
        assert!(rules.rules().count() >= 3);
        let ok = json!({"status": "arrived", "departedAt": "2024-03-15T06:10:00+01:00", "arrivedAt": "2024-03-15T09:00:00+01:00"});
        assert!(rules.evaluate("transport-status", &ok).is_empty());
        let back = json!({"status": "arrived", "departedAt": "2024-03-15T06:10:00+01:00", "arrivedAt": "2024-03-15T05:00:00+01:00"});
        let failed = rules.evaluate("transport-status", &back);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].name, "arrival-not-before-departure");
        assert_eq!(failed[0].severity, Severity::Reject);
        let late = json!({"status": "departed", "departedAt": "2024-03-15T06:10:00+01:00",
            "riskAssessment": {"done": true, "assessedAt": "2024-03-15T07:00:00+01:00"}});
        let failed = rules.evaluate("transport-status", &late);
        assert_eq!(failed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["risk-assessed-before-departure"]);
        assert_eq!(failed[0].severity, Severity::Flag);
        let bags = json!({"pieces": 2, "items": [{}, {}, {}]});
        assert_eq!(rules.evaluate("baggage", &bags)[0].name, "pieces-equal-items");
        assert!(rules.evaluate("baggage", &json!({"pieces": 1, "items": [{}]})).is_empty());
        // Expected fields sent as null are missing, which the rules leave to completeness.
        assert!(rules.evaluate("baggage", &json!({"pieces": 1, "items": null})).is_empty());
        let nulls = json!({"status": "departed", "departedAt": "2024-03-15T06:10:00+01:00", "arrivedAt": null,
            "riskAssessment": {"done": true, "assessedAt": null}});
        assert!(
            rules.evaluate("transport-status", &nulls).is_empty(),
            "{:?}",
            rules.evaluate("transport-status", &nulls)
        );
        assert!(rules.evaluate("transport-status", &json!({"status": "planned"})).is_empty());
    }

    #[test]
    fn evaluation_errors_fail_the_rule_with_the_reason() {
        let files = vec![Source {
            label: "x/baggage.toml".into(),
            name: "baggage.toml".into(),
            text: Ok("[[rule]]\nname = \"n\"\nseverity = \"flag\"\ndescription = \"d\"\nexpr = \"data.missing > 1\"\n"
                .into()),
        }];
        let set = build(files, TYPES).unwrap();
        let failed = set.evaluate("baggage", &json!({"pieces": 1}));
        assert_eq!(failed.len(), 1);
        assert!(failed[0].description.starts_with("d (the expression could not be evaluated"), "{failed:?}");
    }

    #[test]
    fn every_problem_names_its_file_and_rule() {
        let files = vec![
            Source {
                label: "r/baggage.toml".into(),
                name: "baggage.toml".into(),
                text: Ok(concat!(
                    "[[rule]]\nname = \"bad-expr\"\nseverity = \"flag\"\ndescription = \"d\"\nexpr = \"data.pieces ==\"\n",
                    "[[rule]]\nname = \"Bad Name\"\nseverity = \"reject\"\ndescription = \"d\"\nexpr = \"true\"\n",
                )
                .into()),
            },
            Source { label: "r/nosuch.toml".into(), name: "nosuch.toml".into(), text: Ok(String::new()) },
            Source {
                label: "r/transport-status.toml".into(),
                name: "transport-status.toml".into(),
                text: Ok("[[rule]]\nname = \"x\"\nseverity = \"sometimes\"\ndescription = \"d\"\nexpr = \"true\"\n".into()),
            },
        ];
        let Err(Error::Rules(problems)) = build(files, TYPES) else { panic!("expected rule errors") };
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("r/baggage.toml: rule \"bad-expr\": the expression does not compile"));
        assert!(problems[1].starts_with("r/baggage.toml: rule \"Bad Name\": the name must be"));
        assert!(problems[2].starts_with("r/nosuch.toml: no event type \"nosuch\""));
        assert!(problems[3].starts_with("r/transport-status.toml:") && problems[3].contains("sometimes"));
    }
}
