//! JSON pointers (RFC 6901) as the policy uses them: names of object members, applied
//! through arrays to every element.

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pointer {
    text: String,
    segments: Vec<String>,
}

impl Pointer {
    /// Parses `/a/b` (with `~1` for `/` and `~0` for `~`); the whole document (``) is not a
    /// field and is refused.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} is not a JSON pointer (it must start with /)"));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw.is_empty() {
                return Err(format!("{text:?} has an empty segment"));
            }
            if raw.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{text:?} numbers an array element; pointers apply to every element"));
            }
            segments.push(raw.replace("~1", "/").replace("~0", "~"));
        }
        Ok(Pointer { text: text.to_owned(), segments })
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the JSON Schema `schema` declares this field (through `properties`, and
    /// `items` for arrays).
    pub fn exists_in_schema(&self, schema: &Value) -> bool {
        let mut node = schema;
        for segment in &self.segments {
            loop {
                if let Some(next) = node.get("properties").and_then(|p| p.get(segment)) {
                    node = next;
                    break;
                }
                match node.get("items") {
                    Some(items) if items.is_object() => node = items,
                    _ => return false,
                }
            }
        }
        true
    }

    /// Whether `data` has this field (in any array element).
    pub fn present_in(&self, data: &Value) -> bool {
        fn walk(v: &Value, segs: &[String]) -> bool {
            match (segs.split_first(), v) {
                (None, v) => !v.is_null(),
                (Some((first, rest)), Value::Object(map)) => map.get(first).is_some_and(|c| walk(c, rest)),
                (Some(_), Value::Array(items)) => items.iter().any(|i| walk(i, segs)),
                (Some(_), _) => false,
            }
        }
        walk(data, &self.segments)
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Appends an escaped member name to a pointer text.
pub(crate) fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_escapes() {
        let p = Pointer::parse("/a~1b/c~0d").unwrap();
        assert_eq!(p.segments(), ["a/b", "c~d"]);
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse("").is_err());
        assert!(Pointer::parse("/a//b").is_err());
        assert!(Pointer::parse("/items/0/x").is_err());
    }

    #[test]
    fn finds_fields_in_schemas_through_arrays() {
        let schema = json!({"properties": {"a": {"type": "array", "items": {"properties": {"b": {}}}}, "c": {}}});
        assert!(Pointer::parse("/a/b").unwrap().exists_in_schema(&schema));
        assert!(Pointer::parse("/c").unwrap().exists_in_schema(&schema));
        assert!(!Pointer::parse("/a/x").unwrap().exists_in_schema(&schema));
        assert!(!Pointer::parse("/c/d").unwrap().exists_in_schema(&schema));
    }

    #[test]
    fn presence_looks_into_every_element() {
        let data = json!({"a": [{"x": 1}, {"b": 2}], "n": null});
        assert!(Pointer::parse("/a/b").unwrap().present_in(&data));
        assert!(!Pointer::parse("/a/c").unwrap().present_in(&data));
        assert!(!Pointer::parse("/n").unwrap().present_in(&data));
    }
}
