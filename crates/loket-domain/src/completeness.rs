use serde_json::Value;

/// How complete an accepted event is, judged by its schema's expected fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Completeness {
    /// Filled expected fields divided by all expected fields; 1.0 when a schema expects none.
    pub score: f64,
    /// JSON pointers of the expected fields that are absent, null or an empty string.
    pub missing: Vec<String>,
}

impl Completeness {
    /// Scores `data` against `expected`, a list of JSON pointers (RFC 6901).
    pub fn score<'a>(expected: impl IntoIterator<Item = &'a str>, data: &Value) -> Self {
        let mut total = 0usize;
        let mut missing = Vec::new();
        for pointer in expected {
            total += 1;
            if !is_filled(data.pointer(pointer)) {
                missing.push(pointer.to_owned());
            }
        }
        let score = if total == 0 { 1.0 } else { (total - missing.len()) as f64 / total as f64 };
        Self { score, missing }
    }
}

/// Whether a field counts as filled: present, not null and not an empty (or blank) string.
/// An empty list or object is filled: it states "none" explicitly.
pub fn is_filled(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_absent_null_and_empty_strings_as_missing() {
        let data = json!({
            "height": 180,
            "build": null,
            "eyeColour": "",
            "hairColour": "  ",
            "marks": [],
            "photo": {"ref": "p1"}
        });
        let expected = ["/height", "/build", "/eyeColour", "/hairColour", "/marks", "/photo/ref", "/recordedBy"];
        let c = Completeness::score(expected, &data);
        assert_eq!(c.missing, vec!["/build", "/eyeColour", "/hairColour", "/recordedBy"]);
        assert!((c.score - 3.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn nothing_expected_is_complete() {
        let c = Completeness::score([], &json!({}));
        assert_eq!(c.score, 1.0);
        assert!(c.missing.is_empty());
    }

    #[test]
    fn nested_field_under_missing_parent_is_missing() {
        let c = Completeness::score(["/risk/level"], &json!({"risk": null}));
        assert_eq!(c.missing, vec!["/risk/level"]);
        assert_eq!(c.score, 0.0);
    }
}
