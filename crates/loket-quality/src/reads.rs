//! Which top-level members of `data` a CEL program can read, so evaluation converts only
//! those into CEL values instead of the whole payload (the conversion, not the rules,
//! dominated the cost of rule evaluation).

use std::collections::BTreeSet;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// The variable rules read the payload through.
pub const DATA: &str = "data";

/// The top-level members of `data` that `expr` selects (`data.x`, `has(data.x)`), or
/// `None` when it may read `data` some other way (`size(data)`, `data["x"]`, a
/// comprehension that rebinds the name): then the whole payload is needed.
pub fn data_members(expr: &IdedExpr) -> Option<BTreeSet<String>> {
    let mut members = BTreeSet::new();
    walk(expr, &mut members).then_some(members)
}

/// Adds what `expr` selects of `data` to `members`; false when it uses `data` otherwise.
fn walk(expr: &IdedExpr, members: &mut BTreeSet<String>) -> bool {
    match &expr.expr {
        Expr::Select(select) => match &select.operand.expr {
            Expr::Ident(name) if name == DATA => {
                members.insert(select.field.clone());
                true
            }
            _ => walk(&select.operand, members),
        },
        Expr::Ident(name) => name != DATA,
        Expr::Call(call) => {
            call.target.as_deref().is_none_or(|t| walk(t, members)) && call.args.iter().all(|a| walk(a, members))
        }
        Expr::Comprehension(c) => {
            let rebinds =
                [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)].into_iter().flatten().any(|v| v == DATA);
            !rebinds
                && [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .all(|e| walk(e, members))
        }
        Expr::List(list) => list.elements.iter().all(|e| walk(e, members)),
        Expr::Map(map) => map.entries.iter().all(|e| match &e.expr {
            EntryExpr::MapEntry(m) => walk(&m.key, members) && walk(&m.value, members),
            EntryExpr::StructField(f) => walk(&f.value, members),
        }),
        Expr::Struct(s) => s.entries.iter().all(|e| match &e.expr {
            EntryExpr::MapEntry(m) => walk(&m.key, members) && walk(&m.value, members),
            EntryExpr::StructField(f) => walk(&f.value, members),
        }),
        Expr::Literal(_) | Expr::Unspecified => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(source: &str) -> Option<Vec<String>> {
        let program = cel::Program::compile(source).unwrap();
        data_members(program.expression()).map(|m| m.into_iter().collect())
    }

    #[test]
    fn selected_members_are_found_through_macros_and_calls() {
        assert_eq!(
            members("!has(data.a) || timestamp(data.a) >= timestamp(data.b.c) && data.d.all(x, x > 1)"),
            Some(vec!["a".into(), "b".into(), "d".into()])
        );
        assert_eq!(members("true"), Some(vec![]));
        assert_eq!(members("other.data > 1"), Some(vec![]), "a member named data of something else");
    }

    #[test]
    fn any_other_use_of_data_needs_the_whole_payload() {
        assert_eq!(members("size(data) > 2"), None);
        assert_eq!(members("data['a'] == 1"), None);
        assert_eq!(members("[1].exists(data, data > 0)"), None);
        assert_eq!(members("{'k': data}.k.a == 1"), None);
    }
}
