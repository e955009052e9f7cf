//! Removing the fields a subscriber may not see, and naming what was removed.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::pointer::child;
use crate::policy::FieldRule;

/// The case's V-number: the subject repeats it, so an allow-list always keeps it.
const ALWAYS_KEPT: &str = "vNumber";

/// `data` as `rule` lets a subscriber see it, and the pointers of the fields removed
/// (sorted; array elements are not numbered: `/items/description` stands for the
/// description of every item).
pub fn redact(data: &Value, rule: &FieldRule) -> (Value, Vec<String>) {
    let mut removed = BTreeSet::new();
    let out = match rule {
        FieldRule::All => data.clone(),
        FieldRule::Deny(pointers) => {
            let mut out = data.clone();
            for p in pointers {
                remove(&mut out, p.segments(), "", &mut removed);
            }
            out
        }
        FieldRule::Allow(pointers) => {
            let allowed: Vec<&[String]> = pointers.iter().map(|p| p.segments()).collect();
            match data {
                Value::Object(map) => {
                    let mut kept = Map::new();
                    for (key, value) in map {
                        if key == ALWAYS_KEPT {
                            kept.insert(key.clone(), value.clone());
                            continue;
                        }
                        if let Some(v) = keep(value, &below(&allowed, key), &child("", key), &mut removed) {
                            kept.insert(key.clone(), v);
                        }
                    }
                    Value::Object(kept)
                }
                other => keep(other, &allowed, "", &mut removed).unwrap_or(Value::Null),
            }
        }
    };
    (out, removed.into_iter().collect())
}

/// The rest of the pointers that go through member `key`.
fn below<'a>(allowed: &[&'a [String]], key: &str) -> Vec<&'a [String]> {
    allowed
        .iter()
        .filter_map(|segs| segs.split_first().filter(|(first, _)| *first == key).map(|(_, rest)| rest))
        .collect()
}

/// What of `value` (at `path`) the pointers `allowed` (relative to it) keep; `None` when
/// nothing, recording the removed member paths.
fn keep(value: &Value, allowed: &[&[String]], path: &str, removed: &mut BTreeSet<String>) -> Option<Value> {
    if allowed.is_empty() {
        removed.insert(path.to_owned());
        return None;
    }
    if allowed.iter().any(|segs| segs.is_empty()) {
        return Some(value.clone());
    }
    match value {
        Value::Object(map) => {
            let mut kept = Map::new();
            for (key, v) in map {
                if let Some(v) = keep(v, &below(allowed, key), &child(path, key), removed) {
                    kept.insert(key.clone(), v);
                }
            }
            Some(Value::Object(kept))
        }
        Value::Array(items) => {
            Some(Value::Array(items.iter().filter_map(|i| keep(i, allowed, path, removed)).collect()))
        }
        // The pointer goes deeper than the data does: nothing in it was allowed.
        _ => {
            removed.insert(path.to_owned());
            None
        }
    }
}

fn remove(value: &mut Value, segs: &[String], path: &str, removed: &mut BTreeSet<String>) {
    let Some((first, rest)) = segs.split_first() else { return };
    match value {
        Value::Object(map) => {
            let path = child(path, first);
            if rest.is_empty() {
                if map.remove(first).is_some() {
                    removed.insert(path);
                }
            } else if let Some(v) = map.get_mut(first) {
                remove(v, rest, &path, removed);
            }
        }
        Value::Array(items) => {
            for item in items {
                remove(item, segs, path, removed);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pointer;
    use serde_json::json;

    fn pointers(list: &[&str]) -> Vec<Pointer> {
        list.iter().map(|p| Pointer::parse(p).unwrap()).collect()
    }

    fn sample() -> Value {
        json!({
            "vNumber": "1234567890",
            "status": "departed",
            "riskAssessment": {"done": true, "level": "high", "assessedBy": "x"},
            "items": [{"category": "a", "description": "d1"}, {"category": "b"}],
            "note": "n"
        })
    }

    #[test]
    fn all_keeps_everything() {
        let (out, removed) = redact(&sample(), &FieldRule::All);
        assert_eq!(out, sample());
        assert!(removed.is_empty());
    }

    #[test]
    fn deny_removes_named_fields_and_names_them() {
        let rule = FieldRule::Deny(pointers(&["/note", "/riskAssessment/assessedBy", "/items/description", "/absent"]));
        let (out, removed) = redact(&sample(), &rule);
        assert_eq!(
            out,
            json!({"vNumber": "1234567890", "status": "departed", "riskAssessment": {"done": true, "level": "high"},
                   "items": [{"category": "a"}, {"category": "b"}]})
        );
        assert_eq!(removed, ["/items/description", "/note", "/riskAssessment/assessedBy"]);
    }

    #[test]
    fn allow_keeps_only_named_fields_and_the_case() {
        let rule = FieldRule::Allow(pointers(&["/status", "/riskAssessment/level", "/items/category"]));
        let (out, removed) = redact(&sample(), &rule);
        assert_eq!(
            out,
            json!({"vNumber": "1234567890", "status": "departed", "riskAssessment": {"level": "high"},
                   "items": [{"category": "a"}, {"category": "b"}]})
        );
        assert_eq!(removed, ["/items/description", "/note", "/riskAssessment/assessedBy", "/riskAssessment/done"]);
    }

    #[test]
    fn escaped_member_names_round_trip() {
        let data = json!({"a/b": 1, "c": 2});
        let (out, removed) = redact(&data, &FieldRule::Deny(pointers(&["/a~1b"])));
        assert_eq!(out, json!({"c": 2}));
        assert_eq!(removed, ["/a~1b"]);
    }
}
