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
    members_of(expr, &|e| matches!(e, Expr::Ident(name) if name == DATA))
}

/// The members selected of every payload `expr` reaches through `<anything>.data` or the
/// variable `data` (handover expectations read the trigger's, a candidate's and the
/// case's events that way), or `None` when it uses a payload otherwise.
pub fn payload_members(expr: &IdedExpr) -> Option<BTreeSet<String>> {
    members_of(expr, &|e| match e {
        Expr::Ident(name) => name == DATA,
        Expr::Select(select) => select.field == DATA && !select.test,
        _ => false,
    })
}

fn members_of(expr: &IdedExpr, is_payload: &dyn Fn(&Expr) -> bool) -> Option<BTreeSet<String>> {
    let mut members = BTreeSet::new();
    walk(expr, is_payload, &mut members).then_some(members)
}

/// Adds what `expr` selects of a payload to `members`; false when it uses one otherwise.
fn walk(expr: &IdedExpr, is_payload: &dyn Fn(&Expr) -> bool, members: &mut BTreeSet<String>) -> bool {
    if is_payload(&expr.expr) {
        return false;
    }
    match &expr.expr {
        Expr::Select(select) if is_payload(&select.operand.expr) => {
            members.insert(select.field.clone());
            true
        }
        Expr::Select(select) => walk(&select.operand, is_payload, members),
        Expr::Ident(_) => true,
        Expr::Call(call) => {
            call.target.as_deref().is_none_or(|t| walk(t, is_payload, members))
                && call.args.iter().all(|a| walk(a, is_payload, members))
        }
        Expr::Comprehension(c) => {
            let rebinds =
                [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)].into_iter().flatten().any(|v| v == DATA);
            !rebinds
                && [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .all(|e| walk(e, is_payload, members))
        }
        Expr::List(list) => list.elements.iter().all(|e| walk(e, is_payload, members)),
        Expr::Map(map) => map.entries.iter().all(|e| entry(e, is_payload, members)),
        Expr::Struct(s) => s.entries.iter().all(|e| entry(e, is_payload, members)),
        Expr::Literal(_) | Expr::Unspecified => true,
    }
}

fn entry(
    e: &cel::common::ast::IdedEntryExpr,
    is_payload: &dyn Fn(&Expr) -> bool,
    members: &mut BTreeSet<String>,
) -> bool {
    match &e.expr {
        EntryExpr::MapEntry(m) => walk(&m.key, is_payload, members) && walk(&m.value, is_payload, members),
        EntryExpr::StructField(f) => walk(&f.value, is_payload, members),
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

    fn payload(source: &str) -> Option<Vec<String>> {
        let program = cel::Program::compile(source).unwrap();
        payload_members(program.expression()).map(|m| m.into_iter().collect())
    }

    #[test]
    fn payload_members_are_found_through_any_event() {
        assert_eq!(payload("!has(trigger.data) || trigger.data.a"), Some(vec!["a".into()]), "has() reads nothing");
        assert_eq!(
            payload("has(event.data.a) && trigger.data.b.c == 1 && case.exists(c, c.type == 'x' && c.data.d == 'y')"),
            Some(vec!["a".into(), "b".into(), "d".into()])
        );
        assert_eq!(payload("data.status == 'departed'"), Some(vec!["status".into()]));
        assert_eq!(payload("size(event.data) > 1"), None);
        assert_eq!(payload("event.data['a'] == 1"), None);
    }
}
