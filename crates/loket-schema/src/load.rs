//! Checking and compiling a set of schema files. Every problem of every file is collected, so
//! that one load reports everything that needs fixing.

use jsonschema::Draft;
use serde_json::Value;

use crate::{messages, Error, Registry, Schema};

/// The `$schema` every loket schema declares.
pub(crate) const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// The root annotation listing the expected fields.
pub(crate) const EXPECTED_KEYWORD: &str = "x-loket-expected";

/// One file to load: its name (`<type>.v<N>.json`), how problems refer to it, and its bytes
/// (or why they could not be read).
pub(crate) struct SourceFile {
    pub(crate) label: String,
    pub(crate) name: String,
    pub(crate) contents: Result<Vec<u8>, String>,
}

/// Checks and compiles `files`; `origin` names where they came from when there are none.
pub(crate) fn build(mut files: Vec<SourceFile>, origin: &str) -> Result<Registry, Error> {
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut problems = Vec::new();
    let mut schemas = Vec::new();
    for file in files {
        let before = problems.len();
        let mut report = |problem: String| problems.push(format!("{}: {problem}", file.label));
        if let Some(schema) = load_file(&file, &mut report) {
            if problems.len() == before {
                schemas.push(schema);
            }
        }
    }
    if schemas.is_empty() && problems.is_empty() {
        problems.push(format!("{origin}: no schema files (<type>.v<N>.json) found"));
    }
    if problems.is_empty() {
        Ok(Registry::from_schemas(schemas))
    } else {
        Err(Error::Load { problems })
    }
}

/// Splits `<type>.v<N>.json` into type and version.
pub(crate) fn parse_file_name(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".json")?;
    let (event_type, version) = stem.rsplit_once(".v")?;
    let type_ok = event_type.starts_with(|c: char| c.is_ascii_lowercase())
        && !event_type.ends_with('-')
        && !event_type.contains("--")
        && event_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let version_ok = !version.is_empty() && !version.starts_with('0') && version.bytes().all(|b| b.is_ascii_digit());
    if !type_ok || !version_ok {
        return None;
    }
    Some((event_type, version.parse().ok()?))
}

/// Checks one file, reporting each problem; returns the schema when it compiled.
fn load_file(file: &SourceFile, report: &mut dyn FnMut(String)) -> Option<Schema> {
    let name = parse_file_name(&file.name);
    if name.is_none() {
        report(
            "file name must be <type>.v<N>.json (type: lowercase letters, digits and single '-', \
             starting with a letter; N: a version number from 1 without leading zeros)"
                .to_owned(),
        );
    }
    let bytes = match &file.contents {
        Ok(bytes) => bytes,
        Err(e) => {
            report(e.clone());
            return None;
        }
    };
    let document: Value = match serde_json::from_slice(bytes) {
        Ok(document) => document,
        Err(e) => {
            report(format!("not valid JSON: {e}"));
            return None;
        }
    };
    let Some(root) = document.as_object() else {
        report("a schema must be a JSON object".to_owned());
        return None;
    };

    match root.get("$schema").and_then(Value::as_str) {
        Some(DRAFT_2020_12) | Some("https://json-schema.org/draft/2020-12/schema#") => {}
        Some(other) => report(format!("$schema must be {DRAFT_2020_12:?}, not {other:?}")),
        None => report(format!("$schema is missing; it must be {DRAFT_2020_12:?}")),
    }
    let id = root.get("$id").and_then(Value::as_str);
    if let Some((event_type, version)) = name {
        let wanted = format!("urn:loket:schema:{event_type}:v{version}");
        match id {
            Some(id) if id == wanted => {}
            Some(id) => report(format!("$id must be {wanted:?} (from the file name), not {id:?}")),
            None => report(format!("$id is missing; it must be {wanted:?}")),
        }
    }
    let text = |keyword: &str, report: &mut dyn FnMut(String)| match root.get(keyword) {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            report(format!("/{keyword}: must be a string"));
            String::new()
        }
    };
    let title = text("title", report);
    let description = text("description", report);

    let validator = compile(&document, report);

    let required: Vec<String> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let expected = expected_fields(&document, &required, report);

    let (event_type, version) = name?;
    Some(Schema {
        event_type: event_type.to_owned(),
        version,
        id: id?.to_owned(),
        title,
        description,
        required,
        expected,
        validator: validator?,
        document,
    })
}

