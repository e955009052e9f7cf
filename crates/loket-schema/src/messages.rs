//! Turns jsonschema's validation errors into [`FieldViolation`]s: a pointer at the offending
//! field and a short lowercase message, without echoing the offending value.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::ValidationError;
use loket_domain::FieldViolation;
use serde_json::Value;

/// Appends the violations `error` stands for (one per unexpected property, otherwise one).
pub(crate) fn violations(error: &ValidationError<'_>, document: &Value, out: &mut Vec<FieldViolation>) {
    let path = error.instance_path().as_str();
    let rule = rule_of(error, document);
    let with_rule = |message: String| match rule {
        Some(rule) => format!("{message} ({rule})"),
        None => message,
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
            out.push(FieldViolation::new(child(path, &name), with_rule(format!("{} is required", quote(&name)))));
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let declared = declared_properties(error, document);
            for name in unexpected {
                let mut message = format!("{} is not allowed here (unknown property)", quote(name));
                if let Some(suggestion) = declared.as_deref().and_then(|d| closest(name, d)) {
                    message.push_str(&format!("; did you mean {}?", quote(suggestion)));
                }
                out.push(FieldViolation::new(child(path, name), with_rule(message)));
            }
        }
        kind => out.push(FieldViolation::new(path, with_rule(message(kind)))),
    }
}

/// The message of every error kind that points at the instance itself.
pub(crate) fn message(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::Required { property } => format!("{property} is required"),
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let names: Vec<String> = unexpected.iter().map(|n| quote(n)).collect();
            format!("unknown properties are not allowed: {}", names.join(", "))
        }
        K::Type { kind } => match kind {
            TypeKind::Single(t) => format!("must be {}", with_article(&t.to_string())),
            TypeKind::Multiple(set) => {
                let names: Vec<String> = set.iter().map(|t| t.to_string()).collect();
                format!("must be of type {}", names.join(" or "))
            }
        },
        K::Enum { options } => match options.as_array() {
            Some(values) if values.len() == 1 => format!("must be {}", values[0]),
            Some(values) => {
                let values: Vec<String> = values.iter().map(Value::to_string).collect();
                format!("must be one of {}", values.join(", "))
            }
            None => format!("must be one of {options}"),
        },
        K::Constant { expected_value } => format!("must be {expected_value}"),
        K::Pattern { pattern } => format!("must match pattern {pattern}"),
        K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {
            "could not be checked against its pattern".to_owned()
        }
        K::Format { format } => match format.as_str() {
            "date-time" => "must be a date-time (RFC 3339, e.g. 2024-03-15T06:00:00+01:00)".to_owned(),
            "date" => "must be a date (YYYY-MM-DD)".to_owned(),
            "time" => "must be a time (RFC 3339, e.g. 06:00:00+01:00)".to_owned(),
            other => format!("must be a valid {other}"),
        },
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
        K::MinLength { limit: 1 } => "must not be empty".to_owned(),
        K::MinLength { limit } => format!("must be at least {limit} characters long"),
        K::MaxLength { limit } => format!("must be at most {limit} characters long"),
        K::MinItems { limit: 1 } => "must have at least one item".to_owned(),
        K::MinItems { limit } => format!("must have at least {limit} items"),
        K::MaxItems { limit } => format!("must have at most {limit} items"),
        K::MinProperties { limit } => format!("must have at least {limit} properties"),
        K::MaxProperties { limit } => format!("must have at most {limit} properties"),
        K::UniqueItems => "must not contain duplicate items".to_owned(),
        K::AdditionalItems { limit } => format!("must have at most {limit} items"),
        K::UnevaluatedItems { .. } => "has items that are not allowed here".to_owned(),
        K::Contains => "must contain at least one matching item".to_owned(),
        K::AnyOf { .. } => "must match at least one of the allowed forms".to_owned(),
        K::OneOfNotValid { .. } => "must match exactly one of the allowed forms, but matches none".to_owned(),
        K::OneOfMultipleValid { .. } => "must match exactly one of the allowed forms, but matches several".to_owned(),
        K::Not { .. } => "is not allowed here".to_owned(),
        K::FalseSchema => "is not allowed here".to_owned(),
        K::PropertyNames { error } => {
            format!("has an invalid property name: {}", message(error.kind()))
        }
        K::ContentEncoding { content_encoding } => format!("must be {content_encoding}-encoded"),
        K::ContentMediaType { content_media_type } => {
            format!("must be of media type {content_media_type}")
        }
        K::FromUtf8 { .. } => "must decode to valid UTF-8".to_owned(),
        K::Custom { message, .. } => message.to_lowercase(),
        K::Referencing(error) => format!("cannot be checked: schema reference failed: {error}"),
    }
}

/// `"name"`, JSON-quoted so that odd characters stay visible.
fn quote(name: &str) -> String {
    Value::from(name).to_string()
}

fn with_article(type_name: &str) -> String {
    match type_name {
        "null" => "null".to_owned(),
        t if t.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {t}"),
        t => format!("a {t}"),
    }
}

/// The pointer of property `name` of the object at `parent`.
fn child(parent: &str, name: &str) -> String {
    let mut pointer = String::with_capacity(parent.len() + name.len() + 1);
    pointer.push_str(parent);
    pointer.push('/');
    for c in name.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
    pointer
}

/// The schema location of the error as a JSON pointer into `document`, without its last
/// `drop_last` segments.
fn schema_pointer(error: &ValidationError<'_>, drop_last: usize) -> String {
    let segments: Vec<LocationSegment<'_>> = error.schema_path().segments().collect();
    let keep = segments.len().saturating_sub(drop_last);
    let mut pointer = String::new();
    for segment in &segments[..keep] {
        pointer = child(&pointer, &segment.to_string());
    }
    pointer
}

/// The `description` of the innermost `then`/`else` branch the error comes from: the rule.
fn rule_of<'d>(error: &ValidationError<'_>, document: &'d Value) -> Option<&'d str> {
    let segments: Vec<LocationSegment<'_>> = error.schema_path().segments().collect();
    // A `then`/`else` that is a keyword, not a property name under `properties` and the like.
    let is_keyword_parent = |i: usize| {
        i == 0
            || !matches!(
                segments.get(i - 1),
                Some(LocationSegment::Property(p))
                    if matches!(p.as_ref(), "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas")
            )
    };
    let branch = segments.iter().enumerate().rev().find(|(i, s)| {
        matches!(s, LocationSegment::Property(p) if p == "then" || p == "else") && is_keyword_parent(*i)
    })?;
    let pointer = schema_pointer(error, segments.len() - branch.0 - 1);
    document.pointer(&pointer)?.get("description")?.as_str()
}

/// The properties declared next to the failing `additionalProperties`, for suggestions.
fn declared_properties(error: &ValidationError<'_>, document: &Value) -> Option<Vec<String>> {
    let parent = document.pointer(&schema_pointer(error, 1))?;
    Some(parent.get("properties")?.as_object()?.keys().cloned().collect())
}

/// The declared name closest to a misspelt `name`, if it is close enough to be a typo.
fn closest<'a>(name: &str, declared: &'a [String]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    declared
        .iter()
        .map(|d| (distance(&lower, &d.to_lowercase()), d))
        .filter(|(dist, d)| *dist <= (d.chars().count() / 3).clamp(1, 3))
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, d)| d.as_str())
}

/// Edit distance counting an insertion, deletion, substitution or swap of two neighbouring
/// characters as one edit (optimal string alignment), so that `levle` is one edit from `level`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best =
                    (d[(i - 1) * width + j] + 1).min(d[i * width + j - 1] + 1).min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
}
