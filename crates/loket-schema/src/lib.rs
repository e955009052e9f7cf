//! loket's event schemas: one JSON Schema (draft 2020-12) per event type and version, compiled
//! once into a [`Registry`], and a fast [`Schema::check`] that either scores an event's
//! completeness or lists every field that is wrong.
//!
//! # The schema files
//!
//! Each file of the repository's `schemas/` directory is named `<type>.v<N>.json` (for example
//! `transport-status.v1.json`) and declares `"$id": "urn:loket:schema:<type>:v<N>"`, which is the
//! value publishers put in the CloudEvents `dataschema` attribute. Besides the standard keywords a
//! schema carries one loket annotation at its root:
//!
//! * `x-loket-expected`: JSON pointers (RFC 6901) of the *expected* fields. An event without them
//!   is accepted, but its completeness drops (see [`loket_domain::Completeness`]). Fields in the
//!   root `required` list are *required*: an event without them is refused. Every other field is
//!   optional.
//!
//! Conditional rules are written as `if`/`then` (usually inside `allOf`). A `description` on the
//! `then` branch is the rule's human explanation: it is appended to the violations the rule
//! causes, e.g. `"cancellationReason" is required (a cancelled transport needs a cancellation
//! reason)`.
//!
//! # Violations
//!
//! [`Schema::check`] returns every violation at once as [`FieldViolation`]s whose `field` is a
//! JSON pointer into the event's `data`:
//!
//! * a missing required property points at the property itself (`/riskAssessment/level`), also
//!   when an `if`/`then` rule requires it;
//! * an unknown property (`additionalProperties: false`) points at that property, one violation
//!   per property;
//! * anything else points at the offending value; the data's root is the empty pointer `""`
//!   (e.g. when `data` is not an object at all).
//!
//! Messages are lowercase sentences such as `must match pattern ^[0-9]{10}$`. They never repeat
//! the offending value, so they can be logged and counted without copying personal data.

mod load;
mod messages;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use loket_domain::{Completeness, FieldViolation};
use serde_json::Value;

/// The compiled schemas of all event types and versions, looked up by type and `dataschema`.
///
/// Build it once at start-up ([`Registry::embedded`] or [`Registry::load_dir`]) and share it:
/// it is immutable, `Send` and `Sync`.
#[derive(Debug)]
pub struct Registry {
    /// Sorted by event type, then version.
    schemas: Vec<Schema>,
    /// The slice of `schemas` holding each event type's versions.
    by_type: HashMap<String, Range<usize>>,
}

/// The repository's `schemas/` directory, compiled into the binary.
static EMBEDDED: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../schemas");

impl Registry {
    /// The schemas compiled into the binary (every file of the repo's schemas/ dir, embedded with the `include_dir` crate, so the binary works from any directory).
    ///
    /// Only the directory's own `*.json` files count; subdirectories (such as `examples/`) are
    /// ignored.
    pub fn embedded() -> Result<Registry, Error> {
        let files = EMBEDDED
            .files()
            .filter_map(|file| {
                let name = file.path().file_name()?.to_str()?;
                Some(load::SourceFile {
                    label: format!("schemas/{name}"),
                    name: name.to_owned(),
                    contents: Ok(file.contents().to_vec()),
                })
            })
            .collect();
        load::build(files, "the embedded schemas directory")
    }

    /// Loads every `*.json` file of `dir`, named `<type>.v<N>.json`. All problems of all files are reported at once.
    ///
    /// Files without the `.json` extension and subdirectories are ignored. Each problem names
    /// the file it was found in; a directory without any schema is a problem too.
    pub fn load_dir(dir: &Path) -> Result<Registry, Error> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::Load {
            problems: vec![format!("{}: cannot read the schema directory: {e}", dir.display())],
        })?;
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    problems.push(format!("{}: cannot list the schema directory: {e}", dir.display()));
                    continue;
                }
            };
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") || path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push(load::SourceFile {
                label: path.display().to_string(),
                name,
                contents: std::fs::read(&path).map_err(|e| format!("cannot read the file: {e}")),
            });
        }
        match load::build(files, &dir.display().to_string()) {
            Ok(registry) if problems.is_empty() => Ok(registry),
            Ok(_) => Err(Error::Load { problems }),
            Err(Error::Load { problems: more }) => {
                problems.extend(more);
                Err(Error::Load { problems })
            }
            Err(other) => Err(other),
        }
    }

    /// `dataschema` None or "" means the latest version of the type; otherwise it must be a known `$id` of that type.
    pub fn resolve(&self, event_type: &str, dataschema: Option<&str>) -> Result<&Schema, Error> {
        let Some(range) = self.by_type.get(event_type) else {
            return Err(Error::UnknownType {
                event_type: event_type.to_owned(),
                known: self.event_types().map(str::to_owned).collect(),
            });
        };
        let versions = &self.schemas[range.clone()];
        match dataschema {
            None | Some("") => Ok(versions.last().expect("every known type has a schema")),
            Some(id) => versions.iter().find(|s| s.id == id).ok_or_else(|| Error::UnknownSchema {
                event_type: event_type.to_owned(),
                dataschema: id.to_owned(),
                known: versions.iter().map(|s| s.id.clone()).collect(),
            }),
        }
    }

    /// All schemas, sorted by type then version.
    pub fn schemas(&self) -> impl Iterator<Item = &Schema> {
        self.schemas.iter()
    }

    /// The known event types, sorted, each once.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        let mut last: Option<&str> = None;
        self.schemas.iter().filter_map(move |s| {
            if last == Some(s.event_type.as_str()) {
                None
            } else {
                last = Some(s.event_type.as_str());
                last
            }
        })
    }

    fn from_schemas(mut schemas: Vec<Schema>) -> Registry {
        schemas.sort_by(|a, b| (a.event_type.as_str(), a.version).cmp(&(b.event_type.as_str(), b.version)));
        let mut by_type: HashMap<String, Range<usize>> = HashMap::new();
        for (i, schema) in schemas.iter().enumerate() {
            by_type.entry(schema.event_type.clone()).and_modify(|r| r.end = i + 1).or_insert(i..i + 1);
        }
        Registry { schemas, by_type }
    }
}