/// Validates the document against the 2020-12 meta-schema (reporting every error), then
/// compiles it (which also catches bad regular expressions, unknown formats and references
/// that cannot be resolved offline).
fn compile(document: &Value, report: &mut dyn FnMut(String)) -> Option<jsonschema::Validator> {
    let meta = jsonschema::draft202012::meta::validator();
    let mut meta_errors = Vec::new();
    for error in meta.iter_errors(document) {
        let pointer = error.instance_path().as_str();
        let pointer = if pointer.is_empty() { "(root)" } else { pointer };
        meta_errors.push(format!(
            "{pointer}: {} (keyword {})",
            messages::message(error.kind()),
            error.kind().keyword()
        ));
    }
    if !meta_errors.is_empty() {
        meta_errors.sort();
        meta_errors.dedup();
        for error in meta_errors {
            report(format!("not a valid JSON Schema: {error}"));
        }
        return None;
    }
    let built = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(document);
    match built {
        Ok(validator) => Some(validator),
        Err(error) => {
            let pointer = error.instance_path().as_str();
            let pointer = if pointer.is_empty() { "(root)" } else { pointer };
            report(format!("the schema does not compile: {pointer}: {}", compile_message(&error)));
            None
        }
    }
}

/// A compile error as a lowercase sentence without configuration advice that does not apply.
fn compile_message(error: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match error.kind() {
        K::Format { format } if format == "regex" => "not a valid regular expression".to_owned(),
        K::Custom { message, .. } if message.starts_with("Unknown format:") => {
            let name = message.split('\'').nth(1).unwrap_or_default();
            format!("unknown format {name:?}")
        }
        _ => {
            let text = error.to_string();
            let mut chars = text.chars();
            chars.next().map_or_else(String::new, |first| first.to_lowercase().chain(chars).collect())
        }
    }
}

/// Reads and checks `x-loket-expected`: an array of JSON pointers to declared properties, none
/// of them a top-level required property, none twice. Absent means nothing is expected.
fn expected_fields(document: &Value, required: &[String], report: &mut dyn FnMut(String)) -> Vec<String> {
    let at = format!("/{EXPECTED_KEYWORD}");
    let Some(value) = document.get(EXPECTED_KEYWORD) else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        report(format!("{at}: must be an array of JSON pointers"));
        return Vec::new();
    };
    let mut expected: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(pointer) = item.as_str() else {
            report(format!("{at}/{i}: must be a string (a JSON pointer such as \"/height\")"));
            continue;
        };
        let Some(segments) = pointer_segments(pointer) else {
            report(format!(
                "{at}/{i}: {pointer:?} is not a JSON pointer to a field (it must start with '/', \
                 have no empty segments, and escape '~' and '/' as ~0 and ~1)"
            ));
            continue;
        };
        if !declares(document, &segments) {
            report(format!("{at}/{i}: {pointer:?} is not a property declared in the schema"));
            continue;
        }
        if segments.len() == 1 && required.iter().any(|r| *r == segments[0]) {
            report(format!("{at}/{i}: {pointer:?} is also required; a field is either required or expected"));
            continue;
        }
        if expected.iter().any(|e| e == pointer) {
            report(format!("{at}/{i}: {pointer:?} is listed twice"));
            continue;
        }
        expected.push(pointer.to_owned());
    }
    expected
}

/// The unescaped segments of a JSON pointer to a field; `None` when it is not one.
fn pointer_segments(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    rest.split('/')
        .map(|raw| {
            if raw.is_empty() {
                return None;
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return None,
                    }
                } else {
                    out.push(c);
                }
            }
            Some(out)
        })
        .collect()
}

/// Whether the property path `segments` is declared: each segment under `properties` of the
/// schema reached so far, looking through `allOf`/`anyOf`/`oneOf`/`if`/`then`/`else`
/// branches and local `$ref`s.
fn declares(document: &Value, segments: &[String]) -> bool {
    let mut nodes = vec![document];
    for segment in segments {
        let mut next = Vec::new();
        for node in nodes {
            property_schemas(document, node, segment, &mut next, 0);
        }
        if next.is_empty() {
            return false;
        }
        nodes = next;
    }
    true
}

fn property_schemas<'d>(document: &'d Value, node: &'d Value, name: &str, out: &mut Vec<&'d Value>, depth: usize) {
    if depth > 32 {
        return;
    }
    if let Some(property) = node.get("properties").and_then(|p| p.get(name)) {
        out.push(property);
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = node.get(keyword).and_then(Value::as_array) {
            for branch in branches {
                property_schemas(document, branch, name, out, depth + 1);
            }
        }
    }
    for keyword in ["if", "then", "else"] {
        if let Some(branch) = node.get(keyword) {
            property_schemas(document, branch, name, out, depth + 1);
        }
    }
    let local_ref = node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#'));
    if let Some(target) = local_ref.and_then(|pointer| document.pointer(pointer)) {
        property_schemas(document, target, name, out, depth + 1);
    }
}
