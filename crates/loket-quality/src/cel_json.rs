//! JSON lent to CEL without copying it twice.
//!
//! `cel::to_value` goes through serde into `cel::Value` (every string and map copied), and
//! CEL then copies that again into its `Val` objects: the conversion, not the
//! expressions, was most of what rules and handover evaluation cost. Here a JSON value
//! becomes `Val` objects in one walk that borrow its strings, with the same CEL types
//! serde gives (a non-negative integer is a `uint`, a negative one an `int`, any other
//! number a `double`), and variables are lent to a program through a resolver instead of
//! being moved into its context.

use std::collections::HashMap;

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use serde_json::{Map, Value};

/// A CEL value that may borrow from the JSON it was made of.
pub(crate) type CelValue<'a> = Box<dyn Val + 'a>;

/// `value` as CEL sees it.
pub(crate) fn cel_value(value: &Value) -> CelValue<'_> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Box::new(CelUInt::from(u)),
            (None, Some(i)) => Box::new(CelInt::from(i)),
            // serde_json holds every other number as a finite f64.
            (None, None) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => cel_str(s),
        Value::Array(items) => cel_list(items.iter().map(cel_value)),
        Value::Object(members) => cel_members(members, members.keys()),
    }
}

/// A CEL map of the members of `object` named by `names` (those it has).
pub(crate) fn cel_members<'a>(object: &'a Map<String, Value>, names: impl IntoIterator<Item = &'a String>) -> CelValue<'a> {
    cel_map(names.into_iter().filter_map(|name| Some((name.as_str(), cel_value(object.get(name)?)))))
}

/// A CEL map of `entries`.
pub(crate) fn cel_map<'a>(entries: impl Iterator<Item = (&'a str, CelValue<'a>)>) -> CelValue<'a> {
    let map: HashMap<CelMapKey<'a>, CelValue<'a>> = entries.map(|(k, v)| (CelMapKey::from(k), v)).collect();
    Box::new(CelMap::from(map))
}

/// A CEL list of `items`.
pub(crate) fn cel_list<'a>(items: impl Iterator<Item = CelValue<'a>>) -> CelValue<'a> {
    Box::new(CelList::from(items.collect::<Vec<_>>()))
}

/// A CEL string borrowing `text`.
pub(crate) fn cel_str(text: &str) -> CelValue<'_> {
    Box::new(CelString::from(text))
}

/// A CEL string that owns its text (a value computed for the evaluation).
pub(crate) fn cel_string(text: String) -> CelValue<'static> {
    Box::new(CelString::from(text))
}

/// The variables of one evaluation, lent to CEL rather than copied into its context.
pub(crate) struct Vars<'a>(pub Vec<(&'static str, &'a (dyn Val + 'a))>);

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        self.0.iter().find(|(name, _)| *name == variable).map(|(_, value)| CowVal::Borrowed(*value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What `program` gives with `data` lent through the resolver and through the
    /// crate's own serde conversion: the two must agree.
    fn both(program: &str, data: &Value) -> (String, String) {
        let program = cel::Program::compile(program).unwrap();
        let lent = cel_value(data);
        let vars = Vars(vec![("data", lent.as_ref())]);
        let mut context = cel::Context::default();
        context.set_variable_resolver(&vars);
        let ours = format!("{:?}", program.execute(&context));
        let mut context = cel::Context::default();
        context.add_variable("data", data.clone()).unwrap();
        let theirs = format!("{:?}", program.execute(&context));
        (ours, theirs)
    }

    #[test]
    fn values_have_the_types_serde_gives_them() {
        let data = json!({"n": 3, "neg": -2, "f": 1.5, "s": "x", "b": true, "z": null,
            "list": [1, "a", {"k": [2]}], "o": {"inner": {"deep": "v"}}});
        for program in [
            "type(data.n) == uint && data.n == 3u",
            "type(data.neg) == int && data.neg == -2",
            "type(data.f) == double && data.f > 1.4",
            "data.s == 'x' && data.b && data.z == null",
            "size(data.list) == 3 && data.list[2].k[0] == 2u",
            "data.o.inner.deep == 'v' && has(data.o.inner) && !has(data.o.missing)",
            "data.list.exists(x, type(x) == string && x == 'a')",
            "size(data) == 8",
            "data.n + 1",
            "data.missing",
        ] {
            let (ours, theirs) = both(program, &data);
            assert_eq!(ours, theirs, "{program}");
        }
    }
}