/// One compiled schema: an event type at one version.
#[derive(Debug)]
pub struct Schema {
    event_type: String,
    version: u32,
    id: String,
    title: String,
    description: String,
    required: Vec<String>,
    expected: Vec<String>,
    document: Value,
    validator: jsonschema::Validator,
}

impl Schema {
    /// The event type, e.g. `transport-status` (the CloudEvents `type`).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The version `N` of `<type>.v<N>.json`.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The `$id`, used as CloudEvents `dataschema`, e.g. `urn:loket:schema:transport-status:v1`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The schema's `title` (empty when it has none).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The schema's `description` (empty when it has none).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The top-level required property names, in schema order.
    pub fn required(&self) -> &[String] {
        &self.required
    }

    /// The `x-loket-expected` JSON pointers, in schema order.
    pub fn expected(&self) -> &[String] {
        &self.expected
    }

    /// The schema document itself.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Validates `data`; on failure returns EVERY violation (not just the first), each with a JSON pointer into data and a readable message, sorted by pointer then message, deduplicated. On success returns the completeness score.
    ///
    /// The success path only runs the compiled validator's boolean check and the completeness
    /// scoring; errors are collected (and messages formatted) only for invalid data. See the
    /// crate documentation for what the pointers point at.
    pub fn check(&self, data: &Value) -> Result<Completeness, Vec<FieldViolation>> {
        let completeness = Completeness::score(self.expected.iter().map(String::as_str), data);
        // An expected field sent as null or "" is missing, not wrong: back-office systems
        // send empty fields, and the quality figures must count them rather than the
        // gateway refusing the event. Validate as if such fields were absent.
        let without_empty;
        let subject = if completeness.missing.iter().any(|p| data.pointer(p).is_some()) {
            let mut copy = data.clone();
            for pointer in &completeness.missing {
                remove_pointer(&mut copy, pointer);
            }
            without_empty = copy;
            &without_empty
        } else {
            data
        };
        if self.validator.is_valid(subject) {
            return Ok(completeness);
        }
        Err(self.violations(subject))
    }

    #[cold]
    fn violations(&self, data: &Value) -> Vec<FieldViolation> {
        let mut out = Vec::new();
        for error in self.validator.iter_errors(data) {
            messages::violations(&error, &self.document, &mut out);
        }
        if out.is_empty() {
            // `is_valid` and `iter_errors` disagree: never accept silently.
            out.push(FieldViolation::new("", "does not match the schema"));
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Why a registry could not be built or a schema not be found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// loading failed; one line per problem, each naming the file (and pointer/keyword where relevant)
    #[error("invalid schema set:\n{}", .problems.join("\n"))]
    Load { problems: Vec<String> },
    /// The event type has no schema.
    #[error("unknown event type {event_type:?}; known types: {}", .known.join(", "))]
    UnknownType { event_type: String, known: Vec<String> },
    /// The type is known, but `dataschema` is none of its schemas' `$id`s.
    #[error("unknown schema {dataschema:?} for event type {event_type:?}; known: {}", .known.join(", "))]
    UnknownSchema { event_type: String, dataschema: String, known: Vec<String> },
}

/// Removes the member a JSON pointer names, if its parent is an object.
fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else { return };
    let key = last.replace("~1", "/").replace("~0", "~");
    if let Some(object) = value.pointer_mut(parent).and_then(Value::as_object_mut) {
        object.remove(&key);
    }
}
